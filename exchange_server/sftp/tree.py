"""The folders a party sees over SFTP: ``<root>/<party>/inbox`` and ``<root>/<party>/outbox``."""
from __future__ import annotations

import os
import re
from pathlib import Path

PARTY_RE = re.compile(r"^(00|[1-9][0-9]|0[0-9]{2,3})$")
INBOX, OUTBOX = "inbox", "outbox"


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
