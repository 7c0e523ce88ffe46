"""Sessions end on the server: a copied session cookie stops working after sign-out, a password change, disabling.

Each test signs an account in, copies its session cookie into a second client (what someone
who lifted it from a shared machine or a log would hold), ends the session the way a person
or an admin does, and checks that the copy is sent to the sign-in page. In process with
Werkzeug's test client, and in headless Chromium against the real server.
"""
from __future__ import annotations

import re
import secrets
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.accounts.services import AccountService
from exchange_server.admin.models import LoginAttempt
from exchange_server.runtime import Runtime
from tests.support.runtimes import runtime_with_open_cycles

COOKIE = "kam_session"


@pytest.fixture(scope="module")
def page_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A small runtime of this module's own (the pages' conftest builds sample data this test does not need)."""
    rt = runtime_with_open_cycles(tmp_path_factory.mktemp("sessions"), ["202610"])
    yield rt
    rt.db.dispose()


def make(rt: Runtime, role: str = "analyst", party: str | None = None) -> tuple[str, str]:
    """A new account with a password: (name, password)."""
    name, password = f"{role}-{secrets.token_hex(3)}", f"pw-{secrets.token_urlsafe(9)}"
    with rt.db.session() as s:
        AccountService(s, "test").create(name, role, party, password=password)
    return name, password


def csrf(client: FlaskClient, path: str = "/login") -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert m, f"no CSRF field on {path}"
    return m.group(1)


def sign_in(app: Flask, name: str, password: str) -> FlaskClient:
    client = app.test_client()
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": csrf(client)})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return client


def copy_of(client: FlaskClient, app: Flask) -> FlaskClient:
    """Another client holding the same session cookie."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    other = app.test_client()
    other.set_cookie(COOKIE, cookie.value)
    return other


def signed_in(client: FlaskClient, path: str = "/analyst/") -> bool:
    r = client.get(path)
    if r.status_code == 302 and r.headers["Location"].startswith("/login"):
        return False
    assert r.status_code in (200, 302), (path, r.status_code)
    return True


def test_a_copied_cookie_fails_after_sign_out(app: Flask, page_runtime: Runtime) -> None:
    user = sign_in(app, *make(page_runtime))
    thief = copy_of(user, app)
    assert signed_in(thief)
    assert user.post("/logout", data={"csrf_token": csrf(user, "/account/password")}).headers["Location"] == "/login"
    assert not signed_in(user) and not signed_in(thief)
    left = thief.get_cookie(COOKIE)  # the ended session was cleared in the copy's cookie too
    assert left is None or "account_id" not in app.session_interface.get_signing_serializer(app).loads(left.value)


def test_sign_out_ends_every_session_of_the_account_and_no_other(app: Flask, page_runtime: Runtime) -> None:
    name, password = make(page_runtime)
    office, laptop = sign_in(app, name, password), sign_in(app, name, password)
    neighbour = sign_in(app, *make(page_runtime))
    office.post("/logout", data={"csrf_token": csrf(office, "/account/password")})
    assert not signed_in(laptop) and signed_in(neighbour)
    again = sign_in(app, name, password)  # signing in again opens a new session as usual
    assert signed_in(again)


def test_a_copied_cookie_fails_after_the_user_changes_the_password(app: Flask, page_runtime: Runtime) -> None:
    name, password = make(page_runtime)
    user = sign_in(app, name, password)
    thief = copy_of(user, app)
    r = user.post("/account/password", data={"csrf_token": csrf(user, "/account/password"),
                                             "current_password": password, "new_password": "a-new-password-1",
                                             "confirm_password": "a-new-password-1"})
    assert r.status_code == 303
    assert "password-changed" in user.get(r.headers["Location"]).get_data(as_text=True)
    assert signed_in(user) and not signed_in(thief)  # the one who changed it stays signed in
    sign_in(app, name, "a-new-password-1")
    old = app.test_client()
    assert old.post("/login", data={"username": name, "password": password,
                                    "csrf_token": csrf(old)}).status_code == 401


def test_changing_the_password_needs_the_current_one(app: Flask, page_runtime: Runtime) -> None:
    name, password = make(page_runtime)
    user = sign_in(app, name, password)
    token = csrf(user, "/account/password")

    def change(current: str, new: str, confirm: str | None = None) -> tuple[int, str]:
        r = user.post("/account/password", data={"csrf_token": token, "current_password": current,
                                                 "new_password": new, "confirm_password": confirm or new})
        return r.status_code, r.get_data(as_text=True)

    status, html = change("wrong-password", "a-new-password-1")
    assert status == 401 and 'data-code="bad_credentials"' in html
    assert change(password, "a-new-password-1", "another-one-22")[0] == 400
    status, html = change(password, "short")
    assert status == 400 and 'data-code="weak_password"' in html
    assert signed_in(user)  # refused changes end nothing
    with page_runtime.db.session() as s:  # a wrong current password counts towards the sign-in lockout
        assert s.scalars(select(LoginAttempt).where(LoginAttempt.account_name == name,
                                                    LoginAttempt.ok.is_(False))).all()
    assert app.test_client().get("/account/password").headers["Location"].startswith("/login")


