"""The prefecture role: the same agent, configured for one local network, sends that network's part."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.cycles.services import CycleService
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import DataScope, Delivery
from province_agent.template import render_template
from schemas import Spec
from tests.agent.conftest import CYCLE, AgentEnv, write_exports
from tests.support.deliveries import valid_rows


def test_a_local_network_sends_its_own_part(runtime: Runtime, live_server: Server, tmp_path: Path,
                                            spec: Spec) -> None:
    rows = valid_rows(spec)
    network = rows.rows["VIP_SUMMARY"][0]["LATN_ID"]
    for name, table in rows.rows.items():  # only this network's rows, and its customers
        if name in ("VIP_SUMMARY", "VIP_SERV_SUM", "VIP_INCOME_SUM"):
            rows.rows[name] = [r for r in table if r["LATN_ID"] == network]
    keep = {r["NATIONAL_CUST_ID"] for r in rows.rows["VIP_CUST_INFO"] if r["LATN_ID"] == network}
    for name in ("VIP_CUST_INFO", "VIP_CUST_CONTACT", "VIP_CUST_PROD"):
        rows.rows[name] = [r for r in rows.rows[name] if r["NATIONAL_CUST_ID"] in keep]
    home = tmp_path / "prefecture"
    home.mkdir()
    with runtime.db.session() as s:
        svc = AccountService(s, "test")
        token, _ = svc.create_token(svc.create(f"latn{network}", "province", network), "agent")
        CycleService(s, runtime.spec).create(CYCLE, state="open",
                                             deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=9))
    (home / "token").write_text(token)
    write_exports(spec, rows, home / "exports")
    config = home / "kam-agent.toml"
    config.write_text(render_template(spec, network, "http", live_server.url), "utf-8")
    env = AgentEnv(runtime, live_server, home, config, rows, "http")
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"P_{network}_{CYCLE}_00: accepted" in r.stdout
    with runtime.db.session() as s:
        [d] = s.scalars(select(Delivery)).all()
        assert d.party == network
        scopes = s.scalars(select(DataScope)).all()
        assert {sc.party for sc in scopes} == {network} and len(scopes) == 6
