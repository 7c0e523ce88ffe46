"""The transmission monitor and the reminders page in headless Chromium against the real server on loopback.

Deliveries in every stage the monitor tells apart: accepted, accepted with warnings and rejected ones really
uploaded over HTTP and judged by the server's worker; waiting, being validated and failed ones put in the
database (no worker takes them); a file still arriving in an SFTP inbox. Both languages. Also takes the
documentation's screenshots (docs/screenshots/admin-monitor.png, admin-reminders.png).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from exchange_server.clock import utcnow
from exchange_server.cycles.services import CycleService
from exchange_server.runtime import Runtime
from schemas import Spec
from tests.admin.conftest import Accounts, sign_in_page, upload
from tests.admin.test_monitor import make_delivery
from tests.admin.test_review_pages import rejected, warned
from tests.support.browser import screenshot_path
from tests.support.deliveries import valid_rows


@pytest.mark.slow
def test_monitor_in_both_languages_and_reminders(page: Any, admin_url: str, admin_runtime: Runtime,
                                                 accounts: Accounts, spec: Spec, tmp_path: Path) -> None:
    rt = admin_runtime
    province, admin = accounts.province("45"), accounts.admin()
    good = upload(admin_url, province, valid_rows(spec, party="45", cycle="202610"), tmp_path / "ok")
    assert good["status"] == "accepted"
    warn = warned(spec, admin_url, province, tmp_path / "warn", cycle="202609")
    bad = rejected(spec, admin_url, province, tmp_path / "bad", cycle="202611")
    at = utcnow() - dt.timedelta(seconds=30)
    waiting = make_delivery(rt, province.name, "sftp", "queued", at, party="45")
    validating = make_delivery(rt, province.name, "dropbox", "validating", at, party="45")
    failed = make_delivery(rt, province.name, "http", "failed", at, took=12, party="45")
    inbox = rt.settings.sftp_root / "45" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "P_45_202610_01_31201_01_001.txt").write_bytes(b"x" * 4096)

    sign_in_page(page, admin_url, admin, start="/admin/monitor")
    assert page.url == f"{admin_url}/admin/monitor"
    assert page.locator("nav.admin-nav a.current").get_attribute("data-section") == "monitor"
    expected = {good["delivery_id"]: "accepted", warn["delivery_id"]: "accepted_with_warnings",
                bad["delivery_id"]: "rejected", waiting: "queued", validating: "validating", failed: "failed"}
    for did, stage in expected.items():
        row = page.locator(f'#deliveries tr[data-delivery="{did}"]')
        assert row.count() == 1 and row.get_attribute("data-stage") == stage, (did, stage)
    assert page.locator(f'#deliveries tr[data-delivery="{waiting}"]').get_attribute("data-channel") == "sftp"
    judged = page.locator(f'#deliveries tr[data-delivery="{good["delivery_id"]}"] td[data-seconds]')
    assert float(judged.get_attribute("data-seconds") or "nan") >= 0
    totals = page.locator('#totals tr[data-channel="all"]')
    for stage in ("accepted", "accepted_with_warnings", "rejected", "queued", "validating", "failed", "receiving"):
        assert int(totals.locator(f'td[data-stage="{stage}"]').get_attribute("data-count") or 0) >= 1, stage
    assert "P_45_202610_01_31201_01_001.txt" in page.locator("#in-flight").inner_text()
    text = page.locator("main").inner_text()
    assert "传输监控" in text and "等待校验" in text and "校验中" in text and "已拒收" in text and "4.0 KiB" in text
    page.screenshot(path=str(screenshot_path("admin-monitor.png", tmp_path)), full_page=True)

    # English, then a delivery's link leads to its review page.
    with page.expect_navigation():
        page.click("#lang-en")
    text = page.locator("main").inner_text()
    assert "Transmission monitor" in text and "waiting for validation" in text and "being validated" in text
    assert "accepted with warnings" in text and "Still arriving" in text and "传输监控" not in text
    with page.expect_navigation():
        page.click(f'#deliveries tr[data-delivery="{bad["delivery_id"]}"] a')
    assert page.url.endswith(f"/admin/review/{bad['delivery_id']}")
    with page.expect_navigation():
        page.click("#lang-zh")

    # Reminders: 202611's deadline in 20 hours; province 45 has not delivered it; send now.
    with rt.db.session() as s:
        CycleService(s, rt.spec, "test").set_deadline("202611", utcnow() + dt.timedelta(hours=20))
    page.goto(f"{admin_url}/admin/reminders")
    row = page.locator('#due tr[data-party="45"][data-cycle="202611"]')
    assert row.get_attribute("data-pending") == "yes" and "31201" in row.inner_text()
    with page.expect_navigation():
        page.click('button[data-action="send-now"]')
    assert "已发送" in page.locator("p.flash").inner_text()
    assert page.locator('#sent tr[data-party="45"][data-cycle="202611"][data-lead="1"]').count() == 1
    assert page.locator('#due tr[data-party="45"][data-cycle="202611"]').get_attribute("data-pending") == "no"
    assert (rt.settings.sftp_root / "45" / "outbox" / "202611.reminder.txt").is_file()
    page.screenshot(path=str(screenshot_path("admin-reminders.png", tmp_path)), full_page=True)
