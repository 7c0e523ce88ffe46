"""The agent validates with the code-list versions HQ publishes, fetched over HTTP or from its SFTP outbox.

HQ publishes a new customer credit grade ``D`` in force from 2026-10-01 and the province's
CRM already uses it. Before the agent has fetched it, its own validation refuses the export
(E307) and sends nothing; ``run`` fetches the code lists first, so the same exports are then
built, sent and accepted by HQ, which validates with the same version.
"""
from __future__ import annotations

import datetime as dt
import json

from exchange_server.code_lists.services import CodeChange, CodeListService
from exchange_server.sftp.outbox import place_code_lists
from tests.agent.conftest import CYCLE, AgentEnv, write_exports

DOMAIN = "Domain_credit_grade"


def publish_grade_d(env: AgentEnv) -> None:
    """HQ's admin adds grade D from 2026-10-01 and publishes it (as the console does, outboxes included)."""
    rt = env.runtime
    with rt.db.session() as s:
        service = CodeListService(s, rt.spec, "admin")
        base = service.spec.domain(DOMAIN).current.version
        draft = service.propose(DOMAIN, "2026.10", dt.date(2026, 10, 1), base,
                                add=[CodeChange("D", "很差", "Very poor")])
        service.publish(draft.id)
    place_code_lists(rt)


def test_run_fetches_published_code_lists_before_validating(agent_env: AgentEnv) -> None:
    agent_env.rows.rows["VIP_CUST_INFO"][0]["CREDIT_GRADE"] = "D"
    write_exports(agent_env.runtime.spec, agent_env.rows, agent_env.home / "exports")
    publish_grade_d(agent_env)
    # Without HQ's code lists the agent's own check refuses the export (offline validation, nothing fetched).
    offline = agent_env.rows.write(agent_env.home / "offline")
    r = agent_env.run("validate", str(offline))
    assert r.returncode == 1 and "E307" in r.stdout, r.stdout + r.stderr
    # submit fetches them first; the same exports are then built, sent and accepted.
    r = agent_env.run("--json", "submit", "--cycle", CYCLE)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    [fetched] = [e for e in doc["events"] if e["event"] == "code_lists"]
    assert fetched["result"] == "new" and fetched["versions"] == 1
    assert "Domain_credit_grade 2026.10" in fetched["changes"] and "D 很差" in fetched["changes"]
    assert any(e.get("status") == "accepted" for e in doc["events"]), doc
    [saved] = json.loads((agent_env.home / "state" / "code_lists.json").read_text("utf-8"))
    assert saved["domain"] == DOMAIN and saved["version"]["add"][0]["code"] == "D"
    # Kept: a second fetch finds nothing new, and offline validation uses them too.
    r = agent_env.run("fetch-list")
    assert r.returncode == 0 and "code lists 代码表: unchanged (1 version(s)" in r.stdout, r.stdout + r.stderr
    built = sorted((agent_env.home / "state" / "spool").rglob("*.chk"))
    assert built, "the accepted delivery stays in the spool"
    r = agent_env.run("validate", str(built[-1].parent))
    assert r.returncode == 0, r.stdout + r.stderr
