"""The group roll-ups of a cycle, from the current facts: exact, with their lineage.

Every figure is a SQL SUM over ``current`` fact rows in exact decimals (Numeric), so the
provinces add up to the group total to the fen by construction; the tests check it on
generated data and with hypothesis. Each roll-up carries the versions and deliveries it was
built from and names the provinces and units missing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import case, exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from schemas.conventions import Cycle

from ..admin.models import CycleException
from ..clock import as_utc, beijing_stamp, iso, utcnow
from ..code_lists.services import live_spec
from ..cycles.models import ReportingCycle
from ..org.models import PROVINCE, Area
from ..org.services import OrgService
from ..submissions.models import DataScope, Delivery, DeliveryFile, UnitVersion
from .models import (
    FACTS, MONEY_SCALE, CustomerFact, CustProdFact, IncomeFact, RollupCache, ServFact, SummaryFact,
)

ZERO = Decimal("0.00")
SUMMARY_MEASURES = ("cust_cnt", "cust_cnt_group", "cust_cnt_prov", "cust_cnt_la", "cust_cnt_lb", "cust_cnt_lc",
                    "new_cust_cnt", "lost_cust_cnt", "top500_cust_cnt", "manager_cnt", "income_amt",
                    "income_ytd_amt", "income_ly_amt")


def _money(fen: Any) -> Decimal:
    """Integer fen (as stored and summed) to yuan, exactly."""
    return (Decimal(int(fen)).scaleb(-2) if fen is not None else ZERO).quantize(Decimal("0.01"))


def _decimal(o: Any) -> Any:
    if isinstance(o, Decimal):
        return {"$decimal": str(o)}
    raise TypeError(f"cannot cache {type(o).__name__}")


def _undecimal(d: dict[str, Any]) -> Any:
    return Decimal(d["$decimal"]) if len(d) == 1 and "$decimal" in d else d


def _pct(part: Decimal, whole: Decimal) -> Decimal | None:
    """part/whole - 1 in percent, two decimals; None when there is nothing to compare with."""
    if not whole:
        return None
    return ((part / whole - 1) * 100).quantize(Decimal("0.01"))


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

    BREAKDOWNS = ("by_province", "by_network", "by_product", "by_billing_item", "by_level", "by_industry",
                  "coverage")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (decimals stay exact: they are rendered as strings by the JSON layer)."""
        return dict(self.__dict__)


