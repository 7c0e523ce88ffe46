"""Admin page fixtures: a live server with ingestion, account factories, sign-in helpers, headless Chromium.

Shared by every admin page test (review queue and management pages). The runtime is one
SQLite database per module with cycles 202609–202611 open; tests make their own accounts
(``accounts.make(...)``) and deliveries (``upload(...)``), so they stay independent.
Browser fixtures (``browser``, ``context``, ``page``) are the session-wide ones of
``tests/support/browser.py``, registered in ``tests/conftest.py``.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from exchange_server.accounts.services import AccountService
from exchange_server.app import create_app
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from province_agent.transport import HttpTransport
from tests.support.runtimes import runtime_with_open_cycles
from tests.support.deliveries import DeliveryRows

CYCLES = ("202609", "202610", "202611")
FINAL = ("accepted", "accepted_with_warnings", "rejected", "failed")


@dataclass(frozen=True)
class Login:
    """An account made for a test: its name, password, role, party and (for provinces) API token."""

    name: str
    password: str
    role: str
    party: str | None = None
    token: str | None = None


class Accounts:
    """Makes accounts with passwords (and tokens for provinces) in the admin test database."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def make(self, role: str, party: str | None = None, name: str | None = None) -> Login:
        """A new active account of ``role`` (``admin``, ``analyst``, ``province`` with ``party``)."""
        name = name or f"{role}-{party or ''}-{secrets.token_hex(3)}"
        password = f"pw-{secrets.token_urlsafe(9)}"
        with self.rt.db.session() as s:
            svc = AccountService(s, "test")
            account = svc.create(name, role, party, display_name=f"测试 {role}", password=password)
            token = svc.create_token(account, "test")[0] if role == "province" else None
        return Login(name, password, role, party, token)

    def admin(self) -> Login:
        """A new admin account."""
        return self.make("admin")

    def analyst(self) -> Login:
        """A new analyst account."""
        return self.make("analyst")

    def province(self, party: str) -> Login:
        """A new province (or local network) account with an API token."""
        return self.make("province", party)


@pytest.fixture(scope="module")
def admin_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """SQLite with the org tree and three open cycles; outboxes under the data dir."""
    rt = runtime_with_open_cycles(tmp_path_factory.mktemp("admin"), CYCLES)
    yield rt
    rt.db.dispose()


@pytest.fixture(scope="module")
def admin_server(admin_runtime: Runtime) -> Iterator[Server]:
    """The real server (HTTP + one ingestion worker, no SFTP) on a free loopback port."""
    server = Server(admin_runtime, "127.0.0.1", 0, sftp_port=0).start(workers=1, sftp=False)
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def admin_url(admin_server: Server) -> str:
    """The live server's base URL."""
    return admin_server.url


@pytest.fixture(scope="module")
def accounts(admin_runtime: Runtime) -> Accounts:
    """The account factory."""
    return Accounts(admin_runtime)


@pytest.fixture
def app(admin_runtime: Runtime) -> Flask:
    """The WSGI app on the admin runtime (in-process tests)."""
    return create_app(runtime=admin_runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Werkzeug's test client."""
    return app.test_client()


def upload(base_url: str, login: Login, rows: DeliveryRows, folder: Path, resend: int = 0,
           timeout: float = 60, **write: Any) -> dict[str, Any]:
    """Write ``rows`` as a delivery, upload it as the province over HTTP, wait for and return the verdict JSON."""
    assert login.token, "uploads need a province account"
    rows.write(folder, resend=resend, **write)
    http = HttpTransport(base_url, login.token)
    try:
        _status, receipt = http.upload(sorted(p for p in folder.iterdir() if p.is_file()))
        deadline = time.monotonic() + timeout
        while True:
            d: dict[str, Any] = http.get_json(f"/api/v1/deliveries/{receipt['delivery_id']}")
            if d["status"] in FINAL:
                return d
            if time.monotonic() > deadline:
                raise AssertionError(f"delivery {receipt['delivery_id']} still {d['status']} after {timeout} s")
            time.sleep(0.05)
    finally:
        http.close()


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, path: str = "/login") -> str:
    """The session's CSRF token, read from a page's form."""
    html = client.get(path).get_data(as_text=True)
    m = _CSRF.search(html)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def sign_in(client: FlaskClient, login: Login) -> str:
    """Sign the test client in through the form; returns the session's CSRF token."""
    token = csrf_of(client)
    r = client.post("/login", data={"username": login.name, "password": login.password, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def sign_in_page(page: Any, base: str, login: Login, start: str = "/admin/review/") -> None:
    """In the browser: open ``start``, land on the sign-in form, sign in, arrive back at ``start``."""
    page.goto(base + start)
    assert "/login" in page.url
    page.fill("#username", login.name)
    page.fill("#password", login.password)
    with page.expect_navigation():
        page.click("button.primary")
