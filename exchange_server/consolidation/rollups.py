"""The group roll-ups of a cycle, from the current facts and the aggregates kept with them.

Every figure is a SQL SUM of integer fen, turned into an exact Decimal of yuan at the end,
so the provinces add up to the group total to the fen by construction; the tests check it on
generated data and with hypothesis. The summary units (32001-32003: a row per local
network, a few thousand rows per cycle whatever the scale) are summed from their facts; the
customer units (31201-31203: millions of rows at scale) from the per-province aggregates
the accepting transaction keeps (``aggregates.py``). Each roll-up names exactly the
versions whose rows it counts (per unit and local network) and what is missing.

Comparisons with another cycle (month on month) read that cycle too, and say how much of it
was reported: a comparison with a half-reported month is marked partial, and a
like-for-like figure over the local networks reported in both is given beside it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas.conventions import Cycle

from ..admin.models import CycleException
from ..clock import as_utc, beijing_stamp, iso, utcnow
from ..code_lists.services import live_spec
from ..cycles.models import ReportingCycle
from ..org.models import LOCAL_NETWORK, PROVINCE, Area
from ..submissions.models import DataScope, Delivery, DeliveryApproval, DeliveryFile, UnitVersion
from .aggregates import GAP_TOKEN_MAX, MISSING_LISTED, Aggregates, list_stamp_text, parse_gaps
from .models import (
    FACTS, MONEY_SCALE, CoverageAggregate, CustomerAggregate, CycleGeneration, IncomeFact, ProductAggregate, ServFact,
    SourceAggregate, SummaryFact,
)

ZERO = Decimal("0.00")
SUMMARY_MEASURES = ("cust_cnt", "cust_cnt_group", "cust_cnt_prov", "cust_cnt_la", "cust_cnt_lb", "cust_cnt_lc",
                    "new_cust_cnt", "lost_cust_cnt", "top500_cust_cnt", "manager_cnt", "income_amt",
                    "income_ytd_amt", "income_ly_amt")


def _money(fen: Any) -> Decimal:
    """Integer fen (as stored and summed) to yuan, exactly."""
    return (Decimal(int(fen)).scaleb(-2) if fen is not None else ZERO).quantize(Decimal("0.01"))


def _pct(part: Decimal, whole: Decimal) -> Decimal | None:
    """part/whole - 1 in percent, two decimals; None when there is nothing to compare with."""
    if not whole:
        return None
    return ((part / whole - 1) * 100).quantize(Decimal("0.01"))


def _share(done: int, expected: int) -> Decimal | None:
    """done/expected in percent, two decimals; None when nothing is expected."""
    if not expected:
        return None
    return (Decimal(done * 100) / expected).quantize(Decimal("0.01"))


def latest_received(session: Session, cycle: str) -> dict[tuple[str, str], tuple[int, str]]:
    """(party, unit) -> the latest entitled delivery of the cycle (production mode) received for it: its id and status."""
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for did, party, status, unit in session.execute(
            select(Delivery.id, Delivery.party, Delivery.status, DeliveryFile.unit)
            .join(DeliveryFile, DeliveryFile.delivery_id == Delivery.id)
            .where(Delivery.period == cycle, Delivery.mode == "P", DeliveryFile.unit.is_not(None),
                   Delivery.entitled.is_(True))
            .order_by(Delivery.id)):
        if party is not None and unit is not None:
            out[(party, unit)] = (did, status)
    return out


def previous_cycle(cycle: str) -> str | None:
    """The cycle month on month (quarter on quarter, ...) compares with; None for a cycle id that is not one."""
    try:
        return Cycle.parse(cycle).previous().id
    except ValueError:
        return None


class Counted(NamedTuple):
    """One unit and local network of a cycle, and the version (and delivery) whose rows count for it."""

    unit: str
    latn_id: str
    prov_id: str
    rows: int
    version_id: int
    number: int
    accepted_at: dt.datetime
    party: str
    versions_count: int
    delivery_id: int
    check_name: str | None
    resend: int
    late: bool


@dataclass
class Rollup:
    """One cycle's group picture."""

    cycle: str
    totals: dict[str, Any]
    by_province: list[dict[str, Any]]
    by_network: list[dict[str, Any]]
    by_product: list[dict[str, Any]]
    by_billing_item: list[dict[str, Any]]
    by_level: list[dict[str, Any]]
    by_industry: list[dict[str, Any]]
    coverage: list[dict[str, Any]]
    completeness: dict[str, Any]
    lineage: list[dict[str, Any]] = field(default_factory=list)
    # What this roll-up was built from, calendar included ("" when computed outside the cache):
    # two roll-ups with the same non-empty key render to the same bytes.
    key: str = field(default="", compare=False)

    BREAKDOWNS = ("by_province", "by_network", "by_product", "by_billing_item", "by_level", "by_industry",
                  "coverage")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (decimals stay exact: they are rendered as strings by the JSON layer)."""
        return {k: v for k, v in self.__dict__.items() if k != "key"}


class RollupService:
    """Computes roll-ups from the facts and aggregates."""

    def __init__(self, session: Session, spec: Any) -> None:
        self.session = session
        self.spec = live_spec(session, spec)  # with the code-list versions published at run time
        self._area_cache: dict[str, tuple[str, str, str | None]] | None = None
        self._network_rows: dict[str, list[dict[str, Any]]] = {}
        self._counted_rows: dict[str, list[Counted]] = {}
        self._expected: dict[str | None, dict[str, int]] = {}

    def _names(self, domain: str) -> dict[str, tuple[str, str]]:
        codes = self.spec.domain(domain).current.codes
        return {c.code: (c.name_zh, c.name_en) for c in codes.values()}

    def _areas(self) -> dict[str, tuple[str, str, str | None]]:
        """Area code -> (Chinese name, English name, parent code for a local network)."""
        if self._area_cache is None:
            self._area_cache = {code: (zh, en, parent if level == LOCAL_NETWORK else None) for code, zh, en, level, parent
                                in self.session.execute(select(Area.code, Area.name_zh, Area.name_en, Area.level,
                                                               Area.parent_code))}
        return self._area_cache

    def expected_networks(self, cycle: str | None) -> dict[str, int]:
        """Local networks per province in force for the cycle (the org tree on its first day)."""
        if cycle in self._expected:
            return self._expected[cycle]
        if cycle is None:
            return {}
        try:
            day = Cycle.parse(cycle).begin
        except ValueError:
            day = utcnow().date()
        out: dict[str, int] = {}
        for c in self.spec.domain("Domain_area_id").version_on(day).codes.values():
            if c.level == "local_network" and c.parent:
                out[c.parent] = out.get(c.parent, 0) + 1
        self._expected[cycle] = out
        return out

    # -- summary-based ---------------------------------------------------------------------
    def _networks(self, cycle: str | None) -> list[dict[str, Any]]:
        """A cycle's counted 32001 rows (one per local network, a few hundred at most), read once."""
        if cycle is None:
            return []
        if cycle not in self._network_rows:
            f = SummaryFact
            q = (select(f.prov_id, f.latn_id, *(getattr(f, m) for m in SUMMARY_MEASURES))
                 .where(f.cycle == cycle, f.current.is_(True)).order_by(f.prov_id, f.latn_id))
            self._network_rows[cycle] = [dict(zip(("prov_id", "latn_id", *SUMMARY_MEASURES), row))
                                         for row in self.session.execute(q)]
        return self._network_rows[cycle]

    @staticmethod
    def _measures(rows: list[dict[str, Any]], measures: tuple[str, ...] = SUMMARY_MEASURES) -> dict[str, Any]:
        """The measures summed over rows: counts as int, money (integer fen) as exact yuan."""
        return {m: (_money(sum(int(r[m]) for r in rows)) if m.endswith("_amt") else sum(int(r[m]) for r in rows))
                for m in measures}

    def totals(self, cycle: str) -> dict[str, Any]:
        """Group totals, year to date, year on year, and month on month with how much of each month was reported."""
        out = self._measures(self._networks(cycle))
        out.update(self._comparison(cycle, None))
        out["yoy_pct"] = _pct(out["income_amt"], out["income_ly_amt"])
        return out

    def _comparison(self, cycle: str, province: str | None) -> dict[str, Any]:
        """This period against the previous one: reporting shares, revenues, % (all, and like for like)."""
        prev = previous_cycle(cycle)
        now = {r["latn_id"]: int(r["income_amt"]) for r in self._networks(cycle)
               if province is None or r["prov_id"] == province}
        before = {r["latn_id"]: int(r["income_amt"]) for r in self._networks(prev)
                  if province is None or r["prov_id"] == province}
        expected_now = self.expected_networks(cycle)
        expected_before = self.expected_networks(prev)
        n_now = sum(expected_now.values()) if province is None else expected_now.get(province, 0)
        n_before = sum(expected_before.values()) if province is None else expected_before.get(province, 0)
        income, income_prev = _money(sum(now.values())), _money(sum(before.values()))
        both = set(now) & set(before)
        like_now, like_before = _money(sum(now[k] for k in both)), _money(sum(before[k] for k in both))
        return {
            "networks": len(now), "networks_expected": n_now, "share_reported_pct": _share(len(now), n_now),
            "prev_cycle": prev, "income_prev_amt": income_prev, "prev_networks": len(before),
            "prev_networks_expected": n_before, "prev_share_reported_pct": _share(len(before), n_before),
            "mom_pct": _pct(income, income_prev),
            # A comparison is partial when either period is not fully reported: the percentage
            # then mixes reporting with growth, so the like-for-like one is given beside it.
            "mom_partial": bool(before) and (len(now) < n_now or len(before) < n_before),
            "mom_comparable_networks": len(both),
            "mom_comparable_pct": _pct(like_now, like_before),
        }

    def by_province(self, cycle: str) -> list[dict[str, Any]]:
        """Key accounts and revenue per province, year on year and month on month with the shares reported."""
        areas = self._areas()
        grouped: dict[str, list[dict[str, Any]]] = {}
        for r in self._networks(cycle):
            grouped.setdefault(r["prov_id"], []).append(r)
        rows = []
        for prov, nets in sorted(grouped.items()):
            zh, en = areas.get(prov, ("", "", None))[:2]
            d: dict[str, Any] = {"prov_id": prov, "name_zh": zh, "name_en": en}
            d.update(self._measures(nets))
            d["yoy_pct"] = _pct(d["income_amt"], d["income_ly_amt"])
            d.update(self._comparison(cycle, prov))
            rows.append(d)
        return rows

    def by_network(self, cycle: str) -> list[dict[str, Any]]:
        """Key accounts and revenue per local network, with the delivery its figures come from."""
        areas = self._areas()
        counted = {c.latn_id: (c.party, c.delivery_id, c.number) for c in self._counted(cycle) if c.unit == "32001"}
        rows = []
        for r in self._networks(cycle):
            zh, en = areas.get(r["latn_id"], ("", "", None))[:2]
            d: dict[str, Any] = {"prov_id": r["prov_id"], "latn_id": r["latn_id"], "name_zh": zh, "name_en": en}
            d.update(self._measures([r], ("cust_cnt", "new_cust_cnt", "lost_cust_cnt", "income_amt", "income_ytd_amt",
                                          "income_ly_amt")))
            party, did, num = counted.get(r["latn_id"], (None, None, None))
            d.update(party=party, delivery_id=did, version=num)
            rows.append(d)
        return rows

    # -- other units -------------------------------------------------------------------------
    def by_product(self, cycle: str) -> list[dict[str, Any]]:
        """Service volume per product (32002) and top-500 customers' revenue per product (31203)."""
        names = self._names("Domain_prod_id")
        serv = {r.prod_id: r for r in self.session.execute(
            select(ServFact.prod_id, func.sum(ServFact.serv_cnt).label("serv_cnt"),
                   func.sum(ServFact.new_serv_cnt).label("new"), func.sum(ServFact.cancel_serv_cnt).label("cancel"),
                   func.sum(ServFact.serv_cnt_ly).label("ly"), func.sum(ServFact.cust_cnt).label("cust"))
            .where(ServFact.cycle == cycle, ServFact.current.is_(True)).group_by(ServFact.prod_id))}
        rev = {r.prod_id: r for r in self.session.execute(
            select(ProductAggregate.prod_id, func.sum(ProductAggregate.income_amt).label("income"),
                   func.sum(ProductAggregate.customers).label("customers"))
            .where(ProductAggregate.cycle == cycle).group_by(ProductAggregate.prod_id))}
        out = []
        for code in sorted(set(serv) | set(rev)):
            s, r = serv.get(code), rev.get(code)
            zh, en = names.get(code, ("", ""))
            out.append({"prod_id": code, "name_zh": zh, "name_en": en,
                        "serv_cnt": int(s.serv_cnt) if s else 0, "new_serv_cnt": int(s.new) if s else 0,
                        "cancel_serv_cnt": int(s.cancel) if s else 0, "serv_cnt_ly": int(s.ly) if s else 0,
                        "serv_cust_cnt": int(s.cust) if s else 0,
                        "top500_income_amt": _money(r.income) if r else ZERO,
                        "top500_customers": int(r.customers) if r else 0})
        return out

    def by_billing_item(self, cycle: str) -> list[dict[str, Any]]:
        """Revenue per billing item (32003): this period, year to date, last year."""
        names = self._names("Domain_acct_item_type_id")
        q = (select(IncomeFact.acct_item_type_id, func.sum(IncomeFact.income_amt).label("i"),
                    func.sum(IncomeFact.income_ytd_amt).label("y"), func.sum(IncomeFact.income_ly_amt).label("l"),
                    func.sum(IncomeFact.income_ly_ytd_amt).label("ly"))
             .where(IncomeFact.cycle == cycle, IncomeFact.current.is_(True))
             .group_by(IncomeFact.acct_item_type_id).order_by(IncomeFact.acct_item_type_id))
        out = []
        for r in self.session.execute(q):
            zh, en = names.get(r.acct_item_type_id, ("", ""))
            d: dict[str, Any] = {"acct_item_type_id": r.acct_item_type_id, "name_zh": zh, "name_en": en,
                                 "income_amt": _money(r.i), "income_ytd_amt": _money(r.y),
                                 "income_ly_amt": _money(r.l), "income_ly_ytd_amt": _money(r.ly)}
            d["yoy_pct"] = _pct(d["income_amt"], d["income_ly_amt"])
            out.append(d)
        return out

    def _by_customer_attr(self, cycle: str, attr: str, domain: str) -> list[dict[str, Any]]:
        names = self._names(domain)
        agg = CustomerAggregate
        out = []
        for code, customers, income in self.session.execute(
                select(agg.code, func.sum(agg.customers), func.sum(agg.income_amt))
                .where(agg.cycle == cycle, agg.dimension == attr).group_by(agg.code).order_by(agg.code)):
            zh, en = names.get(code, ("", ""))
            out.append({attr: code, "name_zh": zh, "name_en": en, "customers": int(customers or 0),
                        "top500_income_amt": _money(income)})
        return out

    def by_level(self, cycle: str) -> list[dict[str, Any]]:
        """Top-500 customers and their revenue by customer level."""
        return self._by_customer_attr(cycle, "level_id", "Domain_level_id")

    def by_industry(self, cycle: str) -> list[dict[str, Any]]:
        """Top-500 customers and their revenue by customer type (industry)."""
        return self._by_customer_attr(cycle, "c_type_id", "Domain_c_type_id")

    # -- coverage, completeness, lineage ------------------------------------------------------
    def refresh_coverage(self, cycle: str) -> None:
        """Compute again the coverage rows computed with other list versions (after a publication), or never."""
        aggregates = Aggregates(self.session, None, self.spec)
        stale = aggregates.stale_coverage(cycle)
        if stale:
            aggregates.coverage(cycle, stale)
            self.session.flush()

    def coverage(self, cycle: str) -> list[dict[str, Any]]:
        """Top-500 coverage per province: the customers in force for the cycle, with details received or missing.

        Kept per province by each acceptance; computed again here for provinces whose rows
        were computed with other list versions (after a publication), so it is never stale.
        Only the head of each province's gap text is read: the first ids without details
        come first in it (``aggregates.gap_text``); every gap, by kind, is ``coverage_gaps``'s.
        """
        self.refresh_coverage(cycle)
        a = CoverageAggregate
        head = MISSING_LISTED * GAP_TOKEN_MAX
        out = []
        for prov_id, version, listed, received, text in self.session.execute(
                select(a.prov_id, a.list_version, a.listed, a.received, func.substr(a.missing_ids, 1, head))
                .where(a.cycle == cycle).order_by(a.prov_id)):
            if not listed and not received:
                continue
            if text and len(text) >= head:
                text = text.rsplit(" ", 1)[0]  # the last token may be cut
            ids = [g.cust_id for g in parse_gaps(text) if "details" in g.missing][:MISSING_LISTED]
            out.append({"prov_id": prov_id, "list_version": version, "listed": listed, "received": received,
                        "missing": listed - received, "missing_ids": ids})
        return out

    def coverage_gaps(self, cycle: str, province: str | None = None) -> list[dict[str, Any]]:
        """Per province (or one): list version, listed count, and every listed customer lacking a kind of coverage.

        Each province's ``gaps`` are ``aggregates.Gap`` (id, missing kinds, lead network), by
        province then customer id; reading them is proportional to what is missing, never to
        the facts.
        """
        self.refresh_coverage(cycle)
        a = CoverageAggregate
        q = select(a.prov_id, a.list_version, a.listed, a.missing_ids).where(a.cycle == cycle).order_by(a.prov_id)
        if province is not None:
            q = q.where(a.prov_id == province)
        out = []
        for prov_id, version, listed, text in self.session.execute(q):
            gaps = sorted(parse_gaps(text), key=lambda g: g.cust_id)
            out.append({"prov_id": prov_id, "list_version": version, "listed": listed, "gaps": gaps})
        return out

    def _counted(self, cycle: str) -> list[Counted]:
        """Every (unit, network) of the cycle with the version and delivery whose rows count for it (one query)."""
        if cycle not in self._counted_rows:
            v, sc, d, a = UnitVersion, DataScope, Delivery, SourceAggregate
            self._counted_rows[cycle] = [Counted._make(row) for row in self.session.execute(
                select(a.unit, a.latn_id, a.prov_id, a.rows, v.id, v.number, v.accepted_at, sc.party,
                       sc.versions_count, d.id, d.check_name, d.resend, d.late)
                .join(v, v.id == a.version_id).join(sc, sc.id == v.scope_id).join(d, d.id == v.delivery_id)
                .where(a.cycle == cycle).order_by(a.unit, a.latn_id))]
        return self._counted_rows[cycle]

    def completeness(self, cycle: str) -> dict[str, Any]:
        """Provinces x units due: what counts, from which deliveries; what was received but not accepted; what is missing.

        One definition everywhere (page, JSON, CSV, XLSX, XML): a cell is *accepted* (or
        *late*, when a counted delivery came after the deadline) when rows of the unit count
        for the province; *received* when the province (or one of its local networks) sent
        the unit but nothing of it counts — the cell names the latest such delivery and its
        status; *missing* when nothing was sent. ``accepted + received + missing = expected``.
        """
        c = self.session.get(ReportingCycle, cycle)
        units = c.units if c else [u.code for u in self.spec.units if u.direction == "up"]
        provinces = list(self.session.scalars(select(Area).where(Area.level == PROVINCE, Area.active)
                                              .order_by(Area.code)))
        parent = {code: a[2] for code, a in self._areas().items() if a[2]}
        sources: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        for counted in self._counted(cycle):
            src = sources.setdefault((counted.prov_id, counted.unit), {}).setdefault(counted.version_id, {
                "party": counted.party, "delivery_id": counted.delivery_id, "version": counted.number,
                "late": counted.late, "networks": 0, "rows": 0})
            src["networks"] += 1
            src["rows"] += counted.rows
        latest: dict[tuple[str, str], tuple[int, str]] = {}
        for (party, unit), (did, status) in latest_received(self.session, cycle).items():
            key = (parent.get(party) or party, unit)  # a network's delivery shows in its province's cell
            if key not in latest or latest[key][0] < did:
                latest[key] = (did, status)
        approvals = self._approvals(cycle)
        matrix: list[dict[str, Any]] = []
        counts = {"accepted": 0, "late": 0, "received": 0, "missing": 0}
        for p in provinces:
            cells: dict[str, dict[str, Any]] = {}
            for u in units:
                found = sorted(sources.get((p.code, u), {}).values(),
                               key=lambda s: (-s["networks"], -s["delivery_id"]))
                if found:
                    main = found[0]
                    state = "late" if any(s["late"] for s in found) else "accepted"
                    cell: dict[str, Any] = {"state": state, "delivery_id": main["delivery_id"],
                                            "version": main["version"], "networks": sum(s["networks"] for s in found),
                                            "sources": found}
                elif (p.code, u) in latest:
                    did, status = latest[(p.code, u)]
                    cell = {"state": "received", "delivery_id": did, "delivery_status": status}
                else:
                    cell = {"state": "missing"}
                counts["missing" if cell["state"] == "missing" else
                       "received" if cell["state"] == "received" else "accepted"] += 1
                if cell["state"] == "late":
                    counts["late"] += 1
                cells[u] = cell
            matrix.append({"prov_id": p.code, "name_zh": p.name_zh, "name_en": p.name_en, "units": cells,
                           "approval": approvals.get(p.code)})
        expected = len(provinces) * len(units)
        return {"cycle": cycle, "units": units, "expected": expected, "accepted": counts["accepted"],
                "late": counts["late"], "received": counts["received"], "missing": counts["missing"],
                "reporting_rate_pct": _share(counts["accepted"], expected), "matrix": matrix}

    def _approvals(self, cycle: str) -> dict[str, dict[str, Any]]:
        """Per province: whether what counts was approved at its hub, by whom and when (the hubs' manifests).

        Only provinces whose counted data came (at least partly) through a hub have an entry:
        ``networks`` counted, ``approved`` of them approved at the hub, ``by`` and ``last_at``.
        """
        counted: dict[str, dict[str, int]] = {}  # province -> network -> a delivery counting for it
        for c in self._counted(cycle):
            counted.setdefault(c.prov_id, {})[c.latn_id] = c.delivery_id
        ids = sorted({d for nets in counted.values() for d in nets.values()})
        manifests = {a.delivery_id: a for a in self.session.scalars(
            select(DeliveryApproval).where(DeliveryApproval.delivery_id.in_(ids)))} if ids else {}
        out: dict[str, dict[str, Any]] = {}
        for prov, nets in counted.items():
            approved: dict[str, dict[str, Any]] = {}
            for latn, delivery_id in nets.items():
                m = manifests.get(delivery_id)
                entry = next((n for n in m.networks if n.get("latn_id") == latn), None) if m else None
                if entry is not None:
                    approved[latn] = entry
            if approved:
                out[prov] = {"networks": len(nets), "approved": len(approved),
                             "by": sorted({str(e.get("by") or "") for e in approved.values()} - {""}),
                             "last_at": max(str(e.get("at") or "") for e in approved.values()) or None,
                             "deliveries": sorted({nets[n] for n in approved})}
        return out

    def lineage(self, cycle: str) -> list[dict[str, Any]]:
        """The versions whose rows the figures count, with the local networks each counts for."""
        out: dict[int, dict[str, Any]] = {}
        for c in self._counted(cycle):
            row = out.get(c.version_id)
            if row is None:
                row = out[c.version_id] = {
                    "party": c.party, "unit": c.unit, "version": c.number, "versions": c.versions_count,
                    "delivery_id": c.delivery_id, "check_file": f"{c.check_name}.chk", "resend": c.resend,
                    "accepted_at": iso(as_utc(c.accepted_at)), "late": c.late, "networks": [], "rows": 0}
            row["networks"].append(c.latn_id)
            row["rows"] += c.rows
        return sorted(out.values(), key=lambda r: (r["party"], r["unit"], r["version"]))

    def compute(self, cycle: str) -> Rollup:
        """Everything for one cycle, computed from the facts and aggregates now (with the calendar as it stands)."""
        return self._with_calendar(Rollup(
            cycle, self.totals(cycle), self.by_province(cycle), self.by_network(cycle), self.by_product(cycle),
            self.by_billing_item(cycle), self.by_level(cycle), self.by_industry(cycle), self.coverage(cycle),
            self.completeness(cycle), self.lineage(cycle)))

    def inputs_key(self, cycle: str) -> str:
        """What the cycle's figures are built from: change any of it and every figure may move.

        The cycle's own generation (bumped by every acceptance into it) and latest delivery
        (completeness moves with rejected deliveries too), the previous cycle's generation
        (month on month reads it), the list versions (coverage) and the code lists (names).
        """
        from ..lists.services import ListService

        def generation(c: str | None) -> int:
            found = self.session.get(CycleGeneration, c) if c is not None else None
            return found.generation if found is not None else 0

        latest = self.session.scalar(select(func.max(Delivery.id)).where(Delivery.period == cycle)) or 0
        codes = hashlib.sha256((self.spec.code_additions or "").encode("utf-8")).hexdigest()[:12]
        lists = list_stamp_text(ListService(self.session, None, self.spec).stamp())
        lists_digest = hashlib.sha256(lists.encode("ascii")).hexdigest()[:12]
        return f"{generation(cycle)}:{latest}|{generation(previous_cycle(cycle))}|{lists_digest}|{codes}"

    def key(self, cycle: str) -> str:
        """The roll-up's key, calendar included: two roll-ups with the same key render to the same bytes.

        A few small queries, no figure computed: a download kept under this key can be served
        without computing the roll-up at all.
        """
        calendar = self._calendar(cycle)
        digest = hashlib.sha256(json.dumps(calendar, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]
        return f"{self.inputs_key(cycle)}|{digest}"

    def rollup(self, cycle: str) -> Rollup:
        """Everything for one cycle, from the facts and aggregates as they stand, with its key.

        Nothing is cached in the database: the aggregates make the computation a few hundred
        rows' work, and the serving process keeps rendered downloads per key (exports.RENDERED).
        """
        key = self.key(cycle)
        result = self.compute(cycle)
        result.key = key
        return result

    def trend(self, cycle: str, length: int) -> list[dict[str, Any]]:
        """Group revenue of the last ``length`` cycles of the same frequency (oldest first), with shares reported.

        Read from the facts on every call (one query), so it is never stale.
        """
        ids = [cycle]
        for _ in range(length - 1):
            prev = previous_cycle(ids[-1])
            if prev is None:
                break
            ids.append(prev)
        got = {c: (int(n), int(fen or 0)) for c, n, fen in self.session.execute(
            select(SummaryFact.cycle, func.count(), func.sum(SummaryFact.income_amt))
            .where(SummaryFact.cycle.in_(ids), SummaryFact.current.is_(True)).group_by(SummaryFact.cycle))}
        out = []
        for cid in reversed(ids):
            n, fen = got.get(cid, (0, 0))
            expected = sum(self.expected_networks(cid).values())
            out.append({"cycle": cid, "income_amt": _money(fen), "networks": n, "networks_expected": expected,
                        "share_reported_pct": _share(n, expected)})
        return out

    def _calendar(self, cycle: str) -> dict[str, Any]:
        """The cycle's calendar as it stands: state, deadline, and each province's latest exception."""
        c = self.session.get(ReportingCycle, cycle)
        now = utcnow()
        granted: dict[str, dict[str, Any]] = {}
        for e in self.session.scalars(select(CycleException).where(CycleException.cycle_id == cycle,
                                                                   CycleException.revoked_at.is_(None))
                                      .order_by(CycleException.until)):
            # The latest-ending exception of a province is the one that matters (as for validation).
            granted[e.province] = {"id": e.id, "until": iso(e.until), "until_beijing": beijing_stamp(e.until),
                                   "reason": e.reason, "granted_by": e.granted_by, "valid": e.valid_at(now)}
        return {"cycle_state": c.state if c else None, "deadline": iso(c.deadline) if c else None,
                "deadline_beijing": beijing_stamp(c.deadline) if c else None,
                "deadline_passed": bool(c and as_utc(c.deadline) < now), "granted": granted}

    def _with_calendar(self, result: Rollup) -> Rollup:
        """Lay the cycle's calendar state over the completeness matrix: state, deadline, province exceptions.

        Closing a cycle or granting an exception changes no fact, yet the matrix must show
        it at once: the calendar is part of the roll-up's key (``key``), not of its inputs.
        """
        comp = result.completeness
        calendar = self._calendar(result.cycle)
        granted = calendar.pop("granted")
        comp.update(calendar)
        for row in comp.get("matrix", []):
            row["exception"] = granted.get(row["prov_id"])
        comp["exceptions"] = sum(1 for e in granted.values() if e["valid"])
        return result

    def trace(self, cycle: str, prov_id: str) -> list[dict[str, Any]]:
        """The summary rows behind one province's figures, with the delivery each came from."""
        rows = self.session.execute(
            select(SummaryFact, UnitVersion.delivery_id, UnitVersion.number)
            .join(UnitVersion, SummaryFact.version_id == UnitVersion.id)
            .where(SummaryFact.cycle == cycle, SummaryFact.current.is_(True), SummaryFact.prov_id == prov_id)
            .order_by(SummaryFact.latn_id))
        return [{"latn_id": f.latn_id, "cust_cnt": f.cust_cnt, "income_amt": _money(f.income_amt),
                 "party": f.party, "delivery_id": did, "version": num} for f, did, num in rows]


# breakdown -> (fact model, the column its cells are keyed by); what trace_cell can follow.
TRACEABLE: dict[str, list[tuple[Any, str]]] = {
    "by_province": [(SummaryFact, "prov_id")],
    "by_network": [(SummaryFact, "latn_id")],
    "by_product": [(ServFact, "prod_id"), (FACTS["31203"], "prod_id")],
    "by_billing_item": [(IncomeFact, "acct_item_type_id")],
    "by_level": [(FACTS["31201"], "level_id")],
    "by_industry": [(FACTS["31201"], "c_type_id")],
    "coverage": [(FACTS["31201"], "prov_id")],
}


def trace_cell(session: Session, cycle: str, breakdown: str, key: str, limit: int = 1000) -> dict[str, Any]:
    """The fact rows behind one cell of a breakdown, each with the delivery, file and version it came from."""
    from sqlalchemy import inspect as sa_inspect

    out: dict[str, Any] = {"cycle": cycle, "breakdown": breakdown, "key": key, "sources": []}
    for model, column in TRACEABLE[breakdown]:
        table = sa_inspect(model).local_table
        unit = next(code for code, m in FACTS.items() if m is model)
        q = (select(model, UnitVersion.delivery_id, UnitVersion.number, DataScope.unit)
             .join(UnitVersion, model.version_id == UnitVersion.id)
             .join(DataScope, UnitVersion.scope_id == DataScope.id)
             .where(model.cycle == cycle, model.current.is_(True), getattr(model, column) == key)
             .order_by(model.id).limit(limit))
        rows = []
        files: dict[int, list[str]] = {}
        for fact, delivery_id, number, _unit in session.execute(q):
            if delivery_id not in files:
                files[delivery_id] = list(session.scalars(select(DeliveryFile.name).where(
                    DeliveryFile.delivery_id == delivery_id, DeliveryFile.unit == unit)))
            row = {c.name: getattr(fact, c.name) for c in table.columns if c.name not in ("id", "version_id",
                                                                                          "current")}
            for money, scale in MONEY_SCALE.items():
                if row.get(money) is not None:
                    row[money] = Decimal(int(row[money])).scaleb(-scale)
            row.update(delivery_id=delivery_id, version=number, files=files[delivery_id])
            rows.append(row)
        out["sources"].append({"unit": unit, "rows": rows, "truncated": len(rows) >= limit})
    return out

