"""Top-500 coverage by name: every listed customer a province has not fully covered, per kind of coverage.

The four kinds are details (31201), contacts (31202), products (31203 rows) and revenue (a
31203 row with a non-zero amount). The gaps are kept per province by each acceptance
(``aggregates.Aggregates.coverage``), so a listing reads what is missing — never the facts —
and names the customers from the list (the newest published version stating each).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import BadRequest, NotFound
from ..lists.models import DRAFT, ListEntry, ListVersion
from ..org.models import LOCAL_NETWORK, PROVINCE, Area
from .aggregates import COVERAGE_KINDS
from .rollups import RollupService

KINDS: tuple[str, ...] = tuple(COVERAGE_KINDS)
# kind -> (Chinese, English, unit)
KIND_TITLES: dict[str, tuple[str, str, str]] = {
    "details": ("客户资料", "details", "31201"), "contacts": ("联系人", "contacts", "31202"),
    "products": ("产品", "products", "31203"), "revenue": ("收入", "revenue", "31203"),
}
PER_PAGE = 100
NAME_CHUNK = 500  # customer ids per IN (...) when looking up names


@dataclass(frozen=True)
class CoverageRow:
    """One listed customer lacking some kind of coverage."""

    prov_id: str
    prov_name_zh: str
    prov_name_en: str
    cust_id: str
    cust_name: str
    rank: int | None
    latn_id: str
    latn_name_zh: str
    latn_name_en: str
    missing: frozenset[str]

    def has(self, kind: str) -> bool:
        """Whether the kind was received for this customer."""
        return kind not in self.missing


@dataclass(frozen=True)
class ProvinceCoverage:
    """A province's coverage counts: listed, not fully covered, and missing per kind."""

    prov_id: str
    name_zh: str
    name_en: str
    list_version: str
    listed: int
    not_covered: int
    missing: dict[str, int]


@dataclass
class CoverageList:
    """One page (or all) of the customers not covered, with every province's counts."""

    cycle: str
    province: str | None
    kind: str | None
    provinces: list[ProvinceCoverage]
    total: int  # rows matching the filters
    rows: list[CoverageRow]
    page: int
    pages: int
    per_page: int

    @property
    def totals(self) -> dict[str, int]:
        """Group totals of the counts."""
        out = {"listed": sum(p.listed for p in self.provinces),
               "not_covered": sum(p.not_covered for p in self.provinces)}
        out.update({k: sum(p.missing[k] for p in self.provinces) for k in KINDS})
        return out


