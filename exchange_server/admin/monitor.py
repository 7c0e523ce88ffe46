"""The transmission monitor: what arrived on one day (Beijing time), on every channel, and where it stands.

Read-only. A delivery's *channel* is how its bytes came (``http``, ``sftp``, ``dropbox``),
or ``hub`` when a province hub forwarded it (it carries the hub's approval manifest). Its
*stage* follows the ingestion queue: ``queued`` (waiting for a worker), ``validating``
(a worker holds it), then the verdict (``accepted``, ``accepted_with_warnings``,
``rejected``) or ``failed``. What is still arriving has no delivery yet: files sitting in
an SFTP or drop-box inbox and uploads streaming into the archive's staging folder are
listed as *receiving*.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..accounts.models import Account
from ..clock import BEIJING, as_utc, iso, utcnow
from ..errors import BadRequest
from ..ingestion.models import RUNNING, IngestJob
from ..submissions.models import (
    ACCEPTED,
    ACCEPTED_WITH_WARNINGS,
    FAILED,
    QUEUED,
    REJECTED,
    VALIDATING,
    Delivery,
    DeliveryApproval,
    DeliveryFile,
)

#: Channels in the order the page shows them: (key, Chinese, English).
CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("http", "HTTP 接口", "HTTP API"), ("sftp", "SFTP", "SFTP"), ("dropbox", "投递目录", "Drop-box"),
    ("hub", "省级枢纽转发", "Hub forward"))
#: Stages in the order a delivery goes through them: (key, Chinese, English).
STAGES: tuple[tuple[str, str, str], ...] = (
    ("receiving", "接收中", "receiving"), ("queued", "等待校验", "waiting for validation"),
    ("validating", "校验中", "being validated"), (ACCEPTED, "已接收", "accepted"),
    (ACCEPTED_WITH_WARNINGS, "已接收（有警告）", "accepted with warnings"), (REJECTED, "已拒收", "rejected"),
    (FAILED, "校验失败", "failed"))
JUDGED = (ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED)
STAGING_CHANNEL = "http"  # uploads streaming into the archive (HTTP requests, the browser upload)


def human_size(n: int) -> str:
    """``1.5 MiB``: bytes in binary units, one decimal above a KiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover  (the loop always returns)


def human_duration(seconds: float | None) -> str:
    """``2 min 5 s``, ``1 h 3 min``, ``0.4 s``: how long a delivery took from receipt to verdict."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def parse_day(text: str | None, now: dt.datetime | None = None) -> dt.date:
    """A ``YYYY-MM-DD`` query argument; empty means today in Beijing time."""
    if not text:
        return as_utc(now or utcnow()).astimezone(BEIJING).date()
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"day must be a date YYYY-MM-DD, got {text!r}", f"日期应为 YYYY-MM-DD，收到 {text!r}",
                         code="invalid_arguments") from None


@dataclass(frozen=True)
class MonitorRow:
    """One delivery on the monitor."""

    delivery_id: int
    channel: str
    stage: str
    sender: str
    party: str | None
    check_name: str | None
    cycle: str | None
    files: int
    size: int
    received_at: dt.datetime
    verdict_at: dt.datetime | None
    errors: int
    warnings: int
    late: bool
    carried_over: bool  # received before the day, still not judged

    @property
    def seconds_to_verdict(self) -> float | None:
        """From receipt to verdict (or failure), when there is one."""
        if self.verdict_at is None:
            return None
        return max(0.0, (as_utc(self.verdict_at) - as_utc(self.received_at)).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        """The row as the JSON API gives it."""
        return {"delivery_id": self.delivery_id, "channel": self.channel, "stage": self.stage,
                "sender": self.sender, "party": self.party, "check_name": self.check_name, "cycle": self.cycle,
                "files": self.files, "size": self.size, "size_human": human_size(self.size),
                "received_at": iso(self.received_at), "verdict_at": iso(self.verdict_at),
                "seconds_to_verdict": self.seconds_to_verdict, "errors": self.errors, "warnings": self.warnings,
                "late": self.late, "carried_over": self.carried_over}


@dataclass(frozen=True)
class InFlight:
    """A file still arriving: in an inbox waiting for its delivery to be whole, or streaming into the archive."""

    channel: str
    party: str | None
    name: str
    size: int
    modified_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        """The file as the JSON API gives it."""
        return {"channel": self.channel, "party": self.party, "name": self.name, "size": self.size,
                "size_human": human_size(self.size), "modified_at": iso(self.modified_at)}


@dataclass
class Cell:
    """A total: how many and how many bytes."""

    count: int = 0
    size: int = 0

    def add(self, size: int) -> None:
        """Count one more item of ``size`` bytes."""
        self.count += 1
        self.size += size


@dataclass
class Monitor:
    """One day's picture: the deliveries, what is still arriving, totals per channel and stage."""

    day: dt.date
    today: dt.date
    rows: list[MonitorRow]
    in_flight: list[InFlight]
    totals: dict[str, dict[str, Cell]] = field(default_factory=dict)  # channel -> stage -> cell; "all" sums
    stage_totals: dict[str, Cell] = field(default_factory=dict)
    verdict_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # channel -> median, max

    @property
    def previous_day(self) -> dt.date:
        """The day before."""
        return self.day - dt.timedelta(days=1)

    @property
    def next_day(self) -> dt.date | None:
        """The day after, unless the monitor shows today."""
        return self.day + dt.timedelta(days=1) if self.day < self.today else None

    def as_dict(self) -> dict[str, Any]:
        """The whole picture as the JSON API gives it."""
        return {"day": self.day.isoformat(), "timezone": "Asia/Shanghai",
                "totals": {ch: {st: {"count": c.count, "size": c.size} for st, c in stages.items()}
                           for ch, stages in self.totals.items()},
                "stage_totals": {st: {"count": c.count, "size": c.size} for st, c in self.stage_totals.items()},
                "verdict_seconds": self.verdict_seconds,
                "deliveries": [r.as_dict() for r in self.rows], "in_flight": [f.as_dict() for f in self.in_flight]}


