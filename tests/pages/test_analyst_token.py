"""An analyst makes and rotates their own API token on /account/token; the reports API takes only the newest."""
from __future__ import annotations

import hashlib
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.models import Account, ApiToken
from exchange_server.audit.models import AuditEvent
from exchange_server.runtime import Runtime
from tests.pages.conftest import ANALYST, PROVINCE
from tests.pages.test_language import assert_chinese, assert_english, sign_in


def secret_of(html: str) -> str:
    m = re.search(r'<pre class="secret" id="secret" translate="no">(kam_[^<]+)</pre>', html)
    assert m, "no new token on the page"
    return m.group(1)


def report(app: Flask, token: str) -> int:
    """The status of the reports API for a bearer token."""
    r = app.test_client().get("/api/v1/reports/202610/by_province.csv", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


def test_an_analyst_creates_and_rotates_their_own_token(app: Flask, client: FlaskClient,
                                                        page_runtime: Runtime) -> None:
    csrf = sign_in(client, *ANALYST)
    page = client.get("/account/token")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="no-token"' in html and 'data-action="create"' in html
    assert_chinese("token page", html)
    assert 'id="token-link"' in client.get("/analyst/202610").get_data(as_text=True)  # reachable from the header

    made = client.post("/account/token", data={"csrf_token": csrf})
    html = made.get_data(as_text=True)
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    first = secret_of(html)
    assert report(app, first) == 200
    # Shown once: the next visit lists the token by its prefix only.
    again = client.get("/account/token").get_data(as_text=True)
    assert first not in again and first[:12] in again and 'data-action="rotate"' in again
    with page_runtime.db.session() as s:  # only its hash is kept
        account = s.scalar(select(Account).where(Account.name == ANALYST[0]))
        assert account is not None
        stored = [t for t in account.tokens if t.revoked_at is None]
        assert [t.token_hash for t in stored] == [hashlib.sha256(first.encode()).hexdigest()]
        assert all(first not in (t.prefix, t.token_hash, t.label) for t in account.tokens)

    client.set_cookie("kam_lang", "en")
    rotated = client.post("/account/token", data={"csrf_token": csrf})
    html = rotated.get_data(as_text=True)
    assert rotated.status_code == 201
    assert_english("rotated token", html)
    second = secret_of(html)
    assert second != first and "The old token no longer works" in html and first[:12] in html
    assert report(app, second) == 200
    old = app.test_client().get("/api/v1/reports/202610", headers={"Authorization": f"Bearer {first}"})
    assert old.status_code == 401 and old.get_json()["code"] == "bad_token"

    with page_runtime.db.session() as s:  # both steps audited under the analyst's own name
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.target == f"account:{ANALYST[0]}")
                                .order_by(AuditEvent.id)))
        assert [e.action for e in events][-3:] == ["token.create", "token.create", "token.revoke"]
        assert {e.actor for e in events[-3:]} == {ANALYST[0]}
        live = s.scalars(select(ApiToken).join(Account).where(Account.name == ANALYST[0],
                                                              ApiToken.revoked_at.is_(None))).all()
        assert [t.token_hash for t in live] == [hashlib.sha256(second.encode()).hexdigest()]


def test_the_token_page_needs_a_signed_in_hq_account_and_its_csrf_token(app: Flask, client: FlaskClient) -> None:
    r = client.get("/account/token")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    sign_in(client, *PROVINCE)  # a province's tokens are its agent's: an admin hands them out
    r = client.get("/account/token")
    assert r.status_code == 403 and 'data-code="wrong_role"' in r.get_data(as_text=True)
    other = app.test_client()
    sign_in(other, *ANALYST)
    forged = other.post("/account/token", data={})
    assert forged.status_code == 400 and 'data-code="csrf_failed"' in forged.get_data(as_text=True)
