"""The pages' language: Chinese (zh-CN) by default, English by choice, one language per page.

The choice is the ``kam_lang`` cookie set by ``/lang/<code>``. Every admin, analyst and
sign-in page is walked in both languages: the English pages must hold no Chinese UI text and
the Chinese pages none of the English UI phrases. Data values (names, reasons, file lines,
comments) are never translated; templates mark them ``translate="no"`` and the walk skips them.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from exchange_server.accounts.models import Account
from exchange_server.accounts.services import AccountService
from exchange_server.admin.services import CycleExceptionService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.lists.services import ListService
from exchange_server.pages.admin.forms import beijing_local
from exchange_server.pages.charts import LineItem, compact_money, line_chart
from exchange_server.review.services import ReviewService
from exchange_server.runtime import Runtime
from schemas import Spec
from tests.pages.conftest import PROVINCE
from tests.support.deliveries import valid_rows
from tests.support.receiving import receive_folder

ADMIN = ("lang-admin", "language-pages-2026")
KEY = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
ONE_YEAR = 365 * 86400

# CJK ideographs, kana, CJK punctuation and full-width forms: none may remain on an English page.
CJK = re.compile(r"[\u2e80-\u2fff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
# English UI text that must not remain on a Chinese page (whole words, case-sensitive).
ENGLISH_UI = ["Sign out", "Sign in", "Review queue", "Key-account", "Admin", "Accounts", "Account", "Audit log",
              "Cycles", "Cycle", "Code lists", "Top-500", "Previous", "Next", "Filter", "Clear", "Search", "All",
              "Any", "Province", "Received", "Verdict", "Resend", "Party", "Unit", "Units", "Downloads",
              "Completeness", "Group revenue", "Reporting rate", "Key accounts", "No data", "Add", "Revoke", "Rotate",
              "Save", "Grant", "State", "Name", "Role", "Created", "Password", "Back to the start page", "page",
              "Receipt", "Findings", "Comments", "Actions", "Summary", "Raw file", "Version", "Versions", "Publish",
              "Label", "Fingerprint", "Reason", "Deadline", "Calendar", "Exceptions", "rejected", "accepted",
              "open", "closed", "planned", "live", "valid", "published", "draft", "errors", "warnings", "late",
              "missing", "View", "CNY", "Home", "Error code", "There is no such page"]
# Attributes a reader meets (tooltips, screen readers, empty inputs); form values and data-* are data.
UI_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# GET routes that answer with a file, not a page.
FILES = {"analyst.download", "admin.code_snippet", "admin.list_files"}
FILES |= {"analyst.compare_csv", "analyst.compare_xlsx", "analyst.pivot_csv_download", "analyst.pivot_xlsx_download"}
FILES |= {"analyst.timeliness_csv", "analyst.coverage_download"}


class UiText(HTMLParser):
    """The text of a page a reader sees or hears, without data values.

    Skipped: elements marked ``translate="no"`` (data values) and elements with their own ``lang``
    (the link to the other language, written in that language), with everything inside them. The
    skipped text is kept in ``data``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.parts: list[str] = []
        self.data: list[str] = []

    def _skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def _open(self, tag: str, attrs: list[tuple[str, str | None]], void: bool) -> None:
        a = dict(attrs)
        skip = self._skipping() or a.get("translate") == "no" or ("lang" in a and tag != "html")
        if not skip:
            self.parts.extend(v for k, v in attrs if k in UI_ATTRIBUTES and v)
        if not void:
            self.stack.append((tag, skip))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, tag in VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs, True)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):  # unclosed children (<option>, <p>) end with their parent
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if data.strip():
            (self.data if self._skipping() else self.parts).append(" ".join(data.split()))


def ui_text(html: str) -> list[str]:
    """The UI text pieces of a page (see :class:`UiText`).

    A data value the page shows as data (a finding's expected value) is data wherever it appears:
    longer Chinese data values are cut out of the UI text that quotes them (a finding's message).
    """
    parser = UiText()
    parser.feed(html)
    parser.close()
    quoted = sorted({d for d in parser.data if CJK.search(d) and len(d) >= 6}, key=len, reverse=True)
    parts = []
    for part in parser.parts:
        for value in quoted:
            part = part.replace(value, " ")
        parts.append(part)
    return parts


def html_lang(html: str) -> str:
    m = re.search(r'<html lang="([^"]+)"', html)
    assert m, "no <html lang>"
    return m.group(1)


