"""Security of the admin pages: admin role only, CSRF on every form, provinces see only their own data, lockout.

"A province sees only its own deliveries" is checked here on ``GET /api/v1/deliveries`` and on
the admin pages refusing province users; the province pages themselves (``/province/``) are
tested in ``tests/pages/test_province_pages.py``.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.runtime import Runtime
from province_agent.transport import HttpTransport
from province_agent.transport.http import HttpError
from schemas import Spec
from tests.admin.conftest import Accounts, csrf_of, sign_in, upload
from tests.support.deliveries import valid_rows

SAMPLE_ARGS = {"cycle_id": "202610", "action": "close", "exception_id": 1, "version": "2026V01",
               "name": "Domain_level_id", "draft_id": 1, "token_id": 1, "delivery_id": 1}


def admin_urls(app: Flask) -> list[tuple[str, str]]:
    """Every (method, URL) of the admin blueprint, with sample values for its arguments."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = re.sub(rf"<[^>]*\b{arg}>", str(SAMPLE_ARGS.get(arg, "x")), url)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, url))
    return out


def test_every_admin_page_refuses_analysts_and_provinces(client: FlaskClient, app: Flask, accounts: Accounts) -> None:
    urls = admin_urls(app)
    assert len([u for u in urls if u[0] == "POST"]) >= 15 and ("GET", "/admin/audit") in urls
    for login in (accounts.analyst(), accounts.province("42")):
        c = app.test_client()
        csrf = sign_in(c, login)
        for method, url in urls:
            r = c.open(url, method=method, data={"csrf_token": csrf})
            assert r.status_code == 403 and r.mimetype == "text/html", (login.role, method, url, r.status_code)
    anonymous = app.test_client()
    for method, url in urls:
        if method == "GET":
            assert anonymous.get(url).headers["Location"].startswith("/login"), url


def test_forms_without_a_csrf_token_are_refused(client: FlaskClient, app: Flask, accounts: Accounts,
                                                admin_runtime: Runtime) -> None:
    sign_in(client, accounts.admin())
    for method, url in admin_urls(app):
        if method != "POST":
            continue
        for data in ({}, {"csrf_token": "forged"}):
            r = client.post(url, data=data)
            assert r.status_code == 400 and "csrf_failed" in r.get_data(as_text=True), (url, data)
    # Nothing changed: the cycle used in the sample URLs is still open.
    with admin_runtime.db.session() as s:
        from exchange_server.cycles.models import ReportingCycle

        cycle = s.get(ReportingCycle, "202610")
        assert cycle is not None and cycle.state == "open"


def test_a_province_sees_only_its_own_deliveries(accounts: Accounts, admin_url: str, spec: Spec,
                                                 tmp_path: Path) -> None:
    hubei, hunan = accounts.province("42"), accounts.province("43")
    mine = upload(admin_url, hubei, valid_rows(spec, party="42", cycle="202611"), tmp_path / "42")
    theirs = upload(admin_url, hunan, valid_rows(spec, party="43", cycle="202611"), tmp_path / "43")
    for login, own, other in ((hubei, mine, theirs), (hunan, theirs, mine)):
        http = HttpTransport(admin_url, login.token or "")
        try:
            listed = http.get_json("/api/v1/deliveries", {"per_page": 100})
            items = listed["items"] if isinstance(listed, dict) else listed
            ids = {d["delivery_id"] for d in items}
            assert own["delivery_id"] in ids and other["delivery_id"] not in ids
            assert {d["party"] for d in items} == {login.party}
            with pytest.raises(HttpError) as refused:
                http.get_json(f"/api/v1/deliveries/{other['delivery_id']}")
            assert "404" in str(refused.value) or "delivery_not_found" in str(refused.value)
        finally:
            http.close()


def test_lockout_after_five_wrong_passwords(app: Flask, accounts: Accounts, admin_runtime: Runtime) -> None:
    login = accounts.analyst()
    client = app.test_client()

    def attempt(password: str) -> tuple[int, str]:
        r = client.post("/login", data={"username": login.name, "password": password, "csrf_token": csrf_of(client)})
        return r.status_code, r.get_data(as_text=True)

    for _ in range(4):
        assert attempt("wrong")[0] == 401
    # A success clears the failures.
    assert attempt(login.password)[0] == 302
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    for _ in range(4):
        assert attempt("wrong")[0] == 401
    status, html = attempt("wrong")  # the fifth within 15 minutes
    assert status == 429 and "account_locked" in html and "已被锁定" in html and "locked" in html
    status, html = attempt(login.password)  # even the right password, for 15 minutes
    assert status == 429 and "account_locked" in html
    with admin_runtime.db.session() as s:
        lock = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.lockout",
                                                  AuditEvent.target == f"account:{login.name}")).all()
    assert len(lock) == 1
    until = dt.datetime.fromisoformat(lock[0].detail["until"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=14) < until - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(minutes=15)
    # Other accounts are unaffected.
    other = accounts.analyst()
    r = app.test_client()
    sign_in(r, other)


def test_lockout_ends_after_fifteen_minutes(admin_runtime: Runtime) -> None:
    from exchange_server.admin.services import LoginGuard

    start = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
    with admin_runtime.db.session() as s:
        guard = LoginGuard(s)
        for n in range(4):
            assert guard.failed("clock-test", now=start + dt.timedelta(minutes=3 * n)) is None
        until = guard.failed("clock-test", now=start + dt.timedelta(minutes=14))
        assert until == start + dt.timedelta(minutes=29)
        assert guard.locked_until("clock-test", now=start + dt.timedelta(minutes=28)) == until
        assert guard.locked_until("clock-test", now=start + dt.timedelta(minutes=29, seconds=1)) is None
        # Five failures spread over more than 15 minutes do not lock.
        for n in range(5):
            assert guard.failed("slow-test", now=start + dt.timedelta(minutes=4 * n)) is None
