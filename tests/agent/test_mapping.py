"""Building deliveries from a province's own CRM exports with the declarative mapping."""
from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import tracemalloc

from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pytest
from lxml import etree
from openpyxl import Workbook

from province_agent._exceptions import BuildError, ConfigError
from province_agent.config import AgentConfig, OutputSettings, load_config
from province_agent.mapping import UnitMapping, build_delivery, normalize
from schemas import Spec
from schemas.conventions import CheckFile, Cycle, DataFileName
from schemas.validation import validate_delivery
from tests.support.deliveries import DeliveryRows, networks, valid_rows

CYCLE = "202610"
Parsed = dict[str, list[dict[str, Any]]]


# -- reading built deliveries back -------------------------------------------------------
def _typed(spec: Spec, unit: str, field_id: str, text: str | None) -> Any:
    """A lexical value as what it means, so that 12345.6 and 12345.60 compare equal."""
    if text is None or text == "":
        return None
    kind = spec.unit(unit).field(field_id).type
    if kind == "decimal":
        return Decimal(text)
    if kind == "integer":
        return int(text)
    return text


def read_delivery(spec: Spec, out: Path) -> Parsed:
    """Every data file of a delivery directory as typed rows per unit name, in file order."""
    check = CheckFile.parse(next(out.glob("*.chk")).read_bytes())
    parsed: Parsed = {}
    for entry in sorted(check.entries, key=lambda e: e.name):
        name = DataFileName.parse(entry.name)
        unit = spec.unit(name.unit)
        rows = parsed.setdefault(unit.name, [])
        path = out / entry.name
        if name.ext == "xml":
            ns = {"k": spec.namespace}
            for row in etree.parse(str(path)).getroot().iterfind("k:ROW", ns):
                rows.append({f.id: _typed(spec, unit.name, f.id, row.findtext(f"k:{f.id}", None, ns))
                             for f in unit.fields})
        else:
            codec = "utf-8-sig" if check.encoding == "UTF-8" else "gb18030"
            for line in path.read_bytes().decode(codec).split("\n")[:-1]:
                values = line.split(check.delimiter)
                rows.append({f.id: _typed(spec, unit.name, f.id, v) for f, v in zip(unit.fields, values)})
    return parsed


def data_files(out: Path) -> list[Path]:
    """The data files (not the check file) of a delivery directory."""
    return sorted(p for p in out.iterdir() if not p.name.endswith(".chk"))


