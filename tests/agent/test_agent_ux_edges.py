"""Rough edges: credentials HQ refuses give one bilingual line and exit 4 on every command (HTTP token, SFTP
key); fetch-list says which customers and codes changed; test deliveries are numbered on their own from 00;
`schedule` says what must exist and creates the folders it can; rule titles are translated whole."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exchange_server.sftp.keys import new_ed25519
from province_agent.template import render_template
from schemas import Spec
from schemas.validation.report import Report
from tests.agent.conftest import CYCLE, AgentEnv

COMMANDS = (("fetch-list",), ("submit", "--cycle", CYCLE), ("run",), ("check", "--cycle", CYCLE), ("status",))


def refuse_credentials(env: AgentEnv) -> None:
    """The token HQ gave is gone (HTTP); the key on this machine is not the one HQ registered (SFTP)."""
    if env.transport == "http":
        (env.home / "token").write_text("kam_revoked_or_mistyped\n")
    else:
        private, _public = new_ed25519()
        (env.home / "id_ed25519").write_bytes(private)


def test_refused_credentials_are_one_bilingual_line_and_exit_4_on_every_command(agent_env: AgentEnv) -> None:
    env = agent_env
    assert env.run("submit", "--cycle", CYCLE).returncode == 0  # something sent: status asks HQ about it
    refuse_credentials(env)
    for args in COMMANDS:
        r = env.run(*args)
        assert r.returncode == 4, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        want = "HQ refused the API token" if env.transport == "http" else "HQ refused our SSH key"
        lines = [line for line in r.stderr.splitlines() if want in line]
        assert len(lines) == 1 and "总部拒绝" in lines[0], (args, r.stderr)
    status = env.run("status")
    assert f"P_42_{CYCLE}_00" in status.stdout  # what is kept locally is still shown
    j = env.run("--json", "submit", "--cycle", CYCLE)
    assert j.returncode == 4 and '"kind": "' in j.stdout and "Traceback" not in j.stderr


def test_fetch_list_says_which_customers_and_codes_changed(agent_env: AgentEnv) -> None:
    r = agent_env.run("fetch-list")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "generation" not in r.stdout
    assert "list 名单 2026V01: new — 3 added, 0 removed, 0 changed, 0 unchanged — added 新增: G420000001 测试客户1" \
        in r.stdout, r.stdout
    assert "code lists 代码表: unchanged" in r.stdout or agent_env.transport == "sftp"


def test_test_deliveries_are_numbered_on_their_own_from_00(agent_env: AgentEnv) -> None:
    env = agent_env
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0 and f"P_42_{CYCLE}_00: accepted" in r.stdout, r.stdout + r.stderr
    r = env.run("submit", "--test", "--cycle", CYCLE)
    assert r.returncode == 0 and f"T_42_{CYCLE}_00: accepted" in r.stdout, r.stdout + r.stderr
    contacts = env.home / "exports" / f"vip_cust_contact_{CYCLE}.csv"
    contacts.write_text(contacts.read_text("gb18030").replace("信息中心主任", "信息中心副主任"), "gb18030")
    r = env.run("submit", "--test", "--cycle", CYCLE)
    assert r.returncode == 0 and f"T_42_{CYCLE}_01: accepted" in r.stdout, r.stdout + r.stderr


def test_schedule_says_what_must_exist_and_creates_the_folders(tmp_path: Path, spec: Spec) -> None:
    config = tmp_path / "kam-agent.toml"
    config.write_text(render_template(spec, url="http://127.0.0.1:9").replace('state_dir = "state"',
                                                                               f'state_dir = "{tmp_path / "st"}"'))
    logs = tmp_path / "logs"

    def schedule(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "province_agent.cli", "--config", str(config), "schedule",
                               "--log-dir", str(logs), *args], capture_output=True, text=True, timeout=60)

    r = schedule()
    assert r.returncode == 0, r.stderr
    assert f"[MISSING 缺少] log folder {logs}" in r.stdout and f"install -d -o kam-agent -m 750 {logs}" in r.stdout
    assert "system user kam-agent" in r.stdout and f"[ok] configuration {config}" in r.stdout
    assert f"run >> {logs}/agent.log" in r.stdout and "missing" in r.stdout
    r = schedule("--create")
    assert r.returncode == 0 and logs.is_dir() and f"created 已创建: {logs}" in r.stdout, r.stdout
    assert f"[ok] log folder {logs}" in r.stdout


def test_rule_titles_are_translated_whole(spec: Spec) -> None:
    report = Report(spec)
    zh, en = report.titles("X-007")
    assert zh == "跨单元规则 X-007" and en == "Cross-unit rule X-007"
    zh, en = report.titles("R32001-01")
    assert zh == "规则 R32001-01（32001 大客户总体情况）" and en.startswith("Rule R32001-01 (32001 ")
    assert not any(ch.isascii() and ch.isalpha() for ch in zh.replace("R32001", ""))
