"""Who is late or missing for a cycle, by name, and each province's timeliness over the last 12 cycles.

Read-only. A party (a province, or a local network sending on its own) has *reported* a unit
of a cycle when a delivery of it was accepted; the time that counts is the receipt of the
first such delivery (a later resend does not make an on-time report late), compared with the
party's deadline: the cycle's, or — while HQ granted its province an exception — the
exception's end (a revoked exception ends when it was revoked). A cycle is *due* for a party
once it is in the calendar, no longer planned, and that deadline has passed; before that a
party that has not reported is simply not yet due, never late.

Days late are whole days, a started day counting as one: received 2 hours after the deadline
is 1 day late; missing is counted up to now (``clock.utcnow``, so tests can set it).

Everything comes from one grouped query over the accepted versions of the cycles shown (the
first receipt per party, unit and cycle), plus the calendar, exceptions, areas and accounts:
no query per cell.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..accounts.models import PROVINCE as PROVINCE_ROLE
from ..accounts.models import Account
from ..admin.models import CycleException
from ..clock import as_utc, beijing_stamp, utcnow
from ..cycles.models import PLANNED, ReportingCycle
from ..org.models import LOCAL_NETWORK, PROVINCE, Area
from ..submissions.models import DataScope, Delivery, UnitVersion
from .rollups import latest_received, previous_cycle

HISTORY_LENGTH = 12
ON_TIME, LATE, MISSING, NOT_DUE = "on_time", "late", "missing", "not_due"
# How the history grid and the lists show a state: symbol, Chinese, English.
TIMELINESS_STATES: dict[str, tuple[str, str, str]] = {
    ON_TIME: ("✓", "按时", "on time"),
    LATE: ("!", "逾期", "late"),
    MISSING: ("✗", "缺报", "missing"),
    NOT_DUE: ("", "未到期", "not yet due"),
}
DAY = dt.timedelta(days=1)


def days_late(deadline: dt.datetime, moment: dt.datetime) -> int:
    """Whole days from the deadline to ``moment``, a started day counting as one; 0 when not after it."""
    seconds = (as_utc(moment) - as_utc(deadline)).total_seconds()
    return max(0, math.ceil(seconds / DAY.total_seconds()))


@dataclass(frozen=True)
class Contact:
    """An account that sends for a party: its login name, display name and e-mail (set on the reminders page)."""

    name: str
    display_name: str
    email: str = ""


@dataclass
class LateItem:
    """One party and unit of the cycle that is late or missing."""

    prov_id: str
    prov_name_zh: str
    prov_name_en: str
    party: str  # the province, or one of its local networks sending on its own
    party_name_zh: str
    party_name_en: str
    is_network: bool
    unit: str
    unit_name: str  # VIP_SUMMARY
    unit_name_zh: str
    unit_name_en: str
    state: str  # LATE | MISSING
    deadline: dt.datetime  # the party's own deadline (an exception's end where one was granted)
    exception_until: dt.datetime | None
    received_at: dt.datetime | None  # late: the receipt of the first accepted delivery
    days_late: int
    contacts: list[Contact]
    # Missing, but something was received and not accepted: (delivery id, status) of the latest.
    received_not_accepted: tuple[int, str] | None = None


@dataclass
class PartyLate:
    """One party's late and missing units of the cycle, as the page lists them (a row per party)."""

    first: LateItem  # names, deadline and contacts are the party's, the same in each of its items
    items: list[LateItem]

    @property
    def state(self) -> str:
        """MISSING when any unit is missing, else LATE."""
        return MISSING if any(i.state == MISSING for i in self.items) else LATE

    @property
    def days_late(self) -> int:
        """The most days late of its units."""
        return max(i.days_late for i in self.items)

    @property
    def received_at(self) -> dt.datetime | None:
        """The first receipt of its late units (None when every unit is missing)."""
        times = [i.received_at for i in self.items if i.received_at is not None]
        return min(times) if times else None


