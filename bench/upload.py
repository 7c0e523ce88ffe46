"""Upload benchmark: one ~1 GB delivery over HTTP on loopback, our server against a bare receiver.

    python -m bench.upload               # a 1 GiB delivery (about 6M rows of VIP_CUST_INFO)
    python -m bench.upload --quick       # a 50 MiB smoke run

One valid delivery (a check file and one GB18030 text file of ``31201 VIP_CUST_INFO``) is
streamed to disk by the sample-data customer model in a child process, whose peak memory
is reported. Then, one after another, each with the machine to itself:

- ``reference`` — ``bench/receiver.py``, a stdlib HTTP server that reads the body in 1 MiB
  blocks and discards it (``discard``) or writes it to a file and fsyncs it (``disk``);
- ``ours`` — ``exchange-server serve --workers 0`` as its own process on a fresh data
  directory (SQLite), so only receiving is measured: the body is parsed, hashed and
  archived, the delivery recorded and the receipt answered; validation never starts.

The clients are ``curl -F`` (the same command for both servers) and the province agent's
``HttpTransport``. Peak memory of a server process is its ``VmHWM`` from /proc (since start,
so it includes loading the standard). The receipt's SHA-256s must equal the files'. Each
measurement is taken ``--repeat`` times (dirty pages flushed with ``sync`` before each; the
disk of a virtual machine varies a lot) and the median is reported with every run's time.
The generated files are deleted at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROVINCE = "44"  # bench.data writes Guangdong's deliveries
CYCLE = "202610"
MiB = 1 << 20


# -- processes -------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port that was free a moment ago on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until ``url`` answers 200; RuntimeError if the process dies or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with status {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Process:
    """A server process this benchmark started (only ever stopped by its own pid)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def rss_mib(self) -> float:
        """Resident memory now."""
        return proc_status_kib(self.pid, "VmRSS") / 1024

    def peak_mib(self) -> float:
        """Peak resident memory since the process started."""
        return proc_status_kib(self.pid, "VmHWM") / 1024

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_receiver(log: Path, sink: Path | None = None) -> Process:
    """Start ``bench.receiver`` and wait until it listens."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.receiver", "--port", str(port)] + (["--to", str(sink)] if sink else [])
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    p = Process(proc, f"http://127.0.0.1:{port}", log)
    wait_http(p.url + "/healthz", proc)
    return p


def start_server(data_dir: Path, workers: int, database_url: str | None = None, threads: int | None = None) -> Process:
    """Start ``exchange-server serve`` on a prepared data directory and wait for /healthz."""
    port = free_port()
    cmd = [str(VENV_BIN / "exchange-server"), "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    cmd += ["serve", "--port", str(port), "--sftp-port", str(free_port()), "--workers", str(workers)]
    env = dict(os.environ)
    if threads:
        env["KAM_HTTP_THREADS"] = str(threads)
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    p = Process(proc, f"http://127.0.0.1:{port}", log)
    wait_http(p.url + "/healthz", proc, timeout=120)
    return p


def prepare_instance(data_dir: Path, provinces: Sequence[str], database_url: str | None = None,
                     analyst: bool = False) -> dict[str, str]:
    """Initialise a data directory: one province account and token per party, cycle 202610 open.

    Returns ``{party: token}`` (plus ``"analyst"`` when asked for, an account that sees all).
    """
    import datetime as dt

    from exchange_server.accounts.services import AccountService
    from exchange_server.cycles.services import CycleService
    from exchange_server.runtime import open_runtime
    from exchange_server.setup_service import initialise

    overrides: dict[str, Any] = {"data_dir": str(data_dir)}
    if database_url:
        overrides["database_url"] = database_url
    rt = open_runtime(overrides)
    try:
        initialise(rt)
        tokens: dict[str, str] = {}
        with rt.db.session() as s:
            svc = AccountService(s, "bench")
            for party in provinces:
                acct = svc.create(f"prov{party}", "province", party)
                tokens[party], _ = svc.create_token(acct, "bench")
            if analyst:
                tokens["analyst"], _ = svc.create_token(svc.create("bench-analyst", "analyst"), "bench")
            CycleService(s, rt.spec, "bench").create(
                CYCLE, deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30), state="open")
    finally:
        rt.db.dispose()
    return tokens


# -- data --------------------------------------------------------------------------------------
def _generate_child(size: int, out: str) -> dict[str, Any]:
    """In a child process: write a delivery of about ``size`` bytes; rows, bytes, seconds, peak."""
    from bench.data import unit_delivery

    probe = Path(out) / "probe"
    unit_delivery("31201", 5000, "txt", probe, cycle=CYCLE)
    per_row = sum(p.stat().st_size for p in probe.iterdir() if not p.name.endswith(".chk")) / 5000
    shutil.rmtree(probe)
    rows = max(1000, int(size / per_row))
    t0 = time.perf_counter()
    folder = unit_delivery("31201", rows, "txt", Path(out) / "delivery", cycle=CYCLE)
    seconds = time.perf_counter() - t0
    total = sum(p.stat().st_size for p in folder.iterdir())
    return {"rows": rows, "bytes": total, "seconds": seconds, "folder": str(folder),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def generate(size: int, work: Path) -> dict[str, Any]:
    """Write the delivery in a fresh interpreter (so its peak memory is the generator's own)."""
    out = subprocess.run([sys.executable, "-m", "bench.upload", "--child-generate", str(size), str(work)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def delivery_files(folder: Path) -> list[Path]:
    """The check file first, then the data files."""
    return sorted(folder.iterdir(), key=lambda p: (not p.name.endswith(".chk"), p.name))


# -- measurements -----------------------------------------------------------------------------
@dataclass
class Upload:
    """One timed upload."""

    client: str
    receiver: str
    bytes: int
    seconds: float
    status: int
    peak_mib: float = 0.0
    idle_mib: float = 0.0
    receipt_ok: bool | None = None
    all_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def mb_s(self) -> float:
        """Throughput in MB/s (10^6 bytes)."""
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0


def curl_upload(url: str, files: Sequence[Path], token: str | None, answer: Path) -> tuple[float, int]:
    """``curl -F files=@...`` every file in one request; returns (seconds, HTTP status)."""
    cmd = ["curl", "-sS", "-o", str(answer), "-w", "%{http_code}"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    for p in files:
        cmd += ["-F", f"files=@{p}"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, int(out.stdout.strip() or 0)


def agent_upload(url: str, files: Sequence[Path], token: str) -> tuple[float, int, Any]:
    """The province agent's streamed upload; returns (seconds, HTTP status, answer)."""
    from province_agent.transport import HttpTransport

    t0 = time.perf_counter()
    status, receipt = HttpTransport(url, token, timeout=3600).upload(list(files))
    return time.perf_counter() - t0, status, receipt


def receipt_matches(receipt: Any, expected: dict[str, tuple[int, str]]) -> bool:
    """Whether the receipt lists exactly the files sent, with their sizes and SHA-256s."""
    got = {f["name"]: (f["size"], f["sha256"]) for f in (receipt or {}).get("files", [])}
    return got == expected


def measure_reference(files: Sequence[Path], total: int, work: Path, client: str, sink: str) -> Upload:
    """Upload to the bare receiver (discarding, or writing to a file in ``work``)."""
    target = work / "sink.bin" if sink == "disk" else None
    p = start_receiver(work / f"receiver-{client}-{sink}.log", target)
    try:
        if client == "curl":
            seconds, status = curl_upload(p.url + "/upload", files, None, work / "answer.json")
        else:
            from province_agent.transport import HttpTransport

            t0 = time.perf_counter()
            status, _ = HttpTransport(p.url, "x", timeout=3600).upload(list(files), path="/upload")
            seconds = time.perf_counter() - t0
        return Upload(client, f"reference ({sink})", total, seconds, status, p.peak_mib())
    finally:
        p.stop()
        if target is not None:
            target.unlink(missing_ok=True)


def measure_ours(files: Sequence[Path], total: int, expected: dict[str, tuple[int, str]], work: Path,
                 client: str) -> Upload:
    """Upload to ``exchange-server serve --workers 0`` on a fresh data directory."""
    data_dir = work / f"server-{client}"
    token = prepare_instance(data_dir, [PROVINCE])[PROVINCE]
    p = start_server(data_dir, workers=0)
    try:
        idle = p.rss_mib()
        if client == "curl":
            answer = work / "answer.json"
            seconds, status = curl_upload(p.url + "/api/v1/deliveries", files, token, answer)
            receipt = json.loads(answer.read_text()) if answer.exists() else None
        else:
            seconds, status, receipt = agent_upload(p.url, files, token)
        up = Upload(client, "ours (workers 0)", total, seconds, status, p.peak_mib(), idle,
                    receipt_matches(receipt, expected))
        if status != 202:
            up.notes.append(f"answer {status}: {str(receipt)[:200]}")
        return up
    finally:
        p.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def repeated(times: int, measure: Callable[[], Upload]) -> Upload:
    """Take a measurement ``times`` times (dirty pages flushed before each); the median run, with all times."""
    runs = []
    for _ in range(times):
        os.sync()  # the previous run's writes are not this one's to pay for
        runs.append(measure())
    runs.sort(key=lambda u: u.seconds)
    mid = runs[len(runs) // 2]
    mid.all_seconds = [u.seconds for u in runs]
    mid.peak_mib = max(u.peak_mib for u in runs)
    if any(u.receipt_ok is not None for u in runs):
        mid.receipt_ok = all(bool(u.receipt_ok) for u in runs)
    mid.notes = [n for u in runs for n in u.notes]
    return mid


def run(size: int, work: Path, times: int) -> tuple[dict[str, Any], list[Upload]]:
    """Generate the delivery, then take every measurement, one after another."""
    gen = generate(size, work)
    folder = Path(gen["folder"])
    files = delivery_files(folder)
    expected = {p.name: (p.stat().st_size, sha256_file(p)) for p in files}
    total = sum(size for size, _ in expected.values())
    try:
        results = [
            repeated(times, lambda: measure_reference(files, total, work, "curl", "discard")),
            repeated(times, lambda: measure_reference(files, total, work, "curl", "disk")),
            repeated(times, lambda: measure_ours(files, total, expected, work, "curl")),
            repeated(times, lambda: measure_reference(files, total, work, "agent", "discard")),
            repeated(times, lambda: measure_ours(files, total, expected, work, "agent")),
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return gen, results


def table(results: list[Upload]) -> str:
    """The uploads as a Markdown table, throughput against the discarding receiver with the same client."""
    ref = {u.client: u for u in results if u.receiver == "reference (discard)"}
    lines = ["| client | receiver | bytes | seconds (median) | runs, seconds (sorted) | MB/s | × reference MB/s | "
             "server peak MiB (idle) | receipt SHA-256 |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for u in results:
        r = ref.get(u.client)
        ratio = f"{u.mb_s / r.mb_s:.2f}" if r and r.mb_s else "—"
        idle = f" ({u.idle_mib:.0f})" if u.idle_mib else ""
        ok = "—" if u.receipt_ok is None else ("equal" if u.receipt_ok else "**differ**")
        spread = ", ".join(f"{x:.2f}" for x in u.all_seconds)
        lines.append(f"| {u.client} | {u.receiver} | {u.bytes:,} | {u.seconds:.2f} | {spread} | {u.mb_s:,.0f} | {ratio} | "
                     f"{u.peak_mib:.0f}{idle} | {ok} |")
        lines += [f"|  | ↳ {n} |  |  |  |  |  |  |  |" for n in u.notes]
    return "\n".join(lines)


def scratch(work: Path | None, prefix: str, size: int) -> tuple[Path, int]:
    """The scratch folder (a temporary one unless given) and the delivery size that fits in it."""
    folder = work or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < 4 * size:  # the file, the receiving side's copy and the archive's copy, with room to spare
        size = max(MiB, free // 4)
        print(f"note: only {free / 2**30:.1f} GiB free under {folder}; the delivery is cut to {size / MiB:.0f} MiB")
    return folder, size


def report(gen: dict[str, Any], table_text: str, started: float, machine_note: str, json_path: Path | None,
           runs_key: str, runs: Sequence[Any]) -> None:
    """Print the machine, the delivery and the results table; also write them as JSON if asked."""
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores{machine_note}; wall {time.time() - started:.0f} s")
    print(f"delivery: 1 data file of {gen['rows']:,} rows + check file, {gen['bytes']:,} bytes; written in "
          f"{gen['seconds']:.1f} s, generator peak {gen['peak_mib']:.0f} MiB")
    print(table_text)
    if json_path:
        json_path.write_text(json.dumps({"generate": gen, runs_key: [vars(r) | {"mb_s": r.mb_s} for r in runs]},
                                        indent=2))


def main() -> None:
    """Command line: run the benchmark and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child-generate":
        print(json.dumps(_generate_child(int(sys.argv[2]), sys.argv[3])))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="size of the delivery (default 1024 MiB)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported")
    ap.add_argument("--quick", action="store_true", help="a 50 MiB smoke run, each measurement once")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one under /tmp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    work, size = scratch(a.work, "kam-bench-upload-", (50 if a.quick else a.size_mib) * MiB)
    try:
        started = time.time()
        gen, results = run(size, work, 1 if a.quick else a.repeat)
        report(gen, table(results), started, f", Python {platform.python_version()}", a.json, "uploads", results)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
