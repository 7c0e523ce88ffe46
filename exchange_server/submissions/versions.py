"""Versions of accepted data: one scope per (party, unit, cycle), replaced only by newer data.

An accepted production delivery becomes a new version of each unit it carries. It becomes
the *current* version only if it is newer than the current one (higher resend number, or
the same resend received later); an older resend validated late is kept in history but
never replaces newer data. The scope row is locked while this happens, so two workers
accepting two resends of one scope at once serialise (SQLite has one writer anyway).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import utcnow
from .models import DataScope, Delivery, UnitVersion


@dataclass(frozen=True)
class Accepted:
    """One version an accepted delivery produced: whether it became current, and what it replaced."""

    version: UnitVersion
    unit: str
    current: bool
    replaced_id: int | None


class VersionService:
    """Records accepted versions and answers which version is current."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _scope(self, party: str, unit: str, cycle: str) -> DataScope:
        query = (select(DataScope).where(DataScope.party == party, DataScope.unit == unit, DataScope.cycle == cycle)
                 .with_for_update())
        scope = self.session.scalar(query)
        if scope is not None:
            return scope
        try:
            with self.session.begin_nested():
                self.session.add(DataScope(party=party, unit=unit, cycle=cycle))
        except IntegrityError:
            pass  # another worker created it a moment ago; lock theirs
        scope = self.session.scalar(query)
        assert scope is not None
        return scope

    def accept(self, delivery: Delivery) -> list[Accepted]:
        """Make an accepted production delivery a version of every unit it carries."""
        assert delivery.party and delivery.period and delivery.resend is not None
        rows: dict[str, int] = defaultdict(int)
        for f in delivery.files:
            if f.unit:
                rows[f.unit] += f.rows or 0
        now = utcnow()
        made = []
        for unit in sorted(rows):
            scope = self._scope(delivery.party, unit, delivery.period)
            scope.versions_count += 1
            version = UnitVersion(scope_id=scope.id, number=scope.versions_count, delivery_id=delivery.id,
                                  resend=delivery.resend, rows=rows[unit], accepted_at=now)
            self.session.add(version)
            self.session.flush()
            current = self.session.get(UnitVersion, scope.current_version_id) if scope.current_version_id else None
            if current is None or (delivery.resend, delivery.id) > (current.resend, current.delivery_id):
                if current is not None:
                    current.superseded_at = now
                    current.superseded_by_id = version.id
                scope.current_version_id = version.id
                made.append(Accepted(version, unit, True, current.id if current is not None else None))
            else:
                version.superseded_at = now
                version.superseded_by_id = current.id
                made.append(Accepted(version, unit, False, None))
        self.session.flush()
        return made

    def current(self, party: str, unit: str, cycle: str) -> UnitVersion | None:
        """The current version of a scope."""
        scope = self.session.scalar(select(DataScope).where(DataScope.party == party, DataScope.unit == unit,
                                                            DataScope.cycle == cycle))
        if scope is None or scope.current_version_id is None:
            return None
        return self.session.get(UnitVersion, scope.current_version_id)

    def history(self, party: str, cycle: str, unit: str | None = None) -> list[UnitVersion]:
        """Every version of a party's cycle (optionally one unit), oldest first."""
        q = (select(UnitVersion).join(DataScope, UnitVersion.scope_id == DataScope.id)
             .where(DataScope.party == party, DataScope.cycle == cycle).order_by(DataScope.unit, UnitVersion.number))
        if unit:
            q = q.where(DataScope.unit == unit)
        return list(self.session.scalars(q))