def test_a_copied_cookie_fails_after_an_admin_sets_a_password_or_disables_the_account(
        app: Flask, page_runtime: Runtime) -> None:
    admin = sign_in(app, *make(page_runtime, "admin"))
    token = csrf(admin, "/admin/accounts")
    for action, data in (("password", {"password": "set-by-the-admin-1"}), ("active", {"active": "0"}),
                         ("role", {"role": "admin", "party": ""})):
        name, password = make(page_runtime)
        user = sign_in(app, name, password)
        thief = copy_of(user, app)
        r = admin.post(f"/admin/accounts/{name}/{action}", data={"csrf_token": token, **data})
        assert r.status_code == 303, (action, r.status_code)
        assert not signed_in(user) and not signed_in(thief), action
    # Enabling the account again does not bring its old sessions back.
    assert admin.post(f"/admin/accounts/{name}/active", data={"csrf_token": token, "active": "1"}).status_code == 303
    assert not signed_in(thief)



def test_an_admin_setting_their_own_password_stays_signed_in(app: Flask, page_runtime: Runtime) -> None:
    name, password = make(page_runtime, "admin")
    admin = sign_in(app, name, password)
    thief = copy_of(admin, app)
    r = admin.post(f"/admin/accounts/{name}/password", data={"csrf_token": csrf(admin, "/admin/accounts"),
                                                             "password": "my-own-new-password"})
    assert r.status_code == 303
    assert signed_in(admin, "/admin/accounts") and not signed_in(thief, "/admin/accounts")


def test_the_command_line_password_change_ends_sessions_too(app: Flask, page_runtime: Runtime) -> None:
    name, password = make(page_runtime, "province", "42")
    user = sign_in(app, name, password)
    assert signed_in(user, "/province/")
    with page_runtime.db.session() as s:  # what `exchange-server account password` does
        svc = AccountService(s, "cli")
        svc.set_password(svc.get(name), "set-on-the-command-line")
    assert not signed_in(user, "/province/")


def test_a_session_without_an_epoch_is_signed_out(app: Flask, page_runtime: Runtime) -> None:
    """A cookie signed before sessions carried the epoch (or by a bug) is not trusted."""
    name, password = make(page_runtime)
    user = sign_in(app, name, password)
    with user.session_transaction() as sess:
        sess.pop("epoch")
    assert not signed_in(user)
    with page_runtime.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == name))
        assert account is not None and account.session_epoch == 0  # nothing moved it: the session was refused


# -- in the browser ---------------------------------------------------------------------------


def browser_sign_in(page: Any, base: str, name: str, password: str) -> None:
    page.goto(base + "/analyst/")
    assert "/login" in page.url
    page.fill("#username", name)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button.primary")
    assert "/login" not in page.url


def copied_page(browser: Any, context: Any) -> Any:
    """A page in another browser profile holding a copy of ``context``'s cookies."""
    other = browser.new_context(locale="zh-CN")
    other.add_cookies(context.cookies())
    return other.new_page()


@pytest.mark.slow
def test_sign_out_in_the_browser_ends_the_copied_session(browser: Any, context: Any, page: Any, live_url: str,
                                                         page_runtime: Runtime) -> None:
    browser_sign_in(page, live_url, *make(page_runtime))
    thief = copied_page(browser, context)
    try:
        thief.goto(live_url + "/analyst/")
        assert "/login" not in thief.url
        with page.expect_navigation():
            page.click("header .who button")  # 退出 / Sign out
        assert page.url.endswith("/login")
        thief.goto(live_url + "/analyst/")
        assert "/login" in thief.url and thief.locator("#username").count() == 1
    finally:
        thief.context.close()


@pytest.mark.slow
def test_a_password_change_in_the_browser_signs_out_the_other_sessions(browser: Any, context: Any, page: Any,
                                                                       live_url: str, page_runtime: Runtime) -> None:
    name, password = make(page_runtime)
    browser_sign_in(page, live_url, name, password)
    thief = copied_page(browser, context)
    try:
        page.click("#change-password")
        page.fill("#current_password", password)
        page.fill("#new_password", "changed-in-the-browser")
        page.fill("#confirm_password", "changed-in-the-browser")
        with page.expect_navigation():
            page.click("button.primary")
        assert page.locator("#password-changed").count() == 1
        page.goto(live_url + "/analyst/")
        assert "/login" not in page.url  # this session carries on
        thief.goto(live_url + "/analyst/")
        assert "/login" in thief.url
    finally:
        thief.context.close()
