"""Downloads of a roll-up: JSON, CSV (UTF-8 with BOM), formatted XLSX and XML in the spec's namespace.

Every format renders the same :class:`~.rollups.Rollup`; money stays an exact ``Decimal``
of yuan all the way to the bytes (JSON and XML as strings like ``"12345.67"``, CSV as plain
``12345.67``, XLSX as the decimal's own digits in the cell), so a download adds up to the
roll-up's totals to the fen.
"""
from __future__ import annotations

import csv
import io
import json
import threading
import unicodedata
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from lxml import etree
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from .rollups import Rollup

# Bilingual column titles for every key a roll-up carries (Chinese first: HQ's analysts read it).
TITLES: dict[str, tuple[str, str]] = {
    "cycle": ("统计周期", "Cycle"),
    "prov_id": ("省份代码", "Province code"),
    "latn_id": ("本地网代码", "Local network code"),
    "name_zh": ("名称", "Name (Chinese)"),
    "name_en": ("英文名称", "Name (English)"),
    "networks": ("本地网数", "Local networks"),
    "cust_cnt": ("期末大客户数", "Key accounts at period end"),
    "cust_cnt_group": ("集团级客户数", "Group-level accounts"),
    "cust_cnt_prov": ("省级客户数", "Provincial-level accounts"),
    "cust_cnt_la": ("本地A级客户数", "Local A accounts"),
    "cust_cnt_lb": ("本地B级客户数", "Local B accounts"),
    "cust_cnt_lc": ("本地C级客户数", "Local C accounts"),
    "new_cust_cnt": ("新增大客户数", "New key accounts"),
    "lost_cust_cnt": ("流失大客户数", "Lost key accounts"),
    "top500_cust_cnt": ("500强客户数", "Top-500 customers served"),
    "manager_cnt": ("客户经理人数", "Account managers"),
    "income_amt": ("本期收入(元)", "Revenue (yuan)"),
    "income_ytd_amt": ("本年累计收入(元)", "Revenue year to date (yuan)"),
    "income_ly_amt": ("上年同期收入(元)", "Revenue same period last year (yuan)"),
    "income_ly_ytd_amt": ("上年同期累计收入(元)", "Revenue last year to date (yuan)"),
    "income_prev_amt": ("上期收入(元)", "Revenue previous period (yuan)"),
    "mom_pct": ("环比增长(%)", "Month on month (%)"),
    "networks_expected": ("应报本地网数", "Local networks expected"),
    "share_reported_pct": ("本期上报比例(%)", "Share reported this period (%)"),
    "prev_cycle": ("上期", "Previous period"),
    "prev_networks": ("上期已报本地网数", "Local networks reported, previous period"),
    "prev_networks_expected": ("上期应报本地网数", "Local networks expected, previous period"),
    "prev_share_reported_pct": ("上期上报比例(%)", "Share reported, previous period (%)"),
    "mom_partial": ("环比口径不全", "Month on month is partial"),
    "mom_comparable_networks": ("同口径本地网数", "Networks reported in both periods"),
    "mom_comparable_pct": ("同口径环比增长(%)", "Month on month, like for like (%)"),
    "serv_cust_cnt": ("使用客户数", "Key accounts using it"),
    "delivery_status": ("交付状态", "Delivery status"),
    "sources": ("数据来源", "Sources (delivery:version:party)"),
    "rows": ("计入行数", "Rows counted"),
    "yoy_pct": ("同比增长(%)", "Year on year (%)"),
    "prod_id": ("产品代码", "Product code"),
    "serv_cnt": ("期末业务量", "Volume at period end"),
    "new_serv_cnt": ("新增业务量", "Volume added"),
    "cancel_serv_cnt": ("拆机业务量", "Volume cancelled"),
    "serv_cnt_ly": ("上年同期业务量", "Volume same period last year"),
    "top500_income_amt": ("500强客户收入(元)", "Top-500 revenue (yuan)"),
    "top500_customers": ("500强客户数", "Top-500 customers"),
    "acct_item_type_id": ("账目项类型代码", "Billing item type code"),
    "level_id": ("客户级别代码", "Customer level code"),
    "c_type_id": ("客户类型(行业)代码", "Customer type (industry) code"),
    "customers": ("客户数", "Customers"),
    "list_version": ("名单版本", "List version"),
    "listed": ("名单客户数", "Listed customers"),
    "received": ("已报送", "Details received"),
    "missing": ("缺报", "Missing"),
    "received_not_accepted": ("已收到未采纳", "Received, not accepted"),
    "missing_ids": ("缺报客户编码(前50)", "Missing customer ids (first 50)"),
    "party": ("报送方", "Sending party"),
    "unit": ("接口单元", "Interface unit"),
    "version": ("版本", "Version"),
    "versions": ("版本总数", "Versions received"),
    "delivery_id": ("交付编号", "Delivery id"),
    "check_file": ("校验文件", "Check file"),
    "resend": ("重发序号", "Resend number"),
    "accepted_at": ("采纳时间(UTC)", "Accepted at (UTC)"),
    "late": ("逾期", "Late"),
    "exception_until": ("例外截止（北京）", "Exception until (Beijing)"),
    "cycle_state": ("周期状态", "Cycle state"),
    "deadline_beijing": ("截止时间（北京）", "Deadline (Beijing)"),
    "state": ("状态", "State"),
    "state_zh": ("状态(中文)", "State (Chinese)"),
    "expected": ("应报单元数", "Units expected"),
    "accepted": ("已采纳单元数", "Units accepted"),
    "reporting_rate_pct": ("报送率(%)", "Reporting rate (%)"),
    "units": ("应报接口单元", "Units due"),
    "key": ("指标代码", "Key"),
    "value": ("数值", "Value"),
}

