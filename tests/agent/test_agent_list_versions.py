"""The agent keeps every list version and checks each cycle against the entries in force then.

HQ publishes 2026V01 (Hubei's customers 1-3), then 2026V02 mid-cycle: customer 3 is removed
with its last day 20261130 (a ``D`` entry) and customer 4 is added from 20261201. A delivery
for 202610 sent late, after 2026V02, still reports customer 3 and not customer 4 — rightly,
since that is how the list stood in October; the same delivery for 202612 is wrong on both
counts. The agent fetches both versions and judges each cycle as HQ does, over HTTP and
over SFTP (real servers, real OpenSSH/paramiko clients).
"""
from __future__ import annotations

import csv
import datetime as dt
import http.server
import json
import shutil
import threading
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

import pytest
from sqlalchemy import select

from exchange_server.lists.models import ListDownload, ListSlice, ListVersion
from exchange_server.lists.services import ListService
from exchange_server.sftp.outbox import place_list_slices
from exchange_server.submissions.models import Delivery
from province_agent._exceptions import TransportError
from province_agent.config import load_config
from province_agent.runner import Agent, Outcome
from province_agent.template import render_template
from province_agent.transport.base import CycleInfo, Progress, Receipt, Transport, Verdict
from province_agent.transport.http import HttpTransport
from schemas import Spec
from schemas.conventions import Cycle
from schemas.writer import DeliveryWriter
from tests.agent.conftest import CYCLE, AgentEnv, write_exports
from tests.server.test_list_api import LIST_FIELDS
from tests.support.deliveries import networks, valid_rows

LATE = "202612"  # a cycle after 2026V02's changes take effect
KEPT_1, KEPT_2, REMOVED, ADDED, MOVED = (f"G42{i:07d}" for i in range(1, 6))


# -- HQ's side ------------------------------------------------------------------------------------
def write_dated_list(path: Path, spec: Spec, entries: Sequence[tuple[str, str, str, str, str, str]]) -> Path:
    """A national list as CSV with dates and change types: (id, province, network, eff, exp, change) each."""
    ctype = valid_rows(spec).rows["VIP_CUST_INFO"][0]["C_TYPE_ID"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*LIST_FIELDS, "CHANGE_TYPE"])
        for rank, (cid, prov, net, eff, exp, change) in enumerate(entries, start=1):
            # Names and ranks as tests.server.test_list_api.write_list gives them: unchanged stays "U".
            w.writerow([cid, rank, f"测试客户{rank}", "", ctype, "1", prov, net, "王芳", "010-66660000", eff, exp,
                        change])
    return path


def publish_v02(env: AgentEnv, tmp_path: Path) -> None:
    """2026V02 over make_env's 2026V01: customer 3 removed (last day 20261130), customer 4 added from 20261201."""
    rt = env.runtime
    assert env.rows.list_ids == [KEPT_1, KEPT_2, REMOVED]
    net = sorted({r["LATN_ID"] for r in env.rows.rows["VIP_SUMMARY"]})[0]
    source = write_dated_list(tmp_path / "list-v02.csv", rt.spec, [
        (KEPT_1, "42", net, "20260101", "", "U"), (KEPT_2, "42", net, "20260101", "", "U"),
        (REMOVED, "42", net, "20260101", "20261130", "D"), (ADDED, "42", net, "20261201", "", "A")])
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec, "test")
        version = lists.load(source, "2026V02", day=dt.date(2026, 10, 20))
        assert (version.added, version.removed, version.unchanged) == (1, 1, 2)
        lists.publish(version)
    place_list_slices(rt, "2026V02")  # the SFTP outbox now holds both versions' slices


def downloads(env: AgentEnv) -> list[tuple[str, str, str]]:
    """(version, file, channel) of every acknowledged list download on HQ's side."""
    with env.runtime.db.session() as s:
        return sorted((version, name, channel) for version, name, channel in s.execute(
            select(ListVersion.version, ListDownload.file_name, ListDownload.channel)
            .join(ListSlice, ListSlice.id == ListDownload.slice_id)
            .join(ListVersion, ListVersion.id == ListSlice.list_version_id)))


def findings(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] == code]


