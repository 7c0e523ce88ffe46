"""The dashboard read in both languages: English names, bars in a chosen order, every download, one charset.

Also the header's and the dashboard's links to the other analyst pages (shown once they exist),
and an unknown URL answered as a page for a browser and as JSON for an API client.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.accounts.services import AccountService
from exchange_server.app import create_app
from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST, CYCLES
from tests.pages.test_language import assert_chinese, assert_english, sign_in

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
ENGLISH = {"11": "Beijing", "42": "Hubei", "44": "Guangdong"}
CHINESE = {"11": "北京", "42": "湖北", "44": "广东"}


@pytest.fixture(scope="module")
def analyst_token(page_runtime: Runtime) -> str:
    """An API token of the pages' analyst (for the API's answers beside the page's)."""
    with page_runtime.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == ANALYST[0]))
        assert account is not None
        secret, _ = AccountService(s, "test").create_token(account, "polish test")
        return secret


@pytest.fixture
def analyst(client: FlaskClient) -> FlaskClient:
    """The test client signed in as the analyst."""
    sign_in(client, *ANALYST)
    return client


def bars(html: str, chart: str) -> list[tuple[str, Decimal, str]]:
    """(key, value, label) of a chart's bars, top to bottom."""
    svg = re.search(rf'<svg class="chart bars" id="{chart}".*?</svg>', html, re.S)
    assert svg, chart
    return [(k, Decimal(v), label) for k, v, label in re.findall(
        r'<g class="bar" data-key="([^"]+)" data-value="([^"]+)".*?<text class="label"[^>]*>([^<]*)</text>',
        svg.group(0), re.S)]


def test_province_and_product_bars_are_named_in_the_page_language(analyst: FlaskClient) -> None:
    zh = analyst.get("/analyst/202610").get_data(as_text=True)
    assert {k: label for k, _v, label in bars(zh, "province-chart")} == CHINESE
    analyst.set_cookie("kam_lang", "en")
    en = analyst.get("/analyst/202610").get_data(as_text=True)
    assert {k: label for k, _v, label in bars(en, "province-chart")} == ENGLISH
    assert_english("dashboard", en)
    products = [label for _k, _v, label in bars(en, "product-chart")]
    assert products and not any(re.search(r"[\u4e00-\u9fff]", p) for p in products), products
    # The completeness matrix's column headers too: the provinces in English, none left in Chinese.
    head = re.search(r'<table class="matrix" id="completeness">.*?</thead>', en, re.S)
    assert head
    headers = re.findall(r'data-prov="(\d+)".*?<span translate="no">([^<]+)</span>', head.group(0), re.S)
    assert len(headers) == 31
    assert dict(headers)["42"] == "Hubei" and dict(headers)["15"] == "Inner Mongolia"
    assert not [name for _p, name in headers if re.search(r"[\u4e00-\u9fff]", name)]
    analyst.set_cookie("kam_lang", "zh")
    zh = analyst.get("/analyst/202610").get_data(as_text=True)
    head = re.search(r'<table class="matrix" id="completeness">.*?</thead>', zh, re.S)
    assert head and '<span translate="no">湖北</span>' in head.group(0)


