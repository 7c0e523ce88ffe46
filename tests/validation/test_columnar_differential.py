"""The columnar core against the row core (issue 18): identical verdicts, counts and findings.

Property-based: a valid delivery of every upload unit (the six units ``valid_rows`` fills),
in delimited text, UTF-8 and GB18030 (pipe, TAB, US, caret and comma delimiters; LF and CRLF), is mutated field by
field — bad codes, too-long values, stray and ideographic white space, empty required
fields, a delimiter inside a value (wrong column count), blank lines, bad dates and
numbers, out-of-range values, forbidden characters, duplicated keys, record rules broken —
and validated by both cores. Status, counts per code, findings (file, line, field, value,
expected, code, messages, order) with the per-code cap, file summaries and skipped rules
must all be equal. Batches are made tiny in half the examples, so that batch boundaries and
the over-long-line path are crossed on these small files, and in half of them the duplicate-key
runs are spilled to disk after every batch and merged in chunks of three rows.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Spec
from schemas.validation import ValidationContext, ValidationOptions, validate_delivery
from schemas.validation.columnar import keys as col_keys
from schemas.validation.columnar import reader as col_reader
from schemas.validation.columnar import selected_core
from schemas.validation.report import Report
from tests.support.deliveries import DeliveryRows, refresh_check, valid_rows

KINDS = [("UTF-8", "PIPE"), ("GB18030", "PIPE"), ("UTF-8", "TAB"), ("GB18030", "US"), ("UTF-8", "CARET"),
         ("GB18030", "COMMA"), ("GB18030", "TAB")]
CRLF = {("GB18030", "TAB")}  # written with CRLF line ends (a mutation may mix them: tier 1's E111)
UNITS = ["31201", "31202", "31203", "32001", "32002", "32003"]
DELIMS = {"PIPE": "|", "TAB": "\t", "US": "\x1f", "CARET": "^", "COMMA": ","}

VALUES = [
    "", " ", "ZZ", "99", "X" * 300, " 湖北", "湖北 ", "湖北\u3000", "\u3000", "Y", "N", "D", "03", "04",
    "20261331", "20260229", "20240229", "19000101", "21000101", "2026103", "20261001120000", "20261001246000",
    "-1", "0", "-0", "007", "1e5", "1,000", "12.345", "12.3", "-12.30", "9" * 19, "9" * 40, "12345678901234567",
    "１２", "²", "a@b.c", "a@@b.c", "a b@c.d", "027-8888", "+86-27-88880000", "G420000001", "42", "4201", "4299",
    "202610", "202609", "2026Q4", "x\x01y", "\x7f", "\x00", "tab\tin", "\ufffe", "\x85", "𠀀鑫", "HB00000001",
]


def _value(delim: str) -> st.SearchStrategy[str]:
    text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=12)
    return st.one_of(st.sampled_from(VALUES), st.sampled_from(VALUES).map(lambda v: v + delim + v), text)


edit = st.tuples(st.sampled_from(UNITS), st.integers(0, 50), st.integers(0, 30),
                 st.sampled_from(["set", "set", "pad", "long", "empty", "delim", "dup", "blank", "drop", "copy_row"]),
                 st.data())


@pytest.fixture(scope="module")
def bases(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, DeliveryRows]]:
    root = tmp_path_factory.mktemp("columnar")
    out = {}
    for enc, delim in KINDS:
        rows = valid_rows(spec, customers=4)
        newline = "\r\n" if (enc, delim) in CRLF else "\n"
        out[(enc, delim)] = (rows.write(root / f"{enc}-{delim}", encoding=enc, delimiter=delim, newline=newline), rows)
    return out


def _mutate(folder: Path, enc: str, delim: str, edits: list[Any]) -> None:
    codec = "gb18030" if enc == "GB18030" else "utf-8"
    for unit, row, fld, kind, data in edits:
        path = next(p for p in folder.iterdir() if f"_{unit}_" in p.name)
        lines = path.read_bytes().decode(codec).split("\n")[:-1]
        if not lines:
            continue
        i = row % len(lines)
        vals = lines[i].split(delim)
        j = fld % len(vals)
        if kind == "set":
            vals[j] = data.draw(_value(delim))
            lines[i] = delim.join(vals)
        elif kind in ("pad", "long", "empty", "delim"):
            v = vals[j]
            pad = data.draw(st.sampled_from([" ", "\u3000", "\t", "0", "9", "-", ".5"]))
            vals[j] = {"pad": data.draw(st.sampled_from([pad + v, v + pad])), "long": (v or "9") * 60, "empty": "",
                       "delim": v + delim}[kind]
            lines[i] = delim.join(vals)
        elif kind == "dup":  # the same key as another row: copy its leading fields
            other = lines[(i + 1) % len(lines)].split(delim)
            lines[i] = delim.join(other[:j + 1] + vals[j + 1:])
        elif kind == "blank":
            lines.insert(i, "")
        elif kind == "drop":
            lines[i] = delim.join(vals[:j] + vals[j + 1:])
        else:
            lines.insert(i, lines[(i + 1) % len(lines)])
        path.write_bytes(("\n".join(lines) + "\n").encode(codec))
    refresh_check(folder)


def _snapshot(report: Report) -> dict[str, Any]:
    return {"status": report.status, "counts": dict(report.counts), "stopped": report.stopped_at_tier,
            "findings": [f.as_dict() for f in report.findings],
            "files": {k: v.as_dict() for k, v in report.files.items()},
            "skipped": [s.as_dict() for s in report.skipped], "structural": dict(report.structural)}


def both(folder: Path, spec: Spec, context: ValidationContext | None, cap: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same delivery through the row core and the columnar core."""
    files = sorted(folder.iterdir())
    rows = validate_delivery(files, spec, context, ValidationOptions(core="rows", cap=cap, workers=1))
    columnar = validate_delivery(files, spec, context, ValidationOptions(core="columnar", cap=cap, workers=1))
    return _snapshot(rows), _snapshot(columnar)


