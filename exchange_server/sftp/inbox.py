"""Taking deliveries out of SFTP inboxes: only whole ones, each exactly once.

A delivery is taken when its check file has arrived and every data file it lists is
present with the size and SHA-256 the check file gives. Temporary (``*.part``) and hidden
files are ignored, so are files still open for writing (the embedded server says which)
and empty files; data files wait for their check file for as long as it takes; a check
file waits for its data files up to ``sftp_complete_wait_seconds`` and is then reported
(an ``.incomplete.txt`` note in the outbox naming what is missing or different) and set
aside, never ingested. Same pipeline as HTTP: archive, record, receipt, queue.

Crash safety: files are copied into the archive and the delivery recorded before they
leave the inbox. If the process dies in between, the next scan finds the same bytes and
the receiving service answers with the delivery already recorded (same fingerprint), so
nothing is lost and nothing is counted twice.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pwd
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from schemas import CheckFileError
from schemas.conventions import CheckFile, is_ignored

from ..accounts.models import PROVINCE, Account
from ..audit.services import record
from ..runtime import Runtime
from ..submissions.annexes import MANIFEST_SUFFIX
from ..submissions.receiving import ReceivingService
from ..submissions.upload import ReceivedFile, check_file_name
from ..errors import BadRequest, ExchangeError
from .outbox import place_receipt
from .tree import PartyTree

log = logging.getLogger(__name__)
ASIDE = ".incomplete"  # where reported check files go (hidden: never offered again)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    sha256: str


class InboxScanner:
    """Scans every party's inbox under one root and ingests complete deliveries."""

    def __init__(self, rt: Runtime, root: Path, channel: str, busy: Callable[[Path], bool] | None = None) -> None:
        self.rt = rt
        self.tree = PartyTree(root)
        self.channel = channel
        self.busy = busy or (lambda _p: False)
        self.wake = threading.Event()
        self._digests: dict[Path, _Seen] = {}

    # -- the loop ---------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        """Scan every ``sftp_scan_seconds``, or at once when woken (an upload finished)."""
        while not stop.is_set():
            # Cleared before the scan: an upload finishing during it wakes the next one at once.
            self.wake.clear()
            try:
                self.scan_once()
            except (OSError, ExchangeError) as exc:  # a vanished file or a full disk must not end the channel
                log.error("inbox scan failed (the files wait for the next scan): %s", exc)
            self.wake.wait(self.rt.settings.sftp_scan_seconds)

    def scan_once(self) -> list[int]:
        """One pass over every inbox; returns the ids of deliveries taken."""
        taken = []
        for party in self.tree.parties():
            inbox = self.tree.inbox(party)
            if not inbox.is_dir():
                continue
            for check in sorted(inbox.glob("*.chk")):
                if is_ignored(check.name) or self.busy(check):
                    continue
                account = self._sender(party, check)
                if account is None:
                    continue
                delivery_id = self._consider(party, account, inbox, check)
                if delivery_id is not None:
                    taken.append(delivery_id)
        return taken

    def _sender(self, party: str, check: Path) -> Account | None:
        """The account a delivery is credited to: the one that wrote its check file.

        The embedded server notes the writer of every inbox file. In drop-box mode OpenSSH
        writes the files; the owner's user name is taken when it names one of the party's
        accounts. Failing both (files placed by other means), the party's first active account.
        """
        name = self.tree.writer(party, check.name)
        if name is None:
            try:
                name = pwd.getpwuid(check.stat().st_uid).pw_name
            except (KeyError, OSError):
                name = None
        with self.rt.db.session() as s:
            party_accounts = select(Account).where(Account.party == party, Account.role == PROVINCE, Account.active)
            if name is not None:
                found = s.scalar(party_accounts.where(Account.name == name))
                if found is not None:
                    return found
                if self.tree.writer(party, check.name) is not None:
                    # Noted by the embedded server, but no longer an active account of this party.
                    log.warning("%s: %s was written by %s, no longer an active account of %s; left waiting",
                                self.channel, check.name, name, party)
                    return None
            return s.scalar(party_accounts.order_by(Account.id).limit(1))

    # -- one check file -----------------------------------------------------------------------
    def _consider(self, party: str, account: Account, inbox: Path, check: Path) -> int | None:
        try:
            st = check.stat()
            if st.st_size == 0:
                self._maybe_expire(party, inbox, check, [("E112", check.name, "0 bytes")])
                return None
            parsed = CheckFile.parse(check.read_bytes()) if st.st_size <= 16 * 1024 * 1024 else None
        except FileNotFoundError:
            return None
        except (CheckFileError, UnicodeDecodeError, ValueError) as exc:
            parsed = None
            problem = [("E103", check.name, str(exc))]
        else:
            problem = [] if parsed else [("E118", check.name, "check file over 16 MiB")]
        if parsed is None:
            self._maybe_expire(party, inbox, check, problem)
            return None
        missing = []
        paths = [check]
        for entry in parsed.entries:
            try:
                check_file_name(entry.name)
            except BadRequest:
                missing.append(("E101", entry.name, "not a plain file name"))
                continue
            p = inbox / entry.name
            if is_ignored(entry.name) or not p.is_file() or p.is_symlink() or self.busy(p):
                missing.append(("E104", entry.name, "not (yet) in the inbox"))
                continue
            size = p.stat().st_size
            if size == 0:
                missing.append(("E112", entry.name, "0 bytes"))
            elif size != entry.size:
                missing.append(("E106", entry.name, f"{size} bytes, check file says {entry.size}"))
            elif self._sha256(p) != entry.sha256:
                missing.append(("E108", entry.name, "SHA-256 differs from the check file"))
            paths.append(p)
        if missing:
            self._maybe_expire(party, inbox, check, missing)
            return None
        # A hub's approval manifest travels with its delivery (uploaded before the check file).
        annex = inbox / (check.name[:-4] + MANIFEST_SUFFIX)
        if annex.is_file() and not annex.is_symlink() and not self.busy(annex):
            paths.append(annex)
        return self._ingest(party, account, paths)

    def _sha256(self, path: Path) -> str:
        """A file's digest, remembered while its size and mtime stay the same."""
        st = path.stat()
        seen = self._digests.get(path)
        if seen and seen.size == st.st_size and seen.mtime_ns == st.st_mtime_ns:
            return seen.sha256
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        self._digests[path] = _Seen(st.st_size, st.st_mtime_ns, h.hexdigest())
        return h.hexdigest()

    def _ingest(self, party: str, account: Account, paths: list[Path]) -> int | None:
        files = []
        for p in paths:
            staged = self.rt.archive.stage(label=p.name)
            with p.open("rb") as fh:
                while block := fh.read(1 << 20):
                    staged.write(block)
            files.append(ReceivedFile(p.name, staged.commit(), staged.size))
        check_entries = {e.name: e for e in CheckFile.parse(paths[0].read_bytes()).entries}
        for f in files[1:]:
            if f.name in check_entries and f.sha256 != check_entries[f.name].sha256:  # changed while we copied: try again next scan
                log.warning("%s changed while being taken; retrying", f.name)
                return None
        with self.rt.db.session() as s:
            acct = s.get(Account, account.id)
            assert acct is not None
            delivery, duplicate = ReceivingService(s, self.rt.archive, self.rt.spec).receive(acct, self.channel, files)
            delivery_id = delivery.id
        for p in paths:
            p.unlink(missing_ok=True)
            self.tree.forget_writer(party, p.name)
            self._digests.pop(p, None)
        if not duplicate:
            place_receipt(self.rt, delivery_id)
        log.info("%s: took %s from %s inbox as delivery %s%s", self.channel, paths[0].name, party, delivery_id,
                 " (already received)" if duplicate else "")
        return delivery_id

    def _maybe_expire(self, party: str, inbox: Path, check: Path, problems: list[tuple[str, str, str]]) -> None:
        """Report and set aside a check file that has waited too long; otherwise keep waiting."""
        try:
            age = time.time() - check.stat().st_mtime
        except FileNotFoundError:
            return
        if age < self.rt.settings.sftp_complete_wait_seconds:
            return
        lines = [f"{check.name}: delivery incomplete after {int(age)} s; not ingested / 报送不完整，未接收",
                 "Upload the missing files, or send a corrected check file. / 请补传缺失文件或重新上传正确的校验文件。", ""]
        lines += [f"{code}  {name}  {detail}" for code, name, detail in problems]
        for tree_root in {self.tree.root, self.rt.settings.sftp_root}:
            PartyTree(tree_root).place(party, f"{check.name[:-4]}.incomplete.txt", ("\n".join(lines) + "\n").encode())
        aside = inbox / ASIDE
        aside.mkdir(exist_ok=True)
        os.replace(check, aside / f"{check.name}.{int(time.time())}")
        self.tree.forget_writer(party, check.name)
        with self.rt.db.session() as s:
            record(s, "system", "sftp.incomplete", f"party:{party}", check=check.name, channel=self.channel,
                   problems=[{"code": c, "file": n, "detail": d} for c, n, d in problems])
        log.warning("%s: %s from %s incomplete after %d s; reported", self.channel, check.name, party, int(age))
