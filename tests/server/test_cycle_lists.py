"""The top-500 list as it stood for each cycle: checks, coverage and publication over the real boundary.

Hubei (42) reports 202610 under list 2026V01; HQ then publishes 2026V02 mid-cycle, which
removes customer A as of 20261130 and adds customer D from 20261201. 202610 keeps being
judged against the entries in force in October (A on the list, D not), 202612 against
December's; a version that would make accepted data of an open cycle fail is shown first
and published only knowingly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.cli import main
from exchange_server.consolidation.rollups import RollupService
from exchange_server.errors import Conflict
from exchange_server.lists.impact import ListImpactService
from exchange_server.lists.services import ListService
from exchange_server.runtime.serve import Server
from province_agent.transport import HttpTransport
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support.deliveries import DeliveryRows, valid_rows
from tests.support.lists import Entry, write_list_csv

A, B, C, D = (f"G42{i:07d}" for i in range(1, 5))


def _rows(spec: Any, cycle: str, customers: list[str]) -> DeliveryRows:
    """Hubei's delivery for a cycle, reporting exactly ``customers`` (from the first four test customers)."""
    rows = valid_rows(spec, cycle=cycle, customers=4)
    keep = set(customers)
    for name in ("VIP_CUST_INFO", "VIP_CUST_CONTACT", "VIP_CUST_PROD"):
        rows.rows[name] = [r for r in rows.rows[name] if r["NATIONAL_CUST_ID"] in keep]
    served: dict[str, int] = {}
    income: dict[str, Any] = {}
    for r in rows.rows["VIP_CUST_PROD"]:
        served[r["LATN_ID"]] = served.get(r["LATN_ID"], 0) + 1
        income[r["LATN_ID"]] = income.get(r["LATN_ID"], 0) + r["INCOME_AMT"]
    dropped = {r["LATN_ID"]: r for r in valid_rows(spec, cycle=cycle, customers=4).rows["VIP_CUST_PROD"]
               if r["NATIONAL_CUST_ID"] not in keep}
    for s in rows.rows["VIP_SUMMARY"]:  # keep true for the customers kept
        s["TOP500_CUST_CNT"] = served.get(s["LATN_ID"], 0)
    assert all(s["INCOME_AMT"] >= income.get(s["LATN_ID"], 0) for s in rows.rows["VIP_SUMMARY"]), dropped
    return rows


def _deliver(http: HttpTransport, rows: DeliveryRows, folder: Path, resend: int = 0) -> dict[str, Any]:
    status, receipt = http.upload(files_of(rows.write(folder, resend=resend)))
    assert status == 202, receipt
    return wait_final(http, receipt["delivery_id"])


def _findings(http: HttpTransport, delivery_id: int) -> list[dict[str, Any]]:
    return list(http.get_json(f"/api/v1/deliveries/{delivery_id}/report")["findings"])


def _publish(runtime: Any, spec: Any, path: Path, version: str, **kw: Any) -> None:
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        lists.publish(lists.load(path, version), **kw)


@pytest.fixture
def hubei(setup: Setup, live_server: Server, runtime: Any, spec: Any, tmp_path: Path) -> HttpTransport:
    """Cycles 202610 and 202612 open; list 2026V01 (A, B, C) published; 202610 accepted with A, B, C."""
    setup.cycle("202610")
    setup.cycle("202612")
    nets = sorted({r["LATN_ID"] for r in valid_rows(spec).rows["VIP_SUMMARY"]})
    _publish(runtime, spec, write_list_csv(tmp_path / "v1.csv", spec, [Entry(c, "42", nets[0]) for c in (A, B, C)]),
             "2026V01")
    http = HttpTransport(live_server.url, setup.province("42"))
    d = _deliver(http, _rows(spec, "202610", [A, B, C]), tmp_path / "oct0")
    assert d["status"] == "accepted", _findings(http, d["delivery_id"])
    return http


def _v2(spec: Any, tmp_path: Path) -> Path:
    nets = sorted({r["LATN_ID"] for r in valid_rows(spec).rows["VIP_SUMMARY"]})
    return write_list_csv(tmp_path / "v2.csv", spec, [
        Entry(A, "42", nets[0], exp="20261130", change="D"), Entry(B, "42", nets[0]), Entry(C, "42", nets[0]),
        Entry(D, "42", nets[0], eff="20261201")])