# -- province-style exports ----------------------------------------------------------------
def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], encoding: str = "utf-8",
              delimiter: str = ",", before: Sequence[Sequence[str]] = ()) -> Path:
    """A CSV export as a CRM writes it (quoting only where needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        w.writerows(before)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_xlsx(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], sheet: str = "Sheet1",
               before: Sequence[Sequence[Any]] = (), other_sheets: Sequence[str] = ()) -> Path:
    """An XLSX export with typed cells (numbers, dates, text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    wb.active.title = other_sheets[0] if other_sheets else sheet
    if other_sheets:
        wb.active.append(["导出说明：本文件由CRM系统生成"])
        for extra in other_sheets[1:]:
            wb.create_sheet(extra)
        ws = wb.create_sheet(sheet)
    else:
        ws = wb.active
    for r in before:
        ws.append(list(r))
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    wb.save(path)
    return path


def _yn(value: str) -> str:
    return {"Y": "是", "N": "否"}[value]


LEVEL_NAMES = {"1": "集团级", "2": "省级", "3": "本地A级", "4": "本地B级", "5": "本地C级"}


def network_names(spec: Spec) -> dict[str, str]:
    """Hubei's local networks as a CRM names them (武汉 for 027)."""
    day = Cycle.parse(CYCLE).begin
    ver = spec.domain("Domain_area_id").version_on(day)
    return {code: ver.codes[code].name_zh.removesuffix("本地网") for code in networks(spec, "42", day)}


def write_exports(spec: Spec, rows: DeliveryRows, exports: Path, out_encoding: str, out_delimiter: str) -> None:
    """Hubei's six exports for the cycle, each in its own CRM's format and column names."""
    R = rows.rows
    unit = spec.unit

    # VIP_CUST_INFO: an XLSX workbook, data on the second sheet under a title row; flags and levels
    # in words, the join date as a date cell, the postcode typed as a number.
    info = unit("VIP_CUST_INFO")
    info_fields = [f for f in info.fields if f.id not in ("CYCLE_ID", "PROV_ID")]
    out_rows: list[list[Any]] = []
    for r in R["VIP_CUST_INFO"]:
        cells: list[Any] = []
        for f in info_fields:
            v = r[f.id]
            if f.id.startswith("IS_"):
                v = _yn(v)
            elif f.id == "LEVEL_ID":
                v = LEVEL_NAMES[v]
            elif f.id == "JOIN_DATE":
                v = dt.datetime.strptime(v, "%Y%m%d").date()
            elif f.id == "POSTCODE":
                v = int(v)
            cells.append(v)
        out_rows.append(cells)
        out_rows.append([None] * len(info_fields))  # blank rows between customers, as hand-edited sheets have
    write_xlsx(exports / "crm" / f"大客户资料_{CYCLE}.xlsx", [f.name_zh for f in info_fields], out_rows,
               sheet="客户清单", before=[[f"湖北电信大客户资料 {CYCLE}"]], other_sheets=["说明"])

    # VIP_CUST_CONTACT: CSV in UTF-8 with BOM, English headers under a title line, an extra
    # unmapped column whose text needs CSV quoting.
    contact = unit("VIP_CUST_CONTACT")
    c_fields = [f for f in contact.fields if f.id != "CYCLE_ID"]
    write_csv(exports / f"contacts_{CYCLE}.csv", [f.name_en for f in c_fields] + ["Remark"],
              ([f" {r[f.id]} " if f.id == "CONTACT_SEQ" else ("" if r[f.id] is None else r[f.id]) for f in c_fields]
               + ['call before 9am, "urgent" only'] for r in R["VIP_CUST_CONTACT"]),
              encoding="utf-8-sig", before=[["Contact export", CYCLE]])

    # VIP_CUST_PROD: XLSX with typed cells: money as floats, counts as floats (12.0), no bandwidth.
    prod = unit("VIP_CUST_PROD")
    p_fields = [f for f in prod.fields if f.id not in ("CYCLE_ID", "PROV_ID")]
    write_xlsx(exports / f"prod_{CYCLE}.xlsx", [f.name_zh for f in p_fields],
               ([float(r[f.id]) if f.id in ("INCOME_AMT", "SERV_CNT") else r[f.id] for f in p_fields]
                for r in R["VIP_CUST_PROD"]))

    # VIP_SUMMARY: CSV in GB18030 with Chinese headers, networks by name, money with ¥ and
    # thousands separators, counts with separators too.
    summ = unit("VIP_SUMMARY")
    names = network_names(spec)
    s_fields = [f for f in summ.fields if f.id not in ("CYCLE_ID", "PROV_ID")]

    def shown(f_id: str, v: Any) -> str:
        if f_id == "LATN_ID":
            return names[v]
        if isinstance(v, Decimal):
            return f"¥{v:,.2f}"
        return f"{v:,}"

    write_csv(exports / f"汇总_{CYCLE}.csv", [f.name_zh for f in s_fields],
              ([shown(f.id, r[f.id]) for f in s_fields] for r in R["VIP_SUMMARY"]), encoding="gb18030")

    # VIP_SERV_SUM: two CSV files (one per CRM instance) read in name order, semicolon-separated.
    serv = unit("VIP_SERV_SUM")
    half = len(R["VIP_SERV_SUM"]) // 2
    for part, chunk in (("a", R["VIP_SERV_SUM"][:half]), ("b", R["VIP_SERV_SUM"][half:])):
        write_csv(exports / "serv" / f"serv_{CYCLE}_{part}.csv", [f.id.lower() for f in serv.fields],
                  (["" if r[f.id] is None else r[f.id] for f in serv.fields] for r in chunk), delimiter=";")

    # VIP_INCOME_SUM: the billing system already writes the spec's format.
    tmp = exports.parent / "billing-tmp"
    rows.write(tmp, encoding=out_encoding, delimiter=out_delimiter, units=["VIP_INCOME_SUM"])
    (exports / "billing").mkdir(parents=True, exist_ok=True)
    for p in tmp.glob("*_32003_*.txt"):
        shutil.copy(p, exports / "billing" / p.name)
    shutil.rmtree(tmp)


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def province_toml(spec: Spec, root: Path, fmt: str, encoding: str, delimiter: str) -> Path:
    """The agent configuration Hubei's IT would write for the exports above."""
    unit = spec.unit
    lines = [
        "[agent]", 'party = "42"', 'state_dir = "state"', 'export_dir = "exports"', "",
        "[server]", 'url = "http://127.0.0.1:9"', "",
        "[output]", f'format = "{fmt}"', f'encoding = "{encoding}"', f'delimiter = "{delimiter}"', "",
        "[units.VIP_CUST_INFO]", 'source = "crm/大客户资料_{cycle}.xlsx"', 'sheet = "客户清单"', "header_row = 2",
        'constants = { CYCLE_ID = "{cycle}", PROV_ID = "{party}" }', "values_strict = true",
        "[units.VIP_CUST_INFO.columns]",
        *(f"{f.id} = {toml_str(f.name_zh)}" for f in unit("VIP_CUST_INFO").fields
          if f.id not in ("CYCLE_ID", "PROV_ID")),
        "[units.VIP_CUST_INFO.values]",
        *(f'{f} = {{ "是" = "Y", "否" = "N" }}' for f in ("IS_IMPORTANT", "IS_HIGH_VALUE", "IS_GROUP",
                                                       "IS_STRATEGIC")),
        "LEVEL_ID = { " + ", ".join(f"{toml_str(n)} = {toml_str(c)}" for c, n in LEVEL_NAMES.items()) + " }",
        "",
        "[units.VIP_CUST_CONTACT]", 'source = "contacts_{year}{month}.csv"', 'encoding = "UTF-8"', "header_row = 2",
        'constants = { CYCLE_ID = "{cycle}" }',
        "[units.VIP_CUST_CONTACT.columns]",
        *(f"{f.id} = {toml_str(f.name_en)}" for f in unit("VIP_CUST_CONTACT").fields if f.id != "CYCLE_ID"), "",
        "[units.VIP_CUST_PROD]", 'source = "prod_{cycle}.xlsx"',
        'constants = { CYCLE_ID = "{cycle}", PROV_ID = "42" }',
        "[units.VIP_CUST_PROD.columns]",
        *(f"{f.id} = {toml_str(f.name_zh)}" for f in unit("VIP_CUST_PROD").fields
          if f.id not in ("CYCLE_ID", "PROV_ID")), "",
        "[units.VIP_SUMMARY]", 'source = "汇总_{cycle}.csv"', 'encoding = "GB18030"', "values_strict = true",
        'constants = { CYCLE_ID = "{cycle}", PROV_ID = "{party}" }',
        "[units.VIP_SUMMARY.columns]",
        *(f"{f.id} = {toml_str(f.name_zh)}" for f in unit("VIP_SUMMARY").fields
          if f.id not in ("CYCLE_ID", "PROV_ID")),
        "[units.VIP_SUMMARY.values]",
        "LATN_ID = { " + ", ".join(f"{toml_str(n)} = {toml_str(c)}" for c, n in network_names(spec).items()) + " }",
        "",
        "[units.VIP_SERV_SUM]", 'source = "serv/serv_{cycle}_*.csv"', 'delimiter = ";"',
        "[units.VIP_SERV_SUM.columns]",
        *(f'{f.id} = "{f.id.lower()}"' for f in unit("VIP_SERV_SUM").fields), "",
        "[units.VIP_INCOME_SUM]", 'source = "billing/P_{party}_{cycle}_32003_*.txt"', 'format = "spec"', "",
    ]
    path = root / "agent.toml"
    path.write_text("\n".join(lines), "utf-8")
    return path


# -- the whole province, end to end --------------------------------------------------------
@pytest.mark.parametrize("fmt,encoding,delimiter", [("txt", "GB18030", "PIPE"), ("xml", "UTF-8", "PIPE"),
                                                    ("txt", "UTF-8", "TAB")])
def test_six_units_from_province_exports_validate_and_equal_the_original(
        spec: Spec, rows: DeliveryRows, tmp_path: Path, fmt: str, encoding: str, delimiter: str) -> None:
    write_exports(spec, rows, tmp_path / "exports", encoding, delimiter)
    config = load_config(province_toml(spec, tmp_path, fmt, encoding, delimiter))
    out = tmp_path / "out"
    check = build_delivery(config, spec, CYCLE, 0, out)
    assert check.name == "P_42_202610_00.chk"
    files = sorted(out.iterdir())
    assert len(files) == 7 and all(p.suffix in (f".{fmt}", ".chk") for p in files)
    report = validate_delivery(files, spec)
    assert report.status == "accepted", [(f.code, f.file, f.line, f.field, f.value) for f in report.findings]

    reference = tmp_path / "reference"
    rows.write(reference)
    assert read_delivery(spec, out) == read_delivery(spec, reference)


def test_only_the_named_units_are_built(spec: Spec, rows: DeliveryRows, tmp_path: Path) -> None:
    write_exports(spec, rows, tmp_path / "exports", "GB18030", "PIPE")
    config = load_config(province_toml(spec, tmp_path, "txt", "GB18030", "PIPE"))
    out = tmp_path / "out"
    build_delivery(config, spec, CYCLE, 3, out, mode="T", units=["VIP_SUMMARY", "32003"])
    assert [p.name for p in sorted(out.iterdir())] == [
        "T_42_202610_03.chk", "T_42_202610_32001_03_001.txt", "T_42_202610_32003_03_001.txt"]


def test_unconfigured_units_are_not_built(spec: Spec, rows: DeliveryRows, tmp_path: Path) -> None:
    write_exports(spec, rows, tmp_path / "exports", "GB18030", "PIPE")
    config = load_config(province_toml(spec, tmp_path, "txt", "GB18030", "PIPE"))
    only = AgentConfig(path=config.path, party="42", state_dir=config.state_dir, export_dir=config.export_dir,
                       output=config.output, units={"VIP_INCOME_SUM": config.units["VIP_INCOME_SUM"]})
    out = tmp_path / "out"
    build_delivery(only, spec, CYCLE, 0, out)
    assert len(data_files(out)) == 1
    with pytest.raises(ConfigError) as err:
        build_delivery(only, spec, CYCLE, 0, tmp_path / "out2", units=["VIP_SUMMARY"])
    assert err.value.key == "units.VIP_SUMMARY"


# -- a small unit for the error cases ------------------------------------------------------
SUMMARY_HEADER = ["本地网", "期末客户数", "集团级", "省级", "本地A", "本地B", "本地C", "期初客户数", "新增", "流失",
                  "500强", "客户经理", "本期收入", "本年累计", "上年同期"]


def summary_table(spec: Spec, **changes: Any) -> dict[str, Any]:
    """A VIP_SUMMARY mapping for SUMMARY_HEADER, with ``changes`` to its keys."""
    ids = [f.id for f in spec.unit("VIP_SUMMARY").fields][2:]
    table: dict[str, Any] = {
        "source": "summary_{cycle}.csv",
        "constants": {"CYCLE_ID": "{cycle}", "PROV_ID": "{party}"},
        "columns": dict(zip(ids, SUMMARY_HEADER)),
    }
    table.update(changes)
    return table


def summary_values(spec: Spec) -> list[list[str]]:
    """The valid summary rows as CSV cells in SUMMARY_HEADER order."""
    ids = [f.id for f in spec.unit("VIP_SUMMARY").fields][2:]
    return [[str(r[i]) for i in ids] for r in valid_rows(spec).rows["VIP_SUMMARY"]]


def agent_config(tmp_path: Path, units: dict[str, Any], fmt: str = "txt", encoding: str = "UTF-8",
                 delimiter: str = "PIPE") -> AgentConfig:
    """An AgentConfig built directly, exports under tmp_path/exports."""
    return AgentConfig(path=tmp_path / "agent.toml", party="42", state_dir=tmp_path / "state",
                       export_dir=tmp_path / "exports", output=OutputSettings(fmt, encoding, delimiter), units=units)


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda t: t.update(changes)


def _sub(key: str, field_id: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(t: dict[str, Any]) -> None:
        t.setdefault(key, {})
        if value is None:
            del t[key][field_id]
        else:
            t[key][field_id] = value
    return edit


@pytest.mark.parametrize("edit,key,words", [
    ({"VIP_NOPE": {"source": "x.csv"}}, "units.VIP_NOPE", "unknown unit 'VIP_NOPE'; the units a province sends"),
    ({"TOP500_LIST": {"source": "x.csv"}}, "units.TOP500_LIST", "sent down by HQ"),
    ({"VIP_SUMMARY": "summary.csv"}, "units.VIP_SUMMARY", "must be a table"),
    ({"VIP_SUMMARY": {"source": "s.csv", "colums": {}}}, "units.VIP_SUMMARY.colums", "unknown key 'colums'"),
    ({"VIP_SUMMARY": {"columns": {}}}, "units.VIP_SUMMARY.source", "source is required"),
    (_set(source="/abs/s.csv"), "units.VIP_SUMMARY.source", "relative to agent.export_dir"),
    (_set(source="s_{period}.csv"), "units.VIP_SUMMARY.source", "unknown placeholder {period}"),
    (_set(source="summary.dat"), "units.VIP_SUMMARY.format", "cannot tell the format"),
    (_set(source="summary.xls"), "units.VIP_SUMMARY.source", "legacy .xls"),
    (_set(format="json"), "units.VIP_SUMMARY.format", "format must be one of csv, xlsx, spec"),
    (_set(sheet="汇总"), "units.VIP_SUMMARY.sheet", "does not apply to format = 'csv' (only to xlsx)"),
    (_set(encoding="latin-1"), "units.VIP_SUMMARY.encoding", "UTF-8 or GB18030"),
    (_set(delimiter=";;"), "units.VIP_SUMMARY.delimiter", "one character"),
    (_set(header_row=0), "units.VIP_SUMMARY.header_row", "row number"),
    (_set(skip_blank="yes"), "units.VIP_SUMMARY.skip_blank", "true or false"),
    (_set(columns=["期末客户数"]), "units.VIP_SUMMARY.columns", "must be a table"),
    (_sub("columns", "NOPE", "x"), "units.VIP_SUMMARY.columns.NOPE", "VIP_SUMMARY has no field 'NOPE'"),
    (_sub("columns", "CUST_CNT", None), "units.VIP_SUMMARY.columns.CUST_CNT",
     "required field CUST_CNT (期末大客户数 / Key accounts at period end) is in neither columns nor constants"),
    (_sub("columns", "CUST_CNT", 4), "units.VIP_SUMMARY.columns.CUST_CNT", "a column header in quotes"),
    (_sub("constants", "CYCLE_ID", None), "units.VIP_SUMMARY.columns.CYCLE_ID", "in neither columns nor constants"),
    (_sub("constants", "LATN_ID", "027"), "units.VIP_SUMMARY.constants.LATN_ID", "both in columns and constants"),
    (_sub("constants", "CYCLE_ID", "{cycle_id}"), "units.VIP_SUMMARY.constants.CYCLE_ID", "unknown placeholder"),
    (_sub("constants", "PROV_ID", 42), "units.VIP_SUMMARY.constants.PROV_ID", "a value in quotes"),
    (_sub("constants", "CUST_CNT", "many"), "units.VIP_SUMMARY.constants.CUST_CNT", "both in columns"),
    (_sub("values", "PROV_ID", {"湖北": "42"}), "units.VIP_SUMMARY.values.PROV_ID", "not read from a column"),
    (_sub("values", "LATN_ID", {"武汉": 27}), "units.VIP_SUMMARY.values.LATN_ID", "codes in quotes"),
    (_sub("dates", "CUST_CNT", "%Y"), "units.VIP_SUMMARY.dates.CUST_CNT", "not a date or datetime"),
    (_sub("defaults", "CUST_CNT", "many"), "units.VIP_SUMMARY.defaults.CUST_CNT", "expected an integer"),
    (_sub("defaults", "PROV_ID", "42"), "units.VIP_SUMMARY.defaults.PROV_ID", "not read from a column"),
])
def test_mapping_mistakes_name_the_key(spec: Spec, tmp_path: Path, edit: Any, key: str, words: str) -> None:
    if callable(edit):
        table = summary_table(spec)
        edit(table)
        units = {"VIP_SUMMARY": table}
    else:
        units = edit
    config = agent_config(tmp_path, units)
    with pytest.raises(ConfigError) as err:
        build_delivery(config, spec, CYCLE, 0, tmp_path / "out")
    assert err.value.key == key
    assert str(err.value).startswith(f"{config.path} [{key}]: ")
    assert words in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_constant_that_is_not_a_value_of_its_type(spec: Spec, tmp_path: Path) -> None:
    write_csv(tmp_path / "exports" / f"summary_{CYCLE}.csv", SUMMARY_HEADER, summary_values(spec))
    table = summary_table(spec)
    del table["columns"]["CUST_CNT"]
    table["constants"]["CUST_CNT"] = "ten"
    with pytest.raises(ConfigError, match=r"\[units.VIP_SUMMARY.constants.CUST_CNT\]: constant 'ten' is not usable"):
        build_delivery(agent_config(tmp_path, {"VIP_SUMMARY": table}), spec, CYCLE, 0, tmp_path / "out")


def test_a_mistake_in_the_toml_file_names_file_and_key(spec: Spec, tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nparty = "42"\nstate_dir = "s"\nexport_dir = "e"\n[server]\nurl = "http://h"\n'
                    '[units.VIP_SUMMARY]\nsource = "summary_{cycle}.csv"\n'
                    '[units.VIP_SUMMARY.columns]\nCUST_CNTT = "期末客户数"\n', "utf-8")
    with pytest.raises(ConfigError) as err:
        build_delivery(load_config(path), spec, CYCLE, 0, tmp_path / "out")
    assert str(err.value).startswith(f"{path} [units.VIP_SUMMARY.columns.CUST_CNTT]: ")


def test_from_config_parses_every_key(spec: Spec) -> None:
    m = UnitMapping.from_config("32001", summary_table(
        spec, source="exports/{year}/summary_{month}.CSV", encoding="gbk", delimiter="TAB", header_row=3,
        skip_blank=False, values={"LATN_ID": {" 武汉 ": "027"}}, values_strict=True,
        defaults={"MANAGER_CNT": " 0 ", "INCOME_LY_AMT": "0"}), spec, "agent.toml")
    assert (m.unit.name, m.format, m.encoding, m.delimiter, m.header_row, m.skip_blank) == \
        ("VIP_SUMMARY", "csv", "GB18030", "\t", 3, False)
    assert m.values == {"LATN_ID": {"武汉": "027"}} and m.values_strict
    assert m.defaults == {"MANAGER_CNT": "0", "INCOME_LY_AMT": "0.00"}
    assert m.key("columns", "CUST_CNT") == "units.32001.columns.CUST_CNT"
    spec_m = UnitMapping.from_config("VIP_INCOME_SUM", {"source": "P_*_32003_*.txt"}, spec)
    assert spec_m.format == "spec"
    with pytest.raises(ConfigError, match=r"\[units.VIP_INCOME_SUM.columns\].*does not apply to format = 'spec'"):
        UnitMapping.from_config("VIP_INCOME_SUM", {"source": "x.txt", "columns": {}}, spec)


def test_the_same_unit_configured_twice_is_refused(spec: Spec, tmp_path: Path) -> None:
    config = agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec), "32001": summary_table(spec)})
    with pytest.raises(ConfigError, match=r"\[units.32001\].*configured twice"):
        build_delivery(config, spec, CYCLE, 0, tmp_path / "out")


