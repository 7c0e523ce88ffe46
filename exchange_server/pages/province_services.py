"""What the province pages read beyond the delivery and review services: list marks and the calendar.

Every read starts from what the signed-in account may see, and that rule has one home:
:class:`~exchange_server.submissions.services.DeliveryService` (``page`` lists, ``get``
opens or raises NotFound). Nothing here widens it: versions and calendar states are
filtered through the same service, so a local network's account never learns what its
province's account sent, and no province learns anything about another.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas.spec.model import Spec

from ..accounts.models import Account
from ..accounts.services import visible_parties
from ..admin.models import CycleException
from ..admin.services import CycleExceptionService
from ..clock import as_utc, utcnow
from ..cycles.models import CLOSED, OPEN, PLANNED, ReportingCycle
from ..cycles.services import CycleService
from ..errors import BadRequest, NotFound
from ..hub.answers import hq_findings
from ..org.models import Area
from ..org.services import OrgService
from ..review.models import OPEN as REVIEW_OPEN
from ..review.models import DeliveryReview, ReviewComment
from ..routing import MAX_PAGE, int_arg
from ..storage import Archive
from ..submissions.models import (ACCEPTED, ACCEPTED_WITH_WARNINGS, FAILED, QUEUED, REJECTED, VALIDATING,
                                  DataScope, Delivery, DeliveryFile, UnitVersion)
from ..submissions.services import FEEDBACK, DeliveryService

PER_PAGE = 50
#: Delivery statuses, in the order the filter offers them: status -> (Chinese, English).
STATUS_NAMES: dict[str, tuple[str, str]] = {
    REJECTED: ("拒收", "rejected"), ACCEPTED_WITH_WARNINGS: ("带警告采纳", "accepted with warnings"),
    ACCEPTED: ("采纳", "accepted"), QUEUED: ("排队中", "queued"), VALIDATING: ("校验中", "validating"),
    FAILED: ("校验失败", "validation failed"),
}
#: The feedback files a province may download: kind (as DeliveryService.feedback names it) -> (Chinese, English).
FEEDBACK_NAMES: dict[str, tuple[str, str]] = {
    "receipt": ("回执", "receipt"), "file": ("文件级反馈", "file-level feedback"),
    "record": ("记录级反馈", "record-level feedback"),
}
CYCLE_STATE_NAMES: dict[str, tuple[str, str]] = {
    PLANNED: ("计划中", "planned"), OPEN: ("开放", "open"), CLOSED: ("已关闭", "closed"),
}
#: What the calendar says of one unit of one cycle for this account's parties.
UNIT_STATE_NAMES: dict[str, tuple[str, str]] = {
    "accepted": ("已采纳", "accepted"), "late": ("已采纳（逾期）", "accepted (late)"),
    "received": ("已收到，未采纳", "received, not accepted"), "missing": ("未报送", "not delivered"),
}
_CYCLE_ARG = re.compile(r"[0-9A-Za-z]{4,7}")


@dataclass(frozen=True)
class ListFilter:
    """What the delivery list is narrowed to (empty strings mean "any")."""

    cycle: str = ""
    status: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Any) -> "ListFilter":
        """From a request's query arguments; malformed values are refused (400; a page number out of range 422)."""
        cycle = str(args.get("cycle", "")).strip()
        status = str(args.get("status", "")).strip()
        if cycle and not _CYCLE_ARG.fullmatch(cycle):
            raise BadRequest(f"{cycle!r} is not a cycle id (202610, 2026Q3, 2026H2, 2026)",
                             f"{cycle!r} 不是周期标识（如 202610、2026Q3、2026H2、2026）", code="invalid_arguments",
                             errors={"cycle": cycle})
        if status and status not in STATUS_NAMES:
            raise BadRequest(f"unknown delivery status {status!r}", f"未知的报送状态 {status!r}",
                             code="invalid_arguments", errors={"status": status})
        return cls(cycle, status, int_arg(args, "page", 1, high=MAX_PAGE))

    def args(self, **changes: Any) -> dict[str, Any]:
        """The non-empty filter values as query arguments (for pager links), with ``changes`` applied."""
        values: dict[str, Any] = {"cycle": self.cycle, "status": self.status, "page": self.page}
        values.update(changes)
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery in the province's list, with what HQ did about it."""

    delivery: Delivery
    party_name: tuple[str, str]
    review_state: str
    comments: int


