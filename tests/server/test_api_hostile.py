"""Hostile input on every route that takes a number or text, on SQLite and PostgreSQL: 404 or 422, never a 500.

Numbers past what the database holds (PostgreSQL's int4 ids, SQLite's 64 bits, Python's big
integers) and NUL characters (PostgreSQL text cannot hold them) are answered in the
documented shape — the JSON error for the API, the HTML error page for the pages; a
delivery the server could not validate shows a province a stable code, never the cause; and
a copied session cookie stops working once its session ends on the server.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from exchange_server.accounts.services import AccountService
from exchange_server.routing import MAX_ID, IdConverter
from exchange_server.runtime import Runtime
from exchange_server.submissions.models import Delivery
from schemas import Spec
from tests.server.conftest import Setup
from tests.server.test_api import assert_error_shape, bearer, uploaded
from tests.support.deliveries import valid_rows

#: Ids no row can have: past int4, at and past SQLite's 64 bits, far past both.
HUGE = (MAX_ID + 1, 2**63 - 1, 2**63, 10**20, 10**400)
DELIVERY_ROUTES = ("", "/report", "/receipt.xml", "/feedback.fbf.xml", "/feedback.fbr.xml")
SAMPLE = {"cycle_id": "202610", "action": "close", "version": "2026V01", "name": "x", "kind": "receipt",
          "rest": "x", "cycle": "202610"}


@dataclass(frozen=True)
class Signed:
    """A test client signed in to the pages, with its session's CSRF token and its account's name."""

    client: FlaskClient
    csrf: str
    name: str


def _pages_signed_in(app: Flask, runtime: Runtime, role: str, party: str | None = None) -> Signed:
    """A test client signed in through the form as a new account of ``role``."""
    name, password = f"{role}-{secrets.token_hex(3)}", "hostile-pages-2026"
    with runtime.db.session() as s:
        AccountService(s, "test").create(name, role, party, password=password)
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert token
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token.group(1)})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    with client.session_transaction() as sess:
        return Signed(client, str(sess["csrf"]), name)


def id_routes(app: Flask) -> list[tuple[str, str, list[str]]]:
    """Every (method, rule, id arguments) of a route that takes an id."""
    out = []
    for rule in app.url_map.iter_rules():
        ids = [arg for arg, conv in rule._converters.items() if isinstance(conv, IdConverter)]
        if ids:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((method, rule.rule, ids))
    return out


def _url(rule: str, value: int) -> str:
    return re.sub(r"<(?:id|int)(?:\([^)]*\))?:\w+>", str(value), re.sub(
        r"<(?:[^:>]*:)?(\w+)>", lambda m: SAMPLE.get(m.group(1), m.group(0)), rule))


def test_every_number_in_a_url_is_a_bounded_id(app: Flask) -> None:
    routes = id_routes(app)
    assert len(routes) >= 18  # the API's deliveries (5), the province pages (2), review (5), management (6)
    for rule in app.url_map.iter_rules():
        for arg, conv in rule._converters.items():
            if type(conv).__name__ in ("IntegerConverter", "NumberConverter"):
                pytest.fail(f"{rule.rule}: <{arg}> is an unbounded number")
    doc = app.test_client().get("/api/v1/openapi.json").json
    param = doc["paths"]["/api/v1/deliveries/{delivery_id}"]["parameters"][0]["schema"]
    assert (param["minimum"], param["maximum"]) == (1, MAX_ID)
    paging = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/deliveries"]["get"]["parameters"]}
    assert paging["page"]["maximum"] == MAX_ID and paging["per_page"]["maximum"] == 500
    body = doc["paths"]["/api/v1/deliveries"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] and schema["required"] == ["files"] and schema["properties"]["files"]["minItems"] == 1


def test_api_ids_past_the_database_are_404(client: FlaskClient, setup: Setup) -> None:
    tokens = (setup.province("42"), setup.role("ana", "analyst"), setup.role("adm", "admin"))
    for token in tokens:
        for value in (*HUGE, 0):
            for tail in DELIVERY_ROUTES:
                r = client.get(f"/api/v1/deliveries/{value}{tail}", headers=bearer(token))
                assert r.status_code == 404 and r.is_json, (value, tail, r.status_code)
                assert_error_shape(r.json, 404, "not_found")
        # The largest id the database holds is a well-formed question: no such delivery.
        assert_error_shape(client.get(f"/api/v1/deliveries/{MAX_ID}", headers=bearer(token)).json, 404,
                           "delivery_not_found")


def test_api_paging_out_of_range_is_422(client: FlaskClient, setup: Setup) -> None:
    token = setup.province("42")
    for arg in ("page", "per_page"):
        for value in (*HUGE, 0, -1, "1e3", "²"):
            r = client.get(f"/api/v1/deliveries?{arg}={value}", headers=bearer(token))
            assert_error_shape(r.json, 422, "invalid_arguments")
            assert arg in str(r.json["errors"])
    r = client.get(f"/api/v1/deliveries?page={MAX_ID}&per_page=500", headers=bearer(token))
    assert r.status_code == 200 and r.json["items"] == [] and r.json["page"] == MAX_ID
    assert_error_shape(client.get("/api/v1/deliveries?cycle=20261", headers=bearer(token)).json, 422,
                       "invalid_arguments")
    assert client.get("/api/v1/deliveries?cycle=2026Q4", headers=bearer(token)).status_code == 200


def test_nul_characters_are_refused_not_a_500(client: FlaskClient, setup: Setup) -> None:
    province, analyst = setup.province("42"), setup.role("ana", "analyst")
    for url, token in (("/api/v1/cycles/2026%00", province), ("/api/v1/list/files/D%00.chk", province),
                       ("/api/v1/reports/%00", analyst), ("/api/v1/reports/202610/by_province%00.csv", analyst),
                       ("/api/v1/reports/202610/trace/%00", analyst), ("/api/v1/deliveries/1%00", province)):
        assert_error_shape(client.get(url, headers=bearer(token)).json, 404, "not_found")
    for query in ("cycle=%00", "status=%00", "mode=P%00", "page=1%00", "x%00=1", "cycle=2026&junk=%00"):
        r = client.get(f"/api/v1/deliveries?{query}", headers=bearer(province))
        assert_error_shape(r.json, 422, "invalid_arguments")
    assert_error_shape(client.get("/api/v1/cycles?state=%00", headers=bearer(province)).json, 422,
                       "invalid_arguments")


def test_pages_answer_ids_past_the_database_with_the_html_404(app: Flask, runtime: Runtime) -> None:
    pages = {"/province": _pages_signed_in(app, runtime, "province", "42"),
             "/admin": _pages_signed_in(app, runtime, "admin")}
    checked = 0
    for method, rule, _ids in id_routes(app):
        signed = next((c for prefix, c in pages.items() if rule.startswith(prefix + "/")), None)
        if signed is None:
            continue  # the API: tested above
        for value in (MAX_ID + 1, 2**63, 10**20):
            r = signed.client.open(_url(rule, value), method=method, data={"csrf_token": signed.csrf})
            assert (r.status_code, r.mimetype) == (404, "text/html"), (method, rule, value, r.status_code)
            assert "Traceback" not in r.get_data(as_text=True)
            checked += 1
    assert checked >= 3 * 12


def test_page_query_numbers_out_of_range_are_the_html_422(app: Flask, runtime: Runtime, setup: Setup,
                                                        tmp_path: Path, spec: Spec) -> None:
    setup.cycle("202610")
    token = setup.province("42", "sender42")
    delivery_id = uploaded(app.test_client(), token, valid_rows(spec).write(tmp_path / "d"))
    setup.drain()
    province = _pages_signed_in(app, runtime, "province", "42").client
    signed_admin = _pages_signed_in(app, runtime, "admin")
    admin = signed_admin.client
    for client, url in ((province, "/province/"), (province, f"/province/deliveries/{delivery_id}"),
                        (admin, f"/admin/review/{delivery_id}")):
        for arg in ("page", "finding") if "deliveries/" in url or "review/" in url else ("page",):
            for value in (2**63, 10**20, -1, "x", "²", "%00"):
                r = client.get(f"{url}?{arg}={value}")
                assert (r.status_code, r.mimetype) == (422, "text/html"), (url, arg, value, r.status_code)
                assert "invalid_arguments" in r.get_data(as_text=True)
        assert client.get(f"{url}?page={MAX_ID}").status_code == 200  # past the last page: the last page
    assert province.get(f"/province/deliveries/{delivery_id}?finding={MAX_ID}").status_code == 200
    for url in ("/admin/review/?page=99999999999999999999", "/admin/review/?cycle=%00",
                "/admin/audit?actor=%00", "/admin/audit?page=99999999999999999999"):
        r = admin.get(url)
        assert r.status_code in (200, 400, 422) and r.mimetype == "text/html", (url, r.status_code)
    token = signed_admin.csrf
    r = admin.post("/admin/accounts/x%00/password", data={"csrf_token": token, "password": "x"})
    assert (r.status_code, r.mimetype) == (404, "text/html")
    r = admin.post("/admin/accounts", data={"csrf_token": token, "name": "nul\x00", "role": "analyst",
                                            "password": "long-enough-1"})
    assert (r.status_code, r.mimetype) == (400, "text/html") and "bad_form" in r.get_data(as_text=True)


def _fail(runtime: Runtime, delivery_id: int) -> str:
    """Mark a delivery failed as a crashed worker's last attempt would, with an internal error's text."""
    cause = "KeyError: 'VIP_SUMMARY' in /srv/kam/exchange_server/ingestion/worker.py line 142"
    with runtime.db.session() as s:
        d = s.get(Delivery, delivery_id)
        assert d is not None
        d.status, d.failure = "failed", cause
    return cause


def test_a_failed_delivery_shows_a_province_a_stable_code_never_the_cause(
        app: Flask, client: FlaskClient, runtime: Runtime, setup: Setup, tmp_path: Path, spec: Spec) -> None:
    setup.cycle("202610")
    province, admin = setup.province("42", "sender42"), setup.role("adm", "admin")
    delivery_id = uploaded(client, province, valid_rows(spec).write(tmp_path / "d"))
    cause = _fail(runtime, delivery_id)
    seen: list[dict[str, Any]] = [client.get(f"/api/v1/deliveries/{delivery_id}", headers=bearer(province)).json,
                                  client.get("/api/v1/deliveries?status=failed", headers=bearer(province)).json[
                                      "items"][0]]
    for body in seen:
        assert body["status"] == "failed" and body["failure_code"] == "validation_failed"
        assert body["failure"] and body["failure_zh"] and body["failure_detail"] is None
        assert "KeyError" not in str(body) and "worker.py" not in str(body)
    hq = client.get(f"/api/v1/deliveries/{delivery_id}", headers=bearer(admin)).json
    assert hq["failure_code"] == "validation_failed" and hq["failure_detail"] == cause

    page = _pages_signed_in(app, runtime, "province", "42").client.get(f"/province/deliveries/{delivery_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-code="validation_failed"' in html
    assert "KeyError" not in html and "worker.py" not in html
    review = _pages_signed_in(app, runtime, "admin").client.get(f"/admin/review/{delivery_id}").get_data(as_text=True)
    assert "KeyError: &#39;VIP_SUMMARY&#39;" in review  # admins may read what the server recorded


def test_a_copied_session_cookie_ends_on_the_server(app: Flask, runtime: Runtime) -> None:
    """Sign-out and a password change move the account's session epoch on, in SQL, on both databases."""
    for end in ("logout", "password"):
        signed = _pages_signed_in(app, runtime, "province", "42") if end == "logout" else \
            _pages_signed_in(app, runtime, "admin")
        user, copy = signed.client, app.test_client()
        cookie = user.get_cookie("kam_session")
        assert cookie is not None
        copy.set_cookie("kam_session", cookie.value)
        home = "/province/" if end == "logout" else "/admin/review/"
        assert copy.get(home).status_code == 200
        if end == "logout":
            user.post("/logout", data={"csrf_token": signed.csrf})
        else:
            with runtime.db.session() as s:
                svc = AccountService(s, "test")
                svc.set_password(svc.get(signed.name), "a-new-password-2026")
        assert copy.get(home).headers["Location"].startswith("/login"), end
        assert user.get(home).headers["Location"].startswith("/login"), end
