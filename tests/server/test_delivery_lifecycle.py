"""End to end over real HTTP on loopback, on SQLite and PostgreSQL: a delivery's whole life.

Each test uploads real files (written by the spec's writer) to a running server (cheroot
plus an ingestion worker) with the agent's HTTP transport, then follows the verdict.
"""
from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from exchange_server.ingestion.models import IngestJob
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import DataScope, Delivery, UnitVersion
from province_agent.transport import HttpError, HttpTransport
from tests.server.conftest import Setup
from tests.support.deliveries import valid_rows


def files_of(folder: Path) -> list[Path]:
    """Every file of a written delivery."""
    return sorted(p for p in folder.iterdir() if p.is_file())


def wait_final(http: HttpTransport, delivery_id: int, timeout: float = 60) -> dict[str, Any]:
    """Poll the delivery until validation has ended."""
    deadline = time.monotonic() + timeout
    while True:
        d = http.get_json(f"/api/v1/deliveries/{delivery_id}")
        if d["status"] in ("accepted", "accepted_with_warnings", "rejected", "failed"):
            return d
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery_id} still {d['status']} after {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def hubei(setup: Setup, live_server: Server) -> HttpTransport:
    """Province 42's HTTP client against the live server, with cycle 202610 open."""
    setup.cycle("202610")
    return HttpTransport(live_server.url, setup.province("42"))


def test_accepted_delivery_gets_receipt_report_feedback_and_versions(hubei: HttpTransport, tmp_path: Path,
                                                                     runtime: Any, spec: Any) -> None:
    folder = valid_rows(spec).write(tmp_path / "d")
    status, receipt = hubei.upload(files_of(folder))
    assert status == 202 and receipt["duplicate"] is False
    assert receipt["check_file"] == "P_42_202610_00.chk"
    assert {f["name"] for f in receipt["files"]} == {p.name for p in files_of(folder)}
    import hashlib
    for f in receipt["files"]:
        assert f["sha256"] == hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest()
    d = wait_final(hubei, receipt["delivery_id"])
    assert d["status"] == "accepted", d["counts"]
    assert d["errors"] == 0 and d["late"] is False
    assert {v["unit"] for v in d["versions"]} == {"31201", "31202", "31203", "32001", "32002", "32003"}
    assert all(v["current"] and v["number"] == 1 for v in d["versions"])
    report = hubei.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
    assert report["status"] == "accepted" and report["party"] == "42"
    rct = hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/receipt.xml")
    assert b"<DeliveryId>" in rct and receipt["files"][0]["sha256"].encode() in rct
    fbf = hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbf.xml")
    assert b"<Status>accepted</Status>" in fbf
    # Every received byte is in the archive under its digest.
    for f in receipt["files"]:
        assert runtime.archive.path(f["sha256"]).read_bytes() == (folder / f["name"]).read_bytes()


def test_warnings_late_delivery_is_accepted_with_warnings(setup: Setup, live_server: Server, tmp_path: Path,
                                                          spec: Any) -> None:
    setup.cycle("202610", deadline=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc))
    http = HttpTransport(live_server.url, setup.province("42"))
    rows = valid_rows(spec)
    rows.rows["VIP_SUMMARY"][0]["MANAGER_CNT"] = 0  # R32001-05, a warning
    _, receipt = http.upload(files_of(rows.write(tmp_path / "d")))
    d = wait_final(http, receipt["delivery_id"])
    assert d["status"] == "accepted_with_warnings"
    codes = {c["code"] for c in d["counts"]}
    assert {"W603", "R32001-05"} <= codes and d["late"] is True
    assert all(v["current"] for v in d["versions"])


def test_rejected_delivery_names_line_field_value_and_keeps_no_version(hubei: HttpTransport, tmp_path: Path,
                                                                      spec: Any, runtime: Any) -> None:
    rows = valid_rows(spec)
    rows.rows["VIP_SUMMARY"][1]["CUST_CNT"] = 11  # R32001-01/02 errors
    rows.rows["VIP_CUST_INFO"][0]["LEVEL_ID"] = "9"  # E307
    _, receipt = hubei.upload(files_of(rows.write(tmp_path / "d")))
    d = wait_final(hubei, receipt["delivery_id"])
    assert d["status"] == "rejected" and d["versions"] == []
    report = hubei.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
    e307 = next(f for f in report["findings"] if f["code"] == "E307")
    assert e307["line"] == 1 and e307["field"] == "LEVEL_ID" and e307["value"] == "9"
    assert e307["message_zh"] and e307["message_en"] and e307["file"].endswith("_31201_00_001.txt")
    fbr = hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbr.xml")
    assert b'code="E307"' in fbr
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(UnitVersion)) == 0


