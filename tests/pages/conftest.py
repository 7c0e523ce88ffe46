"""Page fixtures: a real server on loopback with two cycles of data, accounts, and headless Chromium.

The data is built once per module (sample deliveries received and judged by the real
pipeline on SQLite): 202609 from Beijing (11) and Hubei (42), 202610 from those two and
Guangdong (44). Browser tests use Debian's ``chromium`` through Playwright; without either
they are skipped, or fail when ``CI`` is set (CI must run them).
"""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.receiving import receive_folder  # noqa: F401  (also used by other test modules)
from flask import Flask
from flask.testing import FlaskClient

from exchange_server.accounts.services import AccountService
from exchange_server.app import create_app
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from exchange_server.sample_data.generator import generate
from tests.support.runtimes import runtime_with_open_cycles


CYCLES = {"202609": ["11", "42"], "202610": ["11", "42", "44"]}
ANALYST = ("ana", "analyst-pages-2026")
PROVINCE = ("prov42", "province-pages-2026")




@pytest.fixture(scope="module")
def page_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """SQLite with the org tree, two cycles of accepted sample data, an analyst and a province login."""
    root = tmp_path_factory.mktemp("pages")
    rt = runtime_with_open_cycles(root, CYCLES)
    with rt.db.session() as s:
        accounts = AccountService(s, "test")
        accounts.create(ANALYST[0], "analyst", display_name="测试分析员 Test analyst", password=ANALYST[1])
        accounts.create(PROVINCE[0], "province", "42", password=PROVINCE[1])
        for p in ("11", "44"):
            accounts.create(f"prov{p}", "province", p)
    for cycle_id, provinces in CYCLES.items():
        # Same seed for both cycles: the same national list, so both cycles' customers are on it.
        generate(rt.spec, cycle_id, root / cycle_id, provinces=provinces, scale=1, fmt="txt", seed=7)
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec)
        lists.publish(lists.load(next((root / "202610" / "00").glob("D_00_2026V01_00.chk"))))
    for cycle_id, provinces in CYCLES.items():
        for p in provinces:
            receive_folder(rt, f"prov{p}", root / cycle_id / p)
        IngestionWorker(rt, "test").drain()
    yield rt
    rt.db.dispose()


@pytest.fixture(scope="module")
def live_url(page_runtime: Runtime) -> Iterator[str]:
    """The real server (HTTP, no ingestion workers needed) on a free loopback port."""
    server = Server(page_runtime, "127.0.0.1", 0, sftp_port=0).start(workers=0, sftp=False)
    yield server.url
    server.shutdown()


@pytest.fixture
def app(page_runtime: Runtime) -> Flask:
    """The WSGI app on the pages' runtime (in-process tests)."""
    return create_app(runtime=page_runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Werkzeug's test client."""
    return app.test_client()


