"""Cycle benchmark: 31 provinces deliver a whole cycle at once, against sequential and local floors.

    python -m bench.cycle                      # scales 1, 4, 40; 1 and 2 worker threads, 2 processes; SQLite
    python -m bench.cycle --postgres           # the same, plus a throwaway PostgreSQL
    python -m bench.cycle --quick              # scale 1, workers 1 only

For each scale, a national cycle (``exchange-server sample-data --cycle 202610``; the 31
province folders, not HQ's ``00``) is generated once. Then, one after another:

- ``validate locally`` — ``province-agent validate`` of the 31 folders in one command
  (timed as a user would run it, interpreter start included): the validation floor;
- ``sequential`` — the 31 uploads one after another to ``exchange-server serve
  --workers 0``: the receipt-latency floor, with no validation competing;
- ``concurrent, N worker threads`` — ``serve --workers N`` on a fresh data directory, 31
  threads released together, each uploading its province's delivery with the agent's
  ``HttpTransport`` under that province's token; one analyst account polls the delivery
  list until all 31 have a verdict;
- ``concurrent, N worker processes`` — the same against ``serve --workers 0`` plus N
  ``exchange-server worker`` processes sharing the queue (server peak memory is then the
  sum of the processes' peaks).

Receipt latency is the time from starting an upload to its 202 answer. Time to all verdicts
runs from the release of the threads to the latest ``validated_at`` the server recorded;
validation throughput is the rows of all 31 deliveries over that time. Every run must give
31 distinct delivery ids and 31 verdicts, all accepted.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.upload import CYCLE, ROOT, VENV_BIN, Process, delivery_files, prepare_instance, start_server

TERMINAL = ("accepted", "accepted_with_warnings", "rejected", "failed")
ACCEPTED = ("accepted", "accepted_with_warnings")


@dataclass
class Run:
    """One way of getting the 31 deliveries through."""

    name: str
    scale: int
    deliveries: int
    rows: int
    latencies: list[float] = field(default_factory=list)
    verdict_seconds: float | None = None
    verdicts: dict[str, int] = field(default_factory=dict)
    distinct_ids: int | None = None
    peak_mib: float | None = None
    wall: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float | None:
        """Validation throughput, when this run validated."""
        return self.rows / self.verdict_seconds if self.verdict_seconds else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- data ----------------------------------------------------------------------------------------
def generate(scale: int, work: Path) -> tuple[dict[str, list[Path]], int]:
    """A national cycle at ``scale``: {province: files, check file first} and the total data rows."""
    from schemas.conventions import CheckFile

    out = work / f"scale{scale}"
    subprocess.run([str(VENV_BIN / "exchange-server"), "sample-data", "--cycle", CYCLE, "--out", str(out),
                    "--scale", str(scale)], check=True, capture_output=True, cwd=ROOT)
    deliveries = {d.name: delivery_files(d) for d in sorted(out.iterdir()) if d.is_dir() and d.name != "00"}
    rows = 0
    for files in deliveries.values():
        rows += sum(e.rows for e in CheckFile.parse(files[0].read_bytes()).entries)
    return deliveries, rows


# -- runs ----------------------------------------------------------------------------------------
def validate_locally(deliveries: dict[str, list[Path]], rows: int, scale: int) -> Run:
    """``province-agent validate`` on the 31 folders in one command: the validation floor."""
    folders = [str(files[0].parent) for files in deliveries.values()]
    t0 = time.perf_counter()
    out = subprocess.run([str(VENV_BIN / "province-agent"), "validate", "--format", "json", *folders],
                         capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    reports = json.loads(out.stdout)
    run = Run("validate locally (province-agent)", scale, len(deliveries), rows, verdict_seconds=seconds,
              wall=seconds)
    run.verdicts = dict(Counter(r["status"] for r in reports))
    return run


def sequential(deliveries: dict[str, list[Path]], rows: int, scale: int, work: Path,
               database_url: str | None) -> Run:
    """The 31 uploads one after another to a server that only receives: the latency floor."""
    from province_agent.transport import HttpTransport

    data_dir = work / f"seq-{scale}"
    tokens = prepare_instance(data_dir, list(deliveries), database_url)
    server = start_server(data_dir, workers=0, database_url=database_url)
    run = Run("sequential uploads (workers 0)", scale, len(deliveries), rows)
    ids = set()
    try:
        t0 = time.perf_counter()
        for party, files in deliveries.items():
            t = time.perf_counter()
            status, receipt = HttpTransport(server.url, tokens[party]).upload(files)
            run.latencies.append(time.perf_counter() - t)
            ids.add(receipt["delivery_id"])
            if status != 202:
                run.notes.append(f"{party}: answer {status}")
        run.wall = time.perf_counter() - t0
        run.distinct_ids = len(ids)
        run.peak_mib = server.peak_mib()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return run


def _parse_time(stamp: str) -> float:
    """An ISO timestamp from the API as a Unix time."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def start_worker(data_dir: Path, database_url: str | None, log: Path) -> Process:
    """An ``exchange-server worker`` process (one ingestion thread) on the same data directory and database."""
    cmd = [str(VENV_BIN / "exchange-server"), "--data-dir", str(data_dir)]
    cmd += ["--database-url", database_url] if database_url else []
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd + ["worker"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return Process(proc, "", log)


def concurrent(deliveries: dict[str, list[Path]], rows: int, scale: int, work: Path, workers: int,
               database_url: str | None, db_label: str, timeout: float, processes: bool = False) -> Run:
    """31 threads upload together to ``serve --workers N`` (or N worker processes); wait for every verdict."""
    from province_agent.transport import HttpError, HttpTransport

    kind = "process" if processes else "thread"
    data_dir = work / f"conc-{scale}-{workers}-{kind}-{db_label}"
    tokens = prepare_instance(data_dir, list(deliveries), database_url, analyst=True)
    server = start_server(data_dir, workers=0 if processes else workers, database_url=database_url)
    helpers = [start_worker(data_dir, database_url, work / f"{data_dir.name}-worker{i}.log")
               for i in range(workers if processes else 0)]
    run = Run(f"concurrent, {workers} worker {kind}{'es' if processes and workers > 1 else ''}"
              f"{'s' if not processes and workers > 1 else ''} ({db_label})", scale, len(deliveries), rows)
    barrier = threading.Barrier(len(deliveries) + 1)
    answers: dict[str, tuple[float, int, Any]] = {}
    errors: dict[str, str] = {}
    lock = threading.Lock()

    def upload(party: str, files: list[Path]) -> None:
        client = HttpTransport(server.url, tokens[party], timeout=600)
        barrier.wait()
        t = time.perf_counter()
        try:
            status, receipt = client.upload(files)
        except (HttpError, OSError) as exc:
            with lock:
                errors[party] = str(exc)[:200]
            return
        with lock:
            answers[party] = (time.perf_counter() - t, status, receipt)

    threads = [threading.Thread(target=upload, args=(p, f), name=f"upload-{p}") for p, f in deliveries.items()]
    try:
        for t in threads:
            t.start()
        barrier.wait()
        released_wall, released = time.time(), time.perf_counter()
        for t in threads:
            t.join()
        listing = _poll_verdicts(HttpTransport(server.url, tokens["analyst"]), len(answers), released + timeout)
        run.wall = time.perf_counter() - released
        run.peak_mib = server.peak_mib() + sum(h.peak_mib() for h in helpers)
    finally:
        for h in helpers:
            h.stop()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    run.latencies = [a[0] for a in answers.values()]
    run.distinct_ids = len({a[2]["delivery_id"] for a in answers.values()})
    run.notes += [f"{p}: upload failed: {e}" for p, e in sorted(errors.items())]
    run.notes += [f"{p}: answer {a[1]}" for p, a in sorted(answers.items()) if a[1] != 202]
    run.verdicts = dict(Counter(d["status"] for d in listing))
    done = [_parse_time(d["validated_at"]) for d in listing if d["status"] in TERMINAL and d.get("validated_at")]
    if done and len(done) == len(deliveries):
        run.verdict_seconds = max(done) - released_wall
    for d in listing:
        if d["status"] not in ACCEPTED:
            run.notes.append(f"{d.get('party')}: {d['status']} {d.get('failure') or ''} "
                             f"{[c['code'] for c in d.get('counts', [])]}"[:200])
    return run


def _poll_verdicts(client: Any, expected: int, deadline: float, every: float = 0.25) -> list[dict[str, Any]]:
    """The cycle's deliveries once ``expected`` of them have a verdict (or at the deadline)."""
    while True:
        items = client.get_json("/api/v1/deliveries", {"cycle": CYCLE, "per_page": 500})["items"]
        if sum(d["status"] in TERMINAL for d in items) >= expected or time.perf_counter() > deadline:
            return list(items)
        time.sleep(every)


# -- report --------------------------------------------------------------------------------------
def table(runs: list[Run]) -> str:
    """The runs as a Markdown table, with ratios against the floors of the same scale."""
    lines = ["| scale | run | deliveries | rows | receipt p50 s | p95 s | max s | × seq. p95 | all verdicts s | "
             "rows/s | × local time | verdicts | ids | server peak MiB |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    floors = {r.scale: r for r in runs if r.name.startswith("validate locally")}
    seqs = {r.scale: r for r in runs if r.name.startswith("sequential")}
    for r in runs:
        lat = "|  |  |  |  |"
        if r.latencies:
            seq = seqs.get(r.scale)
            p95 = percentile(r.latencies, 95)
            ratio = f"{p95 / percentile(seq.latencies, 95):.1f}" if seq and seq.latencies else "—"
            lat = (f"| {percentile(r.latencies, 50):.3f} | {p95:.3f} | {max(r.latencies):.3f} | {ratio} |")
        floor = floors.get(r.scale)
        vs = f"{r.verdict_seconds:.2f}" if r.verdict_seconds else ("—" if not r.verdicts else "**incomplete**")
        rps = f"{r.rows_per_s:,.0f}" if r.rows_per_s else ""
        x = f"{r.verdict_seconds / floor.verdict_seconds:.1f}" if floor and r.verdict_seconds and floor.verdict_seconds \
            else ""
        verdicts = ", ".join(f"{n} {k}" for k, n in sorted(r.verdicts.items())) or "—"
        peak = f"{r.peak_mib:.0f}" if r.peak_mib else ""
        ids = "" if r.distinct_ids is None else str(r.distinct_ids)
        lines.append(f"| {r.scale} | {r.name} | {r.deliveries} | {r.rows:,} {lat} {vs} | {rps} | {x} | {verdicts} | "
                     f"{ids} | {peak} |")
        lines += [f"|  | ↳ {n} |" + "  |" * 12 for n in r.notes[:10]]
    return "\n".join(lines)


def main() -> None:
    """Command line: run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,4,40", help="sample-data scales, comma-separated (default 1,4,40)")
    ap.add_argument("--workers", default="1,2", help="ingestion worker threads in serve, comma-separated (default 1,2)")
    ap.add_argument("--worker-processes", default="2",
                    help="also: serve --workers 0 plus this many `exchange-server worker` processes (default 2; "
                         "empty: skip)")
    ap.add_argument("--postgres", action="store_true", help="also run the concurrent runs on a throwaway PostgreSQL")
    ap.add_argument("--quick", action="store_true", help="scale 1, 1 worker: a smoke run")
    ap.add_argument("--timeout", type=float, default=900, help="give up waiting for verdicts after this many s")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    scales = [1] if a.quick else [int(s) for s in a.scales.split(",")]
    worker_counts = [1] if a.quick else [int(w) for w in a.workers.split(",")]
    process_counts = [] if a.quick or not a.worker_processes else [int(w) for w in a.worker_processes.split(",")]
    work = a.work or Path(tempfile.mkdtemp(prefix="kam-bench-cycle-"))
    work.mkdir(parents=True, exist_ok=True)
    pg = _start_postgres() if a.postgres else None
    runs: list[Run] = []
    try:
        started = time.time()
        for scale in scales:
            deliveries, rows = generate(scale, work)
            runs.append(validate_locally(deliveries, rows, scale))
            runs.append(sequential(deliveries, rows, scale, work, None))
            variants = [(w, False) for w in worker_counts] + [(p, True) for p in process_counts]
            for w, processes in variants:
                runs.append(concurrent(deliveries, rows, scale, work, w, None, "SQLite", a.timeout, processes))
                if pg is not None:
                    url = pg.create_database(f"bench_{scale}_{w}_{'p' if processes else 't'}")
                    runs.append(concurrent(deliveries, rows, scale, work, w, url, "PostgreSQL", a.timeout, processes))
            shutil.rmtree(work / f"scale{scale}", ignore_errors=True)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"wall {time.time() - started:.0f} s")
        print(table(runs))
        if a.json:
            a.json.write_text(json.dumps([vars(r) | {"rows_per_s": r.rows_per_s} for r in runs], indent=2))
    finally:
        if pg is not None:
            pg.stop()
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _start_postgres() -> Any:
    """A throwaway PostgreSQL (initdb + pg_ctl, fsync off) from the test support code; SystemExit when none."""
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("--postgres: no initdb/pg_ctl found (pg_config --bindir or /usr/lib/postgresql/*/bin)")
    return PostgresServer(bindir).start()


if __name__ == "__main__":
    main()
