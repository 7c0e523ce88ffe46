"""Sign-in, sessions, CSRF, roles and error pages, in process (Werkzeug's test client)."""
from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST, PROVINCE


def csrf_of(html: str) -> str:
    """The hidden CSRF field of a page's form."""
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(client: FlaskClient, name: str, password: str, next_url: str | None = None) -> TestResponse:
    """Post the sign-in form the way a browser does (GET it first for the token)."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    url = f"/login?next={next_url}" if next_url else "/login"
    return client.post(url, data={"username": name, "password": password, "csrf_token": token})


def test_pages_ask_to_sign_in_first(client: FlaskClient) -> None:
    r = client.get("/analyst/202610")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/analyst/202610"
    assert client.get("/").headers["Location"] == "/analyst/"
    r = client.get("/analyst/202610/download/rollup.xlsx")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_sign_in_sets_a_safe_cookie_and_goes_where_asked(client: FlaskClient) -> None:
    login = client.get("/login")
    assert login.status_code == 200 and "登录" in login.get_data(as_text=True)
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "script-src" not in login.headers["Content-Security-Policy"]  # default-src 'none': no script at all
    assert login.headers["X-Frame-Options"] == "DENY"
    r = sign_in(client, *ANALYST, next_url="/analyst/202609")
    assert r.status_code == 302 and r.headers["Location"] == "/analyst/202609"
    page = client.get("/analyst/202609")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"


def test_wrong_password_is_refused_with_the_form_again(client: FlaskClient) -> None:
    r = sign_in(client, ANALYST[0], "not-the-password")
    html = r.get_data(as_text=True)
    assert r.status_code == 401 and "账户名或密码错误" in html and 'value="ana"' in html
    assert client.get("/analyst/202610").status_code == 302


def test_no_open_redirect_after_sign_in(client: FlaskClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = sign_in(client, *ANALYST, next_url=target)
        assert r.headers["Location"] == "/analyst/", target


def test_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    r = client.post("/login", data={"username": ANALYST[0], "password": ANALYST[1]})
    assert r.status_code == 400 and "csrf_failed" in r.get_data(as_text=True)
    sign_in(client, *ANALYST)
    r = client.post("/logout", data={"csrf_token": "forged"})
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert client.get("/analyst/202610").status_code == 200  # still signed in
    token = csrf_of(client.get("/analyst/202610").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).headers["Location"] == "/login"
    assert client.get("/analyst/202610").status_code == 302


def test_province_accounts_get_a_403_page(client: FlaskClient) -> None:
    sign_in(client, *PROVINCE)
    for url in ("/analyst/202610", "/analyst/202610/download/rollup.json"):
        r = client.get(url)
        assert r.status_code == 403 and r.mimetype == "text/html", url
        assert "无权" in r.get_data(as_text=True) or "仅限" in r.get_data(as_text=True)


def test_errors_are_html_pages_not_json(client: FlaskClient) -> None:
    sign_in(client, *ANALYST)
    for url, status in (("/analyst/209901", 404), ("/analyst/202610/nothing/here", 404),
                        ("/analyst/202610/download/secrets.csv", 404), ("/analyst/202610/download/by_level", 404)):
        r = client.get(url)
        assert (r.status_code, r.mimetype) == (status, "text/html"), url
        assert "Traceback" not in r.get_data(as_text=True)
    assert client.get("/api/v1/cycles").mimetype == "application/json"  # the API keeps its JSON errors


def test_downloads_are_the_api_files(client: FlaskClient) -> None:
    from exchange_server.consolidation.exports import CSV_BREAKDOWNS
    from exchange_server.pages.services import CSV_TABLES

    assert list(CSV_TABLES) == list(CSV_BREAKDOWNS)  # the page offers exactly the API's CSV tables
    sign_in(client, *ANALYST)
    r = client.get("/analyst/202610/download/rollup.json")
    assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment")
    assert r.json is not None and r.json["cycle"] == "202610"
    r = client.get("/analyst/202610/download/by_province.csv")
    assert r.status_code == 200 and r.data.startswith(b"\xef\xbb\xbf")
    assert "kam-rollup-202610-by_province.csv" in r.headers["Content-Disposition"]


def test_hq_roles_reach_the_dashboard_and_admins_the_console_from_every_page(page_runtime: Runtime,
                                                                             client: FlaskClient) -> None:
    """The header of every page links the dashboard for HQ's roles, and the console for admins only."""
    from sqlalchemy import select

    from exchange_server.accounts.models import Account
    from exchange_server.accounts.services import AccountService

    with page_runtime.db.session() as s:  # the pages' data is shared by the module: made once
        if s.scalar(select(Account).where(Account.name == "boss")) is None:
            AccountService(s, "test").create("boss", "admin", password="admin-pages-2026")
    sign_in(client, "boss", "admin-pages-2026")
    for page in ("/analyst/", "/admin/", "/admin/accounts", "/account/password"):
        html = client.get(page, follow_redirects=True).get_data(as_text=True)
        assert 'id="console-link"' in html and 'href="/admin/"' in html, page
        assert 'id="dashboard-link"' in html and 'href="/analyst/"' in html, page
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/analyst/", follow_redirects=True)
                                                       .get_data(as_text=True))})
    sign_in(client, *ANALYST)
    html = client.get("/analyst/", follow_redirects=True).get_data(as_text=True)
    assert 'id="dashboard-link"' in html and 'id="console-link"' not in html
    client.post("/logout", data={"csrf_token": csrf_of(html)})
    sign_in(client, *PROVINCE)
    html = client.get("/province/", follow_redirects=True).get_data(as_text=True)
    assert 'id="dashboard-link"' not in html and 'id="console-link"' not in html