@settings(max_examples=120, print_blob=False, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), edits=st.lists(edit, min_size=1, max_size=6), cap=st.sampled_from([1000, 2]),
       with_list=st.booleans(), tiny=st.booleans(), spill=st.booleans())
def test_columnar_core_reports_exactly_what_the_row_core_reports(
        spec: Spec, bases: dict[tuple[str, str], tuple[Path, DeliveryRows]], monkeypatch: pytest.MonkeyPatch,
        kind: tuple[str, str], edits: list[Any], cap: int, with_list: bool, tiny: bool, spill: bool) -> None:
    base, rows = bases[kind]
    with monkeypatch.context() as m:
        if tiny:  # batches of a few lines; lines past 300 bytes take the over-long-line path
            m.setattr(col_reader, "BLOCK", 256)
            m.setattr(col_reader, "LONG_LINE", 300)
        if spill:  # the keys of every batch spilled as a sorted run, merged three rows per run at a time
            m.setattr(col_keys, "BUDGET", 1)
            m.setattr(col_keys, "CHUNK", 3)
        with tempfile.TemporaryDirectory(prefix="columnar-") as tmp:
            folder = Path(shutil.copytree(base, Path(tmp) / "d"))
            _mutate(folder, kind[0], DELIMS[kind[1]], edits)
            context = ValidationContext(list_ids=frozenset(rows.list_ids[:3]), list_version="2026V01") if with_list else None
            reference, columnar = both(folder, spec, context, cap)
    assert columnar == reference


@pytest.mark.parametrize("enc,delim", KINDS)
def test_valid_deliveries_are_accepted_by_both_cores(spec: Spec, bases: dict[tuple[str, str], tuple[Path, DeliveryRows]],
                                                     enc: str, delim: str) -> None:
    reference, columnar = both(bases[(enc, delim)][0], spec, None, 1000)
    assert reference["status"] == "accepted" and columnar == reference


def test_many_failures_capped_in_the_same_order(spec: Spec, tmp_path: Path) -> None:
    rows = valid_rows(spec, customers=40)
    for i, r in enumerate(rows.rows["VIP_CUST_INFO"]):
        r["CUST_NAME"] = " 名" if i % 2 else "X" * 300
        r["JOIN_DATE"] = "20261332" if i % 3 else r["JOIN_DATE"]
    folder = rows.write(tmp_path / "d", encoding="GB18030")
    reference, columnar = both(folder, spec, None, 5)
    assert reference["counts"]["E305"] == 20 and len([f for f in reference["findings"] if f["code"] == "E305"]) == 5
    assert columnar == reference


