"""Realistic province exports build without translation tables, and every problem names the export's cell.

The exports come from ``tests.support.exports``: GB18030 CSVs with CRM headers and names
instead of codes, and an XLSX monthly report with title, unit (元 / 万元) and 合计 rows —
made from the sample-data model, so the data itself is valid. Real files, no mocks.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from province_agent._exceptions import BuildError, ConfigError
from province_agent.codes import AmbiguousName, CodeNames, short_form
from province_agent.config import load_config
from province_agent.mapping import ExportDataError, build_delivery, normalize
from province_agent.provenance import SourceCell, SourceMap, enrich_finding, sources_path
from schemas import Spec
from schemas.validation import validate_delivery
from schemas.writer import DeliveryWriter
from tests.agent.test_mapping import read_delivery
from tests.support.exports import CYCLE, HEADERS, SOURCES, RealisticExports, write_realistic_exports

# The configuration lines the exports above need (docs/agent.md, "Mapping the exports"): per unit
# its table header, source, encoding or sheet + header_row, constants, the columns header and one
# line per column; the 万元 sheet one more. No translation entry at all.
CONFIG_LINES = 104


@pytest.fixture
def exports(spec: Spec, tmp_path: Path) -> RealisticExports:
    return write_realistic_exports(spec, tmp_path / "exports")


def build(exports: RealisticExports, home: Path, party: str = "42", fmt: str = "txt",
          extra: list[str] | None = None) -> Path:
    """Build the delivery of the exports into home/out/<name>; return the delivery directory."""
    config = load_config(exports.write_config(home, party=party, fmt=fmt, extra=extra))
    out = home / "out" / f"P_{party}_{CYCLE}_00"
    build_delivery(config, exports.spec, CYCLE, 0, out)
    return out


def reference(exports: RealisticExports, home: Path) -> Path:
    """The delivery the sample-data model's rows make when written directly."""
    w = DeliveryWriter(exports.spec, home / "reference", "P", "42", CYCLE, encoding="GB18030")
    for unit, rows in exports.rows.items():
        with w.unit(unit) as u:
            for r in rows:
                u.write(r)
    w.close()
    return home / "reference"


