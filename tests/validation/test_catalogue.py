"""Every code of the error catalogue, triggered by a real file: code, line and field asserted."""
from __future__ import annotations

import shutil
from dataclasses import replace
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from schemas import Spec
from schemas.validation import (
    REJECTED, Report, ValidationContext, ValidationOptions, validate_paths,
)
from tests.support.deliveries import DeliveryRows, data_file, refresh_check, rewrite_check

def run(delivery: Path, context: ValidationContext | None = None, **options: Any) -> Report:
    """Validate the one delivery in ``delivery``."""
    reports = validate_paths([delivery], context=context, options=ValidationOptions(**options))
    assert len(reports) == 1
    return reports[0]


def expect(report: Report, code: str, line: int | None | str = "any", field: str | None | str = "any",
           file_contains: str | None = None) -> None:
    """Assert ``code`` was found (at ``line`` / ``field`` when given) and the delivery's status fits."""
    found = report.of_code(code)
    assert found, f"{code} not found; got {dict(report.counts)}"
    matches = [f for f in found if (line == "any" or f.line == line) and (field == "any" or f.field == field)
               and (file_contains is None or (f.file or "").find(file_contains) >= 0)]
    assert matches, f"{code} found but not at line={line} field={field}: {[f.as_dict() for f in found]}"
    f = matches[0]
    # No placeholder left unfilled (a regex such as ^[0-9]{6}$ in a message is fine).
    text = (f.message_en + f.message_zh).replace(f.expected or "\0", "").replace(f.value or "\0", "")
    assert f.message_zh and f.message_en and not re.search(r"\{[A-Za-z_]+\}", text), f.as_dict()
    if report.severity_of(code) == "error":
        assert report.status == REJECTED


def only(report: Report, *codes: str) -> None:
    """Assert nothing but ``codes`` was found."""
    assert set(report.counts) == set(codes), dict(report.counts)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "d"


# -- the baseline ---------------------------------------------------------------------------
def test_valid_delivery_is_accepted(rows: DeliveryRows, out: Path) -> None:
    report = run(rows.write(out), ValidationContext(list_ids=frozenset(rows.list_ids), list_version="2026V01"))
    assert report.status == "accepted", [f.as_dict() for f in report.findings]
    assert sum(f.rows for f in report.files.values()) == sum(len(v) for v in rows.rows.values())


def test_valid_xml_delivery_is_accepted(rows: DeliveryRows, out: Path) -> None:
    report = run(rows.write(out, fmt="xml"))
    assert report.status == "accepted", [f.as_dict() for f in report.findings]


