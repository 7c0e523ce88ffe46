"""The agent end to end against a real exchange server, over HTTP and over SFTP: raw CRM exports
in, an accepted delivery out; a second run does nothing."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from exchange_server.submissions.models import Delivery, UnitVersion
from tests.agent.conftest import CYCLE, AgentEnv


def server_deliveries(env: AgentEnv) -> list[Delivery]:
    with env.runtime.db.session() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def test_full_cycle_from_raw_exports_to_accepted_then_nothing_to_do(agent_env: AgentEnv) -> None:
    r = agent_env.run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    [d] = server_deliveries(agent_env)
    assert d.status == "accepted" and d.channel == agent_env.transport and d.check_name == f"P_42_{CYCLE}_00"
    with agent_env.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(UnitVersion)) == 6
    assert "status=accepted" in r.stdout and "list" in r.stdout
    again = agent_env.run("--json", "run")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["exit_code"] == 0
    assert not any(e["event"] in ("built", "sent") for e in doc["events"])
    assert len(server_deliveries(agent_env)) == 1
    status = agent_env.run("status")
    assert "accepted" in status.stdout and f"P_42_{CYCLE}_00" in status.stdout
    assert "list: 2026V01" in status.stdout


def test_a_delivery_that_would_be_rejected_is_never_sent(agent_env: AgentEnv) -> None:
    summary = agent_env.home / "exports" / f"vip_summary_{CYCLE}.csv"
    text = summary.read_text("gb18030").splitlines()
    cells = text[1].split(",")
    cells[1] = str(int(cells[1]) + 1)  # 期末大客户数 no longer adds up: R32001-01/02
    text[1] = ",".join(cells)
    summary.write_text("\n".join(text) + "\n", "gb18030")
    r = agent_env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "would be rejected; not sent" in r.stderr and "R32001-01" in r.stderr
    assert server_deliveries(agent_env) == []
    r = agent_env.run("--json", "status")
    assert json.loads(r.stdout)["deliveries"][0]["state"] == "local_rejected"


def test_changed_exports_after_acceptance_go_as_the_next_resend(agent_env: AgentEnv) -> None:
    assert agent_env.run("submit", "--cycle", CYCLE).returncode == 0
    r = agent_env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0 and "nothing new to send" in r.stdout  # same data: not sent twice
    contacts = agent_env.home / "exports" / f"vip_cust_contact_{CYCLE}.csv"
    contacts.write_text(contacts.read_text("gb18030").replace("信息中心主任", "信息中心副主任"), "gb18030")
    r = agent_env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"P_42_{CYCLE}_01: accepted" in r.stdout
    ds = server_deliveries(agent_env)
    assert [(d.resend, d.status) for d in ds] == [(0, "accepted"), (1, "accepted")]