@dataclass(frozen=True)
class DeliveryPage:
    """A page of the province's deliveries and what the filter offers."""

    rows: list[DeliveryRow]
    total: int
    page: int
    pages: int
    cycles: list[str]


@dataclass(frozen=True)
class UnitState:
    """One unit due in a cycle: accepted, late, received (not accepted) or missing for this account's parties."""

    code: str
    name: tuple[str, str]
    state: str
    delivery_id: int | None  # the accepted (or latest received) delivery, only when the account may open it


@dataclass(frozen=True)
class CycleRow:
    """One cycle of the calendar as this province sees it."""

    cycle: ReportingCycle
    exception: CycleException | None  # valid now, for this account's province
    open_to_us: bool  # open, or closed but covered by a valid exception
    deadline: dt.datetime  # the exception's end while one is valid, else the cycle's deadline
    overdue: bool
    units: list[UnitState]

    @property
    def complete(self) -> bool:
        """Whether every unit due is accepted (on time or late)."""
        return all(u.state in ("accepted", "late") for u in self.units)


class ProvinceService:
    """Reads for the province pages, always as one signed-in province (or local-network) account."""

    def __init__(self, session: Session, archive: Archive, spec: Spec) -> None:
        self.session = session
        self.spec = spec
        self.deliveries = DeliveryService(session, archive)

    # -- the deliveries ---------------------------------------------------------------------------
    def page(self, account: Account, f: ListFilter, per_page: int = PER_PAGE) -> DeliveryPage:
        """The account's deliveries (as DeliveryService allows), newest first, with review marks."""
        cycle, status = f.cycle or None, f.status or None
        items, total = self.deliveries.page(account, cycle, status, page=f.page, per_page=per_page)
        pages = max(1, math.ceil(total / per_page))
        page = min(f.page, pages)
        if page != f.page:  # a page past the end (an old link): show the last one rather than nothing
            items, total = self.deliveries.page(account, cycle, status, page=page, per_page=per_page)
        ids = [d.id for d in items]
        states: dict[int, str] = {}
        counts: dict[int, int] = {}
        if ids:
            states = {i: s for i, s in self.session.execute(
                select(DeliveryReview.delivery_id, DeliveryReview.state).where(DeliveryReview.delivery_id.in_(ids)))}
            counts = {i: int(n) for i, n in self.session.execute(
                select(ReviewComment.delivery_id, func.count()).where(ReviewComment.delivery_id.in_(ids))
                .group_by(ReviewComment.delivery_id))}
        names = self.area_names({d.party for d in items if d.party})
        rows = [DeliveryRow(d, names.get(d.party or "", ("", "")), states.get(d.id, REVIEW_OPEN), counts.get(d.id, 0))
                for d in items]
        return DeliveryPage(rows, total, page, pages, [c.id for c in CycleService(self.session, self.spec).calendar()])

    def delivery(self, account: Account, delivery_id: int) -> Delivery:
        """One delivery the account may see; NotFound (the same answer as "no such delivery") otherwise."""
        return self.deliveries.get(account, delivery_id)

    def hq_answers(self, delivery: Delivery) -> list[dict[str, Any]]:
        """At a province hub: HQ's answers on the forwards carrying the delivery, its findings at its own lines.

        Only findings about this delivery's own rows are listed (``hq_findings`` maps them); the
        verdict is on the province's forward, which the prefecture is told of anyway. Empty at HQ.
        """
        return hq_findings(self.session, delivery.id)

    def visible_versions(self, account: Account, versions: list[Delivery]) -> list[Delivery]:
        """Of a delivery's versions (as ReviewService lists them for HQ), those the account may open."""
        out = []
        for v in versions:
            try:
                out.append(self.deliveries.get(account, v.id))
            except NotFound:
                continue  # sent by an account this one may not see (e.g. the province's, to a network account)
        return out

    def feedback(self, account: Account, delivery_id: int, kind: str) -> tuple[str, bytes]:
        """A feedback file of one of the account's deliveries; NotFound for others' and for unknown kinds."""
        delivery = self.delivery(account, delivery_id)  # first: another's delivery is 404 whatever the kind
        if kind not in FEEDBACK:
            raise NotFound(f"no feedback file {kind!r}", f"没有反馈文件 {kind!r}", code="feedback_not_available")
        return self.deliveries.feedback(delivery, kind)

    def area_names(self, codes: set[str]) -> dict[str, tuple[str, str]]:
        """(Chinese, English) names of area codes."""
        if not codes:
            return {}
        return {a.code: (a.name_zh, a.name_en) for a in self.session.scalars(select(Area).where(Area.code.in_(codes)))}

    # -- the calendar -----------------------------------------------------------------------------
    def province_of(self, account: Account) -> str | None:
        """The province an account belongs to: itself, or a local network's parent."""
        return OrgService(self.session).province_of(account.party) if account.party else None

    def calendar(self, account: Account, now: dt.datetime | None = None) -> list[CycleRow]:
        """The reporting calendar, newest first, with this province's exceptions and unit states."""
        now = as_utc(now or utcnow())
        province = self.province_of(account)
        parties = visible_parties(self.session, account) or frozenset()  # never None: province accounts only
        cycles = CycleService(self.session, self.spec).calendar()
        exceptions = CycleExceptionService(self.session)

        # Units received per cycle from deliveries the account may see, sent as one of its parties (a
        # delivery claiming another party was refused and is not this province's data); the latest wins.
        q = select(Delivery.id, Delivery.period, Delivery.party).where(Delivery.mode == "P")
        where = self.deliveries.visible_where(account)
        visible = list(self.session.execute(q if where is None else q.where(where)))
        visible_ids = {d.id for d in visible}
        own = {d.id: d for d in visible if d.party in parties}
        received: dict[tuple[str, str], int] = {}
        if own:
            for delivery_id, unit in self.session.execute(
                    select(DeliveryFile.delivery_id, DeliveryFile.unit).where(
                        DeliveryFile.delivery_id.in_(list(own)), DeliveryFile.unit.is_not(None))):
                key = (own[delivery_id].period or "", unit or "")
                if key not in received or delivery_id > received[key]:
                    received[key] = delivery_id

        # Accepted: the current version of a scope of one of the account's parties (its own data, whoever
        # sent it); a late one counts as late. The delivery is linked only if the account may open it.
        accepted: dict[tuple[str, str], tuple[bool, int | None]] = {}
        if parties:
            for scope, delivery in self.session.execute(
                    select(DataScope, Delivery).join(UnitVersion, DataScope.current_version_id == UnitVersion.id)
                    .join(Delivery, UnitVersion.delivery_id == Delivery.id)
                    .where(DataScope.party.in_(parties))):
                key = (scope.cycle, scope.unit)  # a province's own scope and its networks' fold into one state
                late, linked = accepted.get(key, (False, None))
                accepted[key] = (late or delivery.late, delivery.id if delivery.id in visible_ids else linked)

        rows = []
        for c in cycles:
            granted = exceptions.valid(c.id, province, now) if province else None
            deadline = as_utc(granted.until) if granted else as_utc(c.deadline)
            # As the validator's context builder does: a valid exception makes the cycle open for this province.
            open_to_us = c.state == OPEN or granted is not None
            units = []
            for u in c.units:
                name = (self.spec.unit(u).name_zh, self.spec.unit(u).name_en) if self.spec.has_unit(u) else ("", "")
                if (c.id, u) in accepted:
                    late, linked = accepted[(c.id, u)]
                    units.append(UnitState(u, name, "late" if late else "accepted", linked))
                elif (c.id, u) in received:
                    units.append(UnitState(u, name, "received", received[(c.id, u)]))
                else:
                    units.append(UnitState(u, name, "missing", None))
            overdue = open_to_us and now > deadline and any(x.state in ("received", "missing") for x in units)
            rows.append(CycleRow(c, granted, open_to_us, deadline, overdue, units))
        return rows
