"""What the analyst pages show, assembled from the roll-ups and the calendar."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..consolidation.models import SummaryFact
from ..consolidation.rollups import Rollup, RollupService
from ..cycles.models import ReportingCycle
from ..cycles.services import CycleService
from ..media_types import CSV_TYPE, XLSX_TYPE
from .charts import BarChart, BarItem, LineChart, LineItem, bar_chart, line_chart
from .i18n import current_language, t

TREND_LENGTH = 12
# Suffixes dropped for column headers and chart labels (内蒙古自治区 -> 内蒙古), as reports do.
_AREA_SUFFIX = re.compile(r"(维吾尔自治区|壮族自治区|回族自治区|自治区|特别行政区|省|市)$")
_EN_SUFFIX = re.compile(r"\s+(Province|Municipality|(Uygur |Uyghur |Zhuang |Hui )?Autonomous Region|SAR)$", re.I)
# How the dashboard's bars may be ordered (?sort=): the first is the default.
BAR_ORDERS: dict[str, tuple[str, str]] = {"value": ("按数值", "by value"), "code": ("按代码", "by code"),
                                          "name": ("按名称", "by name")}

# Completeness states as the matrix shows them: symbol, Chinese (the workbook's words), English.
STATES: dict[str, tuple[str, str, str]] = {
    "accepted": ("✓", "已采纳", "accepted"),
    "late": ("!", "逾期采纳", "accepted late"),
    "received": ("…", "已收到未采纳", "received, not accepted"),
    "missing": ("✗", "缺报", "missing"),
}

# The tables offered as CSV (what consolidation.exports.table knows): Chinese, English.
CSV_TABLES: dict[str, tuple[str, str]] = {
    "totals": ("集团合计", "group totals"),
    "by_province": ("分省", "by province"),
    "by_network": ("分本地网", "by local network"),
    "by_product": ("分产品", "by product"),
    "by_billing_item": ("分账目", "by billing item"),
    "by_level": ("分客户级别", "by customer level"),
    "by_industry": ("分行业", "by industry"),
    "coverage": ("500强覆盖", "top-500 coverage"),
    "completeness": ("报送完整性", "completeness"),
    "lineage": ("数据来源版本", "lineage"),
}


def short_area_name(name_zh: str) -> str:
    """A province's name without its administrative suffix (新疆维吾尔自治区 -> 新疆)."""
    return _AREA_SUFFIX.sub("", name_zh) or name_zh


def area_label(name_zh: str, name_en: str | None) -> str:
    """A province's name for a chart label or column header in the page's language.

    Chinese: the short name (湖北省 -> 湖北). English: the code list's English name ("Hubei"), which
    is already short; a name spelt with its suffix ("Hubei Province") loses it.
    """
    if current_language() == "en" and name_en:
        return _EN_SUFFIX.sub("", name_en.strip()) or name_en
    return short_area_name(name_zh)


def sort_bars(items: list[BarItem], order: str) -> list[BarItem]:
    """Bars in the reader's order: by value (largest first, the default), by code or by name."""
    if order == "code":
        return sorted(items, key=lambda i: i.key)
    if order == "name":
        return sorted(items, key=lambda i: (i.label.casefold(), i.key))
    return sorted(items, key=lambda i: (-i.value, i.key))


def cycle_label(cycle_id: str) -> str:
    """A compact axis label: 202610 -> 2026-10; quarters, halves and years as they are."""
    return f"{cycle_id[:4]}-{cycle_id[4:]}" if re.fullmatch(r"\d{6}", cycle_id) else cycle_id


@dataclass(frozen=True)
class Export:
    """A file to download: its bytes, type and name."""

    data: bytes
    mimetype: str
    filename: str


BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Dashboard:
    """Everything the analyst dashboard renders for one cycle."""

    cycle: ReportingCycle
    calendar: list[ReportingCycle]
    rollup: Rollup
    province_chart: BarChart
    product_chart: BarChart
    trend_chart: LineChart
    units: list[dict[str, str]]
    csv_tables: list[tuple[str, str, str]]  # (table, Chinese, English) offered as CSV
    sort: str = "value"  # the bars' order (a key of BAR_ORDERS)


