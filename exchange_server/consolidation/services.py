"""Consolidating an accepted delivery: its rows become facts, in the acceptance's own transaction.

The work is proportional to the delivery, never to the whole cycle: the new version's rows
are inserted, the rows it replaces lose their ``current`` mark (the superseded version of
the same scope, and other scopes' rows for the same local networks — CONVENTIONS.md §10:
for each network the most recently accepted rows count), and the sending province's
aggregates are summed again from its current facts (``aggregates.py``). Nothing else is
touched, so accepting the 31st province costs what accepting the 1st did, and because it
all happens in the transaction that records the acceptance, a report never mixes versions.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterable

from sqlalchemy import func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from schemas import Spec

from ..org.services import OrgService
from ..storage import Archive
from ..submissions.models import DataScope, Delivery, UnitVersion
from ..submissions.rows import unit_rows
from ..submissions.versions import Accepted
from .aggregates import Aggregates
from .models import FACTS, MONEY_SCALE, CustomerFact, CycleGeneration

BATCH = 5000
CONTACTS = "31202"  # no network of its own: a contact counts for its customer's home network


def _converter(column: str, column_type: Any) -> Callable[[str], Any]:
    scale = MONEY_SCALE.get(column)
    if scale is not None:  # exact decimal text -> integer fen (or thousandths)
        return lambda v: int(Decimal(v).scaleb(scale)) if v else None
    if type(column_type).__name__ in ("Integer", "BigInteger"):
        return lambda v: int(v) if v else 0
    return lambda v: v


class Consolidator:
    """Turns accepted versions into facts and keeps the aggregates in step."""

    def __init__(self, session: Session, archive: Archive, spec: Spec) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec

    def apply_delivery(self, delivery: Delivery, accepted: Iterable[Accepted]) -> int:
        """Consolidate every version an accepted delivery produced, then re-sum its province's aggregates."""
        made = sorted(accepted, key=lambda a: a.unit)  # 31201 before 31202: contacts find their customers there
        n = 0
        customers: int | None = None
        for a in made:
            n += self.apply(a.version, delivery, a.unit, a.replaced_id, a.current, customers_version=customers)
            if a.unit == "31201" and a.current:
                customers = a.version.id
        province = OrgService(self.session).province_of(str(delivery.party))
        if province is not None and made:
            Aggregates(self.session, self.archive, self.spec).refresh(str(delivery.period), province,
                                                                      {a.unit for a in made})
        return n

    def apply(self, version: UnitVersion, delivery: Delivery, unit_code: str, replaced_id: int | None,
              current: bool, customers_version: int | None = None) -> int:
        """Load one version's rows as facts; returns how many rows."""
        model = FACTS.get(unit_code)
        if model is None:
            return 0
        table = sa_inspect(model).local_table
        unit = self.spec.unit(unit_code)
        columns = {c.name: _converter(c.name, c.type) for c in table.columns
                   if c.name not in ("id", "version_id", "party", "cycle", "current")
                   and unit.has_field(c.name.upper())}
        field_of = {c: c.upper() for c in columns}
        base: dict[str, Any] = {"version_id": version.id, "party": delivery.party, "cycle": delivery.period,
                                "current": current}
        home: dict[str, str] = {}
        if unit_code == CONTACTS:
            province = OrgService(self.session).province_of(str(delivery.party)) or ""
            base["prov_id"] = province
            home = self._home_networks(str(delivery.period), province, customers_version)
            fallback = str(delivery.party) if len(str(delivery.party)) > 2 else ""
        networks: set[str] = set()
        batch: list[dict[str, Any]] = []
        n = 0
        for row in unit_rows(self.archive, self.spec, delivery, unit_code):
            fact = dict(base)
            for col, conv in columns.items():
                fact[col] = conv(row.get(field_of[col], ""))
            if unit_code == CONTACTS:
                fact["latn_id"] = home.get(row.get("NATIONAL_CUST_ID", ""), fallback)
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
        if current and replaced_id is not None:
            self._restore_uncovered(table, unit_code, str(delivery.period), replaced_id, networks)
        self.bump(str(delivery.period))
        return n

    def _restore_uncovered(self, table: Any, unit_code: str, cycle: str, replaced_id: int, covered: set[str]) -> None:
        """Networks the replaced version counted for and the new one does not cover: the newest other version counts.

        A province's earlier version may have stepped a local network's own rows back; once
        that version is replaced by one leaving the network out, the network's own (still
        current in its scope) is again the most recently accepted data for it.
        """
        dropped = set(self.session.scalars(select(table.c.latn_id).where(table.c.version_id == replaced_id)
                                           .distinct())) - covered
        if not dropped:
            return
        scopes = select(DataScope.current_version_id).where(DataScope.cycle == cycle, DataScope.unit == unit_code,
                                                            DataScope.current_version_id.is_not(None))
        for latn in sorted(dropped):
            newest = self.session.scalar(select(func.max(table.c.version_id)).where(
                table.c.cycle == cycle, table.c.latn_id == latn, table.c.version_id.in_(scopes),
                table.c.version_id != replaced_id))
            if newest is not None:
                self.session.execute(update(table).where(table.c.version_id == newest, table.c.latn_id == latn)
                                     .values(current=True))

    def _home_networks(self, cycle: str, province: str, customers_version: int | None) -> dict[str, str]:
        """Customer id -> home network: from the same delivery's 31201, else the customers counted now."""
        q = select(CustomerFact.national_cust_id, CustomerFact.latn_id)
        if customers_version is not None:
            q = q.where(CustomerFact.version_id == customers_version)
        else:
            q = q.where(CustomerFact.cycle == cycle, CustomerFact.prov_id == province, CustomerFact.current.is_(True))
        return {c: n for c, n in self.session.execute(q)}

    def bump(self, cycle: str) -> None:
        """Move the cycle's generation on (same transaction as the change): kept downloads of it are stale."""
        found = self.session.get(CycleGeneration, cycle, with_for_update=True)
        if found is None:
            self.session.add(CycleGeneration(cycle=cycle, generation=1))
            self.session.flush()
        else:
            found.generation += 1