# -- over the real boundary -----------------------------------------------------------------------
def test_a_late_cycle_is_judged_by_the_list_versions_in_force_during_it(agent_env: AgentEnv, spec: Spec,
                                                                        tmp_path: Path) -> None:
    env = agent_env
    publish_v02(env, tmp_path)

    r = env.run("--json", "fetch-list")
    assert r.returncode == 0, r.stdout + r.stderr
    events = [e for e in json.loads(r.stdout)["events"] if e["event"] == "list"]
    assert [(e["version"], e["result"]) for e in events] == [("2026V01", "new"), ("2026V02", "new")]
    assert (events[1]["added"], events[1]["removed"], events[1]["unchanged"]) == (1, 1, 2)
    kept = env.home / "state" / "lists"
    assert sorted(p.name for p in kept.iterdir()) == ["2026V01", "2026V02"]
    assert sorted(p.name for p in (kept / "2026V01").iterdir()) == ["D_42_2026V01_00.chk",
                                                                     "D_42_2026V01_31101_00_001.txt"]
    if env.transport == "http":  # each download is HQ's acknowledgement (the superseded version's too)
        assert downloads(env) == [("2026V01", "D_42_2026V01_00.chk", "http"),
                                  ("2026V01", "D_42_2026V01_31101_00_001.txt", "http"),
                                  ("2026V02", "D_42_2026V02_00.chk", "http"),
                                  ("2026V02", "D_42_2026V02_31101_00_001.txt", "http")]
    again = env.run("fetch-list")
    assert again.returncode == 0 and "list 名单 2026V02: unchanged (4 rows, 2 version(s) kept)" in again.stdout, again.stdout
    if env.transport == "http":
        assert len(downloads(env)) == 4  # versions already kept are not fetched again
    status = env.run("status")
    assert "list: 2026V02 (4 rows" in status.stdout and "list: 2026V01 (3 rows" in status.stdout, status.stdout

    # validate: two deliveries at once, each judged by its own cycle's list.
    october = env.rows.write(tmp_path / "october")
    december = valid_rows(spec, cycle=LATE).write(tmp_path / "december")
    r = env.run("--json", "validate", str(october), str(december))
    assert r.returncode == 1, r.stdout + r.stderr
    by_period = {rep["period"]: rep for rep in json.loads(r.stdout)}
    assert by_period[CYCLE]["status"] != "rejected", by_period[CYCLE]["findings"]
    assert not findings(by_period[CYCLE], "E604") and not findings(by_period[CYCLE], "X-007")
    late = by_period[LATE]
    assert late["status"] == "rejected"
    [e604] = findings(late, "E604")
    assert e604["value"] == REMOVED
    assert "list 2026V02 removed, valid 20260101–20261130" in e604["message_en"]
    [x007] = findings(late, "X-007")
    assert x007["value"] == ADDED
    assert "list 2026V02 added, valid 20261201–open-ended" in x007["message_en"]

    # submit: 202610 goes to HQ and is accepted there too; 202612 is refused locally, never sent.
    r = env.run("submit", "--cycle", CYCLE)
    assert r.returncode == 0 and f"P_42_{CYCLE}_00: accepted" in r.stdout, r.stdout + r.stderr
    write_exports(spec, valid_rows(spec, cycle=LATE), env.home / "exports", cycle=LATE)
    r = env.run("submit", "--cycle", LATE)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "would be rejected; not sent" in r.stderr
    lines = r.stderr.splitlines()
    [e604_line] = [line for line in lines if "  E604  " in line and REMOVED in line]
    [x007_line] = [line for line in lines if "  X-007  " in line and ADDED in line]
    assert "list 2026V02 removed, valid 20260101–20261130" in e604_line
    assert "list 2026V02 added, valid 20261201–open-ended" in x007_line
    with env.runtime.db.session() as s:
        assert [(d.period, d.status) for d in s.scalars(select(Delivery))] == [(CYCLE, "accepted")]


# -- the agent's parts, with an in-process HQ -----------------------------------------------------
class SliceShelf(Transport):
    """HQ reduced to the list slices it has published: version -> (check file, data file)."""

    def __init__(self) -> None:
        self.slices: dict[str, list[Path]] = {}
        self.asked_known: list[frozenset[str]] = []

    def fetch_lists(self, dest: Path, known: Collection[str] = ()) -> list[tuple[str, list[Path]]]:
        self.asked_known.append(frozenset(known))
        out = []
        for version in sorted(self.slices):
            if version in known:
                continue
            (dest / version).mkdir(parents=True)
            out.append((version, [Path(shutil.copy(p, dest / version / p.name)) for p in self.slices[version]]))
        return out

    def fetch_list(self, dest: Path) -> tuple[str, list[Path]] | None:
        raise AssertionError("the agent asks for every version")

    def send(self, files: Sequence[Path], progress: Progress | None = None) -> Receipt:
        raise AssertionError("not sending here")

    def verdict(self, receipt: Receipt) -> Verdict | None:
        raise AssertionError("not sending here")

    def calendar(self) -> list[CycleInfo]:
        return []