@dataclass
class HistoryCell:
    """One province in one cycle: on time, late, missing or not yet due, and the units that made it so."""

    cycle: str
    state: str
    late_units: list[str] = field(default_factory=list)
    missing_units: list[str] = field(default_factory=list)


@dataclass
class HistoryRow:
    """One province's timeliness over the last cycles, oldest first, with its counts."""

    prov_id: str
    name_zh: str
    name_en: str
    cells: list[HistoryCell]
    reported: int  # cycles with every due unit accepted (on time or late)
    on_time: int
    due: int  # cycles of the window that were due, or reported anyway


@dataclass
class Timeliness:
    """The late-and-missing answer for one cycle."""

    cycle: ReportingCycle
    now: dt.datetime
    deadline: dt.datetime
    deadline_passed: bool
    items: list[LateItem]
    history_cycles: list[str]
    history: list[HistoryRow]

    @property
    def late(self) -> int:
        """How many (party, unit) are late."""
        return sum(1 for i in self.items if i.state == LATE)

    @property
    def missing(self) -> int:
        """How many (party, unit) are missing."""
        return sum(1 for i in self.items if i.state == MISSING)

    @property
    def parties(self) -> list[PartyLate]:
        """The items grouped by party (province first, then its networks), in the items' order."""
        out: dict[str, PartyLate] = {}
        for i in self.items:
            found = out.get(i.party)
            if found is None:
                out[i.party] = PartyLate(i, [i])
            else:
                found.items.append(i)
        return list(out.values())


