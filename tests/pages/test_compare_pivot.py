"""The comparison and pivot pages and downloads, through the test client, against the roll-ups themselves.

The data (``compare_data``): 202610 from three provinces, 202609 (the previous month) from two,
202510 (the same month a year earlier) from two and two of Guangdong's 21 local networks. So
every compared period is partly reported, and Guangdong's year-earlier figure is partial.
"""
from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any, Iterator

import lxml.html
import openpyxl
import pytest
from flask.testing import FlaskClient

from exchange_server.consolidation.comparisons import (
    BREAKDOWNS,
    ComparisonService,
    year_earlier_cycle,
)
from exchange_server.consolidation.pivot import MAX_CYCLES, PivotService
from exchange_server.consolidation.rollups import RollupService, _pct
from exchange_server.runtime import Runtime
from tests.pages.compare_data import build, partial_networks
from tests.pages.conftest import ANALYST

CUR, PREV, LY = "202610", "202609", "202510"


@pytest.fixture(scope="module")
def page_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """This module's runtime (overrides the pages' one): three cycles, a partly reported province a year earlier."""
    rt = build(tmp_path_factory.mktemp("compare"))
    yield rt
    rt.db.dispose()


def signed_in(client: FlaskClient, language: str = "zh") -> FlaskClient:
    """The client signed in as the analyst, reading pages in ``language``."""
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    r = client.post("/login", data={"username": ANALYST[0], "password": ANALYST[1], "csrf_token": token.group(1)})
    assert r.status_code == 302
    client.set_cookie("kam_lang", language)
    return client


def rollup(rt: Runtime, method: str, cycle: str) -> Any:
    """A roll-up method's result for one cycle, from a fresh service."""
    with rt.db.session() as s:
        return getattr(RollupService(s, rt.spec), method)(cycle)


def page(client: FlaskClient, url: str, status: int = 200) -> Any:
    """GET an HTML page and parse it."""
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "text/html"
    return lxml.html.fromstring(r.get_data(as_text=True))


def cells(doc: Any, code: str) -> dict[str, str]:
    """A comparison row's cells: column -> data-value."""
    row = doc.xpath(f'//table[@id="compare-table"]/tbody/tr[@data-code="{code}"]')
    assert row, code
    return {td.get("data-col"): td.get("data-value") for td in row[0].xpath("./td[@data-col]")}


def total(doc: Any) -> dict[str, Any]:
    """The comparison's total row: column -> (data-value, partial?)."""
    return {td.get("data-col"): (td.get("data-value"), td.get("data-partial") == "yes")
            for td in doc.xpath('//tr[@id="compare-total"]/td[@data-col]')}


def dec(text: str) -> Decimal | None:
    return Decimal(text) if text else None


# -- comparisons -------------------------------------------------------------------------------
def test_province_revenue_against_the_three_cycles_rollups_to_the_fen(client: FlaskClient,
                                                                      page_runtime: Runtime) -> None:
    doc = page(signed_in(client), f"/analyst/{CUR}/compare?by=province&measure=income_amt")
    by = {c: {r["prov_id"]: r for r in rollup(page_runtime, "by_province", c)} for c in (CUR, PREV, LY)}
    assert sorted(by[CUR]) == ["11", "42", "44"] and sorted(by[LY]) == ["11", "42", "44"] and "44" not in by[PREV]
    for prov in ("11", "42", "44"):
        got = cells(doc, prov)
        cur = by[CUR][prov]["income_amt"]
        prev = by[PREV][prov]["income_amt"] if prov in by[PREV] else None
        ly = by[LY][prov]["income_amt"]
        assert dec(got["cur"]) == cur and dec(got["ly"]) == ly and dec(got["prev"]) == prev
        assert dec(got["diff_ly"]) == cur - ly and dec(got["pct_ly"]) == _pct(cur, ly)
        if prev is None:  # Guangdong did not report the previous month: no figure, no change
            assert got["diff_prev"] == "" and got["pct_prev"] == ""
        else:
            assert dec(got["diff_prev"]) == cur - prev and dec(got["pct_prev"]) == _pct(cur, prev)
            assert dec(got["pct_prev"]) == by[CUR][prov]["mom_pct"]  # the roll-up's own month on month
    totals = {c: rollup(page_runtime, "totals", c) for c in (CUR, PREV, LY)}
    t = total(doc)
    assert dec(t["cur"][0]) == totals[CUR]["income_amt"] and dec(t["prev"][0]) == totals[PREV]["income_amt"]
    assert dec(t["ly"][0]) == totals[LY]["income_amt"]
    assert dec(t["pct_prev"][0]) == totals[CUR]["mom_pct"]  # the top card's month on month, the same figure
    # A percent change is coloured by its sign.
    pct = doc.xpath('//tr[@data-code="42"]/td[@data-col="pct_ly"]')[0]
    assert ("up" if Decimal(pct.get("data-value")) > 0 else "down") in pct.get("class").split()


