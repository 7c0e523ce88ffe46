"""The one interface both transports implement: send, receipt, verdict, list versions, calendar."""
from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

Progress = Callable[[int, int], None]  # (bytes sent so far, total bytes)


@dataclass(frozen=True)
class Receipt:
    """HQ's acknowledgement that a delivery arrived."""

    delivery_id: int | None
    check_name: str
    duplicate: bool = False


@dataclass(frozen=True)
class Verdict:
    """HQ's judgement of a delivery."""

    status: str  # accepted | accepted_with_warnings | rejected | failed
    errors: int
    warnings: int
    counts: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # HQ's review comments, oldest first, as text


@dataclass(frozen=True)
class CycleInfo:
    """A cycle of HQ's calendar as the agent needs it."""

    id: str
    state: str  # open | closed | planned | unknown (an old HQ's SFTP outbox carries no state)
    end_date: dt.date
    deadline: str  # YYYYMMDDHHMMSS Beijing time
    units_due: tuple[str, ...]
    exception_until: str | None = None  # YYYYMMDDHHMMSS Beijing: HQ lets our province deliver until then


class Transport(ABC):
    """How the agent reaches HQ. Implementations: HttpTransport, SftpTransport."""

    #: errors worth retrying (network trouble, HQ briefly unavailable)
    transient: tuple[type[BaseException], ...] = (OSError,)

    @abstractmethod
    def send(self, files: Sequence[Path], progress: Progress | None = None) -> Receipt:
        """Deliver the files (check file last) and return HQ's receipt."""

    @abstractmethod
    def verdict(self, receipt: Receipt) -> Verdict | None:
        """HQ's verdict, or None while validation has not ended."""

    @abstractmethod
    def fetch_list(self, dest: Path) -> tuple[str, list[Path]] | None:
        """Download the province's current list slice into ``dest``: (version, files), or None if none."""

    def fetch_lists(self, dest: Path, known: Collection[str] = ()) -> list[tuple[str, list[Path]]]:
        """Download the province's slice of every list version HQ has published into ``dest/<version>/``.

        Returns (version, files) per version, oldest first; versions in ``known`` (kept
        already) are not downloaded again and left out. This default, for a transport that
        can only reach the current slice, gives that one.
        """
        got = self.fetch_list(dest / "current")
        if got is None or got[0] in known:
            return []
        version, files = got
        folder = dest / version
        (dest / "current").rename(folder)
        return [(version, [folder / p.name for p in files])]

    @abstractmethod
    def calendar(self) -> list[CycleInfo]:
        """HQ's reporting calendar."""

    def code_lists(self) -> dict[str, Any] | None:
        """HQ's published code-list versions (``{"spec_version", "generation", "additions"}``), None if HQ has none to give."""
        return None

    def comments(self, receipt: Receipt) -> list[str]:
        """HQ's review comments on a delivery (each with its time and author), oldest first."""
        return []

    def findings(self, receipt: Receipt) -> list[dict[str, Any]]:
        """HQ's listed findings on a judged delivery (code, severity, file, line, field, value, expected,
        message_zh, message_en), in the order of its record-level feedback."""
        return []

    def review_state(self, receipt: Receipt) -> str | None:
        """Where HQ's review of a delivery stands (``resend_requested`` asks for a new version), where known."""
        return None

    def reminders(self) -> list[dict[str, Any]]:
        """HQ's reminders before deadlines (cycle, deadline_beijing, missing_units, subject, text), where HQ gives them."""
        return []

    def max_resend(self, cycle: str, mode: str = "P") -> int | None:
        """The highest resend number HQ has seen from us for a cycle in a mode (P and T are numbered on
        their own, CONVENTIONS.md §8), where the transport can tell."""
        return None

    def close(self) -> None:
        """Release connections."""
