"""Every breakdown of a cycle's roll-up beside the previous period and the same period last year.

The figures are the roll-ups' own (``RollupService.by_province`` ... ``by_industry`` for the
three cycles, read-only); the percentages and shares are the top card's (``rollups._pct``,
``rollups._share``). Each compared period says how much of it was reported, with the roll-ups'
definition: local networks with counted summary (32001) rows against the networks in the org
tree for that period — for the group (``totals``), a province (``by_province``) or one network
(``by_network``). A figure over a partly reported scope is marked *partial* (部分报送); a scope
with nothing reported has no figure at all (``None``, shown as a dash), never a misleading zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.orm import Session

from schemas.conventions import Cycle

from .analysis_files import Kind, csv_bytes, xlsx_bytes
from .rollups import RollupService, _pct, _share, previous_cycle

Period = Literal["cur", "prev", "ly"]
PERIODS: tuple[Period, ...] = ("cur", "prev", "ly")
PERIOD_TITLES: dict[Period, tuple[str, str]] = {
    "cur": ("本期", "this period"), "prev": ("上期", "previous period"), "ly": ("去年同期", "same period last year"),
}
# What each figure of a comparison is, as column titles (Chinese, English).
FIGURE_TITLES: dict[str, tuple[str, str]] = {
    "cur": ("本期", "This period"), "prev": ("上期", "Previous period"),
    "diff_prev": ("较上期增减", "Change from previous"), "pct_prev": ("环比(%)", "Change from previous (%)"),
    "ly": ("去年同期", "Same period last year"), "diff_ly": ("较去年同期增减", "Change from last year"),
    "pct_ly": ("同比(%)", "Change from last year (%)"),
}
FIGURES: tuple[str, ...] = tuple(FIGURE_TITLES)
SORTABLE: tuple[str, ...] = ("code", "name", *FIGURES)

# The measures a breakdown's rows carry that compare meaningfully.
MEASURE_TITLES: dict[str, tuple[str, str]] = {
    "income_amt": ("收入(元)", "Revenue (yuan)"),
    "income_ytd_amt": ("本年累计收入(元)", "Revenue year to date (yuan)"),
    "cust_cnt": ("大客户数", "Key accounts"),
    "new_cust_cnt": ("新增大客户数", "New key accounts"),
    "lost_cust_cnt": ("流失大客户数", "Lost key accounts"),
    "top500_cust_cnt": ("500强客户数", "Top-500 customers served"),
    "manager_cnt": ("客户经理人数", "Account managers"),
    "serv_cnt": ("期末业务量", "Volume at period end"),
    "new_serv_cnt": ("新增业务量", "Volume added"),
    "cancel_serv_cnt": ("拆机业务量", "Volume cancelled"),
    "serv_cust_cnt": ("使用客户数", "Key accounts using it"),
    "top500_income_amt": ("500强客户收入(元)", "Top-500 revenue (yuan)"),
    "top500_customers": ("500强客户数", "Top-500 customers"),
    "customers": ("500强客户数", "Top-500 customers"),
}

Scope = Literal["province", "network", "group"]


@dataclass(frozen=True)
class Breakdown:
    """One breakdown of a roll-up as the comparison reads it."""

    attr: str  # the RollupService method / Rollup attribute
    key: str  # the column its rows are keyed by
    title: tuple[str, str]
    measures: tuple[str, ...]  # the first is the page's default
    scope: Scope  # what "reported" means for a row: its province, its network, or the whole group


_SUMMARY = ("income_amt", "income_ytd_amt", "cust_cnt", "new_cust_cnt", "lost_cust_cnt")
BREAKDOWNS: dict[str, Breakdown] = {
    "province": Breakdown("by_province", "prov_id", ("分省", "By province"),
                          (*_SUMMARY, "top500_cust_cnt", "manager_cnt"), "province"),
    "network": Breakdown("by_network", "latn_id", ("分本地网", "By local network"), _SUMMARY, "network"),
    "product": Breakdown("by_product", "prod_id", ("分产品", "By product"),
                         ("top500_income_amt", "top500_customers", "serv_cnt", "new_serv_cnt", "cancel_serv_cnt",
                          "serv_cust_cnt"), "group"),
    "billing_item": Breakdown("by_billing_item", "acct_item_type_id", ("分账目", "By billing item"),
                              ("income_amt", "income_ytd_amt"), "group"),
    "level": Breakdown("by_level", "level_id", ("分客户级别", "By customer level"),
                       ("top500_income_amt", "customers"), "group"),
    "industry": Breakdown("by_industry", "c_type_id", ("分行业", "By industry"),
                          ("top500_income_amt", "customers"), "group"),
}


def year_earlier_cycle(cycle: str) -> str | None:
    """The same month (quarter, half, year) one year earlier; None for a cycle id that is not one."""
    try:
        return Cycle.parse(cycle).same_period_last_year().id
    except ValueError:
        return None


@dataclass(frozen=True)
class Reported:
    """How much of one period was reported: local networks with counted 32001 rows against those expected."""

    cycle: str | None
    networks: int
    expected: int

    @property
    def share_pct(self) -> Decimal | None:
        """Networks reported / expected in percent (None when nothing is expected)."""
        return _share(self.networks, self.expected)

    @property
    def partial(self) -> bool:
        """Some, but not all, of the expected networks reported."""
        return 0 < self.networks < self.expected


@dataclass
class CompareRow:
    """One key of a breakdown (or the total) across the three periods."""

    code: str
    name_zh: str
    name_en: str
    prov_id: str | None  # a network's province
    values: dict[str, dict[Period, Any]]  # measure -> period -> figure (None: nothing reported)
    reported: dict[Period, Reported]  # what was reported, per period, of this row's scope
    total: bool = False

    def figures(self, measure: str) -> dict[str, Any]:
        """This period, previous, same period last year, with differences and percentages, for one measure."""
        v = self.values[measure]
        out: dict[str, Any] = {"cur": v["cur"], "prev": v["prev"], "ly": v["ly"]}
        for p in ("prev", "ly"):
            base = v[p]
            out[f"diff_{p}"] = v["cur"] - base if v["cur"] is not None and base is not None else None
            out[f"pct_{p}"] = (_pct(Decimal(v["cur"]), Decimal(base)) if v["cur"] is not None and base is not None
                               else None)
        return out

    def partial(self, period: Period) -> bool:
        """Whether this row's figure for the period covers only part of what was expected."""
        return self.reported[period].partial