def test_the_core_is_chosen_by_option_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.validation.columnar import COLUMNAR_MIN_BYTES, core_for_file

    monkeypatch.delenv("KAM_VALIDATION_CORE", raising=False)
    assert selected_core() == "auto"
    assert core_for_file(None, COLUMNAR_MIN_BYTES) == "columnar" and core_for_file(None, COLUMNAR_MIN_BYTES - 1) == "rows"
    assert core_for_file("columnar", 1) == "columnar" and core_for_file("rows", 1 << 30) == "rows"
    monkeypatch.setenv("KAM_VALIDATION_CORE", "rows")
    assert selected_core() == "rows" and selected_core("columnar") == "columnar" and core_for_file(None, 1 << 30) == "rows"
    monkeypatch.setenv("KAM_VALIDATION_CORE", "fast")
    with pytest.raises(ValueError):
        selected_core()


# -- the download units: HQ's top-500 list (31101) and reporting calendar (32004) -----------------
def _download_rows(spec: Spec) -> dict[str, DeliveryRows]:
    rows = valid_rows(spec, customers=2)
    c_type = rows.rows["VIP_CUST_INFO"][0]["C_TYPE_ID"]
    listed = [dict(LIST_VERSION="2026V01", NATIONAL_CUST_ID=f"G42{n:07d}", CUST_RANK=n, CUST_NAME=f"湖北客户{n}有限公司",
                   GROUP_PARENT_NAME=None if n % 3 else "中国某集团", C_TYPE_ID=c_type, LEVEL_ID="1", LEAD_PROV_ID="42",
                   LEAD_LATN_ID="027", HQ_MANAGER_NAME="王芳", HQ_MANAGER_PHONE="010-66010000", EFF_DATE="20260101",
                   EXP_DATE=None, CHANGE_TYPE="A") for n in range(1, 13)]
    cycle = dict(CYCLE_ID="202610", REP_FREQ="M", CYCLE_NAME="2026年10月", BEGIN_DATE="20261001", END_DATE="20261031",
                 DEADLINE="20261110180000", UNITS_DUE="31201,31202,31203,32001,32002,32003", REMARK=None)
    months = [dict(cycle, CYCLE_ID=f"2026{m:02d}", CYCLE_NAME=f"2026年{m}月", BEGIN_DATE=f"2026{m:02d}01",
                   END_DATE=f"2026{m:02d}28", DEADLINE=f"{2026 + m // 12}{m % 12 + 1:02d}10180000") for m in range(1, 13)]
    return {"31101": DeliveryRows(spec, "00", "2026V01", {"TOP500_LIST": listed}),
            "32004": DeliveryRows(spec, "00", "2026", {"REP_CYCLE": months})}