def _stage(status: str, job_state: str | None) -> str:
    if status in JUDGED or status == FAILED:
        return status
    if status == VALIDATING or job_state == RUNNING:
        return "validating"
    return QUEUED


class MonitorService:
    """Reads the deliveries of one day and what is still arriving (never changes anything)."""

    def __init__(self, session: Session, inboxes: list[tuple[str, Path]] | None = None,
                 staging: Path | None = None) -> None:
        self.session = session
        self.inboxes = inboxes or []  # (channel, root of a party tree)
        self.staging = staging

    def day(self, day: dt.date, now: dt.datetime | None = None) -> Monitor:
        """What arrived on ``day`` (Beijing), plus, on today's page, earlier deliveries still not judged."""
        now = as_utc(now or utcnow())
        today = now.astimezone(BEIJING).date()
        start = dt.datetime.combine(day, dt.time(0), BEIJING).astimezone(dt.timezone.utc)
        end = start + dt.timedelta(days=1)
        on_day = (Delivery.received_at >= start) & (Delivery.received_at < end)
        q = select(Delivery, Account.name, IngestJob.state, DeliveryApproval.hub) \
            .join(Account, Account.id == Delivery.account_id) \
            .outerjoin(IngestJob, IngestJob.delivery_id == Delivery.id) \
            .outerjoin(DeliveryApproval, DeliveryApproval.delivery_id == Delivery.id)
        if day == today:
            # Work still waiting from earlier days belongs on today's page: it is today's backlog.
            q = q.where(or_(on_day, (Delivery.received_at < start) & Delivery.status.in_((QUEUED, VALIDATING))))
        else:
            q = q.where(on_day)
        found = list(self.session.execute(q.order_by(Delivery.received_at.desc(), Delivery.id.desc())))
        files: dict[int, int] = {}
        ids = [d.id for d, *_ in found]
        for chunk in range(0, len(ids), 500):  # one query per 500, never one per delivery
            files.update({i: int(n) for i, n in self.session.execute(
                select(DeliveryFile.delivery_id, func.count()).where(DeliveryFile.delivery_id.in_(ids[chunk:chunk + 500]))
                .group_by(DeliveryFile.delivery_id))})
        rows = []
        for d, sender, job_state, hub in found:
            stage = _stage(d.status, job_state)
            rows.append(MonitorRow(
                d.id, "hub" if hub else d.channel, stage, sender, d.party, d.check_name, d.period, files.get(d.id, 0),
                int(d.total_size or 0), as_utc(d.received_at),
                as_utc(d.validated_at) if d.validated_at and stage in (*JUDGED, FAILED) else None,
                d.errors, d.warnings, d.late, as_utc(d.received_at) < start))
        in_flight = self._in_flight() if day == today else []
        return self._totals(Monitor(day, today, rows, in_flight))

    def _in_flight(self) -> list[InFlight]:
        out: list[InFlight] = []
        for channel, root in self.inboxes:
            if not root.is_dir():
                continue
            for party_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                inbox = party_dir / "inbox"
                if inbox.is_dir():
                    out.extend(self._files(inbox, channel, party_dir.name))
        if self.staging is not None and self.staging.is_dir():
            out.extend(self._files(self.staging, STAGING_CHANNEL, None, hidden_ok=True))
        return sorted(out, key=lambda f: f.modified_at, reverse=True)

    @staticmethod
    def _files(folder: Path, channel: str, party: str | None, hidden_ok: bool = False) -> list[InFlight]:
        found = []
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return []
        for e in entries:
            if (e.name.startswith(".") and not hidden_ok) or not e.is_file(follow_symlinks=False):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:  # taken by the scanner meanwhile: no longer in flight
                continue
            found.append(InFlight(channel, party, e.name, st.st_size,
                                  dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)))
        return found

    @staticmethod
    def _totals(m: Monitor) -> Monitor:
        keys = [c for c, _zh, _en in CHANNELS]
        m.totals = {ch: {st: Cell() for st, _zh, _en in STAGES} for ch in [*keys, "all"]}
        m.stage_totals = m.totals["all"]
        for f in m.in_flight:
            for ch in (f.channel, "all"):
                m.totals.setdefault(ch, {st: Cell() for st, _zh, _en in STAGES})["receiving"].add(f.size)
        waits: dict[str, list[float]] = {}
        for r in m.rows:
            for ch in (r.channel, "all"):
                m.totals.setdefault(ch, {st: Cell() for st, _zh, _en in STAGES})[r.stage].add(r.size)
                if r.seconds_to_verdict is not None:
                    waits.setdefault(ch, []).append(r.seconds_to_verdict)
        for ch, values in waits.items():
            values.sort()
            mid = len(values) // 2
            median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
            m.verdict_seconds[ch] = {"median": round(median, 3), "max": round(values[-1], 3)}
        return m


def monitor_service(session: Session, rt: Any) -> MonitorService:
    """The service over this server's inboxes (embedded SFTP, drop-box) and the archive's staging folder."""
    s = rt.settings
    inboxes = [("sftp", s.sftp_root)]
    if s.dropbox_root:
        inboxes.append(("dropbox", Path(s.dropbox_root)))
    staging = getattr(rt.archive, "staging", None)
    return MonitorService(session, inboxes, staging if isinstance(staging, Path) else None)