def test_each_cycle_is_checked_against_the_entries_in_force_in_its_period(
        hubei: HttpTransport, runtime: Any, spec: Any, tmp_path: Path) -> None:
    with runtime.db.session() as s:
        draft = ListService(s, runtime.archive, runtime.spec, "admin").load(_v2(spec, tmp_path), "2026V02")
        assert not ListImpactService(s, runtime.spec).impact(draft).failing  # October's data still passes
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        lists.publish(lists.get("2026V02"))  # no confirmation needed: nothing accepted would fail
    # October, resent after 2026V02: A (valid until 20261130) may and must be there, D (from 20261201) need not.
    oct1 = _deliver(hubei, _rows(spec, "202610", [A, B, C]), tmp_path / "oct1", resend=1)
    assert oct1["status"] == "accepted", _findings(hubei, oct1["delivery_id"])
    # December: A is off the list, D is on it.
    dec = _deliver(hubei, _rows(spec, "202612", [A, B, C]), tmp_path / "dec0")
    assert dec["status"] == "rejected"
    found = {(f["code"], f["value"]): f for f in _findings(hubei, dec["delivery_id"])}
    e604 = found[("E604", A)]
    assert "2026V02" in e604["expected"] and "20261130" in e604["expected"] and "removed" in e604["expected"]
    assert "2026V02" in e604["message_en"] and "删除" in e604["message_zh"]
    x007 = found[("X-007", D)]
    assert "2026V02" in x007["expected"] and "20261201" in x007["expected"] and "added" in x007["expected"]
    assert {c for c, _ in found} == {"E604", "X-007"}, sorted(found)
    # Coverage follows the cycle too: October counts A, B, C (not D); December B, C, D.
    with runtime.db.session() as s:
        roll = RollupService(s, runtime.spec)
        october = {r["prov_id"]: r for r in roll.rollup("202610").coverage}["42"]
        december = {r["prov_id"]: r for r in roll.rollup("202612").coverage}["42"]
    assert (october["listed"], october["received"], october["missing_ids"]) == (3, 3, [])
    assert (december["listed"], december["received"], sorted(december["missing_ids"])) == (3, 0, sorted([B, C, D]))


def test_a_version_that_would_fail_accepted_data_is_shown_and_published_only_knowingly(
        hubei: HttpTransport, runtime: Any, spec: Any, tmp_path: Path, database_url: str) -> None:
    nets = sorted({r["LATN_ID"] for r in valid_rows(spec).rows["VIP_SUMMARY"]})
    # 2026V02 hands B to Guangdong from 20261001: Hubei's accepted October would report a customer it no longer leads.
    moved = write_list_csv(tmp_path / "v2.csv", spec, [Entry(A, "42", nets[0]), Entry(B, "44", "020", eff="20261001"),
                                                       Entry(C, "42", nets[0])])
    runner = CliRunner()
    env = {"KAM_DATABASE_URL": database_url}
    data = str(runtime.settings.data_dir)
    loaded = runner.invoke(main, ["--data-dir", data, "list", "load", str(moved), "--version", "2026V02", "--publish"],
                           env=env)
    assert loaded.exit_code == 1, loaded.output
    assert "202610 42" in loaded.output and "1 reported customer(s) no longer listed (E604)" in loaded.output
    assert B in loaded.output and "lead province 44" in loaded.output
    assert "not published" in loaded.output
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        assert lists.get("2026V02").state == "draft"
        with pytest.raises(Conflict) as refused:
            lists.publish(lists.get("2026V02"))
        assert refused.value.code == "list_publish_impact"
        [failing] = refused.value.errors["newly_failing"]
        assert failing == {"cycle": "202610", "prov_id": "42", "x007": 0, "e604": 1}
    shown = runner.invoke(main, ["--data-dir", data, "list", "impact", "2026V02", "--json"], env=env)
    assert shown.exit_code == 0 and '"newly_failing"' in shown.output
    done = runner.invoke(main, ["--data-dir", data, "list", "publish", "2026V02", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert "published 2026V02" in done.output
    with runtime.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "list.publish")
                          .order_by(AuditEvent.id.desc())).first()
        assert event is not None and event.detail["confirmed_impact"] is True
        assert event.detail["impact"] == [{"cycle": "202610", "prov_id": "42", "x007": 0, "e604": 1}]
    # The province's next resend of October is refused, and says which version and entry changed.
    again = _deliver(hubei, _rows(spec, "202610", [A, B, C]), tmp_path / "oct1", resend=1)
    assert again["status"] == "rejected"
    [e604] = [f for f in _findings(hubei, again["delivery_id"]) if f["code"] == "E604"]
    assert e604["value"] == B and "2026V02" in e604["expected"] and "lead province 44" in e604["expected"]


def test_a_draft_is_closed_from_the_command_line_only_knowingly(runtime: Any, spec: Any, tmp_path: Path,
                                                                 database_url: str) -> None:
    draft = write_list_csv(tmp_path / "v9.csv", spec, [Entry(A, "42", "027")])
    runner = CliRunner()
    env = {"KAM_DATABASE_URL": database_url}
    data = str(runtime.settings.data_dir)
    assert runner.invoke(main, ["--data-dir", data, "list", "load", str(draft), "--version", "2026V09"],
                         env=env).exit_code == 0
    asked = runner.invoke(main, ["--data-dir", data, "list", "close", "2026V09"], env=env)
    assert asked.exit_code == 1 and "not closed" in asked.output and "2026V09 (draft)" in asked.output
    with runtime.db.session() as s:
        assert ListService(s, runtime.archive, runtime.spec).get("2026V09").state == "draft"
    done = runner.invoke(main, ["--data-dir", data, "list", "close", "2026V09", "--yes"], env=env)
    assert done.exit_code == 0 and "closed 2026V09" in done.output, done.output
    with runtime.db.session() as s:
        assert ListService(s, runtime.archive, runtime.spec).get("2026V09").state == "closed"
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "list.close")).one()
        assert event.target == "list:2026V09" and event.actor == "cli"
    again = runner.invoke(main, ["--data-dir", data, "list", "close", "2026V09", "--yes"], env=env)
    assert again.exit_code != 0 and "not a draft" in again.output
