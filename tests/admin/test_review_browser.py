"""The review walkthrough in headless Chromium against the real server on loopback.

Sign in, open a rejected delivery, read the failing line, comment, request a resend, see the
province's corrected resend accepted, and find all of it in the audit log.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.runtime import Runtime
from exchange_server.sftp.outbox import trees
from schemas import Spec
from tests.admin.conftest import Accounts, sign_in_page, upload
from tests.support.browser import screenshot_path
from tests.support.deliveries import valid_rows



@pytest.mark.slow
def test_review_walkthrough(page: Any, admin_url: str, admin_runtime: Runtime, accounts: Accounts, spec: Spec,
                            tmp_path: Path) -> None:
    province, admin = accounts.province("44"), accounts.admin()
    rows = valid_rows(spec, party="44", cycle="202611")
    good_level = rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"]
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"  # a code not in the code list: an error
    first = upload(admin_url, province, rows, tmp_path / "r0", encoding="GB18030")
    assert first["status"] == "rejected"
    did = first["delivery_id"]

    # Sign in and find it in the queue.
    sign_in_page(page, admin_url, admin)
    assert page.url == f"{admin_url}/admin/review/"
    assert page.locator(".admin-nav a.current").get_attribute("data-section") == "review"
    page.select_option("#f-province", "44")
    with page.expect_navigation():
        page.click("#queue-filters button")
    row = page.locator(f'#queue tr[data-delivery="{did}"]')
    assert row.get_attribute("data-state") == "open"
    with page.expect_navigation():
        row.locator("a").first.click()
    assert page.url.startswith(f"{admin_url}/admin/review/{did}")

    # Read the failing line, decoded from GB18030.
    failing = page.locator("#context .line.failing")
    assert failing.get_attribute("data-line") == "2"
    assert "湖北省测试客户2有限公司" in failing.inner_text() and "|X|" in failing.inner_text()
    assert page.locator("#context .line").count() >= 3
    assert page.locator("#summary tr[data-code] .count").first.inner_text().strip().isdigit()
    assert page.locator("#accept-warnings-form").count() == 0  # errors can never be overridden
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(screenshot_path("admin-delivery.png", tmp_path)), full_page=True)

    # Comment, then request a resend.
    page.fill("#comment-body", "第2行客户级别代码 X 无效，请按代码表改正。")
    with page.expect_navigation():
        page.click("#comment-form button")
    assert "第2行客户级别代码 X 无效" in page.locator("#comments").inner_text()
    page.fill("#resend-note", "请于本周内重报。")
    with page.expect_navigation():
        page.click("#resend-form button")
    assert page.locator("#review-status .review-state").get_attribute("data-state") == "resend_requested"
    assert page.locator("#comments .comment").count() == 2
    outbox = trees(admin_runtime)[0].outbox("44") / f"{first['check_file'][:-4]}.comment.txt"
    assert "请于本周内重报。" in outbox.read_text("utf-8")

    # The province corrects the value and resends; the resend is accepted and shows as the later version.
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = good_level
    second = upload(admin_url, province, rows, tmp_path / "r1", resend=1, encoding="GB18030")
    assert second["status"] == "accepted", second["counts"]
    page.reload()
    later = page.locator('#versions tr[data-relation="later"]')
    assert later.count() == 1
    assert later.get_attribute("data-delivery") == str(second["delivery_id"])
    assert later.get_attribute("data-status") == "accepted"

    # Everything is in the audit log: the page if it is there, the audit_event table in any case.
    with admin_runtime.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.target == f"delivery:{did}")
                           .order_by(AuditEvent.id)).all()
        mine = [(e.actor, e.action) for e in events if e.actor == admin.name]
        assert mine == [(admin.name, "review.comment"), (admin.name, "review.resend_requested"),
                        (admin.name, "review.comment")]
        accepted = s.scalars(select(AuditEvent).where(AuditEvent.target == f"delivery:{second['delivery_id']}")).all()
        assert accepted, "the accepted resend is audited too"
    response = page.goto(f"{admin_url}/admin/audit")
    if response is not None and response.status == 200:  # the audit page (written alongside) lists the actions
        text = page.locator("main").inner_text()
        assert "review.comment" in text or "review.resend_requested" in text
