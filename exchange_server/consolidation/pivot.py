"""A pivot of the current facts: any two dimensions over a range of cycles, for one measure.

One SQL ``GROUP BY`` per pivot, on the table the measure lives in: the summary facts
(32001-32003, a row per local network, and product or billing item) or the per-province
aggregates of the customer units (31201/31203, kept by every acceptance). So a pivot over
24 cycles reads a few thousand rows, never the customer detail. Cells are integer sums
(money in fen, turned into exact yuan at the end); totals add the cells, so they add up.

Which dimensions a measure can be split by is what its table carries: a top-500 revenue by
local network does not exist (the customer units are aggregated per province), and the
pivot says so instead of guessing. Stock measures (key accounts, volume at period end, year
to date) are not added up over cycles: their totals along the cycle dimension are left empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from schemas.conventions import Cycle

from ..code_lists.services import live_spec
from ..errors import BadRequest
from ..org.models import Area
from .analysis_files import Kind, csv_bytes, xlsx_bytes
from .models import (
    CustomerAggregate,
    IncomeFact,
    ProductAggregate,
    ServFact,
    SummaryFact,
)
from .rollups import _money

MAX_CYCLES = 24

DIMENSIONS: dict[str, tuple[str, str]] = {
    "province": ("省份", "Province"),
    "network": ("本地网", "Local network"),
    "product": ("产品", "Product"),
    "billing_item": ("账目项", "Billing item"),
    "level": ("客户级别", "Customer level"),
    "industry": ("行业", "Industry"),
    "cycle": ("周期", "Cycle"),
}
# The code domain that names each coded dimension (provinces and networks are named by the org tree).
_DOMAINS = {"product": "Domain_prod_id", "billing_item": "Domain_acct_item_type_id", "level": "Domain_level_id",
            "industry": "Domain_c_type_id"}


@dataclass(frozen=True)
class Measure:
    """A measure of the pivot: its titles, the table and column it sums, the dimensions that table carries."""

    title: tuple[str, str]
    model: Any
    column: str
    unit: str
    dimensions: tuple[str, ...]
    stock: bool = False  # a level at period end: not added up over cycles

    @property
    def money(self) -> bool:
        """Whether the measure is money (integer fen in the table, exact yuan out)."""
        return self.column.endswith("_amt")


_NET = ("province", "network", "cycle")
MEASURES: dict[str, Measure] = {
    "income_amt": Measure(("收入(元)", "Revenue (yuan)"), SummaryFact, "income_amt", "32001", _NET),
    "income_ytd_amt": Measure(("本年累计收入(元)", "Revenue year to date (yuan)"), SummaryFact, "income_ytd_amt",
                              "32001", _NET, stock=True),
    "cust_cnt": Measure(("大客户数", "Key accounts"), SummaryFact, "cust_cnt", "32001", _NET, stock=True),
    "new_cust_cnt": Measure(("新增大客户数", "New key accounts"), SummaryFact, "new_cust_cnt", "32001", _NET),
    "lost_cust_cnt": Measure(("流失大客户数", "Lost key accounts"), SummaryFact, "lost_cust_cnt", "32001", _NET),
    "manager_cnt": Measure(("客户经理人数", "Account managers"), SummaryFact, "manager_cnt", "32001", _NET,
                           stock=True),
    "serv_cnt": Measure(("期末业务量", "Volume at period end"), ServFact, "serv_cnt", "32002", (*_NET, "product"),
                        stock=True),
    "new_serv_cnt": Measure(("新增业务量", "Volume added"), ServFact, "new_serv_cnt", "32002", (*_NET, "product")),
    "cancel_serv_cnt": Measure(("拆机业务量", "Volume cancelled"), ServFact, "cancel_serv_cnt", "32002",
                               (*_NET, "product")),
    "item_income_amt": Measure(("分账目收入(元)", "Revenue by billing item (yuan)"), IncomeFact, "income_amt", "32003",
                               (*_NET, "billing_item")),
    "top500_income_amt": Measure(("500强客户分产品收入(元)", "Top-500 revenue by product (yuan)"), ProductAggregate,
                                 "income_amt", "31203", ("province", "product", "cycle")),
    "top500_customers": Measure(("500强客户数", "Top-500 customers"), CustomerAggregate, "customers", "31201",
                                ("province", "level", "industry", "cycle"), stock=True),
    "top500_cust_income_amt": Measure(("500强客户收入(按级别/行业)(元)", "Top-500 revenue by level/industry (yuan)"),
                                      CustomerAggregate, "income_amt", "31201", ("province", "level", "industry",
                                                                                 "cycle")),
}


def _column(model: Any, dimension: str) -> ColumnElement[Any]:
    """The column a dimension reads in a measure's table."""
    if model is CustomerAggregate and dimension in ("level", "industry"):
        code: ColumnElement[Any] = CustomerAggregate.code  # type: ignore[assignment]
        return code
    name = {"province": "prov_id", "network": "latn_id", "product": "prod_id", "billing_item": "acct_item_type_id",
            "cycle": "cycle"}[dimension]
    column: ColumnElement[Any] = getattr(model, name)
    return column


