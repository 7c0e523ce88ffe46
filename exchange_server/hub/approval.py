"""Approval: per cycle and local network, the province approves the data that counts, or returns it.

What counts for a network is what counts at HQ: per unit, the most recently accepted
version covering it (``agg_source``), from the prefecture's own delivery or the province's
central one. An approval records exactly those versions. It stays in force while they are
what counts; a correction accepted afterwards is a new version, so that network — and
only that one — is *changed*: it needs approving again before it can be forwarded, and
the others keep their approval (no cascade). Returning a network records the comment and
sends it to the prefecture on each delivery whose data counts (outbox, API, its page).

States of a network for a cycle:

- ``empty``: nothing accepted counts for it yet;
- ``pending``: data counts, never approved (or returned and corrected since);
- ``approved``: the latest decision approved exactly the versions that count now;
- ``changed``: approved, but other versions count now (a correction arrived);
- ``returned``: the latest decision returned it, and nothing new has been accepted since.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit.services import record
from ..clock import as_utc, utcnow
from ..consolidation.models import FACTS, SourceAggregate
from ..cycles.models import ReportingCycle
from ..errors import BadRequest, Conflict, NotFound
from ..org.models import Area
from ..org.services import OrgService
from ..review.services import ReviewService
from ..storage import Archive
from ..submissions.models import (
    ACCEPTED,
    ACCEPTED_WITH_WARNINGS,
    DataScope,
    Delivery,
    UnitVersion,
)
from .models import APPROVED, RETURNED, Approval, ApprovedVersion

EMPTY, PENDING, CHANGED = "empty", "pending", "changed"
STATES = (EMPTY, PENDING, APPROVED, CHANGED, RETURNED)
MAX_COMMENT = 2000


@dataclass(frozen=True)
class Counted:
    """The version that counts for one unit of one network: where it came from."""

    unit: str
    version_id: int
    version_number: int
    delivery_id: int
    check_name: str
    party: str  # the network's own delivery, or the province's central one
    rows: int
    accepted_at: dt.datetime


@dataclass
class NetworkApproval:
    """One local network's approval state for a cycle."""

    latn_id: str
    name_zh: str
    name_en: str
    state: str
    counted: dict[str, Counted] = field(default_factory=dict)  # unit -> what counts now
    approved: dict[str, int] = field(default_factory=dict)  # unit -> version id, of the approval in force
    missing: list[str] = field(default_factory=list)  # units due with nothing counted
    decision: Approval | None = None  # the latest approval or return
    last_approval: Approval | None = None  # the latest approval (even if superseded by a return or change)
    changes_since: int = 0  # deliveries accepted for the network since its last approval

    def unit_state(self, unit: str) -> str:
        """The state of one network × unit cell."""
        c = self.counted.get(unit)
        if c is None:
            return EMPTY
        if self.state == RETURNED:
            return RETURNED
        approved = self.approved.get(unit) if self.last_approval is not None else None
        if approved is None:
            return PENDING
        return APPROVED if approved == c.version_id else CHANGED

    @property
    def deliveries(self) -> list[int]:
        """The deliveries whose data counts for the network now."""
        return sorted({c.delivery_id for c in self.counted.values()})