def test_bars_are_by_value_unless_another_order_is_chosen(analyst: FlaskClient) -> None:
    html = analyst.get("/analyst/202610").get_data(as_text=True)
    for chart in ("province-chart", "product-chart"):
        values = [v for _k, v, _l in bars(html, chart)]
        assert len(values) > 1 and values == sorted(values, reverse=True), chart
    assert '<strong aria-current="true" data-sort="value">按数值</strong>' in html
    by_value = [k for k, _v, _l in bars(html, "province-chart")]
    assert by_value != sorted(by_value)  # else sorting by code could not be told from by value

    link = re.search(r'href="([^"]+)" data-sort="code" id="sort-code"', html)
    assert link and link.group(1) == "/analyst/202610?sort=code"
    html = analyst.get(link.group(1)).get_data(as_text=True)
    assert [k for k, _v, _l in bars(html, "province-chart")] == sorted(CYCLES["202610"])
    products = [k for k, _v, _l in bars(html, "product-chart")]
    assert products == sorted(products)
    assert 'data-sort="code">按代码</strong>' in html and 'id="sort-value"' in html

    analyst.set_cookie("kam_lang", "en")
    html = analyst.get("/analyst/202610?sort=name").get_data(as_text=True)
    assert [label for _k, _v, label in bars(html, "province-chart")] == ["Beijing", "Guangdong", "Hubei"]
    assert 'data-sort="name">by name</strong>' in html
    # An unknown order is the default; the cycle picker keeps the chosen order.
    html = analyst.get("/analyst/202610?sort=bogus").get_data(as_text=True)
    assert [k for k, _v, _l in bars(html, "province-chart")] == by_value
    r = analyst.get("/analyst/?cycle=202609&sort=code")
    assert r.status_code == 302 and r.headers["Location"] == "/analyst/202609?sort=code"
    html = analyst.get("/analyst/202610?sort=code").get_data(as_text=True)
    assert '<input type="hidden" name="sort" value="code">' in html


def test_xml_is_downloadable_from_the_dashboard(analyst: FlaskClient, app: Flask, analyst_token: str) -> None:
    html = analyst.get("/analyst/202610").get_data(as_text=True)
    assert 'id="dl-xml" href="/analyst/202610/download/rollup.xml"' in html
    r = analyst.get("/analyst/202610/download/rollup.xml")
    assert r.status_code == 200 and r.mimetype == "application/xml"
    assert r.headers["Content-Disposition"].endswith("kam-rollup-202610.xml")
    assert r.data.startswith(b"<?xml")
    root = etree.fromstring(r.data)
    assert root.get("cycle") == "202610" and root.tag.endswith("}Rollup")
    same = app.test_client().get("/api/v1/reports/202610/rollup.xml", headers={"Authorization": f"Bearer {analyst_token}"})
    assert same.status_code == 200 and same.data == r.data  # the same bytes as the API's


def test_csv_has_one_charset_and_a_bom(analyst: FlaskClient, app: Flask, analyst_token: str) -> None:
    page = analyst.get("/analyst/202610/download/by_province.csv")
    api = app.test_client().get("/api/v1/reports/202610/by_province.csv",
                                headers={"Authorization": f"Bearer {analyst_token}"})
    for what, r in (("page", page), ("api", api)):
        assert r.status_code == 200, what
        content_type = r.headers["Content-Type"]
        assert content_type.lower().count("charset") == 1, (what, content_type)
        assert content_type.replace(" ", "").lower() == "text/csv;charset=utf-8", (what, content_type)
        assert r.data.startswith(b"\xef\xbb\xbf") and not r.data.startswith(b"\xef\xbb\xbf" * 2), what
        lines = r.data.decode("utf-8-sig").splitlines()
        assert len(lines) == 1 + len(CYCLES["202610"]), what
    assert page.data == api.data
    html = analyst.get("/analyst/202610").get_data(as_text=True)
    assert "65001 UTF-8" in html and 'id="csv-hint"' in html


def test_an_unknown_url_is_a_page_for_a_browser_and_json_for_a_client(analyst: FlaskClient, app: Flask) -> None:
    r = analyst.get("/no/such/page", headers=BROWSER)
    html = r.get_data(as_text=True)
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert 'data-status="404"' in html and 'data-code="not_found"' in html and "页面不存在" in html
    assert 'id="dashboard-link"' in html  # the signed-in header: the way back
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert_chinese("404", html)
    analyst.set_cookie("kam_lang", "en")
    html = analyst.get("/no/such/page", headers=BROWSER).get_data(as_text=True)
    assert "There is no such page" in html
    assert_english("404", html)
    # Signed out, a browser still gets a page; a wrong method on a page is a 405 page with Allow.
    anon = app.test_client()
    r = anon.get("/nothing-here", headers=BROWSER)
    assert r.status_code == 404 and r.mimetype == "text/html"
    r = anon.put("/login", headers=BROWSER)
    assert r.status_code == 405 and r.mimetype == "text/html" and "POST" in r.headers["Allow"]
    # API clients keep JSON: under /api/ whatever they accept, elsewhere unless they prefer HTML.
    for path, headers in (("/api/v1/nothing", BROWSER), ("/no/such/page", {"Accept": "*/*"}),
                          ("/no/such/page", {"Accept": "application/json"}), ("/no/such/page", {})):
        r = analyst.get(path, headers=headers)
        assert r.status_code == 404 and r.mimetype == "application/json", (path, headers)
        assert r.get_json()["code"] == "not_found"