@pytest.mark.parametrize("by", list(BREAKDOWNS))
def test_every_breakdown_and_measure_matches_the_rollups(page_runtime: Runtime, by: str) -> None:
    spec = BREAKDOWNS[by]
    rows = {c: {str(r[spec.key]): r for r in rollup(page_runtime, spec.attr, c)} for c in (CUR, PREV, LY)}
    with page_runtime.db.session() as s:
        comparison = ComparisonService(s, page_runtime.spec).compare(CUR, by)
    assert comparison.cycles == {"cur": CUR, "prev": PREV, "ly": LY}
    assert {r.code for r in comparison.rows} == set().union(*rows.values())
    for row in comparison.rows:
        for m in spec.measures:
            fig = row.figures(m)
            for period, cycle in (("cur", CUR), ("prev", PREV), ("ly", LY)):
                if row.code in rows[cycle]:
                    assert fig[period] == rows[cycle][row.code][m], (by, row.code, m, period)
                else:
                    assert fig[period] in (None, 0, Decimal("0.00")), (by, row.code, m, period)
    for m in spec.measures:
        for period, cycle in (("cur", CUR), ("prev", PREV), ("ly", LY)):
            assert comparison.total.values[m][period] == sum((r[m] for r in rows[cycle].values()),
                                                             Decimal("0.00") if m.endswith("_amt") else 0)


def test_shares_reported_and_partial_marking(client: FlaskClient, page_runtime: Runtime) -> None:
    doc = page(signed_in(client), f"/analyst/{CUR}/compare?by=province")
    totals = {c: rollup(page_runtime, "totals", c) for c in (CUR, PREV, LY)}
    periods = {li.get("data-period"): li for li in doc.xpath('//ul[@id="periods"]/li')}
    for period, cycle in (("cur", CUR), ("prev", PREV), ("ly", LY)):
        li = periods[period]
        assert li.get("data-cycle") == cycle
        assert dec(li.get("data-share")) == totals[cycle]["share_reported_pct"]  # the roll-up's share, 32001
        assert li.get("data-partial") == "yes" and ("部分报送" in li.text_content())
    t = total(doc)
    assert t["cur"][1] and t["prev"][1] and t["ly"][1]  # group totals of partly reported cycles
    # Guangdong: fully reported this month, two of 21 networks a year earlier (partial), nothing last month.
    gd = doc.xpath('//tr[@data-code="44"]')[0]
    assert "partial" in gd.xpath('./td[@data-col="ly"]')[0].get("class").split()
    assert "partial" not in gd.xpath('./td[@data-col="cur"]')[0].get("class").split()
    assert gd.xpath('./td[@data-col="prev"]')[0].text_content().strip() == "—"
    province = {r["prov_id"]: r for r in rollup(page_runtime, "by_province", LY)}["44"]
    assert province["networks"] == 2 and province["share_reported_pct"] == Decimal(200 / 21).quantize(Decimal("0.01"))
    with page_runtime.db.session() as s:
        row = next(r for r in ComparisonService(s, page_runtime.spec).compare(CUR, "province").rows if r.code == "44")
    assert row.reported["ly"].share_pct == province["share_reported_pct"]
    assert row.reported["cur"].share_pct == Decimal("100.00") and not row.partial("cur")


