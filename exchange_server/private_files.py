"""Files only their owner may read: tokens, passwords, private keys, the secret key."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: str | bytes) -> None:
    """Write (or overwrite) a mode-600 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def create_private(path: Path, data: bytes) -> bool:
    """Create a mode-600 file unless it exists; True if this call created it.

    Written to a private temp file, fsynced, then hard-linked into place: link() fails when
    the file already exists, so two processes starting at once never end up with different
    contents (a key, a secret).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