class RollupService:
    """Computes roll-ups from the facts."""

    def __init__(self, session: Session, spec: Any) -> None:
        self.session = session
        self.spec = live_spec(session, spec)  # with the code-list versions published at run time

    def _names(self, domain: str) -> dict[str, tuple[str, str]]:
        codes = self.spec.domain(domain).current.codes
        return {c.code: (c.name_zh, c.name_en) for c in codes.values()}

    def _areas(self) -> dict[str, Area]:
        return {a.code: a for a in self.session.scalars(select(Area))}

    # -- summary-based ---------------------------------------------------------------------
    def _summary(self, cycle: str, group: list[Any]) -> list[Any]:
        cols = [func.coalesce(func.sum(getattr(SummaryFact, m)), 0).label(m) for m in SUMMARY_MEASURES]
        q = (select(*group, *cols, func.count().label("networks"))
             .where(SummaryFact.cycle == cycle, SummaryFact.current.is_(True)))
        if group:
            q = q.group_by(*group).order_by(*group)
        return list(self.session.execute(q))

    def totals(self, cycle: str) -> dict[str, Any]:
        """Group totals, with year to date, month on month and year on year."""
        [row] = self._summary(cycle, [])
        out: dict[str, Any] = {m: (_money(getattr(row, m)) if m.endswith("_amt") else int(getattr(row, m))) for m in SUMMARY_MEASURES}
        out["networks"] = int(row.networks)
        try:
            prev = Cycle.parse(cycle).previous().id
        except ValueError:
            prev = None
        prev_income = _money(self._summary(prev, [])[0].income_amt) if prev else ZERO
        out["income_prev_amt"] = prev_income
        out["mom_pct"] = _pct(out["income_amt"], prev_income)
        out["yoy_pct"] = _pct(out["income_amt"], out["income_ly_amt"])
        return out

    def by_province(self, cycle: str) -> list[dict[str, Any]]:
        """Key accounts and revenue per province."""
        areas = self._areas()
        rows = []
        for r in self._summary(cycle, [SummaryFact.prov_id]):
            a = areas.get(r.prov_id)
            d: dict[str, Any] = {"prov_id": r.prov_id, "name_zh": a.name_zh if a else "",
                                 "name_en": a.name_en if a else "", "networks": int(r.networks)}
            d.update({m: (_money(getattr(r, m)) if m.endswith("_amt") else int(getattr(r, m)))
                      for m in SUMMARY_MEASURES})
            d["yoy_pct"] = _pct(d["income_amt"], d["income_ly_amt"])
            rows.append(d)
        return rows

    def by_network(self, cycle: str) -> list[dict[str, Any]]:
        """Key accounts and revenue per local network."""
        areas = self._areas()
        rows = []
        for r in self._summary(cycle, [SummaryFact.prov_id, SummaryFact.latn_id]):
            a = areas.get(r.latn_id)
            d: dict[str, Any] = {"prov_id": r.prov_id, "latn_id": r.latn_id, "name_zh": a.name_zh if a else "",
                 "name_en": a.name_en if a else ""}
            d.update({m: (_money(getattr(r, m)) if m.endswith("_amt") else int(getattr(r, m)))
                      for m in ("cust_cnt", "new_cust_cnt", "lost_cust_cnt", "income_amt", "income_ytd_amt",
                                "income_ly_amt")})
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
            select(CustProdFact.prod_id, func.sum(CustProdFact.income_amt).label("income"),
                   func.count(func.distinct(CustProdFact.national_cust_id)).label("customers"))
            .where(CustProdFact.cycle == cycle, CustProdFact.current.is_(True)).group_by(CustProdFact.prod_id))}
        out = []
        for code in sorted(set(serv) | set(rev)):
            s, r = serv.get(code), rev.get(code)
            zh, en = names.get(code, ("", ""))
            out.append({"prod_id": code, "name_zh": zh, "name_en": en,
                        "serv_cnt": int(s.serv_cnt) if s else 0, "new_serv_cnt": int(s.new) if s else 0,
                        "cancel_serv_cnt": int(s.cancel) if s else 0, "serv_cnt_ly": int(s.ly) if s else 0,
                        "cust_cnt": int(s.cust) if s else 0,
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
            d: dict[str, Any] = {"acct_item_type_id": r.acct_item_type_id, "name_zh": zh, "name_en": en, "income_amt": _money(r.i),
                 "income_ytd_amt": _money(r.y), "income_ly_amt": _money(r.l), "income_ly_ytd_amt": _money(r.ly)}
            d["yoy_pct"] = _pct(d["income_amt"], d["income_ly_amt"])
            out.append(d)
        return out

    def _by_customer_attr(self, cycle: str, attr: str, domain: str) -> list[dict[str, Any]]:
        names = self._names(domain)
        col = getattr(CustomerFact, attr)
        counts: dict[str, int] = dict(self.session.execute(
            select(col, func.count()).where(CustomerFact.cycle == cycle, CustomerFact.current.is_(True))
            .group_by(col)).all())
        revenue: dict[str, Any] = dict(self.session.execute(
            select(col, func.sum(CustProdFact.income_amt))
            .join(CustomerFact, (CustomerFact.national_cust_id == CustProdFact.national_cust_id)
                  & (CustomerFact.cycle == CustProdFact.cycle) & CustomerFact.current.is_(True))
            .where(CustProdFact.cycle == cycle, CustProdFact.current.is_(True)).group_by(col)).all())
        out = []
        for code in sorted(set(counts) | set(revenue)):
            zh, en = names.get(code, ("", ""))
            out.append({attr: code, "name_zh": zh, "name_en": en, "customers": int(counts.get(code, 0)),
                        "top500_income_amt": _money(revenue.get(code))})
        return out

    def by_level(self, cycle: str) -> list[dict[str, Any]]:
        """Top-500 customers and their revenue by customer level."""
        return self._by_customer_attr(cycle, "level_id", "Domain_level_id")

    def by_industry(self, cycle: str) -> list[dict[str, Any]]:
        """Top-500 customers and their revenue by customer type (industry)."""
        return self._by_customer_attr(cycle, "c_type_id", "Domain_c_type_id")

    # -- coverage, completeness, lineage ------------------------------------------------------
    def coverage(self, cycle: str) -> list[dict[str, Any]]:
        """Top-500 coverage per province: listed customers with details received vs missing."""
        from ..lists.models import PUBLISHED, ListEntry, ListVersion

        version = self.session.scalar(select(ListVersion).where(ListVersion.state == PUBLISHED)
                                      .order_by(ListVersion.published_at.desc()).limit(1))
        if version is None:
            return []
        # A correlated EXISTS per listed customer uses the (cycle, current, national_cust_id) index.
        got = (exists().where(CustomerFact.cycle == cycle, CustomerFact.current.is_(True),
                              CustomerFact.national_cust_id == ListEntry.national_cust_id))
        listed = (ListEntry.list_version_id == version.id, ListEntry.change_type != "D")
        counts = self.session.execute(
            select(ListEntry.lead_prov_id, func.count(), func.sum(case((got, 1), else_=0)))
            .where(*listed).group_by(ListEntry.lead_prov_id).order_by(ListEntry.lead_prov_id)).all()
        missing: dict[str, list[str]] = {}
        for prov, cust in self.session.execute(select(ListEntry.lead_prov_id, ListEntry.national_cust_id)
                                               .where(*listed, ~got)
                                               .order_by(ListEntry.lead_prov_id, ListEntry.national_cust_id)):
            if len(missing.setdefault(prov, [])) < 50:
                missing[prov].append(cust)
        return [{"prov_id": prov, "list_version": version.version, "listed": int(n), "received": int(got or 0),
                 "missing": int(n) - int(got or 0), "missing_ids": missing.get(prov, [])} for prov, n, got in counts]

    def completeness(self, cycle: str) -> dict[str, Any]:
        """Provinces x units: expected, received, accepted, late, missing; the reporting rate."""
        c = self.session.get(ReportingCycle, cycle)
        units = c.units if c else [u.code for u in self.spec.units if u.direction == "up"]
        provinces = list(self.session.scalars(select(Area).where(Area.level == PROVINCE, Area.active)
                                              .order_by(Area.code)))
        received: set[tuple[str, str]] = set()
        for party, unit in self.session.execute(
                select(Delivery.party, DeliveryFile.unit).join(DeliveryFile, DeliveryFile.delivery_id == Delivery.id)
                .where(Delivery.period == cycle, Delivery.mode == "P").distinct()):
            if party and unit:
                received.add((self._province(party), unit))
        accepted: dict[tuple[str, str], dict[str, Any]] = {}
        for scope, version, delivery in self.session.execute(
                select(DataScope, UnitVersion, Delivery).join(UnitVersion, DataScope.current_version_id == UnitVersion.id)
                .join(Delivery, UnitVersion.delivery_id == Delivery.id).where(DataScope.cycle == cycle)):
            prov = self._province(scope.party)
            accepted[(prov, scope.unit)] = {"late": delivery.late, "delivery_id": delivery.id,
                                            "version": version.number}
        matrix: list[dict[str, Any]] = []
        for p in provinces:
            cells: dict[str, dict[str, Any]] = {}
            for u in units:
                a = accepted.get((p.code, u))
                state = ("late" if a["late"] else "accepted") if a else (
                    "received" if (p.code, u) in received else "missing")
                cells[u] = {"state": state, **({"delivery_id": a["delivery_id"], "version": a["version"]} if a else {})}
            matrix.append({"prov_id": p.code, "name_zh": p.name_zh, "name_en": p.name_en, "units": cells})
        expected = len(provinces) * len(units)
        done = sum(1 for row in matrix for cell in row["units"].values() if cell["state"] in ("accepted", "late"))
        late = sum(1 for row in matrix for cell in row["units"].values() if cell["state"] == "late")
        return {"cycle": cycle, "units": units, "expected": expected, "accepted": done, "late": late,
                "missing": expected - done, "reporting_rate_pct": (Decimal(done * 100) / expected).quantize(
                    Decimal("0.01")) if expected else None, "matrix": matrix}

    def _province(self, party: str) -> str:
        return OrgService(self.session).province_of(party) or party

    def lineage(self, cycle: str) -> list[dict[str, Any]]:
        """The current versions every figure of the cycle comes from."""
        rows = self.session.execute(
            select(DataScope, UnitVersion, Delivery).join(UnitVersion, DataScope.current_version_id == UnitVersion.id)
            .join(Delivery, UnitVersion.delivery_id == Delivery.id).where(DataScope.cycle == cycle)
            .order_by(DataScope.party, DataScope.unit))
        return [{"party": s.party, "unit": s.unit, "version": v.number, "versions": s.versions_count,
                 "delivery_id": d.id, "check_file": f"{d.check_name}.chk", "resend": d.resend,
                 "accepted_at": iso(v.accepted_at), "late": d.late} for s, v, d in rows]

    def compute(self, cycle: str) -> Rollup:
        """Everything for one cycle, computed from the facts now (with the calendar as it stands)."""
        return self._with_calendar(Rollup(
            cycle, self.totals(cycle), self.by_province(cycle), self.by_network(cycle), self.by_product(cycle),
            self.by_billing_item(cycle), self.by_level(cycle), self.by_industry(cycle), self.coverage(cycle),
            self.completeness(cycle), self.lineage(cycle)))

    def rollup(self, cycle: str) -> Rollup:
        """Everything for one cycle: the cached roll-up if nothing was accepted since, else computed and cached.

        Completeness also moves with deliveries that were received or rejected (not only
        accepted), so the cache key includes the cycle's latest delivery id as well.
        """
        cache = self.session.get(RollupCache, cycle)
        latest = self.session.scalar(select(func.max(Delivery.id)).where(Delivery.period == cycle)) or 0
        stamp = f"{cache.generation if cache else 0}:{latest}"
        if cache is not None and cache.payload and cache.built_key == stamp:
            return self._with_calendar(Rollup(**json.loads(cache.payload, object_hook=_undecimal)))
        result = self.compute(cycle)
        payload = json.dumps(result.as_dict(), default=_decimal, ensure_ascii=False)
        if cache is None:
            cache = RollupCache(cycle=cycle, generation=0)
            self.session.add(cache)
        cache.payload, cache.built_key, cache.built_at = payload, stamp, utcnow()
        try:
            self.session.commit()
        except SQLAlchemyError:  # another request cached it at the same moment: fine, ours is the same
            self.session.rollback()
        return result

    def _with_calendar(self, result: Rollup) -> Rollup:
        """Lay the cycle's calendar state over the completeness matrix: state, deadline, province exceptions.

        Read fresh on every call, never cached: closing a cycle or granting an exception
        changes no fact, so it moves no cache generation, yet the matrix must show it at once.
        """
        comp = result.completeness
        c = self.session.get(ReportingCycle, result.cycle)
        now = utcnow()
        comp["cycle_state"] = c.state if c else None
        comp["deadline"] = iso(c.deadline) if c else None
        comp["deadline_beijing"] = beijing_stamp(c.deadline) if c else None
        comp["deadline_passed"] = bool(c and as_utc(c.deadline) < now)
        granted: dict[str, dict[str, Any]] = {}
        for e in self.session.scalars(select(CycleException).where(CycleException.cycle_id == result.cycle,
                                                                   CycleException.revoked_at.is_(None))
                                      .order_by(CycleException.until)):
            # The latest-ending exception of a province is the one that matters (as for validation).
            granted[e.province] = {"id": e.id, "until": iso(e.until), "until_beijing": beijing_stamp(e.until),
                                   "reason": e.reason, "granted_by": e.granted_by, "valid": e.valid_at(now)}
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
    "by_product": [(ServFact, "prod_id"), (CustProdFact, "prod_id")],
    "by_billing_item": [(IncomeFact, "acct_item_type_id")],
    "by_level": [(CustomerFact, "level_id")],
    "by_industry": [(CustomerFact, "c_type_id")],
    "coverage": [(CustomerFact, "prov_id")],
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

