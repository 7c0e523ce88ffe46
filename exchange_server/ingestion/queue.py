"""The durable queue: claiming jobs safely with several workers, leases for crashed ones.

A worker claims the oldest queued job (or one whose lease ran out: its worker died) with a
conditional UPDATE, so two workers can never both win it; on PostgreSQL the candidate is
picked with ``FOR UPDATE SKIP LOCKED`` so workers do not queue up behind each other.
"""
from __future__ import annotations

import datetime as dt
import os
import socket

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from ..clock import utcnow
from .models import DONE, FAILED, QUEUED, RUNNING, IngestJob


def worker_identity(suffix: str = "") -> str:
    """``host:pid[:suffix]``: who holds a job, so a restarted server can tell its dead ones."""
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{suffix}" if suffix else "")


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    return or_(IngestJob.state == QUEUED, and_(IngestJob.state == RUNNING, IngestJob.lease_until < now))


def claim(session: Session, worker: str, lease_seconds: int) -> IngestJob | None:
    """Take the next job, or None when there is nothing to do. Commits."""
    now = utcnow()
    candidate = session.scalar(select(IngestJob.id).where(_claimable(now)).order_by(IngestJob.id).limit(1)
                               .with_for_update(skip_locked=True))
    if candidate is None:
        session.commit()
        return None
    result = session.execute(
        update(IngestJob).where(IngestJob.id == candidate, _claimable(now))
        .values(state=RUNNING, locked_by=worker, lease_until=now + dt.timedelta(seconds=lease_seconds),
                attempts=IngestJob.attempts + 1))
    session.commit()
    if getattr(result, "rowcount", 0) != 1:
        return None
    return session.get(IngestJob, candidate)


def still_mine(session: Session, job_id: int, worker: str) -> bool:
    """Whether the job is still held by ``worker`` (false if its lease ran out and another took it)."""
    job = session.get(IngestJob, job_id, with_for_update=True, populate_existing=True)
    return job is not None and job.state == RUNNING and job.locked_by == worker


def finish(job: IngestJob, failed: bool = False, error: str | None = None) -> None:
    """Mark a job done (or failed for good)."""
    job.state = FAILED if failed else DONE
    job.finished_at = utcnow()
    job.last_error = error
    job.locked_by = None
    job.lease_until = None


def release(session: Session, job_id: int, error: str) -> None:
    """Give a job back to the queue after a failed attempt."""
    session.execute(update(IngestJob).where(IngestJob.id == job_id)
                    .values(state=QUEUED, locked_by=None, lease_until=None, last_error=error))


def recover_orphans(session: Session) -> int:
    """Requeue jobs held by processes of this host that no longer exist (a restart after a crash)."""
    host = socket.gethostname()
    n = 0
    for job in session.scalars(select(IngestJob).where(IngestJob.state == RUNNING)):
        parts = (job.locked_by or "").split(":")
        if len(parts) >= 2 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
            job.state, job.locked_by, job.lease_until = QUEUED, None, None
            n += 1
    session.commit()
    return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pending(session: Session) -> int:
    """Jobs waiting or running."""
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(IngestJob).where(IngestJob.state.in_((QUEUED, RUNNING)))) or 0