def test_identical_resend_returns_the_first_receipt(hubei: HttpTransport, tmp_path: Path, spec: Any,
                                                    runtime: Any) -> None:
    files = files_of(valid_rows(spec).write(tmp_path / "d"))
    status1, first = hubei.upload(files)
    status2, second = hubei.upload(list(reversed(files)))
    assert (status1, status2) == (202, 200)
    assert second["duplicate"] is True and second["delivery_id"] == first["delivery_id"]
    assert second["received_at"] == first["received_at"]
    wait_final(hubei, first["delivery_id"])
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1
        assert s.scalar(select(func.count()).select_from(IngestJob)) == 1


def test_superseding_resend_replaces_exactly_its_scope(hubei: HttpTransport, tmp_path: Path, spec: Any,
                                                       runtime: Any) -> None:
    rows = valid_rows(spec)
    _, r0 = hubei.upload(files_of(rows.write(tmp_path / "r0")))
    assert wait_final(hubei, r0["delivery_id"])["status"] == "accepted"
    # Resend 01 carries only the summaries (32001-32003), with one revenue figure changed.
    for table in ("VIP_SUMMARY", "VIP_INCOME_SUM"):
        for row in rows.rows[table]:
            if row["LATN_ID"] == rows.rows["VIP_SUMMARY"][0]["LATN_ID"]:
                row["INCOME_AMT"] = Decimal(row["INCOME_AMT"]) + (Decimal("2.00") if table == "VIP_SUMMARY"
                                                                  else Decimal("1.00"))
    _, r1 = hubei.upload(files_of(rows.write(tmp_path / "r1", resend=1,
                                             units=["VIP_SUMMARY", "VIP_SERV_SUM", "VIP_INCOME_SUM"])))
    d1 = wait_final(hubei, r1["delivery_id"])
    assert d1["status"] == "accepted", d1["counts"]
    assert {v["unit"]: v["number"] for v in d1["versions"]} == {"32001": 2, "32002": 2, "32003": 2}
    d0 = hubei.get_json(f"/api/v1/deliveries/{r0['delivery_id']}")
    current = {v["unit"]: v["current"] for v in d0["versions"]}
    assert current == {"31201": True, "31202": True, "31203": True, "32001": False, "32002": False, "32003": False}
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(UnitVersion)) == 9  # history stays
        scopes = s.scalars(select(DataScope).where(DataScope.party == "42")).all()
        assert len(scopes) == 6 and all(sc.current_version_id is not None for sc in scopes)


def test_stale_resend_number_is_refused(hubei: HttpTransport, tmp_path: Path, spec: Any) -> None:
    rows = valid_rows(spec)
    _, r1 = hubei.upload(files_of(rows.write(tmp_path / "a", resend=1)))
    wait_final(hubei, r1["delivery_id"])
    rows.rows["VIP_CUST_CONTACT"][0]["TITLE"] = "总经理"
    _, r0 = hubei.upload(files_of(rows.write(tmp_path / "b", resend=1)))
    d = wait_final(hubei, r0["delivery_id"])
    assert d["status"] == "rejected" and [c["code"] for c in d["counts"]] == ["E605"]


def test_delivery_to_closed_cycle_is_rejected_with_e601(setup: Setup, live_server: Server, tmp_path: Path,
                                                        spec: Any) -> None:
    setup.cycle("202610", state="closed")
    http = HttpTransport(live_server.url, setup.province("42"))
    _, receipt = http.upload(files_of(valid_rows(spec).write(tmp_path / "d")))
    d = wait_final(http, receipt["delivery_id"])
    assert d["status"] == "rejected" and "E601" in {c["code"] for c in d["counts"]}
    report = http.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
    e601 = next(f for f in report["findings"] if f["code"] == "E601")
    assert "202610" in e601["message_en"] and "closed" in e601["message_en"]


def test_unknown_cycle_is_rejected_with_e602(setup: Setup, live_server: Server, tmp_path: Path, spec: Any) -> None:
    http = HttpTransport(live_server.url, setup.province("42"))
    _, receipt = http.upload(files_of(valid_rows(spec).write(tmp_path / "d")))
    d = wait_final(http, receipt["delivery_id"])
    assert "E602" in {c["code"] for c in d["counts"]}


