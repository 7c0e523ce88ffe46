"""Every unit rule and cross-unit rule of the standard, triggered by a file that breaks it."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

from schemas import Spec
from schemas.validation import ValidationContext, ValidationOptions, validate_paths
from tests.support.deliveries import DeliveryRows, networks

Mutation = Callable[[DeliveryRows], None]


def _set(unit: str, index: int, **values: object) -> Mutation:
    def mutate(d: DeliveryRows) -> None:
        d.rows[unit][index].update(values)
    return mutate


def _other_province_network(d: DeliveryRows) -> str:
    return networks(d.spec, "44", __import__("datetime").date(2026, 10, 1))[0]


def _bank_needed(d: DeliveryRows) -> None:
    from tests.support.deliveries import first_code_needing_bank

    d.rows["VIP_CUST_INFO"][1].update(PAY_METH=first_code_needing_bank(d.spec)[0], BANK_ID=None, BANK_ACCT=None)


def _foreign_network(unit: str, index: int) -> Mutation:
    def mutate(d: DeliveryRows) -> None:
        d.rows[unit][index]["LATN_ID"] = _other_province_network(d)
    return mutate


def _dup_prov_cust(d: DeliveryRows) -> None:
    d.rows["VIP_CUST_INFO"][1]["PROV_CUST_ID"] = d.rows["VIP_CUST_INFO"][0]["PROV_CUST_ID"]


def _drop_network(d: DeliveryRows) -> None:
    net = d.rows["VIP_SUMMARY"].pop()["LATN_ID"]
    for unit in ("VIP_SERV_SUM", "VIP_INCOME_SUM"):
        d.rows[unit] = [r for r in d.rows[unit] if r["LATN_ID"] != net]


def _orphan_contact(d: DeliveryRows) -> None:
    d.rows["VIP_CUST_CONTACT"][1]["NATIONAL_CUST_ID"] = "G429999999"


def _orphan_product(d: DeliveryRows) -> None:
    d.rows["VIP_CUST_PROD"][2]["NATIONAL_CUST_ID"] = "G429999999"


def _two_primaries(d: DeliveryRows) -> None:
    extra = dict(d.rows["VIP_CUST_CONTACT"][0], CONTACT_SEQ=2)
    d.rows["VIP_CUST_CONTACT"].append(extra)


def _summary_income(field: str) -> Mutation:
    def mutate(d: DeliveryRows) -> None:
        d.rows["VIP_SUMMARY"][0][field] = d.rows["VIP_SUMMARY"][0][field] + Decimal("0.01")
    return mutate


def _details_exceed_summary(d: DeliveryRows) -> None:
    row = d.rows["VIP_CUST_PROD"][0]
    row["INCOME_AMT"] = row["INCOME_AMT"] + Decimal("500000.00")


def _drop_last_network(d: DeliveryRows, *units: str) -> None:
    """Take the last local network out of VIP_SUMMARY and of ``units`` (it stays in the others)."""
    gone = d.rows["VIP_SUMMARY"].pop()["LATN_ID"]
    for u in units:
        d.rows[u] = [r for r in d.rows[u] if r["LATN_ID"] != gone]


def _serv_network_not_in_summary(d: DeliveryRows) -> None:
    _drop_last_network(d, "VIP_INCOME_SUM")  # its VIP_SERV_SUM row, the last line, is now orphaned


def _income_network_not_in_summary(d: DeliveryRows) -> None:
    _drop_last_network(d, "VIP_SERV_SUM")  # its two VIP_INCOME_SUM rows, the last lines, are orphaned


def _top500_count(d: DeliveryRows) -> None:
    d.rows["VIP_SUMMARY"][1]["TOP500_CUST_CNT"] += 1


# rule id, mutation, file's unit code, line (None: file level; negative: from the file's end), field
UPLOAD_CASES: list[tuple[str, Mutation, str, int | None, str | None]] = [
    ("R31201-01", _bank_needed, "31201", 2, "BANK_ID"),
    ("R31201-02", _foreign_network("VIP_CUST_INFO", 0), "31201", 1, "LATN_ID"),
    ("R31201-03", _set("VIP_CUST_INFO", 2, IS_IMPORTANT="N"), "31201", 3, "IS_IMPORTANT"),
    ("R31201-04", _dup_prov_cust, "31201", 2, "PROV_CUST_ID"),
    ("R31202-01", _set("VIP_CUST_CONTACT", 0, PHONE=None, MOBILE=None), "31202", 1, "PHONE"),
    ("R31203-01", _foreign_network("VIP_CUST_PROD", 1), "31203", 2, "LATN_ID"),
    ("R31203-02", _set("VIP_CUST_PROD", 1, INCOME_AMT=Decimal("-5.00")), "31203", 2, "INCOME_AMT"),
    ("R32001-01", _set("VIP_SUMMARY", 1, CUST_CNT_LC=3, LOST_CUST_CNT=0), "32001", 2, "CUST_CNT"),
    ("R32001-02", _set("VIP_SUMMARY", 0, NEW_CUST_CNT=3), "32001", 1, "CUST_CNT"),
    ("R32001-03", _set("VIP_SUMMARY", 0, TOP500_CUST_CNT=11), "32001", 1, "TOP500_CUST_CNT"),
    ("R32001-04", _set("VIP_SUMMARY", 1, INCOME_YTD_AMT=Decimal("1.00")), "32001", 2, "INCOME_YTD_AMT"),
    ("R32001-05", _set("VIP_SUMMARY", 0, MANAGER_CNT=0), "32001", 1, "MANAGER_CNT"),
    ("R32001-06", _foreign_network("VIP_SUMMARY", 1), "32001", 2, "LATN_ID"),
    ("R32001-07", _drop_network, "32001", None, "LATN_ID"),
    ("R32002-01", _set("VIP_SERV_SUM", 0, SERV_CNT=24), "32002", 1, "SERV_CNT"),
    ("R32002-02", _set("VIP_SERV_SUM", 1, CUST_CNT=0), "32002", 2, "CUST_CNT"),
    ("R32002-03", _foreign_network("VIP_SERV_SUM", 0), "32002", 1, "LATN_ID"),
    ("R32003-01", _set("VIP_INCOME_SUM", 0, INCOME_YTD_AMT=Decimal("0.01")), "32003", 1, "INCOME_YTD_AMT"),
    ("R32003-02", _set("VIP_INCOME_SUM", 3, INCOME_LY_YTD_AMT=Decimal("0.01")), "32003", 4, "INCOME_LY_YTD_AMT"),
    ("R32003-03", _foreign_network("VIP_INCOME_SUM", 2), "32003", 3, "LATN_ID"),
    ("X-001", _summary_income("INCOME_AMT"), "32001", 1, "INCOME_AMT"),
    ("X-002", _summary_income("INCOME_YTD_AMT"), "32001", 1, "INCOME_YTD_AMT"),
    ("X-003", _summary_income("INCOME_LY_AMT"), "32001", 1, "INCOME_LY_AMT"),
    ("X-004", _orphan_contact, "31202", 2, "NATIONAL_CUST_ID"),
    ("X-005", _orphan_product, "31203", 3, "NATIONAL_CUST_ID"),
    ("X-006", _two_primaries, "31201", 1, "NATIONAL_CUST_ID"),
    ("X-008", _details_exceed_summary, "31203", 1, "INCOME_AMT"),
    ("X-009", _serv_network_not_in_summary, "32002", -1, "LATN_ID"),
    ("X-010", _income_network_not_in_summary, "32003", -2, "LATN_ID"),
    ("X-011", _top500_count, "32001", 2, "TOP500_CUST_CNT"),
]


@pytest.mark.parametrize("rule,mutate,unit,line,field", UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES])
def test_upload_rules(rows: DeliveryRows, tmp_path: Path, rule: str, mutate: Mutation, unit: str,
                      line: int | None, field: str | None) -> None:
    mutate(rows)
    if line is not None and line < 0:
        unit_name = rows.spec.unit(unit).name
        line = len(rows.rows[unit_name]) + 1 + line
    report = validate_paths([rows.write(tmp_path / "d")])[0]
    found = report.of_code(rule)
    assert found, f"{rule} not raised: {dict(report.counts)}"
    f = found[0]
    assert (f.file or "").split("_")[3] == unit and f.line == line and f.field == field, f.as_dict()
    assert "{" not in f.message_zh + f.message_en
    expected_status = "rejected" if report.severity_of(rule) == "error" else None
    if expected_status:
        assert report.status == expected_status


def test_X007_listed_customer_without_details(rows: DeliveryRows, tmp_path: Path) -> None:
    listed = frozenset([*rows.list_ids, "G420000099"])
    report = validate_paths([rows.write(tmp_path / "d")],
                            context=ValidationContext(list_ids=listed, list_version="2026V01"))[0]
    assert [f.value for f in report.of_code("X-007")] == ["G420000099"]
    assert report.status == "rejected"


def _list_row(d: DeliveryRows, **extra: object) -> dict[str, object]:
    row: dict[str, object] = dict(
        LIST_VERSION="2026V01", NATIONAL_CUST_ID="G420000001", CUST_RANK=1, CUST_NAME="中国石油天然气集团有限公司",
        GROUP_PARENT_NAME=None, C_TYPE_ID=d.rows["VIP_CUST_INFO"][0]["C_TYPE_ID"], LEVEL_ID="1", LEAD_PROV_ID="42",
        LEAD_LATN_ID="027", HQ_MANAGER_NAME="王芳", HQ_MANAGER_PHONE="010-66010000", EFF_DATE="20260101",
        EXP_DATE=None, CHANGE_TYPE="A")
    row.update(extra)
    return row


@pytest.mark.parametrize("rule,extra,field", [
    ("R31101-01", {"EXP_DATE": "20251231"}, "EXP_DATE"),
    ("R31101-02", {"CHANGE_TYPE": "D"}, "EXP_DATE"),
    ("R31101-03", {"LEAD_LATN_ID": "020"}, "LEAD_LATN_ID"),
])
def test_list_rules(rows: DeliveryRows, tmp_path: Path, rule: str, extra: dict[str, object], field: str) -> None:
    d = DeliveryRows(rows.spec, "00", "2026V01", {"TOP500_LIST": [_list_row(rows), _list_row(
        rows, NATIONAL_CUST_ID="G420000002", CUST_RANK=2, **extra)]})
    report = validate_paths([d.write(tmp_path / "d", mode="D", fmt="xml")])[0]
    found = report.of_code(rule)
    assert found and found[0].line and found[0].field == field, dict(report.counts)
    assert set(report.counts) == {rule}


@pytest.mark.parametrize("rule,extra,field", [
    ("R32004-01", {"END_DATE": "20260930"}, "END_DATE"),
    ("R32004-02", {"DEADLINE": "20261030120000"}, "DEADLINE"),
    ("R32004-02", {"DEADLINE": "20261031180000"}, "DEADLINE"),  # on the period's last day: not after it
])
def test_calendar_rules(rows: DeliveryRows, tmp_path: Path, rule: str, extra: dict[str, object], field: str) -> None:
    ok = dict(CYCLE_ID="202610", REP_FREQ="M", CYCLE_NAME="2026年10月", BEGIN_DATE="20261001", END_DATE="20261031",
              DEADLINE="20261110180000", UNITS_DUE="31201,31202,31203,32001,32002,32003", REMARK=None)
    d = DeliveryRows(rows.spec, "00", "2026", {"REP_CYCLE": [ok, dict(ok, CYCLE_ID="202611", **extra)]})
    report = validate_paths([d.write(tmp_path / "d", mode="D")])[0]
    found = report.of_code(rule)
    assert found and found[0].line == 2 and found[0].field == field, dict(report.counts)


def test_every_rule_has_a_test(spec: Spec) -> None:
    """Each unit and cross-unit rule id is exercised by this module (checked on the source)."""
    source = Path(__file__).read_text("utf-8")
    missing = sorted(r.id for r in spec.all_rules() if f'"{r.id}"' not in source)
    assert not missing, f"rules without a triggering test: {missing}"


def test_occurrences_are_capped_but_totals_exact(rows: DeliveryRows, tmp_path: Path) -> None:
    for r in rows.rows["VIP_CUST_INFO"]:
        r["POSTCODE"] = "ABCDEF"
    report = validate_paths([rows.write(tmp_path / "d")], options=ValidationOptions(cap=2))[0]
    assert report.counts["E306"] == 3
    assert len(report.of_code("E306")) == 2
    summary = {c["code"]: c for c in report.code_summary()}
    assert summary["E306"]["count"] == 3 and summary["E306"]["listed"] == 2
