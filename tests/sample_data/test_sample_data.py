"""Sample data: valid under every rule, consistent across units and cycles, deterministic."""
from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from exchange_server.cli import main as cli
from exchange_server.sample_data import generate, province_list_ids
from exchange_server.sample_data.generator import SampleModel
from schemas.conventions import DELIMITERS, CheckFile
from schemas.spec.model import Spec
from schemas.validation import ValidationContext, validate_paths

REPO = Path(__file__).resolve().parents[2]


def read_unit(delivery: Path, unit_code: str, spec: Spec) -> list[dict[str, str]]:
    """The rows of a unit's file in a delivery, as text by field id (either format)."""
    check = CheckFile.parse(next(delivery.glob("P_*.chk")).read_bytes())
    path = next(p for p in delivery.iterdir() if f"_{unit_code}_" in p.name)
    ids = spec.unit(unit_code).field_ids
    if path.suffix == ".xml":
        ns = "{" + spec.namespace + "}"
        return [{c.tag[len(ns):]: c.text or "" for c in row} for row in etree.parse(str(path)).getroot()]
    text = path.read_bytes().decode(check.encoding.lower())
    return [dict(zip(ids, line.split(DELIMITERS[check.delimiter_name]))) for line in text.splitlines()]


@pytest.fixture(scope="module")
def national(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("national")
    generate(spec, "202610", out)
    return out


def test_all_provinces_are_written_and_accepted(spec: Spec, national: Path) -> None:
    folders = sorted(p.name for p in national.iterdir())
    assert len(folders) == 32 and folders[0] == "00"
    model = SampleModel(spec)
    for folder in folders[1:]:
        ctx = ValidationContext(list_ids=province_list_ids(model, folder), list_version="2026V01")
        [report] = validate_paths([national / folder], spec, context=ctx)
        # "accepted", not "accepted_with_warnings": hold too
        assert report.status == "accepted", (folder, dict(report.counts))
        assert len(report.files) == 6
    hq = validate_paths([national / "00"], spec)
    assert [r.status for r in hq] == ["accepted", "accepted"]


def test_the_list_covers_500_customers_with_chinese_names(spec: Spec, national: Path) -> None:
    path = next((national / "00").glob("*_31101_*"))
    ns = "{" + spec.namespace + "}"
    rows = [{c.tag[len(ns):]: c.text or "" for c in r} for r in etree.parse(str(path)).getroot()]
    active = [r for r in rows if r["CHANGE_TYPE"] != "D"]
    assert len(active) == 500 and [int(r["CUST_RANK"]) for r in active] == list(range(1, 501))
    assert {r["LEAD_PROV_ID"] for r in active} == {c.code for c in spec.domain("Domain_area_id").current.at_level("province")}
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["CUST_NAME"]) for r in rows)
    by_prov = {p: sum(r["LEAD_PROV_ID"] == p for r in active) for p in ("44", "54")}
    assert by_prov["44"] > 5 * by_prov["54"]  # Guangdong has many more key accounts than Tibet


def test_every_xml_file_validates_with_xmllint(spec: Spec, national: Path) -> None:
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        pytest.skip("xmllint is not installed (scripts/test installs libxml2-utils)")
    files = sorted(national.glob("*/*.xml"))
    assert files
    by_unit: dict[str, list[str]] = {}
    for f in files:
        by_unit.setdefault(f.name.split("_")[3], []).append(str(f))
    for code, paths in by_unit.items():
        xsd = next((REPO / "schemas" / "xsd").glob(f"{code}_*.xsd"))
        done = subprocess.run([xmllint, "--noout", "--nonet", "--schema", str(xsd), *paths], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-2000:]


def test_cycles_continue_each_other(spec: Spec, tmp_path: Path) -> None:
    for cycle in ("202612", "202701", "202702"):
        generate(spec, cycle, tmp_path / cycle, provinces=["42"], fmt="txt")
    dec, jan = (tmp_path / "202612" / "42"), (tmp_path / "202701" / "42")
    dec_summary = {r["LATN_ID"]: r for r in read_unit(dec, "32001", spec)}
    jan_summary = {r["LATN_ID"]: r for r in read_unit(jan, "32001", spec)}
    feb_summary = {r["LATN_ID"]: r for r in read_unit(tmp_path / "202702" / "42", "32001", spec)}
    assert dec_summary.keys() == jan_summary.keys() and len(jan_summary) >= 10
    for net, j in jan_summary.items():
        assert j["LAST_CUST_CNT"] == dec_summary[net]["CUST_CNT"]
        assert j["INCOME_YTD_AMT"] == j["INCOME_AMT"]  # January: the year starts again
        f = feb_summary[net]
        assert Decimal(f["INCOME_YTD_AMT"]) == Decimal(j["INCOME_YTD_AMT"]) + Decimal(f["INCOME_AMT"])
    dec_serv = {(r["LATN_ID"], r["PROD_ID"]): r for r in read_unit(dec, "32002", spec)}
    for r in read_unit(jan, "32002", spec):
        assert r["LAST_SERV_CNT"] == dec_serv[(r["LATN_ID"], r["PROD_ID"])]["SERV_CNT"]