def test_a_province_cannot_send_or_read_another_provinces_data(setup: Setup, live_server: Server, tmp_path: Path,
                                                                spec: Any) -> None:
    setup.cycle("202610")
    hubei = HttpTransport(live_server.url, setup.province("42"))
    guangdong = HttpTransport(live_server.url, setup.province("44"))
    _, own = hubei.upload(files_of(valid_rows(spec).write(tmp_path / "own")))
    wait_final(hubei, own["delivery_id"])
    # Guangdong sends Hubei's data as Hubei: rejected, E606, and no version for 42.
    _, forged = guangdong.upload(files_of(valid_rows(spec).write(tmp_path / "forged", resend=5)))
    d = wait_final(guangdong, forged["delivery_id"])
    assert d["status"] == "rejected" and "E606" in {c["code"] for c in d["counts"]}
    assert d["versions"] == []
    # Guangdong cannot read Hubei's delivery, not even learn that it exists.
    with pytest.raises(HttpError) as err:
        guangdong.get_json(f"/api/v1/deliveries/{own['delivery_id']}")
    assert err.value.status == 404 and err.value.code == "delivery_not_found"
    with pytest.raises(HttpError):
        guangdong.get_bytes(f"/api/v1/deliveries/{own['delivery_id']}/report")
    listed = guangdong.get_json("/api/v1/deliveries")
    assert [x["delivery_id"] for x in listed["items"]] == [forged["delivery_id"]]
    assert hubei.get_json("/api/v1/deliveries")["total"] == 1


def test_oversize_upload_is_refused_and_nothing_is_recorded(setup: Setup, database_url: str, tmp_path: Path,
                                                            spec: Any) -> None:
    from exchange_server.runtime import open_runtime
    from exchange_server.setup_service import initialise

    rt = open_runtime({"data_dir": str(tmp_path / "small"), "database_url": database_url, "max_file_size": 2000,
                       "sftp_port": 0})
    initialise(rt)
    small = Setup(rt)
    small.cycle("202610")
    server = Server(rt, "127.0.0.1", 0).start(workers=1)
    try:
        http = HttpTransport(server.url, small.province("42"))
        rows = valid_rows(spec, customers=40)
        with pytest.raises(HttpError) as err:
            http.upload(files_of(rows.write(tmp_path / "big")))
        assert err.value.status == 413 and err.value.code == "file_too_large"
        assert "2000" in err.value.body["message"] and err.value.body["message_zh"]
        with rt.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Delivery)) == 0
        assert list((rt.settings.archive_path / "staging").iterdir()) == []
    finally:
        server.shutdown()


def test_queued_deliveries_survive_a_server_restart(setup: Setup, runtime: Any, tmp_path: Path, spec: Any) -> None:
    setup.cycle("202610")
    token = setup.province("42")
    first = Server(runtime, "127.0.0.1", 0).start(workers=0)  # receives, validates nothing
    http = HttpTransport(first.url, token)
    rows = valid_rows(spec)
    ids = [http.upload(files_of(rows.write(tmp_path / f"r{i}", resend=i)))[1]["delivery_id"] for i in range(2)]
    assert {http.get_json(f"/api/v1/deliveries/{i}")["status"] for i in ids} == {"queued"}
    first.shutdown()
    from exchange_server.runtime import open_runtime

    again = open_runtime(settings=runtime.settings)
    second = Server(again, "127.0.0.1", 0).start(workers=1)
    try:
        http2 = HttpTransport(second.url, token)
        verdicts = [wait_final(http2, i)["status"] for i in ids]
        assert verdicts == ["accepted", "accepted"]
        d1 = http2.get_json(f"/api/v1/deliveries/{ids[1]}")
        assert all(v["current"] and v["number"] == 2 for v in d1["versions"])
    finally:
        second.shutdown()


def test_job_of_a_worker_that_died_mid_validation_is_taken_up_again(setup: Setup, runtime: Any, tmp_path: Path,
                                                                    spec: Any) -> None:
    from exchange_server.ingestion import queue

    setup.cycle("202610")
    server = Server(runtime, "127.0.0.1", 0).start(workers=0)
    try:
        http = HttpTransport(server.url, setup.province("42"))
        _, receipt = http.upload(files_of(valid_rows(spec).write(tmp_path / "d")))
    finally:
        server.shutdown()
    # A worker (pid 2**22 + 7 on this host: not running) claimed it and died before a verdict.
    dead = queue.worker_identity().split(":")[0] + f":{2**22 + 7}:w0"
    with runtime.db.session() as s:
        job = queue.claim(s, dead, lease_seconds=3600)
        assert job is not None
    assert setup.drain() == 0  # leased to the dead worker: nobody else may take it yet
    with runtime.db.session() as s:
        assert queue.recover_orphans(s) == 1  # what `serve` does when it starts
    assert setup.drain() == 1
    with runtime.db.session() as s:
        d = s.get(Delivery, receipt["delivery_id"])
        assert d is not None and d.status == "accepted"