def slice_files(spec: Spec, folder: Path, version: str, entries: list[dict[str, str]]) -> list[Path]:
    """Province 42's slice of a version as HQ writes it (the spec's D_ delivery)."""
    ctype = valid_rows(spec).rows["VIP_CUST_INFO"][0]["C_TYPE_ID"]
    writer = DeliveryWriter(spec, folder, "D", "42", version)
    with writer.unit("TOP500_LIST") as out:
        for rank, e in enumerate(entries, start=1):
            out.write({"LIST_VERSION": version, "CUST_RANK": rank, "CUST_NAME": f"客户{rank}", "GROUP_PARENT_NAME": "",
                       "C_TYPE_ID": ctype, "LEVEL_ID": "1", "HQ_MANAGER_NAME": "王芳",
                       "HQ_MANAGER_PHONE": "010-66660000", "EXP_DATE": "", "CHANGE_TYPE": "U", **e})
    writer.close()
    return sorted(folder.iterdir())


@pytest.fixture
def shelf(spec: Spec, tmp_path: Path) -> SliceShelf:
    """2026V01 and 2026V02 of province 42's slice; in 2026V02 customer 5 moves to Guangdong from 20261201."""
    day = Cycle.parse(CYCLE).begin
    hubei, guangdong = networks(spec, "42", day)[0], networks(spec, "44", day)[0]

    def e(cust: str, eff: str = "20260101", exp: str = "", change: str = "U", prov: str = "42") -> dict[str, str]:
        return {"NATIONAL_CUST_ID": cust, "LEAD_PROV_ID": prov, "LEAD_LATN_ID": hubei if prov == "42" else guangdong,
                "EFF_DATE": eff, "EXP_DATE": exp, "CHANGE_TYPE": change}

    s = SliceShelf()
    s.slices["2026V01"] = slice_files(spec, tmp_path / "hq" / "v01", "2026V01",
                                      [e(KEPT_1, change="A"), e(KEPT_2, change="A"), e(REMOVED, change="A"),
                                       e(MOVED, change="A")])
    s.slices["2026V02"] = slice_files(spec, tmp_path / "hq" / "v02", "2026V02",
                                      [e(KEPT_1), e(KEPT_2), e(REMOVED, exp="20261130", change="D"),
                                       e(ADDED, eff="20261201", change="A"),
                                       e(MOVED, eff="20261201", change="M", prov="44")])
    return s


def make_agent(spec: Spec, tmp_path: Path, transport: Transport, party: str = "42") -> Agent:
    config = tmp_path / party / "kam-agent.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(render_template(spec, party, "http", "http://127.0.0.1:9"), "utf-8")
    return Agent(load_config(config), transport=transport, spec=spec)


def test_list_context_picks_the_entries_in_force_for_each_cycle(spec: Spec, tmp_path: Path,
                                                                shelf: SliceShelf) -> None:
    v02 = shelf.slices.pop("2026V02")
    agent = make_agent(spec, tmp_path, shelf)
    try:
        assert agent.list_context(CYCLE) is None  # nothing kept yet: no list checks
        out = Outcome()
        assert agent.fetch_list(out) == "2026V01"
        only_v01 = agent.list_context(LATE)
        assert only_v01 is not None and only_v01.list_ids == {KEPT_1, KEPT_2, REMOVED, MOVED}
        assert only_v01.list_version == "2026V01"

        shelf.slices["2026V02"] = v02
        out = Outcome()
        assert agent.fetch_list(out) == "2026V02"
        assert shelf.asked_known[-1] == {"2026V01"}  # what is kept is not fetched again
        assert [(e["version"], e["result"]) for e in out.events] == [("2026V02", "new")]
        assert [v["version"] for v in agent.state.list_versions()] == ["2026V02", "2026V01"]

        october = agent.list_context(CYCLE)
        assert october is not None and october.list_complete
        # Customer 3 is still on the list (until 20261130), customer 4 not yet (from 20261201),
        # customer 5 still Hubei's: as 2026V01 and 2026V02 together say for October.
        assert october.list_ids == {KEPT_1, KEPT_2, REMOVED, MOVED}
        assert october.list_version == "2026V01+2026V02"
        assert october.list_explain is not None
        assert "2026V02" in october.list_explain(REMOVED) and "20261130" in october.list_explain(REMOVED)
        november = agent.list_context("202611")
        assert november is not None and november.list_ids == {KEPT_1, KEPT_2, REMOVED, MOVED}  # until 30 Nov
        december = agent.list_context(LATE)
        assert december is not None and december.list_ids == {KEPT_1, KEPT_2, ADDED}
        assert december.list_version == "2026V02" and december.list_explain is not None
        assert "20261130" in december.list_explain(REMOVED)  # why it is not on December's list
        assert "44" in december.list_explain(MOVED)  # led by Guangdong now
        quarter = agent.list_context("2026Q4")  # any day of the period counts
        # ... and the entry of the last such day decides who leads: customer 5 is Guangdong's then.
        assert quarter is not None and quarter.list_ids == {KEPT_1, KEPT_2, REMOVED, ADDED}
        assert agent.list_context(LATE, party="44") is None  # another province's list is not kept here
        assert agent.list_context("2026V02") is None  # not a cycle
    finally:
        agent.close()


