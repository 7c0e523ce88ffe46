"""Uploading on the province page in headless Chromium, against a real server with an ingestion worker.

A Hubei user signs in, opens "Upload a delivery", chooses the check file and its six data files
at once (``set_input_files``), submits (the progress bar is read on a throttled line), lands on
the delivery's page, which says "validating" and reloads itself until the worker's verdict is
there. Then, in English, a choice without a
check file is refused on the page (the progress script shows the server's message) and a resend
is received and judged; without JavaScript the plain form does the same.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from exchange_server.cycles.services import CycleService
from exchange_server.runtime.serve import Server
from tests.pages.test_province_fixes import resend_copy
from tests.pages.test_province_upload import PASSWORDS, Env, folder_files, upload_runtime
from tests.support.browser import VIEWPORT, screenshot_path

DELIVERY_URL = re.compile(r".*/province/deliveries/(\d+)\?received=1$")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A fresh upload runtime (202610 open, the list published, Hubei's sample on disk)."""
    e = upload_runtime(tmp_path_factory.mktemp("upload-browser"))
    with e.rt.db.session() as s:
        CycleService(s, e.rt.spec, "test").create("202611")  # planned: on the calendar, never opened
    yield e
    e.rt.db.dispose()


@pytest.fixture(scope="module")
def server_url(env: Env) -> Iterator[str]:
    """The real server with one ingestion worker, so uploads are judged as in production."""
    server = Server(env.rt, "127.0.0.1", 0, sftp_port=0).start(workers=1, sftp=False)
    yield server.url
    server.shutdown()


def sign_in(page: Any, url: str) -> None:
    """Sign in as Hubei's user through the form."""
    page.goto(url + "/login")
    page.fill("#username", "prov42")
    page.fill("#password", PASSWORDS["prov42"])
    with page.expect_navigation():
        page.click("button.primary")
    assert page.url == f"{url}/province/"


def wait_for_verdict(page: Any) -> str:
    """Wait (the page reloads itself) until the delivery is judged; its status."""
    page.locator("#validating").wait_for(state="detached", timeout=60_000)
    return str(page.locator("#verdict [data-status]").get_attribute("data-status"))


