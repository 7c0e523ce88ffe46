"""Aggregates per (cycle, province), kept in step with the facts in the accepting transaction.

A roll-up of a national cycle at scale has millions of detail facts; summing them per
request took seconds. Every acceptance changes the facts of one province (its own scope,
or one of its local networks), so after consolidating it this module sums *that province's*
current facts again — a few indexed GROUP BYs over one province, proportional to what the
province sends — and replaces the province's aggregate rows. A roll-up then adds up at
most a few thousand aggregate rows.

What is kept (models.py): which version counts per unit and network (``agg_source``, for
completeness and lineage), top-500 revenue and customers per product (``agg_product``),
customers and revenue per level and industry (``agg_customer``) and top-500 coverage
(``agg_coverage``, which also depends on the list versions: it carries the list stamp it
was computed with and is computed again when that no longer matches).
"""
from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, literal, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from schemas import Spec

from ..org.services import OrgService
from ..storage import Archive
from .models import (
    FACTS, CoverageAggregate, CustomerAggregate, CustProdFact, CustomerFact, ProductAggregate, SourceAggregate,
)

log = logging.getLogger(__name__)
MISSING_LISTED = 50  # missing customer ids kept per province (the counts are always exact)
CUSTOMER_DIMENSIONS = ("level_id", "c_type_id")


def _table(model: Any) -> Table:
    """A model's table, for Core statements."""
    return cast(Table, model.__table__)


def list_stamp_text(stamp: tuple[int, ...]) -> str:
    """A list stamp (the ids of the versions that count) as stored with a coverage row."""
    return ",".join(str(i) for i in stamp)