def cycle_range(first: str, last: str) -> list[str]:
    """The cycles from ``first`` to ``last`` inclusive; BadRequest when they are not a range of at most MAX_CYCLES."""
    try:
        a, b = Cycle.parse(first), Cycle.parse(last)
    except ValueError:
        raise BadRequest(f"{first!r} to {last!r} is not a range of cycles (e.g. 202601 to 202612)",
                         f"{first} 至 {last} 不是有效的周期范围（例如 202601 至 202612）", code="bad_cycle_range")
    if a.freq != b.freq:
        raise BadRequest("both ends of the range must be cycles of the same frequency (months, quarters, ...)",
                         "周期范围两端须为同一频度（月、季……）", code="bad_cycle_range")
    if a.begin > b.begin:
        raise BadRequest(f"the range starts ({first}) after it ends ({last})",
                         f"周期范围的起点（{first}）晚于终点（{last}）", code="bad_cycle_range")
    out = [a.id]
    while out[-1] != b.id:
        if len(out) >= MAX_CYCLES:
            raise BadRequest(f"a pivot covers at most {MAX_CYCLES} cycles: narrow the range",
                             f"透视最多覆盖 {MAX_CYCLES} 个周期，请缩小范围", code="too_many_cycles")
        out.append(Cycle.parse(out[-1]).next().id)
    return out


def check(rows: str, cols: str, measure: str) -> Measure:
    """The measure when ``rows`` × ``cols`` is a pivot it can be split by; BadRequest saying why not otherwise."""
    if measure not in MEASURES:
        raise BadRequest(f"unknown measure {measure!r}", f"未知指标 {measure}", code="bad_measure")
    for d in (rows, cols):
        if d not in DIMENSIONS:
            raise BadRequest(f"unknown dimension {d!r}", f"未知维度 {d}", code="bad_dimension")
    if rows == cols:
        raise BadRequest("rows and columns must be two different dimensions", "行与列须为两个不同的维度",
                         code="bad_dimension")
    m = MEASURES[measure]
    for d in (rows, cols):
        if d not in m.dimensions:
            zh, en = DIMENSIONS[d]
            names_en = ", ".join(DIMENSIONS[x][1].lower() for x in m.dimensions)
            names_zh = "、".join(DIMENSIONS[x][0] for x in m.dimensions)
            raise BadRequest(f"{m.title[1]} cannot be split by {en.lower()}: it can be split by {names_en}",
                             f"{m.title[0]}不能按{zh}拆分，可按{names_zh}拆分", code="bad_dimension")
    if {rows, cols} == {"level", "industry"}:
        raise BadRequest("customer level and industry are aggregated separately: pick one of them",
                         "客户级别与行业分别汇总，只能选其一", code="bad_dimension")
    return m


@dataclass
class Pivot:
    """A pivot table: row and column headers, cells, totals (None where a total would mean nothing)."""

    rows_dim: str
    cols_dim: str
    measure: str
    cycles: list[str]
    rows: list[tuple[str, str, str]]  # (code, Chinese name, English name)
    cols: list[tuple[str, str, str]]
    cells: dict[tuple[str, str], Any]
    row_totals: dict[str, Any]  # empty when the columns are cycles of a stock measure
    col_totals: dict[str, Any]
    grand_total: Any

    @property
    def spec(self) -> Measure:
        """The measure's definition."""
        return MEASURES[self.measure]


