"""The admin console's rules: cycle exceptions, sign-in lockout, audit search.

Services take a session (and the acting account's name) and raise the server's domain
errors; nothing here commits, so a change and its audit event land in one transaction.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlalchemy import String, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from ..audit.models import AuditEvent
from ..audit.services import record
from ..clock import as_utc, iso, utcnow
from ..cycles.models import ReportingCycle
from ..errors import BadRequest, NotFound
from ..org.models import PROVINCE, Area
from .models import CycleException, LoginAttempt

# -- cycle exceptions -------------------------------------------------------------------------


class CycleExceptionService:
    """Time-limited permission for one province to deliver to a closed (or overdue) cycle."""

    def __init__(self, session: Session, actor: str = "system") -> None:
        self.session = session
        self.actor = actor

    def grant(self, cycle_id: str, province: str, until: dt.datetime, reason: str) -> CycleException:
        """Let ``province`` deliver to ``cycle_id`` until ``until`` (aware, in the future), for ``reason``."""
        if self.session.get(ReportingCycle, cycle_id) is None:
            raise NotFound(f"cycle {cycle_id} is not in the reporting calendar", f"周期 {cycle_id} 不在报告日历中",
                           code="cycle_not_found")
        area = self.session.get(Area, province)
        if area is None or area.level != PROVINCE:
            raise BadRequest(f"{province!r} is not a province code", f"{province!r} 不是省份编码", code="bad_province")
        if until.tzinfo is None:
            raise BadRequest("the end of the exception needs a time zone", "例外截止时间需要时区", code="bad_until")
        if as_utc(until) <= utcnow():
            raise BadRequest("the exception must end in the future", "例外截止时间须晚于当前时间", code="bad_until")
        reason = reason.strip()
        if not reason:
            raise BadRequest("give a reason for the exception", "请填写例外原因", code="reason_missing")
        if len(reason) > 500:
            raise BadRequest("the reason is longer than 500 characters", "原因超过500个字符", code="reason_too_long")
        exc = CycleException(cycle_id=cycle_id, province=province, until=as_utc(until), reason=reason,
                             granted_by=self.actor)
        self.session.add(exc)
        self.session.flush()
        record(self.session, self.actor, "cycle.exception.grant", f"cycle:{cycle_id}", exception_id=exc.id,
               province=province, until=iso(exc.until), reason=reason)
        return exc

    def revoke(self, exception_id: int) -> CycleException:
        """End an exception at once (it stays on record)."""
        exc = self.session.get(CycleException, exception_id)
        if exc is None:
            raise NotFound(f"no cycle exception {exception_id}", f"周期例外 {exception_id} 不存在",
                           code="exception_not_found")
        if exc.revoked_at is None:
            exc.revoked_at = utcnow()
            exc.revoked_by = self.actor
            record(self.session, self.actor, "cycle.exception.revoke", f"cycle:{exc.cycle_id}",
                   exception_id=exc.id, province=exc.province)
        return exc

    def listing(self, cycle_id: str | None = None) -> list[CycleException]:
        """Exceptions (of one cycle, or all), newest first."""
        q = select(CycleException).order_by(CycleException.granted_at.desc(), CycleException.id.desc())
        if cycle_id is not None:
            q = q.where(CycleException.cycle_id == cycle_id)
        return list(self.session.scalars(q))

    def in_force(self, now: dt.datetime | None = None) -> dict[tuple[str, str], dt.datetime]:
        """(province, cycle) -> when its exception ends, for every exception valid at ``now`` (the latest end wins)."""
        now = as_utc(now or utcnow())
        out: dict[tuple[str, str], dt.datetime] = {}
        for e in self.session.scalars(select(CycleException).where(CycleException.revoked_at.is_(None),
                                                                   CycleException.until >= now)):
            until, key = as_utc(e.until), (e.province, e.cycle_id)
            if key not in out or until > out[key]:
                out[key] = until
        return out

    def valid(self, cycle_id: str, province: str, at: dt.datetime) -> CycleException | None:
        """The exception covering a delivery of ``province`` to ``cycle_id`` received at ``at`` (latest end), or None."""
        return self.session.scalars(
            select(CycleException).where(CycleException.cycle_id == cycle_id, CycleException.province == province,
                                         CycleException.revoked_at.is_(None), CycleException.until >= as_utc(at))
            .order_by(CycleException.until.desc()).limit(1)).first()


# -- sign-in lockout --------------------------------------------------------------------------

MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)


class LoginGuard:
    """Locks a sign-in name for 15 minutes after 5 wrong passwords within 15 minutes.

    Names are tracked whether or not such an account exists, so the lockout does not tell
    which accounts exist. Refused attempts during a lockout are not counted (the lock does
    not extend itself); a successful sign-in clears the name's failures.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def _failures(self, name: str, now: dt.datetime) -> list[dt.datetime]:
        since = now - FAILURE_WINDOW - LOCKOUT
        return [as_utc(t) for t in self.session.scalars(
            select(LoginAttempt.at).where(LoginAttempt.account_name == name, LoginAttempt.ok.is_(False),
                                          LoginAttempt.at >= since).order_by(LoginAttempt.at))]

    def locked_until(self, name: str, now: dt.datetime | None = None) -> dt.datetime | None:
        """When the name's lockout ends, if it is locked now."""
        now = now or utcnow()
        times = self._failures(name, now)
        until = None
        for i in range(MAX_FAILURES - 1, len(times)):
            if times[i] - times[i - MAX_FAILURES + 1] <= FAILURE_WINDOW:
                until = times[i] + LOCKOUT
        return until if until is not None and until > now else None

    def failed(self, name: str, remote: str | None = None, now: dt.datetime | None = None) -> dt.datetime | None:
        """Count a wrong password; returns when the lockout ends if this failure starts one (audited)."""
        now = now or utcnow()
        self.session.add(LoginAttempt(account_name=name[:64], at=now, ok=False))
        self.session.flush()
        until = self.locked_until(name, now)
        if until is not None:
            record(self.session, "system", "auth.lockout", f"account:{name[:100]}", failures=MAX_FAILURES,
                   window_minutes=int(FAILURE_WINDOW.total_seconds() // 60), until=iso(until), remote=remote)
        return until

    def succeeded(self, name: str, now: dt.datetime | None = None) -> None:
        """A successful sign-in: clear the name's failures and note the success."""
        self.session.execute(delete(LoginAttempt).where(LoginAttempt.account_name == name,
                                                        LoginAttempt.ok.is_(False)))
        self.session.add(LoginAttempt(account_name=name[:64], at=now or utcnow(), ok=True))


# -- audit search -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    """What to look for in the audit log; empty fields match everything."""

    actor: str = ""
    action: str = ""  # a prefix: "cycle." finds every cycle change
    target: str = ""  # a prefix: "cycle:202610", "account:"
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # exclusive
    text: str = ""  # anywhere in the detail
    page: int = 1
    per_page: int = 50


@dataclass
class AuditPage:
    """One page of matching events, newest first."""

    events: list[AuditEvent]
    total: int
    page: int
    per_page: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        self.pages = max(1, -(-self.total // self.per_page))


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditSearch:
    """Reads the append-only audit log (there is no way to change it here or anywhere)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def search(self, q: AuditQuery) -> AuditPage:
        """Events matching ``q``, newest first, one page."""
        conds = []
        if q.actor:
            conds.append(AuditEvent.actor == q.actor)
        if q.action:
            conds.append(AuditEvent.action.like(_like(q.action) + "%", escape="\\"))
        if q.target:
            conds.append(AuditEvent.target.like(_like(q.target) + "%", escape="\\"))
        if q.since is not None:
            conds.append(AuditEvent.at >= q.since)
        if q.until is not None:
            conds.append(AuditEvent.at < q.until)
        if q.text:
            # The detail is stored as JSON text, non-ASCII escaped (\uXXXX): look for both spellings.
            detail = cast(AuditEvent.detail, String)
            spellings = {q.text, json.dumps(q.text)[1:-1]}
            conds.append(or_(*(detail.ilike("%" + _like(s) + "%", escape="\\") for s in spellings)))
        total = self.session.scalar(select(func.count()).select_from(AuditEvent).where(*conds)) or 0
        per_page = min(max(q.per_page, 1), 500)
        page = max(q.page, 1)
        events = list(self.session.scalars(select(AuditEvent).where(*conds)
                                           .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                                           .offset((page - 1) * per_page).limit(per_page)))
        return AuditPage(events, total, page, per_page)

    def actors(self) -> list[str]:
        """Every actor that appears in the log (for the filter's suggestions)."""
        return list(self.session.scalars(select(AuditEvent.actor).distinct().order_by(AuditEvent.actor)))
