"""`submit` and `run` refresh the list and calendar first and say what changed; never send into a closed cycle
without an exception (exit 5, and how to ask for one); `run` prints one line per cycle; HQ's open resend request
with nothing new to send is reported and exits 5 — over HTTP and SFTP."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from exchange_server.admin.services import CycleExceptionService
from exchange_server.cycles.services import CycleService
from exchange_server.lists.services import ListService
from exchange_server.review.services import ReviewService, deliver_comments
from exchange_server.sftp.outbox import place_calendar, place_list_slices
from exchange_server.submissions.models import Delivery
from tests.agent.conftest import CYCLE, AgentEnv, write_exports
from tests.agent.test_agent_e2e import server_deliveries
from tests.agent.test_agent_list_versions import write_dated_list
from tests.agent.test_agent_ux_verdict import no_category


def test_submit_says_what_changed_in_the_list_since_the_last_build(agent_env: AgentEnv, tmp_path: Path) -> None:
    env = agent_env
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "first build of this cycle, list 2026V01, 3 customers" in r.stdout
    assert "calendar 日历: read (1 cycles)" in r.stdout
    # HQ publishes 2026V02: a fourth customer on the list from October on.
    rt = env.runtime
    net = sorted({row["LATN_ID"] for row in env.rows.rows["VIP_SUMMARY"]})[0]
    ids = env.rows.list_ids
    source = write_dated_list(tmp_path / "v02.csv", rt.spec, [
        *((cid, "42", net, "20260101", "", "U") for cid in ids), ("G420000009", "42", net, "20261001", "", "A")])
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec, "test")
        lists.publish(lists.load(source, "2026V02", day=dt.date(2026, 9, 20)), confirm_impact=True)
    place_list_slices(rt, "2026V02")
    r = env.run("--json", "submit", "--cycle", CYCLE)
    doc = json.loads(r.stdout)
    [listed] = [e for e in doc["events"] if e["event"] == "list" and e.get("result") == "new"]
    assert listed["version"] == "2026V02" and "G420000009" in listed["customers"]
    [since] = [e for e in doc["events"] if e["event"] == "since_last_build"]
    assert since["result"] == "list changed" and since["customers_added"] == 1 and since["customers_removed"] == 0
    assert since["added"] == "G420000009" and "2026V02" in since["list"]
    # the exports have not changed: nothing is sent again; the hint says how to see what the new list means
    assert r.returncode == 0 and len(server_deliveries(env)) == 1, r.stdout + r.stderr
    assert since["hint"] == f"province-agent check --cycle {CYCLE}"
    # changed exports that still lack the new customer are refused locally, not sent
    contacts = env.home / "exports" / f"vip_cust_contact_{CYCLE}.csv"
    contacts.write_text(contacts.read_text("gb18030").replace("信息中心主任", "信息中心副主任"), "gb18030")
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 1 and "  X-007  " in r.stderr and len(server_deliveries(env)) == 1, r.stdout + r.stderr
    assert "since the last build 自上次生成以来: list unchanged" in r.stdout


def test_no_send_into_a_closed_cycle_without_an_exception(agent_env: AgentEnv) -> None:
    env, rt = agent_env, agent_env.runtime
    env.run("fetch-list")  # the calendar as it was: the change below is reported
    with rt.db.session() as s:
        CycleService(s, rt.spec, "admin").close(CYCLE)
    place_calendar(rt)
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 5, r.stdout + r.stderr
    assert f"cycle {CYCLE} is closed" in r.stderr and f"ask HQ's admin to grant 42 an exception for cycle {CYCLE}" \
        in r.stderr and "请本省联系总部管理员" in r.stderr and "Traceback" not in r.stderr
    assert server_deliveries(env) == []
    r = env.run("check", "--cycle", CYCLE)  # what HQ would say: E601, and how to ask
    assert r.returncode == 1 and "  E601  " in r.stdout and "exception" in r.stdout, r.stdout + r.stderr
    with rt.db.session() as s:
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
        CycleExceptionService(s, "admin").grant(CYCLE, "42", until, "系统割接 cut-over")
    place_calendar(rt)
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0 and f"P_42_{CYCLE}_00: accepted" in r.stdout, r.stdout + r.stderr
    assert "calendar 日历: changed" in r.stdout and f"{CYCLE} exception_until - ->" in r.stdout, r.stdout


def test_run_prints_a_line_per_cycle_and_an_open_resend_request_exits_5(agent_env: AgentEnv) -> None:
    env, rt = agent_env, agent_env.runtime
    no_category(env)  # accepted with warnings: HQ reviews it
    r = env.run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"cycle {CYCLE}: accepted with warnings / 已接收（有警告）  [open, deadline" in r.stdout, r.stdout
    [d] = server_deliveries(env)
    with rt.db.session() as s:
        review = ReviewService(s, rt.archive)
        review.request_resend("hq-admin", s.get(Delivery, d.id), "请补充大客户类别。")
    deliver_comments(rt, d.id)
    r = env.run("run")  # nothing changed in the exports
    assert r.returncode == 5, r.stdout + r.stderr
    assert "HQ asked for a resend, but the exports have not changed: nothing sent" in r.stdout
    assert f"cycle {CYCLE}: HQ asked for a resend; exports unchanged" in r.stdout
    assert len(server_deliveries(env)) == 1
    status = env.run("status")
    assert "HQ asks for a resend / 总部要求重报" in status.stdout, status.stdout
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 5 and "HQ asked for a resend" in r.stdout, r.stdout + r.stderr
    # the province corrects its exports: the next run sends them as resend 01
    for row in env.rows.rows["VIP_CUST_INFO"]:
        row["IS_IMPORTANT"] = "Y"
    write_exports(rt.spec, env.rows, env.home / "exports")
    r = env.run("run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"cycle {CYCLE}: accepted / 已接收" in r.stdout and f"P_42_{CYCLE}_01" in r.stdout, r.stdout
