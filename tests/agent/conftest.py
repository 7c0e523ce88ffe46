"""Agent end-to-end fixtures: a real exchange server, a province with raw CRM exports, a config."""
from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from exchange_server.accounts.services import AccountService
from exchange_server.cycles.services import CycleService
from exchange_server.sftp.keys import new_ed25519
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.runtime.serve import Server
from exchange_server.setup_service import initialise
from exchange_server.sftp.keys import host_key_line
from exchange_server.sftp.outbox import place_calendar, place_list_slices
from province_agent.template import render_template
from schemas import Spec
from tests.server.test_list_api import write_list
from tests.support.deliveries import DeliveryRows, valid_rows

CYCLE = "202610"


def write_exports(spec: Spec, rows: DeliveryRows, folder: Path, cycle: str = CYCLE) -> None:
    """The province's CRM exports: one GB18030 CSV per unit, Chinese headers (the template's defaults)."""
    from schemas.writer import format_value

    folder.mkdir(parents=True, exist_ok=True)
    for name, table in rows.rows.items():
        unit = spec.unit(name)
        cols = [f for f in unit.fields if f.id not in ("CYCLE_ID", "PROV_ID")]
        with (folder / f"{name.lower()}_{cycle}.csv").open("w", newline="", encoding="gb18030") as fh:
            w = csv.writer(fh)
            w.writerow([f.name_zh for f in cols])
            for r in table:
                w.writerow([format_value(f, r.get(f.id)) for f in cols])


@dataclass
class AgentEnv:
    """A province machine (config, credentials, exports) and HQ's server."""

    runtime: Runtime
    server: Server | None
    home: Path
    config: Path
    rows: DeliveryRows
    transport: str

    def run(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``province-agent --config ... <args>`` as cron would run it."""
        return subprocess.run([sys.executable, "-m", "province_agent.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """The agent in the background."""
        return subprocess.Popen([sys.executable, "-m", "province_agent.cli", "--config", str(self.config), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def write_config(self, url: str | None = None, sftp_port: int | None = None, **retry: Any) -> None:
        """The template, filled in for this machine (tiny retry waits for tests)."""
        server = self.server
        base = url or (server.url if server else "")
        port = sftp_port or (server.sftp_port if server else None) or 0
        text = render_template(self.runtime.spec, "42", self.transport, base, "127.0.0.1", port)
        settings = {"attempts": 6, "base_seconds": 0.3, "max_seconds": 2, "verdict_timeout": 60, **retry}
        for k, v in settings.items():
            text = text.replace(next(line for line in text.splitlines() if line.startswith(f"{k} =")), f"{k} = {v}", 1)
        self.config.write_text(text, "utf-8")


def make_env(runtime: Runtime, tmp_path: Path, spec: Spec, transport: str, server: Server | None = None,
             customers: int = 3) -> AgentEnv:
    """HQ set up for province 42 (account, token, key, open cycle, published list) and its agent's machine."""
    home = tmp_path / "agent"
    home.mkdir()
    private, public = new_ed25519()
    (home / "id_ed25519").write_bytes(private)
    (home / "id_ed25519").chmod(0o600)
    with runtime.db.session() as s:
        svc = AccountService(s, "test")
        acct = svc.create("prov42", "province", "42")
        token, _ = svc.create_token(acct, "agent")
        svc.add_ssh_key(acct, public)
        CycleService(s, runtime.spec, "test").create(
            CYCLE, deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30), state="open")
    (home / "token").write_text(token + "\n")
    (home / "token").chmod(0o600)
    rows = valid_rows(spec, customers=customers)
    nets = sorted({r["LATN_ID"] for r in rows.rows["VIP_SUMMARY"]})
    source = write_list(tmp_path / "list.csv", spec, [(c, "42", nets[0]) for c in rows.list_ids])
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "test")
        lists.publish(lists.load(source, "2026V01"))
    place_list_slices(runtime, "2026V01")
    place_calendar(runtime)
    write_exports(spec, rows, home / "exports")
    env = AgentEnv(runtime, server, home, home / "kam-agent.toml", rows, transport)
    if server is not None:
        (home / "known_hosts").write_text(f"[127.0.0.1]:{server.sftp_port} {host_key_line(runtime.settings)}\n")
        env.write_config()
    return env


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """HQ's server state on SQLite (the server's own tests cover PostgreSQL)."""
    rt = open_runtime({"data_dir": str(tmp_path / "hq"), "worker_poll_seconds": 0.05, "job_lease_seconds": 30,
                       "sftp_port": 0, "sftp_scan_seconds": 0.2})
    initialise(rt)
    yield rt
    rt.db.dispose()


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[Server]:
    """HQ's server (HTTP, SFTP, one worker) on free loopback ports."""
    server = Server(runtime, "127.0.0.1", 0, sftp_port=0).start(workers=1)
    yield server
    server.shutdown()


@pytest.fixture(params=["http", "sftp"])
def agent_env(request: pytest.FixtureRequest, runtime: Runtime, live_server: Server, tmp_path: Path,
              spec: Spec) -> AgentEnv:
    """Province 42's agent against a live server, over HTTP and over SFTP."""
    return make_env(runtime, tmp_path, spec, request.param, live_server)