# One sheet/file per breakdown; sheet names stay under Excel's 31 characters.
BREAKDOWN_TITLES: dict[str, tuple[str, str]] = {
    "totals": ("总计", "Totals"),
    "by_province": ("分省", "By province"),
    "by_network": ("本地网", "By network"),
    "by_product": ("产品", "By product"),
    "by_billing_item": ("账目项", "By billing item"),
    "by_level": ("客户级别", "By level"),
    "by_industry": ("行业", "By industry"),
    "coverage": ("500强覆盖", "Coverage"),
    "completeness": ("完整性", "Completeness"),
    "lineage": ("数据来源", "Lineage"),
}

# What each breakdown's rows carry, for an empty roll-up (the header still tells what would be there).
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "by_province": ("prov_id", "name_zh", "name_en", "networks", "cust_cnt", "cust_cnt_group", "cust_cnt_prov",
                    "cust_cnt_la", "cust_cnt_lb", "cust_cnt_lc", "new_cust_cnt", "lost_cust_cnt", "top500_cust_cnt",
                    "manager_cnt", "income_amt", "income_ytd_amt", "income_ly_amt", "yoy_pct"),
    "by_network": ("prov_id", "latn_id", "name_zh", "name_en", "cust_cnt", "new_cust_cnt", "lost_cust_cnt",
                   "income_amt", "income_ytd_amt", "income_ly_amt"),
    "by_product": ("prod_id", "name_zh", "name_en", "serv_cnt", "new_serv_cnt", "cancel_serv_cnt", "serv_cnt_ly",
                   "serv_cust_cnt", "top500_income_amt", "top500_customers"),
    "by_billing_item": ("acct_item_type_id", "name_zh", "name_en", "income_amt", "income_ytd_amt", "income_ly_amt",
                        "income_ly_ytd_amt", "yoy_pct"),
    "by_level": ("level_id", "name_zh", "name_en", "customers", "top500_income_amt"),
    "by_industry": ("c_type_id", "name_zh", "name_en", "customers", "top500_income_amt"),
    "coverage": ("prov_id", "list_version", "listed", "received", "missing", "missing_ids"),
    "lineage": ("party", "unit", "version", "versions", "delivery_id", "check_file", "resend", "accepted_at", "late",
                "networks", "rows"),
    "completeness": ("prov_id", "name_zh", "name_en", "unit", "state", "state_zh", "delivery_id", "version",
                     "delivery_status", "sources", "exception_until"),
    "totals": ("key", "name_zh", "name_en", "value"),
}

# The CSV downloads: the breakdowns, plus the totals, completeness (long form) and lineage.
CSV_BREAKDOWNS: tuple[str, ...] = ("totals", *Rollup.BREAKDOWNS, "completeness", "lineage")

STATES: dict[str, tuple[str, str]] = {
    "accepted": ("已采纳", "00B050"), "late": ("逾期采纳", "FFC000"),
    "received": ("已收到未采纳", "F4B183"), "missing": ("缺报", "FF7C80"),
}

MONEY_FORMAT = "#,##0.00"
COUNT_FORMAT = "#,##0"
PCT_FORMAT = "0.00"


def title(key: str) -> tuple[str, str]:
    """The (Chinese, English) title of a column key; unknown keys title themselves."""
    return TITLES.get(key, (key, key))


