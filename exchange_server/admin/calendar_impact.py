"""What closing a cycle or revoking an exception would change, shown to the admin before it is done.

Closing a cycle makes every later delivery to it fail with E601 unless the province holds a
valid exception; revoking an exception does the same to that one province (and makes its
deliveries after the deadline late, W603). The admin sees who that hits: the provinces whose
due units have nothing accepted yet, the deliveries still waiting for a verdict, and the
exceptions that keep a province open.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..cycles.models import ReportingCycle
from ..errors import NotFound
from ..org.models import PROVINCE, Area
from ..submissions.models import (
    ACCEPTED, ACCEPTED_WITH_WARNINGS, QUEUED, VALIDATING, Delivery, DeliveryFile,
)
from .models import CycleException


@dataclass
class ProvinceGap:
    """A province and the due units of the cycle it has nothing accepted for."""

    area: Area
    units: list[str]


@dataclass
class CloseImpact:
    """Closing a cycle: who has not delivered, what is still being judged, who stays open by exception."""

    cycle: ReportingCycle
    gaps: list[ProvinceGap]
    in_flight: int
    exceptions: list[CycleException] = field(default_factory=list)

    @property
    def held_open(self) -> set[str]:
        """Provinces a valid exception keeps open after the close."""
        return {x.province for x in self.exceptions}


@dataclass
class RevokeImpact:
    """Revoking one exception: the province, what it has delivered, and what its next delivery would meet."""

    exception: CycleException
    cycle: ReportingCycle
    province: Area | None
    missing_units: list[str]
    in_flight: int
    closed: bool  # the cycle is closed: the province's next delivery fails with E601
    overdue: bool  # the deadline has passed: its next delivery is late (W603)


class CalendarImpactService:
    """Reads what a calendar change would hit (read-only)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _cycle(self, cycle_id: str) -> ReportingCycle:
        cycle = self.session.get(ReportingCycle, cycle_id)
        if cycle is None:
            raise NotFound(f"no cycle {cycle_id}", f"没有周期 {cycle_id}", code="cycle_not_found")
        return cycle

    def _accepted(self, cycle_id: str) -> set[tuple[str, str]]:
        """(province, unit) with an accepted delivery in the cycle; a local network's counts for its province."""
        parent = dict(self.session.execute(select(Area.code, Area.parent_code).where(Area.level != PROVINCE)).all())
        out: set[tuple[str, str]] = set()
        for party, unit in self.session.execute(
                select(Delivery.party, DeliveryFile.unit).distinct()
                .join(DeliveryFile, DeliveryFile.delivery_id == Delivery.id)
                .where(Delivery.period == cycle_id, Delivery.mode == "P", Delivery.entitled.is_(True),
                       Delivery.status.in_((ACCEPTED, ACCEPTED_WITH_WARNINGS)), DeliveryFile.unit.is_not(None))):
            if party and unit:
                out.add((parent.get(party) or party, unit))
        return out

    def _in_flight(self, cycle_id: str, province: str | None = None) -> int:
        query = select(func.count(Delivery.id)).where(Delivery.period == cycle_id,
                                                       Delivery.status.in_((QUEUED, VALIDATING)))
        if province:
            networks = select(Area.code).where(Area.parent_code == province)
            query = query.where((Delivery.party == province) | Delivery.party.in_(networks))
        return int(self.session.scalar(query) or 0)

    def close(self, cycle_id: str) -> CloseImpact:
        """What closing ``cycle_id`` now would hit."""
        cycle = self._cycle(cycle_id)
        accepted = self._accepted(cycle_id)
        provinces = self.session.scalars(select(Area).where(Area.level == PROVINCE, Area.active.is_(True))
                                         .order_by(Area.code)).all()
        gaps = [ProvinceGap(p, missing) for p in provinces
                if (missing := [u for u in cycle.units if (p.code, u) not in accepted])]
        now = utcnow()
        exceptions = [x for x in self.session.scalars(
            select(CycleException).where(CycleException.cycle_id == cycle_id, CycleException.revoked_at.is_(None))
            .order_by(CycleException.province)) if x.until >= now]
        return CloseImpact(cycle, gaps, self._in_flight(cycle_id), exceptions)

    def revoke(self, exception_id: int) -> RevokeImpact:
        """What revoking exception ``exception_id`` now would hit."""
        exception = self.session.get(CycleException, exception_id)
        if exception is None:
            raise NotFound(f"no exception {exception_id}", f"没有例外 {exception_id}", code="exception_not_found")
        cycle = self._cycle(exception.cycle_id)
        accepted = self._accepted(cycle.id)
        missing = [u for u in cycle.units if (exception.province, u) not in accepted]
        return RevokeImpact(exception, cycle, self.session.get(Area, exception.province), missing,
                            self._in_flight(cycle.id, exception.province), cycle.state == "closed",
                            cycle.deadline < utcnow())
