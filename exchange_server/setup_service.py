"""``init``: create or migrate the database and load the org tree from the standard."""
from __future__ import annotations

import datetime as dt

from . import migrations
from .consolidation.backfill import backfill, needs_backfill
from .org.services import OrgService
from .runtime import Runtime


def initialise(rt: Runtime, day: dt.date | None = None) -> dict[str, int | str | None]:
    """Bring the database to the latest schema and the org tree up to date; safe to repeat."""
    before = migrations.current_revision(rt.db.engine)
    migrations.upgrade(rt.db.engine)
    with rt.db.session() as session:
        added, updated = OrgService(session).sync_from_spec(rt.spec, day or dt.date.today(),
                                                           rt.settings.hub_party or None)
    filled = {"contact_facts": 0, "cycles": 0}
    with rt.db.session() as session:
        if needs_backfill(session):  # data accepted before the aggregates existed (migration 0007)
            filled = backfill(session, rt.archive, rt.spec)
    return {"revision_before": before, "revision": migrations.current_revision(rt.db.engine),
            "areas_added": added, "areas_updated": updated, "backfilled_cycles": filled["cycles"]}
