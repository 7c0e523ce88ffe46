"""A list version's page in headless Chromium: search a customer, page on, publish through the confirmation (zh, en).

2026V01 (the sample national list, 500 customers) is published; 2026V02 is a draft that
renames one customer and adds one. The admin finds a customer by part of its name, goes to
page 2 keeping a filter, then publishes 2026V02 on the Chinese page — the browser will not
submit before the confirmation is ticked — and 2026V03 the same way on the English page.
Takes docs/screenshots/admin-list-version.png (with KAM_SCREENSHOTS=1).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from exchange_server.lists.importers import import_list
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from schemas import Spec
from tests.admin.conftest import Accounts, sign_in_page
from tests.support.browser import screenshot_path

COLUMNS = ["NATIONAL_CUST_ID", "CUST_RANK", "CUST_NAME", "GROUP_PARENT_NAME", "C_TYPE_ID", "LEVEL_ID",
           "LEAD_PROV_ID", "LEAD_LATN_ID", "HQ_MANAGER_NAME", "HQ_MANAGER_PHONE", "EFF_DATE", "EXP_DATE"]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows([[r[c] for c in COLUMNS] for r in rows])
    return path


@pytest.fixture(scope="module")
def sample(admin_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory, spec: Spec) -> dict[str, Any]:
    """2026V01 published from the sample's spec files, 2026V02 loaded as a draft; the rows and the folder."""
    from exchange_server.sample_data.generator import generate

    out = tmp_path_factory.mktemp("browser-list")
    generate(spec, "202610", out, provinces=["42"], scale=1, fmt="txt", seed=2002)
    rows = [r for r in import_list(out / "00" / "D_00_2026V01_00.chk", spec).rows if r["CHANGE_TYPE"] != "D"]
    v2 = [dict(r) for r in rows]
    v2[0]["CUST_NAME"] = "ACME Holdings 韶关分部"
    v2.append({**next(r for r in rows if r["LEAD_PROV_ID"] == "42"), "NATIONAL_CUST_ID": "G420099999",
               "CUST_RANK": str(len(v2) + 1), "CUST_NAME": "新增测试客户", "EFF_DATE": "20261201"})
    with admin_runtime.db.session() as s:
        svc = ListService(s, admin_runtime.archive, admin_runtime.spec, "test")
        svc.publish(svc.load(out / "00" / "D_00_2026V01_00.chk"), confirm_impact=True)
    with admin_runtime.db.session() as s:
        ListService(s, admin_runtime.archive, admin_runtime.spec, "test").load(write_csv(out / "v2.csv", v2),
                                                                              "2026V02")
    return {"rows": rows, "v2": v2, "out": out}


def shown(page: Any) -> list[str]:
    """The customer ids in the entries table."""
    ids: list[str] = page.locator("#entries-table tbody tr").evaluate_all("els => els.map(e => e.dataset.customer)")
    return ids


@pytest.mark.slow
def test_search_a_customer_and_page_on(page: Any, admin_url: str, accounts: Accounts, sample: dict[str, Any],
                                       tmp_path: Path) -> None:
    sign_in_page(page, admin_url, accounts.admin(), start="/admin/lists/2026V01")
    assert page.locator("#entry-count").get_attribute("data-total") == "500"
    assert len(shown(page)) == 100
    target = sample["rows"][137]  # on page 2 of the list
    assert target["NATIONAL_CUST_ID"] not in shown(page)
    page.fill("#q", target["CUST_NAME"][2:])
    with page.expect_navigation():
        page.click('#entry-search button[type="submit"]')
    assert target["NATIONAL_CUST_ID"] in shown(page)
    assert parse_qs(urlsplit(page.url).query)["q"] == [target["CUST_NAME"][2:]]
    # Clear, filter by change (every customer of a first version is added), then page 2 keeps the filter.
    with page.expect_navigation():
        page.click("#clear-search")
    page.select_option("#change", "A")
    with page.expect_navigation():
        page.click('#entry-search button[type="submit"]')
    with page.expect_navigation():
        page.click('#entries-pager a[data-page="2"]')
    query = parse_qs(urlsplit(page.url).query)
    assert query["page"] == ["2"] and query["change"] == ["A"]
    assert page.locator("#entry-count").get_attribute("data-page") == "2"
    ids = shown(page)
    assert len(ids) == 100 and target["NATIONAL_CUST_ID"] in ids
    assert page.locator('#entries-pager [aria-current="page"]').inner_text() == "2"
    assert page.locator("#change").input_value() == "A"
    # The downloads are links on the page.
    with page.expect_download() as got:
        page.click("#download-csv")
    assert got.value.suggested_filename == "list-2026V01.csv"


@pytest.mark.slow
def test_publish_with_the_confirmation_in_both_languages(page: Any, admin_url: str, admin_runtime: Runtime,
                                                          accounts: Accounts, sample: dict[str, Any],
                                                          tmp_path: Path) -> None:
    sign_in_page(page, admin_url, accounts.admin(), start="/admin/lists/2026V02")
    summary = page.locator("#publish-summary").inner_text()
    assert "新增 1 个客户、变更 1 个、删除 0 个" in summary and "2026V01" in summary
    assert page.locator('#province-changes tr[data-province="42"]').count() == 1
    page.fill("#q", "ACME")
    with page.expect_navigation():
        page.click('#entry-search button[type="submit"]')
    assert shown(page) == [sample["rows"][0]["NATIONAL_CUST_ID"]]
    page.screenshot(path=str(screenshot_path("admin-list-version.png", tmp_path)), full_page=True)

    page.click('#publish button[type="submit"]')  # not sent: the confirmation is required
    assert page.evaluate("document.querySelector('#confirm-impact').validity.valueMissing")
    assert page.locator('[data-state="draft"]').count() == 1
    page.check("#confirm-impact")
    with page.expect_navigation():
        page.click('#publish button[type="submit"]')
    assert page.locator('h1 [data-state="published"]').count() == 1
    assert "已发布名单 2026V02" in page.locator("p.flash").inner_text()
    assert page.locator("#confirm-publish").count() == 0

    # 2026V03 (2026V02 less the added customer), published on the English page.
    with admin_runtime.db.session() as s:
        ListService(s, admin_runtime.archive, admin_runtime.spec, "test").load(
            write_csv(sample["out"] / "v3.csv", sample["v2"][:-1]), "2026V03")
    page.goto(f"{admin_url}/lang/en?next=/admin/lists/2026V03")
    assert page.url.endswith("/admin/lists/2026V03")
    assert "Before publishing" in page.locator("#h-publish").inner_text()
    summary = page.locator("#publish-summary").inner_text()
    assert "0 customer(s) added, 0 changed, 1 removed" in summary and "2026V02, is superseded" in summary
    assert "42 Hubei" in page.locator("#province-changes").inner_text()
    assert "I have checked the changes above" in page.locator("#publish label").inner_text()
    page.click('#publish button[type="submit"]')
    assert page.evaluate("document.querySelector('#confirm-impact').validity.valueMissing")
    page.check("#confirm-impact")
    with page.expect_navigation():
        page.click('#publish button[type="submit"]')
    assert page.locator('h1 [data-state="published"]').count() == 1
    assert "list 2026V03 published" in page.locator("p.flash").inner_text()
    with admin_runtime.db.session() as s:
        current = ListService(s, None, admin_runtime.spec).current()
        assert current is not None and current.version == "2026V03"