# -- export problems -----------------------------------------------------------------------
def build_summary(spec: Spec, tmp_path: Path, cells: list[list[Any]] | None = None, header: list[str] | None = None,
                  fmt: str = "txt", delimiter: str = "PIPE", encoding: str = "utf-8", **changes: Any) -> Path:
    """Write summary_202610.csv and build it alone; return the out directory."""
    write_csv(tmp_path / "exports" / f"summary_{CYCLE}.csv", header or SUMMARY_HEADER,
              summary_values(spec) if cells is None else cells, encoding=encoding)
    out = tmp_path / "out"
    build_delivery(agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec, **changes)}, fmt=fmt, delimiter=delimiter),
                   spec, CYCLE, 0, out)
    return out


def test_no_export_matching_the_source_names_the_pattern(spec: Spec, tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "summary_202609.csv").write_text("x\n", "utf-8")
    (tmp_path / "exports" / "~$summary_202610.csv").write_text("x\n", "utf-8")  # Excel's lock file
    with pytest.raises(BuildError) as err:
        build_delivery(agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec)}), spec, CYCLE, 0, tmp_path / "out")
    assert "units.VIP_SUMMARY.source" in str(err.value)
    assert "'summary_202610.csv'" in str(err.value) and str(tmp_path / "exports") in str(err.value)


