"""A bounded schemathesis run against the live API: no 500, and no answer the OpenAPI document does not describe.

Schemathesis reads ``/api/v1/openapi.json`` from the real server (cheroot, an ingestion
worker) and sends what the document allows and what it does not — numbers past 64 bits,
wrong types, NUL bytes, missing parts — with a province's, an analyst's and an admin's
token, on SQLite and on PostgreSQL, in all its phases (coverage, fuzzing, stateful). Every
check is on: no server error, status codes, content types, headers and bodies as documented,
invalid input refused, valid input accepted, authentication not ignored.

The run is small (``MAX_EXAMPLES`` cases per operation, a fixed seed) so that it stays fast
and repeatable; ``KAM_SCHEMATHESIS_EXAMPLES`` and ``KAM_SCHEMATHESIS_SEED`` make it bigger or
different, e.g. ``KAM_SCHEMATHESIS_EXAMPLES=300 KAM_SCHEMATHESIS_SEED=7 pytest tests/server/test_schemathesis.py``.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from province_agent.transport import HttpTransport
from schemas import Spec
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import wait_final
from tests.support.deliveries import valid_rows
from tests.support.lists import Entry, write_list_csv

MAX_EXAMPLES = 25
SEED = 20261207


def _schemathesis() -> None:
    if importlib.util.find_spec("schemathesis") is None:
        if os.environ.get("CI"):
            pytest.fail("schemathesis is not installed; CI must run it (pip install -e .[test])")
        pytest.skip("schemathesis is not installed (pip install -e .[test])")


def _data(runtime: Runtime, setup: Setup, live_server: Server, spec: Spec, tmp_path: Path) -> dict[str, str]:
    """Something to find: an open cycle, a published list, a judged delivery; a token of each role."""
    tokens = {"province": setup.province("42"), "analyst": setup.role("ana", "analyst"),
              "admin": setup.role("adm", "admin")}
    setup.cycle("202610")
    rows = valid_rows(spec)
    net = min(r["LATN_ID"] for r in rows.rows["VIP_SUMMARY"])
    source = write_list_csv(tmp_path / "list.csv", spec, [Entry(c, "42", net) for c in rows.list_ids])
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "admin")
        lists.publish(lists.load(source, "2026V01"))
    http = HttpTransport(live_server.url, tokens["province"])
    try:
        _status, receipt = http.upload(sorted(rows.write(tmp_path / "delivery").iterdir()))
        wait_final(http, receipt["delivery_id"])
    finally:
        http.close()
    return tokens


@pytest.mark.slow
def test_the_api_keeps_to_its_openapi_document(runtime: Runtime, setup: Setup, live_server: Server, spec: Spec,
                                               tmp_path: Path) -> None:
    _schemathesis()
    tokens = _data(runtime, setup, live_server, spec, tmp_path)
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    failed = []
    for role, token in tokens.items():
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{live_server.url}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {token}", "--checks", "all",
             "--max-examples", os.environ.get("KAM_SCHEMATHESIS_EXAMPLES", str(MAX_EXAMPLES)),
             "--seed", os.environ.get("KAM_SCHEMATHESIS_SEED", str(SEED)), "--workers", "4",
             "--generation-database", "none", "--request-timeout", "30", "--no-color"],
            check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        if run.returncode != 0:
            failed.append(f"--- as the {role} account (exit {run.returncode}):\n"
                          f"{run.stdout[-6000:]}{run.stderr[-2000:]}")
    assert not failed, "\n".join(failed)