# -- tier 1 ---------------------------------------------------------------------------------
def test_E101_bad_file_name(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32001")
    bad = f.with_name(f.name.replace("_00_001", "_0_001"))
    f.rename(bad)
    rewrite_check(out, lambda c: c.with_entries(replace(e, name=bad.name) if e.name == f.name else e
                                                for e in c.entries))
    expect(run(out), "E101", field=None, file_contains="_0_001")


def test_E102_check_file_missing(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    next(out.glob("*.chk")).unlink()
    r = run(out)
    expect(r, "E102")
    assert r.of_code("E102")[0].expected == "P_42_202610_00.chk"
    assert r.stopped_at_tier == 1


@pytest.mark.parametrize("content,line", [(b"X|1.0.0|P|42\n", 1), (None, 2)])
def test_E103_malformed_check_file(rows: DeliveryRows, out: Path, content: bytes | None, line: int) -> None:
    rows.write(out)
    chk = next(out.glob("*.chk"))
    if content is None:
        lines = chk.read_bytes().split(b"\n")
        lines[1] = lines[1].replace(b"|", b";", 2)
        content = b"\n".join(lines)
    chk.write_bytes(content)
    expect(run(out), "E103", line=line)


def test_E104_listed_file_missing(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    data_file(out, "32002").unlink()
    r = run(out)
    expect(r, "E104")
    assert "32002" in (r.of_code("E104")[0].value or "")


def test_E105_file_not_listed(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    shutil.copy(f, f.with_name(f.name.replace("_001.", "_002.")))
    expect(run(out), "E105", file_contains="_002.")


def test_E106_size_and_E108_checksum(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32001")
    f.write_bytes(f.read_bytes() + b"202610|42|027\n")
    r = run(out)
    expect(r, "E106", file_contains="32001")
    expect(r, "E108", file_contains="32001")


def test_E108_checksum_alone(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32001")
    data = bytearray(f.read_bytes())
    i = data.index(b"|10|")
    data[i + 1:i + 3] = b"11"
    f.write_bytes(bytes(data))
    r = run(out)
    only(r, "E108")
    expect(r, "E108")


def test_E107_row_count(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    rewrite_check(out, lambda c: c.with_entries(replace(e, rows=e.rows + 1) if "32003" in e.name else e
                                                for e in c.entries))
    r = run(out)
    expect(r, "E107", file_contains="32003")
    f = r.of_code("E107")[0]
    assert int(f.expected or 0) == int(f.value or 0) + 1


def test_E109_cycle_mismatch(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    rewrite_check(out, lambda c: c.with_entries(replace(e, period="202609") if "32003" in e.name else e
                                                for e in c.entries))
    expect(run(out), "E109", file_contains="32003")


def test_E110_wrong_encoding_points_at_first_bad_line(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_CUST_INFO"][0].update(CUST_NAME="ASCII Ltd", ADDRESS="No 1 Road", MANAGER_NAME="Zhang")
    rows.write(out, encoding="GB18030")
    rewrite_check(out, lambda c: replace(c, encoding="UTF-8"))
    r = run(out)
    expect(r, "E110", line=2, file_contains="31201")
    assert r.stopped_at_tier == 1


@pytest.mark.parametrize("kind,line", [("mixed", 2), ("bare_cr", 1)])
def test_E111_line_endings(rows: DeliveryRows, out: Path, kind: str, line: int) -> None:
    rows.write(out)
    f = data_file(out, "32003")
    lines = f.read_bytes().split(b"\n")
    if kind == "mixed":
        lines[1] = lines[1] + b"\r"
    else:
        lines[0] = lines[0].replace(b"|", b"\r|", 1)
    f.write_bytes(b"\n".join(lines))
    refresh_check(out)
    expect(run(out), "E111", line=line, file_contains="32003")


def test_E112_empty_file(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    data_file(out, "32002").write_bytes(b"")
    refresh_check(out)
    expect(run(out), "E112", file_contains="32002")


def test_E113_truncated_file(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    data = f.read_bytes()
    f.write_bytes(data[:-10])
    refresh_check(out)
    r = run(out)
    expect(r, "E113", line=data[:-10].count(b"\n") + 1, file_contains="32002")


def test_E114_duplicate_file(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    rewrite_check(out, lambda c: c.with_entries([*c.entries, c.entries[0]]))
    expect(run(out), "E114")


def test_E114_same_content_twice(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    twin = f.with_name(f.name.replace("_001.", "_002."))
    shutil.copy(f, twin)
    rewrite_check(out, lambda c: c.with_entries([*c.entries, replace(
        next(e for e in c.entries if e.name == f.name), name=twin.name)]))
    expect(run(out), "E114", file_contains="_002.")


def test_E115_unknown_unit(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    bad = f.with_name(f.name.replace("32002", "39999"))
    f.rename(bad)
    rewrite_check(out, lambda c: c.with_entries(replace(e, name=bad.name) if e.name == f.name else e
                                                for e in c.entries))
    expect(run(out), "E115", file_contains="39999")


def test_E116_name_disagrees_with_check_file(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    bad = f.with_name(f.name.replace("_00_001", "_01_001"))
    f.rename(bad)
    rewrite_check(out, lambda c: c.with_entries(replace(e, name=bad.name) if e.name == f.name else e
                                                for e in c.entries))
    expect(run(out), "E116", field="resend", file_contains="_01_001")


@pytest.mark.parametrize("field,edit", [("encoding", {"encoding": "BIG5"}), ("delimiter", {"delimiter_name": "SEMI"})])
def test_E117_unsupported_encoding_or_delimiter(rows: DeliveryRows, out: Path, field: str, edit: dict[str, str]) -> None:
    rows.write(out)
    rewrite_check(out, lambda c: replace(c, **edit))
    expect(run(out), "E117", field=field)


def test_E118_file_too_large(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    expect(run(out, max_file_size=100), "E118", file_contains="31201")


def test_E119_unsupported_spec_version(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    rewrite_check(out, lambda c: replace(c, spec_version="2.0.0"))
    expect(run(out), "E119")


def test_E120_province_cannot_send_a_down_unit(spec: Spec, rows: DeliveryRows, out: Path) -> None:
    rows.rows = {"TOP500_LIST": [dict(
        LIST_VERSION="2026V01", NATIONAL_CUST_ID="G420000001", CUST_RANK=1, CUST_NAME="测试", C_TYPE_ID=
        rows.rows["VIP_CUST_INFO"][0]["C_TYPE_ID"], LEVEL_ID="1", LEAD_PROV_ID="42", LEAD_LATN_ID="027",
        HQ_MANAGER_NAME="王芳", HQ_MANAGER_PHONE="010-66010000", EFF_DATE="20260101", CHANGE_TYPE="A")]}
    expect(run(rows.write(out)), "E120", file_contains="31101")


# -- tier 2 ---------------------------------------------------------------------------------
def test_E201_column_count(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    lines = f.read_bytes().split(b"\n")
    lines[1] += b"|extra"
    f.write_bytes(b"\n".join(lines))
    refresh_check(out)
    r = run(out)
    expect(r, "E201", line=2, file_contains="32002")
    assert r.of_code("E201")[0].value == str(len(rows.spec.unit("VIP_SERV_SUM").fields) + 1)


def _xml_edit(out: Path, unit: str, edit: Callable[[str], str]) -> None:
    f = data_file(out, unit)
    f.write_text(edit(f.read_text("utf-8")), "utf-8")
    refresh_check(out)


def test_E202_xml_not_well_formed(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace("</LATN_ID>", "</LATN>", 1))
    expect(run(out), "E202", line=3, file_contains="32002")


def test_E203_xsd_violation(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace("<LATN_ID>", "<FOO>1</FOO><LATN_ID>", 1))
    expect(run(out), "E203", line=3, file_contains="32002")


def test_E204_wrong_namespace(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace("urn:chinatelecom:kam:interface:1.0", "urn:other", 1))
    expect(run(out), "E204", line=2, file_contains="32002")


XXE = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE VIP_SERV_SUM [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       '<VIP_SERV_SUM xmlns="urn:chinatelecom:kam:interface:1.0"><ROW><CYCLE_ID>&xxe;</CYCLE_ID></ROW></VIP_SERV_SUM>\n')
BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;'
        '&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
        '<VIP_SERV_SUM xmlns="urn:chinatelecom:kam:interface:1.0"><ROW><CYCLE_ID>&lol3;</CYCLE_ID></ROW>'
        '</VIP_SERV_SUM>\n')
DEEP = ('<?xml version="1.0"?>\n<VIP_SERV_SUM xmlns="urn:chinatelecom:kam:interface:1.0">' + "<ROW>" * 5000
        + "</ROW>" * 5000 + "</VIP_SERV_SUM>\n")


@pytest.mark.parametrize("text", [XXE, BOMB, DEEP], ids=["external-entity", "entity-bomb", "deep-nesting"])
def test_E205_hostile_xml_is_refused(rows: DeliveryRows, out: Path, text: str) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda _t: text)
    r = run(out)
    expect(r, "E205", file_contains="32002")
    assert "root:" not in str(r.as_dict())


# -- tier 3 ---------------------------------------------------------------------------------
FIELD_CASES = [
    ("E301", "VIP_CUST_INFO", "CUST_NAME", ""),
    ("E302", "VIP_SUMMARY", "CUST_CNT", "1O"),
    ("E303", "VIP_SUMMARY", "INCOME_AMT", "1,234.00"),
    ("E303", "VIP_INCOME_SUM", "INCOME_AMT", "12.345"),
    ("E304", "VIP_CUST_INFO", "JOIN_DATE", "20250230"),
    ("E305", "VIP_CUST_INFO", "CUST_NAME", "长" * 101),
    ("E306", "VIP_CUST_INFO", "POSTCODE", "43000A"),
    ("E307", "VIP_CUST_INFO", "LEVEL_ID", "9"),
    ("E307", "VIP_CUST_INFO", "NATIONAL_CUST_ID", "X420000001"),
    ("E308", "VIP_CUST_CONTACT", "CONTACT_SEQ", "0"),
    ("E308", "VIP_SERV_SUM", "NEW_SERV_CNT", "-1"),
    ("E309", "VIP_SUMMARY", "LATN_ID", "42"),
    ("W301", "VIP_CUST_INFO", "CUST_NAME", "测试有限公司 "),
]


@pytest.mark.parametrize("code,unit,field,value", FIELD_CASES)
def test_field_checks(rows: DeliveryRows, out: Path, code: str, unit: str, field: str, value: str) -> None:
    rows.rows[unit][1][field] = value
    r = run(rows.write(out))
    expect(r, code, line=2, field=field, file_contains=rows.spec.unit(unit).code)
    assert r.of_code(code)[0].value == value


def test_field_checks_in_xml_carry_an_xpath(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_SUMMARY"][1]["CUST_CNT"] = "abc"
    r = run(rows.write(out, fmt="xml"))
    f = r.of_code("E302")[0]
    assert f.xpath == "/VIP_SUMMARY/ROW[2]/CUST_CNT" and f.field == "CUST_CNT" and f.line and f.line > 2


def test_code_lists_follow_the_version_in_force(spec: Spec) -> None:
    """A code removed by a later code-list version is valid before that date and not after."""
    from schemas.validation.compiler import RunContext, Sinks, compile_unit

    removal = next(((d, v) for d in spec.domains.values() for v in d.versions if v.removed
                    and spec.referencing_fields(d.domain)), None)
    if removal is None:
        pytest.skip("no code list version removes a code used by a unit")
    dom, ver = removal
    code = ver.removed[0]
    before = dom.version_on(ver.effective_from.replace(day=1) - __import__("datetime").timedelta(days=1))
    assert code in before.codes and code not in ver.codes
    unit, field = spec.referencing_fields(dom.domain)[0]
    for day, ok in ((ver.effective_from - __import__("datetime").timedelta(days=40), True), (ver.effective_from, False)):
        ctx = RunContext(spec=spec, day=day, period="x", party="00", party_province=None, party_network=None)
        source, env, _ = compile_unit(ctx, unit, Sinks())
        codes = [v for k, v in env.items() if k.startswith("CODES") or k.startswith("ALL")]
        assert any(code in c for c in codes) is ok


# -- tier 4 ---------------------------------------------------------------------------------
def test_E401_duplicate_key(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_SERV_SUM"].append(dict(rows.rows["VIP_SERV_SUM"][0]))
    r = run(rows.write(out))
    expect(r, "E401", line=len(rows.rows["VIP_SERV_SUM"]), file_contains="32002")
    assert r.of_code("E401")[0].expected == "1"


def test_E401_across_sequence_files(rows: DeliveryRows, out: Path, spec: Spec) -> None:
    from schemas.writer import DeliveryWriter

    w = DeliveryWriter(spec, out, "P", "42", "202610")
    row = rows.rows["VIP_SERV_SUM"][0]
    for seq in (1, 2):
        # Same key, different content: identical files would be a duplicate file (E114).
        with w.unit("VIP_SERV_SUM", seq=seq) as u:
            u.write(dict(row, SERV_CNT_LY=row["SERV_CNT_LY"] + seq))
    w.close()
    r = run(out)
    expect(r, "E401", line=1, file_contains="_002.")
    assert r.of_code("E401")[0].expected.endswith("_001.txt:1")


def test_E402_row_cycle(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_SUMMARY"][0]["CYCLE_ID"] = "202609"
    expect(run(rows.write(out)), "E402", line=1, field="CYCLE_ID")


def test_E403_province_not_sender(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_INCOME_SUM"][0]["PROV_ID"] = "44"
    expect(run(rows.write(out)), "E403", line=1, field="PROV_ID")


# -- tier 6 ---------------------------------------------------------------------------------
def test_E601_cycle_closed(rows: DeliveryRows, out: Path) -> None:
    r = run(rows.write(out), ValidationContext(cycle_state="closed"))
    expect(r, "E601")
    assert r.of_code("E601")[0].value == "202610"


def test_E602_unknown_cycle(rows: DeliveryRows, out: Path) -> None:
    expect(run(rows.write(out), ValidationContext(known_cycles=frozenset({"202609"}))), "E602")


def test_E603_local_network_sender(spec: Spec, out: Path) -> None:
    from tests.support.deliveries import valid_rows

    d = valid_rows(spec)
    nets = sorted({r["LATN_ID"] for r in d.rows["VIP_SUMMARY"]})
    d.party = nets[0]
    r = run(d.write(out))
    expect(r, "E603", field="LATN_ID")
    assert {f.value for f in r.of_code("E603")} == set(nets[1:])


def test_E604_customer_not_on_list(rows: DeliveryRows, out: Path) -> None:
    ctx = ValidationContext(list_ids=frozenset(rows.list_ids[1:]), list_version="2026V01")
    r = run(rows.write(out), ctx)
    expect(r, "E604", line=1, field="NATIONAL_CUST_ID")
    assert r.of_code("E604")[0].expected == "2026V01"


def test_E605_stale_resend(rows: DeliveryRows, out: Path) -> None:
    expect(run(rows.write(out, resend=1), ValidationContext(last_resend=1)), "E605")


def test_E606_sender_not_authorised(rows: DeliveryRows, out: Path) -> None:
    r = run(rows.write(out), ValidationContext(authorised_parties=frozenset({"44"}), account="gd-agent"))
    expect(r, "E606")
    assert r.of_code("E606")[0].expected == "gd-agent"


def test_E607_unit_not_due(rows: DeliveryRows, out: Path) -> None:
    r = run(rows.write(out), ValidationContext(units_due=frozenset({"32001", "32002", "32003"})))
    expect(r, "E607", field="31201")


def test_W601_outlier_and_W602_opening(rows: DeliveryRows, out: Path) -> None:
    first = rows.rows["VIP_SUMMARY"][0]
    prev = {"VIP_SUMMARY": {first["LATN_ID"]: {"CUST_CNT": "8", "INCOME_AMT": str(first["INCOME_AMT"] * 3)}}}
    r = run(rows.write(out), ValidationContext(previous=prev))
    expect(r, "W601", line=1, field="INCOME_AMT")
    expect(r, "W602", line=1, field="LAST_CUST_CNT")
    assert r.status == "accepted_with_warnings"


def test_W603_late(rows: DeliveryRows, out: Path) -> None:
    r = run(rows.write(out), ValidationContext(deadline="20261110180000", received_at="20261111090000"))
    expect(r, "W603")
    assert r.status == "accepted_with_warnings"


def test_every_catalogue_code_has_a_test(spec: Spec) -> None:
    """Each catalogue code is asserted by a test of this module (checked on the source)."""
    source = Path(__file__).read_text("utf-8")
    missing = sorted(c for c in spec.errors if f'"{c}"' not in source)
    assert not missing, f"catalogue codes without a triggering test: {missing}"


# -- XML shapes the fast path leaves to the diagnostic pass ---------------------------------
def test_xml_with_no_rows_is_checked_for_its_root(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_SERV_SUM"] = []
    rows.write(out, fmt="xml")
    r = run(out)
    assert not r.of_code("E204") and r.files[data_file(out, "32002").name].rows == 0
    _xml_edit(out, "32002", lambda t: t.replace("<VIP_SERV_SUM ", "<VIP_SUMMARY ").replace("</VIP_SERV_SUM>",
                                                                                             "</VIP_SUMMARY>"))
    expect(run(out), "E204", line=2, file_contains="32002")


def test_xml_wrong_root_with_rows_is_E204_not_E203(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace("<VIP_SERV_SUM ", "<VIP_SUMMARY ").replace("</VIP_SERV_SUM>",
                                                                                             "</VIP_SUMMARY>"))
    r = run(out)
    expect(r, "E204", line=2, file_contains="32002")
    assert not r.of_code("E203")


def test_xml_value_nested_in_a_field_is_E203_at_its_line(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace("<SERV_CNT>", "<SERV_CNT><B>", 2).replace("</SERV_CNT>",
                                                                                          "</B></SERV_CNT>", 2))
    expect(run(out), "E203", line=3, file_contains="32002")


# -- issue 13: smaller validator points -----------------------------------------------------
def test_E121_check_file_listing_no_data_files(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    for f in out.iterdir():
        if not f.name.endswith(".chk"):
            f.unlink()
    rewrite_check(out, lambda c: c.with_entries([]))
    r = run(out)
    expect(r, "E121", file_contains=".chk")
    assert r.stopped_at_tier == 1 and r.status == REJECTED


@pytest.mark.parametrize("where", ["header", "file line"])
def test_E103_check_file_stamp_must_be_a_real_date_time(rows: DeliveryRows, out: Path, where: str) -> None:
    rows.write(out)
    if where == "header":
        rewrite_check(out, lambda c: replace(c, generated_at="20261345999999"))
    else:
        rewrite_check(out, lambda c: c.with_entries([replace(e, generated_at="20260230120000") for e in c.entries]))
    r = run(out)
    expect(r, "E103", line=1 if where == "header" else 2)
    f = r.of_code("E103")[0]
    assert f.value in ("20261345999999", "20260230120000") and "YYYYMMDDHHMMSS" in (f.expected or "")


def test_E103_check_file_counts_take_ascii_digits_only(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    chk = next(out.glob("*.chk"))
    lines = chk.read_text("utf-8").split("\n")
    parts = lines[1].split("|")
    parts[3] = "²"  # str.isdigit() says yes; int() says no
    lines[1] = "|".join(parts)
    chk.write_text("\n".join(lines), "utf-8")
    expect(run(out), "E103", line=2)


@pytest.mark.parametrize("unit,field,value", [("VIP_SUMMARY", "CUST_CNT", "12345678901"),
                                              ("VIP_SUMMARY", "INCOME_AMT", "12345678901234567.00")])
def test_E305_number_with_too_many_digits(rows: DeliveryRows, out: Path, unit: str, field: str, value: str) -> None:
    rows.rows[unit][1][field] = value
    r = run(rows.write(out))
    expect(r, "E305", line=2, field=field)
    assert not r.of_code("E302") and not r.of_code("E303")
    assert "digits" in (r.of_code("E305")[0].expected or "")


def test_E205_xinclude_is_refused_not_resolved(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace(
        "<ROW>", '<ROW><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd" parse="text"/>', 1))
    r = run(out)
    expect(r, "E205", file_contains="32002")
    assert not r.of_code("E203") and "root:" not in str(r.as_dict())


@pytest.mark.parametrize("codec,declared", [("utf-16", "UTF-16"), ("utf-8", "ISO-8859-1")])
def test_E110_xml_in_an_encoding_the_standard_does_not_have(rows: DeliveryRows, out: Path, codec: str,
                                                            declared: str) -> None:
    rows.write(out, fmt="xml")
    f = data_file(out, "32002")
    text = f.read_text("utf-8").replace('encoding="UTF-8"', f'encoding="{declared}"', 1)
    f.write_bytes(text.encode(codec))
    refresh_check(out)
    r = run(out)
    expect(r, "E110", line=1, file_contains="32002")
    assert r.stopped_at_tier == 1


# -- issue 13: a file that cannot be read does not bury its one real error ------------------
def test_unreadable_unit_skips_the_rules_that_need_it(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32001", lambda t: t.replace("urn:chinatelecom:kam:interface:1.0", "urn:other", 1))
    r = run(out)
    assert set(r.counts) == {"E204"}, dict(r.counts)  # no R32001-07, X-001..X-011 about unread rows
    assert r.sorted_findings()[0].code == "E204"
    [skipped] = r.skipped
    assert skipped.unit == "VIP_SUMMARY" and skipped.code == "E204"
    assert {"R32001-07", "X-001", "X-009", "X-010", "X-011"} <= set(skipped.rules)
    assert "X-004" not in skipped.rules  # rules that do not need 32001 still run
    assert r.as_dict()["skipped"][0]["rules"] == list(skipped.rules)


def test_invalid_byte_in_an_xml_file_gives_one_finding_first(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    f = data_file(out, "31201")
    data = f.read_bytes()
    at = data.index("湖北".encode("utf-8"))
    f.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    refresh_check(out)
    r = run(out)
    first = r.sorted_findings()[0]
    assert first.code in ("E202", "E110") and "31201" in (first.file or "")
    assert not any(c.startswith("X-") for c in r.counts), dict(r.counts)
    assert r.skipped and r.skipped[0].unit == "VIP_CUST_INFO"


# -- issue 14: any byte gets a verdict; a DOCTYPE anywhere is refused -----------------------
def _feedback_round_trips(report: Report) -> None:
    """The feedback files and the JSON report of any report are written and parse back."""
    import json

    from lxml import etree

    from schemas.validation import file_feedback_xml, record_feedback_xml, report_json

    etree.fromstring(file_feedback_xml(report))
    etree.fromstring(record_feedback_xml(report))
    json.loads(report_json(report).encode("utf-8"))


FORBIDDEN_CASES = [
    ("txt", "UTF-8", "VIP_SUMMARY", "CUST_CNT", "14\x0006", "14\\x0006"),
    ("txt", "GB18030", "VIP_SUMMARY", "CUST_CNT", "14\x0006", "14\\x0006"),
    ("txt", "UTF-8", "VIP_CUST_INFO", "CUST_NAME", "测试\x1b公司", "测试\\x1b公司"),
    ("txt", "GB18030", "VIP_CUST_INFO", "CUST_NAME", "测试\x01公司", "测试\\x01公司"),
    ("txt", "UTF-8", "VIP_CUST_INFO", "CUST_NAME", "测试\x1f公司", "测试\\x1f公司"),  # US, not the delimiter
    ("txt", "UTF-8", "VIP_CUST_INFO", "CUST_NAME", "测试\ufffe公司", "测试\\ufffe公司"),
    ("txt", "GB18030", "VIP_CUST_INFO", "CUST_NAME", "测试\uffff公司", "测试\\uffff公司"),
    ("txt", "UTF-8", "VIP_CUST_INFO", "CUST_NAME", "测试\x85公司", "测试\\x85公司"),
    ("xml", "UTF-8", "VIP_CUST_INFO", "CUST_NAME", "测试\x7f公司", "测试\\x7f公司"),
    ("xml", "GB18030", "VIP_SUMMARY", "CUST_CNT", "14\x8506", "14\\x8506"),
    ("xml", "UTF-8", "VIP_CUST_INFO", "CUST_NAME", "测试\n公司", "测试\\x0a公司"),  # a line break in a value
]


@pytest.mark.parametrize("fmt,encoding,unit,field,value,shown", FORBIDDEN_CASES)
def test_E310_forbidden_character_in_a_value(rows: DeliveryRows, out: Path, fmt: str, encoding: str, unit: str,
                                             field: str, value: str, shown: str) -> None:
    rows.rows[unit][1][field] = value
    r = run(rows.write(out, fmt=fmt, encoding=encoding))
    expect(r, "E310", line=2 if fmt == "txt" else "any", field=field, file_contains=rows.spec.unit(unit).code)
    f = r.of_code("E310")[0]
    assert f.value == shown and "found" in (f.expected or "") and shown.split("\\")[1][:1] in "xu"
    # The value gets E310 alone: no E302/E305/W301 for the same field of the same row.
    assert [x.code for x in r.findings if x.field == field and x.line == f.line] == ["E310"], dict(r.counts)
    _feedback_round_trips(r)
    from lxml import etree

    from schemas.validation import record_feedback_xml

    fbr = etree.fromstring(record_feedback_xml(r))
    assert shown in [e.text for e in fbr.iter("{*}Value")]


@pytest.mark.parametrize("delimiter", ["PIPE", "TAB", "US"])
def test_E310_a_tab_inside_a_value_is_allowed_where_tab_is_not_the_delimiter(rows: DeliveryRows, out: Path,
                                                                             delimiter: str) -> None:
    rows.rows["VIP_CUST_INFO"][1]["CUST_NAME"] = "测试\t公司" if delimiter != "TAB" else "测试\x01公司"
    r = run(rows.write(out, delimiter=delimiter))
    if delimiter == "TAB":
        expect(r, "E310", line=2, field="CUST_NAME")
    else:
        assert not r.of_code("E310") and r.status == "accepted", dict(r.counts)


def test_E310_in_a_big_file_split_across_processes(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_CUST_INFO"][2]["CUST_NAME"] = "测试\x00公司"
    rows.rows["VIP_SUMMARY"][1]["CUST_CNT"] = "9" * 5000
    rows.write(out, encoding="GB18030")
    serial = run(out, core="rows")
    split = run(out, parallel_min_bytes=0, workers=2, core="rows")  # the row path's own split across processes
    columnar = run(out)
    assert dict(split.counts) == dict(serial.counts) and {"E310", "E305"} <= set(serial.counts)
    assert [f.as_dict() for f in split.sorted_findings()] == [f.as_dict() for f in serial.sorted_findings()]
    assert [f.as_dict() for f in columnar.findings] == [f.as_dict() for f in serial.findings]
    expect(split, "E310", line=3, field="CUST_NAME")


def test_E202_a_nul_in_an_xml_file_is_not_well_formed_at_its_line(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    f = data_file(out, "32002")
    lines = f.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b">20", b">2\x000", 1)
    f.write_bytes(b"\n".join(lines))
    refresh_check(out)
    r = run(out)
    expect(r, "E202", line=4, file_contains="32002")
    _feedback_round_trips(r)


@pytest.mark.parametrize("where", ["file name", "spec version", "period", "stray CR"])
def test_E103_forbidden_character_in_the_check_file(rows: DeliveryRows, out: Path, where: str) -> None:
    rows.write(out)
    chk = next(out.glob("*.chk"))
    lines = chk.read_bytes().split(b"\n")
    line = 1 if where in ("spec version", "stray CR") else 2
    if where == "file name":
        lines[1] = lines[1].replace(b"_001.txt", b"_001\x00.txt", 1)
    elif where == "spec version":
        lines[0] = lines[0].replace(b"|1.0.", b"|1\x01.0.", 1)
    elif where == "period":
        parts = lines[1].split(b"|")
        parts[4] = "2026\u200910\uffff".encode("utf-8")
        lines[1] = b"|".join(parts)
    else:
        lines[0] += b"\r\r"
    chk.write_bytes(b"\n".join(lines))
    r = run(out)
    expect(r, "E103", line=line)
    assert r.stopped_at_tier == 1 and "\\" in (r.of_code("E103")[0].value or "")
    _feedback_round_trips(r)


def test_E101_control_characters_in_a_file_name_are_shown_escaped(rows: DeliveryRows, out: Path) -> None:
    rows.write(out)
    f = data_file(out, "32002")
    (out / (f.name + "\x01\x7f\u0085")).write_bytes(f.read_bytes() + b"\n")
    r = run(out)
    expect(r, "E101")
    assert r.of_code("E101")[0].value == f.name + "\\x01\\x7f\\x85"
    _feedback_round_trips(r)


@pytest.mark.parametrize("fmt", ["txt", "xml"])
@pytest.mark.parametrize("unit,field", [("VIP_SUMMARY", "CUST_CNT"), ("VIP_SUMMARY", "INCOME_AMT")])
def test_E305_a_5000_digit_number_is_a_finding(rows: DeliveryRows, out: Path, fmt: str, unit: str,
                                                field: str) -> None:
    rows.rows[unit][1][field] = "9" * 5000 + (".00" if field == "INCOME_AMT" else "")
    r = run(rows.write(out, fmt=fmt))
    expect(r, "E305", field=field)
    _feedback_round_trips(r)


@pytest.mark.parametrize("column", [2, 3])
def test_E103_a_5000_digit_size_or_row_count(rows: DeliveryRows, out: Path, column: int) -> None:
    rows.write(out)
    chk = next(out.glob("*.chk"))
    lines = chk.read_text("utf-8").split("\n")
    parts = lines[1].split("|")
    parts[column] = "9" * 5000
    lines[1] = "|".join(parts)
    chk.write_text("\n".join(lines), "utf-8")
    expect(run(out), "E103", line=2)


PAD = 100 * 1024


@pytest.mark.parametrize("where,pad", [
    ("after 100 KiB of comment", "<!--" + "x" * PAD + "-->\n"),
    ("after 100 KiB of white space", " " * PAD + "\n"),
    ("after 100 KiB of comments and PIs", ("<!-- a -->\n<?pi b?>\n" * (PAD // 20))),
])
def test_E205_doctype_after_a_long_prolog(rows: DeliveryRows, out: Path, where: str, pad: str) -> None:
    rows.write(out, fmt="xml")
    doctype = '<!DOCTYPE VIP_SERV_SUM [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    _xml_edit(out, "32002", lambda t: t.replace("?>\n", "?>\n" + pad + doctype, 1).replace(
        "<CYCLE_ID>202610", "<CYCLE_ID>&xxe;202610", 1))
    r = run(out)
    expect(r, "E205", line=2 + pad.count("\n"), file_contains="32002")
    assert r.of_code("E205")[0].value == "<!DOCTYPE" and "root:" not in str(r.as_dict())
    _feedback_round_trips(r)


@pytest.mark.parametrize("where", ["root start", "inside a row", "after the root", "entity alone"])
def test_E205_declaration_after_the_root_starts(rows: DeliveryRows, out: Path, where: str) -> None:
    rows.write(out, fmt="xml")
    decl = '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'

    def edit(t: str) -> str:
        if where == "root start":
            return t.replace("<ROW>", decl + "\n<ROW>", 1)
        if where == "inside a row":
            return t.replace("<ROW>", "<ROW>" + decl, 1)
        if where == "entity alone":
            return t.replace("<ROW>", '<!ENTITY xxe SYSTEM "file:///etc/passwd"><ROW>', 1)
        return t + decl + "\n"

    _xml_edit(out, "32002", edit)
    r = run(out)
    expect(r, "E205", file_contains="32002")
    f = r.of_code("E205")[0]
    assert f.value in ("<!DOCTYPE", "<!ENTITY") and f.line and f.line >= 3
    assert "root:" not in str(r.as_dict())


def test_E205_not_for_a_doctype_only_mentioned_in_a_comment_or_cdata(rows: DeliveryRows, out: Path) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: t.replace("?>\n", "?>\n<!-- no <!DOCTYPE here -->\n<?note <!ENTITY ?>\n", 1)
              .replace("<ROW>", "<ROW><!-- <!DOCTYPE --><![CDATA[]]>", 1))
    r = run(out)
    assert r.status == "accepted", dict(r.counts)


def test_a_value_of_megabytes_is_a_finding_with_a_bounded_value(rows: DeliveryRows, out: Path) -> None:
    rows.rows["VIP_CUST_INFO"][1]["ADDRESS"] = "长" * (3 << 20)  # longer than any line is read
    r = run(rows.write(out, encoding="GB18030"))
    codes = {f.code for f in r.findings if f.line == 2}
    assert codes & {"E201", "E305"} and r.status == REJECTED, dict(r.counts)
    assert all(len(f.value or "") < 1100 for f in r.findings)
    _feedback_round_trips(r)


@pytest.mark.parametrize("attr,value", [("party", "44"), ("unit", "32003"), ("period", "202609")])
def test_E116_xml_root_attributes_repeat_the_file_name(rows: DeliveryRows, out: Path, attr: str, value: str) -> None:
    rows.write(out, fmt="xml")
    _xml_edit(out, "32002", lambda t: re.sub(rf'\b{attr}="[^"]*"', f'{attr}="{value}"', t, count=1))
    r = run(out)
    expect(r, "E116", line=2, field=f"@{attr}", file_contains="32002")
    assert r.of_code("E116")[0].value == value and r.stopped_at_tier == 1