@dataclass
class Comparison:
    """A breakdown of one cycle compared with the previous period and the same period last year."""

    cycle: str
    breakdown: str
    cycles: dict[Period, str | None]
    rows: list[CompareRow]
    total: CompareRow
    group: dict[Period, Reported]  # the group's share reported, per period
    spec: Breakdown = field(repr=False)


class ComparisonService:
    """Compares a breakdown across three cycles from the roll-ups (read-only)."""

    def __init__(self, session: Session, spec: Any) -> None:
        self.session = session
        self.rollups = RollupService(session, spec)

    def _reported(self, scope: Scope, cycle: str | None) -> tuple[Reported, dict[str, Reported]]:
        """The group's share reported in a cycle, and each province's or network's (the roll-ups' own figures)."""
        expected = self.rollups.expected_networks(cycle)
        if cycle is None:
            return Reported(None, 0, sum(expected.values())), {}
        totals = self.rollups.totals(cycle)
        group = Reported(cycle, int(totals["networks"]), int(totals["networks_expected"]))
        if scope == "province":
            found = {r["prov_id"]: Reported(cycle, int(r["networks"]), int(r["networks_expected"]))
                     for r in self.rollups.by_province(cycle)}
            for prov, n in expected.items():
                found.setdefault(prov, Reported(cycle, 0, n))
            return group, found
        if scope == "network":
            return group, {r["latn_id"]: Reported(cycle, 1, 1) for r in self.rollups.by_network(cycle)}
        return group, {}

    def compare(self, cycle: str, breakdown: str) -> Comparison:
        """The breakdown ``breakdown`` (a key of BREAKDOWNS) of ``cycle`` against its previous and year-earlier cycles."""
        spec = BREAKDOWNS[breakdown]
        cycles: dict[Period, str | None] = {"cur": cycle, "prev": previous_cycle(cycle),
                                            "ly": year_earlier_cycle(cycle)}
        method = getattr(self.rollups, spec.attr)
        data: dict[Period, dict[str, dict[str, Any]]] = {
            p: ({str(r[spec.key]): r for r in method(c)} if c is not None else {}) for p, c in cycles.items()}
        shares = {p: self._reported(spec.scope, c) for p, c in cycles.items()}
        group = {p: shares[p][0] for p in PERIODS}

        def reported(code: str) -> dict[Period, Reported]:
            if spec.scope == "group":
                return group
            # A network (or province) that reported nothing in a period: 0 of 1 (or of its networks).
            return {p: shares[p][1].get(code) or Reported(cycles[p], 0, 1) for p in PERIODS}

        rows = []
        for code in sorted(set().union(*(d.keys() for d in data.values()))):
            found = next(data[p][code] for p in PERIODS if code in data[p])
            rep = reported(code)
            values: dict[str, dict[Period, Any]] = {}
            for m in spec.measures:
                # Nothing reported for the row's scope: no figure (a dash), never a misleading zero.
                values[m] = {p: (data[p][code].get(m, 0) if code in data[p] else _zero(m)) if rep[p].networks
                             else None for p in PERIODS}
            rows.append(CompareRow(code, str(found.get("name_zh") or ""), str(found.get("name_en") or ""),
                                   str(found["prov_id"]) if spec.scope == "network" else None, values, rep))
        totals = {m: {p: (sum((v for r in rows if (v := r.values[m][p]) is not None), _zero(m))
                          if group[p].networks else None) for p in PERIODS} for m in spec.measures}
        total = CompareRow("", "合计", "Total", None, totals, group, total=True)
        return Comparison(cycle, breakdown, cycles, rows, total, group, spec)


