"""Hub fixtures: an HQ (the server fixtures' runtime, live) and a hub of province 42 forwarding to it."""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from tests.server import conftest as server_fixtures
from tests.support.tiers import open_hub, province_token

# The server tests' fixtures (HQ's runtime on SQLite and PostgreSQL, its live server, ...), shared.
postgres, database_url, runtime = server_fixtures.postgres, server_fixtures.database_url, server_fixtures.runtime
live_server, setup, app, client = (server_fixtures.live_server, server_fixtures.setup, server_fixtures.app,
                                   server_fixtures.client)
_n = itertools.count()


@pytest.fixture
def hub_database_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The hub's own database, of the same kind as HQ's."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'hub.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"kam_hub_{os.getpid()}_{next(_n)}")


@pytest.fixture
def hub(runtime: Runtime, live_server: Server, hub_database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A hub for 42 whose upstream is the live HQ, with Hubei's HQ token."""
    rt = open_hub(tmp_path / "hub", hub_database_url, live_server.url, province_token(runtime))
    yield rt
    rt.db.dispose()


class Delivered:
    """A hub synced from the live HQ whose networks have all delivered (and been judged) for 202611."""

    def __init__(self, hq: Runtime, hub: Runtime, folders: dict[Path, str]) -> None:
        self.hq, self.hub, self.folders = hq, hub, folders
        self.networks = sorted(folders.values())

    def folder(self, network: str) -> Path:
        """The delivery folder a network sent."""
        return next(f for f, n in self.folders.items() if n == network)


@pytest.fixture
def delivered(runtime: Runtime, live_server: Server, hub: Runtime, tmp_path: Path) -> Iterator[Delivered]:
    """HQ with the list and cycle 202611; the hub synced; every network's own delivery accepted at the hub."""
    from exchange_server.hub.forwarder import Forwarder
    from exchange_server.ingestion.worker import IngestionWorker
    from tests.support.receiving import receive_folder
    from tests.support.tiers import hq_with_list, network_accounts

    folders = hq_with_list(runtime, tmp_path / "gen")
    f = Forwarder(hub)
    assert f.run_once(sync=True)["synced"] == 1
    f.close()
    network_accounts(hub, sorted(folders.values()))
    for folder, net in folders.items():
        receive_folder(hub, f"latn{net}", folder)
    IngestionWorker(hub, "t").drain()
    yield Delivered(runtime, hub, folders)