class DashboardService:
    """Builds the analyst dashboard from the roll-ups (read-only)."""

    def __init__(self, session: Session, spec: Any) -> None:
        self.session = session
        self.spec = spec
        self.rollups = RollupService(session, spec)
        self.cycles = CycleService(session, spec)

    def default_cycle(self) -> str | None:
        """The newest cycle with consolidated data, else the newest cycle in the calendar."""
        with_data = set(self.session.scalars(select(SummaryFact.cycle).where(SummaryFact.current.is_(True))
                                             .distinct()))
        calendar = self.cycles.calendar()
        for c in calendar:
            if c.id in with_data:
                return c.id
        return calendar[0].id if calendar else None

    def trend(self, cycle_id: str) -> list[LineItem]:
        """Group revenue for the last TREND_LENGTH cycles of the same frequency, oldest first.

        A cycle only partly reported is marked (its share of local networks in the label's
        title), so a dip that is only missing provinces does not read as a fall.
        """
        items = []
        for point in self.rollups.trend(cycle_id, TREND_LENGTH):
            cid, share = point["cycle"], point["share_reported_pct"]
            items.append(LineItem(cid, cycle_label(cid), point["income_amt"], point["networks"] > 0,
                                  cid == cycle_id, share if share is not None and share < 100 else None))
        return items

    def dashboard(self, cycle_id: str, sort: str = "value") -> Dashboard:
        """The dashboard of one calendar cycle in the page's language; NotFound when it is not in the calendar.

        Provinces, products and units are named in the reader's language (the code lists carry
        both names); the bars are ordered by ``sort`` (a key of BAR_ORDERS; unknown: by value).
        """
        sort = sort if sort in BAR_ORDERS else "value"
        cycle = self.cycles.get(cycle_id)
        rollup = self.rollups.rollup(cycle_id)
        provinces = bar_chart(sort_bars([BarItem(p["prov_id"], area_label(p["name_zh"], p["name_en"]) or p["prov_id"],
                                                 t(p["name_zh"], p["name_en"]) or p["prov_id"], p["income_amt"])
                                         for p in rollup.by_province], sort),
                              label_width=100 if current_language() == "en" else 70)
        products = bar_chart(sort_bars([BarItem(p["prod_id"], t(p["name_zh"], p["name_en"]) or p["prod_id"],
                                                f"{p['prod_id']} {t(p['name_zh'], p['name_en'])}",
                                                p["top500_income_amt"])
                                        for p in rollup.by_product if p["top500_income_amt"] or p["serv_cnt"]], sort),
                             label_width=210 if current_language() == "en" else 150, row_height=17)
        units = [{"code": u, "name_zh": self.spec.unit(u).name_zh, "name_en": self.spec.unit(u).name_en}
                 for u in rollup.completeness["units"]]
        return Dashboard(cycle, self.cycles.calendar(), rollup, provinces, products, line_chart(self.trend(cycle_id)),
                         units, [(key, zh, en) for key, (zh, en) in CSV_TABLES.items()], sort)

    def export(self, cycle_id: str, name: str) -> Export | None:
        """``rollup.xlsx``, ``rollup.json``, ``rollup.xml`` or ``<table>.csv`` of a cycle, named as the API names
        them, or None.

        CSV files are UTF-8 with a byte-order mark (written by the exports module), so Excel and
        LibreOffice read the Chinese right; the type is ``text/csv; charset=utf-8``, sent as it is
        (``pages.files.attachment``).
        """
        breakdown = name.removesuffix(".csv")
        if name not in ("rollup.xlsx", "rollup.json", "rollup.xml") and (breakdown == name
                                                                         or breakdown not in CSV_TABLES):
            return None
        self.cycles.get(cycle_id)
        # Imported here: the exports module is written alongside the API and is only needed for downloads.
        from ..consolidation import exports

        key = self.rollups.key(cycle_id)
        scope = str(self.session.get_bind().engine.url)

        def rendered(kind: str, render: Any) -> bytes:
            def make() -> bytes:
                roll = self.rollups.compute(cycle_id)
                roll.key = key
                data: bytes = render(roll)
                return data
            return exports.RENDERED.get(scope, cycle_id, key, kind, make)

        if name == "rollup.xlsx":
            return Export(rendered("xlsx", exports.rollup_xlsx), XLSX_TYPE, f"kam-rollup-{cycle_id}.xlsx")
        if name == "rollup.json":
            return Export(rendered("json", exports.rollup_json), "application/json", f"kam-rollup-{cycle_id}.json")
        if name == "rollup.xml":
            return Export(rendered("xml", lambda roll: exports.rollup_xml(roll, self.spec.namespace)),
                          "application/xml", f"kam-rollup-{cycle_id}.xml")
        return Export(rendered(f"csv:{breakdown}", lambda roll: with_bom(exports.rollup_csv(roll, breakdown))),
                      CSV_TYPE, f"kam-rollup-{cycle_id}-{breakdown}.csv")


def with_bom(data: bytes) -> bytes:
    """UTF-8 text with its byte-order mark (once): how Excel knows a CSV file is UTF-8."""
    return data if data.startswith(BOM) else BOM + data


def stamp_text(stamp: str | None) -> str:
    """A ``YYYYMMDDHHMMSS`` Beijing stamp (the standard's form) as ``YYYY-MM-DD HH:MM`` for people."""
    if not stamp or len(stamp) < 12:
        return stamp or "—"
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}"
