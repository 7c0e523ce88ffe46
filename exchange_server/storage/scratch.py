"""Scratch space a process owns, named so that what a killed process left can be found and removed.

Every temporary file or folder the server makes outside a ``with`` it can always leave (a
staging file of an upload, a validation's scratch folder) carries the host and the process
id in its name: ``<kind>-<host>-<pid>-<random>``. A sweep (at start-up and periodically)
removes those whose process is gone from this host — never another host's (two nodes may
share a disk) or a live process's.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9.]+")
# Names from before the host and pid were part of them: removed once they are this old.
LEGACY_AGE = 3600


def host_tag() -> str:
    """This host's name as it appears in scratch names (no dashes, so names parse back)."""
    return _SAFE.sub(".", socket.gethostname())[:40] or "host"


def owner_prefix(kind: str) -> str:
    """``<kind>-<host>-<pid>-``: what this process's scratch of that kind is named with."""
    return f"{kind}-{host_tag()}-{os.getpid()}-"


def make_dir(kind: str, parent: Path | None = None) -> Path:
    """A new scratch folder this process owns (in ``parent``, default the system's temp folder)."""
    return Path(tempfile.mkdtemp(prefix=owner_prefix(kind), dir=parent))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _owner(name: str, kind: str) -> tuple[str, int] | None:
    """(host, pid) from a scratch name of ``kind``; None for names of another form."""
    m = re.match(rf"^{re.escape(kind)}-([A-Za-z0-9.]+)-([0-9]+)-", name)
    return (m.group(1), int(m.group(2))) if m else None


def sweep(folder: Path, kind: str, legacy_prefix: str | None = None) -> list[str]:
    """Remove what dead processes of this host left in ``folder``; returns the names removed.

    ``legacy_prefix`` also matches names without host and pid (older releases): those go
    once they are older than ``LEGACY_AGE``.
    """
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    me = host_tag()
    now = time.time()
    for entry in os.scandir(folder):
        owner = _owner(entry.name, kind)
        if owner is not None:
            host, pid = owner
            if host != me or pid_alive(pid):
                continue
        elif legacy_prefix is None or not entry.name.startswith(legacy_prefix):
            continue
        else:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < LEGACY_AGE:
                    continue
            except FileNotFoundError:
                continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except FileNotFoundError:
            pass
    return removed