def assert_english(where: str, html: str) -> None:
    """An English page: lang="en" and no Chinese outside data values."""
    assert html_lang(html) == "en", where
    chinese = [p for p in ui_text(html) if CJK.search(p)]
    assert not chinese, f"{where}: Chinese UI text on the English page: {chinese[:8]}"
    assert 'class="en"' not in html, where


def assert_chinese(where: str, html: str) -> None:
    """A Chinese page: lang="zh-CN" and none of the English UI phrases outside data values."""
    assert html_lang(html) == "zh-CN", where
    text = " | ".join(ui_text(html))
    found = [p for p in ENGLISH_UI if re.search(rf"(?<![A-Za-z-]){re.escape(p)}(?![A-Za-z-])", text)]
    assert not found, f"{where}: English UI text on the Chinese page: {found}"
    assert CJK.search(text), where
    assert 'class="en"' not in html, where


# -- the site: real data behind every page ------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """What the walk fills the routes' arguments with."""

    rejected: int
    list_version: str
    draft_version: str


def list_csv(spec: Spec, text: str, rename: bool = False, break_level: bool = False) -> bytes:
    """The national list's active rows (pipe-separated file text) as an upload CSV, optionally changed."""
    ids = spec.unit("TOP500_LIST").field_ids
    rows = [r for r in (dict(zip(ids, line.split("|"))) for line in text.splitlines()) if r["CHANGE_TYPE"] != "D"]
    if rename:
        rows[0]["CUST_NAME"] += "（集团）"
        rows = rows[:-1]
    if break_level:
        rows[1]["LEVEL_ID"] = "X"
    columns = [f for f in ids if f not in ("LIST_VERSION", "CHANGE_TYPE")]
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    w.writerows([[r[f] for f in columns] for r in rows])
    return buf.getvalue().encode("utf-8-sig")