def test_networks_not_reported_have_no_figure(client: FlaskClient, page_runtime: Runtime) -> None:
    doc = page(signed_in(client, "en"), f"/analyst/{CUR}/compare?by=network")
    reported = set(partial_networks(page_runtime))
    gd = [tr.get("data-code") for tr in doc.xpath('//table[@id="compare-table"]/tbody/tr')
          if tr.xpath('./td[@class="name"]/small[text()="44"]')]
    assert len(gd) == 21
    for code in gd:
        got = cells(doc, code)
        assert (got["ly"] != "") == (code in reported), code
        assert got["prev"] == "" and got["cur"] != ""


def test_sorting_by_clicking_headers(client: FlaskClient, page_runtime: Runtime) -> None:
    c = signed_in(client)
    doc = page(c, f"/analyst/{CUR}/compare?by=product&measure=serv_cnt&sort=cur&dir=desc")
    values = [Decimal(v) for v in doc.xpath('//table[@id="compare-table"]/tbody/tr/td[@data-col="cur"]/@data-value')]
    assert len(values) > 3 and values == sorted(values, reverse=True)
    link = doc.xpath('//thead//a[@data-sort="cur"]')[0]
    assert "dir=asc" in link.get("href") and "sorted" in link.get("class")  # a second click reverses
    doc = page(c, link.get("href"))
    values = [Decimal(v) for v in doc.xpath('//table[@id="compare-table"]/tbody/tr/td[@data-col="cur"]/@data-value')]
    assert values == sorted(values)
    # Rows without a figure go last whichever the direction.
    doc = page(c, f"/analyst/{CUR}/compare?by=province&sort=pct_prev&dir=desc")
    assert doc.xpath('//table[@id="compare-table"]/tbody/tr/@data-code')[-1] == "44"


def test_both_languages_name_things_in_the_pages_language(client: FlaskClient) -> None:
    c = signed_in(client, "en")
    doc = page(c, f"/analyst/{CUR}/compare?by=province")
    assert doc.get("lang") == "en"
    names = [td.text_content() for td in doc.xpath('//table[@id="compare-table"]/tbody/tr/td[@class="name"]')]
    assert [n.split()[0] for n in names] == ["Beijing", "Hubei", "Guangdong"]  # sorted by code: 11, 42, 44
    assert not re.search(r"[\u4e00-\u9fff]", " ".join(names))
    assert "Total" in doc.xpath('//tr[@id="compare-total"]')[0].text_content()
    assert [a.text_content() for a in doc.xpath('//nav[@id="breakdowns"]/a')][:3] == [
        "By province", "By local network", "By product"]
    c.set_cookie("kam_lang", "zh")
    doc = page(c, f"/analyst/{CUR}/compare?by=product")
    assert doc.get("lang") == "zh-CN"
    assert "合计" in doc.xpath('//tr[@id="compare-total"]')[0].text_content()
    assert re.search(r"[\u4e00-\u9fff]", doc.xpath('//table[@id="compare-table"]/tbody/tr/td[@class="name"]')[0]
                     .text_content())


def test_comparison_csv_header_and_bytes(client: FlaskClient, page_runtime: Runtime) -> None:
    r = signed_in(client).get(f"/analyst/{CUR}/compare/province.csv")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"  # one charset, not two
    assert r.headers["Content-Disposition"] == f"attachment; filename=kam-compare-{CUR}-province.csv"
    data = r.get_data()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    text = data.decode("utf-8-sig")
    assert '"42","' in text  # codes are quoted text (LibreOffice keeps them as text)
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header[0] == "代码 Code" and "收入(元) 本期 Revenue (yuan): This period" in header
    body = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert set(body) == {"11", "42", "44", ""}  # the total is the last row, without a code
    by = {r["prov_id"]: r for r in rollup(page_runtime, "by_province", LY)}
    assert Decimal(body["44"]["收入(元) 去年同期 Revenue (yuan): Same period last year"]) == by["44"]["income_amt"]
    assert body["44"]["去年同期部分报送 Partial, same period last year"] == "true"
    assert body["11"]["去年同期部分报送 Partial, same period last year"] == "false"
    assert body[""]["名称 Name (Chinese)"] == "合计"
    assert body[""]["本期部分报送 Partial, this period"] == "true"