class TimelinessService:
    """Late and missing parties of a cycle and the provinces' timeliness history (read-only)."""

    def __init__(self, session: Session, spec: Any, now: dt.datetime | None = None) -> None:
        self.session = session
        self.spec = spec
        self.now = as_utc(now) if now is not None else utcnow()

    # -- reads ---------------------------------------------------------------------------------
    def _window(self, cycle_id: str) -> list[str]:
        """The cycle and the HISTORY_LENGTH - 1 before it of the same frequency, oldest first."""
        ids = [cycle_id]
        while len(ids) < HISTORY_LENGTH:
            prev = previous_cycle(ids[-1])
            if prev is None:
                break
            ids.append(prev)
        return list(reversed(ids))

    def _first_receipts(self, cycles: list[str]) -> dict[tuple[str, str, str], dt.datetime]:
        """(cycle, party, unit) -> receipt of the first accepted delivery (one grouped query)."""
        sc, v, d = DataScope, UnitVersion, Delivery
        q = (select(sc.cycle, sc.party, sc.unit, func.min(d.received_at))
             .join(v, v.scope_id == sc.id).join(d, d.id == v.delivery_id)
             .where(sc.cycle.in_(cycles), d.mode == "P", d.entitled.is_(True))
             .group_by(sc.cycle, sc.party, sc.unit))
        return {(c, p, u): as_utc(at) for c, p, u, at in self.session.execute(q) if at is not None}

    def _deadlines(self, cycles: list[ReportingCycle]) -> dict[tuple[str, str], dt.datetime]:
        """(cycle, province) -> the end of the province's exception, where it extends the cycle's deadline."""
        out: dict[tuple[str, str], dt.datetime] = {}
        deadline = {c.id: as_utc(c.deadline) for c in cycles}
        for e in self.session.scalars(select(CycleException).where(CycleException.cycle_id.in_(list(deadline)))):
            # A revoked exception covered deliveries until it was revoked, no longer.
            end = as_utc(e.until) if e.revoked_at is None else min(as_utc(e.until), as_utc(e.revoked_at))
            key = (e.cycle_id, e.province)
            if end > deadline[e.cycle_id] and end > out.get(key, deadline[e.cycle_id]):
                out[key] = end
        return out

    def _contacts(self) -> dict[str, list[Contact]]:
        """Party -> the active province-role accounts that send for it."""
        out: dict[str, list[Contact]] = {}
        for name, display, party, email in self.session.execute(
                select(Account.name, Account.display_name, Account.party, Account.email)
                .where(Account.role == PROVINCE_ROLE, Account.active.is_(True), Account.party.is_not(None))
                .order_by(Account.name)):
            out.setdefault(str(party), []).append(Contact(name, display or "", email or ""))
        return out

    def _not_accepted(self, cycle_id: str) -> dict[tuple[str, str], tuple[int, str]]:
        """(party, unit) -> the latest delivery of the cycle received for it (its id and status)."""
        return latest_received(self.session, cycle_id)

    # -- the answer ------------------------------------------------------------------------------
    def report(self, cycle: ReportingCycle) -> Timeliness:
        """Who is late or missing for ``cycle`` (provinces, and networks sending on their own), and the history."""
        window = self._window(cycle.id)
        calendar = {c.id: c for c in self.session.scalars(select(ReportingCycle).where(ReportingCycle.id.in_(window)))}
        calendar[cycle.id] = cycle
        first = self._first_receipts(window)
        extended = self._deadlines(list(calendar.values()))
        areas = list(self.session.scalars(select(Area).where(Area.level.in_((PROVINCE, LOCAL_NETWORK)))
                                          .order_by(Area.code)))
        provinces = [a for a in areas if a.level == PROVINCE and a.active]
        networks: dict[str, list[Area]] = {}
        for a in areas:
            if a.level == LOCAL_NETWORK and a.active and a.parent_code:
                networks.setdefault(a.parent_code, []).append(a)
        parent = {a.code: a.parent_code for a in areas if a.level == LOCAL_NETWORK and a.parent_code}
        contacts = self._contacts()
        # Province -> its first receipt per (cycle, unit), whoever of it sent (itself or a network).
        by_province: dict[tuple[str, str, str], dt.datetime] = {}
        for (cid, party, unit), first_at in first.items():
            key = (cid, parent.get(party, party), unit)
            if key not in by_province or first_at < by_province[key]:
                by_province[key] = first_at
        # Provinces whose networks send (or may send) on their own: their networks are listed too.
        sending_networks = {parent[p] for (_c, p, _u) in first if p in parent} | \
            {parent[p] for p in contacts if p in parent}

        def deadline_of(c: ReportingCycle, prov: str) -> tuple[dt.datetime, dt.datetime | None]:
            until = extended.get((c.id, prov))
            return (until or as_utc(c.deadline)), until

        def state(c: ReportingCycle | None, prov: str, at: dt.datetime | None) -> tuple[str, int]:
            if c is None:
                return (ON_TIME, 0) if at is not None else (NOT_DUE, 0)
            deadline, _until = deadline_of(c, prov)
            if at is not None:
                return (ON_TIME, 0) if at <= deadline else (LATE, days_late(deadline, at))
            if c.state == PLANNED or self.now <= deadline:
                return NOT_DUE, 0
            return MISSING, days_late(deadline, self.now)

        units = cycle.units
        received = self._not_accepted(cycle.id)
        items: list[LateItem] = []
        for p in provinces:
            parties: list[tuple[Area, bool]] = [(p, False)]
            if p.code in sending_networks:
                parties += [(n, True) for n in networks.get(p.code, [])]
            deadline, until = deadline_of(cycle, p.code)
            for area, is_network in parties:
                for u in units:
                    if is_network:
                        # A network is covered by its own delivery or by its province's.
                        times = [t for t in (first.get((cycle.id, area.code, u)), first.get((cycle.id, p.code, u)))
                                 if t is not None]
                        at = min(times) if times else None
                    else:
                        at = by_province.get((cycle.id, p.code, u))
                    st, days = state(cycle, p.code, at)
                    if st not in (LATE, MISSING):
                        continue
                    spec_unit = self.spec.unit(u)
                    items.append(LateItem(
                        p.code, p.name_zh, p.name_en, area.code, area.name_zh, area.name_en, is_network, u,
                        spec_unit.name, spec_unit.name_zh, spec_unit.name_en, st, deadline, until,
                        at if st == LATE else None, days, contacts.get(area.code, []),
                        received.get((area.code, u)) if st == MISSING else None))
        history: list[HistoryRow] = []
        for p in provinces:
            cells = []
            for cid in window:
                listed = calendar.get(cid)
                cell = HistoryCell(cid, NOT_DUE)
                states = [(u, *state(listed, p.code, by_province.get((cid, p.code, u))))
                          for u in (listed.units if listed else [])]
                cell.late_units = [u for u, st, _d in states if st == LATE]
                cell.missing_units = [u for u, st, _d in states if st == MISSING]
                if states and all(st == ON_TIME for _u, st, _d in states):
                    cell.state = ON_TIME
                elif cell.missing_units:
                    cell.state = MISSING
                elif cell.late_units and all(st in (ON_TIME, LATE) for _u, st, _d in states):
                    cell.state = LATE
                cells.append(cell)
            reported = sum(1 for c in cells if c.state in (ON_TIME, LATE))
            history.append(HistoryRow(p.code, p.name_zh, p.name_en, cells, reported,
                                      sum(1 for c in cells if c.state == ON_TIME),
                                      sum(1 for c in cells if c.state != NOT_DUE)))
        items.sort(key=lambda i: (i.prov_id, i.is_network, i.party, i.unit))
        deadline = as_utc(cycle.deadline)
        return Timeliness(cycle, self.now, deadline, cycle.state != PLANNED and deadline < self.now, items, window,
                          history)


