"""`province-agent check`: build from the exports and check as HQ will, send nothing, report every problem at
once in both languages; exit 0 / 1 (data) / 2 (configuration). The "full report" hint names a real command."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from province_agent import cli
from province_agent._exceptions import ExportProblems
from province_agent.reports import annotate, render_findings
from schemas import Spec
from tests.agent.conftest import CYCLE, AgentEnv, make_env, write_exports
from tests.agent.test_agent_e2e import server_deliveries


@pytest.fixture
def http_env(runtime: Runtime, live_server: Server, tmp_path: Path, spec: Spec) -> AgentEnv:
    """Province 42's agent over HTTP only: what these tests check does not depend on the transport."""
    return make_env(runtime, tmp_path, spec, "http", live_server)


def test_good_exports_check_clean_and_nothing_is_sent(agent_env: AgentEnv) -> None:
    r = agent_env.run("check", "--cycle", CYCLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "接收 / ACCEPTED" in r.stdout and f"P_42_{CYCLE}_00" in r.stdout
    assert "since the last build" in r.stdout and "first build of this cycle" in r.stdout
    assert server_deliveries(agent_env) == []  # nothing sent
    reports = agent_env.home / "state" / "reports"
    assert (reports / f"check_P_42_{CYCLE}_00.json").is_file() and (reports / f"check_P_42_{CYCLE}_00.txt").is_file()
    status = agent_env.run("--json", "status")
    assert json.loads(status.stdout)["deliveries"] == []  # a check is not a delivery
    # submit afterwards still uses number 00
    r = agent_env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0 and f"P_42_{CYCLE}_00: accepted" in r.stdout, r.stdout + r.stderr


def test_every_problem_at_once_in_both_languages(agent_env: AgentEnv) -> None:
    rows = agent_env.rows.rows
    for r in rows["VIP_CUST_INFO"]:
        r["CREDIT_GRADE"] = "Z"  # not in the code list: one E307 per customer
    rows["VIP_SUMMARY"][0]["CUST_CNT"] = int(rows["VIP_SUMMARY"][0]["CUST_CNT"]) + 1  # R32001-01: sums
    write_exports(agent_env.runtime.spec, agent_env.rows, agent_env.home / "exports")
    r = agent_env.run("check", "--cycle", CYCLE)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    e307 = [line for line in r.stdout.splitlines() if "CREDIT_GRADE code Z" in line]
    assert len(e307) == len(rows["VIP_CUST_INFO"]), r.stdout  # every cell, not the first
    # in the export's terms: its file, row and cell beside the built file and line
    assert all(f"vip_cust_info_{CYCLE}.csv" in line and "31201_00_001.txt:" in line for line in e307), e307
    assert any("  R32001-01  " in line for line in r.stdout.splitlines())
    assert "拒收 / REJECTED" in r.stdout and "代码不在代码表中 / Code not in code list" in r.stdout
    assert server_deliveries(agent_env) == []
    doc = json.loads((agent_env.home / "state" / "reports" / f"check_P_42_{CYCLE}_00.json").read_text("utf-8"))
    assert sum(1 for f in doc["findings"] if f["code"] == "E307") == len(rows["VIP_CUST_INFO"])
    assert (agent_env.home / "state" / "reports" / f"check_P_42_{CYCLE}_00.txt").read_text("utf-8").count(
        "CREDIT_GRADE code Z") == len(rows["VIP_CUST_INFO"])
    j = agent_env.run("--json", "check", "--cycle", CYCLE)
    assert j.returncode == 1 and json.loads(j.stdout)["report"]["status"] == "rejected"

    # submit refuses it, names the full report and a command that exists
    s = agent_env.run("submit", "--cycle", CYCLE)
    assert s.returncode == 1 and "would be rejected; not sent" in s.stderr, s.stdout + s.stderr
    assert f"province-agent check --cycle {CYCLE}" in s.stderr and "--format json" not in s.stderr
    [path] = {w.split("=")[-1] for w in s.stderr.split() if w.endswith(f"check_P_42_{CYCLE}_00.txt")}
    assert Path(path).is_file()
    status = agent_env.run("status")
    assert f"check_P_42_{CYCLE}_00.txt" in status.stdout, status.stdout


def test_a_broken_configuration_is_exit_2_and_a_bad_export_value_exit_1(http_env: AgentEnv) -> None:
    good = http_env.config.read_text("utf-8")
    http_env.config.write_text(good.replace("[units.VIP_SUMMARY.columns]", "[units.VIP_SUMMARY.columns]\n"
                                                                            "NO_SUCH_FIELD = \"x\"", 1), "utf-8")
    r = http_env.run("check", "--cycle", CYCLE)
    assert r.returncode == 2 and "ConfigError" in r.stderr and "配置错误 / configuration error" in r.stderr, \
        r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    http_env.config.write_text(good, "utf-8")
    (http_env.home / "exports" / f"vip_summary_{CYCLE}.csv").unlink()
    r = http_env.run("check", "--cycle", CYCLE)
    assert r.returncode == 1 and "导出文件有误 / problem in the exports" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


class _Problem:
    def __init__(self, row: int) -> None:
        self.code = "E307"
        self.message_zh = f"值 武汉{row} 不在代码表中"
        self.message_en = f"value 武汉{row} is not in the code list"

    def describe(self) -> str:
        return f"crm.csv row {self.row} column 本地网 (B{self.row})"

    @property
    def row(self) -> int:
        return int(self.message_en.split("武汉")[1].split()[0])


def test_mapping_problems_are_all_printed_with_exit_1(http_env: AgentEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping's list of problems (ExportProblems) reaches the terminal whole, one line each."""
    import province_agent.mapping as mapping

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise ExportProblems([_Problem(i) for i in range(2, 9)])

    monkeypatch.setattr(mapping, "build_delivery", refuse)
    result = CliRunner().invoke(cli.main, ["--config", str(http_env.config), "check", "--cycle", CYCLE])
    assert result.exit_code == 1, result.output
    text = result.output
    assert "7 problem(s) in the exports" in text
    for i in range(2, 9):
        assert f"crm.csv row {i} column 本地网 (B{i})" in text and f"值 武汉{i} 不在代码表中 / value 武汉{i}" in text
    kept = http_env.home / "state" / "reports" / f"check_P_42_{CYCLE}_00.txt"
    assert kept.read_text("utf-8").count("crm.csv row") == 7 and f"full report 完整报告: {kept}" in text


def test_values_that_cannot_be_mapped_are_all_listed_with_exit_1(http_env: AgentEnv) -> None:
    summary = http_env.home / "exports" / f"vip_summary_{CYCLE}.csv"
    lines = summary.read_text("gb18030").splitlines()
    for i in (1, 2, 3):
        cells = lines[i].split(",")
        cells[1] = "十一"  # 期末大客户数: not a number
        lines[i] = ",".join(cells)
    summary.write_text("\n".join(lines) + "\n", "gb18030")
    r = http_env.run("check", "--cycle", CYCLE)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "导出文件有误 / problem in the exports" in r.stderr and "Traceback" not in r.stderr
    assert sum("十一" in line for line in r.stderr.splitlines()) >= 3, r.stderr
    assert (http_env.home / "state" / "reports" / f"check_P_42_{CYCLE}_00.json").is_file()


class _Cell:
    export, sheet, row, column, cell = "客户.xlsx", "明细", 5, "本地网", "B5"

    def describe(self) -> str:
        return "客户.xlsx sheet 明细 row 5 column 本地网 cell B5"


class _Map:
    def locate(self, file: str, line: int, field: str | None = None) -> _Cell | None:
        return _Cell() if line == 3 else None


def test_findings_name_the_export_cell_beside_the_built_file() -> None:
    findings = annotate([{"code": "E307", "file": "P_42_202610_31201_00_001.txt", "line": 3, "field": "LATN_ID",
                          "message_zh": "代码不在代码表中", "message_en": "code not in list"},
                         {"code": "E307", "file": "P_42_202610_31201_00_001.txt", "line": 4,
                          "message_zh": "代码不在代码表中", "message_en": "code not in list"}], _Map())
    assert findings[0]["source"]["cell"] == "B5" and "source" not in findings[1]
    lines = render_findings([{"code": "E307", "severity": "error", "count": 9, "title_zh": "代码", "title_en": "code"}],
                            findings, 1)
    assert "    客户.xlsx sheet 明细 row 5 column 本地网 cell B5 [P_42_202610_31201_00_001.txt:3]  E307  " \
           "代码不在代码表中 / code not in list" in lines
    assert "    ... E307: 8 more / 另有 8 条" in lines
