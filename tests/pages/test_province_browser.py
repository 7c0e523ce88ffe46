"""The province pages in headless Chromium against the real server on loopback.

A Hubei user signs in and lands on its deliveries, opens its rejected resend, reads the failing
line and HQ's comment, downloads the receipt, switches to English with the header link, and
reads the calendar with its exception; another province's delivery is a 404 page.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchange_server.runtime import Runtime
from schemas import Spec
from tests.pages.conftest import PROVINCE
from tests.pages.test_province_pages import COMMENT, EXCEPTION_11, EXCEPTION_42, Seed, seed_province_data
from tests.support.browser import screenshot_path


@pytest.fixture(scope="module")
def seed(page_runtime: Runtime, spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """The province tests' data (the same as the in-process tests'), added once for this module."""
    return seed_province_data(page_runtime, spec, tmp_path_factory.mktemp("province-browser"))


@pytest.mark.slow
def test_province_user_reads_a_rejected_delivery_in_both_languages(page: Any, live_url: str, seed: Seed,
                                                                   tmp_path: Path) -> None:
    # Sign in: a province account lands on its own deliveries.
    page.goto(live_url + "/login")
    page.fill("#username", PROVINCE[0])
    page.fill("#password", PROVINCE[1])
    with page.expect_navigation():
        page.click("button.primary")
    assert page.url == f"{live_url}/province/"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator(".province-nav a.current").get_attribute("data-section") == "deliveries"
    assert "province-agent" in page.locator("#read-only").inner_text()  # read-only, and where to act instead
    row = page.locator(f'#deliveries tr[data-delivery="{seed.rejected42}"]')
    assert row.get_attribute("data-status") == "rejected" and row.get_attribute("data-state") == "resend_requested"
    assert page.locator(f'#deliveries tr[data-delivery="{seed.rejected11}"]').count() == 0

    # Open the rejected delivery and read the failing line and HQ's comment.
    with page.expect_navigation():
        row.locator("a").first.click()
    assert page.url == f"{live_url}/province/deliveries/{seed.rejected42}"
    failing = page.locator("#context .line.failing")
    assert failing.get_attribute("data-line") == "2"
    assert "湖北省测试客户2有限公司" in failing.inner_text() and "|X|" in failing.inner_text()
    assert page.locator("#context .line").count() >= 3
    assert COMMENT in page.locator("#comments").inner_text()
    assert page.locator("#resend-requested").is_visible()
    assert page.locator("#summary tr[data-code] .count").first.inner_text().strip().isdigit()
    assert page.locator("form").count() == 1  # only the header's sign-out: provinces take no actions here
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(screenshot_path("province-delivery.png", tmp_path)), full_page=True)

    # Download the receipt that was sent with the delivery.
    with page.expect_download() as info:
        page.click("#dl-receipt")
    assert info.value.suggested_filename == "P_42_202610_01.rct.xml"
    info.value.save_as(tmp_path / "receipt.xml")
    assert (tmp_path / "receipt.xml").read_bytes().startswith(b"<?xml")

    # Switch to English with the header link: the same page, in English; HQ's words as written.
    with page.expect_navigation():
        page.click("#lang-en")
    assert page.url == f"{live_url}/province/deliveries/{seed.rejected42}"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#h-comments").inner_text().strip() == "HQ's comments"
    assert page.locator("#h-context").inner_text().startswith("Raw file")
    assert "line 2" in page.locator("#h-context small").inner_text()
    assert "resend" in page.locator("#resend-requested").inner_text()
    assert COMMENT in page.locator("#comments").inner_text()
    assert page.locator(".province-nav a[data-section=deliveries]").inner_text().strip() == "My deliveries"
    assert page.locator("header button[type=submit]").inner_text().strip() == "Sign out"

    # The calendar, in English: this province's exception, not another's.
    with page.expect_navigation():
        page.click(".province-nav a[data-section=cycles]")
    assert page.locator("h1").inner_text().strip() == "Reporting calendar"
    cycle = page.locator('#cycles tr[data-cycle="202609"]')
    assert cycle.get_attribute("data-state") == "closed" and cycle.get_attribute("data-open") == "yes"
    assert EXCEPTION_42 in cycle.inner_text() and "open to you" in cycle.inner_text()
    assert EXCEPTION_11 not in page.locator("#cycles").inner_text()

    # Another province's delivery: a 404 page that does not say whose it is.
    response = page.goto(f"{live_url}/province/deliveries/{seed.rejected11}")
    assert response is not None and response.status == 404
    assert page.locator(".error").get_attribute("data-code") == "delivery_not_found"
    assert "P_11_" not in page.content()