def test_comparison_xlsx_opens_with_exact_figures_and_text_codes(client: FlaskClient, page_runtime: Runtime) -> None:
    r = signed_in(client).get(f"/analyst/{CUR}/compare/billing_item.xlsx")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ws = openpyxl.load_workbook(io.BytesIO(r.get_data())).active
    zh = [c.value for c in ws[1]]
    en = [c.value for c in ws[2]]
    assert zh[0] == "代码" and en[0] == "Code"
    col = en.index("Revenue (yuan): This period")
    items = {str(r["acct_item_type_id"]): r for r in rollup(page_runtime, "by_billing_item", CUR)}
    found = {}
    for row in ws.iter_rows(min_row=3, max_row=2 + len(items)):
        assert isinstance(row[0].value, str)  # a code stays text
        found[row[0].value] = row[col].value
    assert set(found) == set(items)
    for code, value in found.items():
        assert Decimal(str(value)) == items[code]["income_amt"]
    assert ws.cell(row=3 + len(items), column=2).value == "合计"
    notes = [ws.cell(row=r, column=1).value for r in range(4 + len(items), ws.max_row + 1)]
    assert any(n and "部分报送" in n and "partial" in n for n in notes)  # partly reported periods are said so


def test_bad_comparison_requests_are_html_errors(client: FlaskClient) -> None:
    c = signed_in(client)
    for url, status in ((f"/analyst/{CUR}/compare?by=nope", 400), (f"/analyst/{CUR}/compare?by=level&measure=cust_cnt", 400),
                        (f"/analyst/{CUR}/compare?sort=nope", 400), (f"/analyst/{CUR}/compare?dir=up", 400),
                        ("/analyst/209901/compare", 404), (f"/analyst/{CUR}/compare/nope.csv", 404),
                        ("/analyst/209901/compare/product.xlsx", 404)):
        r = c.get(url)
        assert r.status_code == status and r.mimetype == "text/html", (url, r.status_code)


def test_year_earlier_cycle() -> None:
    assert year_earlier_cycle("202610") == "202510" and year_earlier_cycle("2026Q3") == "2025Q3"
    assert year_earlier_cycle("2026") == "2025" and year_earlier_cycle("nonsense") is None


def test_signed_out_is_sent_to_sign_in(client: FlaskClient) -> None:
    for url in (f"/analyst/{CUR}/compare", "/analyst/pivot", "/analyst/pivot.csv", f"/analyst/{CUR}/compare/level.csv"):
        r = client.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"], url


# -- pivot -------------------------------------------------------------------------------------
def pivot_cells(doc: Any) -> dict[tuple[str, str], str]:
    """(row, column) -> data-value of every cell, totals included ("total" row/column)."""
    out = {}
    for tr in doc.xpath('//table[@id="pivot-table"]//tr[@data-row]'):
        for td in tr.xpath("./td[@data-col]"):
            out[(tr.get("data-row"), td.get("data-col"))] = td.get("data-value")
    return out


def test_pivot_province_by_cycle_matches_the_rollups(client: FlaskClient, page_runtime: Runtime) -> None:
    doc = page(signed_in(client), f"/analyst/pivot?rows=province&cols=cycle&measure=income_amt&from={LY}&to={CUR}")
    got = pivot_cells(doc)
    assert [th.get("data-col") for th in doc.xpath('//table[@id="pivot-table"]/thead/tr/th[@data-col]')] == [
        LY, PREV, CUR]  # cycles without data are left out, in order
    for cycle in (LY, PREV, CUR):
        for r in rollup(page_runtime, "by_province", cycle):
            assert dec(got[(r["prov_id"], cycle)]) == r["income_amt"]
        assert dec(got[("total", cycle)]) == rollup(page_runtime, "totals", cycle)["income_amt"]
    assert got[("44", PREV)] == ""
    assert dec(got[("total", "total")]) == sum(rollup(page_runtime, "totals", c)["income_amt"] for c in (LY, PREV, CUR))


