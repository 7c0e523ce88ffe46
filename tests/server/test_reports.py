"""Roll-up downloads over HTTP and from ``exchange-server report``: they open, and their totals equal the roll-up."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from lxml import etree

from exchange_server.cli import main
from exchange_server.consolidation.exports import CSV_BREAKDOWNS, rollup_xlsx
from exchange_server.consolidation.rollups import Rollup, RollupService
from tests.server.conftest import Setup
from tests.server.test_rollups import PROVINCES, national  # noqa: F401  (the fixture: 3 provinces' data)

BOM = b"\xef\xbb\xbf"
CENT = Decimal("0.01")


def _rollup(runtime: Any, cycle: str = "202610") -> Rollup:
    with runtime.db.session() as s:
        return RollupService(s, runtime.spec).rollup(cycle)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _money(text: Any) -> Decimal:
    """A money cell read back (float, or text with thousands separators) to the fen."""
    return Decimal(str(text).replace(",", "")).quantize(CENT)


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(BOM)
    text = data[len(BOM):].decode("utf-8")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline="")))


def _soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def _sheet_values(ws: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Header keys (the English row) and data rows of a breakdown sheet."""
    rows = list(ws.iter_rows(values_only=True))
    return list(rows[1]), rows[2:]


def test_downloads_open_and_add_up(national: dict[str, Path], runtime: Any, setup: Setup,  # noqa: F811
                                   client: FlaskClient, tmp_path: Path) -> None:
    token = setup.role("ana", "analyst")
    roll = _rollup(runtime)
    total = roll.totals["income_amt"]
    assert total > 0

    # JSON: the same roll-up, decimals as exact strings
    r = client.get("/api/v1/reports/202610", headers=_auth(token))
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = json.loads(r.data)
    assert Decimal(body["totals"]["income_amt"]) == total and isinstance(body["totals"]["income_amt"], str)
    assert body["totals"]["cust_cnt"] == roll.totals["cust_cnt"]
    assert {p["prov_id"]: Decimal(p["income_amt"]) for p in body["by_province"]} == {
        p["prov_id"]: p["income_amt"] for p in roll.by_province}
    assert {(x["party"], x["unit"], x["delivery_id"], x["version"]) for x in body["lineage"]} == {
        (x["party"], x["unit"], x["delivery_id"], x["version"]) for x in roll.lineage}
    r = client.get("/api/v1/reports/202610/rollup.json", headers=_auth(token))
    assert r.headers["Content-Disposition"] == "attachment; filename=kam-rollup-202610.json"
    assert json.loads(r.data)["totals"] == body["totals"]

    # CSV: BOM, bilingual header, one row per province, income adds up to the total
    r = client.get("/api/v1/reports/202610/by_province.csv", headers=_auth(token))
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "kam-rollup-202610-by_province.csv" in r.headers["Content-Disposition"]
    rows = _csv_rows(r.data)
    assert "本期收入(元) Revenue (yuan)" in rows[0] and "省份代码 Province code" in rows[0]
    col = rows[0].index("本期收入(元) Revenue (yuan)")
    assert sorted(row[0] for row in rows[1:]) == PROVINCES
    assert sum(Decimal(row[col]) for row in rows[1:]) == total
    assert all("," not in row[col] and "e" not in row[col].lower() for row in rows[1:])
    for b in CSV_BREAKDOWNS:
        r = client.get(f"/api/v1/reports/202610/{b}.csv", headers=_auth(token))
        assert r.status_code == 200, b
        _csv_rows(r.data)
    comp = _csv_rows(client.get("/api/v1/reports/202610/completeness.csv", headers=_auth(token)).data)
    assert len(comp) == 1 + 31 * 6 and sum(1 for row in comp[1:] if row[4] == "missing") == 31 * 6 - 18
    nets = _csv_rows(client.get("/api/v1/reports/202610/by_network.csv", headers=_auth(token)).data)
    assert sum(Decimal(row[nets[0].index("本期收入(元) Revenue (yuan)")]) for row in nets[1:]) == total

    # XLSX: the sheets, Chinese and English headers, totals equal to the fen
    r = client.get("/api/v1/reports/202610/rollup.xlsx", headers=_auth(token))
    assert r.status_code == 200 and r.headers["Content-Disposition"] == "attachment; filename=kam-rollup-202610.xlsx"
    xlsx = tmp_path / "kam-rollup-202610.xlsx"
    xlsx.write_bytes(r.data)
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames[0] == "总计 Totals"
    assert {"分省 By province", "本地网 By network", "产品 By product", "账目项 By billing item", "完整性 Completeness",
            "数据来源 Lineage"} <= set(wb.sheetnames)
    prov = wb["分省 By province"]
    assert prov.freeze_panes == "A3" and prov.cell(1, 1).value == "省份代码"
    keys, data = _sheet_values(prov)
    i = keys.index("Revenue (yuan)")
    assert prov.cell(3, i + 1).number_format == "#,##0.00"
    assert len(data) == len(PROVINCES)
    assert sum((Decimal(str(row[i])) for row in data), Decimal(0)).quantize(CENT) == total
    totals = {row[0]: row[3] for row in wb["总计 Totals"].iter_rows(min_row=3, values_only=True)}
    assert _money(totals["income_amt"]) == total and totals["cycle"] == "202610"
    keys, data = _sheet_values(wb["本地网 By network"])
    assert sum((Decimal(str(row[keys.index("Revenue (yuan)")])) for row in data), Decimal(0)).quantize(CENT) == total
    matrix = wb["完整性 Completeness"]
    states = [c.value for row in matrix.iter_rows(min_row=3, max_row=33, min_col=4, max_col=9) for c in row]
    assert sum(1 for s in states if s and s.startswith("已采纳 accepted")) == 18
    assert matrix.cell(3, 4).fill.fgColor.rgb.endswith(("00B050", "FF7C80"))
    assert wb["数据来源 Lineage"].max_row == 2 + len(roll.lineage)

    # XML: parses without entity expansion, in the standard's namespace
    r = client.get("/api/v1/reports/202610/rollup.xml", headers=_auth(token))
    assert r.status_code == 200
    root = etree.fromstring(r.data, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = runtime.spec.namespace
    assert root.tag == f"{{{ns}}}Rollup" and root.get("cycle") == "202610"
    assert Decimal(root.findtext(f"{{{ns}}}Totals/{{{ns}}}income_amt")) == total
    rows_xml = root.findall(f"{{{ns}}}Breakdown[@name='by_province']/{{{ns}}}Row")
    assert sum(Decimal(x.findtext(f"{{{ns}}}income_amt")) for x in rows_xml) == total
    assert len(root.findall(f"{{{ns}}}Lineage/{{{ns}}}Source")) == len(roll.lineage)

    # trace: the rows behind one province
    r = client.get("/api/v1/reports/202610/trace/42", headers=_auth(token))
    assert r.status_code == 200
    trace = json.loads(r.data)
    assert Decimal(trace["income_amt"]) == next(p["income_amt"] for p in roll.by_province if p["prov_id"] == "42")
    assert trace["rows"] and all(row["delivery_id"] for row in trace["rows"])


def test_libreoffice_opens_the_workbook(national: dict[str, Path], runtime: Any,  # noqa: F811
                                        tmp_path: Path) -> None:
    soffice = _soffice()
    if soffice is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice is not installed; scripts/test installs it "
                        "(apt-get install libreoffice-calc-nogui)")
        pytest.skip("LibreOffice (soffice) not found; install libreoffice-calc-nogui")
    roll = _rollup(runtime)
    xlsx = tmp_path / "rollup.xlsx"
    xlsx.write_bytes(rollup_xlsx(roll))
    out = tmp_path / "csv"
    # 44,34,76: comma, quote, UTF-8; token 9 false: raw values, not as shown; token 12 -1: every sheet to its own file
    fmt = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"
    profile = (tmp_path / "lo-profile").as_uri()  # own profile: parallel runs must not share a locked one
    done = subprocess.run([soffice, f"-env:UserInstallation={profile}", "--headless", "--convert-to", fmt,
                           "--outdir", str(out), str(xlsx)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    files = {p.name: p for p in out.glob("*.csv")}
    assert files, (done.stdout, done.stderr)

    def sheet(name: str) -> list[list[str]]:
        [path] = [p for n, p in files.items() if name in n]
        return list(csv.reader(io.StringIO(path.read_text("utf-8-sig"), newline="")))

    totals = {row[0]: row[3] for row in sheet("Totals")[2:] if row}
    assert _money(totals["income_amt"]) == roll.totals["income_amt"]
    prov = sheet("By province")
    i = prov[1].index("Revenue (yuan)")
    assert sum(_money(row[i]) for row in prov[2:] if row) == roll.totals["income_amt"]


def test_roles_and_errors(runtime: Any, setup: Setup, client: FlaskClient) -> None:
    setup.cycle("202610")
    province = setup.province("42")
    analyst = setup.role("ana", "analyst")
    admin = setup.role("boss", "admin")
    assert client.get("/api/v1/reports/202610").status_code == 401
    r = client.get("/api/v1/reports/202610/rollup.xlsx", headers=_auth(province))
    assert r.status_code == 403 and r.get_json()["code"] == "wrong_role"
    assert client.get("/api/v1/reports/202610/nonsense.csv", headers=_auth(province)).status_code == 403
    assert client.get("/api/v1/reports/202610/trace/42", headers=_auth(province)).status_code == 403
    r = client.get("/api/v1/reports/209901", headers=_auth(analyst))
    assert r.status_code == 404
    body = r.get_json()
    assert body["code"] == "cycle_not_found" and body["status"] == 404 and body["message"] and body["message_zh"]
    r = client.get("/api/v1/reports/202610/nonsense.csv", headers=_auth(analyst))
    assert r.status_code == 404 and r.get_json()["code"] == "breakdown_not_found"
    assert client.get("/api/v1/reports/202610/trace/99", headers=_auth(analyst)).get_json()["code"] == \
        "province_not_found"
    # a cycle with nothing accepted yet still downloads: empty breakdowns, everyone missing
    r = client.get("/api/v1/reports/202610/rollup.xlsx", headers=_auth(admin))
    assert r.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(r.data))
    assert wb["分省 By province"].cell(2, 1).value == "Province code" and wb["分省 By province"].max_row == 2
    rows = _csv_rows(client.get("/api/v1/reports/202610/by_province.csv", headers=_auth(admin)).data)
    assert len(rows) == 1 and "本期收入(元) Revenue (yuan)" in rows[0]
    assert client.get("/api/v1/reports/202610/rollup.xml", headers=_auth(analyst)).status_code == 200
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/api/v1/reports/{cycle_id}/rollup.xlsx", "/api/v1/reports/{cycle_id}/{breakdown}.csv"} <= set(paths)


def test_report_command(national: dict[str, Path], runtime: Any, tmp_path: Path,  # noqa: F811
                        monkeypatch: pytest.MonkeyPatch) -> None:
    roll = _rollup(runtime)
    base = ["--data-dir", str(runtime.settings.data_dir), "--database-url", runtime.settings.effective_database_url]
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> str:
        result = runner.invoke(main, [*base, "report", "--cycle", "202610", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("--format", "xlsx")
    assert "kam-rollup-202610.xlsx" in out and f"revenue {roll.totals['income_amt']} yuan" in out
    wb = openpyxl.load_workbook(tmp_path / "kam-rollup-202610.xlsx")
    assert wb.sheetnames[0] == "总计 Totals"
    run("--format", "json", "--out", str(tmp_path / "x" / "r.json"))
    assert Decimal(json.loads((tmp_path / "x" / "r.json").read_bytes())["totals"]["income_amt"]) == \
        roll.totals["income_amt"]
    run("--format", "xml")
    assert etree.parse(str(tmp_path / "kam-rollup-202610.xml")).getroot().get("cycle") == "202610"
    run("--format", "csv", "--breakdown", "by_province", "--out", str(tmp_path / "p.csv"))
    assert len(_csv_rows((tmp_path / "p.csv").read_bytes())) == 1 + len(PROVINCES)
    run("--format", "csv")
    assert sorted(p.name for p in (tmp_path / "kam-rollup-202610").iterdir()) == sorted(
        f"kam-rollup-202610-{b}.csv" for b in CSV_BREAKDOWNS)
    bad = runner.invoke(main, [*base, "report", "--cycle", "209901"])
    assert bad.exit_code == 1 and "cycle_not_found" in bad.output
    bad = runner.invoke(main, [*base, "report", "--cycle", "202610", "--format", "json", "--breakdown", "by_level"])
    assert bad.exit_code == 2


def test_any_cell_can_be_traced_to_its_rows(national: Any, runtime: Any, client: Any, setup: Setup) -> None:
    from exchange_server.consolidation.rollups import RollupService

    token = setup.role("tracer", "analyst")
    with runtime.db.session() as s:
        roll = RollupService(s, runtime.spec).rollup("202610")
    product = next(p for p in roll.by_product if p["serv_cnt"] and p["top500_income_amt"])
    r = client.get(f"/api/v1/reports/202610/trace/by_product/{product['prod_id']}",
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    serv, cust = r.json["sources"]
    assert serv["unit"] == "32002" and cust["unit"] == "31203"
    assert sum(row["serv_cnt"] for row in serv["rows"]) == product["serv_cnt"]
    assert sum(Decimal(row["income_amt"]) for row in cust["rows"]) == product["top500_income_amt"]
    assert all(row["delivery_id"] and row["files"] and row["version"] == 1 for row in cust["rows"])
    item = roll.by_billing_item[0]
    r = client.get(f"/api/v1/reports/202610/trace/by_billing_item/{item['acct_item_type_id']}",
                   headers={"Authorization": f"Bearer {token}"})
    assert sum(Decimal(row["income_amt"]) for row in r.json["sources"][0]["rows"]) == item["income_amt"]
    assert client.get("/api/v1/reports/202610/trace/totals/x",
                      headers={"Authorization": f"Bearer {token}"}).json["code"] == "breakdown_not_found"


def test_every_money_cell_of_the_workbook_holds_its_exact_digits() -> None:
    """openpyxl would write 69909524.24 as 69909524.23999999 (via a float): the cells carry the decimal's text."""
    from tests.support.recompute import xlsx_money_texts

    amounts = [Decimal("69909524.24"), Decimal("0.10"), Decimal("12345678901234.56"), Decimal("-0.01")]
    rows = [{"prod_id": f"{i:04d}", "name_zh": "", "name_en": "", "top500_income_amt": a, "top500_customers": i}
            for i, a in enumerate(amounts)]
    roll = Rollup("202610", {"income_amt": amounts[0]}, [], [], rows, [], [], [], [], {"units": [], "matrix": []})
    data = rollup_xlsx(roll)
    texts = xlsx_money_texts(data)
    for a in amounts:
        assert format(a, "f") in texts
    assert not [t for t in texts if len(t.split(".")[-1]) > 2 and "." in t and not t.endswith("0")], texts
    ws = openpyxl.load_workbook(io.BytesIO(data))["产品 By product"]
    at = [c.value for c in ws[2]].index("Top-500 revenue (yuan)")
    read = [r[at] for r in ws.iter_rows(min_row=3, values_only=True)]
    assert [Decimal(str(v)).quantize(CENT) for v in read] == amounts
