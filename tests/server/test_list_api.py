"""The top-500 list as provinces meet it: their slice only, acknowledged, and enforced on upload."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from exchange_server.lists.models import ListDownload, ListSlice, ListVersion
from exchange_server.lists.services import ListService
from exchange_server.runtime.serve import Server
from province_agent.transport import HttpError, HttpTransport
from schemas.validation import validate_delivery
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support.deliveries import networks, valid_rows

LIST_FIELDS = ["NATIONAL_CUST_ID", "CUST_RANK", "CUST_NAME", "GROUP_PARENT_NAME", "C_TYPE_ID", "LEVEL_ID",
               "LEAD_PROV_ID", "LEAD_LATN_ID", "HQ_MANAGER_NAME", "HQ_MANAGER_PHONE", "EFF_DATE", "EXP_DATE"]


def write_list(path: Path, spec: Any, customers: list[tuple[str, str, str]]) -> Path:
    """A national list as CSV: (id, province, local network) per customer."""
    ctype = valid_rows(spec).rows["VIP_CUST_INFO"][0]["C_TYPE_ID"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LIST_FIELDS)
        for rank, (cid, prov, net) in enumerate(customers, start=1):
            w.writerow([cid, rank, f"测试客户{rank}", "", ctype, "1", prov, net, "王芳", "010-66660000",
                        "20260101", ""])
    return path


@pytest.fixture
def published(runtime: Any, tmp_path: Path, spec: Any) -> dict[str, Any]:
    """A published list: Hubei's three test customers plus one more; one Guangdong customer."""
    rows = valid_rows(spec)
    hubei_nets = sorted({r["LATN_ID"] for r in rows.rows["VIP_SUMMARY"]})
    customers = [(c, "42", hubei_nets[0]) for c in rows.list_ids] + [("G420009999", "42", hubei_nets[0]),
                                                                      ("G440000001", "44", "020")]
    source = write_list(tmp_path / "list.csv", spec, customers)
    with runtime.db.session() as s:
        svc = ListService(s, runtime.archive, runtime.spec, "admin")
        v = svc.publish(svc.load(source, "2026V01"))
    return {"slices": len(v), "extra": "G420009999"}


def test_province_fetches_only_its_slice_and_the_download_is_acknowledged(
        published: dict[str, Any], setup: Setup, live_server: Server, runtime: Any, tmp_path: Path, spec: Any) -> None:
    assert published["slices"] == 2
    hubei = HttpTransport(live_server.url, setup.province("42"))
    meta = hubei.get_json("/api/v1/list")
    assert (meta["version"], meta["province"], meta["rows"], meta["added"]) == ("2026V01", "42", 4, 5)
    names = [f["name"] for f in meta["files"]]
    assert names == ["D_42_2026V01_00.chk", "D_42_2026V01_31101_00_001.txt"]
    out = tmp_path / "slice"
    out.mkdir()
    for f in meta["files"]:
        (out / f["name"]).write_bytes(hubei.get_bytes(f["url"]))
    report = validate_delivery(sorted(out.iterdir()), spec)
    assert report.errors == 0 and report.files["D_42_2026V01_31101_00_001.txt"].rows == 4
    assert "G440000001" not in (out / names[1]).read_text("utf-8")
    with pytest.raises(HttpError) as err:  # Guangdong's file is not Hubei's to fetch
        hubei.get_bytes("/api/v1/list/files/D_44_2026V01_00.chk")
    assert err.value.status == 404
    with runtime.db.session() as s:
        acks = s.scalars(select(ListDownload)).all()
        assert sorted(a.file_name for a in acks) == sorted(names) and {a.channel for a in acks} == {"http"}


def test_list_rules_apply_on_upload(published: dict[str, Any], setup: Setup, live_server: Server, tmp_path: Path,
                                    spec: Any) -> None:
    setup.cycle("202610")
    hubei = HttpTransport(live_server.url, setup.province("42"))
    rows = valid_rows(spec)
    rows.rows["VIP_CUST_INFO"][2]["NATIONAL_CUST_ID"] = "G429999999"  # not on the list: E604 (and X-004/5)
    _, receipt = hubei.upload(files_of(rows.write(tmp_path / "d")))
    d = wait_final(hubei, receipt["delivery_id"])
    codes = {c["code"] for c in d["counts"]}
    assert d["status"] == "rejected" and {"E604", "X-007"} <= codes
    report = hubei.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
    missing = {f["value"] for f in report["findings"] if f["code"] == "X-007"}
    assert missing == {published["extra"], valid_rows(spec).list_ids[2]}
    e604 = next(f for f in report["findings"] if f["code"] == "E604")
    assert e604["value"] == "G429999999" and "2026V01" in e604["message_en"]


