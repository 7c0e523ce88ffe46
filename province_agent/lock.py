"""One run at a time: an exclusive lock on ``<state_dir>/agent.lock`` (released if the process dies)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from ._exceptions import LockedError


class RunLock:
    """``with RunLock(state_dir):`` — LockedError when another run holds it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "agent.lock"
        self.fh: IO[str] | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = self.path.open("a+")
        try:
            # flock is tied to the open file: the kernel drops it when the process ends, however it ends.
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise LockedError(f"another run of the agent is in progress ({holder}); not starting a second") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}\n")
        self.fh.flush()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