def test_a_missing_column_names_the_file_the_header_and_the_column(spec: Spec, tmp_path: Path) -> None:
    header = ["本地网", "期末大客户数", *SUMMARY_HEADER[2:]]
    with pytest.raises(BuildError) as err:
        build_summary(spec, tmp_path, header=header)
    msg = str(err.value)
    assert str(tmp_path / "exports" / "summary_202610.csv") in msg
    assert "units.VIP_SUMMARY.columns.CUST_CNT expects a column '期末客户数'" in msg
    assert "(line 1) has '本地网', '期末大客户数', '集团级'" in msg


def test_a_header_on_a_later_line_and_a_missing_header(spec: Spec, tmp_path: Path) -> None:
    write_csv(tmp_path / "exports" / f"summary_{CYCLE}.csv", SUMMARY_HEADER, summary_values(spec),
              before=[["湖北大客户汇总"], ["单位：元"]])
    out = tmp_path / "out"
    build_delivery(agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec, header_row=3)}), spec, CYCLE, 0, out)
    assert len(read_delivery(spec, out)["VIP_SUMMARY"]) == len(summary_values(spec))
    with pytest.raises(BuildError, match=r"no header line 99 \(units.VIP_SUMMARY.header_row\)"):
        build_delivery(agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec, header_row=99)}), spec, CYCLE, 0,
                       tmp_path / "out2")