def edit_csv(path: Path, row: int, header: str, value: str) -> None:
    """Set one cell of a GB18030 CSV export (row = its line, 1 = the header)."""
    lines = path.read_bytes().decode("gb18030").split("\r\n")
    import csv
    import io

    head = next(csv.reader([lines[0]]))
    cells = next(csv.reader([lines[row - 1]]))
    cells[head.index(header)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    lines[row - 1] = buf.getvalue()
    path.write_bytes("\r\n".join(lines).encode("gb18030"))


def edit_xlsx(path: Path, sheet: str, cell: str, value: Any) -> None:
    wb = load_workbook(path)
    wb[sheet][cell] = value
    wb.save(path)


def column_of(unit: str, field: str) -> str:
    from province_agent.provenance import column_letter

    return column_letter(list(HEADERS[unit]).index(field))


# -- no translation table -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["txt", "xml"])
def test_realistic_exports_build_and_validate_clean_with_no_translation_table(
        spec: Spec, exports: RealisticExports, tmp_path: Path, fmt: str) -> None:
    toml = "\n".join(exports.units_toml())
    assert ".values" not in toml and "[codes" not in toml
    out = build(exports, tmp_path, fmt=fmt)
    report = validate_delivery(sorted(out.iterdir()), spec)
    assert report.status == "accepted", [(f.code, f.file, f.line, f.field, f.value) for f in report.findings]
    # the names became the very codes the model started from; 万元 became exact yuan; 合计 rows left out
    assert read_delivery(spec, out) == read_delivery(spec, reference(exports, tmp_path))


def test_the_configuration_lines_the_realistic_exports_need(exports: RealisticExports) -> None:
    lines = [ln for ln in exports.units_toml() if ln.strip() and not ln.lstrip().startswith("#")]
    column_lines = sum(len(h) for h in HEADERS.values())
    assert len(lines) == CONFIG_LINES == column_lines + 34  # 34: 6 × (table, source, constants, [columns]), 3 encodings, 3 × (sheet, header_row), 万元
    assert column_lines == 70


# -- the source map ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["txt", "xml"])
def test_every_built_line_is_traced_to_its_export_row_and_cell(spec: Spec, exports: RealisticExports, tmp_path: Path,
                                                               fmt: str) -> None:
    out = build(exports, tmp_path, fmt=fmt)
    path = sources_path(out)
    assert path.parent == out.parent and path.is_file()  # beside the delivery, never among the files sent
    assert not any("sources" in p.name for p in out.iterdir())
    smap = SourceMap.for_delivery(out)
    assert smap is not None
    # compact: each export read straight through is one run
    runs = [ln for ln in path.read_text("utf-8").splitlines() if '"t":"run"' in ln]
    assert len(runs) == len(SOURCES)
    first = 2 if fmt == "xml" else 0  # an XML file's <ROW>s start on line 3
    for name in smap.files():
        unit = spec.unit(name.split("_")[3]).name
        file_name, sheet = SOURCES[unit]
        for i, export_row in enumerate(exports.export_rows[unit], start=1):
            cell = smap.locate(name, i + first, "LATN_ID" if "LATN_ID" in HEADERS[unit] else None)
            assert cell is not None and (cell.export, cell.sheet, cell.row) == (file_name, sheet, export_row)
            if "LATN_ID" in HEADERS[unit]:
                assert cell.column == "本地网" and cell.cell == f"{column_of(unit, 'LATN_ID')}{export_row}"
        assert smap.locate(name, len(exports.export_rows[unit]) + first + 1) is None
    # constants have no cell
    info = next(n for n in smap.files() if "_31201_" in n)
    assert smap.locate(info, 1 + first, "CYCLE_ID") == SourceCell(SOURCES["VIP_CUST_INFO"][0], None, 2, None, None)
    summary = next(n for n in smap.files() if "_32001_" in n)
    assert smap.locate(summary, 1 + first, "CUST_CNT").describe() == (  # type: ignore[union-attr]
        "月报_202610.xlsx 工作表 总体情况 第4行 期末客户数列 (B4) / 月报_202610.xlsx sheet 总体情况 row 4, "
        "column 期末客户数 (B4)")


def test_no_map_for_a_delivery_not_built_here(tmp_path: Path) -> None:
    assert SourceMap.for_delivery(tmp_path / "nothing") is None
    bad = tmp_path / "x"
    sources_path(bad).write_text("not json\n", "utf-8")
    assert SourceMap.for_delivery(bad) is None


# -- each kind of mistake, all at once, in the export's terms ----------------------------------------
def test_each_kind_of_mistake_names_export_sheet_row_column_and_cell(spec: Spec, exports: RealisticExports,
                                                                     tmp_path: Path) -> None:
    edit_csv(exports.path("VIP_CUST_INFO"), 4, "入网日期", "2015-13-45")  # bad date
    edit_csv(exports.path("VIP_CUST_PROD"), 3, "收入(元)", "12,3456.70")  # badly grouped amount
    book = exports.path("VIP_SUMMARY")
    edit_xlsx(book, "总体情况", "B5", "三十")  # a word in a number column
    edit_xlsx(book, "业务收入", "C6", "1,23.5")  # badly grouped, in a sheet counted in 万元
    with pytest.raises(ExportDataError) as err:
        build(exports, tmp_path)
    exc = err.value
    assert exc.exit_code == 1 and isinstance(exc, BuildError)  # a data problem, not the configuration
    got = {(p.source.export, p.source.sheet, p.source.row, p.source.column, p.source.cell, p.field)
           for p in exc.problems}
    assert got == {
        ("客户资料_202610.csv", None, 4, "入网日期", f"{column_of('VIP_CUST_INFO', 'JOIN_DATE')}4", "JOIN_DATE"),
        ("产品收入_202610.csv", None, 3, "收入(元)", f"{column_of('VIP_CUST_PROD', 'INCOME_AMT')}3", "INCOME_AMT"),
        ("月报_202610.xlsx", "总体情况", 5, "期末客户数", "B5", "CUST_CNT"),
        ("月报_202610.xlsx", "业务收入", 6, "本月收入", "C6", "INCOME_AMT"),
    }
    by_field = {(p.source.export, p.field): p for p in exc.problems}
    date = by_field[("客户资料_202610.csv", "JOIN_DATE")]
    assert (date.data_file, date.data_line) == (f"P_42_{CYCLE}_31201_00_001.txt", 3)  # the line it would have had
    grouped = by_field[("产品收入_202610.csv", "INCOME_AMT")]
    assert "'12,3456.70' has a separator in the wrong place" in grouped.message_en
    text = exc.report()
    assert text.startswith("导出文件中有 4 个值无法转换 / 4 value(s) in the exports cannot be mapped")
    assert "月报_202610.xlsx 工作表 总体情况 第5行 期末客户数列 (B5)：CUST_CNT 的值“三十”不可用，应为整数" in text
    assert "月报_202610.xlsx sheet 总体情况 row 5, column 期末客户数 (B5): value '三十' for CUST_CNT" in text
    assert f"[P_42_{CYCLE}_32001_00_001.txt:2]" in text
    # nothing is left behind: no data file, no map
    assert not list((tmp_path / "out").rglob("*.*"))


def test_an_unknown_name_comes_back_from_validation_in_the_exports_terms_with_a_suggestion(
        spec: Spec, exports: RealisticExports, tmp_path: Path) -> None:
    edit_csv(exports.path("VIP_CUST_INFO"), 3, "行业类别", "钢铁冶炼")
    edit_csv(exports.path("VIP_CUST_PROD"), 5, "本地网", "大武汉")
    out = build(exports, tmp_path)  # names the list does not know pass on: the validator judges them (E307)
    report = validate_delivery(sorted(out.iterdir()), spec)
    smap = SourceMap.for_delivery(out)
    e307 = [enrich_finding(f, smap, spec) for f in report.findings if f.code == "E307"]
    assert len(e307) == 2, [(f.code, f.field, f.value) for f in report.findings]
    industry = next(f for f in e307 if f.field == "C_TYPE_ID")
    col = column_of("VIP_CUST_INFO", "C_TYPE_ID")
    assert f"(from 客户资料_202610.csv row 3, column 行业类别 ({col}3))" in industry.message_en
    assert f"（来源：客户资料_202610.csv 第3行 行业类别列 ({col}3)）" in industry.message_zh
    assert "did you mean 1401 钢铁冶金" in industry.message_en and "是否应为 1401 钢铁冶金" in industry.message_zh
    network = next(f for f in e307 if f.field == "LATN_ID")
    assert "产品收入_202610.csv row 5, column 本地网" in network.message_en
    assert "did you mean 027 武汉本地网?" in network.message_en
    # enriching twice adds nothing; a finding about no line is left alone
    assert enrich_finding(industry, smap, spec) == industry
    nowhere = dataclasses.replace(industry, file=None, line=None, code="X-007")
    assert enrich_finding(nowhere, smap, spec) == nowhere


# -- names -> codes ------------------------------------------------------------------------------------
def _names(spec: Spec, unit: str, field: str) -> CodeNames:
    names = CodeNames.for_field(spec, spec.unit(unit).field(field), dt.date(2026, 10, 1))
    assert names is not None
    return names


@pytest.mark.parametrize("unit,field,value,code", [
    ("VIP_SUMMARY", "LATN_ID", "武汉", "027"), ("VIP_SUMMARY", "LATN_ID", "武汉本地网", "027"),
    ("VIP_SUMMARY", "LATN_ID", "武汉市", "027"), ("VIP_SUMMARY", "LATN_ID", "Wuhan", "027"),
    ("VIP_SUMMARY", "LATN_ID", "ＷＵＨＡＮ", "027"), ("VIP_SUMMARY", "LATN_ID", "武汉分公司", "027"),
    ("VIP_SUMMARY", "LATN_ID", "0714", "0714"), ("VIP_SUMMARY", "PROV_ID", "湖北省", "42"),
    ("VIP_SUMMARY", "PROV_ID", "湖北", "42"), ("VIP_CUST_INFO", "IS_GROUP", "是", "Y"),
    ("VIP_CUST_INFO", "IS_GROUP", "否", "N"), ("VIP_CUST_INFO", "IS_GROUP", "yes", "Y"),
    ("VIP_CUST_INFO", "IS_GROUP", "FALSE", "N"), ("VIP_CUST_INFO", "PAY_METH", "银行托收", "03"),
    ("VIP_CUST_INFO", "PAY_METH", "bank collection", "03"), ("VIP_CUST_INFO", "C_TYPE_ID", "钢铁冶金", "1401"),
    ("VIP_CUST_INFO", "LEVEL_ID", "省级", "2"), ("VIP_CUST_INFO", "PAY_METH", "刷脸", "刷脸"),
])
def test_names_and_short_forms_become_codes(spec: Spec, unit: str, field: str, value: str, code: str) -> None:
    assert _names(spec, unit, field).resolve(value) == code


def test_short_forms_are_derived_not_listed() -> None:
    assert [short_form(n) for n in ("武汉本地网", "湖北省", "宜昌市分公司", "广西壮族自治区", "市", "Bank  Collection")] == [
        "武汉", "湖北", "宜昌", "广西壮族", "市", "bankcollection"]


def test_a_name_of_two_codes_is_refused_naming_both(spec: Spec) -> None:
    names = _names(spec, "VIP_SUMMARY", "LATN_ID")
    twice = dataclasses.replace(names, short={**names.short, "江城": ("027", "0714")})
    with pytest.raises(AmbiguousName) as err:
        twice.resolve("江城")
    assert "027 武汉本地网, 0714 黄石本地网" in str(err.value) and "同时对应" in err.value.zh


def test_the_provinces_table_is_asked_before_the_lists_names(spec: Spec, exports: RealisticExports,
                                                              tmp_path: Path) -> None:
    edit_csv(exports.path("VIP_CUST_INFO"), 2, "本地网", "黄石")
    out = build(exports, tmp_path, extra=["[codes.Domain_area_id]", '"黄石" = "027"'])
    assert read_delivery(spec, out)["VIP_CUST_INFO"][0]["LATN_ID"] == "027"


def test_a_code_table_written_once_serves_every_unit_and_field(spec: Spec, exports: RealisticExports,
                                                               tmp_path: Path) -> None:
    edit_csv(exports.path("VIP_CUST_INFO"), 2, "本地网", "江城")
    edit_csv(exports.path("VIP_CUST_INFO"), 2, "行业类别", "冶金")
    edit_csv(exports.path("VIP_CUST_PROD"), 2, "本地网", "江城")
    edit_xlsx(exports.path("VIP_SUMMARY"), "总体情况", "A4", "江城")
    extra = ["[codes.Domain_area_id]", '"江城" = "027"', "[codes.Domain_c_type_id]", '"冶金" = "1401"']
    out = build(exports, tmp_path, extra=extra)
    built = read_delivery(spec, out)
    assert built["VIP_CUST_INFO"][0]["LATN_ID"] == "027" and built["VIP_CUST_INFO"][0]["C_TYPE_ID"] == "1401"
    assert built["VIP_CUST_PROD"][0]["LATN_ID"] == "027" and built["VIP_SUMMARY"][0]["LATN_ID"] == "027"
    with pytest.raises(ConfigError) as err:
        build(exports, tmp_path / "bad", extra=["[codes.Domain_area_id]", '"江城" = "0270"'])
    assert err.value.key == "codes.Domain_area_id.江城" and "not a code of Domain_area_id" in str(err.value)
    with pytest.raises(ConfigError, match="no code list 'Domain_industry'"):
        build(exports, tmp_path / "bad2", extra=["[codes.Domain_industry]", '"冶金" = "1401"'])


def test_values_strict_reports_every_bad_value_at_once_in_both_languages(
        spec: Spec, exports: RealisticExports, tmp_path: Path) -> None:
    edit_csv(exports.path("VIP_CUST_INFO"), 2, "付费方式", "刷卡")
    edit_csv(exports.path("VIP_CUST_INFO"), 5, "付费方式", "银行代收")
    edit_csv(exports.path("VIP_CUST_INFO"), 6, "信用等级", "极好")
    edit_csv(exports.path("VIP_CUST_INFO"), 7, "付费方式", "刷卡")  # the same bad value again: reported again
    config = exports.write_config(tmp_path)
    text = config.read_text("utf-8").replace('[units.VIP_CUST_INFO]\n', '[units.VIP_CUST_INFO]\nvalues_strict = true\n')
    config.write_text(text, "utf-8")
    with pytest.raises(ExportDataError) as err:
        build_delivery(load_config(config), spec, CYCLE, 0, tmp_path / "out" / "d")
    problems = err.value.problems
    assert [(p.source.row, p.field, p.value) for p in problems] == [
        (2, "PAY_METH", "刷卡"), (5, "PAY_METH", "银行代收"), (6, "CREDIT_GRADE", "极好"), (7, "PAY_METH", "刷卡")]
    assert err.value.exit_code == 1
    assert "a code of Domain_pay_meth or one of its names (values_strict = true)" in problems[0].message_en
    assert "Domain_pay_meth 中的代码或其名称" in problems[0].message_zh
    assert "did you mean" in problems[1].message_en and "银行" in problems[1].message_en


# -- spreadsheet layouts -------------------------------------------------------------------------------
def test_total_rows_are_skipped_by_rule_and_the_rule_is_configurable(spec: Spec, exports: RealisticExports,
                                                                    tmp_path: Path) -> None:
    n = len(exports.rows["VIP_SUMMARY"])
    out = build(exports, tmp_path)
    assert len(read_delivery(spec, out)["VIP_SUMMARY"]) == n
    book = exports.path("VIP_SUMMARY")
    ws_rows = n + 3
    edit_xlsx(book, "总体情况", f"A{ws_rows + 1}", "全省合计")  # the total row, worded differently
    edit_xlsx(book, "总体情况", f"A{ws_rows + 2}", "其中：城区")  # a sub-total line
    edit_xlsx(book, "总体情况", f"B{ws_rows + 2}", 1)
    config = exports.write_config(tmp_path / "c")
    text = config.read_text("utf-8").replace('sheet = "总体情况"\n',
                                             'sheet = "总体情况"\nskip_rows_matching = ["合计", "其中"]\n')
    config.write_text(text, "utf-8")
    out2 = tmp_path / "out2" / "d"
    build_delivery(load_config(config), spec, CYCLE, 0, out2)
    assert len(read_delivery(spec, out2)["VIP_SUMMARY"]) == n


def test_a_sheet_that_is_not_there_is_named_with_the_sheets_there_are(spec: Spec, exports: RealisticExports,
                                                                       tmp_path: Path) -> None:
    config = exports.write_config(tmp_path)
    config.write_text(config.read_text("utf-8").replace('sheet = "业务发展"', 'sheet = "业务量"'), "utf-8")
    with pytest.raises(BuildError) as err:
        build_delivery(load_config(config), spec, CYCLE, 0, tmp_path / "out" / "d")
    assert "no sheet '业务量'" in str(err.value) and "'说明', '总体情况', '业务发展', '业务收入'" in str(err.value)
    assert "工作簿中没有工作表“业务量”" in str(err.value)


@pytest.mark.parametrize("value,expected", [
    ("1,060,103.91", "1060103.91"), ("1 060 103.91", "1060103.91"), ("￥1,060,103.91", "1060103.91"),
    ("(1,234.50)", "-1234.50"), ("1060103.91", "1060103.91"), ("999.5", "999.50"),
])
def test_well_grouped_thousands(spec: Spec, value: str, expected: str) -> None:
    assert normalize(spec.unit("VIP_SUMMARY").field("INCOME_AMT"), value) == expected


@pytest.mark.parametrize("field,value", [
    ("INCOME_AMT", "12,3456.70"), ("INCOME_AMT", "1,23.5"), ("INCOME_AMT", "¥10,00.00"), ("INCOME_AMT", "1,0601,03.91"),
    ("CUST_CNT", "1,2345"), ("CUST_CNT", "12,34"),
])
def test_badly_grouped_thousands_are_refused(spec: Spec, field: str, value: str) -> None:
    with pytest.raises(ValueError, match="separator in the wrong place"):
        normalize(spec.unit("VIP_SUMMARY").field(field), value)


def test_amounts_in_wan_yuan_are_multiplied_exactly(spec: Spec, exports: RealisticExports, tmp_path: Path) -> None:
    book = exports.path("VIP_SUMMARY")
    edit_xlsx(book, "业务收入", "C4", "106.010391")  # text
    edit_xlsx(book, "业务收入", "D4", 0.1 + 0.2)  # a float that is not what it shows
    out = build(exports, tmp_path)
    first = read_delivery(spec, out)["VIP_INCOME_SUM"][0]
    assert first["INCOME_AMT"] == Decimal("1060103.91") and first["INCOME_YTD_AMT"] == Decimal("3000.00")
    config = exports.write_config(tmp_path / "c")
    config.write_text(config.read_text("utf-8").replace('amount_unit = "万元"', 'amount_unit = "万"'), "utf-8")
    with pytest.raises(ConfigError) as err:
        build_delivery(load_config(config), spec, CYCLE, 0, tmp_path / "o" / "d")
    assert err.value.key == "units.VIP_INCOME_SUM.amount_unit" and "元, 千元, 万元" in str(err.value)


def test_a_local_network_keeps_only_its_own_rows_of_the_province_export(
        spec: Spec, exports: RealisticExports, tmp_path: Path) -> None:
    config = exports.write_config(tmp_path, party="027")
    text = config.read_text("utf-8").replace('PROV_ID = "{party}"', 'PROV_ID = "42"')
    config.write_text(text, "utf-8")
    cfg = load_config(config)
    out = tmp_path / "out" / "d"
    build_delivery(cfg, spec, CYCLE, 0, out, units=["VIP_SUMMARY", "VIP_SERV_SUM", "VIP_INCOME_SUM", "VIP_CUST_PROD"])
    built = read_delivery(spec, out)
    for unit in ("VIP_SUMMARY", "VIP_SERV_SUM", "VIP_INCOME_SUM", "VIP_CUST_PROD"):
        mine = [r for r in exports.rows[unit] if r["LATN_ID"] == "027"]
        assert mine and len(built[unit]) == len(mine) and {r["LATN_ID"] for r in built[unit]} == {"027"}, unit
    # the kept rows are still traced to their own rows of the province's export
    smap = SourceMap.for_delivery(out)
    assert smap is not None
    serv = next(n for n in smap.files() if "_32002_" in n)
    rows_027 = [x for x, r in zip(exports.export_rows["VIP_SERV_SUM"], exports.rows["VIP_SERV_SUM"])
                if r["LATN_ID"] == "027"]
    assert [smap.locate(serv, i).row for i in range(1, len(rows_027) + 1)] == rows_027  # type: ignore[union-attr]
    # a province's agent, or own_rows_only = false, keeps them all
    text = config.read_text("utf-8").replace('sheet = "总体情况"', 'sheet = "总体情况"\nown_rows_only = false')
    config.write_text(text, "utf-8")
    out2 = tmp_path / "out2" / "d"
    build_delivery(load_config(config), spec, CYCLE, 0, out2, units=["VIP_SUMMARY"])
    assert len(read_delivery(spec, out2)["VIP_SUMMARY"]) == len(exports.rows["VIP_SUMMARY"])


def test_a_local_network_keeps_the_contacts_of_its_own_customers(spec: Spec, exports: RealisticExports,
                                                                  tmp_path: Path) -> None:
    """Contacts carry no LATN_ID: a network keeps those of the customers whose rows it kept."""
    config = exports.write_config(tmp_path, party="027")
    config.write_text(config.read_text("utf-8").replace('PROV_ID = "{party}"', 'PROV_ID = "42"'), "utf-8")
    out = tmp_path / "out" / "d"
    # the contacts' table first in the configuration: the build still reads the customers first
    build_delivery(load_config(config), spec, CYCLE, 0, out, units=["VIP_CUST_CONTACT", "VIP_CUST_INFO"])
    built = read_delivery(spec, out)
    mine = {r["NATIONAL_CUST_ID"] for r in exports.rows["VIP_CUST_INFO"] if r["LATN_ID"] == "027"}
    others = {r["NATIONAL_CUST_ID"] for r in exports.rows["VIP_CUST_INFO"]} - mine
    assert mine and others
    assert {r["NATIONAL_CUST_ID"] for r in built["VIP_CUST_INFO"]} == mine
    wanted = [r for r in exports.rows["VIP_CUST_CONTACT"] if r["NATIONAL_CUST_ID"] in mine]
    assert wanted and len(built["VIP_CUST_CONTACT"]) == len(wanted)
    assert {r["NATIONAL_CUST_ID"] for r in built["VIP_CUST_CONTACT"]} <= mine


@pytest.mark.parametrize("cell,total", [
    ("合计", True), ("合计：", True), ("小计(武汉)", True), ("全省合计", True), (" 合 计 ", True), ("总计", True),
    ("总计算机公司", False), ("小计算器厂", False), ("武汉", False),
])
def test_what_counts_as_a_total_row(spec: Spec, cell: str, total: bool) -> None:
    from province_agent.mapping import UnitMapping

    m = UnitMapping(spec.unit("VIP_SUMMARY"), "x.csv", "csv")
    assert m._is_total(["", cell], frozenset("计")) is total


def test_the_documented_problem_line_is_what_the_agent_prints(spec: Spec, exports: RealisticExports,
                                                             tmp_path: Path) -> None:
    edit_xlsx(exports.path("VIP_SUMMARY"), "总体情况", "B5", "三十")
    with pytest.raises(ExportDataError) as err:
        build(exports, tmp_path)
    [line] = err.value.report().splitlines()[1:]
    doc = (Path(__file__).parents[2] / "docs" / "agent.md").read_text("utf-8")
    assert line in doc


def test_the_map_is_invisible_to_validation_of_the_folder_above(spec: Spec, exports: RealisticExports,
                                                                tmp_path: Path) -> None:
    from schemas.validation.engine import validate_paths

    out = build(exports, tmp_path)
    assert sources_path(out).name == f".{out.name}.sources.jsonl"
    assert validate_paths([out.parent], spec) == []  # nothing there but the delivery's folder (and the map)
    [report] = validate_paths([out.parent, out], spec)
    assert report.status == "accepted", [(f.code, f.file) for f in report.findings]