def test_a_quarter_sums_its_months(spec: Spec, tmp_path: Path) -> None:
    generate(spec, "2026Q3", tmp_path / "q", provinces=["64"], fmt="txt")
    [report] = validate_paths([tmp_path / "q" / "64"], spec)
    assert report.status == "accepted", dict(report.counts)
    for m in ("202607", "202608", "202609"):
        generate(spec, m, tmp_path / m, provinces=["64"], fmt="txt")
    quarter = {(r["LATN_ID"], r["ACCT_ITEM_TYPE_ID"]): Decimal(r["INCOME_AMT"])
               for r in read_unit(tmp_path / "q" / "64", "32003", spec)}
    months: dict[tuple[str, str], Decimal] = {}
    for m in ("202607", "202608", "202609"):
        for r in read_unit(tmp_path / m / "64", "32003", spec):
            key = (r["LATN_ID"], r["ACCT_ITEM_TYPE_ID"])
            months[key] = months.get(key, Decimal(0)) + Decimal(r["INCOME_AMT"])
    assert quarter == months


def test_same_seed_same_bytes_other_seed_other_data(spec: Spec, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate(spec, "202610", tmp_path / name, provinces=["46", "63"], seed=seed)

    def files(name: str) -> dict[str, bytes]:
        return {str(p.relative_to(tmp_path / name)): p.read_bytes() for p in sorted((tmp_path / name).rglob("*.*"))}

    assert files("a") == files("b")
    assert files("a").keys() == files("c").keys() and files("a") != files("c")


def test_scale_multiplies_customers(spec: Spec, tmp_path: Path) -> None:
    one = generate(spec, "202610", tmp_path / "1", provinces=["42"], fmt="txt")
    three = generate(spec, "202610", tmp_path / "3", provinces=["42"], fmt="txt", scale=3)
    assert three.rows["TOP500_LIST"] > 2.9 * 500
    assert 2.5 * one.rows["VIP_CUST_INFO"] <= three.rows["VIP_CUST_INFO"] <= 3.5 * one.rows["VIP_CUST_INFO"]
    ctx = ValidationContext(list_ids=province_list_ids(SampleModel(spec, scale=3), "42"), list_version="2026V01")
    [report] = validate_paths([tmp_path / "3" / "42"], spec, context=ctx)
    assert report.status == "accepted", dict(report.counts)


def test_text_round_trips_in_gb18030(spec: Spec, tmp_path: Path) -> None:
    generate(spec, "202610", tmp_path, provinces=["44"], fmt="txt")  # 44 writes GB18030
    check = CheckFile.parse(next((tmp_path / "44").glob("*.chk")).read_bytes())
    assert check.encoding == "GB18030"
    names = [r["CUST_NAME"] for r in read_unit(tmp_path / "44", "31201", spec)]
    assert names and all(n.encode("gb18030").decode("gb18030") == n for n in names)
    assert any(n.startswith(("广州", "深圳", "中国")) or "公司" in n or "大学" in n for n in names)


@pytest.mark.parametrize("args,message", [
    (["--cycle", "2026-10"], "is not a cycle id"),
    (["--cycle", "202610", "--provinces", "99"], "not province codes"),
    (["--cycle", "202610", "--scale", "0"], "--scale"),
    (["--cycle", "202610", "--format", "csv"], "--format"),
    (["--cycle", "202610", "--list-version", "2026-1"], "not a list version"),
])
def test_cli_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["sample-data", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_cli_writes_and_summarises(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["sample-data", "--cycle", "202610", "--out", str(tmp_path), "--provinces",
                                      "42,44", "--format", "xml"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 deliveries" in result.output and "VIP_CUST_INFO" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00", "42", "44"]
    assert all(p.suffix in (".xml", ".chk") for p in (tmp_path / "42").iterdir())
