"""The agent follows HQ's calendar over HTTP and SFTP: a closed cycle is left alone, unless HQ grants
the province an exception, which reaches the agent (API field or outbox/calendar.json) and makes it deliver."""
from __future__ import annotations

import datetime as dt
import json

from exchange_server.admin.services import CycleExceptionService
from exchange_server.cycles.services import CycleService
from exchange_server.sftp.outbox import place_calendar
from exchange_server.sftp.tree import PartyTree
from tests.agent.conftest import CYCLE, AgentEnv
from tests.agent.test_agent_e2e import server_deliveries


def test_a_closed_cycle_is_delivered_only_under_an_exception(agent_env: AgentEnv) -> None:
    rt = agent_env.runtime
    with rt.db.session() as s:
        CycleService(s, rt.spec, "admin").close(CYCLE)
    place_calendar(rt)
    r = agent_env.run("--json", "run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not any(e["event"] in ("built", "sent") for e in json.loads(r.stdout)["events"])
    assert server_deliveries(agent_env) == []
    with rt.db.session() as s:
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
        CycleExceptionService(s, "admin").grant(CYCLE, "42", until, "系统割接 cut-over")
        CycleExceptionService(s, "admin").grant(CYCLE, "11", until, "another province's")
    place_calendar(rt)  # what the admin page does after granting
    if agent_env.transport == "sftp":  # the outbox says so, for this province only
        doc = json.loads((PartyTree(rt.settings.sftp_root).outbox("42") / "calendar.json").read_text("utf-8"))
        [mine] = [c for c in doc["cycles"] if c["id"] == CYCLE]
        assert mine["state"] == "closed" and mine["exception_until_beijing"]
    r = agent_env.run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    [d] = server_deliveries(agent_env)
    assert d.status == "accepted" and not d.late  # within the exception: neither refused (E601) nor late
