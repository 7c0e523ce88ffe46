"""The analyst dashboard in headless Chromium against the real server on loopback."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from exchange_server.consolidation.rollups import RollupService
from exchange_server.pages.charts import money
from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST, CYCLES, PROVINCE


def totals(rt: Runtime, cycle: str) -> dict[str, Any]:
    """The group totals the page must show, straight from the roll-up service."""
    with rt.db.session() as s:
        return RollupService(s, rt.spec).totals(cycle)


def sign_in(page: Any, base: str, name: str, password: str, start: str = "/analyst/") -> None:
    """Open a page, land on the sign-in form, fill it and submit it."""
    page.goto(base + start)
    assert "/login" in page.url
    page.fill("#username", name)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button.primary")


@pytest.mark.slow
def test_dashboard_shows_the_right_totals_charts_and_completeness(page: Any, live_url: str,
                                                                  page_runtime: Runtime, tmp_path: Path) -> None:
    page.goto(live_url + "/analyst/")
    assert page.title().startswith("登录")
    page.screenshot(path=str(tmp_path / "login.png"))
    sign_in(page, live_url, *ANALYST)
    assert page.url == f"{live_url}/analyst/202610"  # the newest cycle with data
    expected = totals(page_runtime, "202610")["income_amt"]
    figure = page.locator("#kpi-income .figure")
    assert figure.get_attribute("data-value") == str(expected)
    assert money(expected) in figure.inner_text()

    bars = page.locator("#province-chart .bar")
    assert bars.count() == len(CYCLES["202610"])
    assert sorted(bars.evaluate_all("els => els.map(e => e.dataset.key)")) == CYCLES["202610"]
    assert page.locator("#product-chart .bar").count() > 0

    cells = page.locator("#completeness td.cell")
    assert cells.count() == 31 * 6
    for prov in ("11", "42", "44"):
        states = page.locator(f'#completeness td[data-prov="{prov}"]').evaluate_all(
            "els => els.map(e => e.dataset.state)")
        assert states == ["accepted"] * 6, prov
    assert set(page.locator('#completeness td[data-prov="31"]').evaluate_all(
        "els => els.map(e => e.dataset.state)")) == {"missing"}

    trend = page.locator("#trend-chart .point:not(.nodata)").evaluate_all("els => els.map(e => e.dataset.cycle)")
    assert trend == ["202609", "202610"]
    assert page.locator("#trend-chart .point.current").get_attribute("data-cycle") == "202610"

    assert page.evaluate("document.documentElement.scrollWidth") <= 1366  # no horizontal scroll on a laptop
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)


@pytest.mark.slow
def test_cycle_picker_switches_cycles(page: Any, live_url: str, page_runtime: Runtime) -> None:
    sign_in(page, live_url, *ANALYST)
    page.select_option("#cycle", "202609")
    with page.expect_navigation(url=f"{live_url}/analyst/202609"):
        page.click(".picker button")
    assert page.locator(".toolbar .cycle").get_attribute("data-cycle") == "202609"
    assert page.locator("#kpi-income .figure").get_attribute("data-value") == str(
        totals(page_runtime, "202609")["income_amt"])
    assert page.locator("#province-chart .bar").count() == len(CYCLES["202609"])
    assert page.locator('#completeness td[data-prov="44"]').first.get_attribute("data-state") == "missing"


@pytest.mark.slow
def test_downloads_open(page: Any, live_url: str, page_runtime: Runtime, tmp_path: Path) -> None:
    sign_in(page, live_url, *ANALYST)
    with page.expect_download() as info:
        page.click("#dl-xlsx")
    download = info.value
    assert download.suggested_filename == "kam-rollup-202610.xlsx"
    download.save_as(tmp_path / "rollup.xlsx")
    workbook = openpyxl.load_workbook(tmp_path / "rollup.xlsx")
    assert len(workbook.sheetnames) > 1

    with page.expect_download() as info:
        page.click("#dl-json")
    info.value.save_as(tmp_path / "rollup.json")
    data = json.loads((tmp_path / "rollup.json").read_text("utf-8"))
    assert data["totals"]["income_amt"] == str(totals(page_runtime, "202610")["income_amt"])

    with page.expect_download() as info:
        page.click("#dl-by_province")
    info.value.save_as(tmp_path / "by_province.csv")
    lines = (tmp_path / "by_province.csv").read_text("utf-8-sig").splitlines()
    assert len(lines) == 1 + len(CYCLES["202610"])


@pytest.mark.slow
def test_province_user_is_refused(page: Any, live_url: str) -> None:
    sign_in(page, live_url, *PROVINCE)
    error = page.locator(".error")
    assert error.get_attribute("data-status") == "403"
    assert "无权" in error.inner_text() or "仅限" in error.inner_text()
    response = page.goto(live_url + "/analyst/202610")
    assert response is not None and response.status == 403


@pytest.mark.slow
def test_post_without_csrf_token_is_refused(page: Any, live_url: str) -> None:
    sign_in(page, live_url, *ANALYST)
    page.locator("header form input[name=csrf_token]").evaluate("el => el.remove()")
    with page.expect_navigation():
        page.click("header button[type=submit]")
    assert page.locator(".error").get_attribute("data-code") == "csrf_failed"
    response = page.goto(live_url + "/analyst/202610")
    assert response is not None and response.status == 200  # the forged sign-out did nothing


@pytest.mark.slow
def test_unknown_cycle_is_an_html_404(page: Any, live_url: str) -> None:
    sign_in(page, live_url, *ANALYST)
    response = page.goto(live_url + "/analyst/209912")
    assert response is not None and response.status == 404
    assert page.locator(".error").get_attribute("data-code") == "cycle_not_found"
