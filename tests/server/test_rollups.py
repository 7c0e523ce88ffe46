"""Roll-ups checked against totals computed independently from the delivered files, on both databases."""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import delete, select

from exchange_server.accounts.models import Account
from exchange_server.consolidation.models import SummaryFact
from exchange_server.consolidation.rollups import RollupService
from exchange_server.lists.services import ListService
from exchange_server.sample_data.generator import generate
from schemas.conventions import CheckFile
from schemas.validation.readers import text_lines
from tests.server.conftest import Setup
from tests.support.receiving import receive_folder  # noqa: F401  (also used by other test modules)
from tests.support.deliveries import valid_rows

PROVINCES = ["11", "42", "44"]




def rows_of(folder: Path, unit_code: str, spec: Any) -> list[dict[str, str]]:
    """A unit's rows straight from the delivered text files (the independent reading)."""
    check = CheckFile.parse(next(folder.glob("*.chk")).read_bytes())
    unit = spec.unit(unit_code)
    out = []
    for e in check.entries:
        if f"_{unit_code}_" in e.name:
            out += [dict(zip(unit.field_ids, ln.split(check.delimiter))) for ln in text_lines(folder / e.name,
                                                                                           check.encoding)]
    return out


@pytest.fixture
def national(runtime: Any, setup: Setup, tmp_path: Path, spec: Any) -> dict[str, Any]:
    """Three provinces' sample deliveries for 202610, accepted and consolidated."""
    generate(spec, "202610", tmp_path / "s", provinces=PROVINCES, scale=1, fmt="txt", seed=7)
    setup.cycle("202610")
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec)
        lists.publish(lists.load(next((tmp_path / "s" / "00").glob("D_00_2026V01_00.chk"))))
    for p in PROVINCES:
        setup.province(p)
        receive_folder(runtime, f"prov{p}", tmp_path / "s" / p)
    assert setup.drain() == 3
    return {p: tmp_path / "s" / p for p in PROVINCES}


def test_rollups_equal_independent_totals(national: dict[str, Path], runtime: Any, spec: Any) -> None:
    income: dict[str, Decimal] = defaultdict(Decimal)
    customers: dict[str, int] = defaultdict(int)
    items: dict[str, Decimal] = defaultdict(Decimal)
    volume: dict[str, int] = defaultdict(int)
    level_of: dict[str, str] = {}
    level_count: dict[str, int] = defaultdict(int)
    level_income: dict[str, Decimal] = defaultdict(Decimal)
    for folder in national.values():
        for r in rows_of(folder, "32001", spec):
            income[r["PROV_ID"]] += Decimal(r["INCOME_AMT"])
            customers[r["PROV_ID"]] += int(r["CUST_CNT"])
        for r in rows_of(folder, "32003", spec):
            items[r["ACCT_ITEM_TYPE_ID"]] += Decimal(r["INCOME_AMT"])
        for r in rows_of(folder, "32002", spec):
            volume[r["PROD_ID"]] += int(r["SERV_CNT"])
        for r in rows_of(folder, "31201", spec):
            level_of[r["NATIONAL_CUST_ID"]] = r["LEVEL_ID"]
            level_count[r["LEVEL_ID"]] += 1
        for r in rows_of(folder, "31203", spec):
            level_income[level_of[r["NATIONAL_CUST_ID"]]] += Decimal(r["INCOME_AMT"])
    with runtime.db.session() as s:
        roll = RollupService(s, runtime.spec).rollup("202610")
    assert {p["prov_id"]: p["income_amt"] for p in roll.by_province} == dict(income)
    assert {p["prov_id"]: p["cust_cnt"] for p in roll.by_province} == dict(customers)
    assert roll.totals["income_amt"] == sum(income.values()) == sum(p["income_amt"] for p in roll.by_province)
    assert {i["acct_item_type_id"]: i["income_amt"] for i in roll.by_billing_item} == dict(items)
    assert {p["prod_id"]: p["serv_cnt"] for p in roll.by_product if p["serv_cnt"]} == {
        k: v for k, v in volume.items() if v}
    assert {x["level_id"]: x["customers"] for x in roll.by_level} == dict(level_count)
    assert {x["level_id"]: x["top500_income_amt"] for x in roll.by_level} == dict(level_income)
    assert sum(n["income_amt"] for n in roll.by_network) == roll.totals["income_amt"]
    cov = {c["prov_id"]: c for c in roll.coverage}
    assert all(cov[p]["missing"] == 0 and cov[p]["received"] == cov[p]["listed"] > 0 for p in PROVINCES)
    assert cov["31"]["received"] == 0 and cov["31"]["missing"] == cov["31"]["listed"]  # Shanghai sent nothing
    comp = roll.completeness
    assert comp["expected"] == 31 * 6 and comp["accepted"] == 18 and comp["missing"] == 31 * 6 - 18
    row42 = next(r for r in comp["matrix"] if r["prov_id"] == "42")
    assert {c["state"] for c in row42["units"].values()} == {"accepted"}
    assert {(x["party"], x["unit"]) for x in roll.lineage} == {(p, u) for p in PROVINCES for u in
                                                                ("31201", "31202", "31203", "32001", "32002", "32003")}