@pytest.fixture
def app_with_pages(page_runtime: Runtime) -> Iterator[Flask]:
    """The app with stand-ins for the analyst pages other modules build, where they are not there yet."""
    app = create_app(runtime=page_runtime)
    for endpoint, rule in (("analyst.compare", "/analyst/<cycle>/compare-stand-in"),
                           ("analyst.timeliness", "/analyst/<cycle>/timeliness-stand-in")):
        if endpoint not in app.view_functions:
            app.add_url_rule(rule, endpoint=endpoint, view_func=lambda cycle: "stand-in")
    yield app


def test_analyst_pages_are_linked_once_they_exist(app_with_pages: Flask, page_runtime: Runtime) -> None:
    client = app_with_pages.test_client()
    sign_in(client, *ANALYST)
    html = client.get("/analyst/202609").get_data(as_text=True)
    nav = re.search(r'<nav class="subnav" id="analyst-nav".*?</nav>', html, re.S)
    assert nav, "no analyst sub-navigation"
    compare = re.search(r'id="nav-compare"', nav.group(0))
    assert compare
    hrefs = dict((i, h.replace("&amp;", "&")) for h, i in re.findall(r'<a href="([^"]+)" id="([^"]+)"', nav.group(0)))
    assert "202609" in hrefs["nav-compare"] and "by=product" in hrefs["nav-compare"]
    assert "202609" in hrefs["nav-timeliness"]
    # The header links them too, on every page, for the page's cycle or the newest with data.
    assert 'id="head-nav-compare"' in html
    password = client.get("/account/password").get_data(as_text=True)
    assert re.search(r'id="head-nav-timeliness"', password) and "202610" in password
    # Without them (a bare app of this module's own making), the dashboard renders without the links.
    bare = Flask(__name__)
    with bare.test_request_context():
        from exchange_server.pages.analyst import has_endpoint

        assert not has_endpoint("analyst.compare")


def test_a_refusal_names_the_role_with_its_article(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, *ANALYST)
    client.set_cookie("kam_lang", "en")
    html = client.get("/admin/review/").get_data(as_text=True)  # an admin page refuses the analyst
    assert "signed in as an analyst account" in html and "as a analyst" not in html


def test_login_page_says_it_is_for_provinces_too(client: FlaskClient) -> None:
    zh = client.get("/login").get_data(as_text=True)
    assert "各省公司、本地网" in zh
    client.set_cookie("kam_lang", "en")
    en = client.get("/login").get_data(as_text=True)
    assert "provinces and local networks" in en and "HQ analysts and admins" in en
    assert_english("login", en)


def test_area_labels_and_bar_orders(app: Flask) -> None:
    from exchange_server.pages.charts import BarItem
    from exchange_server.pages.services import area_label, sort_bars

    with app.test_request_context(headers={"Cookie": "kam_lang=en"}):
        assert area_label("湖北省", "Hubei") == "Hubei"
        assert area_label("广西壮族自治区", "Guangxi Zhuang Autonomous Region") == "Guangxi"
        assert area_label("湖北省", "") == "湖北"  # no English name: the Chinese short name rather than nothing
    with app.test_request_context():
        assert area_label("新疆维吾尔自治区", "Xinjiang") == "新疆"
    items = [BarItem("44", "Guangdong", "", Decimal(5)), BarItem("11", "beijing", "", Decimal(5)),
             BarItem("42", "Hubei", "", Decimal(9))]
    assert [i.key for i in sort_bars(items, "value")] == ["42", "11", "44"]  # ties by code
    assert [i.key for i in sort_bars(items, "code")] == ["11", "42", "44"]
    assert [i.key for i in sort_bars(items, "name")] == ["11", "44", "42"]  # case-insensitive
