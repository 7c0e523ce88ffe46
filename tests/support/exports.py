"""Realistic province CRM exports, as Hubei's IT gets them out of its own systems.

Built from the project's sample-data model (``exchange_server.sample_data``), so the data
is valid against the standard, then dressed as CRMs print it: codes replaced by the code
lists' names (本地网 = "武汉", 行业类别 = "钢铁冶金", 付费方式 = "银行托收", flags 是/否),
CRM column headers (客户编码, 客户名称, 本地网 ...), dates as 2015-03-01, money as
"1,060,103.91"; three GB18030 CSVs and one XLSX monthly report whose sheets have a title
row, a unit row (单位：元 or 单位：万元), headers on row 3 and a 合计 row at the end.

``write_realistic_exports`` writes them and returns a :class:`RealisticExports` that knows
the rows behind them, where each row landed (file, sheet, Excel row) and the agent
configuration that reads them — column headers only, no translation table.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from exchange_server.sample_data.generator import (SampleModel, contact_rows, customer_info_row, product_rows,
                                                   summary_rows)
from schemas.conventions import Cycle
from schemas.spec.model import Field, Spec

CYCLE = "202610"
PROVINCE = "42"
TITLE_ROWS = 2  # the title and the unit row above each sheet's header (header_row = 3)

# How Hubei's CRM heads its columns (field -> header); the template's defaults are not used.
HEADERS: dict[str, dict[str, str]] = {
    "VIP_CUST_INFO": {
        "NATIONAL_CUST_ID": "客户编码", "PROV_CUST_ID": "CRM客户号", "CUST_NAME": "客户名称", "LATN_ID": "本地网",
        "C_TYPE_ID": "行业类别", "LEVEL_ID": "客户级别", "C_STS_ID": "客户状态", "IS_IMPORTANT": "重要客户",
        "IS_HIGH_VALUE": "高值客户", "IS_GROUP": "集团客户", "IS_STRATEGIC": "战略客户", "CERT_TYPE": "证件类型",
        "CERT_NO": "证件号码", "ADDRESS": "地址", "POSTCODE": "邮编", "PAY_METH": "付费方式",
        "CREDIT_GRADE": "信用等级", "BANK_ID": "开户银行", "BANK_ACCT": "银行账号", "MANAGER_ID": "客户经理工号",
        "MANAGER_NAME": "客户经理", "MANAGER_PHONE": "客户经理电话", "JOIN_DATE": "入网日期"},
    "VIP_CUST_CONTACT": {
        "NATIONAL_CUST_ID": "客户编码", "CONTACT_SEQ": "序号", "CONTACT_NAME": "联系人", "CONTACT_ROLE": "角色",
        "TITLE": "职务", "PHONE": "固话", "MOBILE": "手机", "EMAIL": "邮箱", "IS_PRIMARY": "主联系人",
        "CONTACT_STS_ID": "状态"},
    "VIP_CUST_PROD": {
        "NATIONAL_CUST_ID": "客户编码", "LATN_ID": "本地网", "PROD_ID": "产品名称", "SERV_CNT": "数量",
        "BANDWIDTH_MBPS": "带宽(M)", "SERV_STS_ID": "状态", "INCOME_AMT": "收入(元)"},
    "VIP_SUMMARY": {
        "LATN_ID": "本地网", "CUST_CNT": "期末客户数", "CUST_CNT_GROUP": "集团级", "CUST_CNT_PROV": "省级",
        "CUST_CNT_LA": "本地A", "CUST_CNT_LB": "本地B", "CUST_CNT_LC": "本地C", "LAST_CUST_CNT": "期初客户数",
        "NEW_CUST_CNT": "新增", "LOST_CUST_CNT": "流失", "TOP500_CUST_CNT": "500强", "MANAGER_CNT": "客户经理数",
        "INCOME_AMT": "本月收入", "INCOME_YTD_AMT": "本年累计", "INCOME_LY_AMT": "上年同期"},
    "VIP_SERV_SUM": {
        "LATN_ID": "本地网", "PROD_ID": "产品", "LAST_SERV_CNT": "期初", "NEW_SERV_CNT": "新增",
        "CANCEL_SERV_CNT": "拆机", "SERV_CNT": "期末", "SERV_CNT_LY": "上年同期", "CUST_CNT": "客户数",
        "BANDWIDTH_MBPS": "带宽(M)"},
    "VIP_INCOME_SUM": {
        "LATN_ID": "本地网", "ACCT_ITEM_TYPE_ID": "收入科目", "INCOME_AMT": "本月收入", "INCOME_YTD_AMT": "本年累计",
        "INCOME_LY_AMT": "上年同期", "INCOME_LY_YTD_AMT": "上年累计"},
}
# Where each unit comes from: (file, sheet) — CSVs have no sheet.
SOURCES: dict[str, tuple[str, str | None]] = {
    "VIP_CUST_INFO": (f"客户资料_{CYCLE}.csv", None),
    "VIP_CUST_CONTACT": (f"联系人_{CYCLE}.csv", None),
    "VIP_CUST_PROD": (f"产品收入_{CYCLE}.csv", None),
    "VIP_SUMMARY": (f"月报_{CYCLE}.xlsx", "总体情况"),
    "VIP_SERV_SUM": (f"月报_{CYCLE}.xlsx", "业务发展"),
    "VIP_INCOME_SUM": (f"月报_{CYCLE}.xlsx", "业务收入"),
}
WAN_YUAN_SHEET = "业务收入"  # this sheet counts money in 万元


@dataclass
class RealisticExports:
    """The exports written, the valid rows behind them, and where each row is."""

    spec: Spec
    root: Path  # export_dir
    rows: dict[str, list[dict[str, Any]]]
    # unit -> the export row (CSV physical line / Excel row) of each data row, in order
    export_rows: dict[str, list[int]] = field(default_factory=dict)

    def path(self, unit: str) -> Path:
        """The export file a unit is read from."""
        return self.root / SOURCES[unit][0]

    def units_toml(self) -> list[str]:
        """The [units.*] tables a province writes for these exports: headers, sources, constants; no codes."""
        lines: list[str] = []
        for unit, (name, sheet) in SOURCES.items():
            lines.append(f"[units.{unit}]")
            lines.append(f"source = {json.dumps(name.replace(CYCLE, '{cycle}'), ensure_ascii=False)}")
            if sheet is None:
                lines.append('encoding = "GB18030"')
            else:
                lines.append(f"sheet = {json.dumps(sheet, ensure_ascii=False)}")
                lines.append(f"header_row = {TITLE_ROWS + 1}")
            if sheet == WAN_YUAN_SHEET:
                lines.append('amount_unit = "万元"')
            const = ['CYCLE_ID = "{cycle}"']
            if self.spec.unit(unit).has_field("PROV_ID"):
                const.append('PROV_ID = "{party}"')
            lines.append(f"constants = {{ {', '.join(const)} }}")
            lines.append(f"[units.{unit}.columns]")
            lines += [f"{fid} = {json.dumps(h, ensure_ascii=False)}" for fid, h in HEADERS[unit].items()]
        return lines

    def write_config(self, home: Path, party: str = PROVINCE, fmt: str = "txt", encoding: str = "GB18030",
                     extra: list[str] | None = None) -> Path:
        """agent.toml for these exports (export_dir = the exports' folder)."""
        lines = ["[agent]", f'party = "{party}"', 'state_dir = "state"',
                 f"export_dir = {json.dumps(str(self.root), ensure_ascii=False)}", "",
                 "[server]", 'url = "http://127.0.0.1:9"', "",
                 "[output]", f'format = "{fmt}"', f'encoding = "{encoding}"', 'delimiter = "PIPE"', "",
                 *self.units_toml(), "", *(extra or [])]
        home.mkdir(parents=True, exist_ok=True)
        path = home / "agent.toml"
        path.write_text("\n".join(lines) + "\n", "utf-8")
        return path


def _names(spec: Spec, day: dt.date) -> Any:
    def name(fld: Field, code: str | None, short: bool = False) -> str:
        if code is None or code == "":
            return ""
        entry = spec.domain(fld.domain or "").version_on(day).codes[code]
        text = entry.name_zh
        return text.removesuffix("本地网") if short else text
    return name


def _shown(spec: Spec, unit: str, fid: str, value: Any, day: dt.date, wan: bool = False) -> Any:
    """A value as the CRM prints it (text for CSVs; numbers stay numbers for the XLSX)."""
    fld = spec.unit(unit).field(fid)
    name = _names(spec, day)
    if value is None:
        return None
    if fld.type == "code" and fld.domain and spec.domain(fld.domain).kind == "enumerated":
        if fid == "LATN_ID":
            # the CRMs print networks three ways: 武汉, 武汉本地网 and (billing) the code itself
            return {"VIP_SERV_SUM": name(fld, value), "VIP_INCOME_SUM": value}.get(unit, name(fld, value, True))
        return name(fld, value)
    if fld.type == "date":
        d = value if isinstance(value, dt.date) else dt.datetime.strptime(str(value), "%Y%m%d").date()
        return d.strftime("%Y-%m-%d")
    if fld.type == "decimal":
        amount = Decimal(value)
        return float(amount / 10000) if wan else amount
    return value


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", encoding="gb18030", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else (f"{v:,.2f}" if isinstance(v, Decimal) else v) for v in r])


def write_realistic_exports(spec: Spec, root: Path, cycle: str = CYCLE, province: str = PROVINCE
                            ) -> RealisticExports:
    """Hubei's four export files for ``cycle`` under ``root``, from the sample-data model."""
    cyc = Cycle.parse(cycle)
    day = cyc.begin
    model = SampleModel(spec)
    rows: dict[str, list[dict[str, Any]]] = {u: [] for u in SOURCES}
    for c in model.customers(province, day):
        rows["VIP_CUST_INFO"].append(customer_info_row(model, c, cyc))
        rows["VIP_CUST_CONTACT"].extend(contact_rows(model, c, cyc))
        rows["VIP_CUST_PROD"].extend(product_rows(model, c, cyc))
    top500: dict[str, int] = {}
    for c in model.customers(province, day):
        for net in {n.code for _, n, _, _ in c.products}:
            top500[net] = top500.get(net, 0) + 1
    for s, sv, ic in summary_rows(model, province, cyc, top500):
        rows["VIP_SUMMARY"].append(s)
        rows["VIP_SERV_SUM"].extend(sv)
        rows["VIP_INCOME_SUM"].extend(ic)

    root.mkdir(parents=True, exist_ok=True)
    out = RealisticExports(spec, root, rows)
    wb = Workbook()
    notes = wb.active
    notes.title = "说明"
    notes.append([f"湖北电信大客户月报 {cyc.begin:%Y年%m月}，由经营分析系统导出"])
    for unit, (name, sheet) in SOURCES.items():
        fids = list(HEADERS[unit])
        header = [HEADERS[unit][f] for f in fids]
        wan = sheet == WAN_YUAN_SHEET
        cells = [[_shown(spec, unit, f, r.get(f), day, wan) for f in fids] for r in rows[unit]]
        if sheet is None:
            _csv(root / name, header, cells)
            out.export_rows[unit] = list(range(2, 2 + len(cells)))
            continue
        ws = wb.create_sheet(sheet)
        ws.append([f"{sheet}（{cyc.begin:%Y年%m月}）"])
        ws.append(["单位：万元" if wan else "单位：元"])
        ws.append(header)
        for r in cells:
            ws.append([float(v) if isinstance(v, Decimal) else v for v in r])
        first = TITLE_ROWS + 2
        out.export_rows[unit] = list(range(first, first + len(cells)))
        total: list[Any] = ["合计", ""] if fids[1] != "CUST_CNT" else ["合计"]
        for f in fids[len(total):]:
            vals = [r[fids.index(f)] for r in cells]
            nums = [v for v in vals if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)]
            total.append(float(sum(Decimal(str(v)) for v in nums)) if nums else None)
        ws.append(total)
    wb.save(root / SOURCES["VIP_SUMMARY"][0])
    return out
