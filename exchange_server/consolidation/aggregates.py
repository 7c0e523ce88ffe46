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

Coverage is kept per customer, not only counted: ``missing_ids`` holds every listed customer
of the province lacking at least one of the four kinds (details 31201, contacts 31202,
products and revenue 31203), as ``id:kinds:network`` tokens (``kinds`` the letters of the
missing kinds, ``dcpr``) — those without details first, so the roll-up's first 50 ids
missing details are read from the head of the text alone. Only the gaps are stored: a
province that covers its list stores nothing, one that sent nothing stores its list once.
"""
from __future__ import annotations

import logging
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, delete, func, insert, literal, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from schemas import Spec

from ..org.services import OrgService
from ..storage import Archive
from .models import (
    FACTS, ContactFact, CoverageAggregate, CustomerAggregate, CustProdFact, CustomerFact, ProductAggregate,
    SourceAggregate,
)

log = logging.getLogger(__name__)
MISSING_LISTED = 50  # missing customer ids the roll-up lists per province (the counts are always exact)
CUSTOMER_DIMENSIONS = ("level_id", "c_type_id")
# The four kinds of coverage: key, letter in a gap token, units whose current facts show it.
COVERAGE_KINDS: dict[str, tuple[str, str]] = {"details": ("d", "31201"), "contacts": ("c", "31202"),
                                              "products": ("p", "31203"), "revenue": ("r", "31203")}
# Appended to the list stamp of a coverage row: rows of an older layout (only the first 50 ids
# without details) are stale and computed again.
COVERAGE_LAYOUT = "gaps2"
# A gap token is at most 10 (id) + 1 + 4 (kinds) + 1 + 4 (network) + 1 (space) characters.
GAP_TOKEN_MAX = 21


def _table(model: Any) -> Table:
    """A model's table, for Core statements."""
    return cast(Table, model.__table__)


def list_stamp_text(stamp: tuple[int, ...]) -> str:
    """A list stamp (the ids of the versions that count) as stored with a coverage row."""
    return ",".join(str(i) for i in stamp)


def coverage_stamp_text(stamp: tuple[int, ...]) -> str:
    """What a coverage row carries: the list stamp and the layout of its gap text."""
    return f"{list_stamp_text(stamp)};{COVERAGE_LAYOUT}"


class Gap(NamedTuple):
    """One listed customer of a province lacking at least one kind of coverage."""

    cust_id: str
    missing: frozenset[str]  # keys of COVERAGE_KINDS
    latn_id: str  # its lead local network ('' when the list names none)


_LETTER_KIND = {letter: kind for kind, (letter, _unit) in COVERAGE_KINDS.items()}


def gap_text(gaps: list[Gap]) -> str:
    """Gaps as stored: ``id:kinds:network`` tokens, those without details first, each part by id."""
    ordered = sorted(gaps, key=lambda g: ("details" not in g.missing, g.cust_id))
    return " ".join(f"{g.cust_id}:{''.join(COVERAGE_KINDS[k][0] for k in COVERAGE_KINDS if k in g.missing)}:"
                    f"{g.latn_id}" for g in ordered)


def parse_gaps(text: str | None) -> list[Gap]:
    """Stored gap text back as gaps (a bare id, the layout before kinds were kept, lacks details)."""
    out = []
    for token in (text or "").split():
        cust, _, rest = token.partition(":")
        letters, _, latn = rest.partition(":")
        kinds = frozenset(_LETTER_KIND[ch] for ch in letters if ch in _LETTER_KIND) if rest else \
            frozenset({"details"})
        out.append(Gap(cust, kinds, latn))
    return out


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
        if units & {unit for _letter, unit in COVERAGE_KINDS.values()}:
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
        """Top-500 coverage of provinces for a cycle: the customers in force for it, and each one's gaps.

        Per province, the ids with current facts of each kind (indexed reads of that province,
        as large as what it sent) are compared with its list in force for the cycle; only the
        customers lacking something are stored (``gap_text``).
        """
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
            have = self._covered(cycle, province)
            gaps = []
            for cust, entry in listed.entries.items():
                missing = frozenset(kind for kind in COVERAGE_KINDS if cust not in have[kind])
                if missing:
                    gaps.append(Gap(cust, missing, entry.lead_latn or ""))
            without_details = sum(1 for g in gaps if "details" in g.missing)
            rows.append(dict(cycle=cycle, prov_id=province, list_stamp=coverage_stamp_text(stamp),
                             list_version=listed.label, listed=len(listed.entries),
                             received=len(listed.entries) - without_details, missing_ids=gap_text(gaps)))
        if rows:
            self.session.execute(insert(t), rows)

    def _covered(self, cycle: str, province: str) -> dict[str, set[str]]:
        """Per kind of coverage, the customers of a province with current facts of it for a cycle."""
        c, k, p = CustomerFact, ContactFact, CustProdFact

        def ids(query: Any) -> set[str]:
            return set(self.session.scalars(query))

        revenue_rows = (select(p.national_cust_id).where(p.cycle == cycle, p.prov_id == province, p.current.is_(True))
                        .group_by(p.national_cust_id))
        return {
            "details": ids(select(c.national_cust_id).where(c.cycle == cycle, c.prov_id == province,
                                                            c.current.is_(True))),
            "contacts": ids(select(k.national_cust_id).where(k.cycle == cycle, k.prov_id == province,
                                                             k.current.is_(True)).distinct()),
            "products": ids(revenue_rows),
            # Revenue received: some product row with a non-zero amount (0 is what a province
            # writes when it has the product but no billing figure).
            "revenue": ids(revenue_rows.having(func.sum(func.abs(p.income_amt)) > 0)),
        }

    def stale_coverage(self, cycle: str) -> list[str]:
        """Provinces whose coverage of a cycle was computed with other list versions (or never)."""
        from ..lists.services import ListService

        ids = ListService(self.session, self.archive, self.spec).stamp()
        if not ids:
            return []
        stamp = coverage_stamp_text(ids)
        have = dict(self.session.execute(select(CoverageAggregate.prov_id, CoverageAggregate.list_stamp)
                                         .where(CoverageAggregate.cycle == cycle)).all())
        return [a.code for a in OrgService(self.session).provinces() if have.get(a.code) != stamp]
