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
from typing import Any, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas import FileNameError
from schemas.conventions import CHECK_NAME_FORM, CheckFileName
from schemas.spec.model import Spec

from ..accounts.models import Account
from ..accounts.services import authorised_parties, visible_parties
from ..admin.models import CycleException
from ..admin.services import CycleExceptionService
from ..audit.models import AuditEvent
from ..clock import as_utc, utcnow
from ..cycles.models import CLOSED, OPEN, PLANNED, ReportingCycle
from ..cycles.services import CycleService
from ..errors import BadRequest, NotFound, Unprocessable
from ..hub.answers import hq_findings
from ..org.models import Area
from ..org.services import OrgService
from ..review.models import OPEN as REVIEW_OPEN
from ..review.models import RESEND_REQUESTED, DeliveryReview, ReviewComment
from ..review.services import ReviewService
from ..routing import MAX_PAGE, int_arg
from ..storage import Archive
from ..submissions.models import (ACCEPTED, ACCEPTED_WITH_WARNINGS, FAILED, QUEUED, REJECTED, VALIDATING,
                                  DataScope, Delivery, DeliveryFile, UnitVersion)
from ..submissions.services import FEEDBACK, DeliveryService
from ..submissions.upload import ReceivedFile

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
    "not_open": ("未开放", "not open"),
}
#: Whether a delivery's accepted data counts now: mark -> (Chinese, English).
COUNT_MARKS: dict[str, tuple[str, str]] = {
    "current": ("现行版本", "current"), "partly": ("部分现行", "partly current"),
    "superseded": ("已被取代", "superseded"),
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
    versions: list["UnitMark"]  # what counts now of its accepted data (empty: none of it ever counted)
    resend_answer: "ResendAnswer | None"  # the accepted resend that answered HQ's resend request, if one did

    @property
    def count_mark(self) -> str | None:
        """``current``, ``partly`` (some units superseded), ``superseded``; None when it never became a version."""
        return count_mark(self.versions)


@dataclass(frozen=True)
class ResendAnswer:
    """The accepted resend that answered HQ's resend request."""

    id: int
    check_name: str | None
    resend: int | None
    visible: bool  # whether the account may open it (a network's account is not shown its province's)


@dataclass(frozen=True)
class UnitMark:
    """One unit version a delivery produced: whether it is the one that counts now, and if not which does."""

    unit: str  # the unit's code (31201)
    number: int  # version number in its scope
    current: bool
    current_delivery: int | None  # the delivery whose version counts now (None: this one, or none)
    current_resend: int | None
    visible: bool  # whether the account may open current_delivery


def count_mark(marks: list[UnitMark]) -> str | None:
    """The mark of a delivery from its unit versions (see :data:`COUNT_MARKS`)."""
    if not marks:
        return None
    current = sum(m.current for m in marks)
    return "current" if current == len(marks) else "superseded" if not current else "partly"


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
    label: str = ""  # the unit's name in the standard (VIP_CUST_INFO)


@dataclass(frozen=True)
class CycleRow:
    """One cycle of the calendar as this province sees it."""

    cycle: ReportingCycle
    exception: CycleException | None  # valid now, for this account's province
    open_to_us: bool  # open, or closed but covered by a valid exception
    deadline: dt.datetime  # the exception's end while one is valid, else the cycle's deadline
    overdue: bool
    units: list[UnitState]
    opened: bool = True  # whether the cycle was ever open (to this province); never: nothing was due yet

    @property
    def complete(self) -> bool:
        """Whether every unit due is accepted (on time or late)."""
        return all(u.state in ("accepted", "late") for u in self.units)


class ProvinceService:
    """Reads for the province pages, always as one signed-in province (or local-network) account."""

    def __init__(self, session: Session, archive: Archive, spec: Spec) -> None:
        self.session = session
        self.archive = archive
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
        marks = self.unit_marks(account, ids)
        rows = [DeliveryRow(d, names.get(d.party or "", ("", "")), states.get(d.id, REVIEW_OPEN), counts.get(d.id, 0),
                            marks.get(d.id, []),
                            self.resend_answer(account, d) if states.get(d.id) == RESEND_REQUESTED else None)
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

    def unit_marks(self, account: Account, delivery_ids: list[int]) -> dict[int, list[UnitMark]]:
        """Per delivery, the unit versions it produced and whether each is the one that counts now."""
        if not delivery_ids:
            return {}
        rows = list(self.session.execute(
            select(UnitVersion.delivery_id, UnitVersion.id, UnitVersion.number, DataScope.unit,
                   DataScope.current_version_id).join(DataScope, UnitVersion.scope_id == DataScope.id)
            .where(UnitVersion.delivery_id.in_(delivery_ids)).order_by(DataScope.unit)))
        current_ids = {r.current_version_id for r in rows if r.current_version_id is not None}
        current: dict[int, tuple[int, int]] = {}  # version id -> (delivery id, resend)
        if current_ids:
            current = {v: (d, n) for v, d, n in self.session.execute(
                select(UnitVersion.id, UnitVersion.delivery_id, UnitVersion.resend)
                .where(UnitVersion.id.in_(current_ids)))}
        visible = self._visible_ids({d for d, _ in current.values()}, account)
        out: dict[int, list[UnitMark]] = {}
        for r in rows:
            is_current = r.current_version_id == r.id
            now = None if is_current else current.get(r.current_version_id)
            out.setdefault(r.delivery_id, []).append(UnitMark(
                r.unit, r.number, is_current, now[0] if now else None, now[1] if now else None,
                bool(now and now[0] in visible)))
        return out

    def _visible_ids(self, ids: set[int], account: Account) -> set[int]:
        """Of ``ids``, the deliveries the account may open (DeliveryService's rule)."""
        if not ids:
            return set()
        q = select(Delivery.id).where(Delivery.id.in_(ids))
        where = self.deliveries.visible_where(account)
        return set(self.session.scalars(q if where is None else q.where(where)))

    def resend_answer(self, account: Account, delivery: Delivery) -> ResendAnswer | None:
        """The accepted resend that answered HQ's resend request of ``delivery``, if one did.

        One rule with HQ's review queue (:meth:`ReviewService.superseded_by`): the first later
        resend of the same party, cycle and mode, sent by an entitled account, accepted (with or
        without warnings) and carrying every unit that failed. Once it exists the request is
        answered here exactly when HQ's item closes itself.
        """
        review = self.session.scalar(select(DeliveryReview).where(DeliveryReview.delivery_id == delivery.id))
        if review is None or review.state != RESEND_REQUESTED:
            return None
        later = ReviewService(self.session, self.archive, self.spec).superseded_by(delivery)
        if later is None:
            return None
        return ResendAnswer(later.id, later.check_name, later.resend, bool(self._visible_ids({later.id}, account)))

    def unit_labels(self) -> dict[str, tuple[str, str, str]]:
        """Every unit of the standard: code -> (Chinese name, English name, the standard's name)."""
        return {u.code: (u.name_zh, u.name_en, u.name) for u in self.spec.units}

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

        opened = self.ever_opened()
        rows = []
        for c in cycles:
            granted = exceptions.valid(c.id, province, now) if province else None
            deadline = as_utc(granted.until) if granted else as_utc(c.deadline)
            # As the validator's context builder does: a valid exception makes the cycle open for this province.
            open_to_us = c.state == OPEN or granted is not None
            # Nothing was ever due in a cycle that never opened: its units are "not open", not "not delivered".
            was_open = open_to_us or c.id in opened
            units = []
            for u in c.units:
                spec_unit = self.spec.unit(u) if self.spec.has_unit(u) else None
                name = (spec_unit.name_zh, spec_unit.name_en) if spec_unit else ("", "")
                label = spec_unit.name if spec_unit else ""
                if (c.id, u) in accepted:
                    late, linked = accepted[(c.id, u)]
                    units.append(UnitState(u, name, "late" if late else "accepted", linked, label))
                elif (c.id, u) in received:
                    units.append(UnitState(u, name, "received", received[(c.id, u)], label))
                else:
                    units.append(UnitState(u, name, "missing" if was_open else "not_open", None, label))
            overdue = open_to_us and now > deadline and any(x.state in ("received", "missing") for x in units)
            rows.append(CycleRow(c, granted, open_to_us, deadline, overdue, units, was_open))
        return rows

    def ever_opened(self) -> set[str]:
        """The cycles that were open at some time: open now or closed after being open (the audit log says).

        A planned cycle never was; a closed one was unless it was created closed (an old cycle
        entered for the record) and never opened since.
        """
        opened = set(self.session.scalars(select(ReportingCycle.id).where(ReportingCycle.state == OPEN)))
        for action, target, detail in self.session.execute(
                select(AuditEvent.action, AuditEvent.target, AuditEvent.detail)
                .where(AuditEvent.action.in_(("cycle.open", "cycle.reopen", "cycle.create")),
                       AuditEvent.target.like("cycle:%"))):
            if action != "cycle.create" or (detail or {}).get("state") == OPEN:
                opened.add(target.split(":", 1)[1])
        return opened


# -- uploading on the page ------------------------------------------------------------------------
class UploadChecks:
    """What the upload page checks of the archived files before a delivery is recorded.

    The rules are the validator's own (E101 a check file named by the standard, E606 a party the
    account may send as, E602/E601 a known cycle open to its province, with HQ's exceptions):
    the API records such a delivery and rejects it; a person at the page is told at once instead,
    and nothing is recorded. Everything else — data file names, rows, rules — is the validator's.
    """

    def __init__(self, session: Session, spec: Spec) -> None:
        self.session = session
        self.spec = spec

    def __call__(self, account: Account, files: Sequence[ReceivedFile]) -> None:
        """Refuse (Unprocessable) files that cannot be a delivery this account may send now."""
        names = [f.name for f in files]
        checks = [n for n in names if n.endswith(".chk")]
        if not checks:
            upper = [n for n in names if n.lower().endswith(".chk")]
            if upper:
                raise Unprocessable(
                    f"the check file's name must end in a lower-case .chk ({CHECK_NAME_FORM}): "
                    f"rename {upper[0]} to {upper[0][:-4]}.chk",
                    f"校验文件名须以小写 .chk 结尾（{CHECK_NAME_FORM}）：请将 {upper[0]} 改名为 {upper[0][:-4]}.chk",
                    code="no_check_file", errors={"files": names[:20]})
            raise Unprocessable(f"no check file among the {len(names)} file(s): choose the check file "
                                f"({CHECK_NAME_FORM}) together with its data files",
                                f"所选的 {len(names)} 个文件中没有校验文件：请同时选择校验文件（{CHECK_NAME_FORM}）及其数据文件",
                                code="no_check_file", errors={"files": names[:20]})
        if len(checks) > 1:
            listed = ", ".join(checks[:5])
            raise Unprocessable(f"one delivery has one check file; these are {len(checks)}: {listed} — upload them "
                                "one at a time", f"一次报送只能有一个校验文件，所选文件中有 {len(checks)} 个：{listed}，请分别上传",
                                code="several_check_files", errors={"files": checks})
        try:
            parsed = CheckFileName.parse(checks[0])
        except FileNameError:
            raise Unprocessable(f"{checks[0]} is not a check file name of the standard ({CHECK_NAME_FORM}; E101)",
                                f"{checks[0]} 不符合标准的校验文件命名（{CHECK_NAME_FORM}；E101）",
                                code="bad_check_name", errors={"file": checks[0]}) from None
        parties = authorised_parties(self.session, account)
        if parsed.party not in parties:
            mine = ", ".join(sorted(parties)) or "—"
            raise Unprocessable(f"{checks[0]} is a delivery of party {parsed.party}; this account may deliver as "
                                f"{mine} only (E606)",
                                f"{checks[0]} 是报送方 {parsed.party} 的报送；本账户只能以 {mine} 的身份报送（E606）",
                                code="not_your_party", errors={"party": parsed.party, "allowed": sorted(parties)})
        cycle = self.session.get(ReportingCycle, parsed.period)
        if cycle is None:
            raise Unprocessable(f"cycle {parsed.period} is not in HQ's reporting calendar (E602)",
                                f"周期 {parsed.period} 不在总部的报告日历中（E602）", code="cycle_unknown",
                                errors={"cycle": parsed.period})
        if cycle.state != OPEN:
            province = OrgService(self.session).province_of(parsed.party)
            granted = CycleExceptionService(self.session).valid(cycle.id, province, utcnow()) if province else None
            if granted is None:
                state = CYCLE_STATE_NAMES.get(cycle.state, (cycle.state, cycle.state))
                raise Unprocessable(f"cycle {cycle.id} is {state[1]} and HQ has granted your province no exception "
                                    "for it: nothing can be delivered to it now (E601)",
                                    f"周期 {cycle.id} {state[0]}，总部未给贵省批准例外，现在不能报送（E601）",
                                    code="cycle_closed", errors={"cycle": cycle.id, "state": cycle.state})
