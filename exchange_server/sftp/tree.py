"""The folders a party sees over SFTP: ``<root>/<party>/inbox`` and ``<root>/<party>/outbox``.

Several accounts may share a party's folders (a province with two systems, say). Who wrote
a file in the inbox is kept beside it, in the hidden ``inbox/.writers/`` folder no session
can see, so the delivery it belongs to is credited to the account that authenticated.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

PARTY_RE = re.compile(r"^(00|[1-9][0-9]|0[0-9]{2,3})$")
INBOX, OUTBOX = "inbox", "outbox"
WRITERS = ".writers"  # inside the inbox: <file name> -> the account that wrote it


class PartyTree:
    """One root holding a folder per party (the embedded server's, or a drop-box root)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def party_dir(self, party: str) -> Path:
        """The party's folder (the ``/`` its SFTP session sees)."""
        if not PARTY_RE.match(party):
            raise ValueError(f"not a party code: {party!r}")
        return self.root / party

    def inbox(self, party: str) -> Path:
        """Where the party uploads deliveries."""
        return self.party_dir(party) / INBOX

    def outbox(self, party: str) -> Path:
        """Where HQ leaves receipts, feedback and list slices for the party."""
        return self.party_dir(party) / OUTBOX

    def ensure(self, party: str) -> Path:
        """Create the party's folders if missing; returns the party folder."""
        for sub in (INBOX, OUTBOX):
            (self.party_dir(party) / sub).mkdir(parents=True, exist_ok=True)
        return self.party_dir(party)

    def parties(self) -> list[str]:
        """Parties that have a folder here."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and PARTY_RE.match(p.name))

    def place(self, party: str, name: str, data: bytes) -> Path:
        """Write a file into the party's outbox atomically (a reader never sees half of it)."""
        out = self.outbox(party)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{name}.tmp"
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out / name)
        return out / name

    # -- who wrote what ------------------------------------------------------------------------
    def _writer_file(self, party: str, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"not an inbox file name: {name!r}")
        return self.inbox(party) / WRITERS / name

    def mark_writer(self, party: str, name: str, account: str) -> None:
        """Note that ``account`` wrote inbox file ``name`` (written atomically, replacing an older note)."""
        path = self._writer_file(party, name)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(account, "utf-8")
        os.replace(tmp, path)

    def writer(self, party: str, name: str) -> str | None:
        """The account that wrote inbox file ``name``, when the embedded server saw it written."""
        try:
            return self._writer_file(party, name).read_text("utf-8").strip() or None
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def move_writer(self, party: str, old: str, new: str) -> None:
        """A renamed inbox file keeps its writer."""
        try:
            os.replace(self._writer_file(party, old), self._writer_file(party, new))
        except FileNotFoundError:
            pass

    def forget_writer(self, party: str, name: str) -> None:
        """The inbox file is gone (taken, or removed by its sender)."""
        try:
            self._writer_file(party, name).unlink(missing_ok=True)
        except ValueError:
            pass