def _is_money(key: str) -> bool:
    return key.endswith("_amt")


def _text(value: Any) -> str:
    """A value as CSV text: decimals in plain notation (never exponent, never float rounding)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return str(value)


def columns(rows: Sequence[Mapping[str, Any]], breakdown: str) -> list[str]:
    """The keys of a breakdown's rows in first-seen order (the defaults when there are no rows)."""
    if not rows:
        return list(DEFAULT_COLUMNS.get(breakdown, ()))
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def table(rollup: Rollup, breakdown: str) -> tuple[list[str], list[dict[str, Any]]]:
    """A breakdown as flat rows and its columns: the totals, a breakdown, completeness or lineage."""
    rows: list[dict[str, Any]]
    if breakdown == "totals":
        rows = [{"key": "cycle", "name_zh": title("cycle")[0], "name_en": title("cycle")[1], "value": rollup.cycle}]
        rows += [{"key": k, "name_zh": title(k)[0], "name_en": title(k)[1], "value": v}
                 for k, v in rollup.totals.items()]
        return list(DEFAULT_COLUMNS["totals"]), rows
    if breakdown == "completeness":
        rows = []
        for p in rollup.completeness.get("matrix", []):
            exc = p.get("exception")
            until = exc["until_beijing"] if exc and exc.get("valid") else None  # only exceptions still in force
            for unit, cell in p["units"].items():
                sources = [f"{s['delivery_id']}:v{s['version']}:{s['party']}" for s in cell.get("sources", [])]
                rows.append({"prov_id": p["prov_id"], "name_zh": p["name_zh"], "name_en": p["name_en"],
                             "unit": unit, "state": cell["state"], "state_zh": STATES.get(cell["state"], ("",))[0],
                             "delivery_id": cell.get("delivery_id"), "version": cell.get("version"),
                             "delivery_status": cell.get("delivery_status"), "sources": sources,
                             "exception_until": until})
        return list(DEFAULT_COLUMNS["completeness"]), rows
    if breakdown == "lineage":
        return columns(rollup.lineage, "lineage"), list(rollup.lineage)
    if breakdown not in Rollup.BREAKDOWNS:
        raise KeyError(breakdown)
    rows = list(getattr(rollup, breakdown))
    return columns(rows, breakdown), rows


# -- rendered downloads, kept -----------------------------------------------------------------
class RenderedDownloads:
    """The bytes of recent downloads, per roll-up key and format, in this process.

    A roll-up's key names everything it is built from (facts, the previous cycle, lists,
    code lists, the calendar): the same key renders to the same bytes, so a repeated
    download is served without computing or rendering again — an XLSX in milliseconds.
    Any acceptance, delivery, publication or calendar change gives a new key.
    """

    def __init__(self, size: int = 48) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, scope: str, cycle: str, rollup_key: str, kind: str, render: Callable[[], bytes]) -> bytes:
        """The download's bytes: kept ones when this key was rendered before, else ``render()`` (then kept).

        ``scope`` names the database (one process may serve several in tests); ``rollup_key``
        is ``RollupService.key(cycle)``: an empty key is never kept.
        """
        if not rollup_key:
            return render()
        key = (scope, cycle, rollup_key, kind)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        data = render()
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data


RENDERED = RenderedDownloads()


# -- JSON --------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_bytes(obj: Any) -> bytes:
    """Any roll-up structure as UTF-8 JSON; decimals as strings ("12345.67"), never floats."""
    return json.dumps(obj, default=_json_default, ensure_ascii=False, indent=2).encode("utf-8")


def rollup_json(rollup: Rollup) -> bytes:
    """The roll-up as UTF-8 JSON; decimals as strings ("12345.67"), never floats."""
    return json_bytes(rollup.as_dict())


# -- CSV ---------------------------------------------------------------------------------------
def rollup_csv(rollup: Rollup, breakdown: str) -> bytes:
    """One breakdown as CSV: UTF-8 with BOM (Excel then reads the Chinese right), CRLF, bilingual header."""
    cols, rows = table(rollup, breakdown)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([f"{title(c)[0]} {title(c)[1]}" for c in cols])
    for r in rows:
        writer.writerow([_text(r.get(c)) for c in cols])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


# -- XLSX --------------------------------------------------------------------------------------
_HEAD_FONT = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="D9E1F2")
_SUB_FONT = Font(italic=True, color="595959")
_THIN = Side(style="thin", color="A6A6A6")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


def _width(value: Any) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in _text(value))


