"""At HQ: a hub's approval manifest travels with the delivery it forwards, is kept, and is never data."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import Delivery, DeliveryApproval
from province_agent.transport import HttpTransport
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support.deliveries import valid_rows


def _manifest(folder: Path, check: str, **over: Any) -> Path:
    doc = {"format": "kam-approval/1", "hub": "42", "check": check, "party": "42", "cycle": "202610",
           "forwarded_by": "zhang.wei",
           "networks": [{"latn_id": "027", "by": "li.na", "at": "2026-11-03T02:00:00+00:00",
                         "versions": [{"unit": "31201", "delivery": "P_027_202610_00", "version": 1}]}]}
    doc.update(over)
    path = folder / f"{check}.approval.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return path


def test_the_manifest_is_recorded_not_validated_and_not_part_of_the_delivery(setup: Setup, live_server: Server,
                                                                            spec: Any, tmp_path: Path) -> None:
    setup.cycle("202610")
    hubei = HttpTransport(live_server.url, setup.province("42"))
    folder = valid_rows(spec).write(tmp_path / "d")
    check = next(folder.glob("*.chk")).name[:-4]
    plain = files_of(folder)
    _manifest(folder, check)
    status, receipt = hubei.upload(files_of(folder))
    assert status == 202
    d = wait_final(hubei, receipt["delivery_id"])
    assert d["status"] == "accepted"  # the manifest is no unlisted data file (it would be E-coded)
    assert d["approval"]["hub"] == "42" and d["approval"]["networks"][0]["by"] == "li.na"
    # The same data again, without the manifest, is the same delivery: the manifest is no part of it.
    status, again = hubei.upload(plain)
    assert status == 200 and again["delivery_id"] == receipt["delivery_id"]
    with live_server.runtime.db.session() as s:
        delivery = s.get(Delivery, receipt["delivery_id"])
        assert all(not f.name.endswith(".approval.json") for f in delivery.files)
        kept = s.get(DeliveryApproval, delivery.id)
        assert live_server.runtime.archive.read_bytes(kept.sha256).startswith(b"{")  # archived as received


def test_a_manifest_that_cannot_be_trusted_changes_nothing(setup: Setup, live_server: Server, spec: Any,
                                                           tmp_path: Path) -> None:
    setup.cycle("202610")
    hubei = HttpTransport(live_server.url, setup.province("42"))
    ids = []
    for n, bad in enumerate(({"hub": "33"}, {"networks": [{"latn_id": "0571", "by": "x"}]}, None)):
        rows = valid_rows(spec)
        rows.rows["VIP_SUMMARY"][0]["MANAGER_CNT"] = 40 + n  # different bytes, different deliveries
        folder = rows.write(tmp_path / f"d{n}")
        check = next(folder.glob("*.chk")).name[:-4]
        if bad is None:
            (folder / f"{check}.approval.json").write_bytes(b"\xff not json")
        else:
            _manifest(folder, check, **bad)
        status, receipt = hubei.upload(files_of(folder))
        assert status == 202
        ids.append(wait_final(hubei, receipt["delivery_id"])["delivery_id"])
    with live_server.runtime.db.session() as s:
        assert s.scalars(select(DeliveryApproval)).all() == []
        ignored = s.scalars(select(AuditEvent).where(AuditEvent.action == "delivery.approval_ignored")).all()
        problems = sorted(e.detail["problem"] for e in ignored)
    assert len(problems) == 3
    assert any("not the sender's province" in p for p in problems)
    assert any("not a local network of 42" in p for p in problems)
    assert any("not UTF-8 JSON" in p for p in problems)