class CoverageService:
    """Lists the top-500 customers not covered for a cycle (read-only, but for refreshing stale coverage rows)."""

    def __init__(self, session: Session, spec: Any) -> None:
        self.session = session
        self.rollups = RollupService(session, spec)

    def _areas(self) -> dict[str, tuple[str, str, str]]:
        """Area code -> (Chinese name, English name, level) for provinces and local networks."""
        return {code: (zh, en, level) for code, zh, en, level in self.session.execute(
            select(Area.code, Area.name_zh, Area.name_en, Area.level)
            .where(Area.level.in_((PROVINCE, LOCAL_NETWORK))))}

    def names(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Customer id -> (name, rank) as the newest published list version states it (chunked IN lookups)."""
        wanted = sorted(set(ids))
        out: dict[str, tuple[str, int]] = {}
        newest: dict[str, str] = {}
        for i in range(0, len(wanted), NAME_CHUNK):
            for cust, name, rank, version in self.session.execute(
                    select(ListEntry.national_cust_id, ListEntry.cust_name, ListEntry.rank, ListVersion.version)
                    .join(ListVersion, ListVersion.id == ListEntry.list_version_id)
                    .where(ListVersion.state != DRAFT, ListEntry.national_cust_id.in_(wanted[i:i + NAME_CHUNK]))):
                if cust not in newest or version > newest[cust]:
                    newest[cust] = version
                    out[cust] = (name, rank)
        return out

    def listing(self, cycle: str, province: str | None = None, kind: str | None = None, page: int = 1,
                per_page: int | None = PER_PAGE) -> CoverageList:
        """The customers not covered (by province, then id), filtered by province and by a kind missing.

        ``per_page`` None gives every row (downloads). BadRequest for an unknown province or
        kind or a page below 1; NotFound for a page past the last.
        """
        areas = self._areas()
        if province is not None and areas.get(province, ("", "", ""))[2] != PROVINCE:
            raise BadRequest(f"{province!r} is not a province code", f"{province!r} 不是省份编码", code="bad_province",
                             errors={"province": province})
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"unknown kind of coverage {kind!r}", f"未知的覆盖类型 {kind!r}", code="bad_kind",
                             errors={"kind": kind, "expected": list(KINDS)})
        if page < 1:
            raise BadRequest("the page number must be 1 or more", "页码须不小于1", code="bad_page", errors={"page": page})
        provinces: list[ProvinceCoverage] = []
        matching: list[tuple[str, Any]] = []
        for p in self.rollups.coverage_gaps(cycle):
            zh, en, _level = areas.get(p["prov_id"], ("", "", ""))
            gaps = p["gaps"]
            provinces.append(ProvinceCoverage(p["prov_id"], zh, en, p["list_version"], p["listed"], len(gaps),
                                              {k: sum(1 for g in gaps if k in g.missing) for k in KINDS}))
            if province is None or p["prov_id"] == province:
                matching += [(p["prov_id"], g) for g in gaps if kind is None or kind in g.missing]
        total = len(matching)
        size = per_page or max(total, 1)
        pages = max(1, math.ceil(total / size))
        if page > pages:
            raise NotFound(f"page {page} is past the last ({pages})", f"第 {page} 页超出末页（{pages}）",
                           code="page_not_found", errors={"page": page, "pages": pages})
        chosen = matching[(page - 1) * size:page * size]
        named = self.names(g.cust_id for _p, g in chosen)
        rows = []
        for prov, g in chosen:
            pzh, pen, _l = areas.get(prov, ("", "", ""))
            nzh, nen, _l = areas.get(g.latn_id, ("", "", ""))
            name, rank = named.get(g.cust_id, ("", None))
            rows.append(CoverageRow(prov, pzh, pen, g.cust_id, name, rank, g.latn_id, nzh, nen, g.missing))
        return CoverageList(cycle, province, kind, provinces, total, rows, page, pages, size)


# -- downloads -----------------------------------------------------------------------------------
COLUMNS: list[tuple[str, str, str]] = [
    ("prov_id", "省份编码", "Province code"), ("prov_name_zh", "省份", "Province (Chinese)"),
    ("prov_name_en", "省份（英文）", "Province"), ("cust_id", "全国大客户编码", "National customer id"),
    ("cust_name", "客户名称", "Customer name"), ("rank", "排名", "Rank"),
    ("latn_id", "牵头本地网", "Lead local network"),
    *[(k, f"{zh}（{unit}）", f"{en.capitalize()} ({unit})") for k, (zh, en, unit) in KIND_TITLES.items()],
    ("missing", "缺少", "Missing"),
]


def _values(row: CoverageRow) -> list[Any]:
    """A row's cells in COLUMNS order: yes/no per kind, the missing kinds by name."""
    values: dict[str, Any] = {"prov_id": row.prov_id, "prov_name_zh": row.prov_name_zh,
                              "prov_name_en": row.prov_name_en, "cust_id": row.cust_id, "cust_name": row.cust_name,
                              "rank": row.rank, "latn_id": row.latn_id,
                              "missing": " ".join(k for k in KINDS if k in row.missing)}
    for k in KINDS:
        values[k] = "是 yes" if row.has(k) else "否 no"
    return [values[key] for key, _zh, _en in COLUMNS]


def coverage_csv(listing: CoverageList) -> bytes:
    """Every row as CSV: UTF-8 with BOM, CRLF, bilingual header; text (ids, codes) quoted, numbers not."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([f"{zh} {en}" for _key, zh, en in COLUMNS])
    for row in listing.rows:
        writer.writerow(["" if v is None else v for v in _values(row)])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def coverage_xlsx(listing: CoverageList) -> bytes:
    """Every row as a workbook: two header rows (Chinese, English), ids as text, a filter, frozen header."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = f"500强未覆盖 {listing.cycle}"
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="D9E1F2")
    for i, (_key, zh, en) in enumerate(COLUMNS, start=1):
        for r, text in ((1, zh), (2, en)):
            cell = ws.cell(row=r, column=i, value=text)
            cell.font, cell.fill = bold, fill
    for r, row in enumerate(listing.rows, start=3):
        for i, value in enumerate(_values(row), start=1):
            cell = ws.cell(row=r, column=i, value=value)
            if COLUMNS[i - 1][0] in ("cust_id", "prov_id", "latn_id"):
                cell.number_format = "@"  # text: leading zeros stay
    ws.freeze_panes = "A3"
    if listing.rows:
        ws.auto_filter.ref = f"A2:{ws.cell(row=2, column=len(COLUMNS)).column_letter}{len(listing.rows) + 2}"
    widths = {"cust_name": 40, "prov_name_zh": 16, "prov_name_en": 20, "cust_id": 14}
    for i, (key, _zh, _en) in enumerate(COLUMNS, start=1):
        ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = widths.get(key, 12)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
