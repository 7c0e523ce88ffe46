"""Late and missing, and top-500 coverage, asked and read in headless Chromium against the real server.

The server runs in this process, so the clock the late page counts with is set through
``timeliness.utcnow``: 3 days and 1 hour past 202610's deadline, every province that sent
nothing is 4 started days late.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from exchange_server.clock import as_utc
from exchange_server.consolidation import timeliness
from exchange_server.consolidation.coverage import CoverageService
from exchange_server.cycles.models import ReportingCycle
from exchange_server.lists.models import ListEntry
from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST
from tests.pages.test_dashboard_browser import sign_in
from tests.support.browser import screenshot_path


@pytest.fixture
def late_clock(page_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """Now: 3 days and 1 hour after 202610's deadline."""
    with page_runtime.db.session() as s:
        cycle = s.get(ReportingCycle, "202610")
        assert cycle is not None
        now = as_utc(cycle.deadline) + dt.timedelta(days=3, hours=1)
    monkeypatch.setattr(timeliness, "utcnow", lambda: now)
    return now


@pytest.mark.slow
def test_an_analyst_reads_who_is_late_and_which_customers_are_not_covered(
        page: Any, live_url: str, page_runtime: Runtime, late_clock: dt.datetime, tmp_path: Path) -> None:
    sign_in(page, live_url, *ANALYST)
    assert page.url == f"{live_url}/analyst/202610"
    # Which provinces are late? From the dashboard's link, read Tianjin's row.
    with page.expect_navigation():
        page.click("#nav-timeliness")
    assert page.url == f"{live_url}/analyst/202610/late"
    tianjin = page.locator('#late tr[data-party="12"]')
    assert "天津市" in tianjin.locator("td.prov").inner_text()
    assert tianjin.locator("td.days").inner_text().strip() == "4"
    assert "缺报" in tianjin.locator("td.state").inner_text()
    assert tianjin.locator("td.units li").count() == 6
    assert page.locator('#late tr[data-party="42"]').count() == 0  # Hubei delivered, on time
    assert page.locator('#history tr[data-prov="42"] td[data-cycle="202610"]').inner_text().strip() == "✓"
    assert page.locator('#history tr[data-prov="12"] td[data-cycle="202610"]').inner_text().strip() == "✗"
    page.screenshot(path=str(screenshot_path("analyst-late.png", tmp_path)), full_page=True)

    # Which top-500 customers are not covered? Filter to Tianjin, read the first customer's name.
    with page_runtime.db.session() as s:
        first = CoverageService(s, page_runtime.spec).listing("202610", "12").rows[0]
        name = s.scalar(select(ListEntry.cust_name).where(ListEntry.national_cust_id == first.cust_id))
    page.goto(f"{live_url}/analyst/202610/late")  # back, then on through the header's link
    with page.expect_navigation():
        page.click("#head-nav-coverage")
    assert page.url.startswith(f"{live_url}/analyst/202610/coverage")
    page.select_option("#province", "12")
    with page.expect_navigation():
        page.click("#coverage-filter button")
    customer = page.locator("#coverage tbody tr").first
    assert customer.get_attribute("data-cust") == first.cust_id
    assert customer.locator("td.name").inner_text().strip() == name
    assert customer.locator('td[data-kind="details"]').get_attribute("data-received") == "no"
    assert int(page.locator("#coverage-total").get_attribute("data-total") or 0) > 0
    page.screenshot(path=str(screenshot_path("analyst-coverage.png", tmp_path)), full_page=True)

    # The same answers in English.
    with page.expect_navigation():
        page.click("#lang-en")
    assert "Tianjin" in page.locator("#coverage tbody tr").first.inner_text()
    page.goto(f"{live_url}/analyst/202610/late")
    assert "Tianjin" in page.locator('#late tr[data-party="12"] td.prov').inner_text()
    assert "Days late" in page.locator("#late thead").inner_text()
