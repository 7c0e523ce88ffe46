"""After HQ judges, the agent prints HQ's findings (the first N per code, in the export's terms where it built
the files), keeps the full report as JSON and text in its state directory, and `status` shows them — over
HTTP (the report API) and SFTP (the record-level feedback in the outbox)."""
from __future__ import annotations

import json

from province_agent.state import State
from tests.agent.conftest import CYCLE, AgentEnv, write_exports
from tests.agent.test_agent_e2e import server_deliveries


def no_category(env: AgentEnv) -> None:
    """Every customer marked with no key-account category: R31201-03, a warning, once per customer."""
    for r in env.rows.rows["VIP_CUST_INFO"]:
        r.update(IS_IMPORTANT="N", IS_HIGH_VALUE="N", IS_GROUP="N", IS_STRATEGIC="N")
    write_exports(env.runtime.spec, env.rows, env.home / "exports")


def test_hq_findings_are_printed_kept_and_shown_by_status(agent_env: AgentEnv) -> None:
    no_category(agent_env)
    r = agent_env.run("--findings", "2", "submit", "--cycle", CYCLE)
    assert r.returncode == 0, r.stdout + r.stderr
    check = f"P_42_{CYCLE}_00"
    assert f"{check}: accepted_with_warnings (0 errors, 3 warnings)" in r.stdout, r.stdout
    shown = [line for line in r.stdout.splitlines() if "  R31201-03  客户" in line]
    assert len(shown) == 2, r.stdout  # the first 2 of the code
    assert "R31201-03: 1 more / 另有 1 条" in r.stdout
    assert "未标记任何大客户类别 / Customer" in shown[0]
    assert f"vip_cust_info_{CYCLE}.csv" in shown[0] and "31201_00_001.txt:" in shown[0], shown
    reports = agent_env.home / "state" / "reports"
    doc = json.loads((reports / f"{check}.json").read_text("utf-8"))
    assert doc["status"] == "accepted_with_warnings" and doc["hq_delivery_id"] == server_deliveries(agent_env)[0].id
    assert [f["code"] for f in doc["findings"]] == ["R31201-03"] * 3
    assert any(c["code"] == "R31201-03" and c["title_en"].startswith("Rule R31201-03 (31201") for c in doc["counts"])
    assert all(f["source"]["export"] for f in doc["findings"]), doc["findings"]
    text = (reports / f"{check}.txt").read_text("utf-8")
    assert text.count("  R31201-03  客户") == 3 and "accepted_with_warnings" in text
    assert f"full report / 完整报告: {reports / (check + '.txt')}" in r.stdout

    # status shows them (first 5 per code by default) and where the full report is
    status = agent_env.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert sum("  R31201-03  客户" in line for line in status.stdout.splitlines()) == 3
    assert str(reports / f"{check}.txt") in status.stdout
    # a report lost from disk is fetched again by status
    (reports / f"{check}.json").unlink()
    status = agent_env.run("status")
    assert (reports / f"{check}.json").is_file() and "  R31201-03  " in status.stdout


def test_findings_of_a_delivery_hq_rejects(agent_env: AgentEnv) -> None:
    """A built delivery sent as it was (e.g. built by an older agent): HQ rejects it; its errors come back."""
    rows = agent_env.rows
    for r in rows.rows["VIP_CUST_INFO"]:
        r["CREDIT_GRADE"] = "Z"
    check = f"P_42_{CYCLE}_00"
    folder = agent_env.home / "state" / "spool" / CYCLE / check
    rows.write(folder, encoding="GB18030")
    state = State(agent_env.home / "state")
    try:
        state.add(CYCLE, "P", 0, check, folder, ["31201"], "hand-built")
    finally:
        state.close()
    r = agent_env.run("run")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "status=rejected" in r.stdout
    e307 = [line for line in r.stdout.splitlines() if "  E307  " in line and "CREDIT_GRADE" in line]
    assert len(e307) == 3 and all(f"P_42_{CYCLE}_31201_00_001.txt:" in line for line in e307), r.stdout
    assert f"cycle {CYCLE}: rejected by HQ" in r.stdout
    doc = json.loads((agent_env.home / "state" / "reports" / f"{check}.json").read_text("utf-8"))
    assert doc["status"] == "rejected" and sum(f["code"] == "E307" for f in doc["findings"]) == 3
