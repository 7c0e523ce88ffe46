"""The SFTP transport (paramiko): upload under temporary names, check file last; answers from the outbox.

HQ's host key is checked against a known_hosts file and never accepted blindly. Each file
goes to ``inbox/<name>.part`` and is renamed when complete, the check file last
(CONVENTIONS.md §7), so HQ never takes half a delivery. Receipts and verdicts are read from
``outbox/`` (``<check>.rct.xml``, ``<check>.fbf.xml``); the list slices (one per list
version, all kept there) and the reporting calendar are the ``D_`` files HQ leaves there.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import socket
import stat
import time
from pathlib import Path
from typing import Any, Collection, Sequence

import paramiko
from lxml import etree

from schemas import CheckFileError
from schemas.conventions import CheckFile, CheckFileName

from .._exceptions import CredentialsError, TransportError
from .base import CycleInfo, Progress, Receipt, Transport, Verdict

_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
# A province's slice of a list version in its outbox: D_<province>_<yyyy>Vnn_<resend>.chk
LIST_CHECK = re.compile(r"^D_[0-9]{2,4}_([0-9]{4}V[0-9]{2})_[0-9]{2}\.chk$")


class SftpTransport(Transport):
    """One SSH connection to HQ, opened on first use."""

    transient = (OSError, EOFError, socket.timeout, paramiko.SSHException)

    def __init__(self, host: str, port: int, user: str, key_file: str, known_hosts: str, party: str,
                 timeout: float = 60, receipt_wait: float = 120) -> None:
        self.host, self.port, self.user = host, port, user
        self.key_file, self.known_hosts = key_file, known_hosts
        self.party = party
        self.timeout = timeout
        self.receipt_wait = receipt_wait
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def _open(self) -> paramiko.SFTPClient:
        live = self._client.get_transport() if self._client is not None else None
        if self._sftp is not None and live is not None and live.is_active():
            return self._sftp
        self.close()
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(self.known_hosts)
        except OSError as exc:
            raise TransportError(f"cannot read known_hosts {self.known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(self.host, self.port, self.user, key_filename=self.key_file, timeout=self.timeout,
                           banner_timeout=self.timeout, auth_timeout=self.timeout, look_for_keys=False,
                           allow_agent=False)
        except paramiko.BadHostKeyException as exc:
            raise TransportError(f"HQ's host key does not match known_hosts ({exc}); refusing to connect") from None
        except paramiko.AuthenticationException as exc:
            raise CredentialsError(f"总部拒绝了 SSH 密钥（用户 {self.user}）：请总部管理员登记 {self.key_file}.pub / "
                                   f"HQ refused our SSH key for {self.user} ({exc}): ask HQ's admin to register "
                                   f"the public key of {self.key_file}") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise TransportError(f"HQ's host key for {self.host}:{self.port} is not in {self.known_hosts}; "
                                     "add it (never accepted automatically)") from None
            raise
        self._client = client
        self._sftp = client.open_sftp()
        return self._sftp

    def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None

    # -- sending ------------------------------------------------------------------------------
    def send(self, files: Sequence[Path], progress: Progress | None = None) -> Receipt:
        """Upload each file under a temporary name, rename it, the check file last; wait for the receipt."""
        sftp = self._open()
        ordered = [p for p in files if not p.name.endswith(".chk")] + [p for p in files if p.name.endswith(".chk")]
        total = sum(p.stat().st_size for p in ordered)
        done = 0
        for p in ordered:
            part = f"inbox/{p.name}.part"
            base = done

            def cb(sent: int, _size: int, base: int = base) -> None:
                if progress is not None:
                    progress(base + sent, total)

            sftp.put(str(p), part, callback=cb, confirm=True)
            sftp.posix_rename(part, f"inbox/{p.name}")
            done += p.stat().st_size
        check = next((p for p in ordered if p.name.endswith(".chk")), None)
        if check is None:
            raise TransportError("a delivery needs its check file")
        stem = CheckFileName.parse(check.name).stem
        return self._receipt(stem)

    def _receipt(self, stem: str) -> Receipt:
        deadline = time.monotonic() + self.receipt_wait
        while True:
            data = self._read(f"outbox/{stem}.rct.xml")
            if data is not None:
                root = etree.fromstring(data, _SAFE)
                did = root.findtext("{*}DeliveryId")
                return Receipt(int(did) if did and did.isdigit() else None, stem)
            note = self._read(f"outbox/{stem}.incomplete.txt")
            if note is not None:
                raise TransportError(f"HQ reports {stem} incomplete: {note.decode('utf-8', 'replace')[:500]}")
            if time.monotonic() > deadline:
                raise TransportError(f"no receipt for {stem} in outbox/ after {self.receipt_wait:.0f} s")
            time.sleep(1.0)

    def _read(self, path: str) -> bytes | None:
        sftp = self._open()
        try:
            with sftp.open(path, "rb") as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            if getattr(exc, "errno", None) == 2 or "No such file" in str(exc):
                return None
            raise

    def verdict(self, receipt: Receipt) -> Verdict | None:
        """The file-level feedback in the outbox, once it is there."""
        data = self._read(f"outbox/{receipt.check_name}.fbf.xml")
        if data is None:
            return None
        root = etree.fromstring(data, _SAFE)
        counts = [{"code": c.get("code"), "severity": c.get("severity"), "count": int(c.get("count") or 0)}
                  for c in root.iterfind("{*}Counts/{*}Code")]
        return Verdict(root.findtext("{*}Status") or "failed", int(root.findtext("{*}Errors") or 0),
                       int(root.findtext("{*}Warnings") or 0), counts, self.comments(receipt))

    def comments(self, receipt: Receipt) -> list[str]:
        """HQ's review comments: ``outbox/<stem>.comment.txt`` (UTF-8), when HQ has written one."""
        data = self._read(f"outbox/{receipt.check_name}.comment.txt")
        if data is None:
            return []
        text = data.decode("utf-8", "replace").strip()
        return [text] if text else []

    def findings(self, receipt: Receipt) -> list[dict[str, Any]]:
        """The findings of the record-level feedback ``outbox/<stem>.fbr.xml``."""
        data = self._read(f"outbox/{receipt.check_name}.fbr.xml")
        if data is None:
            return []
        out: list[dict[str, Any]] = []
        for e in etree.fromstring(data, _SAFE).iterfind("{*}Findings/{*}Finding"):
            found: dict[str, Any] = {"code": e.get("code"), "severity": e.get("severity"),
                                     "tier": int(e.get("tier") or 0)}
            for tag, key in (("File", "file"), ("Line", "line"), ("Field", "field"), ("Value", "value"),
                             ("Expected", "expected"), ("XPath", "xpath")):
                text = e.findtext("{*}" + tag)
                if text is not None:
                    found[key] = int(text) if key == "line" and text.isdigit() else text
            for m in e.iterfind("{*}Message"):
                found["message_" + (m.get("lang") or "en")] = m.text or ""
            out.append(found)
        return out

    def review_state(self, receipt: Receipt) -> str | None:
        """The ``review state:`` line HQ writes at the head of ``outbox/<stem>.comment.txt``."""
        data = self._read(f"outbox/{receipt.check_name}.comment.txt")
        for line in (data or b"").decode("utf-8", "replace").splitlines()[:5]:
            if line.startswith("#") and "review state:" in line:
                return line.rsplit("review state:", 1)[1].strip() or None
        return None

    def reminders(self) -> list[dict[str, Any]]:
        """``outbox/reminders.json``: the reminders HQ sent that still stand (HQ rewrites it as they clear)."""
        data = self._read("outbox/reminders.json")
        if not data:
            return []
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise TransportError("HQ's outbox/reminders.json is not valid JSON") from None
        return list(doc.get("reminders") or []) if isinstance(doc, dict) else []

    def max_resend(self, cycle: str, mode: str = "P") -> int | None:
        """The highest resend number of ours HQ has answered for a cycle in a mode: the receipts and
        feedback in the outbox (``<mode>_<party>_<cycle>_<nn>.rct.xml``)."""
        pattern = re.compile(rf"^{re.escape(mode)}_{re.escape(self.party)}_{re.escape(cycle)}_([0-9]{{2}})\."
                             r"(rct|fbf|fbr)\.xml$")
        numbers = [int(m.group(1)) for n in self._outbox() if (m := pattern.match(n))]
        return max(numbers) if numbers else None

    # -- what HQ sends down ------------------------------------------------------------------------
    def _outbox(self) -> list[str]:
        return [a.filename for a in self._open().listdir_attr("outbox") if stat.S_ISREG(a.st_mode or 0)]

    def _list_checks(self) -> list[tuple[str, str]]:
        """(version, check file name) of every list slice in the outbox, oldest version first; the
        latest resend of each version."""
        found = sorted((m.group(1), n) for n in self._outbox() if (m := LIST_CHECK.match(n)))
        return list({version: (version, name) for version, name in found}.values())

    def fetch_list(self, dest: Path) -> tuple[str, list[Path]] | None:
        """The newest list slice in the outbox (``D_<province>_<yyyy>Vnn_00.chk`` and its data file)."""
        versions = self._list_checks()
        if not versions:
            return None
        version, check_name = versions[-1]
        return version, self._fetch_slice(check_name, dest)

    def fetch_lists(self, dest: Path, known: Collection[str] = ()) -> list[tuple[str, list[Path]]]:
        """Every list slice in the outbox (each ``D_<province>_<yyyy>Vnn_<rr>.chk`` with its data files),
        oldest version first, into ``dest/<version>/``."""
        return [(version, self._fetch_slice(check_name, dest / version))
                for version, check_name in self._list_checks() if version not in known]

    def _fetch_slice(self, check_name: str, dest: Path) -> list[Path]:
        """Download one slice's check file and the data files it names into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        check_bytes = self._read(f"outbox/{check_name}") or b""
        (dest / check_name).write_bytes(check_bytes)
        out = [dest / check_name]
        try:
            entries = CheckFile.parse(check_bytes).entries
        except CheckFileError as exc:
            raise TransportError(f"HQ's list check file {check_name} is malformed: {exc}") from None
        for e in entries:
            if Path(e.name).name != e.name or e.name.startswith("."):
                raise TransportError(f"HQ's list check file {check_name} names an unusable file {e.name!r}")
            data = self._read(f"outbox/{e.name}")
            if data is None:
                raise TransportError(f"list file {e.name} named by {check_name} is not in the outbox yet")
            (dest / e.name).write_bytes(data)
            out.append(dest / e.name)
        return out

    def code_lists(self) -> dict[str, Any] | None:
        """The code-list versions HQ has published beyond the standard (``outbox/code_lists.json``)."""
        if "code_lists.json" not in self._outbox():
            return None
        data = self._read("outbox/code_lists.json") or b""
        try:
            doc: dict[str, Any] = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise TransportError("HQ's outbox/code_lists.json is not valid JSON") from None
        return doc

    def calendar(self) -> list[CycleInfo]:
        """The calendar HQ leaves in the outbox: ``calendar.json`` (states, exceptions), else the REP_CYCLE files."""
        if "calendar.json" in self._outbox():
            try:
                doc = json.loads((self._read("outbox/calendar.json") or b"").decode("utf-8"))
                return [CycleInfo(c["id"], c["state"], dt.date.fromisoformat(c["end_date"]), c["deadline_beijing"],
                                  tuple(c["units_due"]), c.get("exception_until_beijing")) for c in doc["cycles"]]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                raise TransportError("HQ's outbox/calendar.json is not a valid calendar") from None
        # An HQ from before calendar.json: the standard's REP_CYCLE files, which carry no state.
        out: dict[str, CycleInfo] = {}
        for name in sorted(self._outbox()):
            if not re.match(r"^D_00_[0-9]{4}_32004_[0-9]{2}_[0-9]{3}\.txt$", name):
                continue
            data = (self._read(f"outbox/{name}") or b"").decode("utf-8")
            for line in data.splitlines():
                f = line.split("|")
                if len(f) < 7:
                    continue
                end = dt.date(int(f[4][:4]), int(f[4][4:6]), int(f[4][6:8]))
                out[f[0]] = CycleInfo(f[0], "unknown", end, f[5], tuple(u for u in f[6].split(",") if u))
        return list(out.values())