@pytest.fixture(scope="module")
def download_bases(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    root = tmp_path_factory.mktemp("columnar-down")
    out = {}
    for unit, rows in _download_rows(spec).items():
        for enc, delim in _down_kinds(unit):
            out[(unit, enc, delim)] = rows.write(root / f"{unit}-{enc}-{delim}", mode="D", encoding=enc, delimiter=delim,
                                                 newline="\r\n" if (enc, delim) in CRLF else "\n")
    return out


def _down_kinds(unit: str) -> list[tuple[str, str]]:
    """The encodings and delimiters a download unit is written with (UNITS_DUE holds commas: not comma-delimited)."""
    return [k for k in KINDS if not (unit == "32004" and k[1] == "COMMA")]


down_edit = st.tuples(st.just(""), st.integers(0, 50), st.integers(0, 30),
                      st.sampled_from(["set", "set", "set", "pad", "long", "empty", "delim", "dup", "blank", "drop",
                                       "copy_row"]),
                      st.data())


@settings(max_examples=60, print_blob=False, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from([(u, k) for u in ("31101", "32004") for k in _down_kinds(u)]),
       edits=st.lists(down_edit, min_size=1, max_size=5), tiny=st.booleans())
def test_columnar_core_reports_the_download_units_exactly_as_the_row_core(
        spec: Spec, download_bases: dict[tuple[str, str, str], Path], monkeypatch: pytest.MonkeyPatch,
        case: tuple[str, tuple[str, str]], edits: list[Any], tiny: bool) -> None:
    unit, kind = case
    with monkeypatch.context() as m:
        if tiny:
            m.setattr(col_reader, "BLOCK", 256)
            m.setattr(col_reader, "LONG_LINE", 300)
        with tempfile.TemporaryDirectory(prefix="columnar-") as tmp:
            folder = Path(shutil.copytree(download_bases[(unit, *kind)], Path(tmp) / "d"))
            _mutate(folder, kind[0], DELIMS[kind[1]], [(unit, *e[1:]) for e in edits])
            reference, columnar = both(folder, spec, None, 1000)
    assert columnar == reference


@pytest.mark.parametrize("unit", ["31101", "32004"])
def test_valid_download_deliveries_are_accepted_by_both_cores(spec: Spec, download_bases: dict[tuple[str, str, str], Path],
                                                              unit: str) -> None:
    for enc, delim in _down_kinds(unit):
        reference, columnar = both(download_bases[(unit, enc, delim)], spec, None, 1000)
        assert reference["status"] == "accepted", reference["findings"][:3]
        assert columnar == reference


@pytest.mark.parametrize("enc", ["UTF-8", "GB18030"])
def test_xml_deliveries_get_the_same_report_from_both_cores(spec: Spec, tmp_path: Path, enc: str) -> None:
    """XML is parsed and checked by the row path under either core; every unit, valid and broken."""
    rows = valid_rows(spec, customers=4)
    rows.rows["VIP_CUST_INFO"][1]["JOIN_DATE"] = "20261332"
    rows.rows["VIP_CUST_PROD"][0]["INCOME_AMT"] = "12.3"
    folder = rows.write(tmp_path / "up", fmt="xml", encoding=enc)
    reference, columnar = both(folder, spec, None, 1000)
    assert reference["counts"] and columnar == reference
    for unit, d in _download_rows(spec).items():
        reference, columnar = both(d.write(tmp_path / unit, fmt="xml", mode="D", encoding=enc), spec, None, 1000)
        assert reference["status"] == "accepted" and columnar == reference


# -- XML: the columnar screen after parsing ---------------------------------------------------------
xml_edit = st.tuples(st.sampled_from(UNITS), st.integers(0, 50), st.integers(0, 30),
                     st.sampled_from(["set", "set", "set", "empty", "pad", "dup"]), st.data())


def _mutate_rows(rows: DeliveryRows, edits: list[Any]) -> None:
    """Edit values of the parsed rows (what an XML file carries), the same kinds of faults as in text."""
    for unit, row, fld, kind, data in edits:
        table = rows.rows[rows.spec.unit(unit).name]
        r = table[row % len(table)]
        key = list(r)[fld % len(r)]
        v = "" if r[key] is None else str(r[key])
        if kind == "set":
            r[key] = data.draw(st.one_of(st.sampled_from([x for x in VALUES if "\x00" not in x]),
                                         st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                                                 max_size=12)))
        elif kind == "empty":
            r[key] = ""
        elif kind == "pad":
            r[key] = data.draw(st.sampled_from([" " + v, v + "\u3000", "\t" + v, v + ".5", "0" + v]))
        else:  # the same leading fields as the next row: a repeated key
            other = table[(row + 1) % len(table)]
            for k in list(r)[:fld % len(r) + 1]:
                r[k] = other[k]


@settings(max_examples=60, print_blob=False, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(enc=st.sampled_from(["UTF-8", "GB18030"]), edits=st.lists(xml_edit, min_size=1, max_size=6),
       cap=st.sampled_from([1000, 2]), with_list=st.booleans(), small=st.booleans())
def test_columnar_core_reports_xml_exactly_as_the_row_core(spec: Spec, monkeypatch: pytest.MonkeyPatch, enc: str,
                                                           edits: list[Any], cap: int, with_list: bool,
                                                           small: bool) -> None:
    from schemas.validation.columnar import core as col_core

    rows = valid_rows(spec, customers=4)
    _mutate_rows(rows, edits)
    with monkeypatch.context() as m, tempfile.TemporaryDirectory(prefix="columnar-xml-") as tmp:
        if small:  # batches of three rows: batch ends fall between a file's rows
            m.setattr(col_core, "BATCH_ROWS", 3)
        try:
            folder = rows.write(Path(tmp) / "d", fmt="xml", encoding=enc)
        except (ValueError, UnicodeEncodeError):  # a value XML (or the encoding) cannot carry at all
            return
        context = ValidationContext(list_ids=frozenset(rows.list_ids[:3]), list_version="2026V01") if with_list else None
        reference, columnar = both(folder, spec, context, cap)
    assert columnar == reference
