"""Running the reporting calendar: create, open, close, reopen, deadlines."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas import Spec
from schemas.conventions import Cycle

from ..audit.services import record
from ..clock import BEIJING, parse_beijing_stamp
from ..errors import BadRequest, Conflict, NotFound, Unprocessable
from .models import CLOSED, OPEN, PLANNED, ReportingCycle

DEFAULT_UNITS = "31201,31202,31203,32001,32002,32003"
FREQ_NAMES = {"M": "{y}年{m}月", "Q": "{y}年第{q}季度", "H": "{y}年{h}半年", "Y": "{y}年"}


def default_deadline(cycle: Cycle) -> dt.datetime:
    """The 10th day after the period ends, 18:00 Beijing time (the usual calendar)."""
    day = cycle.end + dt.timedelta(days=10)
    return dt.datetime.combine(day, dt.time(18, 0), BEIJING).astimezone(dt.timezone.utc)


def cycle_name(cycle: Cycle) -> str:
    """A readable Chinese name such as 2026年10月 or 2026年第3季度."""
    y = cycle.begin.year
    if cycle.freq == "M":
        return f"{y}年{cycle.begin.month}月"
    if cycle.freq == "Q":
        return f"{y}年第{cycle.id[-1]}季度"
    if cycle.freq == "H":
        return f"{y}年{'上' if cycle.id[-1] == '1' else '下'}半年"
    return f"{y}年"


class CycleService:
    """The calendar HQ publishes and the state of each cycle."""

    def __init__(self, session: Session, spec: Spec, actor: str = "system") -> None:
        self.session = session
        self.spec = spec
        self.actor = actor

    def get(self, cycle_id: str) -> ReportingCycle:
        """One cycle; NotFound when it is not in the calendar."""
        cycle = self.session.get(ReportingCycle, cycle_id)
        if cycle is None:
            raise NotFound(f"cycle {cycle_id} is not in the reporting calendar", f"周期 {cycle_id} 不在报告日历中",
                           code="cycle_not_found")
        return cycle

    def find(self, cycle_id: str) -> ReportingCycle | None:
        """One cycle, or None."""
        return self.session.get(ReportingCycle, cycle_id)

    def calendar(self, state: str | None = None) -> list[ReportingCycle]:
        """The calendar, newest first."""
        q = select(ReportingCycle).order_by(ReportingCycle.begin_date.desc(), ReportingCycle.id.desc())
        if state:
            q = q.where(ReportingCycle.state == state)
        return list(self.session.scalars(q))

    def known_ids(self) -> frozenset[str]:
        """Every cycle id in the calendar."""
        return frozenset(self.session.scalars(select(ReportingCycle.id)))

    def create(self, cycle_id: str, deadline: dt.datetime | None = None, units_due: str | None = None,
               name: str | None = None, remark: str = "", state: str = PLANNED) -> ReportingCycle:
        """Add a cycle to the calendar (planned unless ``state`` says otherwise)."""
        try:
            parsed = Cycle.parse(cycle_id)
        except ValueError:
            raise BadRequest(f"{cycle_id!r} is not a cycle id (202610, 2026Q3, 2026H2, 2026)",
                             f"{cycle_id!r} 不是周期标识（如 202610、2026Q3、2026H2、2026）", code="bad_cycle_id") from None
        if self.find(cycle_id) is not None:
            raise Conflict(f"cycle {cycle_id} already exists", f"周期 {cycle_id} 已存在", code="cycle_exists")
        units = self._units(units_due or DEFAULT_UNITS)
        deadline = deadline or default_deadline(parsed)
        if deadline.tzinfo is None:
            raise BadRequest("the deadline needs a time zone", "截止时间需要时区", code="bad_deadline")
        if state not in (PLANNED, OPEN, CLOSED):
            raise BadRequest(f"state must be planned, open or closed, got {state!r}", "状态应为 planned/open/closed",
                             code="bad_state")
        cycle = ReportingCycle(id=cycle_id, freq=parsed.freq, name=name or cycle_name(parsed), begin_date=parsed.begin,
                               end_date=parsed.end, deadline=deadline, units_due=units, state=state, remark=remark)
        self.session.add(cycle)
        self.session.flush()
        record(self.session, self.actor, "cycle.create", f"cycle:{cycle_id}", state=state,
               deadline=deadline.isoformat(), units_due=units)
        return cycle

    def _units(self, text: str) -> str:
        codes = [u.strip() for u in text.split(",") if u.strip()]
        bad = [u for u in codes if not self.spec.has_unit(u) or self.spec.unit(u).direction != "up"]
        if not codes or bad:
            ups = ",".join(u.code for u in self.spec.units if u.direction == "up")
            raise BadRequest(f"units due must be upload unit codes ({ups}); not: {','.join(bad) or '(none)'}",
                             f"应报单元须为上报单元编码（{ups}）", code="bad_units")
        return ",".join(sorted(set(codes)))

    def _move(self, cycle_id: str, allowed_from: tuple[str, ...], to: str, action: str) -> ReportingCycle:
        cycle = self.get(cycle_id)
        if cycle.state not in allowed_from:
            raise Conflict(f"cycle {cycle_id} is {cycle.state}; cannot {action} it",
                           f"周期 {cycle_id} 当前为 {cycle.state}，不能执行 {action}", code=f"cycle_not_{'_'.join(allowed_from)}")
        before = cycle.state
        cycle.state = to
        record(self.session, self.actor, f"cycle.{action}", f"cycle:{cycle_id}", before=before, after=to)
        return cycle

    def open(self, cycle_id: str) -> ReportingCycle:
        """Start accepting deliveries for a planned cycle."""
        return self._move(cycle_id, (PLANNED,), OPEN, "open")

    def close(self, cycle_id: str) -> ReportingCycle:
        """Stop accepting deliveries; later ones are rejected with E601."""
        return self._move(cycle_id, (OPEN,), CLOSED, "close")

    def reopen(self, cycle_id: str) -> ReportingCycle:
        """Accept deliveries again for a closed cycle (late ones still count as late)."""
        return self._move(cycle_id, (CLOSED,), OPEN, "reopen")

    def set_deadline(self, cycle_id: str, deadline: dt.datetime) -> ReportingCycle:
        """Move a cycle's deadline."""
        if deadline.tzinfo is None:
            raise BadRequest("the deadline needs a time zone", "截止时间需要时区", code="bad_deadline")
        cycle = self.get(cycle_id)
        before = cycle.deadline.isoformat()
        cycle.deadline = deadline
        record(self.session, self.actor, "cycle.deadline", f"cycle:{cycle_id}", before=before,
               after=deadline.isoformat())
        return cycle

    def import_calendar(self, check_file: Path, state: str = PLANNED) -> list[ReportingCycle]:
        """Add the cycles of a REP_CYCLE (32004) delivery HQ prepared in the spec's format."""
        from schemas.validation import REJECTED, validate_delivery
        from schemas.validation.engine import group_deliveries
        from schemas.validation.readers import text_lines

        from schemas.conventions import CheckFile

        groups = group_deliveries([check_file.parent])
        group = next((g for g in groups if check_file in g), None) or [check_file]
        report = validate_delivery(group, self.spec)
        if report.status == REJECTED:
            raise Unprocessable(f"calendar {check_file.name} is invalid", f"报告日历 {check_file.name} 校验未通过",
                                code="calendar_invalid",
                                errors=[f.as_dict() for f in report.findings if f.severity == "error"][:50])
        check = CheckFile.parse(check_file.read_bytes())
        unit = self.spec.unit("REP_CYCLE")
        created = []
        for entry in check.entries:
            path = check_file.parent / entry.name
            if not entry.name.endswith(".txt") or f"_{unit.code}_" not in entry.name:
                continue
            for line in text_lines(path, check.encoding):
                row = dict(zip(unit.field_ids, line.rstrip("\r").split(check.delimiter)))
                if self.find(row["CYCLE_ID"]) is not None:
                    continue
                created.append(self.create(row["CYCLE_ID"], parse_beijing_stamp(row["DEADLINE"]), row["UNITS_DUE"],
                                           row["CYCLE_NAME"], row.get("REMARK") or "", state))
        return created
