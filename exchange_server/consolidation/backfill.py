"""Filling what migration 0007 added for a database that already holds accepted data.

Contact facts come from the archived 31202 files of every accepted version (in acceptance
order, so the newest acceptance per network counts, as it would have); the aggregates are
then summed for every cycle with facts. Run once by ``exchange-server init`` after the
upgrade (it finds nothing to do on a new database or a second run).
"""
from __future__ import annotations

import logging

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from schemas import Spec

from ..storage import Archive
from ..submissions.models import DataScope, Delivery, UnitVersion
from .aggregates import Aggregates
from .models import ContactFact, SourceAggregate, SummaryFact
from .services import CONTACTS, Consolidator

log = logging.getLogger(__name__)


def needs_backfill(session: Session) -> bool:
    """Whether accepted data exists that the aggregates do not know about yet."""
    has_facts = session.scalar(select(exists().where(SummaryFact.id.is_not(None))))
    has_sources = session.scalar(select(exists().where(SourceAggregate.cycle.is_not(None))))
    return bool(has_facts) and not has_sources


def backfill(session: Session, archive: Archive, spec: Spec) -> dict[str, int]:
    """Contact facts from the archive and every cycle's aggregates; returns what was done."""
    consolidator = Consolidator(session, archive, spec)
    contacts = 0
    if not session.scalar(select(func.count()).select_from(ContactFact)):
        versions = session.execute(
            select(UnitVersion, DataScope).join(DataScope, DataScope.id == UnitVersion.scope_id)
            .where(DataScope.unit == CONTACTS).order_by(UnitVersion.accepted_at, UnitVersion.id)).all()
        for version, scope in versions:
            delivery = session.get(Delivery, version.delivery_id)
            assert delivery is not None
            current = scope.current_version_id == version.id
            contacts += consolidator.apply(version, delivery, CONTACTS, None, current)
    cycles = sorted(set(session.scalars(select(SummaryFact.cycle).distinct())))
    aggregates = Aggregates(session, archive, spec)
    for cycle in cycles:
        aggregates.rebuild(cycle)
    log.info("backfilled %d contact facts and the aggregates of %d cycle(s)", contacts, len(cycles))
    return {"contact_facts": contacts, "cycles": len(cycles)}
