"""Consolidating an accepted version: its rows become facts, in the acceptance's own transaction.

The work is proportional to the delivery, never to the whole cycle: the new version's rows
are inserted, the rows it replaces lose their ``current`` mark (the superseded version of
the same scope, and other scopes' rows for the same local networks — CONVENTIONS.md §10:
for each network the most recently accepted rows count). Nothing else is touched, so
accepting the 31st province costs what accepting the 1st did, and because it all happens
in the transaction that records the acceptance, a report never mixes versions.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import insert, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from schemas import Spec

from ..storage import Archive
from ..submissions.models import Delivery, UnitVersion
from ..submissions.rows import unit_rows
from .models import FACTS, MONEY_SCALE, RollupCache

BATCH = 5000


def _converter(column: str, column_type: Any) -> Callable[[str], Any]:
    scale = MONEY_SCALE.get(column)
    if scale is not None:  # exact decimal text -> integer fen (or thousandths)
        return lambda v: int(Decimal(v).scaleb(scale)) if v else None
    if type(column_type).__name__ in ("Integer", "BigInteger"):
        return lambda v: int(v) if v else 0
    return lambda v: v


class Consolidator:
    """Turns accepted versions into facts."""

    def __init__(self, session: Session, archive: Archive, spec: Spec) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec

    def apply(self, version: UnitVersion, delivery: Delivery, unit_code: str, replaced_id: int | None,
              current: bool) -> int:
        """Load one version's rows as facts; returns how many rows."""
        model = FACTS.get(unit_code)
        if model is None:
            return 0
        table = sa_inspect(model).local_table
        columns = {c.name: _converter(c.name, c.type) for c in table.columns
                   if c.name not in ("id", "version_id", "party", "cycle", "current")}
        field_of = {c: c.upper() for c in columns}
        base = {"version_id": version.id, "party": delivery.party, "cycle": delivery.period, "current": current}
        networks: set[str] = set()
        batch: list[dict[str, Any]] = []
        n = 0
        for row in unit_rows(self.archive, self.spec, delivery, unit_code):
            fact = dict(base)
            for col, conv in columns.items():
                fact[col] = conv(row.get(field_of[col], ""))
            networks.add(str(fact["latn_id"]))
            batch.append(fact)
            if len(batch) >= BATCH:
                self.session.execute(insert(table), batch)
                n += len(batch)
                batch = []
        if current:
            if replaced_id is not None:
                self.session.execute(update(table).where(table.c.version_id == replaced_id).values(current=False))
            # Another scope's rows for the same networks step back: the newest acceptance counts.
            nets = sorted(networks)
            for i in range(0, len(nets), 500):
                self.session.execute(
                    update(table).where(table.c.cycle == delivery.period, table.c.current.is_(True),
                                        table.c.latn_id.in_(nets[i:i + 500]), table.c.version_id != version.id)
                    .values(current=False))
        if batch:
            self.session.execute(insert(table), batch)
            n += len(batch)
        self.bump(str(delivery.period))
        return n

    def bump(self, cycle: str) -> None:
        """Invalidate the cycle's cached roll-up (same transaction as the change)."""
        cache = self.session.get(RollupCache, cycle, with_for_update=True)
        if cache is None:
            self.session.add(RollupCache(cycle=cycle, generation=1))
            self.session.flush()
        else:
            cache.generation += 1