def test_a_local_network_checks_its_customers_against_its_provinces_list(spec: Spec, tmp_path: Path,
                                                                         shelf: SliceShelf) -> None:
    network = networks(spec, "42", Cycle.parse(CYCLE).begin)[0]
    agent = make_agent(spec, tmp_path, shelf, party=network)
    try:
        agent.fetch_list(Outcome())
        ctx = agent.list_context(LATE)
        assert ctx is not None and ctx.list_ids == {KEPT_1, KEPT_2, ADDED}
        assert not ctx.list_complete  # E604 for a customer not on it, but no X-007 for the rest
        # A province's agent checking its network's delivery: the same.
        province = make_agent(spec, tmp_path, shelf)
        try:
            province.fetch_list(Outcome())
            theirs = province.list_context(LATE, party=network)
            assert theirs is not None and not theirs.list_complete and theirs.list_ids == ctx.list_ids
        finally:
            province.close()
    finally:
        agent.close()


def test_a_slice_that_does_not_validate_is_not_kept(spec: Spec, tmp_path: Path, shelf: SliceShelf) -> None:
    data = next(p for p in shelf.slices["2026V02"] if p.suffix == ".txt")
    data.write_text(data.read_text("utf-8").replace("20261130", "20251130"), "utf-8")  # EXP before EFF: R31101-01
    agent = make_agent(spec, tmp_path, shelf)
    try:
        with pytest.raises(TransportError, match="2026V02 from HQ does not validate"):
            agent.fetch_list(Outcome())
        assert [v["version"] for v in agent.state.list_versions()] == ["2026V01"]
        assert not (agent.config.lists_dir / "2026V02").exists()
    finally:
        agent.close()


# -- an HQ from before /api/v1/list/versions ------------------------------------------------------
@pytest.fixture
def old_hq(spec: Spec, tmp_path: Path, shelf: SliceShelf) -> Iterator[str]:
    """An HTTP server that knows only ``GET /api/v1/list`` (the current slice) and its files."""
    files = {p.name: p.read_bytes() for p in shelf.slices["2026V02"]}
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server API names it
            seen.append(self.path)
            if self.path == "/api/v1/list":
                body = json.dumps({"version": "2026V02", "files": [
                    {"name": n, "url": f"/api/v1/list/files/{n}"} for n in sorted(files)]}).encode()
            elif self.path.startswith("/api/v1/list/files/") and self.path.rsplit("/", 1)[1] in files:
                body = files[self.path.rsplit("/", 1)[1]]
            else:
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"code": "not_found", "message": "no such route"}')
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    assert "/api/v1/list/versions" in seen


def test_an_old_hq_without_the_versions_route_gives_its_current_slice(old_hq: str, tmp_path: Path) -> None:
    http = HttpTransport(old_hq, "kam_x")
    got = http.fetch_lists(tmp_path / "in")
    assert [(v, sorted(p.name for p in files)) for v, files in got] == [
        ("2026V02", ["D_42_2026V02_00.chk", "D_42_2026V02_31101_00_001.txt"])]
    assert all(p.parent == tmp_path / "in" / "2026V02" and p.stat().st_size > 0 for p in got[0][1])
    assert http.fetch_lists(tmp_path / "again", known={"2026V02"}) == []

