"""The comparison and pivot pages in headless Chromium against the real server on loopback.

An analyst answers "how did revenue move by product against last month?" on the page: opens
the comparison, picks the product tab, sorts by the change, reads a percentage (in Chinese and
in English), then builds a province × product pivot with the form and reads a cell.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from exchange_server.consolidation.comparisons import ComparisonService
from exchange_server.consolidation.pivot import PivotService
from exchange_server.pages.charts import money, percent
from exchange_server.runtime import Runtime
from tests.pages.compare_data import build
from tests.pages.conftest import ANALYST
from tests.support.browser import screenshot_path

CUR, PREV = "202610", "202609"


@pytest.fixture(scope="module")
def page_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """This module's runtime (overrides the pages' one; ``live_url`` serves it): three cycles of data."""
    rt = build(tmp_path_factory.mktemp("compare-browser"))
    yield rt
    rt.db.dispose()


def sign_in(page: Any, base: str, start: str) -> None:
    """Open a page, land on the sign-in form, sign in as the analyst and come back to it."""
    page.goto(base + start)
    assert "/login" in page.url
    page.fill("#username", ANALYST[0])
    page.fill("#password", ANALYST[1])
    with page.expect_navigation():
        page.click("button.primary")


@pytest.mark.slow
def test_revenue_by_product_against_last_month_read_from_the_page(page: Any, live_url: str, page_runtime: Runtime,
                                                                  tmp_path: Path) -> None:
    sign_in(page, live_url, f"/analyst/{CUR}/compare")
    assert page.url.startswith(f"{live_url}/analyst/{CUR}/compare")
    assert page.locator("#breakdowns a.active").get_attribute("data-by") == "province"
    with page.expect_navigation():
        page.click('#breakdowns a[data-by="product"]')
    assert page.locator("#compare-table").get_attribute("data-measure") == "top500_income_amt"
    with page.expect_navigation():
        page.click('#compare-table thead a[data-sort="pct_prev"]')  # sort by the change, largest first
    assert "sort=pct_prev" in page.url and "dir=desc" in page.url
    with page_runtime.db.session() as s:
        comparison = ComparisonService(s, page_runtime.spec).compare(CUR, "product")
    rows = [r for r in comparison.rows if r.figures("top500_income_amt")["pct_prev"] is not None]
    best = max(rows, key=lambda r: (r.figures("top500_income_amt")["pct_prev"], r.code))
    first = page.locator("#compare-table tbody tr").first
    assert first.get_attribute("data-code") == best.code
    shown = first.locator('td[data-col="pct_prev"]')
    assert shown.inner_text().strip() == percent(best.figures("top500_income_amt")["pct_prev"])
    assert "up" in (shown.get_attribute("class") or "").split() or "down" in (shown.get_attribute("class") or "")
    assert best.name_zh in first.locator("td.name").inner_text()
    total = page.locator('#compare-total td[data-col="cur"]')
    assert money(comparison.total.values["top500_income_amt"]["cur"]) in total.inner_text()
    assert "部分报送" in total.inner_text()  # only 3 of 31 provinces reported
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(screenshot_path("analyst-compare.png", tmp_path)), full_page=True)

    with page.expect_navigation():
        page.click("#lang-en")
    first = page.locator("#compare-table tbody tr").first
    assert first.locator('td[data-col="pct_prev"]').inner_text().strip() == percent(
        best.figures("top500_income_amt")["pct_prev"])
    assert best.name_en in first.locator("td.name").inner_text()
    assert "partial" in page.locator('#compare-total td[data-col="cur"]').inner_text()
    assert page.locator("#breakdowns a.active").inner_text() == "By product"
    page.screenshot(path=str(tmp_path / "analyst-compare-en.png"), full_page=True)


@pytest.mark.slow
def test_pivot_province_by_product_read_from_the_page(page: Any, live_url: str, page_runtime: Runtime,
                                                      tmp_path: Path) -> None:
    sign_in(page, live_url, "/analyst/pivot")
    assert page.locator('#cols option[value="product"]').is_disabled()  # revenue (32001) has no product
    page.select_option("#measure", "serv_cnt")
    with page.expect_navigation():
        page.click("#pivot-form button")  # the measure first: its dimensions are then offered
    assert page.locator('#cols option[value="product"]').is_enabled()
    page.select_option("#rows", "province")
    page.select_option("#cols", "product")
    page.fill("#from", CUR)
    page.fill("#to", CUR)
    with page.expect_navigation():
        page.click("#pivot-form button")
    table = page.locator("#pivot-table")
    assert table.get_attribute("data-rows") == "province" and table.get_attribute("data-cols") == "product"
    with page_runtime.db.session() as s:
        p = PivotService(s, page_runtime.spec).pivot("province", "product", "serv_cnt", CUR, CUR)
    (prov, prod), value = max(p.cells.items(), key=lambda kv: (kv[1], kv[0]))
    cell = page.locator(f'#pivot-table tr[data-row="{prov}"] td[data-col="{prod}"]')
    assert cell.inner_text().strip() == f"{value:,}"
    grand = page.locator('#pivot-table tr[data-row="total"] td[data-col="total"]')
    assert grand.inner_text().strip() == f"{p.grand_total:,}"
    page.screenshot(path=str(screenshot_path("analyst-pivot.png", tmp_path)), full_page=False)

    # An impossible choice is refused on the page, with the form kept to fix it.
    page.select_option("#measure", "top500_income_amt")
    page.select_option("#rows", "network")
    with page.expect_navigation():
        page.click("#pivot-form button")
    assert "不能按本地网拆分" in page.locator("#pivot-error").inner_text()
    with page.expect_navigation():
        page.click("#lang-en")
    assert "cannot be split by local network" in page.locator("#pivot-error").inner_text()
