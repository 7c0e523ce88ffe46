"""The audit log page: search, paging, newest first; append-only (no route changes it)."""
from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from exchange_server.audit.services import record
from exchange_server.runtime import Runtime
from tests.admin.conftest import Accounts, sign_in


def test_search_and_paging(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    sign_in(client, accounts.admin())
    with admin_runtime.db.session() as s:
        for n in range(60):
            record(s, "auditor-x", "probe.step", f"probe:{n}", n=n, note="北京 Beijing" if n == 7 else "")
    page = client.get("/admin/audit?actor=auditor-x").get_data(as_text=True)
    assert 'data-total="60"' in page and 'data-page="1" data-pages="2"' in page and "第 1 / 2 页" in page
    assert page.index('probe:59') < page.index('probe:58')  # newest first
    assert "probe:9<" not in page.replace("probe:59", "")  # page 1 holds the 50 newest
    second = client.get("/admin/audit?actor=auditor-x&page=2").get_data(as_text=True)
    assert "probe:0<" in second and 'data-page="2" data-pages="2"' in second and "第 2 / 2 页" in second
    client.set_cookie("kam_lang", "en")
    english = client.get("/admin/audit?actor=auditor-x&page=2").get_data(as_text=True)
    assert "page 2 of 2" in english and "60 events" in english and "probe:0<" in english
    client.delete_cookie("kam_lang")
    assert 'data-total="1"' in client.get("/admin/audit?actor=auditor-x&q=北京").get_data(as_text=True)
    assert 'data-total="1"' in client.get("/admin/audit?actor=auditor-x&q=Beijing").get_data(as_text=True)
    assert 'data-total="60"' in client.get("/admin/audit?action=probe.").get_data(as_text=True)
    assert 'data-total="1"' in client.get("/admin/audit?target=probe:42").get_data(as_text=True)
    assert 'data-total="0"' in client.get("/admin/audit?actor=auditor-x&until=2000-01-01").get_data(as_text=True)
    assert 'data-total="60"' in client.get("/admin/audit?actor=auditor-x&since=2000-01-01").get_data(as_text=True)
    assert client.get("/admin/audit?since=yesterday").status_code == 400


def test_the_log_is_append_only(client: FlaskClient, accounts: Accounts, app: Flask) -> None:
    csrf = sign_in(client, accounts.admin())
    for url in ("/admin/audit", "/admin/audit/1"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = client.open(url, method=method, data={"csrf_token": csrf})
            assert r.status_code in (404, 405), (method, url, r.status_code)
    assert client.open("/admin/audit", method="DELETE").status_code == 405
    # No route anywhere in the app accepts a changing method under /admin/audit or for audit events.
    for rule in app.url_map.iter_rules():
        if "audit" in rule.rule:
            assert not (rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}, rule.rule
