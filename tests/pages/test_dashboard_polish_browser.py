"""The dashboard's polish in headless Chromium: English names, the bars' order, the XML download, the own API
token, an unknown URL as a page, and the sign-in page's audience — in both languages."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST, CYCLES
from tests.pages.test_dashboard_browser import sign_in
from tests.support.browser import screenshot_path


def keys(page: Any, chart: str) -> list[str]:
    return list(page.locator(f"#{chart} .bar").evaluate_all("els => els.map(e => e.dataset.key)"))


def values(page: Any, chart: str) -> list[float]:
    return [float(v) for v in page.locator(f"#{chart} .bar").evaluate_all("els => els.map(e => e.dataset.value)")]


def labels(page: Any, chart: str) -> list[str]:
    return list(page.locator(f"#{chart} .bar text.label").evaluate_all("els => els.map(e => e.textContent)"))


def api_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
def test_bars_in_english_and_in_the_chosen_order(page: Any, live_url: str, tmp_path: Path) -> None:
    sign_in(page, live_url, *ANALYST)
    assert sorted(labels(page, "province-chart")) == sorted(["北京", "湖北", "广东"])
    by_value = values(page, "province-chart")
    assert by_value == sorted(by_value, reverse=True)
    assert page.locator("#bar-sort strong").get_attribute("data-sort") == "value"
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)  # docs' own: tests.pages.screenshots

    with page.expect_navigation():
        page.click("#sort-code")
    assert page.url.endswith("/analyst/202610?sort=code")
    assert keys(page, "province-chart") == sorted(CYCLES["202610"])
    product_keys = keys(page, "product-chart")
    assert product_keys == sorted(product_keys)

    with page.expect_navigation():
        page.click("#lang-en")
    assert page.url.endswith("/analyst/202610?sort=code")  # the language switch keeps the order
    assert labels(page, "province-chart") == ["Beijing", "Hubei", "Guangdong"]
    assert page.locator('#completeness th.prov[data-prov="42"]').inner_text().strip() == "Hubei"
    with page.expect_navigation():
        page.click("#sort-name")
    assert labels(page, "province-chart") == ["Beijing", "Guangdong", "Hubei"]
    with page.expect_navigation():
        page.click("#sort-value")
    assert values(page, "province-chart") == sorted(values(page, "province-chart"), reverse=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(tmp_path / "dashboard-en.png"), full_page=True)


@pytest.mark.slow
def test_xml_downloads_from_the_dashboard(page: Any, live_url: str, tmp_path: Path) -> None:
    sign_in(page, live_url, *ANALYST)
    with page.expect_download() as info:
        page.click("#dl-xml")
    download = info.value
    assert download.suggested_filename == "kam-rollup-202610.xml"
    download.save_as(tmp_path / "rollup.xml")
    data = (tmp_path / "rollup.xml").read_bytes()
    assert data.startswith(b"<?xml") and b'cycle="202610"' in data[:400]


@pytest.mark.slow
def test_an_analyst_makes_and_rotates_their_token(page: Any, live_url: str, page_runtime: Runtime,
                                                   tmp_path: Path) -> None:
    sign_in(page, live_url, *ANALYST)
    with page.expect_navigation():
        page.click("#token-link")
    assert page.url == f"{live_url}/account/token"
    button = page.locator("button[data-action=create], button[data-action=rotate]")
    with page.expect_navigation():
        button.click()
    first = page.locator("#secret").inner_text().strip()
    assert first.startswith("kam_")
    report = f"{live_url}/api/v1/reports/202610"
    assert api_status(report, first) == 200
    with page.expect_navigation():
        page.click("#lang-en")  # a plain GET: the secret is not shown again
    assert page.locator("#secret").count() == 0 and page.locator("#tokens").inner_text().count(first[:12]) == 1
    with page.expect_navigation():
        page.click("button[data-action=rotate]")
    second = page.locator("#secret").inner_text().strip()
    assert second != first and "The old token no longer works" in page.locator("#revoked").inner_text()
    page.screenshot(path=str(screenshot_path("account-token.png", tmp_path)), full_page=True)
    assert api_status(report, second) == 200
    assert api_status(report, first) == 401


@pytest.mark.slow
def test_unknown_url_is_a_page_and_the_api_keeps_json(page: Any, live_url: str) -> None:
    sign_in(page, live_url, *ANALYST)
    response = page.goto(live_url + "/no/such/page")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert page.locator(".error").get_attribute("data-code") == "not_found"
    assert "页面不存在" in page.locator(".error").inner_text()
    assert page.locator("#dashboard-link").count() == 1  # still signed in, with the way back
    response = page.goto(live_url + "/api/v1/no-such-thing")
    assert response is not None and response.status == 404
    assert json.loads(page.locator("body").inner_text())["code"] == "not_found"


@pytest.mark.slow
def test_the_sign_in_page_is_for_provinces_too(page: Any, live_url: str, tmp_path: Path) -> None:
    page.goto(live_url + "/login")
    assert "各省公司、本地网" in page.locator("#login-audience").inner_text()
    page.screenshot(path=str(tmp_path / "login.png"))
    with page.expect_navigation():
        page.click("#lang-en")
    text = page.locator("#login-audience").inner_text()
    assert "provinces and local networks" in text and "HQ analysts and admins" in text