@pytest.fixture(scope="module")
def site(page_runtime: Runtime, spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """On top of the pages' data: an admin, a rejected delivery with comments, a token, a key, an
    exception, a draft list version."""
    rt = page_runtime
    tmp = tmp_path_factory.mktemp("language")
    with rt.db.session() as s:
        accounts = AccountService(s, "test")
        accounts.create(ADMIN[0], "admin", display_name="语言测试管理员", password=ADMIN[1])
        prov = s.scalar(select(Account).where(Account.name == PROVINCE[0]))
        assert prov is not None
        accounts.create_token(prov, "代理程序 agent")
        accounts.add_ssh_key(prov, KEY + " ops@42", "运维")
        CycleExceptionService(s, ADMIN[0]).grant("202610", "44", dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2),
                                                 "系统割接 CRM cut-over")
    rows = valid_rows(spec, party="42", cycle="202610")
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"  # not in the code list: an error
    rows.write(tmp / "rejected", resend=1)
    rejected = receive_folder(rt, PROVINCE[0], tmp / "rejected")
    IngestionWorker(rt, "test").drain()
    with rt.db.session() as s:
        review = ReviewService(s, rt.archive, rt.spec)
        d = review.delivery(rejected)
        assert d.status == "rejected", d.status
        review.comment(ADMIN[0], d, "第2行客户级别代码 X 无效，请改正。")
        review.request_resend(ADMIN[0], d, "请于本周内重报。")
    root = Path(rt.settings.data_dir).parent
    text = (root / "202610" / "00" / "D_00_2026V01_31101_00_001.txt").read_text("utf-8")
    (tmp / "v2.csv").write_bytes(list_csv(spec, text, rename=True))
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec, ADMIN[0])
        published = lists.current()
        assert published is not None
        draft = lists.load(tmp / "v2.csv", "2026V02", source_name="名单第二版.csv")
        return Site(rejected, published.version, draft.version)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(client: FlaskClient, name: str, password: str) -> str:
    """Sign in through the form; returns the new session's CSRF token."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)[:400]
    with client.session_transaction() as session:
        return str(session["csrf"])


def page_urls(app: Flask, site: Site) -> list[str]:
    """Every GET page of the admin, analyst and sign-in blueprints, with arguments from real data."""
    values: dict[str, Any] = {"cycle": "202610", "delivery_id": site.rejected, "rest": "no/such/page"}
    per_endpoint: dict[str, dict[str, Any]] = {
        "admin.account": {"name": PROVINCE[0]}, "admin.code_domain": {"name": "Domain_level_id"},
        "admin.list_version": {"version": site.list_version}}
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint.split(".")[0] not in ("admin", "analyst", "auth") or "GET" not in (rule.methods or ()):
                continue
            if rule.endpoint in FILES:
                continue
            given = per_endpoint.get(rule.endpoint, {})
            missing = [a for a in rule.arguments if a not in given and a not in values]
            assert not missing, f"the walk has no value for {rule.endpoint}'s {missing}: add one"
            urls.append(url_for(rule.endpoint, **{a: given.get(a, values.get(a)) for a in rule.arguments}))
    return urls


def pages(client: FlaskClient, app: Flask, site: Site, csrf: str) -> list[tuple[str, str]]:
    """(what, HTML) of every page, plus pages in states a plain GET does not show (findings' raw lines,
    a draft list, filters, refused forms)."""
    out: list[tuple[str, str]] = []

    def keep(what: str, r: TestResponse, statuses: tuple[int, ...] = (200,)) -> str:
        html = r.get_data(as_text=True)
        assert r.status_code in statuses and r.mimetype == "text/html", (what, r.status_code, html[:300])
        out.append((what, html))
        return html

    urls = page_urls(app, site)
    assert {"/admin/review/", "/admin/cycles", "/admin/lists", "/admin/accounts", "/admin/audit", "/analyst/202610",
            "/login"} <= set(urls), urls
    for url in urls:
        keep(url, client.get(url, follow_redirects=True), (200, 404) if "no/such/page" in url else (200,))
    delivery = next(html for what, html in out if what == f"/admin/review/{site.rejected}")
    line = re.search(r'class="show-line" href="([^"]+)"', delivery)
    assert line, "no finding points at a line"
    keep("a finding's raw lines", client.get(line.group(1).replace("&amp;", "&")))
    keep("the draft list", client.get(f"/admin/lists/{site.draft_version}"))
    keep("an older cycle", client.get("/analyst/202609"))
    keep("a filtered queue", client.get("/admin/review/?province=42&state=resend_requested&age=1d"))
    keep("an empty queue", client.get("/admin/review/?unit=99999"))
    keep("a bad audit date", client.get("/admin/audit?since=yesterday"), (400,))
    refused = [("/admin/cycles", {"cycle_id": "2026-13"}, "bad_cycle_id"),
               ("/admin/cycles/202610/deadline", {"deadline": "tomorrow"}, "bad_datetime"),
               ("/admin/accounts", {"name": "x", "role": "analyst"}, "password_missing"),
               (f"/admin/review/{site.rejected}/accept-warnings", {"justification": "long enough reason"},
                "errors_cannot_be_overridden")]
    for url, form, code in refused:
        html = keep(f"{url} refused", client.post(url, data={"csrf_token": csrf, **form}), (400, 409))
        assert f'data-code="{code}"' in html, (url, code)
    keep("no CSRF token", client.post("/admin/cycles", data={"cycle_id": "202699"}), (400,))
    return out


def test_default_is_chinese_even_for_an_english_browser(client: FlaskClient, site: Site) -> None:
    login = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
    assert '<html lang="zh-CN">' in login and 'id="lang-en"' in login and "登录" in login
    sign_in(client, *ADMIN)
    for url in ("/admin/review/", "/analyst/202610"):
        html = client.get(url).get_data(as_text=True)
        assert '<html lang="zh-CN">' in html, url
        text = " ".join(ui_text(html))
        for english in ("Review queue", "Sign out", "Key-account analysis", "Group revenue"):
            assert english not in text, (url, english)
        assert "退出" in text
    assert "审核队列" in client.get("/admin/review/").get_data(as_text=True)


def test_choosing_a_language_sets_a_long_lived_cookie_and_goes_back(client: FlaskClient) -> None:
    r = client.get("/lang/en?next=/admin/review/%3Fcycle%3D202610")
    assert r.status_code == 303 and r.headers["Location"] == "/admin/review/?cycle=202610"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("kam_lang=en;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    max_age = re.search(r"Max-Age=(\d+)", cookie)
    assert max_age and int(max_age.group(1)) >= ONE_YEAR
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in html and 'id="lang-zh"' in html and "Sign in" in html
    r = client.get("/lang/zh?next=/login")
    assert r.headers["Location"] == "/login" and "kam_lang=zh;" in r.headers["Set-Cookie"]
    assert '<html lang="zh-CN">' in client.get("/login").get_data(as_text=True)


def test_no_open_redirect_after_choosing(client: FlaskClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/evil.example", ""):
        r = client.get("/lang/en", query_string={"next": target} if target else None)
        assert r.status_code == 303 and r.headers["Location"] == "/analyst/", target  # the start page
    assert client.get("/lang/en?next=/login").headers["Location"] == "/login"


def test_an_unknown_language_changes_nothing(client: FlaskClient) -> None:
    r = client.get("/lang/xx?next=/login")
    assert r.status_code == 303 and r.headers["Location"] == "/login" and "Set-Cookie" not in r.headers
    assert '<html lang="zh-CN">' in client.get("/login").get_data(as_text=True)
    client.get("/lang/en")
    r = client.get("/lang/fr?next=/login")
    assert "Set-Cookie" not in r.headers
    assert '<html lang="en">' in client.get("/login").get_data(as_text=True)  # still English
    client.set_cookie("kam_lang", "klingon")  # a forged cookie: the default
    assert '<html lang="zh-CN">' in client.get("/login").get_data(as_text=True)


def test_error_pages_are_in_the_chosen_language(client: FlaskClient, site: Site) -> None:
    sign_in(client, *ADMIN)
    for url, code in (("/analyst/209901", "cycle_not_found"), ("/analyst/202610/no/such/page", "not_found"),
                      ("/admin/lists/2099V01", None)):
        zh = client.get(url)
        html = zh.get_data(as_text=True)
        assert zh.status_code == 404 and 'data-status="404"' in html, url
        assert_chinese(url, html)
        if code:
            assert f'data-code="{code}"' in html and f">{code}</code>" in html
        client.set_cookie("kam_lang", "en")
        en = client.get(url)
        html = en.get_data(as_text=True)
        assert en.status_code == 404 and 'data-status="404"' in html, url
        assert_english(url, html)
        assert "Back to the start page" in html and "Error code:" in html
        client.delete_cookie("kam_lang")
    assert "页面不存在" in client.get("/analyst/202610/no/such/page").get_data(as_text=True)


def test_wrong_password_message_in_each_language(client: FlaskClient, site: Site) -> None:
    def refused() -> str:
        token = csrf_of(client.get("/login").get_data(as_text=True))
        r = client.post("/login", data={"username": ADMIN[0], "password": "wrong", "csrf_token": token})
        assert r.status_code == 401
        return r.get_data(as_text=True)

    zh = refused()
    assert "账户名或密码错误" in zh
    assert_chinese("wrong password", zh)
    client.set_cookie("kam_lang", "en")
    en = refused()
    assert_english("wrong password", en)
    assert 'data-code="' in en
    sign_in(client, *ADMIN)  # a success clears the failures (the lockout is not this test's business)


def test_every_page_is_in_one_language(app: Flask, site: Site) -> None:
    """Walk every page as an admin, once in Chinese and once in English."""
    for language, check in (("zh", assert_chinese), ("en", assert_english)):
        client = app.test_client()
        if language == "en":
            client.get("/lang/en")
        csrf = sign_in(client, *ADMIN)
        walked = pages(client, app, site, csrf)
        assert len(walked) >= 20
        for what, html in walked:
            check(f"{language} {what}", html)
    # The analyst's own view of the dashboard (the header names a different account).
    client = app.test_client()
    client.get("/lang/en")
    from tests.pages.conftest import ANALYST

    sign_in(client, *ANALYST)
    assert_english("analyst dashboard", client.get("/analyst/202610").get_data(as_text=True))


def test_english_pages_say_it_in_english(app: Flask, site: Site) -> None:
    """Spot checks that the English pages carry the English words (not just no Chinese)."""
    client = app.test_client()
    client.get("/lang/en")
    csrf = sign_in(client, *ADMIN)
    queue = client.get("/admin/review/").get_data(as_text=True)
    for words in ("Review queue", "Sign out", "Filter", "resend requested", "rejected", "page 1 of 1", "All"):
        assert words in queue, words
    dashboard = client.get("/analyst/202610").get_data(as_text=True)
    for words in ("Key-account analysis", "Group revenue", "Revenue by province", "CNY", "Completeness", "accepted"):
        assert words in dashboard, words
    assert re.search(r"\d[BMK]</text>", dashboard)  # chart values in thousands/millions/billions, not 万/亿
    # A flashed message after a change is shown in the reader's language.
    until = beijing_local(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3))
    r = client.post("/admin/cycles/exceptions", data={"csrf_token": csrf, "cycle_id": "202609", "province": "11",
                                                      "until": until, "reason": "late data"})
    assert r.status_code == 303
    cycles = client.get("/admin/cycles").get_data(as_text=True)
    assert "province 11 may deliver to cycle 202609" in cycles
    assert_english("flash", cycles)


def test_money_in_each_language(app: Flask) -> None:
    assert compact_money(Decimal("2288387313.17"), "en") == "2.29B"
    assert compact_money(Decimal("169459740.65"), "en") == "169.46M"
    assert compact_money(Decimal("68918.7"), "en") == "68.92K"
    assert compact_money(Decimal(812), "en") == "812.00"
    assert compact_money(Decimal("2288387313.17"), "zh") == compact_money(Decimal("2288387313.17")) == "22.88亿"
    items = [LineItem("202609", "2026-09", Decimal(1000), True), LineItem("202610", "2026-10", Decimal(2_500_000_000), True)]
    with app.test_request_context(headers={"Cookie": "kam_lang=en"}):  # the page's language when none is given
        assert compact_money(Decimal("68918287.70")) == "68.92M"
        assert [tick.text for tick in line_chart(items).ticks] == ["0", "625M", "1.25B", "1.88B", "2.50B"]
    with app.test_request_context():
        assert compact_money(Decimal("68918287.70")) == "6,891.83万"
        assert [tick.text for tick in line_chart(items).ticks] == ["0", "6.25亿", "12.50亿", "18.75亿", "25亿"]


@pytest.mark.slow
def test_switching_language_in_the_browser(page: Any, live_url: str, site: Site) -> None:
    page.goto(live_url + "/admin/review/")
    assert "/login" in page.url and page.locator("html").get_attribute("lang") == "zh-CN"
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    with page.expect_navigation():
        page.click("button.primary")
    assert page.url == f"{live_url}/admin/review/"
    assert "审核队列" in page.locator("h1").inner_text()

    with page.expect_navigation():
        page.click("#lang-en")
    assert page.url == f"{live_url}/admin/review/"  # back on the same page
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Review queue" in page.locator("h1").inner_text()
    assert not CJK.search(page.locator("#queue thead").inner_text())
    assert page.locator("header button[type=submit]").inner_text().strip() == "Sign out"
    cookie = next(c for c in page.context.cookies() if c["name"] == "kam_lang")
    assert cookie["value"] == "en" and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["expires"] > dt.datetime.now().timestamp() + ONE_YEAR - 86400

    with page.expect_navigation():
        page.click("#lang-zh")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert "审核队列" in page.locator("h1").inner_text()
    with page.expect_navigation():
        page.click("#lang-en")
    assert "Review queue" in page.locator("h1").inner_text()

    # Sign out and in again: still English (the choice is the browser's, not the session's).
    with page.expect_navigation():
        page.click("header button[type=submit]")
    assert "/login" in page.url and page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text().strip() == "Sign in"
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    with page.expect_navigation():
        page.click("button.primary")
    page.goto(live_url + "/admin/review/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Review queue" in page.locator("h1").inner_text()


def test_every_province_page_is_in_one_language(app: Flask, site: Site) -> None:
    """Walk every page of a province user (routes from the URL map), once in Chinese and once in English."""
    values: dict[str, Any] = {"delivery_id": site.rejected, "rest": "no/such/page"}
    with app.test_request_context():
        urls = [url_for(rule.endpoint, **{a: values[a] for a in rule.arguments})
                for rule in app.url_map.iter_rules()
                if rule.endpoint.startswith("province.") and "GET" in (rule.methods or ())
                and rule.endpoint != "province.feedback"]  # a file download, not a page
    assert {"/province/", "/province/cycles", f"/province/deliveries/{site.rejected}"} <= set(urls), urls
    for language, check in (("zh", assert_chinese), ("en", assert_english)):
        client = app.test_client()
        if language == "en":
            client.get("/lang/en")
        sign_in(client, *PROVINCE)
        walked = []
        for url in urls:
            r = client.get(url)
            assert r.status_code in ((404,) if "no/such/page" in url else (200,)), (url, r.status_code)
            walked.append((url, r.get_data(as_text=True)))
        delivery = dict(walked)[f"/province/deliveries/{site.rejected}"]
        line = re.search(r'class="show-line" href="([^"]+)"', delivery)
        assert line, "no finding points at a line"
        walked.append(("a finding's raw lines", client.get(line.group(1).replace("&amp;", "&")).get_data(as_text=True)))
        for what, html in walked:
            check(f"{language} province {what}", html)
