"""What counts for a cycle, point by point, over real HTTP on SQLite and PostgreSQL.

Partial deliveries are checked against the accepted units they leave out; the record names
exactly the deliveries whose rows count after any sequence of province-level and
network-level resends; figures that read another cycle are never stale; completeness means
one thing everywhere; a file that cannot be read gives its one real error.
"""
from __future__ import annotations

import io
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from lxml import etree

from exchange_server.accounts.services import AccountService
from exchange_server.cli import main
from exchange_server.runtime.serve import Server
from province_agent.transport import HttpTransport
from tests.pages.test_auth import sign_in
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support.deliveries import DeliveryRows, refresh_check, rewrite_check, valid_rows
from tests.support.recompute import json_loads

NS = "{urn:chinatelecom:kam:interface:1.0}"


def _send(http: HttpTransport, folder: Path) -> dict[str, Any]:
    status, receipt = http.upload(files_of(folder))
    assert status == 202, receipt
    d = wait_final(http, receipt["delivery_id"])
    d["report"] = http.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
    return d


@pytest.fixture
def hq(setup: Setup, live_server: Server) -> dict[str, Any]:
    """Cycles 202610 and 202611 open; Hubei's and one analyst's HTTP clients."""
    setup.cycle("202610")
    setup.cycle("202611")
    return {"42": HttpTransport(live_server.url, setup.province("42")),
            "analyst": HttpTransport(live_server.url, setup.role("analyst", "analyst")), "server": live_server}


