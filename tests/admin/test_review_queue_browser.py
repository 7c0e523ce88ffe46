"""The review queue emptying itself, in headless Chromium against the real server on loopback.

A rejected delivery leaves the open queue once its corrected resend is accepted and shows as
"superseded by #N" (Chinese and English); two items are marked reviewed and commented on at
once through the queue's checkboxes; the failing line reads as field → value. Takes the
documentation's screenshots admin-review-queue.png and admin-review-line.png.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchange_server.runtime import Runtime
from province_agent.transport import HttpTransport
from schemas import Spec
from tests.admin.conftest import Accounts, sign_in_page, upload
from tests.support.browser import screenshot_path
from tests.support.deliveries import valid_rows


def _open_total(page: Any) -> int:
    return int(page.locator("#open-total").get_attribute("data-open"))


@pytest.mark.slow
def test_queue_empties_itself_and_bulk_actions(page: Any, admin_url: str, admin_runtime: Runtime,
                                               accounts: Accounts, spec: Spec, tmp_path: Path) -> None:
    admin = accounts.admin()
    yunnan = accounts.province("53")
    rows = valid_rows(spec, party="53", cycle="202610")
    good = rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"]
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"
    first = upload(admin_url, yunnan, rows, tmp_path / "r0")
    assert first["status"] == "rejected"
    did = first["delivery_id"]
    bulk = []
    for party in ("54", "61"):  # two more rejected items, of two other provinces, for the bulk actions
        login = accounts.province(party)
        r = valid_rows(spec, party=party, cycle="202609")
        r.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"
        d = upload(admin_url, login, r, tmp_path / party)
        assert d["status"] == "rejected"
        bulk.append((login, d["delivery_id"]))

    sign_in_page(page, admin_url, admin)
    assert page.locator(f'#queue tr[data-delivery="{did}"]').count() == 1
    before = _open_total(page)
    # Every code in the queue reads with its title.
    titles = page.locator(f'#queue tr[data-delivery="{did}"] .code-title').all_inner_texts()
    assert titles and all(len(t.split(None, 1)) == 2 for t in titles), titles

    # The failing line, field by field, the failing field marked.
    with page.expect_navigation():
        page.locator(f'#queue tr[data-delivery="{did}"] a').first.click()
    failing = page.locator("#line-fields tr.failing")
    assert failing.count() == 1 and failing.get_attribute("data-field") == "LEVEL_ID"
    assert "X" in failing.locator("td.value").inner_text() and "←" in failing.inner_text()
    assert page.locator('#line-fields tr[data-field="CUST_NAME"] td.value').inner_text() == "湖北省测试客户2有限公司"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.locator("#line-fields-panel").screenshot(path=str(screenshot_path("admin-review-line.png", tmp_path)))

    # The corrected resend is accepted: the item leaves the open queue and reads "superseded by #N".
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = good
    second = upload(admin_url, yunnan, rows, tmp_path / "r1", resend=1)
    assert second["status"] == "accepted", second["counts"]
    sid = second["delivery_id"]
    page.reload()
    assert page.locator("#superseded").inner_text().startswith(f"已被 #{sid} 取代")
    page.goto(f"{admin_url}/admin/review/")
    assert page.locator(f'#queue tr[data-delivery="{did}"]').count() == 0
    assert _open_total(page) == before - 1
    page.select_option("#f-state", "closed")
    with page.expect_navigation():
        page.click("#queue-filters button")
    link = page.locator(f'#queue tr[data-delivery="{did}"] a.superseded')
    assert link.inner_text() == f"已被 #{sid} 取代"
    page.click("#lang-en")
    page.wait_for_selector("html[lang=en]")
    link = page.locator(f'#queue tr[data-delivery="{did}"] a.superseded')
    assert link.inner_text() == f"superseded by #{sid}"
    with page.expect_navigation():
        link.click()
    assert page.url == f"{admin_url}/admin/review/{sid}"

    # Bulk: mark two items reviewed at once, then comment to both provinces at once.
    page.goto(f"{admin_url}/admin/review/?cycle=202609")
    for _login, bid in bulk:
        page.check(f"#pick-{bid}")
    with page.expect_navigation():
        page.click("#bulk-reviewed")
    assert page.locator("#bulk-result").inner_text() == "2 marked reviewed"
    assert "cycle=202609" in page.url
    for _login, bid in bulk:
        assert page.locator(f'#queue tr[data-delivery="{bid}"]').count() == 0  # no longer open
    page.select_option("#f-state", "reviewed")
    with page.expect_navigation():
        page.click("#queue-filters button")
    for _login, bid in bulk:
        assert page.locator(f'#queue tr[data-delivery="{bid}"]').get_attribute("data-state") == "reviewed"
        page.check(f"#pick-{bid}")
    body = "请于周五前核对客户级别代码。Please check the customer level codes by Friday."
    page.fill("#bulk-body", body)
    with page.expect_navigation():
        page.click("#bulk-comment")
    assert "comment sent to the senders of 2 deliveries (54, 61)" in page.locator("#bulk-result").inner_text()
    for login, bid in bulk:
        http = HttpTransport(admin_url, login.token)
        try:
            api = http.get_json(f"/api/v1/deliveries/{bid}")
        finally:
            http.close()
        assert [c["body"] for c in api["comments"]] == [body]
    page.click("#lang-zh")
    page.wait_for_selector("html[lang=zh-CN]")
    page.goto(f"{admin_url}/admin/review/?state=all")
    assert page.locator(f'#queue tr[data-delivery="{did}"] a.superseded').inner_text() == f"已被 #{sid} 取代"
    page.check(f"#pick-{bulk[0][1]}")
    page.screenshot(path=str(screenshot_path("admin-review-queue.png", tmp_path)), full_page=True)
