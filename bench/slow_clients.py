"""Slow-clients benchmark: /healthz and real uploads while slow clients hold connections open.

    python -m bench.slow_clients                    # 0 and 200 slow clients, 30 s each
    python -m bench.slow_clients --slow 0,50,200 --seconds 40 --uploads 10

``exchange-server serve --workers 0`` runs as its own process on a fresh data directory
(SQLite; only receiving is measured, validation never starts). For each number of slow
clients, in turn:

- the slow clients connect (one asyncio loop in this process) and are kept at that number
  for the whole window, each reconnecting as soon as the server closes it. They are split
  in three kinds: ``trickle`` sends a request line, then one header byte a second and never
  ends its headers (slowloris); ``partial`` sends a request line and one header, then
  nothing (``(printf 'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n'; sleep 30) | nc``);
  ``keep-alive`` completes a ``GET /healthz`` and then holds the connection idle;
- after a 2 s ramp, one thread probes ``GET /healthz`` on a new connection every 0.2 s
  (10 s client timeout) and another uploads distinct valid deliveries one after another
  with the province agent's ``HttpTransport`` (a ``valid_rows(spec, customers=8000)``
  delivery of tests/support/deliveries.py, about 2.8 MB in six data files, 60 s client
  timeout), until the window ends or ``--uploads`` are done.

Reported: /healthz and upload latency (p50, p95, max) and how many failed (timeout, reset,
an answer other than 200/202), how long the server let each kind of slow client live
(its close or cut-off), and the server's peak thread count (``Threads`` in /proc).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bench.cycle import percentile
from bench.upload import ROOT, Process, delivery_files, prepare_instance, proc_status_kib, start_server

PARTY = "42"  # valid_rows writes Hubei's deliveries
KINDS = ("trickle", "partial", "keep-alive")
REQUEST_LINE = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n"


# -- the slow clients ----------------------------------------------------------------------------
@dataclass
class SlowStats:
    """What happened to the slow clients of one window."""

    connects: Counter[str] = field(default_factory=Counter)
    connect_failures: Counter[str] = field(default_factory=Counter)
    lifetimes: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    answers: Counter[str] = field(default_factory=Counter)  # status lines the server sent them


class SlowClients:
    """``count`` slow clients on one asyncio loop in a thread, kept at that number until stopped."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host, self.port, self.count = host, port, count
        self.stats = SlowStats()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="slow-clients", daemon=True)
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Connect every client (returns at once; they keep reconnecting until stop())."""
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    async def _start(self) -> None:
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._client(KINDS[i % len(KINDS)])) for i in range(self.count)]

    def stop(self) -> None:
        """Close every client and the loop."""
        async def _stop() -> None:
            assert self._stop is not None
            self._stop.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _client(self, kind: str) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
            except (OSError, asyncio.TimeoutError):
                self.stats.connect_failures[kind] += 1
                await asyncio.sleep(0.5)
                continue
            self.stats.connects[kind] += 1
            t0 = time.monotonic()
            try:
                if kind == "keep-alive":
                    writer.write(REQUEST_LINE + b"\r\n")
                    await writer.drain()
                    await self._read_answer(reader)
                    t0 = time.monotonic()  # idle from here
                    closed = await self._until_closed(reader)
                elif kind == "partial":
                    writer.write(REQUEST_LINE)
                    await writer.drain()
                    closed = await self._until_closed(reader)
                else:
                    writer.write(REQUEST_LINE)
                    await writer.drain()
                    closed = await self._trickle(reader, writer)
            except asyncio.TimeoutError:  # before OSError: it is one since Python 3.11
                self.stats.answers["(no answer within 30 s)"] += 1
                closed = False
            except (OSError, asyncio.IncompleteReadError):
                closed = True  # reset by the server, or closed before its whole answer
            if closed:
                self.stats.lifetimes[kind].append(time.monotonic() - t0)
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _read_answer(self, reader: asyncio.StreamReader) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        self.stats.answers[head.split(b"\r\n", 1)[0].decode("latin-1")] += 1
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)

    async def _until_closed(self, reader: asyncio.StreamReader) -> bool:
        """Wait until the server closes the connection (True) or the window ends (False)."""
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.5)
            except asyncio.TimeoutError:
                continue
            if not data:
                return True
            self._note_answer(data)
        return False

    async def _trickle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One header byte a second, never ending the headers, until the server gives up on us."""
        assert self._stop is not None
        header = b"X-Slow-Header: " + b"a" * 4000 + b"\r\n"
        i = 0
        while not self._stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except asyncio.TimeoutError:
                writer.write(header[i % len(header):i % len(header) + 1])
                await writer.drain()
                i += 1
                continue
            if not data:
                return True
            self._note_answer(data)
        return False

    def _note_answer(self, data: bytes) -> None:
        if data.startswith(b"HTTP/"):
            self.stats.answers[data.split(b"\r\n", 1)[0].decode("latin-1")] += 1


# -- the measuring clients -----------------------------------------------------------------------
@dataclass
class Window:
    """One measurement window: latencies of what succeeded, and what failed."""

    slow: int
    healthz: list[float] = field(default_factory=list)
    healthz_failed: Counter[str] = field(default_factory=Counter)
    uploads: list[float] = field(default_factory=list)
    uploads_failed: Counter[str] = field(default_factory=Counter)
    peak_threads: int = 0
    slow_stats: SlowStats | None = None


def _failure(exc: BaseException) -> str:
    return type(exc).__name__ + (f" {exc.status}" if hasattr(exc, "status") else "")