class PivotService:
    """Builds pivots from the current facts and the aggregates (read-only)."""

    def __init__(self, session: Session, spec: Any) -> None:
        self.session = session
        self.spec = live_spec(session, spec)

    def _labels(self, dimension: str, codes: list[str]) -> list[tuple[str, str, str]]:
        """Codes with their Chinese and English names, in code order."""
        if dimension == "cycle":
            return [(c, c, c) for c in codes]
        if dimension in ("province", "network"):
            names = {code: (zh, en) for code, zh, en in self.session.execute(
                select(Area.code, Area.name_zh, Area.name_en).where(Area.code.in_(codes)))} if codes else {}
        else:
            found = self.spec.domain(_DOMAINS[dimension]).current.codes
            names = {c.code: (c.name_zh, c.name_en) for c in found.values()}
        return [(c, *names.get(c, ("", ""))) for c in sorted(codes)]

    def pivot(self, rows: str, cols: str, measure: str, first: str, last: str) -> Pivot:
        """``measure`` summed per ``rows`` × ``cols`` over the cycles ``first``..``last`` (BadRequest when not possible)."""
        m = check(rows, cols, measure)
        cycles = cycle_range(first, last)
        model = m.model
        r, c = _column(model, rows), _column(model, cols)
        q = select(r.label("r"), c.label("c"), func.sum(getattr(model, m.column)).label("v")).where(
            model.cycle.in_(cycles))
        if hasattr(model, "current"):
            q = q.where(model.current.is_(True))
        if model is CustomerAggregate:
            # Each customer has one level and one industry: the aggregate of either adds up to all customers.
            q = q.where(CustomerAggregate.dimension == ("c_type_id" if "industry" in (rows, cols) else "level_id"))
        fen: dict[tuple[str, str], int] = {(str(a), str(b)): int(v or 0)
                                           for a, b, v in self.session.execute(q.group_by(r, c))}
        row_codes = sorted({a for a, _ in fen})
        col_codes = sorted({b for _, b in fen})
        if cols == "cycle":
            col_codes = [x for x in cycles if x in set(col_codes)]
        if rows == "cycle":
            row_codes = [x for x in cycles if x in set(row_codes)]

        def out(value: int) -> Any:
            return _money(value) if m.money else value

        # Totals over the cycle dimension mean nothing for a stock (12 month-end counts are not a count).
        rows_add = not (m.stock and cols == "cycle")
        cols_add = not (m.stock and rows == "cycle")
        row_totals = {a: out(sum(v for (x, _), v in fen.items() if x == a)) for a in row_codes} if rows_add else {}
        col_totals = {b: out(sum(v for (_, y), v in fen.items() if y == b)) for b in col_codes} if cols_add else {}
        grand = out(sum(fen.values())) if rows_add and cols_add else None
        return Pivot(rows, cols, measure, cycles, self._labels(rows, row_codes), self._labels(cols, col_codes),
                     {k: out(v) for k, v in fen.items()}, row_totals, col_totals, grand)

    def newest_cycle(self) -> str | None:
        """The newest cycle with counted 32001 rows (the pivot's default end)."""
        found: str | None = self.session.scalar(select(func.max(SummaryFact.cycle)).where(SummaryFact.current.is_(True)))
        return found


def default_range(last: str, length: int = 6) -> tuple[str, str]:
    """The ``length`` cycles ending with ``last``: (first, last)."""
    c = Cycle.parse(last)
    for _ in range(length - 1):
        c = c.previous()
    return c.id, last


# -- downloads -----------------------------------------------------------------------------------
def _grid(p: Pivot) -> tuple[list[tuple[str, str]], list[Kind], list[list[Any]]]:
    """The pivot as a flat grid: row code and names, a column per column key, the row total; a totals row last."""
    kind: Kind = "money" if p.spec.money else "count"
    rzh, ren = DIMENSIONS[p.rows_dim]
    titles = [(f"{rzh}代码", f"{ren} code"), (f"{rzh}名称", f"{ren} name"), (f"{rzh}英文名称", f"{ren} name (English)")]
    titles += [(f"{code} {zh}".strip() if zh != code else code, f"{code} {en}".strip() if en != code else code)
               for code, zh, en in p.cols]
    titles.append(("合计", "Total"))
    kinds: list[Kind] = ["text", "text", "text", *([kind] * len(p.cols)), kind]
    grid = [[code, zh, en, *(p.cells.get((code, c[0])) for c in p.cols), p.row_totals.get(code)]
            for code, zh, en in p.rows]
    grid.append(["", "合计", "Total", *(p.col_totals.get(c[0]) for c in p.cols), p.grand_total])
    return titles, kinds, grid


def _notes(p: Pivot) -> list[str]:
    zh, en = p.spec.title
    return [f"{zh} / {en} · {DIMENSIONS[p.rows_dim][0]} × {DIMENSIONS[p.cols_dim][0]} / "
            f"{DIMENSIONS[p.rows_dim][1]} × {DIMENSIONS[p.cols_dim][1]} · {p.cycles[0]}–{p.cycles[-1]}"]


def pivot_csv(p: Pivot) -> bytes:
    """The pivot as CSV (UTF-8 with BOM, bilingual header, codes quoted)."""
    titles, kinds, grid = _grid(p)
    return csv_bytes([f"{zh} {en}" if zh != en else zh for zh, en in titles], kinds, grid)


def pivot_xlsx(p: Pivot) -> bytes:
    """The pivot as a one-sheet workbook, with what it shows in a note under it."""
    titles, kinds, grid = _grid(p)
    return xlsx_bytes("透视 Pivot", titles, kinds, grid, _notes(p))

