"""Wording on the admin pages: local-network accounts are not 省公司, parties by name, the exception form
proposes the open cycle, dates do not wrap."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from exchange_server.accounts.services import AccountService
from exchange_server.cycles.services import CycleService
from exchange_server.runtime import Runtime
from tests.pages.test_language import assert_chinese, assert_english, sign_in

ADMIN = ("wording-admin", "wording-pages-2026")


@pytest.fixture(scope="module")
def admin(page_runtime: Runtime) -> tuple[str, str]:
    """An admin, a local network's account (Wuhan, 027) and a planned cycle at the head of the calendar."""
    with page_runtime.db.session() as s:
        accounts = AccountService(s, "test")
        accounts.create(ADMIN[0], "admin", password=ADMIN[1])
        accounts.create("latn027", "province", "027", display_name="武汉分公司")
        CycleService(s, page_runtime.spec, "test").create("202612")  # planned: newest, listed first
    return ADMIN


def row(html: str, name: str) -> str:
    m = re.search(rf'<tr data-account="{name}".*?</tr>', html, re.S)
    assert m, name
    return m.group(0)


def test_local_network_accounts_are_labelled_as_such(app: Flask, admin: tuple[str, str]) -> None:
    client = app.test_client()
    sign_in(client, *admin)
    html = client.get("/admin/accounts").get_data(as_text=True)
    wuhan, hubei = row(html, "latn027"), row(html, "prov42")
    assert 'data-kind="local_network">本地网<' in wuhan and "省公司" not in wuhan
    assert "027 武汉本地网" in wuhan
    assert 'data-kind="province">省公司<' in hubei and "42 湖北省" in hubei
    assert '<td class="date">' in hubei
    assert_chinese("accounts", html)
    detail = client.get("/admin/accounts/latn027").get_data(as_text=True)
    assert re.search(r'id="account-kind" data-kind="local_network">本地网<', detail)
    assert "027 武汉本地网" in detail
    client.set_cookie("kam_lang", "en")
    html = client.get("/admin/accounts").get_data(as_text=True)
    assert ">Local network<" in row(html, "latn027") and "027 Wuhan" in row(html, "latn027")
    assert ">Province<" in row(html, "prov42") and "42 Hubei" in row(html, "prov42")
    assert_english("accounts", html)
    detail = client.get("/admin/accounts/latn027").get_data(as_text=True)
    assert 'data-kind="local_network">Local network<' in detail
    assert_english("account", detail)


def test_the_exception_form_proposes_the_open_cycle(app: Flask, admin: tuple[str, str]) -> None:
    client = app.test_client()
    sign_in(client, *admin)
    html = client.get("/admin/cycles").get_data(as_text=True)
    calendar = re.findall(r'<tr data-cycle="(\d+)" data-state="(\w+)">', html)
    assert calendar[0] == ("202612", "planned")  # the first in the list is not the open one
    select = re.search(r'<select name="cycle_id" id="x-cycle" required>.*?</select>', html, re.S)
    assert select
    assert re.findall(r'<option value="(\d+)" selected>', select.group(0)) == ["202610"]
    assert '<td class="date">' in html
    client.set_cookie("kam_lang", "en")
    html = client.get("/admin/cycles").get_data(as_text=True)
    assert re.search(r'<option value="42"[^>]*>42 Hubei</option>', html)
    assert_english("cycles", html)


def test_dates_do_not_wrap(client: FlaskClient) -> None:
    css = client.get("/static/pages/pages.css").get_data(as_text=True)
    rule = re.search(r"([^}]*td\.date[^{]*)\{([^}]*)\}", css)
    assert rule and "white-space: nowrap" in rule.group(2)