class Aggregates:
    """Re-sums one province's aggregates of a cycle from its current facts."""

    def __init__(self, session: Session, archive: Archive | None, spec: Spec) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec

    def refresh(self, cycle: str, province: str, units: set[str]) -> None:
        """Everything that depends on ``units`` for one province of a cycle."""
        for unit in sorted(units):
            self.sources(cycle, province, unit)
        if "31203" in units:
            self.products(cycle, province)
        if units & {"31201", "31203"}:
            self.customers(cycle, province)
        if "31201" in units:
            self.coverage(cycle, [province])

    def rebuild(self, cycle: str) -> None:
        """Every aggregate of a cycle from its facts (after an upgrade, or to check the incremental ones)."""
        provinces = [a.code for a in OrgService(self.session).provinces()]
        for province in provinces:
            self.refresh(cycle, province, set(FACTS))

    # -- the parts ---------------------------------------------------------------------------
    def sources(self, cycle: str, province: str, unit: str) -> None:
        """Which version counts for each of the province's networks in one unit, and how many rows."""
        table = sa_inspect(FACTS[unit]).local_table
        t = _table(SourceAggregate)
        self.session.execute(delete(t).where(t.c.cycle == cycle, t.c.unit == unit, t.c.prov_id == province))
        counted = (select(literal(cycle), literal(unit), table.c.latn_id, literal(province), table.c.version_id,
                          func.count())
                   .where(table.c.cycle == cycle, table.c.prov_id == province, table.c.current.is_(True))
                   .group_by(table.c.latn_id, table.c.version_id))
        rows = self.session.execute(counted).all()
        if len({r[2] for r in rows}) != len(rows):  # one version per network, by construction of Consolidator
            log.error("cycle %s unit %s province %s: a network counts rows of two versions: %s", cycle, unit,
                      province, rows)
            newest: dict[str, Any] = {}
            for r in rows:
                if r[2] not in newest or r[4] > newest[r[2]][4]:
                    newest[r[2]] = r
            rows = list(newest.values())
        if rows:
            self.session.execute(insert(t), [dict(cycle=r[0], unit=r[1], latn_id=r[2], prov_id=r[3],
                                                  version_id=r[4], rows=int(r[5])) for r in rows])

    def products(self, cycle: str, province: str) -> None:
        """Top-500 customers' revenue and distinct customers per product, in one province."""
        t = _table(ProductAggregate)
        f = CustProdFact
        self.session.execute(delete(t).where(t.c.cycle == cycle, t.c.prov_id == province))
        self.session.execute(insert(t).from_select(
            ["cycle", "prov_id", "prod_id", "income_amt", "customers"],
            select(literal(cycle), literal(province), f.prod_id, func.coalesce(func.sum(f.income_amt), 0),
                   func.count(func.distinct(f.national_cust_id)))
            .where(f.cycle == cycle, f.prov_id == province, f.current.is_(True)).group_by(f.prod_id)))

    def customers(self, cycle: str, province: str) -> None:
        """Customers with details and their top-500 revenue per level and per industry, in one province.

        Two indexed reads of one province (customers; revenue per customer) joined here: a SQL
        join of the two fact tables lets SQLite pick a nested scan that grows with the square
        of the province's size.
        """
        t = _table(CustomerAggregate)
        self.session.execute(delete(t).where(t.c.cycle == cycle, t.c.prov_id == province))
        c, p = CustomerFact, CustProdFact
        revenue: dict[str, int] = {cust: int(fen or 0) for cust, fen in self.session.execute(
            select(p.national_cust_id, func.sum(p.income_amt))
            .where(p.cycle == cycle, p.prov_id == province, p.current.is_(True)).group_by(p.national_cust_id))}
        sums: dict[tuple[str, str], list[int]] = {}
        for cust, *codes in self.session.execute(
                select(c.national_cust_id, *(getattr(c, dim) for dim in CUSTOMER_DIMENSIONS))
                .where(c.cycle == cycle, c.prov_id == province, c.current.is_(True))):
            for dim, code in zip(CUSTOMER_DIMENSIONS, codes):
                acc = sums.setdefault((dim, code), [0, 0])
                acc[0] += 1
                acc[1] += revenue.get(cust, 0)
        if sums:
            self.session.execute(insert(t), [dict(cycle=cycle, prov_id=province, dimension=dim, code=code,
                                                  customers=n, income_amt=fen)
                                             for (dim, code), (n, fen) in sorted(sums.items())])

    def coverage(self, cycle: str, provinces: list[str]) -> None:
        """Top-500 coverage of provinces for a cycle: the customers in force for it, with details or missing."""
        from ..lists.services import ListService

        lists = ListService(self.session, self.archive, self.spec)
        stamp = lists.stamp()
        t = _table(CoverageAggregate)
        self.session.execute(delete(t).where(t.c.cycle == cycle, t.c.prov_id.in_(provinces)))
        if not stamp:
            return  # no list published: nothing to cover
        rows = []
        for province in provinces:
            listed = lists.cycle_list(cycle, province)
            if listed is None:
                continue
            received = set(self.session.scalars(select(CustomerFact.national_cust_id).where(
                CustomerFact.cycle == cycle, CustomerFact.prov_id == province, CustomerFact.current.is_(True))))
            ids = listed.ids
            missing = sorted(ids - received)
            rows.append(dict(cycle=cycle, prov_id=province, list_stamp=list_stamp_text(stamp),
                             list_version=listed.label, listed=len(ids), received=len(ids) - len(missing),
                             missing_ids=" ".join(missing[:MISSING_LISTED])))
        if rows:
            self.session.execute(insert(t), rows)

    def stale_coverage(self, cycle: str) -> list[str]:
        """Provinces whose coverage of a cycle was computed with other list versions (or never)."""
        from ..lists.services import ListService

        ids = ListService(self.session, self.archive, self.spec).stamp()
        if not ids:
            return []
        stamp = list_stamp_text(ids)
        have = dict(self.session.execute(select(CoverageAggregate.prov_id, CoverageAggregate.list_stamp)
                                         .where(CoverageAggregate.cycle == cycle)).all())
        return [a.code for a in OrgService(self.session).provinces() if have.get(a.code) != stamp]
