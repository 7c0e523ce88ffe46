"""The management pages in headless Chromium against the real server: close a cycle, grant an exception, see it.

Also takes the documentation's screenshots (docs/screenshots/admin-cycles.png, admin-code-lists(-en).png,
admin-accounts.png, admin-audit.png).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchange_server.runtime import Runtime
from tests.admin.conftest import Accounts, sign_in_page
from tests.support.browser import screenshot_path



@pytest.mark.slow
def admin_state(rt: Runtime, cycle_id: str) -> str:
    """The cycle's state as stored."""
    from exchange_server.cycles.models import ReportingCycle

    with rt.db.session() as s:
        cycle = s.get(ReportingCycle, cycle_id)
        assert cycle is not None
        return cycle.state


def test_close_a_cycle_and_grant_an_exception(page: Any, admin_url: str, admin_runtime: Runtime,
                                              accounts: Accounts, tmp_path: Path) -> None:
    admin = accounts.admin()
    accounts.province("42")
    sign_in_page(page, admin_url, admin, start="/admin/cycles")
    assert page.url == f"{admin_url}/admin/cycles"
    assert page.locator('nav.admin-nav a.current').get_attribute("data-section") == "cycles"
    row = page.locator('#calendar tr[data-cycle="202610"]')
    assert row.get_attribute("data-state") == "open"

    with page.expect_navigation():
        row.locator('button[data-action="close"]').click()
    # First whom closing hits (provinces with nothing accepted, here all of them), then the ticked confirmation.
    assert "202610" in page.locator("#confirm-title").inner_text()
    assert page.locator('#impact-gaps tr[data-province="42"]').count() == 1
    page.screenshot(path=str(screenshot_path("admin-cycle-close.png", tmp_path)), full_page=True)
    with page.expect_navigation():
        page.click('#confirm-form button[type="submit"]')  # unticked: nothing is done
    assert page.locator("#confirm-needed").count() == 1
    assert admin_state(admin_runtime, "202610") == "open"
    page.check("#confirm-box")
    with page.expect_navigation():
        page.click('#confirm-form button[type="submit"]')
    assert page.locator('#calendar tr[data-cycle="202610"]').get_attribute("data-state") == "closed"
    assert "周期 202610 已关闭" in page.locator("p.flash").inner_text()

    page.select_option("#x-cycle", "202610")
    page.select_option("#x-province", "42")
    page.fill("#x-reason", "CRM系统割接，延期三天 CRM cut-over")
    with page.expect_navigation():
        page.click('#grant-exception button[type="submit"]')
    listed = page.locator('#exceptions tr[data-cycle="202610"][data-province="42"]')
    assert listed.count() == 1 and listed.get_attribute("data-state") == "valid"
    assert "CRM cut-over" in listed.inner_text()
    page.screenshot(path=str(screenshot_path("admin-cycles.png", tmp_path)), full_page=True)

    page.click('nav.admin-nav a[data-section="accounts"]')
    page.wait_for_selector("#accounts")
    page.screenshot(path=str(screenshot_path("admin-accounts.png", tmp_path)), full_page=True)

    page.click('nav.admin-nav a[data-section="audit"]')
    page.wait_for_selector("#audit")
    actions = page.locator("#audit tr[data-action]").evaluate_all("els => els.map(e => e.dataset.action)")
    assert actions[:2] == ["cycle.exception.grant", "cycle.close"]  # newest first
    page.screenshot(path=str(screenshot_path("admin-audit.png", tmp_path)), full_page=True)


@pytest.mark.slow
def test_propose_and_publish_a_code_list_version(page: Any, admin_url: str, admin_runtime: Runtime,
                                                 accounts: Accounts, tmp_path: Path) -> None:
    admin = accounts.admin()
    sign_in_page(page, admin_url, admin, start="/admin/code-lists/Domain_contact_sts_id")
    base = admin_runtime.spec.domain("Domain_contact_sts_id").current
    free = next(c for c in ("9", "8", "7", "X") if c not in base.codes)
    page.fill('#propose input[name="version"]', "2027.1")
    page.fill('#propose input[name="effective_from"]', "2027-01-01")
    page.fill("#p-add", f"{free} | 已离职 | Left the company")
    page.fill("#p-note-zh", "新增联系人状态")
    page.fill("#p-note-en", "a new contact status")
    with page.expect_navigation():
        page.click('#propose button[type="submit"]')
    row = page.locator('#drafts tr[data-version="2027.1"]')
    assert row.get_attribute("data-state") == "proposed"
    with page.expect_navigation():
        row.locator('button[data-action="publish"]').click()
    assert page.locator('#drafts tr[data-version="2027.1"]').get_attribute("data-state") == "published"
    assert page.locator('#versions tr[data-version="2027.1"]').get_attribute("data-source") == "published"
    assert page.locator(f'#codes tr[data-code="{free}"]').count() == 1  # the newest version's codes are shown
    page.screenshot(path=str(screenshot_path("admin-code-lists.png", tmp_path)), full_page=True)
    page.click("#lang-en")
    page.wait_for_selector("html[lang=en]")
    assert "published" in page.locator('#drafts tr[data-version="2027.1"]').inner_text()
    page.screenshot(path=str(screenshot_path("admin-code-lists-en.png", tmp_path)), full_page=True)
    page.click("#lang-zh")
    page.wait_for_selector("html[lang=zh-CN]")
