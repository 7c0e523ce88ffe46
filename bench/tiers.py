"""Three tiers benchmark: a province's local networks through its hub to HQ, against the province delivering directly.

    python -m bench.tiers                       # province 41 (17 local networks), scale 40, 3 repeats (about 4 minutes)
    python -m bench.tiers --quick               # scale 4, 1 repeat
    python -m bench.tiers --province 42 --scale 10 --repeat 1

**Data**, generated once with the real command: ``exchange-server sample-data --cycle
202610 --scale S --by-network P`` (each local network's own delivery, as its prefecture
sends it to the hub, and HQ's ``00``), and ``exchange-server sample-data --provinces P`` (the
province's one delivery, as a central CRM writes it).

**Every repeat**, on fresh data directories (SQLite) with real servers on loopback in this
process (``Server``: cheroot HTTP, SFTP, ingestion workers, and at the hub its forwarder),
each with one ingestion worker thread polling every 0.05 s (the default is 0.5 s: the
figures are then work, not waiting):

- **HQ**: cycle 202610 open (deadline 30 days ahead), the list published, the province's
  account ``prov<P>`` with a token. Untimed.
- **hub**: ``hub_party = P``, its upstream that HQ over HTTP with ``prov<P>``'s token,
  ``hub_poll_seconds = 0.1``; ``hub sync`` (calendar, list cut into each network's part);
  one prefecture account per network. Untimed.
- **prefecture deliveries at the hub**: the networks' deliveries uploaded to the hub one
  after another with the agent's ``HttpTransport``, each waiting for its verdict: receipt
  latency, and upload start to the hub's verdict (``validated_at``) — receive, validate and
  consolidate at the hub: what the hub adds per prefecture delivery.
- **through the hub**: every network approved in one call (the last approval), then what
  ``exchange-server hub forward`` does (HQ's resend numbers asked, the forward assembled from
  the archived prefecture files, validated as HQ will, archived, queued) and the hub's
  forwarder, woken at once, sends it; HQ receives, validates, consolidates. Timed from the
  approval's commit: forward built, HQ's receipt recorded at the hub (``sent_at``), HQ's
  verdict (HQ's ``validated_at``), the verdict recorded at the hub (``judged_at``).
- **reference**: a fresh HQ, same setup; ``prov<P>`` uploads the forward's data files (the
  same bytes, without the approval manifest) directly as one province delivery: upload start
  to HQ's verdict.
- **direct, sample-data's province delivery**: a fresh HQ; ``prov<P>`` uploads the
  province's own delivery from ``sample-data --provinces P``.

Ratios are against the reference run of the same repeat, then the median over repeats.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.upload import CYCLE, ROOT, VENV_BIN, delivery_files

SERVER_SETTINGS: dict[str, Any] = {"worker_threads": 1, "worker_poll_seconds": 0.05, "sftp_port": 0,
                                   "sftp_scan_seconds": 0.5}
TIMEOUT = 600.0


# -- data ----------------------------------------------------------------------------------------
def generate(work: Path, province: str, scale: int) -> tuple[Path, Path]:
    """(the networks' deliveries + HQ's 00, the province's own delivery folder), via ``exchange-server sample-data``."""
    nets, prov = work / "networks", work / "province"
    for args, out in ((["--by-network", province], nets), (["--provinces", province], prov)):
        subprocess.run([str(VENV_BIN / "exchange-server"), "sample-data", "--cycle", CYCLE, "--out", str(out),
                        "--scale", str(scale), *args], check=True, capture_output=True, cwd=ROOT)
    return nets, prov / province


def rows_of(files: list[Path]) -> int:
    """Data rows of a delivery, from its check file."""
    from schemas.conventions import CheckFile

    check = next(p for p in files if p.name.endswith(".chk"))
    return sum(e.rows for e in CheckFile.parse(check.read_bytes()).entries)


# -- servers -------------------------------------------------------------------------------------
def start_hq(data_dir: Path, hq_files: Path, province: str) -> tuple[Any, str]:
    """A fresh HQ serving on loopback: cycle open, list published, the province's account; (Server, its token)."""
    from exchange_server.accounts.services import AccountService
    from exchange_server.cycles.services import CycleService
    from exchange_server.lists.services import ListService
    from exchange_server.runtime import open_runtime
    from exchange_server.runtime.serve import Server
    from exchange_server.setup_service import initialise

    rt = open_runtime({"data_dir": str(data_dir), **SERVER_SETTINGS})
    initialise(rt)
    with rt.db.session() as s:
        CycleService(s, rt.spec, "bench").create(CYCLE, state="open",
                                                 deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
        svc = AccountService(s, "bench")
        token, _ = svc.create_token(svc.create(f"prov{province}", "province", province), "bench")
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec, "bench")
        lists.publish(lists.load(next(hq_files.glob("D_00_*V*_00.chk"))), "bench", confirm_impact=True)
    return Server(rt, "127.0.0.1", 0, sftp_port=0).start(), token


def start_hub(data_dir: Path, province: str, hq_url: str, token: str) -> tuple[Any, dict[str, str]]:
    """A fresh hub for the province, upstream ``hq_url``, synced, serving; (Server, network -> prefecture token)."""
    from exchange_server.accounts.services import AccountService
    from exchange_server.hub.sync import HubSync
    from exchange_server.hub.upstream import open_upstream
    from exchange_server.org.services import OrgService
    from exchange_server.private_files import write_private
    from exchange_server.runtime import open_runtime
    from exchange_server.runtime.serve import Server
    from exchange_server.setup_service import initialise

    token_file = data_dir.parent / f"{data_dir.name}.hq-token"
    write_private(token_file, token + "\n")
    rt = open_runtime({"data_dir": str(data_dir), **SERVER_SETTINGS, "hub_party": province, "upstream_url": hq_url,
                       "upstream_token_file": str(token_file), "hub_poll_seconds": 0.1})
    initialise(rt)
    tokens: dict[str, str] = {}
    with rt.db.session() as s:
        svc = AccountService(s, "bench")
        for area in OrgService(s).networks_of(province):
            tokens[area.code], _ = svc.create_token(svc.create(f"latn{area.code}", "province", area.code), "bench")
    upstream = open_upstream(rt.settings)
    try:
        HubSync(rt, upstream).run()
    finally:
        upstream.close()
    return Server(rt, "127.0.0.1", 0, sftp_port=0).start(), tokens


def wait_verdict(rt: Any, delivery_id: int) -> Any:
    """The delivery once judged (detached), polling its database every 10 ms."""
    from exchange_server.submissions.models import Delivery

    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        with rt.db.session() as s:
            d = s.get(Delivery, delivery_id)
            if d is not None and d.is_final:
                s.expunge(d)
                return d
        time.sleep(0.01)
    raise TimeoutError(f"delivery {delivery_id}: no verdict in {TIMEOUT:.0f} s")


def stamp(value: dt.datetime | None) -> float:
    """A database UTC timestamp as a Unix time."""
    from exchange_server.clock import as_utc

    assert value is not None
    return as_utc(value).timestamp()


# -- runs ----------------------------------------------------------------------------------------
@dataclass
class Timed:
    """One delivery sent and judged: receipt latency, upload start to verdict, its verdict."""

    name: str
    rows: int
    receipt: float
    verdict: float
    status: str


@dataclass
class Repeat:
    """One repeat's measurements."""

    prefectures: list[Timed] = field(default_factory=list)
    reference: Timed | None = None
    province: Timed | None = None
    hub: dict[str, float] = field(default_factory=dict)  # phase -> seconds from the last approval
    forward: dict[str, Any] = field(default_factory=dict)


def upload_and_wait(server: Any, token: str, files: list[Path], name: str) -> Timed:
    """Upload with the agent's HTTP transport and wait for the verdict."""
    from province_agent.transport import HttpTransport

    client = HttpTransport(server.url, token, timeout=TIMEOUT)
    t0, w0 = time.perf_counter(), time.time()
    _status, receipt = client.upload(files)
    receipt_s = time.perf_counter() - t0
    d = wait_verdict(server.runtime, int(receipt["delivery_id"]))
    return Timed(name, rows_of(files), receipt_s, stamp(d.validated_at) - w0, d.status)


def through_hub(work: Path, nets: Path, province: str, rep: Repeat) -> list[Path]:
    """HQ and the hub; the prefectures deliver, the province approves, the hub forwards; the forward's files."""
    from exchange_server.hub.approval import ApprovalService
    from exchange_server.hub.forward import ForwardService, wait_until_judged
    from exchange_server.hub.forwarder import WAKE, upstream_resend_floor
    from exchange_server.hub.models import Forward
    from exchange_server.submissions.annexes import MANIFEST_SUFFIX
    from exchange_server.submissions.models import Delivery

    hq, token = start_hq(work / "hq", nets / "00", province)
    hub = None
    try:
        hub, tokens = start_hub(work / "hub", province, hq.url, token)
        for net in sorted(tokens):
            rep.prefectures.append(upload_and_wait(hub, tokens[net], delivery_files(nets / net), net))
        rt = hub.runtime
        with rt.db.session() as s:
            approvals = ApprovalService(s, province, rt.archive)
            approvals.approve(CYCLE, [n.latn_id for n in approvals.board(CYCLE)], "bench")
        approved = time.time()  # the last approval is committed
        floor = upstream_resend_floor(rt, CYCLE)  # as `hub forward` does: HQ's resend numbers first
        rep.hub["HQ's resend numbers read"] = time.time() - approved
        with rt.db.session() as s:
            (fwd,) = ForwardService(rt, s).build(CYCLE, "bench", upstream_max=floor)
            forward_id = fwd.id
        rep.hub["forward built (assembled, validated, archived)"] = time.time() - approved
        WAKE.set()
        fwd = wait_until_judged(rt, forward_id, TIMEOUT, interval=0.01)
        with hq.runtime.db.session() as s:
            at_hq = s.get(Delivery, fwd.hq_delivery_id)
            assert at_hq is not None
            received, judged = stamp(at_hq.received_at), stamp(at_hq.validated_at)
        rep.hub["HQ's receipt recorded at the hub"] = stamp(fwd.sent_at) - approved
        rep.hub["HQ's verdict (at HQ)"] = judged - approved
        rep.hub["verdict recorded at the hub"] = stamp(fwd.judged_at) - approved
        rep.forward = {"check": fwd.check_name, "hq_status": fwd.hq_status, "hq_received": received - approved,
                       "hq_judging": judged - received}
        folder = work / "forward"
        with rt.db.session() as s:
            paths = ForwardService(rt, s).materialise(s.get(Forward, forward_id), folder)
        return [p for p in paths if not p.name.endswith(MANIFEST_SUFFIX)]
    finally:
        if hub is not None:
            hub.shutdown()
        hq.shutdown()


def direct(work: Path, hq_files: Path, province: str, files: list[Path], name: str) -> Timed:
    """A fresh HQ; the province uploads ``files`` itself; upload start to HQ's verdict."""
    hq, token = start_hq(work, hq_files, province)
    try:
        return upload_and_wait(hq, token, files, name)
    finally:
        hq.shutdown()


def one_repeat(work: Path, nets: Path, prov_folder: Path, province: str) -> Repeat:
    """The three ways, each on fresh data directories."""
    rep = Repeat()
    forwarded = through_hub(work / "tiers", nets, province, rep)
    rep.reference = direct(work / "reference", nets / "00", province, forwarded, "forward's files")
    rep.province = direct(work / "province", nets / "00", province, delivery_files(prov_folder), "province")
    return rep


# -- report --------------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    """The median (the middle run of three)."""
    return statistics.median(values) if values else float("nan")


def runs(values: list[float]) -> str:
    """All repeats' values, sorted."""
    return ", ".join(f"{v:.2f}" for v in sorted(values))


def tables(reps: list[Repeat], province: str, scale: int) -> str:
    """The side-by-side table and the forward's breakdown, as Markdown."""
    ref = [r.reference.verdict for r in reps if r.reference]
    n = len(reps[0].prefectures)
    rows_net = sum(t.rows for t in reps[0].prefectures)
    assert reps[0].reference is not None and reps[0].province is not None
    ref_rows, prov_rows = reps[0].reference.rows, reps[0].province.rows

    def line(name: str, deliveries: str, rows: int | None, values: list[float], receipt: list[float] | None,
             verdicts: str) -> str:
        ratios = [v / r for v, r in zip(values, ref)]
        rec = f"{median(receipt):.3f}" if receipt else ""
        count = f"{rows:,}" if rows is not None else ""
        return (f"| {name} | {deliveries} | {count} | {rec} | {median(values):.2f} | {runs(values)} | "
                f"{median(ratios):.2f} | {verdicts} |")

    hub_total = [r.hub["HQ's verdict (at HQ)"] for r in reps]
    per_p50 = [median([t.verdict for t in r.prefectures]) for r in reps]
    per_max = [max(t.verdict for t in r.prefectures) for r in reps]
    per_sum = [sum(t.verdict for t in r.prefectures) for r in reps]
    statuses = sorted({t.status for r in reps for t in r.prefectures})
    out = [f"province {province}, {n} local networks, scale {scale}; {len(reps)} repeat(s)", "",
           ("| run | deliveries | rows | receipt s (median) | seconds (median) | runs, seconds (sorted) | "
            "× reference | verdicts |"),
           "|---|---|---:|---:|---:|---|---:|---|",
           line("reference: direct to HQ, the forward's files as one province delivery (upload → HQ's verdict)",
                "1", ref_rows, ref, [r.reference.receipt for r in reps if r.reference],
                ", ".join(sorted({r.reference.status for r in reps if r.reference}))),
           line("direct to HQ, sample-data's province delivery (upload → HQ's verdict)", "1", prov_rows,
                [r.province.verdict for r in reps if r.province], [r.province.receipt for r in reps if r.province],
                ", ".join(sorted({r.province.status for r in reps if r.province}))),
           line("through the hub: last approval → HQ's verdict", f"1 forward of {n}", ref_rows, hub_total, None,
                ", ".join(sorted({str(r.forward.get('hq_status')) for r in reps}))),
           line("through the hub: last approval → verdict recorded at the hub", f"1 forward of {n}", ref_rows,
                [r.hub["verdict recorded at the hub"] for r in reps], None, "—"),
           line("hub, per prefecture delivery: upload → hub's verdict, median of the networks", f"{n}, one at a time",
                int(median([t.rows for t in reps[0].prefectures])), per_p50,
                [median([t.receipt for t in r.prefectures]) for r in reps], ", ".join(statuses)),
           line("hub, per prefecture delivery: upload → hub's verdict, the slowest", "", None, per_max, None, ""),
           line(f"hub, all {n} prefecture deliveries one after another (sum)", f"{n}", rows_net, per_sum,
                [sum(t.receipt for t in r.prefectures) for r in reps], ""),
           "", "| through the hub, from the last approval | seconds (median) | runs, seconds (sorted) |",
           "|---|---:|---|"]
    for phase in reps[0].hub:
        values = [r.hub[phase] for r in reps]
        out.append(f"| {phase} | {median(values):.2f} | {runs(values)} |")
    received = [r.forward["hq_received"] for r in reps]
    judging = [r.forward["hq_judging"] for r in reps]
    out.append(f"| (HQ: receipt of the forward) | {median(received):.2f} | {runs(received)} |")
    out.append(f"| (HQ: receipt → verdict, validation and consolidation) | {median(judging):.2f} | {runs(judging)} |")
    ref_judging = [r.reference.verdict - r.reference.receipt for r in reps if r.reference]
    out.append(f"| (reference, HQ: receipt → verdict) | {median(ref_judging):.2f} | {runs(ref_judging)} |")
    out += ["", "| network | rows | receipt s | upload → hub's verdict s (each repeat) |", "|---|---:|---:|---|"]
    for i, t in enumerate(reps[0].prefectures):
        out.append(f"| {t.name} | {t.rows:,} | {median([r.prefectures[i].receipt for r in reps]):.3f} | "
                   f"{runs([r.prefectures[i].verdict for r in reps])} |")
    return "\n".join(out)


def main() -> None:
    """Command line: run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--province", default="41", help="the hub's province (default 41: 17 local networks)")
    ap.add_argument("--scale", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="scale 4, one repeat: a smoke run")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    a = ap.parse_args()
    scale, repeat = (4, 1) if a.quick else (a.scale, a.repeat)
    work = a.work or Path(tempfile.mkdtemp(prefix="kam-bench-tiers-"))
    work.mkdir(parents=True, exist_ok=True)
    import logging

    logging.basicConfig(level=logging.WARNING)
    started, load = time.time(), os.getloadavg()[0]
    try:
        nets, prov_folder = generate(work / "data", a.province, scale)
        reps = []
        for i in range(repeat):
            rep_dir = work / f"repeat{i}"
            reps.append(one_repeat(rep_dir, nets, prov_folder, a.province))
            shutil.rmtree(rep_dir, ignore_errors=True)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"load average at the start {load:.1f}; wall {time.time() - started:.0f} s")
        print(tables(reps, a.province, scale))
        if a.json:
            a.json.write_text(json.dumps([{"prefectures": [vars(t) for t in r.prefectures],
                                           "reference": vars(r.reference) if r.reference else None,
                                           "province": vars(r.province) if r.province else None,
                                           "hub": r.hub, "forward": r.forward} for r in reps], indent=2))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