def test_superseding_resend_and_late_delivery(runtime: Any, setup: Setup, tmp_path: Path, spec: Any) -> None:
    setup.cycle("202610", deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    setup.province("42")
    rows = valid_rows(spec)
    receive_folder(runtime, "prov42", rows.write(tmp_path / "r0"))
    setup.drain()
    with runtime.db.session() as s:
        before = RollupService(s, runtime.spec).totals("202610")["income_amt"]
    net = rows.rows["VIP_SUMMARY"][0]["LATN_ID"]
    for table in ("VIP_SUMMARY", "VIP_INCOME_SUM"):
        for r in rows.rows[table]:
            if r["LATN_ID"] == net:
                r["INCOME_AMT"] = Decimal(r["INCOME_AMT"]) + (Decimal("100.01") if table == "VIP_SUMMARY"
                                                              else Decimal("50.005").quantize(Decimal("0.01")))
    # Summary 100.01 = two billing items of 50.00 and 50.01 more
    items = [r for r in rows.rows["VIP_INCOME_SUM"] if r["LATN_ID"] == net]
    items[1]["INCOME_AMT"] += Decimal("0.01")
    with runtime.db.session() as s:  # the resend arrives after the deadline
        from exchange_server.cycles.services import CycleService

        CycleService(s, runtime.spec).set_deadline("202610", dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc))
    receive_folder(runtime, "prov42", rows.write(tmp_path / "r1", resend=1,
                                                 units=["VIP_SUMMARY", "VIP_SERV_SUM", "VIP_INCOME_SUM"]))
    setup.drain()
    with runtime.db.session() as s:
        svc = RollupService(s, runtime.spec)
        roll = svc.rollup("202610")
        assert roll.totals["income_amt"] == before + Decimal("100.01")
        assert sum(i["income_amt"] for i in roll.by_billing_item) == roll.totals["income_amt"]
        lineage = {x["unit"]: x for x in roll.lineage}
        assert lineage["32001"]["version"] == 2 and lineage["32001"]["resend"] == 1 and lineage["32001"]["late"]
        assert lineage["31201"]["version"] == 1 and lineage["31201"]["resend"] == 0
        row = next(r for r in roll.completeness["matrix"] if r["prov_id"] == "42")
        assert row["units"]["32001"]["state"] == "late" and row["units"]["31201"]["state"] == "accepted"
        traced = svc.trace("202610", "42")
        assert {t["delivery_id"] for t in traced} == {lineage["32001"]["delivery_id"]}
        assert sum(t["income_amt"] for t in traced) == roll.totals["income_amt"]
        old = s.scalars(select(SummaryFact).where(SummaryFact.current.is_(False))).all()
        assert len(old) == len(rows.rows["VIP_SUMMARY"])  # the superseded rows are kept, not counted