def test_a_bad_number_names_file_line_column_value_and_expectation(spec: Spec, tmp_path: Path) -> None:
    cells = summary_values(spec)
    cells[1][1] = "十"
    with pytest.raises(BuildError) as err:
        build_summary(spec, tmp_path, cells)
    assert str(err.value) == (f"{tmp_path / 'exports' / 'summary_202610.csv'}, line 3, column '期末客户数': value '十' "
                              f"for CUST_CNT: expected an integer (digits, optionally with thousands separators)")
    cells = summary_values(spec)
    cells[2][12] = "12,3.4.5"
    with pytest.raises(BuildError, match=r"line 4, column '本期收入': value '12,3.4.5' for INCOME_AMT: expected a number"):
        build_summary(spec, tmp_path, cells)
    assert not list((tmp_path / "out").iterdir())  # nothing half-built is left behind


def test_a_value_the_output_cannot_carry_is_refused(spec: Spec, tmp_path: Path) -> None:
    def with_cell(value: str) -> list[list[str]]:
        cells = summary_values(spec)
        cells[0][0] = value
        return cells

    write_csv(tmp_path / "exports" / f"summary_{CYCLE}.csv", SUMMARY_HEADER, with_cell("027|0714"))
    with pytest.raises(BuildError, match=r"line 2, column '本地网': value '027\|0714' for LATN_ID contains the output "
                                         r"delimiter \(PIPE\)"):
        build_delivery(agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec)}), spec, CYCLE, 0, tmp_path / "o1")
    with pytest.raises(BuildError, match=r"line 2, column '本地网': value '02\\n7' for LATN_ID contains"):
        build_summary(spec, tmp_path, with_cell("02\n7"), values={"LATN_ID": {"x": "y"}})
    # a comma is fine with a PIPE output but not with COMMA
    with pytest.raises(BuildError, match=r"contains the output delimiter \(COMMA\)"):
        build_summary(spec, tmp_path, with_cell("0,27"), delimiter="COMMA")
    # and the delimiter inside a value cannot reach the engine through a constant either
    with pytest.raises(ConfigError, match=r"\[units.VIP_SUMMARY.constants.PROV_ID\].*cannot carry"):
        build_summary(spec, tmp_path, constants={"CYCLE_ID": "{cycle}", "PROV_ID": "4|2"})