def test_no_list_yet_is_a_clear_404(setup: Setup, live_server: Server) -> None:
    hubei = HttpTransport(live_server.url, setup.province("42"))
    with pytest.raises(HttpError) as err:
        hubei.get_json("/api/v1/list")
    assert err.value.status == 404 and err.value.body["message_zh"]


def test_every_published_version_has_its_slice_listed_and_served(
        published: dict[str, Any], setup: Setup, live_server: Server, runtime: Any, tmp_path: Path, spec: Any) -> None:
    """2026V02 adds Shanghai's first customer; 2026V03 is only a draft. Hubei sees both published versions."""
    rows = valid_rows(spec)
    hubei_net = sorted({r["LATN_ID"] for r in rows.rows["VIP_SUMMARY"]})[0]
    shanghai_net = networks(spec, "31", dt.date(2026, 10, 1))[0]
    v1 = [(c, "42", hubei_net) for c in rows.list_ids] + [(published["extra"], "42", hubei_net),
                                                          ("G440000001", "44", "020")]
    with runtime.db.session() as s:
        svc = ListService(s, runtime.archive, runtime.spec, "admin")
        svc.publish(svc.load(write_list(tmp_path / "v2.csv", spec, v1 + [("G310000001", "31", shanghai_net)]),
                             "2026V02"))
        svc.load(write_list(tmp_path / "v3.csv", spec, v1), "2026V03")  # a draft: no province sees it
    hubei = HttpTransport(live_server.url, setup.province("42"))
    listed = hubei.get_json("/api/v1/list/versions")
    assert [(v["version"], v["state"], v["rows"]) for v in listed] == [("2026V01", "superseded", 4),
                                                                      ("2026V02", "published", 4)]
    assert all(v["published_at"].endswith("Z") for v in listed)
    old = listed[0]
    assert [f["name"] for f in old["files"]] == ["D_42_2026V01_00.chk", "D_42_2026V01_31101_00_001.txt"]
    out = tmp_path / "v01"
    out.mkdir()
    for f in old["files"]:  # the superseded version's files are still served, and are what was listed
        data = hubei.get_bytes(f["url"])
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"])
        (out / f["name"]).write_bytes(data)
    assert validate_delivery(sorted(out.iterdir()), spec).errors == 0
    assert hubei.get_json("/api/v1/list")["version"] == "2026V02"  # the current slice is unchanged
    with runtime.db.session() as s:  # acknowledged against the superseded version's slice
        acks = s.execute(select(ListVersion.version, ListSlice.province, ListDownload.file_name)
                         .join(ListSlice, ListSlice.id == ListDownload.slice_id)
                         .join(ListVersion, ListVersion.id == ListSlice.list_version_id)).all()
        assert sorted(tuple(a) for a in acks) == [("2026V01", "42", f["name"]) for f in old["files"]]
    for name in ("D_44_2026V01_00.chk", "D_44_2026V01_31101_00_001.txt",  # Guangdong's
                 "D_42_2026V03_00.chk",  # a draft's
                 "D_31_2026V02_00.chk"):  # Shanghai's
        with pytest.raises(HttpError) as err:
            hubei.get_bytes(f"/api/v1/list/files/{name}")
        assert (err.value.status, err.value.code) == (404, "list_file_not_found"), name
    shanghai = HttpTransport(live_server.url, setup.province("31"))
    assert [(v["version"], v["rows"]) for v in shanghai.get_json("/api/v1/list/versions")] == [("2026V02", 1)]
    with pytest.raises(HttpError) as err:  # Shanghai had no slice in 2026V01
        shanghai.get_bytes("/api/v1/list/files/D_31_2026V01_00.chk")
    assert err.value.status == 404
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ListDownload)) == 2  # refusals acknowledge nothing
    doc = hubei.get_json("/api/v1/openapi.json")
    assert "get" in doc["paths"]["/api/v1/list/versions"] and "get" in doc["paths"]["/api/v1/list/files/{name}"]


def test_no_published_version_lists_nothing(setup: Setup, live_server: Server, runtime: Any, tmp_path: Path,
                                            spec: Any) -> None:
    with runtime.db.session() as s:
        svc = ListService(s, runtime.archive, runtime.spec, "admin")
        net = networks(spec, "42", dt.date(2026, 10, 1))[0]
        svc.load(write_list(tmp_path / "v1.csv", spec, [("G420000001", "42", net)]), "2026V01")  # a draft
    hubei = HttpTransport(live_server.url, setup.province("42"))
    assert hubei.get_json("/api/v1/list/versions") == []
    with pytest.raises(HttpError) as err:
        hubei.get_bytes("/api/v1/list/files/D_42_2026V01_00.chk")
    assert err.value.status == 404
