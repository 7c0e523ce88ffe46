"""Page timings for HQ's analysts: the comparison, pivot, late and coverage pages beside the dashboard.

    python -m bench.pages                 # scale 40, three cycles (202510, 202609, 202610), 31 provinces
    python -m bench.pages --scale 4 -n 10 # a quick smoke run

Data: ``exchange-server sample-data`` for each cycle at the scale (the same seed, so the same
national list), HQ's list published, then every province's delivery received and judged by
the real pipeline (``ReceivingService`` + ``IngestionWorker``) on SQLite — except two
provinces in 202610, so the late page and the partial marks have something to show.
The pages are then fetched over HTTP from a live ``Server`` on loopback, signed in through
the sign-in form like a browser (session cookie), one request at a time. Each page is fetched
once untimed (the roll-up cache warm, as an analyst's second visit finds it), then ``-n``
times; p50 and p95 in milliseconds, and the ratio of each p95 to the dashboard's p95 — the
page analysts already use, measured in the same run as the reference.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import math
import platform
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

CYCLES = ("202510", "202609", "202610")
CYCLE = "202610"
LEFT_OUT = ("65", "54")  # no delivery for 202610: late/missing and partial marks have something to show
ANALYST = ("bench-analyst", "bench-analyst-2026")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else float("nan")


def build(work: Path, scale: int) -> tuple[Any, float]:
    """A runtime under ``work`` with three cycles of sample data judged; (runtime, seconds)."""
    from exchange_server.accounts.services import AccountService
    from exchange_server.cycles.services import CycleService
    from exchange_server.ingestion.worker import IngestionWorker
    from exchange_server.lists.services import ListService
    from exchange_server.runtime import open_runtime
    from exchange_server.sample_data.generator import generate
    from exchange_server.setup_service import initialise
    from tests.support.receiving import receive_folder

    started = time.perf_counter()
    rt = open_runtime({"data_dir": str(work / "data"), "database_url": f"sqlite:///{work / 'exchange.db'}",
                       "worker_poll_seconds": 0.05, "sftp_port": 0})
    initialise(rt)
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    for cycle_id in CYCLES:
        generate(rt.spec, cycle_id, work / cycle_id, scale=scale, fmt="txt", seed=7)
    provinces = sorted(p.name for p in (work / CYCLE).iterdir() if p.is_dir() and p.name != "00")
    with rt.db.session() as s:
        cycles = CycleService(s, rt.spec, "bench")
        for cycle_id in CYCLES:
            cycles.create(cycle_id, deadline=deadline, state="open")
        accounts = AccountService(s, "bench")
        accounts.create(ANALYST[0], "analyst", display_name="Bench analyst", password=ANALYST[1])
        for party in provinces:
            accounts.create(f"prov{party}", "province", party)
    by_version = {p.name: p for c in CYCLES for p in (work / c / "00").glob("D_00_*V*_00.chk")}
    for year_list in (by_version[name] for name in sorted(by_version)):
        with rt.db.session() as s:
            lists = ListService(s, rt.archive, rt.spec)
            lists.publish(lists.load(year_list), "bench", confirm_impact=True)
    for cycle_id in CYCLES:
        for party in provinces:
            if not (cycle_id == CYCLE and party in LEFT_OUT):
                receive_folder(rt, f"prov{party}", work / cycle_id / party)
        IngestionWorker(rt, "bench").drain()
    return rt, time.perf_counter() - started


class Browser:
    """A signed-in HTTP client: the sign-in form's CSRF token and the session cookie, like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def sign_in(self, user: str, password: str) -> None:
        """GET the sign-in page for its token, POST the form; raises unless the dashboard follows."""
        page = self.opener.open(self.base + "/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if not token:
            raise RuntimeError("no CSRF token on the sign-in page")
        form = urllib.parse.urlencode({"csrf_token": token.group(1), "username": user, "password": password})
        self.opener.open(self.base + "/login", data=form.encode())

    def get(self, path: str) -> tuple[int, float, int]:
        """(status, seconds, bytes) of one GET."""
        started = time.perf_counter()
        try:
            with self.opener.open(self.base + path) as answer:
                body = answer.read()
                return answer.status, time.perf_counter() - started, len(body)
        except urllib.error.HTTPError as refused:
            return refused.code, time.perf_counter() - started, len(refused.read())


def pages(cycle: str) -> dict[str, str]:
    """The pages timed, by label; the dashboard first (the reference)."""
    return {
        "dashboard (reference)": f"/analyst/{cycle}",
        "compare by province": f"/analyst/{cycle}/compare?by=province",
        "compare by local network": f"/analyst/{cycle}/compare?by=network",
        "compare by product": f"/analyst/{cycle}/compare?by=product",
        "pivot province × product": f"/analyst/pivot?rows=province&cols=product&measure=top500_income_amt&from={CYCLES[0]}&to={cycle}",
        "pivot local network × cycle": f"/analyst/pivot?rows=network&cols=cycle&from={CYCLES[0]}&to={cycle}",
        "late and missing": f"/analyst/{cycle}/late",
        "top-500 coverage": f"/analyst/{cycle}/coverage",
    }


def main(argv: list[str] | None = None) -> int:
    """Build the data, time the pages, print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=40)
    ap.add_argument("-n", type=int, default=40, help="timed requests per page")
    args = ap.parse_args(argv)
    from exchange_server.runtime.serve import Server

    with tempfile.TemporaryDirectory(prefix="kam-bench-pages-") as tmp:
        rt, build_s = build(Path(tmp), args.scale)
        server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=0, sftp=False)
        try:
            client = Browser(server.url)
            client.sign_in(*ANALYST)
            rows = []
            for label, path in pages(CYCLE).items():
                status, _s, size = client.get(path)  # warm: the roll-up cache, as a second visit finds it
                times = [client.get(path)[1] for _ in range(args.n)]
                rows.append((label, path, status, size, percentile(times, 50), percentile(times, 95)))
        finally:
            server.shutdown()
            rt.db.dispose()
    ref = rows[0][5]
    print(f"# bench.pages — scale {args.scale}, cycles {', '.join(CYCLES)}, {args.n} requests per page; "
          f"{platform.machine()}, Python {platform.python_version()}, data built in {build_s:.0f} s\n")
    print("| page | path | status | KiB | p50 ms | p95 ms | p95 ÷ dashboard p95 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, path, status, size, p50, p95 in rows:
        print(f"| {label} | `{path}` | {status} | {size / 1024:.0f} | {p50 * 1000:.1f} | {p95 * 1000:.1f} | "
              f"{p95 / ref:.2f} |")
    return 0 if all(r[2] == 200 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