@pytest.mark.parametrize(("rows", "measure", "method", "key", "field"), [
    ("product", "serv_cnt", "by_product", "prod_id", "serv_cnt"),
    ("product", "top500_income_amt", "by_product", "prod_id", "top500_income_amt"),
    ("billing_item", "item_income_amt", "by_billing_item", "acct_item_type_id", "income_amt"),
    ("level", "top500_cust_income_amt", "by_level", "level_id", "top500_income_amt"),
    ("industry", "top500_customers", "by_industry", "c_type_id", "customers"),
    ("network", "cust_cnt", "by_network", "latn_id", "cust_cnt"),
])
def test_pivot_measures_match_the_breakdowns(page_runtime: Runtime, rows: str, measure: str, method: str, key: str,
                                             field: str) -> None:
    with page_runtime.db.session() as s:
        p = PivotService(s, page_runtime.spec).pivot(rows, "cycle", measure, PREV, CUR)
    for cycle in (PREV, CUR):
        expected = {str(r[key]): r[field] for r in rollup(page_runtime, method, cycle) if r[field]}
        assert {code: p.cells[(code, cycle)] for code, _, _ in p.rows if (code, cycle) in p.cells
                and p.cells[(code, cycle)]} == expected, (rows, measure, cycle)
    if measure in ("serv_cnt", "top500_customers", "cust_cnt"):  # stocks: not added up over cycles
        assert p.row_totals == {} and p.grand_total is None and p.col_totals


def test_pivot_province_by_product_on_the_page(client: FlaskClient, page_runtime: Runtime) -> None:
    doc = page(signed_in(client, "en"), f"/analyst/pivot?rows=province&cols=product&measure=serv_cnt&from={CUR}&to={CUR}")
    got = pivot_cells(doc)
    by_product = {r["prod_id"]: r["serv_cnt"] for r in rollup(page_runtime, "by_product", CUR) if r["serv_cnt"]}
    for prod, value in by_product.items():
        assert int(got[("total", prod)]) == value  # the provinces add up to the group's volume per product
    assert int(got[("total", "total")]) == sum(by_product.values())
    assert int(got[("42", "total")]) == sum(int(v) for (r, c), v in got.items() if r == "42" and c != "total" and v)
    assert "Hubei" in doc.xpath('//tr[@data-row="42"]/th')[0].text_content()