@pytest.mark.slow
def test_upload_several_files_and_read_the_verdict_in_both_languages(page: Any, server_url: str, env: Env,
                                                                      tmp_path: Path) -> None:
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, server_url)
    with page.expect_navigation():
        page.click(".province-nav a[data-section=upload]")
    assert page.url == f"{server_url}/province/upload"
    assert page.locator("h1").inner_text().strip() == "上传报送"
    assert page.locator('#open-cycles tr[data-cycle="202610"]').count() == 1
    files = folder_files(env.sample)
    page.set_input_files("#files", [str(p) for p in files])
    assert page.evaluate("document.getElementById('files').files.length") == 7
    page.screenshot(path=str(screenshot_path("province-upload.png", tmp_path)), full_page=True)
    # A slow line (about 25 kB/s up), so the progress the page shows can be read while it uploads.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": 25_000})
    page.click("#upload-submit")
    page.locator("#upload-status", has_text="MB /").wait_for(timeout=30_000)
    assert page.locator("#upload-progress").is_visible() and page.locator("#upload-submit").is_disabled()
    assert page.evaluate("document.getElementById('upload-progress').max") > sum(p.stat().st_size for p in files)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    page.wait_for_url(DELIVERY_URL, timeout=30_000)
    m = DELIVERY_URL.match(page.url)
    assert m
    first = int(m.group(1))
    assert page.locator("#received-notice").is_visible()
    assert "P_42_202610_00.chk" in page.locator("#check-name").inner_text()
    assert page.locator("#files tbody tr").count() == 7
    assert "网页上传" in page.locator("#received").inner_text()
    status = wait_for_verdict(page)  # the worker judges; the page reloads itself until then
    assert status in ("accepted", "accepted_with_warnings")
    assert page.locator("#counts-now tr[data-mark=current]").count() == 6
    assert "500强大客户基本信息" in page.locator("#files").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    page.screenshot(path=str(screenshot_path("province-uploaded.png", tmp_path)), full_page=True)
    assert not csp_errors, csp_errors

    # In English: a choice without the check file is refused on the page, with the server's message.
    with page.expect_navigation():
        page.click("#lang-en")
    with page.expect_navigation():
        page.click(".province-nav a[data-section=upload]")
    assert page.locator("h1").inner_text().strip() == "Upload a delivery"
    page.set_input_files("#files", [str(p) for p in files[1:]])
    page.click("#upload-submit")
    error = page.locator("#upload-error")
    error.wait_for(timeout=30_000)
    assert error.get_attribute("data-code") == "no_check_file"
    assert "no check file among the 6 file(s)" in error.inner_text()
    assert page.url == f"{server_url}/province/upload"  # still here, the choice can be corrected
    # A stale form (its token no longer the session's): the error page's message, on this page.
    token = page.evaluate("document.querySelector('#upload-form input[name=csrf_token]').value")
    page.evaluate("document.querySelector('#upload-form input[name=csrf_token]').value = 'stale'")
    page.set_input_files("#files", [str(p) for p in files])
    page.click("#upload-submit")
    page.locator('#upload-error[data-code="csrf_failed"]').wait_for(timeout=30_000)
    assert "reload the page" in page.locator("#upload-error").inner_text()
    page.evaluate(f"document.querySelector('#upload-form input[name=csrf_token]').value = '{token}'")

    # A resend of one unit: received, judged, and the first delivery's data for it superseded.
    resend = resend_copy(env.sample, tmp_path / "r01", 1, ("31201",))
    page.set_input_files("#files", [str(p) for p in folder_files(resend)])
    page.click("#upload-submit")
    page.wait_for_url(DELIVERY_URL, timeout=30_000)
    assert page.locator("#received-notice").inner_text().startswith("Received")
    assert wait_for_verdict(page) in ("accepted", "accepted_with_warnings")
    assert "Top-500 customer details (master data)" in page.locator("#files").inner_text()
    with page.expect_navigation():
        page.click(".province-nav a[data-section=deliveries]")
    assert page.locator(f'#deliveries tr[data-delivery="{first}"]').get_attribute("data-counts") == "partly"
    assert "partly current" in page.locator(f'#deliveries tr[data-delivery="{first}"]').inner_text()
    # Dates stay on one line; file names keep their underscores visible.
    date_cell = page.locator("#deliveries td.date").first
    assert page.evaluate("e => getComputedStyle(e).whiteSpace", date_cell.element_handle()) == "nowrap"
    box = date_cell.bounding_box()
    assert box is not None and box["height"] < 30  # one line
    link = page.locator("#deliveries td.filename a").first
    assert "_" in link.inner_text() and "\n" not in link.inner_text()
    # The underline sits below the underscores, not on them.
    assert page.evaluate("e => getComputedStyle(e).textUnderlineOffset", link.element_handle()) not in ("auto", "0px")
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    page.screenshot(path=str(screenshot_path("province-deliveries.png", tmp_path)), full_page=True)

    # The calendar: units by name; a cycle never opened is "not open", not "not delivered".
    with page.expect_navigation():
        page.click(".province-nav a[data-section=cycles]")
    planned = page.locator('#cycles tr[data-cycle="202611"] li.unit-state')
    assert planned.count() == 6 and {planned.nth(i).get_attribute("data-state") for i in range(6)} == {"not_open"}
    assert "not open" in planned.first.inner_text()
    color = page.evaluate("e => getComputedStyle(e).color", planned.first.element_handle())
    assert color != page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--miss')")
    unit = page.locator('#cycles tr[data-cycle="202610"] li[data-unit="31201"]')
    assert unit.get_attribute("data-state") == "accepted"
    assert "Top-500 customer details (master data) VIP_CUST_INFO (31201)" in unit.inner_text()
    assert page.evaluate("e => getComputedStyle(e).textDecorationLine", unit.locator("a").element_handle()) == "none"
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    page.screenshot(path=str(screenshot_path("province-cycles.png", tmp_path)), full_page=True)
    assert not csp_errors, csp_errors


@pytest.mark.slow
def test_upload_works_without_javascript(browser: Any, server_url: str, env: Env, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport=VIEWPORT, java_script_enabled=False, locale="zh-CN")
    try:
        page = ctx.new_page()
        sign_in(page, server_url)
        page.goto(server_url + "/province/upload")
        page.set_input_files("#files", [str(p) for p in folder_files(env.sample)[1:]])
        with page.expect_navigation():
            page.click("#upload-submit")
        assert page.locator("#upload-error").get_attribute("data-code") == "no_check_file"
        assert "没有校验文件" in page.locator("#upload-error").inner_text()
        resend = resend_copy(env.sample, tmp_path / "r02", 2, ("31202",))
        page.set_input_files("#files", [str(p) for p in folder_files(resend)])
        with page.expect_navigation():
            page.click("#upload-submit")
        assert DELIVERY_URL.match(page.url)
        assert wait_for_verdict(page) in ("accepted", "accepted_with_warnings")  # the Refresh header reloads it
    finally:
        ctx.close()
