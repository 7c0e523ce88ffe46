"""The engine as a whole: encodings, formats, outputs and the agent's validate command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from schemas import Spec
from schemas.validation import (
    ValidationContext, file_feedback_xml, receipt_xml, record_feedback_xml, render_text, validate_paths,
)
from province_agent.cli import main as agent
from tests.support.deliveries import DeliveryRows, data_file

RARE = "𠀀鑫燚犇淼垚兲（测试）·股份有限公司"  # includes a 4-byte GB18030 character (U+20000)


@pytest.mark.parametrize("encoding,delimiter,newline", [
    ("GB18030", "PIPE", "\r\n"), ("UTF-8", "TAB", "\n"), ("GB18030", "US", "\n"), ("UTF-8", "CARET", "\r\n"),
])
def test_chinese_text_round_trips(rows: DeliveryRows, tmp_path: Path, encoding: str, delimiter: str,
                                  newline: str) -> None:
    rows.rows["VIP_CUST_INFO"][0]["CUST_NAME"] = RARE
    out = rows.write(tmp_path / "d", encoding=encoding, delimiter=delimiter, newline=newline)
    report = validate_paths([out])[0]
    assert report.status == "accepted", [f.as_dict() for f in report.findings]
    text = data_file(out, "31201").read_bytes().decode("gb18030" if encoding == "GB18030" else "utf-8")
    assert RARE in text


def test_gb18030_xml_round_trips(rows: DeliveryRows, tmp_path: Path) -> None:
    rows.rows["VIP_CUST_INFO"][0]["CUST_NAME"] = RARE
    out = rows.write(tmp_path / "d", fmt="xml", encoding="GB18030")
    assert validate_paths([out])[0].status == "accepted"
    tree = etree.parse(str(data_file(out, "31201")))
    assert RARE in tree.getroot()[0][3].text


def test_utf8_bom_is_tolerated(rows: DeliveryRows, tmp_path: Path) -> None:
    from tests.support.deliveries import refresh_check

    out = rows.write(tmp_path / "d")
    f = data_file(out, "32002")
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    refresh_check(out)
    assert validate_paths([out])[0].status == "accepted"


def test_report_outputs(rows: DeliveryRows, tmp_path: Path, spec: Spec) -> None:
    rows.rows["VIP_SUMMARY"][0]["CUST_CNT"] = "x"
    report = validate_paths([rows.write(tmp_path / "d")])[0]
    doc = report.as_dict()
    assert doc["status"] == "rejected" and doc["errors"] >= 1
    assert json.loads(json.dumps(doc, default=str))["findings"][0]["code"]
    text = render_text(report)
    assert "E302" in text and "拒收" in text and "REJECTED" in text
    ns = {"k": spec.namespace}
    fbf = etree.fromstring(file_feedback_xml(report, "D-1"))
    assert fbf.findtext("k:Status", namespaces=ns) == "rejected"
    assert fbf.find("k:Counts/k:Code[@code='E302']", ns) is not None
    fbr = etree.fromstring(record_feedback_xml(report, "D-1"))
    finding = fbr.find("k:Findings/k:Finding[@code='E302']", ns)
    assert finding is not None and finding.findtext("k:Line", namespaces=ns) == "1"
    assert finding.findtext("k:Field", namespaces=ns) == "CUST_CNT"
    rct = etree.fromstring(receipt_xml(report, "D-1", "P_42_202610_00.chk", "20261105102213",
                                       [{"name": "a.txt", "size": 1, "sha256": "0" * 64}]))
    assert rct.findtext("k:DeliveryId", namespaces=ns) == "D-1"


def test_several_deliveries_in_one_call(rows: DeliveryRows, tmp_path: Path, spec: Spec) -> None:
    from tests.support.deliveries import valid_rows

    a = rows.write(tmp_path / "a")
    b = valid_rows(spec, party="44").write(tmp_path / "b")
    reports = validate_paths([a, b])
    assert [r.party for r in reports] == ["42", "44"]
    assert all(r.status == "accepted" for r in reports)


def test_context_is_optional_and_combinable(rows: DeliveryRows, tmp_path: Path) -> None:
    out = rows.write(tmp_path / "d")
    ctx = ValidationContext(list_ids=frozenset(rows.list_ids), list_version="2026V01", cycle_state="open",
                            known_cycles=frozenset({"202610"}), units_due=frozenset(
                                {"31201", "31202", "31203", "32001", "32002", "32003"}),
                            authorised_parties=frozenset({"42"}), last_resend=None)
    assert validate_paths([out], context=ctx)[0].status == "accepted"


# -- the agent's command --------------------------------------------------------------------
def test_agent_validate_accepted_exits_0(rows: DeliveryRows, tmp_path: Path) -> None:
    out = rows.write(tmp_path / "d")
    result = CliRunner().invoke(agent, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "ACCEPTED" in result.output


def test_agent_validate_rejected_exits_1_with_json(rows: DeliveryRows, tmp_path: Path) -> None:
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "9"
    out = rows.write(tmp_path / "d")
    result = CliRunner().invoke(agent, ["validate", "--format", "json", str(out)])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    f = next(x for x in doc["findings"] if x["code"] == "E307")
    assert f["line"] == 2 and f["field"] == "LEVEL_ID" and f["value"] == "9"


def test_agent_validate_single_files_and_xml_output(rows: DeliveryRows, tmp_path: Path) -> None:
    out = rows.write(tmp_path / "d")
    files = [str(p) for p in sorted(out.iterdir())]
    result = CliRunner().invoke(agent, ["validate", "--format", "xml", *files])
    assert result.exit_code == 0, result.output
    assert "<FileFeedback" in result.output and "accepted" in result.output


def test_agent_validate_usage_error_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(agent, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(agent, ["validate", str(empty)])
    assert result.exit_code == 2 and "no files" in result.output