def _zero(measure: str) -> Any:
    """Nothing of a measure: exact zero yuan for money, 0 for counts."""
    return Decimal("0.00") if measure.endswith("_amt") else 0


def sort_rows(rows: list[CompareRow], measure: str, column: str, descending: bool, language: str) -> list[CompareRow]:
    """Rows ordered by a column of the comparison; rows without a figure go last either way."""
    if column == "code":
        return sorted(rows, key=lambda r: r.code, reverse=descending)
    if column == "name":
        return sorted(rows, key=lambda r: ((r.name_en if language == "en" else r.name_zh) or r.code, r.code),
                      reverse=descending)
    present = [r for r in rows if r.figures(measure)[column] is not None]
    absent = [r for r in rows if r.figures(measure)[column] is None]
    present.sort(key=lambda r: (r.figures(measure)[column], r.code), reverse=descending)
    return present + sorted(absent, key=lambda r: r.code)


# -- downloads -----------------------------------------------------------------------------------
def table(comparison: Comparison) -> tuple[list[tuple[str, str, str, Kind]], list[list[Any]]]:
    """The comparison as flat columns (key, Chinese title, English title, kind) and rows, the total last.

    Per period: the cycle, the share reported (of the row's province or network, else the group)
    and whether it is partial; per measure: this period, previous, difference, %, same period last
    year, difference, %.
    """
    spec = comparison.spec
    cols: list[tuple[str, str, str, Kind]] = [("code", "代码", "Code", "text")]
    if spec.scope == "network":
        cols.append(("prov_id", "省份代码", "Province code", "text"))
    cols += [("name_zh", "名称", "Name (Chinese)", "text"), ("name_en", "英文名称", "Name (English)", "text")]
    for p in PERIODS:
        zh, en = PERIOD_TITLES[p]
        cols.append((f"cycle_{p}", f"{zh}周期", f"Cycle, {en}", "text"))
        cols.append((f"share_{p}", f"{zh}上报比例(%)", f"Share reported, {en} (%)", "pct"))
        cols.append((f"partial_{p}", f"{zh}部分报送", f"Partial, {en}", "bool"))
    for m in spec.measures:
        mzh, men = MEASURE_TITLES[m]
        for f in FIGURES:
            fzh, fen = FIGURE_TITLES[f]
            kind: Kind = "pct" if f.startswith("pct") else "money" if m.endswith("_amt") else "count"
            cols.append((f"{m}_{f}", f"{mzh} {fzh}", f"{men}: {fen}", kind))
    out = []
    for row in [*comparison.rows, comparison.total]:
        line: dict[str, Any] = {"code": row.code, "prov_id": row.prov_id, "name_zh": row.name_zh,
                                "name_en": row.name_en}
        for p in PERIODS:
            line[f"cycle_{p}"] = comparison.cycles[p]
            line[f"share_{p}"] = row.reported[p].share_pct
            line[f"partial_{p}"] = row.partial(p)
        for m in spec.measures:
            for f, value in row.figures(m).items():
                line[f"{m}_{f}"] = value
        out.append([line[c[0]] for c in cols])
    return cols, out


def comparison_csv(comparison: Comparison) -> bytes:
    """The comparison as CSV (UTF-8 with BOM, bilingual header, codes quoted)."""
    cols, rows = table(comparison)
    return csv_bytes([f"{zh} {en}" for _, zh, en, _ in cols], [c[3] for c in cols], rows)


def comparison_xlsx(comparison: Comparison) -> bytes:
    """The comparison as a one-sheet workbook, with a note on each partly reported period."""
    cols, rows = table(comparison)
    zh, en = comparison.spec.title
    notes = [f"{PERIOD_TITLES[p][0]} {comparison.cycles[p]} 部分报送 / {PERIOD_TITLES[p][1]} {comparison.cycles[p]} "
             f"is partial: {r.networks}/{r.expected}" for p, r in comparison.group.items() if r.partial]
    return xlsx_bytes(f"{zh} {en}", [(c[1], c[2]) for c in cols], [c[3] for c in cols], rows, notes)