# -- download ------------------------------------------------------------------------------------
CSV_COLUMNS: list[tuple[str, str, str]] = [
    ("prov_id", "省份编码", "Province code"), ("prov_name_zh", "省份", "Province (Chinese)"),
    ("prov_name_en", "省份（英文）", "Province"), ("party", "报送方", "Party"),
    ("party_name_zh", "报送方名称", "Party name (Chinese)"), ("party_name_en", "报送方名称（英文）", "Party name"),
    ("unit", "单元", "Unit"), ("unit_name", "单元名", "Unit name"), ("state", "状态", "State"),
    ("deadline", "截止（北京时间）", "Deadline (Beijing)"), ("exception_until", "例外至（北京时间）", "Exception until (Beijing)"),
    ("received_at", "收到（北京时间）", "Received (Beijing)"), ("days_late", "逾期天数", "Days late"),
    ("accounts", "账户", "Accounts"), ("note", "说明", "Note"),
]


def _stamp(moment: dt.datetime | None) -> str:
    """A moment as ``YYYY-MM-DD HH:MM:SS`` Beijing time ('' for none)."""
    if moment is None:
        return ""
    s = beijing_stamp(moment)
    return f"{s[:4]}-{s[4:6]}-{s[6:8]} {s[8:10]}:{s[10:12]}:{s[12:14]}"


def late_csv(report: Timeliness) -> bytes:
    """The late and missing list as CSV: UTF-8 with BOM (Excel reads the Chinese right), CRLF, bilingual header."""
    buf = io.StringIO()
    # Text quoted, numbers not: LibreOffice keeps quoted codes as text (docs/rollups.md).
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([f"{zh} {en}" for _key, zh, en in CSV_COLUMNS])
    for i in report.items:
        sym, zh, en = TIMELINESS_STATES[i.state]
        note = ""
        if i.received_not_accepted:
            note = f"已收到未采纳 received, not accepted: #{i.received_not_accepted[0]} {i.received_not_accepted[1]}"
        row: dict[str, Any] = {"prov_id": i.prov_id, "prov_name_zh": i.prov_name_zh, "prov_name_en": i.prov_name_en,
               "party": i.party, "party_name_zh": i.party_name_zh, "party_name_en": i.party_name_en,
               "unit": i.unit, "unit_name": i.unit_name, "state": f"{i.state} {zh}",
               "deadline": _stamp(i.deadline), "exception_until": _stamp(i.exception_until),
               "received_at": _stamp(i.received_at), "days_late": i.days_late,
               "accounts": "; ".join(" ".join(part for part in (c.name, f"({c.display_name})" if c.display_name else "",
                                                                 f"<{c.email}>" if c.email else "") if part)
                                     for c in i.contacts),
               "note": note}
        writer.writerow([row[key] for key, _zh, _en in CSV_COLUMNS])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")