def test_a_line_that_does_not_fit_the_header(spec: Spec, tmp_path: Path) -> None:
    cells = summary_values(spec)
    cells[3] = cells[3][:5] + ["1", "234.00"] + cells[3][5:]  # 1,234.00 written unquoted
    with pytest.raises(BuildError, match=r"summary_202610.csv, line 5: 17 values but the header has 15 columns"):
        build_summary(spec, tmp_path, cells)
    cells = summary_values(spec)
    cells[3] = cells[3] + ["", ""]  # trailing empty values are harmless
    cells.insert(2, [])  # so is a blank line
    out = build_summary(spec, tmp_path, cells)
    assert len(read_delivery(spec, out)["VIP_SUMMARY"]) == len(summary_values(spec))


def test_the_wrong_encoding_is_named(spec: Spec, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"not valid UTF-8 text .*set units.VIP_SUMMARY.encoding = \"GB18030\""):
        build_summary(spec, tmp_path, encoding="gb18030")


def test_codes_are_translated_and_unlisted_codes_pass_or_fail(spec: Spec, tmp_path: Path) -> None:
    names = network_names(spec)
    cells = summary_values(spec)
    for row in cells[1:]:
        row[0] = names[row[0]]
    values = {"LATN_ID": {n: c for c, n in names.items() if c != "027"}}
    out = build_summary(spec, tmp_path, cells, values=values)
    built = [r["LATN_ID"] for r in read_delivery(spec, out)["VIP_SUMMARY"]]
    assert built == [r[0] for r in summary_values(spec)]  # 027 passed through untranslated
    cells[0][0] = "武汉市"
    with pytest.raises(BuildError) as err:
        build_summary(spec, tmp_path, cells, values=values, values_strict=True)
    assert "line 2, column '本地网': value '武汉市' for LATN_ID: expected one of '黄石'" in str(err.value)
    assert "units.VIP_SUMMARY.values.LATN_ID, values_strict = true" in str(err.value)


def test_defaults_fill_empty_cells(spec: Spec, tmp_path: Path) -> None:
    cells = summary_values(spec)
    for row in cells:
        row[11] = ""  # MANAGER_CNT
    out = build_summary(spec, tmp_path, cells, defaults={"MANAGER_CNT": "2"})
    assert {r["MANAGER_CNT"] for r in read_delivery(spec, out)["VIP_SUMMARY"]} == {2}