amounts = st.lists(st.tuples(st.sampled_from(["11", "42", "44", "65"]),
                             st.integers(min_value=-10**9, max_value=10**13)), min_size=1, max_size=40)


@pytest.fixture
def a_version(runtime: Any, setup: Setup) -> int:
    """A version for hand-made fact rows to belong to."""
    from exchange_server.submissions.models import DataScope, Delivery, UnitVersion

    setup.province("42")
    with runtime.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == "prov42"))
        d = Delivery(account_id=account.id, channel="http", fingerprint="0" * 64, party="42", period="209912",
                     mode="P", resend=0, status="accepted")
        scope = DataScope(party="42", unit="32001", cycle="209912")
        s.add_all([d, scope])
        s.flush()
        v = UnitVersion(scope_id=scope.id, number=1, delivery_id=d.id, resend=0)
        s.add(v)
        s.flush()
        return v.id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=amounts)
def test_provinces_always_add_up_to_the_group_total_to_the_fen(runtime: Any, a_version: int,
                                                               data: list[tuple[str, int]]) -> None:
    with runtime.db.session() as s:
        s.execute(delete(SummaryFact).where(SummaryFact.cycle == "209912"))
        for i, (prov, fen) in enumerate(data):
            s.add(SummaryFact(version_id=a_version, party=prov, cycle="209912", prov_id=prov, latn_id=f"9{i:03d}",
                              current=True, cust_cnt=1, cust_cnt_group=1, cust_cnt_prov=0, cust_cnt_la=0,
                              cust_cnt_lb=0, cust_cnt_lc=0, last_cust_cnt=1, new_cust_cnt=0, lost_cust_cnt=0,
                              top500_cust_cnt=0, manager_cnt=1, income_amt=fen, income_ytd_amt=fen,
                              income_ly_amt=fen))
    with runtime.db.session() as s:
        svc = RollupService(s, runtime.spec)
        total = svc.totals("209912")["income_amt"]
        provinces = svc.by_province("209912")
    exact = sum(Decimal(f).scaleb(-2) for _, f in data)
    assert total == exact == sum(p["income_amt"] for p in provinces)


def test_kept_downloads_are_reused_until_an_acceptance_changes_the_key(national: dict[str, Path], runtime: Any,
                                                                      setup: Setup, tmp_path: Path, spec: Any) -> None:
    from exchange_server.consolidation.exports import RenderedDownloads, rollup_json

    kept = RenderedDownloads()
    renders: list[str] = []

    def download() -> bytes:
        with runtime.db.session() as s:
            svc = RollupService(s, runtime.spec)
            key = svc.key("202610")

            def make() -> bytes:
                renders.append(key)
                return rollup_json(svc.rollup("202610"))
            return kept.get(str(runtime.db.engine.url), "202610", key, "json", make)

    first = download()
    assert download() is first and len(renders) == 1  # the same key: neither computed nor rendered again
    with runtime.db.session() as s:
        assert RollupService(s, runtime.spec).rollup("202610") == RollupService(s, runtime.spec).compute("202610")
    # Shanghai delivers: a new key, the next download includes it.
    generate(spec, "202610", tmp_path / "sh", provinces=["31"], scale=1, fmt="txt", seed=7)
    setup.province("31")
    receive_folder(runtime, "prov31", tmp_path / "sh" / "31")
    assert setup.drain() == 1
    after = download()
    assert len(renders) == 2 and renders[0] != renders[1]
    before_doc, after_doc = json.loads(first), json.loads(after)
    assert Decimal(after_doc["totals"]["income_amt"]) > Decimal(before_doc["totals"]["income_amt"])
    assert "31" in {p["prov_id"] for p in after_doc["by_province"]}
    assert after_doc["completeness"]["accepted"] == before_doc["completeness"]["accepted"] + 6