def _cell_value(value: Any) -> Any:
    """What goes into a cell: numbers stay numbers, lists become text."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return value


def _put(ws: Worksheet, row: int, column: int, value: Any) -> Any:
    """Write a cell; a Decimal is written as its own digits, a number cell Excel reads exactly.

    openpyxl writes every number with ``"%.16g" % value``, which goes through a binary float:
    69909524.24 would reach the file as 69909524.23999999. The cell is given the decimal's
    text and marked numeric, so the file holds exactly the digits of the figure.
    """
    cell = ws.cell(row=row, column=column, value=_cell_value(value))
    if isinstance(value, Decimal) and value.is_finite():
        cell._value = format(value, "f")
        cell.data_type = "n"
    return cell


def _format_for(key: str, value: Any) -> str | None:
    if not isinstance(value, (int, Decimal)) or isinstance(value, bool):
        return None
    if _is_money(key):
        return MONEY_FORMAT
    if key.endswith("_pct"):
        return PCT_FORMAT
    if key in ("delivery_id", "version", "versions", "resend") or key.endswith("_id"):
        return None  # identifiers read better without thousands separators
    return COUNT_FORMAT


def _sheet_name(breakdown: str) -> str:
    zh, en = BREAKDOWN_TITLES[breakdown]
    return f"{zh} {en}"


def _header(ws: Worksheet, cols: Sequence[str], titles: Sequence[tuple[str, str]] | None = None) -> None:
    """Two header rows (Chinese, then English), frozen above the data."""
    titles = titles or [title(c) for c in cols]
    for i, (zh, en) in enumerate(titles, start=1):
        top = ws.cell(row=1, column=i, value=zh)
        top.font, top.fill, top.border = _HEAD_FONT, _HEAD_FILL, _BOX
        top.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        sub = ws.cell(row=2, column=i, value=en)
        sub.font, sub.fill, sub.border = _SUB_FONT, _HEAD_FILL, _BOX
        sub.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    ws.freeze_panes = "A3"


def _fit(ws: Worksheet, widths: Mapping[int, int]) -> None:
    for col, w in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = min(max(w + 2, 8), 60)


def _write_table(ws: Worksheet, cols: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header and the rows, numbers formatted by their kind, widths fitted to the content."""
    _header(ws, cols)
    widths = {i: max(_width(title(c)[0]), min(_width(title(c)[1]), 24)) for i, c in enumerate(cols, start=1)}
    r = 2
    for r, row in enumerate(rows, start=3):
        for i, c in enumerate(cols, start=1):
            raw = row.get(c)
            if c == "value" and "key" in row:
                fmt = _format_for(str(row["key"]), raw)  # the totals sheet: the format follows the measure
            else:
                fmt = _format_for(c, raw)
            cell = _put(ws, r, i, raw)
            if fmt:
                cell.number_format = fmt
            widths[i] = max(widths[i], _width(raw) + (4 if fmt == MONEY_FORMAT else 0))
    if cols and r >= 3:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(cols))}{r}"
    _fit(ws, widths)