def test_pivot_downloads(client: FlaskClient, page_runtime: Runtime) -> None:
    c = signed_in(client)
    query = f"rows=province&cols=product&measure=top500_income_amt&from={PREV}&to={CUR}"
    r = c.get(f"/analyst/pivot.csv?{query}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    data = r.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["省份代码 Province code", "省份名称 Province name", "省份英文名称 Province name (English)"]
    assert rows[0][-1] == "合计 Total" and rows[-1][1] == "合计"
    with page_runtime.db.session() as s:
        p = PivotService(s, page_runtime.spec).pivot("province", "product", "top500_income_amt", PREV, CUR)
    assert Decimal(rows[-1][-1]) == p.grand_total
    r = c.get(f"/analyst/pivot.xlsx?{query}")
    assert r.status_code == 200
    ws = openpyxl.load_workbook(io.BytesIO(r.get_data())).active
    assert ws.cell(row=3, column=1).value == p.rows[0][0] and isinstance(ws.cell(row=3, column=1).value, str)
    last = 3 + len(p.rows)
    assert Decimal(str(ws.cell(row=last, column=4 + len(p.cols)).value)) == p.grand_total


@pytest.mark.parametrize(("query", "words_en", "words_zh"), [
    ("rows=network&cols=product&measure=top500_income_amt", "cannot be split by local network", "不能按本地网拆分"),
    ("rows=province&cols=province&measure=income_amt", "two different dimensions", "两个不同的维度"),
    ("rows=level&cols=industry&measure=top500_customers", "pick one of them", "只能选其一"),
    ("rows=province&cols=cycle&measure=nope", "unknown measure", "未知指标"),
    ("rows=galaxy&cols=cycle&measure=income_amt", "unknown dimension", "未知维度"),
    ("rows=province&cols=cycle&measure=income_amt&from=202401&to=202610", f"at most {MAX_CYCLES} cycles", "最多"),
    ("rows=province&cols=cycle&measure=income_amt&from=202610&to=202601", "starts", "晚于"),
    ("rows=province&cols=cycle&measure=income_amt&from=2026Q1&to=202610", "same frequency", "同一频度"),
    ("rows=province&cols=cycle&measure=income_amt&from=yesterday&to=202610", "not a range", "不是有效"),
])
def test_an_impossible_pivot_says_why_on_the_page(client: FlaskClient, query: str, words_en: str,
                                                  words_zh: str) -> None:
    c = signed_in(client, "en")
    doc = page(c, f"/analyst/pivot?{query}", 400)
    assert words_en in doc.xpath('//p[@id="pivot-error"]')[0].text_content()
    assert doc.xpath('//form[@id="pivot-form"]')  # the form stays, to fix the choice
    c.set_cookie("kam_lang", "zh")
    doc = page(c, f"/analyst/pivot?{query}", 400)
    assert words_zh in doc.xpath('//p[@id="pivot-error"]')[0].text_content()
    r = c.get(f"/analyst/pivot.csv?{query}")
    assert r.status_code == 400 and r.mimetype == "text/html"


def test_pivot_defaults_and_offered_dimensions(client: FlaskClient) -> None:
    doc = page(signed_in(client), "/analyst/pivot?measure=top500_income_amt&rows=province&cols=product")
    disabled = set(doc.xpath('//select[@id="rows"]/option[@disabled]/@value'))
    assert disabled == {"network", "billing_item", "level", "industry"}  # only what the measure can be split by
    doc = page(client, "/analyst/pivot")
    assert doc.xpath('//input[@id="to"]/@value') == [CUR] and doc.xpath('//input[@id="from"]/@value') == ["202605"]
    assert doc.xpath('//table[@id="pivot-table"]/@data-rows') == ["province"]
    doc = page(client, f"/analyst/pivot?cycle={PREV}")  # linked from a cycle's page: the six cycles ending there
    assert doc.xpath('//input[@id="to"]/@value') == [PREV] and doc.xpath('//input[@id="from"]/@value') == ["202604"]


def test_downloads_are_linked_from_the_pages(client: FlaskClient) -> None:
    c = signed_in(client)
    doc = page(c, f"/analyst/{CUR}/compare?by=level")
    assert doc.xpath('//a[@id="dl-compare-csv"]/@href') == [f"/analyst/{CUR}/compare/level.csv"]
    assert doc.xpath('//a[@id="dl-compare-xlsx"]/@href') == [f"/analyst/{CUR}/compare/level.xlsx"]
    doc = page(c, f"/analyst/pivot?rows=product&cols=province&measure=serv_cnt&from={CUR}&to={CUR}")
    href = doc.xpath('//a[@id="dl-pivot-xlsx"]/@href')[0]
    assert href.startswith("/analyst/pivot.xlsx?") and "rows=product" in href and f"from={CUR}" in href
    assert c.get(href).status_code == 200


def test_a_period_with_nothing_reported_has_no_figures(client: FlaskClient) -> None:
    doc = page(signed_in(client, "en"), f"/analyst/{PREV}/compare?by=product")  # a year earlier: 202509, no data
    periods = {li.get("data-period"): li for li in doc.xpath('//ul[@id="periods"]/li')}
    assert periods["ly"].get("data-cycle") == "202509" and periods["ly"].get("data-share") == "0.00"
    assert periods["ly"].get("data-partial") == "no" and "not reported" in periods["ly"].text_content()
    assert set(doc.xpath('//table[@id="compare-table"]/tbody/tr/td[@data-col="ly"]/@data-value')) == {""}
    assert total(doc)["ly"] == ("", False) and total(doc)["pct_ly"] == ("", False)
