"""From a province's real exports to HQ's verdict, over HTTP and over SFTP, with no translation table.

Hubei's exports as its CRM writes them (``tests/support/exports.py``: GB18030 CSVs with CRM
headers and names instead of codes, an XLSX monthly report with a title row, a unit row,
headers on row 3 and a 合计 row) reach ``accepted`` at a real HQ with a configuration of
column headers only. Then a mistake only HQ can see — the opening count of one network no
longer equals last month's closing count HQ holds (W602) — comes back from HQ naming the
export's file, sheet, row, column and cell, beside the generated file and line.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.cycles.services import CycleService
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from exchange_server.sample_data.generator import generate
from exchange_server.sftp.keys import host_key_line, new_ed25519
from exchange_server.sftp.outbox import place_calendar, place_list_slices
from exchange_server.submissions.models import Delivery
from province_agent.template import render_template
from province_agent.transport import HttpTransport
from schemas import Spec
from tests.support.exports import (
    HEADERS,
    SOURCES,
    TITLE_ROWS,
    RealisticExports,
    write_realistic_exports,
)

CYCLE, PREVIOUS = "202610", "202609"


class Province:
    """Hubei's agent machine with its real exports, and HQ holding Hubei's previous month."""

    def __init__(self, rt: Runtime, server: Server, spec: Spec, home: Path, transport: str) -> None:
        self.rt, self.server, self.home, self.transport = rt, server, home, transport
        self.exports: RealisticExports = write_realistic_exports(spec, home / "exports")
        self.config = home / "kam-agent.toml"
        template = render_template(spec, "42", transport, server.url, "127.0.0.1", server.sftp_port or 0)
        head = template[:template.index("# One [units.<NAME>] table per unit")]
        for key, value in {"attempts": 6, "base_seconds": 0.3, "max_seconds": 2, "verdict_timeout": 90}.items():
            line = next(x for x in head.splitlines() if x.startswith(f"{key} ="))
            head = head.replace(line, f"{key} = {value}", 1)
        # The province writes where its exports are and which column is which: nothing else.
        self.lines = self.exports.units_toml()
        self.config.write_text(head + "\n" + "\n".join(self.lines) + "\n", "utf-8")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``province-agent --config ... <args>``, as cron runs it."""
        return subprocess.run([sys.executable, "-m", "province_agent.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=300)

    def at_hq(self) -> list[Delivery]:
        """Hubei's deliveries at HQ for the cycle, oldest first."""
        with self.rt.db.session() as s:
            return list(s.scalars(select(Delivery).where(Delivery.party == "42", Delivery.period == CYCLE)
                                  .order_by(Delivery.id)))


def _hq(rt: Runtime, server: Server, work: Path, home: Path) -> None:
    """HQ: both cycles open, the list published, prov42's credentials, Hubei's 202609 accepted."""
    samples = generate(rt.spec, PREVIOUS, work / "samples", provinces=["42"], fmt="txt")
    private, public = new_ed25519()
    home.mkdir(parents=True)
    (home / "id_ed25519").write_bytes(private)
    (home / "id_ed25519").chmod(0o600)
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    with rt.db.session() as s:
        accounts = AccountService(s, "test")
        acct = accounts.create("prov42", "province", "42")
        token, _ = accounts.create_token(acct, "agent")
        accounts.add_ssh_key(acct, public)
        cycles = CycleService(s, rt.spec, "test")
        for cycle in (PREVIOUS, CYCLE):
            cycles.create(cycle, deadline=deadline, state="open")
    (home / "token").write_text(token + "\n")
    (home / "token").chmod(0o600)
    (home / "known_hosts").write_text(f"[127.0.0.1]:{server.sftp_port} {host_key_line(rt.settings)}\n")
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec, "test")
        lists.publish(lists.load(next((work / "samples" / "00").glob("D_00_*V01_00.chk"))), "test",
                      confirm_impact=True)
    place_list_slices(rt, "2026V01")
    place_calendar(rt)
    folder = next(d.parent for d in samples.deliveries if d.parent.name == "42")
    _status, receipt = HttpTransport(server.url, token).upload(sorted(p for p in folder.iterdir() if p.is_file()))
    end = time.monotonic() + 90
    while time.monotonic() < end:
        with rt.db.session() as s:
            d = s.get(Delivery, receipt["delivery_id"])
            if d is not None and d.is_final:
                assert d.status == "accepted", d.status
                return
        time.sleep(0.1)
    raise AssertionError("HQ did not judge Hubei's 202609")


@pytest.fixture(params=["http", "sftp"])
def province(request: pytest.FixtureRequest, runtime: Runtime, live_server: Server, spec: Spec,
             tmp_path: Path) -> Province:
    """Hubei's agent over HTTP, then over SFTP, against a live HQ holding Hubei's 202609."""
    _hq(runtime, live_server, tmp_path, tmp_path / "agent")
    return Province(runtime, live_server, spec, tmp_path / "agent", request.param)


def test_real_exports_reach_accepted_and_hqs_finding_names_the_export_cell(province: Province) -> None:
    # No translation table: the configuration is sources, sheets, header rows and column headers.
    assert not any(line.startswith("[codes") or ".values" in line for line in province.lines)
    first = province.run("submit", "--cycle", CYCLE)
    assert first.returncode == 0, first.stdout + first.stderr
    [d] = province.at_hq()
    assert (d.status, d.channel) == ("accepted", province.transport), d.status

    # Wuhan's opening count raised by one with one more lost account: consistent in itself (the
    # agent's own check passes), but no longer last month's closing count, which only HQ holds.
    workbook = province.exports.path("VIP_SUMMARY")
    sheet_name = SOURCES["VIP_SUMMARY"][1]
    wb = load_workbook(workbook)
    ws = wb[sheet_name]
    header = [c.value for c in ws[TITLE_ROWS + 1]]
    opening_col = header.index(HEADERS["VIP_SUMMARY"]["LAST_CUST_CNT"]) + 1
    lost_col = header.index(HEADERS["VIP_SUMMARY"]["LOST_CUST_CNT"]) + 1
    row = province.exports.export_rows["VIP_SUMMARY"][0]
    ws.cell(row, opening_col).value = int(ws.cell(row, opening_col).value) + 1
    ws.cell(row, lost_col).value = int(ws.cell(row, lost_col).value) + 1
    wb.save(workbook)
    second = province.run("submit", "--cycle", CYCLE)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    ds = province.at_hq()
    assert [x.status for x in ds] == ["accepted", "accepted_with_warnings"], out
    letter = ws.cell(row, opening_col).column_letter
    # HQ's finding, at the terminal, in the export's terms: file, sheet, row, column and cell.
    w602 = [line for line in out.splitlines() if "W602" in line]
    assert w602, out
    assert any(workbook.name in line and sheet_name in line and f"{letter}{row}" in line
               and HEADERS["VIP_SUMMARY"]["LAST_CUST_CNT"] in line for line in w602), w602
    # ... and later, from what the agent kept: `status` and the full report beside it.
    status = province.run("status")
    assert status.returncode == 0, status.stderr
    assert "W602" in status.stdout and f"{letter}{row}" in status.stdout, status.stdout
    report = json.loads((province.home / "state" / "reports" / f"P_42_{CYCLE}_01.json").read_text("utf-8"))
    assert "W602" in json.dumps(report, ensure_ascii=False)