# -- money, numbers and dates --------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    (0.1 + 0.2, "0.30"), (1234.5, "1234.50"), (2.675, "2.68"), (1234.565, "1234.57"), (12, "12.00"),
    (-0.001, "0.00"), (1e-7, "0.00"), (12345678901234.56, "12345678901234.56"),
    ("1,234.5", "1234.50"), ("¥1,234.50", "1234.50"), ("￥ 1 234.50", "1234.50"), ("-¥1,234.555", "-1234.56"),
    ("(1,234.50)", "-1234.50"), ("1234.50元", "1234.50"), ("RMB 99", "99.00"), (" .5 ", "0.50"),
    (Decimal("0.125"), "0.13"), ("", ""), (None, ""),
])
def test_money_is_exact(spec: Spec, value: Any, expected: str) -> None:
    assert normalize(spec.unit("VIP_SUMMARY").field("INCOME_AMT"), value) == expected


@pytest.mark.parametrize("value", ["abc", "1.2.3", "--1", "¥", float("nan"), float("inf"), True, dt.date(2026, 1, 1)])
def test_money_that_is_not_a_number_is_refused(spec: Spec, value: Any) -> None:
    with pytest.raises(ValueError, match="a number"):
        normalize(spec.unit("VIP_SUMMARY").field("INCOME_AMT"), value)


@pytest.mark.parametrize("value,expected", [
    (12, "12"), (12.0, "12"), ("12.0", "12"), (" 1,200 ", "1200"), ("1 200", "1200"), ("+7", "7"), ("007", "7"),
    ("-0", "0"), ("１２", "12"),
])
def test_integers(spec: Spec, value: Any, expected: str) -> None:
    assert normalize(spec.unit("VIP_SUMMARY").field("CUST_CNT"), value) == expected


@pytest.mark.parametrize("value", ["12.5", 12.5, "1e3", "十二", True])
def test_integers_that_are_not(spec: Spec, value: Any) -> None:
    with pytest.raises(ValueError, match="an integer"):
        normalize(spec.unit("VIP_SUMMARY").field("CUST_CNT"), value)


def test_dates_and_strings(spec: Spec) -> None:
    join = spec.unit("VIP_CUST_INFO").field("JOIN_DATE")
    for value in ("2015-03-01", "2015/03/01", "20150301", "2015-03-01 00:00:00", dt.date(2015, 3, 1),
                  dt.datetime(2015, 3, 1, 17, 45), 20150301):
        assert normalize(join, value) == "20150301"
    assert normalize(join, "01.03.2015", "%d.%m.%Y") == "20150301"
    with pytest.raises(ValueError, match=r"a date in the form '%d.%m.%Y'"):
        normalize(join, "2015-03-01", "%d.%m.%Y")
    with pytest.raises(ValueError, match="a date such as"):
        normalize(join, "2015-02-30")
    # the standard's upload units have no datetime field today; the type is handled all the same
    stamp = type(join)(id="T", name_zh="", name_en="", type="datetime", position=0, required=False)
    assert normalize(stamp, dt.datetime(2026, 10, 5, 14, 30, 1)) == "20261005143001"
    assert normalize(stamp, "2026-10-05 14:30:01") == "20261005143001"
    assert normalize(stamp, dt.date(2026, 10, 5)) == "20261005000000"
    name = spec.unit("VIP_CUST_INFO").field("POSTCODE")
    assert normalize(name, 430000) == "430000" and normalize(name, 430000.0) == "430000"
    assert normalize(name, "  湖北  ") == "湖北"


def test_xlsx_typed_cells_money_and_dates(spec: Spec, tmp_path: Path) -> None:
    """Floats from a workbook come out exact; date cells need no format; errors name the cell."""
    ids = [f.id for f in spec.unit("VIP_SUMMARY").fields][2:]
    good = valid_rows(spec).rows["VIP_SUMMARY"]
    rows = []
    for r in good:
        cells: list[Any] = [r[i] if spec.unit("VIP_SUMMARY").field(i).type != "integer" else float(r[i]) for i in ids]
        rows.append(cells)
    rows[0][12:15] = [0.1 + 0.2, 1234.5, 2.675]
    write_xlsx(tmp_path / "exports" / "summary.xlsx", SUMMARY_HEADER, rows, sheet="汇总")
    config = agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec, source="summary.xlsx", sheet="汇总")})
    out = tmp_path / "out"
    build_delivery(config, spec, CYCLE, 0, out)
    first = (out / "P_42_202610_32001_00_001.txt").read_text("utf-8").split("\n")[0].split("|")
    assert first[3] == "10" and first[14:] == ["0.30", "1234.50", "2.68"]

    rows[2][3] = "n/a"
    write_xlsx(tmp_path / "exports" / "summary.xlsx", SUMMARY_HEADER, rows, sheet="汇总")
    with pytest.raises(BuildError) as err:
        build_delivery(config, spec, CYCLE, 0, tmp_path / "out2")
    assert "summary.xlsx, sheet '汇总', row 4, column '省级' (cell D4): value 'n/a' for CUST_CNT_PROV" in str(err.value)

    config = agent_config(tmp_path, {"VIP_SUMMARY": summary_table(spec, source="summary.xlsx", sheet="明细")})
    with pytest.raises(BuildError, match=r"no sheet '明细' \(units.VIP_SUMMARY.sheet\); the workbook has '汇总'"):
        build_delivery(config, spec, CYCLE, 0, tmp_path / "out3")