def probe_healthz(host: str, port: int, until: float, window: Window) -> None:
    """GET /healthz on a new connection every 0.2 s until ``until``."""
    while time.monotonic() < until:
        t = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                window.healthz.append(time.perf_counter() - t)
            else:
                window.healthz_failed[f"answer {resp.status}"] += 1
        except (OSError, http.client.HTTPException) as exc:
            window.healthz_failed[_failure(exc)] += 1
        finally:
            conn.close()
        time.sleep(max(0.0, 0.2 - (time.perf_counter() - t)))


def upload_deliveries(url: str, token: str, deliveries: Sequence[list[Path]], until: float, window: Window) -> None:
    """Upload the deliveries one after another until ``until``."""
    from province_agent.transport import HttpError, HttpTransport

    for files in deliveries:
        if time.monotonic() >= until:
            return
        t = time.perf_counter()
        try:
            status, _ = HttpTransport(url, token, timeout=60).upload(files)
        except (HttpError, OSError, http.client.HTTPException) as exc:
            window.uploads_failed[_failure(exc)] += 1
            continue
        if status in (200, 202):
            window.uploads.append(time.perf_counter() - t)
        else:
            window.uploads_failed[f"answer {status}"] += 1


def measure(server: Process, token: str, deliveries: Sequence[list[Path]], slow: int, seconds: float) -> Window:
    """One window with ``slow`` slow clients."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    window = Window(slow)
    clients = SlowClients(host, port, slow) if slow else None
    if clients:
        clients.start()
        time.sleep(2)  # let them all connect
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=probe_healthz, args=(host, port, until, window)),
               threading.Thread(target=upload_deliveries, args=(server.url, token, deliveries, until, window))]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        window.peak_threads = max(window.peak_threads, proc_status_kib(server.pid, "Threads"))
        time.sleep(0.2)
    if clients:
        clients.stop()
        window.slow_stats = clients.stats
    return window


# -- data ----------------------------------------------------------------------------------------
def write_deliveries(count: int, customers: int, out: Path) -> list[list[Path]]:
    """``count`` distinct valid deliveries of province 42 (resend numbers 0, 1, ...)."""
    sys.path.insert(0, str(ROOT))
    from schemas import load_spec
    from tests.support.deliveries import valid_rows

    rows = valid_rows(load_spec(), PARTY, customers=customers)
    return [delivery_files(rows.write(out / f"d{i:02d}", resend=i)) for i in range(count)]


# -- report --------------------------------------------------------------------------------------
def _lat(values: list[float], failed: Counter[str]) -> str:
    total = len(values) + sum(failed.values())
    ok = f"{len(values)}/{total}"
    if not values:
        return f"— | — | — | {ok}"
    return (f"{percentile(values, 50) * 1000:.0f} | {percentile(values, 95) * 1000:.0f} | "
            f"{max(values) * 1000:.0f} | {ok}")


def table(label: str, windows: list[Window]) -> str:
    """The windows as a Markdown table."""
    lines = [("| server | slow clients | /healthz p50 ms | p95 ms | max ms | answered | upload p50 ms | p95 ms | "
              "max ms | answered | server threads (peak) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for w in windows:
        lines.append(f"| {label} | {w.slow} | {_lat(w.healthz, w.healthz_failed)} | "
                     f"{_lat(w.uploads, w.uploads_failed)} | {w.peak_threads} |")
        for what, failed in (("/healthz", w.healthz_failed), ("upload", w.uploads_failed)):
            if failed:
                notes.append(f"- {label}, {w.slow} slow clients, {what} failures: "
                             + ", ".join(f"{n}× {k}" for k, n in failed.most_common()))
        s = w.slow_stats
        if s:
            parts = []
            for kind in KINDS:
                life = s.lifetimes[kind]
                closed = (f"{len(life)} closed by the server after {percentile(life, 50):.1f} s (p50), "
                          f"{max(life):.1f} s (max)" if life else "none closed by the server")
                parts.append(f"{kind}: {s.connects[kind]} connections, {closed}"
                             + (f", {s.connect_failures[kind]} failed to connect" if s.connect_failures[kind] else ""))
            answers = ", ".join(f"{n}× {k!r}" for k, n in s.answers.most_common())
            notes.append(f"- {label}, {w.slow} slow clients: " + "; ".join(parts)
                         + (f"; answers they got: {answers}" if answers else ""))
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> None:
    """Command line: run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slow", default="0,200", help="numbers of slow clients, comma-separated (default 0,200)")
    ap.add_argument("--seconds", type=float, default=30, help="measurement window per number (default 30)")
    ap.add_argument("--uploads", type=int, default=10, help="at most this many uploads per window (default 10)")
    ap.add_argument("--customers", type=int, default=8000, help="customers per delivery (default 8000: ~2.8 MB)")
    ap.add_argument("--label", default="serve", help="the server's name in the table")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kam-bench-slow-"))
    started = time.time()
    try:
        deliveries = write_deliveries(a.uploads * len(a.slow.split(",")), a.customers, work / "deliveries")
        size = sum(p.stat().st_size for p in deliveries[0])
        data_dir = work / "server"
        token = prepare_instance(data_dir, [PARTY])[PARTY]
        server = start_server(data_dir, workers=0)
        windows = []
        try:
            for i, slow in enumerate(int(x) for x in a.slow.split(",")):
                batch = deliveries[i * a.uploads:(i + 1) * a.uploads]
                windows.append(measure(server, token, batch, slow, a.seconds))
        finally:
            server.stop()
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"open files limit {_nofile()}; wall {time.time() - started:.0f} s")
        print(f"delivery: {len(deliveries[0])} files, {size:,} bytes; window {a.seconds:.0f} s per row")
        print(table(a.label, windows))
        if a.json:
            a.json.write_text(json.dumps([vars(w) | {"slow_stats": vars(w.slow_stats) if w.slow_stats else None}
                                          for w in windows], indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _nofile() -> str:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}/{hard}"


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
