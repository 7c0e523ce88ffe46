"""Server fixtures: every server test runs on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from exchange_server.accounts.services import AccountService
from exchange_server.app import create_app
from exchange_server.cycles.services import CycleService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.runtime.serve import Server
from exchange_server.setup_service import initialise
from tests.support.postgres import PostgresServer, find_bindir

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    """A PostgreSQL server for the session; skip (or, in CI, fail) when none can be had."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; scripts/test installs it (apt-get install postgresql)")
        yield None
        return
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exchange.db'}"
    pg: PostgresServer | None = request.getfixturevalue("postgres")
    if pg is None:
        pytest.skip("PostgreSQL binaries not found (install postgresql; scripts/test does)")
    return pg.create_database(f"kam_test_{os.getpid()}_{next(_counter)}")


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A migrated database with the org tree, an archive in tmp_path, quick worker polling."""
    rt = open_runtime({"data_dir": str(tmp_path / "data"), "database_url": database_url,
                       "worker_poll_seconds": 0.05, "job_lease_seconds": 30, "sftp_port": 0,
                       "sftp_scan_seconds": 0.2})
    initialise(rt)
    yield rt
    rt.db.dispose()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    """The WSGI app on the test runtime."""
    return create_app(runtime=runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Werkzeug's test client (in-process); end-to-end tests use ``live_server``."""
    return app.test_client()


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[Server]:
    """The real server (cheroot HTTP, SFTP, an ingestion worker) on a free loopback port."""
    server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=1)
    yield server
    server.shutdown()


class Setup:
    """Makes accounts, tokens and cycles in the test database."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def province(self, party: str, name: str | None = None) -> str:
        """A province (or network) account with a token; returns the token."""
        with self.rt.db.session() as s:
            svc = AccountService(s, "test")
            acct = svc.create(name or f"prov{party}", "province", party)
            secret, _ = svc.create_token(acct, "test")
        return secret

    def role(self, name: str, role: str) -> str:
        """An analyst or admin account with a token."""
        with self.rt.db.session() as s:
            svc = AccountService(s, "test")
            secret, _ = svc.create_token(svc.create(name, role), "test")
        return secret

    def cycle(self, cycle_id: str = "202610", state: str = "open", **kw: Any) -> None:
        """A cycle in the calendar."""
        kw.setdefault("deadline", dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
        with self.rt.db.session() as s:
            CycleService(s, self.rt.spec, "test").create(cycle_id, state=state, **kw)

    def drain(self) -> int:
        """Run the ingestion queue dry in this thread."""
        return IngestionWorker(self.rt, "test").drain()


@pytest.fixture
def setup(runtime: Runtime) -> Setup:
    """Helpers to create accounts, tokens and cycles."""
    return Setup(runtime)