def test_date_columns_from_xlsx_cells_and_from_text(spec: Spec, rows: DeliveryRows, tmp_path: Path) -> None:
    info = spec.unit("VIP_CUST_INFO")
    fields = [f for f in info.fields if f.id != "CYCLE_ID"]
    table = {"source": "info.*", "constants": {"CYCLE_ID": "{cycle}"},
             "columns": {f.id: f.name_en for f in fields}}
    day = dt.datetime(2015, 3, 1, 9, 30)  # a timestamp cell for a date field keeps the day
    data = [[day if f.id == "JOIN_DATE" else r[f.id] for f in fields] for r in rows.rows["VIP_CUST_INFO"]]
    write_xlsx(tmp_path / "exports" / "info.xlsx", [f.name_en for f in fields], data)
    out = tmp_path / "out"
    build_delivery(agent_config(tmp_path, {"VIP_CUST_INFO": dict(table, format="xlsx")}), spec, CYCLE, 0, out)
    assert {r["JOIN_DATE"] for r in read_delivery(spec, out)["VIP_CUST_INFO"]} == {"20150301"}

    (tmp_path / "exports" / "info.xlsx").unlink()
    data = [["01.03.2015" if f.id == "JOIN_DATE" else r[f.id] or "" for f in fields] for r in rows.rows["VIP_CUST_INFO"]]
    write_csv(tmp_path / "exports" / "info.csv", [f.name_en for f in fields], data)
    dated = dict(table, format="csv", dates={"JOIN_DATE": "%d.%m.%Y"})
    build_delivery(agent_config(tmp_path, {"VIP_CUST_INFO": dated}), spec, CYCLE, 0, tmp_path / "out2")
    assert {r["JOIN_DATE"] for r in read_delivery(spec, tmp_path / "out2")["VIP_CUST_INFO"]} == {"20150301"}
    with pytest.raises(BuildError, match=r"info.csv, line 2, column 'Key account since': value '01.03.2015' for "
                                         r"JOIN_DATE: expected a date such as"):
        build_delivery(agent_config(tmp_path, {"VIP_CUST_INFO": dict(table, format="csv")}), spec, CYCLE, 0,
                       tmp_path / "out3")


# -- spec passthrough ----------------------------------------------------------------------
def test_spec_files_are_copied_and_checked_for_shape(spec: Spec, rows: DeliveryRows, tmp_path: Path) -> None:
    rows.write(tmp_path / "exports", encoding="GB18030", newline="\r\n", units=["VIP_SERV_SUM"])
    config = agent_config(tmp_path, {"VIP_SERV_SUM": {"source": "*_32002_*.txt"}}, encoding="GB18030", fmt="xml")
    out = tmp_path / "out"
    build_delivery(config, spec, CYCLE, 1, out)
    reference = tmp_path / "reference"
    rows.write(reference, units=["VIP_SERV_SUM"])
    assert read_delivery(spec, out) == read_delivery(spec, reference)

    src = next((tmp_path / "exports").glob("*_32002_*.txt"))
    src.write_bytes(src.read_bytes() + "202610|42|027\r\n".encode("gb18030"))
    with pytest.raises(BuildError, match=r"_32002_00_001.txt, line 15: 3 values separated by PIPE, but VIP_SERV_SUM "
                                         r"\(32002\) has 11 fields"):
        build_delivery(config, spec, CYCLE, 1, tmp_path / "out2")
    src.write_bytes(src.read_bytes()[:-2])
    with pytest.raises(BuildError, match="line 15: the last line has no line terminator"):
        build_delivery(config, spec, CYCLE, 1, tmp_path / "out3")


# -- memory --------------------------------------------------------------------------------
def test_a_large_export_builds_in_flat_memory(spec: Spec, tmp_path: Path) -> None:
    n = 100_000  # held in memory as dicts these rows would take well over 50 MB; streamed they take < 1 MB
    prod = spec.unit("VIP_CUST_PROD")
    base = valid_rows(spec).rows["VIP_CUST_PROD"][0]
    header = [f.name_zh for f in prod.fields]
    path = tmp_path / "exports" / "prod.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", encoding="gb18030", newline="") as fh:
        fh.write(",".join(header) + "\r\n")
        fh.writelines(f"{CYCLE},G42{i:08d},42,{base['LATN_ID']},{base['PROD_ID']},\"{i % 997 + 1:,}\",,"
                      f"{base['SERV_STS_ID']},\"¥{i * 1.01:,.2f}\"\r\n" for i in range(n))
    config = agent_config(tmp_path, {"VIP_CUST_PROD": {
        "source": "prod.csv", "encoding": "GB18030", "columns": {f.id: f.name_zh for f in prod.fields}}})
    tracemalloc.start()
    try:
        build_delivery(config, spec, CYCLE, 0, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20, f"peak {peak / 2 ** 20:.1f} MiB"
    check = CheckFile.parse(next((tmp_path / "out").glob("*.chk")).read_bytes())
    assert [e.rows for e in check.entries] == [n]
    with (tmp_path / "out" / check.entries[0].name).open("rb") as fh:
        fh.readline()
        second = fh.readline().decode("utf-8").rstrip("\n").split("|")
    assert second[5] == "2" and second[8] == "1.01"