class ApprovalService:
    """Reads and records the province's approvals of its networks' data."""

    def __init__(self, session: Session, province: str, archive: Archive | None = None) -> None:
        self.session = session
        self.province = province
        self.archive = archive
        self.commented: set[int] = set()  # deliveries given a comment: the caller delivers them after commit

    # -- reading ------------------------------------------------------------------------------
    def networks(self) -> list[Area]:
        """The province's active local networks."""
        return OrgService(self.session).networks_of(self.province)

    def _cycle(self, cycle_id: str) -> ReportingCycle:
        cycle = self.session.get(ReportingCycle, cycle_id)
        if cycle is None:
            raise NotFound(f"no cycle {cycle_id}", f"周期 {cycle_id} 不存在", code="cycle_not_found")
        return cycle

    def counted(self, cycle_id: str) -> dict[str, dict[str, Counted]]:
        """Network -> unit -> the version that counts now."""
        out: dict[str, dict[str, Counted]] = {}
        q = (select(SourceAggregate.latn_id, SourceAggregate.unit, SourceAggregate.rows, UnitVersion, DataScope.party,
                    Delivery.check_name)
             .join(UnitVersion, UnitVersion.id == SourceAggregate.version_id)
             .join(DataScope, DataScope.id == UnitVersion.scope_id)
             .join(Delivery, Delivery.id == UnitVersion.delivery_id)
             .where(SourceAggregate.cycle == cycle_id, SourceAggregate.prov_id == self.province))
        for latn, unit, rows, version, party, check in self.session.execute(q):
            out.setdefault(latn, {})[unit] = Counted(unit, version.id, version.number, version.delivery_id,
                                                      check or "", party, rows, as_utc(version.accepted_at))
        return out

    def decisions(self, cycle_id: str) -> dict[str, tuple[Approval | None, Approval | None]]:
        """Network -> (latest decision, latest approval)."""
        out: dict[str, tuple[Approval | None, Approval | None]] = {}
        for a in self.session.scalars(select(Approval).where(Approval.cycle == cycle_id)
                                      .order_by(Approval.at, Approval.id)):
            _latest, approval = out.get(a.latn_id, (None, None))
            out[a.latn_id] = (a, a if a.state == APPROVED else approval)
        return out

    def board(self, cycle_id: str) -> list[NetworkApproval]:
        """Every network of the province with its state for the cycle."""
        cycle = self._cycle(cycle_id)
        counted = self.counted(cycle_id)
        decisions = self.decisions(cycle_id)
        out = []
        for area in self.networks():
            now = counted.get(area.code, {})
            decision, approval = decisions.get(area.code, (None, None))
            approved = {v.unit: v.version_id for v in approval.versions} if approval is not None else {}
            n = NetworkApproval(area.code, area.name_zh, area.name_en, EMPTY, now, approved,
                                [u for u in cycle.units if u not in now], decision, approval)
            n.changes_since = self._changes_since(cycle_id, area.code, approval.at if approval else None)
            n.state = self._state(n)
            out.append(n)
        return out

    def network(self, cycle_id: str, latn_id: str) -> NetworkApproval:
        """One network's state (NotFound for a network not of this province)."""
        for n in self.board(cycle_id):
            if n.latn_id == latn_id:
                return n
        raise NotFound(f"{latn_id} is not a local network of province {self.province}",
                       f"{latn_id} 不是本省（{self.province}）的本地网", code="network_not_found")

    @staticmethod
    def _state(n: NetworkApproval) -> str:
        if not n.counted:
            return EMPTY
        newest = max(c.accepted_at for c in n.counted.values())
        if n.decision is not None and n.decision.state == RETURNED and newest <= as_utc(n.decision.at):
            return RETURNED
        if n.last_approval is None or (n.decision is not None and n.decision.state == RETURNED):
            return PENDING
        now = {u: c.version_id for u, c in n.counted.items()}
        return APPROVED if now == n.approved else CHANGED

    def _changes_since(self, cycle_id: str, latn_id: str, since: dt.datetime | None) -> int:
        """Accepted deliveries whose data covers the network, accepted after ``since`` (all when None)."""
        later = (select(UnitVersion.id).join(DataScope, DataScope.id == UnitVersion.scope_id)
                 .where(DataScope.cycle == cycle_id, DataScope.party.in_((latn_id, self.province))))
        if since is not None:
            later = later.where(UnitVersion.accepted_at > since)
        version_ids = set(self.session.scalars(later))
        if not version_ids:
            return 0
        covering: set[int] = set()
        for model in FACTS.values():
            table = sa_inspect(model).local_table
            covering |= set(self.session.scalars(
                select(table.c.version_id).where(table.c.cycle == cycle_id, table.c.latn_id == latn_id,
                                                 table.c.version_id.in_(sorted(version_ids))).distinct()))
        if not covering:
            return 0
        return len(set(self.session.scalars(select(UnitVersion.delivery_id).where(UnitVersion.id.in_(covering)))))

    def in_force(self, cycle_id: str) -> dict[str, NetworkApproval]:
        """The networks whose approval holds now (state approved)."""
        return {n.latn_id: n for n in self.board(cycle_id) if n.state == APPROVED}

    def history(self, cycle_id: str, latn_id: str | None = None) -> list[Approval]:
        """Every decision of a cycle (one network's, optionally), newest first."""
        q = select(Approval).where(Approval.cycle == cycle_id).order_by(Approval.at.desc(), Approval.id.desc())
        if latn_id:
            q = q.where(Approval.latn_id == latn_id)
        return list(self.session.scalars(q))

    # -- deciding ---------------------------------------------------------------------------------
    def _chosen(self, cycle_id: str, networks: Iterable[str]) -> list[NetworkApproval]:
        wanted = list(dict.fromkeys(networks))
        if not wanted:
            raise BadRequest("choose at least one local network", "请至少选择一个本地网", code="no_networks")
        board = {n.latn_id: n for n in self.board(cycle_id)}
        unknown = [w for w in wanted if w not in board]
        if unknown:
            raise NotFound(f"not local networks of province {self.province}: {', '.join(unknown)}",
                           f"不是本省（{self.province}）的本地网：{', '.join(unknown)}", code="network_not_found",
                           errors={"networks": unknown})
        return [board[w] for w in wanted]

    def _with_data(self, cycle_id: str, networks: Iterable[str], verb: str, verb_zh: str) -> list[NetworkApproval]:
        """The chosen networks, refused when any of them has nothing accepted to act on."""
        chosen = self._chosen(cycle_id, networks)
        empty = [n.latn_id for n in chosen if n.state == EMPTY]
        if empty:
            raise Conflict(f"nothing has been accepted for {', '.join(empty)} in {cycle_id}: nothing to {verb}",
                           f"{cycle_id} 期 {', '.join(empty)} 尚无已接收的数据，无可{verb_zh}", code="approval_empty",
                           errors={"networks": empty})
        return chosen

    def approve(self, cycle_id: str, networks: Iterable[str], actor: str, comment: str = "") -> list[Approval]:
        """Approve the versions that count now for each network; already-approved ones are left as they are."""
        chosen = self._with_data(cycle_id, networks, "approve", "审批")
        made = []
        now = utcnow()
        for n in chosen:
            if n.state == APPROVED:
                continue
            a = Approval(cycle=cycle_id, latn_id=n.latn_id, state=APPROVED, by=actor, at=now,
                         comment=comment.strip()[:MAX_COMMENT])
            a.versions = [ApprovedVersion(unit=c.unit, version_id=c.version_id) for c in n.counted.values()]
            self.session.add(a)
            made.append(a)
            record(self.session, actor, "hub.approve", f"cycle:{cycle_id}", network=n.latn_id,
                   versions={c.unit: f"{c.check_name} v{c.version_number}" for c in n.counted.values()},
                   missing=n.missing, was=n.state)
        self.session.flush()
        return made

    def return_(self, cycle_id: str, networks: Iterable[str], actor: str, comment: str) -> list[Approval]:
        """Return networks' data to their prefectures with a comment, which reaches each delivery that counts."""
        text = comment.strip()
        if not text:
            raise BadRequest("say why the data is returned", "请填写退回原因", code="comment_empty")
        if len(text) > MAX_COMMENT:
            raise BadRequest(f"a comment is at most {MAX_COMMENT} characters", f"意见不能超过 {MAX_COMMENT} 字",
                             code="comment_too_long")
        chosen = self._with_data(cycle_id, networks, "return", "退回")
        made = []
        now = utcnow()
        review = ReviewService(self.session, self.archive) if self.archive is not None else None
        for n in chosen:
            a = Approval(cycle=cycle_id, latn_id=n.latn_id, state=RETURNED, by=actor, at=now, comment=text)
            self.session.add(a)
            made.append(a)
            record(self.session, actor, "hub.return", f"cycle:{cycle_id}", network=n.latn_id, comment=text,
                   deliveries=n.deliveries)
            if review is not None:
                body = (f"省公司退回本地网 {n.latn_id} 的 {cycle_id} 期数据，请修正后重报。\n"
                        f"The province returned local network {n.latn_id}'s data for {cycle_id}; correct it and "
                        f"send it again.\n{text}")
                for delivery_id in n.deliveries:
                    d = self.session.get(Delivery, delivery_id)
                    if d is not None and d.status in (ACCEPTED, ACCEPTED_WITH_WARNINGS):
                        review.comment(actor, d, body)
                        self.commented.add(d.id)
        self.session.flush()
        return made