# -- 3. partial deliveries against what is accepted ---------------------------------------------
def test_a_partial_delivery_is_checked_against_the_accepted_units_it_leaves_out(
        hq: dict[str, Any], spec: Any, tmp_path: Path) -> None:
    hubei = hq["42"]
    rows = valid_rows(spec)
    full = _send(hubei, rows.write(tmp_path / "r0"))
    assert full["status"] == "accepted"
    # 32001 alone, one network's revenue changed by 0.01: the accepted 32003 still sums to the old value.
    net = rows.rows["VIP_SUMMARY"][0]["LATN_ID"]
    rows.rows["VIP_SUMMARY"][0]["INCOME_AMT"] += Decimal("0.01")
    d = _send(hubei, rows.write(tmp_path / "r1", resend=1, units=["VIP_SUMMARY"]))
    assert d["status"] == "rejected"
    [x001] = [f for f in d["report"]["findings"] if f["code"] == "X-001"]
    assert x001["field"] == "INCOME_AMT" and x001["line"] == 1 and "32001" in x001["file"]
    assert f"32003 v1 (delivery #{full['delivery_id']}, P_42_202610_00)" in x001["compared_with"]
    assert "compared with accepted 32003 v1" in x001["message_en"] and "对照已采纳的 32003 第1版" in x001["message_zh"]
    assert net in x001["message_en"]
    assert {f["code"] for f in d["report"]["findings"]} == {"X-001"}
    fbr = etree.fromstring(hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbr.xml"))
    assert "32003 v1" in fbr.find(f".//{NS}Finding/{NS}ComparedWith").text
    # Contacts alone, one for a customer present in no 31201 (neither here nor accepted).
    rows.rows["VIP_SUMMARY"][0]["INCOME_AMT"] -= Decimal("0.01")
    rows.rows["VIP_CUST_CONTACT"].append(dict(rows.rows["VIP_CUST_CONTACT"][0], NATIONAL_CUST_ID="G429999999"))
    d = _send(hubei, rows.write(tmp_path / "r2", resend=2, units=["VIP_CUST_CONTACT"]))
    assert d["status"] == "rejected"
    [x004] = [f for f in d["report"]["findings"] if f["code"] == "X-004"]
    assert x004["value"] == "G429999999" and "31201 v1" in x004["compared_with"]
    # The same contacts without the stranger: consistent with what is accepted, accepted.
    rows.rows["VIP_CUST_CONTACT"].pop()
    d = _send(hubei, rows.write(tmp_path / "r3", resend=3, units=["VIP_CUST_CONTACT"]))
    assert d["status"] == "accepted", d["report"]["findings"]


def test_a_local_networks_own_partial_is_checked_against_its_networks_accepted_rows(
        hq: dict[str, Any], setup: Setup, spec: Any, tmp_path: Path) -> None:
    rows = valid_rows(spec)
    assert _send(hq["42"], rows.write(tmp_path / "p0"))["status"] == "accepted"
    net = rows.rows["VIP_SUMMARY"][0]["LATN_ID"]
    own = HttpTransport(hq["server"].url, setup.province(net, f"latn{net}"))
    mine = DeliveryRows(spec, net, "202610", {"VIP_INCOME_SUM": [dict(r) for r in rows.rows["VIP_INCOME_SUM"]
                                                                  if r["LATN_ID"] == net]})
    mine.rows["VIP_INCOME_SUM"][0]["INCOME_AMT"] += Decimal("5.00")  # the province's accepted 32001 disagrees
    d = _send(own, mine.write(tmp_path / "n0"))
    assert d["status"] == "rejected"
    [x001] = [f for f in d["report"]["findings"] if f["code"] == "X-001"]
    assert "32003" in x001["file"] and "32001 v1" in x001["compared_with"]  # anchored on the network's own row
    assert {f["code"] for f in d["report"]["findings"]} == {"X-001"}


# -- 4. the record names the deliveries whose rows count ------------------------------------------
def _report(hq: dict[str, Any], cycle: str = "202610") -> Any:
    return json_loads(hq["analyst"].get_bytes(f"/api/v1/reports/{cycle}"))


def _sources(doc: Any, prov: str, unit: str) -> set[tuple[str, int]]:
    row = next(r for r in doc["completeness"]["matrix"] if r["prov_id"] == prov)
    return {(s["party"], s["delivery_id"]) for s in row["units"][unit].get("sources", [])}


def test_province_and_network_resends_name_exactly_what_counts(hq: dict[str, Any], setup: Setup, spec: Any,
                                                              tmp_path: Path) -> None:
    rows = valid_rows(spec)
    net = rows.rows["VIP_SUMMARY"][0]["LATN_ID"]
    own = HttpTransport(hq["server"].url, setup.province(net, f"latn{net}"))
    summary_units = ["VIP_SUMMARY", "VIP_SERV_SUM", "VIP_INCOME_SUM"]

    def network_part(resend: int, folder: str) -> int:
        part = DeliveryRows(spec, net, "202610", {u: [dict(r) for r in rows.rows[u] if r["LATN_ID"] == net]
                                                  for u in summary_units})
        d = _send(own, part.write(tmp_path / folder, resend=resend))
        assert d["status"] == "accepted", d["report"]["findings"]
        return int(d["delivery_id"])

    w1 = network_part(0, "w1")
    v1 = _send(hq["42"], rows.write(tmp_path / "v1", units=summary_units))["delivery_id"]
    doc = _report(hq)
    assert _sources(doc, "42", "32001") == {("42", v1)}  # the province came later: it counts everywhere
    assert {(r["party"], r["delivery_id"]) for r in doc["lineage"]} == {("42", v1)}
    w2 = network_part(1, "w2")
    doc = _report(hq)
    assert _sources(doc, "42", "32001") == {("42", v1), (net, w2)}
    by_net = {r["latn_id"]: r for r in doc["by_network"]}
    assert (by_net[net]["party"], by_net[net]["delivery_id"]) == (net, w2)
    trace = hq["analyst"].get_json(f"/api/v1/reports/202610/trace/by_network/{net}")
    assert {r["delivery_id"] for r in trace["sources"][0]["rows"]} == {w2}
    lineage = {(r["party"], r["unit"], r["delivery_id"]): r for r in doc["lineage"]}
    assert lineage[(net, "32001", w2)]["networks"] == [net] and (net, "32001", w1) not in lineage
    # The province resends every network: nothing of the network's counts any more.
    v2 = _send(hq["42"], rows.write(tmp_path / "v2", resend=1, units=summary_units))["delivery_id"]
    doc = _report(hq)
    assert _sources(doc, "42", "32001") == {("42", v2)}
    assert {(r["party"], r["delivery_id"]) for r in doc["lineage"]} == {("42", v2)}
    csv_text = hq["analyst"].get_bytes("/api/v1/reports/202610/completeness.csv").decode("utf-8-sig")
    assert f"{v2}:v2:42" in csv_text and f":{net}" not in csv_text
    # It resends 32003 without that network: the network's own 32003 (still current in its scope) counts again.
    without = DeliveryRows(spec, "42", "202610", {"VIP_INCOME_SUM": [r for r in rows.rows["VIP_INCOME_SUM"]
                                                                     if r["LATN_ID"] != net]})
    v3 = _send(hq["42"], without.write(tmp_path / "v3", resend=2))
    assert v3["status"] == "accepted", v3["report"]["findings"]
    doc = _report(hq)
    assert _sources(doc, "42", "32003") == {("42", v3["delivery_id"]), (net, w2)}
    assert sum(Decimal(b["income_amt"]) for b in doc["by_billing_item"]) == Decimal(doc["totals"]["income_amt"])


# -- 2. figures that read another cycle are never stale ---------------------------------------
def test_month_on_month_follows_a_late_previous_month_everywhere(
        hq: dict[str, Any], spec: Any, tmp_path: Path, runtime: Any, database_url: str, client: FlaskClient) -> None:
    hubei, analyst = hq["42"], hq["analyst"]
    nov = valid_rows(spec, cycle="202611")
    assert _send(hubei, nov.write(tmp_path / "nov"))["status"] in ("accepted", "accepted_with_warnings")
    before = _report(hq, "202611")["totals"]
    assert before["income_prev_amt"] == "0.00" and before["mom_pct"] is None
    octo = valid_rows(spec, cycle="202610")
    for r in octo.rows["VIP_SUMMARY"]:  # October earned less: November grew
        r["INCOME_AMT"] -= Decimal("1000.00")
    for r in octo.rows["VIP_INCOME_SUM"][::2]:
        r["INCOME_AMT"] -= Decimal("1000.00")
    assert _send(hubei, octo.write(tmp_path / "oct"))["status"] in ("accepted", "accepted_with_warnings")
    oct_income = sum(r["INCOME_AMT"] for r in octo.rows["VIP_SUMMARY"])
    nov_income = sum(r["INCOME_AMT"] for r in nov.rows["VIP_SUMMARY"])
    mom = ((nov_income / oct_income - 1) * 100).quantize(Decimal("0.01"))
    totals = _report(hq, "202611")["totals"]
    assert Decimal(totals["income_prev_amt"]) == oct_income and Decimal(totals["mom_pct"]) == mom
    # Hubei alone of 31 provinces: the comparison is partial and says so, with the like-for-like figure.
    assert totals["mom_partial"] is True and Decimal(totals["prev_share_reported_pct"]) < 100
    assert Decimal(totals["mom_comparable_pct"]) == mom and totals["mom_comparable_networks"] == len(octo.rows["VIP_SUMMARY"])
    csv_text = analyst.get_bytes("/api/v1/reports/202611/totals.csv").decode("utf-8-sig")
    assert re.search(rf"\r\nincome_prev_amt,[^\r]*,{oct_income}\r\n", csv_text)
    assert re.search(r"\r\nprev_share_reported_pct,[^\r]*,\d+\.\d\d\r\n", csv_text)
    xml = etree.fromstring(analyst.get_bytes("/api/v1/reports/202611/rollup.xml"))
    assert Decimal(xml.find(f"{NS}Totals/{NS}mom_pct").text) == mom
    wb = openpyxl.load_workbook(io.BytesIO(analyst.get_bytes("/api/v1/reports/202611/rollup.xlsx")))
    values = {r[0]: r[3] for r in wb.worksheets[0].iter_rows(min_row=3, values_only=True)}
    assert Decimal(str(values["mom_pct"])) == mom and values["mom_partial"] == "是"
    out = CliRunner().invoke(main, ["--data-dir", str(runtime.settings.data_dir), "report", "--cycle", "202611",
                                    "--format", "json", "--out", str(tmp_path / "r.json")],
                             env={"KAM_DATABASE_URL": database_url})
    assert out.exit_code == 0, out.output
    assert Decimal(json_loads((tmp_path / "r.json").read_bytes())["totals"]["mom_pct"]) == mom
    with runtime.db.session() as s:
        AccountService(s, "test").create("ana", "analyst", password="analyst-pages-2026")
    sign_in(client, "ana", "analyst-pages-2026")
    page = client.get("/analyst/202611").get_data(as_text=True)
    assert f"{mom:+.2f}%" in page
    assert 'id="mom-partial"' in page and f'data-comparable="{mom}"' in page


# -- 5. counts and downloads that agree with themselves -----------------------------------------
def test_completeness_counts_one_definition_and_received_cells_name_the_failed_delivery(
        hq: dict[str, Any], setup: Setup, spec: Any, tmp_path: Path) -> None:
    assert _send(hq["42"], valid_rows(spec).write(tmp_path / "h"))["status"] == "accepted"
    guangdong = HttpTransport(hq["server"].url, setup.province("44"))
    bad = valid_rows(spec, party="44")
    bad.rows["VIP_SUMMARY"][0]["CUST_CNT"] = "many"
    rejected = _send(guangdong, bad.write(tmp_path / "g"))
    assert rejected["status"] == "rejected"
    doc = _report(hq)
    comp = doc["completeness"]
    cells = [c for row in comp["matrix"] for c in row["units"].values()]
    assert comp["accepted"] == sum(c["state"] in ("accepted", "late") for c in cells) == 6
    assert comp["received"] == sum(c["state"] == "received" for c in cells) == 6
    assert comp["missing"] == sum(c["state"] == "missing" for c in cells) == comp["expected"] - 12
    gd = next(r for r in comp["matrix"] if r["prov_id"] == "44")["units"]["32001"]
    assert (gd["state"], gd["delivery_id"], gd["delivery_status"]) == ("received", rejected["delivery_id"], "rejected")
    csv_rows = hq["analyst"].get_bytes("/api/v1/reports/202610/completeness.csv").decode("utf-8-sig").splitlines()
    assert sum(",received," in r for r in csv_rows) == 6 and sum(",missing," in r for r in csv_rows) == comp["missing"]
    assert any(f",received,已收到未采纳,{rejected['delivery_id']},,rejected," in r for r in csv_rows)
    wb = openpyxl.load_workbook(io.BytesIO(hq["analyst"].get_bytes("/api/v1/reports/202610/rollup.xlsx")))
    counts = {r[2]: r[3] for r in wb["完整性 Completeness"].iter_rows(values_only=True) if r[2] in (
        "Units expected", "Units accepted", "Received, not accepted", "Missing")}
    assert counts == {"Units expected": comp["expected"], "Units accepted": 6, "Received, not accepted": 6,
                      "Missing": comp["missing"]}
    header = hq["analyst"].get_bytes("/api/v1/reports/202610/by_product.csv").decode("utf-8-sig").splitlines()[0]
    assert "使用客户数 Key accounts using it" in header and "期末大客户数" not in header


# -- 6 and 7 over the wire ----------------------------------------------------------------------
def test_an_unreadable_file_gives_its_one_real_error_first(hq: dict[str, Any], spec: Any, tmp_path: Path) -> None:
    folder = valid_rows(spec).write(tmp_path / "x", fmt="xml")
    f = next(folder.glob("*_32001_*.xml"))
    f.write_text(f.read_text("utf-8").replace("urn:chinatelecom:kam:interface:1.0", "urn:other", 1), "utf-8")
    refresh_check(folder)
    d = _send(hq["42"], folder)
    assert d["status"] == "rejected"
    assert [f["code"] for f in d["report"]["findings"]] == ["E204"]
    [skipped] = d["report"]["skipped"]
    assert skipped["unit"] == "VIP_SUMMARY" and "X-001" in skipped["rules"] and "R32001-07" in skipped["rules"]
    fbr = etree.fromstring(hq["42"].get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbr.xml"))
    assert "X-001" in fbr.find(f"{NS}Skipped").get("rules")


def _no_data_files(folder: Path) -> None:
    for p in list(folder.iterdir()):
        if not p.name.endswith(".chk"):
            p.unlink()
    rewrite_check(folder, lambda c: c.with_entries([]))


def _unreal_stamp(folder: Path) -> None:
    rewrite_check(folder, lambda c: replace(c, generated_at="20261345999999"))


def _xml_utf16(folder: Path) -> None:
    f = next(folder.glob("*_32002_*.xml"))
    f.write_bytes(f.read_text("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"', 1).encode("utf-16"))
    refresh_check(folder)


def _xinclude(folder: Path) -> None:
    f = next(folder.glob("*_32002_*.xml"))
    f.write_text(f.read_text("utf-8").replace(
        "<ROW>", '<ROW><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd"/>', 1), "utf-8")
    refresh_check(folder)


@pytest.mark.parametrize("fmt,breaks,code", [
    ("txt", _no_data_files, "E121"), ("txt", _unreal_stamp, "E103"), ("xml", _xml_utf16, "E110"),
    ("xml", _xinclude, "E205")], ids=["no-data-files", "unreal-stamp", "xml-utf16", "xinclude"])
def test_smaller_validator_points_over_the_wire(hq: dict[str, Any], spec: Any, tmp_path: Path, fmt: str,
                                                breaks: Any, code: str) -> None:
    folder = valid_rows(spec).write(tmp_path / "e", fmt=fmt)
    breaks(folder)
    d = _send(hq["42"], folder)
    assert d["status"] == "rejected" and [f["code"] for f in d["report"]["findings"]] == [code]


def test_an_integer_with_too_many_digits_is_too_long_over_the_wire(hq: dict[str, Any], spec: Any,
                                                                  tmp_path: Path) -> None:
    rows = valid_rows(spec)
    rows.rows["VIP_SUMMARY"][0]["CUST_CNT"] = "12345678901"
    d = _send(hq["42"], rows.write(tmp_path / "i"))
    codes = {f["code"] for f in d["report"]["findings"]}
    assert d["status"] == "rejected" and "E305" in codes and "E302" not in codes