def _completeness_sheet(ws: Worksheet, rollup: Rollup) -> None:
    """Provinces x units, one coloured cell per state, then the counts and the reporting rate."""
    comp = rollup.completeness
    units = list(comp.get("units", []))
    _header(ws, [], [title("prov_id"), ("省份", "Province"), ("Province", "(English)"),
                     *[(f"单元 {u}", f"Unit {u}") for u in units], title("exception_until")])
    widths = {1: 10, 2: 12, 3: 16, **{i: 18 for i in range(4, 5 + len(units))}}
    r = 2
    for r, p in enumerate(comp.get("matrix", []), start=3):
        ws.cell(row=r, column=1, value=p["prov_id"])
        ws.cell(row=r, column=2, value=p["name_zh"])
        ws.cell(row=r, column=3, value=p["name_en"])
        widths[3] = max(widths[3], _width(p["name_en"]))
        for i, u in enumerate(units, start=4):
            c = p["units"].get(u, {"state": "missing"})
            zh, colour = STATES.get(c["state"], (c["state"], "FFFFFF"))
            text = f"{zh} {c['state']}"
            for src in c.get("sources", []):
                text += f" #{src['delivery_id']} v{src['version']}" + (f" ({src['party']})" if src["party"] != p["prov_id"]
                                                                          else "")
            if c["state"] == "received":
                text += f" #{c['delivery_id']} {c.get('delivery_status', '')}"
            cell = ws.cell(row=r, column=i, value=text)
            cell.fill = PatternFill("solid", fgColor=colour)
            cell.border = _BOX
            widths[i] = max(widths[i], _width(text))
        exc = p.get("exception")
        if exc and exc.get("valid"):
            ws.cell(row=r, column=4 + len(units), value=f"{exc['until_beijing']} {exc.get('reason', '')}")
    r += 2
    for key in ("cycle_state", "deadline_beijing"):
        zh, en = title(key)
        ws.cell(row=r, column=2, value=zh).font = _HEAD_FONT
        ws.cell(row=r, column=3, value=en)
        ws.cell(row=r, column=4, value=comp.get(key))
        r += 1
    for key in ("expected", "accepted", "late", "received_not_accepted", "missing", "reporting_rate_pct"):
        zh, en = title(key)
        ws.cell(row=r, column=2, value=zh).font = _HEAD_FONT
        ws.cell(row=r, column=3, value=en)
        cell = _put(ws, r, 4, comp.get("received" if key == "received_not_accepted" else key))
        cell.number_format = PCT_FORMAT if key.endswith("_pct") else COUNT_FORMAT
        r += 1
    r += 1
    ws.cell(row=r, column=2, value="图例").font = _HEAD_FONT
    ws.cell(row=r, column=3, value="Legend")
    for i, (state, (zh, colour)) in enumerate(STATES.items(), start=4):
        cell = ws.cell(row=r, column=i, value=f"{zh} {state}")
        cell.fill = PatternFill("solid", fgColor=colour)
    _fit(ws, widths)


def rollup_xlsx(rollup: Rollup) -> bytes:
    """The roll-up as a formatted workbook: totals first, a sheet per breakdown, completeness and lineage."""
    wb = Workbook()
    ws = wb.active
    ws.title = _sheet_name("totals")  # first sheet: what a converter or a quick look shows
    _write_table(ws, *table(rollup, "totals"))
    for b in Rollup.BREAKDOWNS:
        _write_table(wb.create_sheet(_sheet_name(b)), *table(rollup, b))
    _completeness_sheet(wb.create_sheet(_sheet_name("completeness")), rollup)
    _write_table(wb.create_sheet(_sheet_name("lineage")), *table(rollup, "lineage"))
    wb.properties.title = f"大客户数据汇总 Key-account roll-up {rollup.cycle}"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# -- XML ---------------------------------------------------------------------------------------
def _el(parent: etree._Element, ns: str, tag: str, text: Any = None, **attrs: Any) -> etree._Element:
    e = etree.SubElement(parent, f"{{{ns}}}{tag}", {k: _text(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = _text(text)
    return e


def _fields(parent: etree._Element, ns: str, row: Mapping[str, Any]) -> None:
    """A row's keys as child elements; None is left out, lists become repeated ``item`` children."""
    for k, v in row.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            holder = _el(parent, ns, k)
            for item in v:
                _el(holder, ns, "item", item)
        else:
            _el(parent, ns, k, v)


def rollup_xml(rollup: Rollup, namespace: str) -> bytes:
    """The roll-up as XML in the spec's namespace: totals, one element per breakdown, completeness, lineage."""
    ns = namespace
    root = etree.Element(f"{{{ns}}}Rollup", {"cycle": rollup.cycle}, nsmap={None: ns})
    _fields(_el(root, ns, "Totals"), ns, rollup.totals)
    for b in Rollup.BREAKDOWNS:
        holder = _el(root, ns, "Breakdown", name=b, rows=len(getattr(rollup, b)))
        for row in getattr(rollup, b):
            _fields(_el(holder, ns, "Row"), ns, row)
    comp = rollup.completeness
    ce = _el(root, ns, "Completeness", **{k: comp.get(k) for k in ("expected", "accepted", "late", "received",
                                                                   "missing", "reporting_rate_pct")},
             units=" ".join(comp.get("units", [])))
    for p in comp.get("matrix", []):
        pe = _el(ce, ns, "Province", prov_id=p["prov_id"], name_zh=p["name_zh"], name_en=p["name_en"])
        for unit, cell in p["units"].items():
            ue = _el(pe, ns, "Unit", code=unit, **{k: v for k, v in cell.items() if k != "sources"})
            for src in cell.get("sources", []):
                _el(ue, ns, "Source", **src)
    le = _el(root, ns, "Lineage", sources=len(rollup.lineage))
    for src in rollup.lineage:
        _el(le, ns, "Source", **{k: v for k, v in src.items() if k != "networks"}, networks=" ".join(src["networks"]))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
