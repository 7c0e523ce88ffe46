"""Consolidation benchmark: is accepting the 31st province as cheap as the 1st, and how fast is the roll-up?

    python -m bench.consolidation                    # scale 2290 (about 5M detail rows), SQLite
    python -m bench.consolidation --scale 200 --postgres
    python -m bench.consolidation --quick            # scale 20, 10 requests per format
    python -m bench.consolidation --data DIR         # reuse an earlier `sample-data` output for that scale

A national cycle 202610 comes from ``exchange-server sample-data --format txt --scale N``
(HQ's list ``00/D_00_2026V01_00.chk`` is loaded and published first, untimed). The 31
province deliveries are then received and accepted one at a time, in process, exactly as
the server does it: ``ReceivingService.receive`` (archive + record + queue), then one
``IngestionWorker.run_once()`` (context, validation, and in one transaction the verdict,
the versions and ``Consolidator.apply`` per unit). Timed per delivery: the whole
``run_once``, its recording transaction (``IngestionWorker._record``, commit included) and
the ``Consolidator.apply`` calls inside it (a timing wrapper). The order puts the two
provinces of the closest size (among the larger half) first and last, so the 1st and 31st
acceptance move about the same number of rows. Afterwards the 1st province's delivery is
consolidated again into an empty scratch cycle on the now full tables (rolled back): the
same rows, with 31 provinces' facts already in the tables.

Roll-up downloads: if ``exchange_server.consolidation.exports`` (``rollup_json`` /
``rollup_csv`` / ``rollup_xlsx``) and the ``GET /api/v1/reports/<cycle>`` route exist, they
are used (over HTTP with a live ``Server`` when the route exists); otherwise the download is
``RollupService(session, spec).rollup(cycle)`` + ``json.dumps`` in process, one fresh session
per request. The references are plain ``GROUP BY`` queries over the same rows in the same
database, timed the same way. Each breakdown of the roll-up is also timed on its own.

The first download after an acceptance (issue 13): with every province accepted, a small
delivery is accepted again and again — a province's 32001 and 32003 with one network's
revenue moved, a new resend each time, checked against its accepted 31203 like any partial
correction — either into the cycle itself or into the cycle before it (which the cycle's
month on month reads). Right after each acceptance one download of the cycle is timed (the
first, which the acceptance has made stale), then the same download again (cached). JSON,
CSV and XLSX take turns; the plain GROUP BY references are timed beside them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CYCLE = "202610"
PREVIOUS_CYCLE = "202609"
SCRATCH_CYCLE = "202611"
DETAIL_UNITS = ("31201", "31202", "31203")
UNITS = ("31201", "31202", "31203", "32001", "32002", "32003")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- data ----------------------------------------------------------------------------------------
def generate(scale: int, out: Path) -> float:
    """``exchange-server sample-data`` at ``scale`` into ``out`` (skipped when already there); seconds."""
    if (out / "00" / "D_00_2026V01_00.chk").exists() and len([d for d in out.iterdir() if d.is_dir()]) >= 32:
        return 0.0
    t0 = time.perf_counter()
    subprocess.run([str(VENV_BIN / "exchange-server"), "sample-data", "--cycle", CYCLE, "--out", str(out),
                    "--scale", str(scale), "--format", "txt"], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def unit_rows_of(folder: Path) -> dict[str, int]:
    """Rows per unit of one delivery, from its check file."""
    from schemas.conventions import CheckFile

    check = CheckFile.parse(next(folder.glob("*.chk")).read_bytes())
    rows: dict[str, int] = defaultdict(int)
    for e in check.entries:
        unit = next((u for u in UNITS if f"_{u}_" in e.name), "?")
        rows[unit] += e.rows
    return dict(rows)


def order_provinces(rows: dict[str, dict[str, int]]) -> list[str]:
    """All provinces, with the two closest in consolidated rows (larger half) first and last."""
    size = {p: r.get("31201", 0) + r.get("31203", 0) for p, r in rows.items()}
    big = sorted(size, key=size.get)[len(size) // 2:]
    best = min(((a, b) for i, a in enumerate(big) for b in big[i + 1:]),
               key=lambda ab: abs(size[ab[0]] - size[ab[1]]) / max(size[ab[0]], size[ab[1]], 1))
    first, last = sorted(best, key=size.get, reverse=True)  # the bigger one first: no flattering the 31st
    middle = [p for p in sorted(rows) if p not in best]
    return [first, *middle, last]


# -- server side ---------------------------------------------------------------------------------
class Timings:
    """Accumulates the time of wrapped calls per delivery."""

    def __init__(self) -> None:
        self.apply: dict[str, float] = defaultdict(float)     # unit -> seconds (current delivery)
        self.apply_rows: dict[str, int] = defaultdict(int)
        self.record = 0.0

    def reset(self) -> None:
        self.apply.clear()
        self.apply_rows.clear()
        self.record = 0.0


def install_wrappers(t: Timings) -> None:
    from exchange_server.consolidation.services import Consolidator
    from exchange_server.ingestion.worker import IngestionWorker

    apply, record = Consolidator.apply, IngestionWorker._record

    def timed_apply(self: Any, version: Any, delivery: Any, unit_code: str, *a: Any, **kw: Any) -> int:
        t0 = time.perf_counter()
        n = apply(self, version, delivery, unit_code, *a, **kw)
        t.apply[unit_code] += time.perf_counter() - t0
        t.apply_rows[unit_code] += n
        return n

    def timed_record(self: Any, *a: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        record(self, *a, **kw)
        t.record += time.perf_counter() - t0

    Consolidator.apply = timed_apply  # type: ignore[method-assign]
    IngestionWorker._record = timed_record  # type: ignore[method-assign]


def open_instance(work: Path, database_url: str | None) -> Any:
    from exchange_server.runtime import open_runtime
    from exchange_server.setup_service import initialise

    cfg: dict[str, Any] = {"data_dir": str(work / "data"), "worker_poll_seconds": 0.05, "job_lease_seconds": 3600,
                           "sftp_port": 0}
    if database_url:
        cfg["database_url"] = database_url
    rt = open_runtime(cfg)
    initialise(rt)
    return rt


def prepare(rt: Any, data: Path, provinces: list[str]) -> dict[str, Any]:
    """Accounts, the cycle, the published list (untimed preparation, but reported)."""
    from exchange_server.accounts.services import AccountService
    from exchange_server.cycles.services import CycleService
    from exchange_server.lists.services import ListService

    out: dict[str, Any] = {}
    with rt.db.session() as s:
        for cycle in (PREVIOUS_CYCLE, CYCLE):
            CycleService(s, rt.spec, "bench").create(cycle, state="open",
                                                     deadline=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
        svc = AccountService(s, "bench")
        for p in provinces:
            svc.create(f"prov{p}", "province", p)
        out["analyst_token"] = svc.create_token(svc.create("analyst", "analyst"), "bench")[0]
    t0 = time.perf_counter()
    with rt.db.session() as s:
        lists = ListService(s, rt.archive, rt.spec)
        lists.publish(lists.load(data / "00" / "D_00_2026V01_00.chk"))
    out["list_seconds"] = time.perf_counter() - t0
    return out


def receive(rt: Any, party: str, folder: Path) -> None:
    """Archive and record a delivery folder as the API does (tests/server/test_rollups.receive_folder)."""
    from sqlalchemy import select

    from exchange_server.accounts.models import Account
    from exchange_server.submissions.receiving import ReceivingService
    from exchange_server.submissions.upload import ReceivedFile

    with rt.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == f"prov{party}"))
        files = []
        for p in sorted(folder.iterdir()):
            staged = rt.archive.stage()
            with p.open("rb") as f:
                while block := f.read(1 << 20):
                    staged.write(block)
            files.append(ReceivedFile(p.name, staged.commit(), p.stat().st_size))
        ReceivingService(s, rt.archive, rt.spec).receive(account, "http", files)


def accept_all(rt: Any, data: Path, order: list[str], t: Timings) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from exchange_server.ingestion.worker import IngestionWorker
    from exchange_server.submissions.models import Delivery

    worker = IngestionWorker(rt, "bench")
    out = []
    for i, p in enumerate(order, 1):
        receive(rt, p, data / p)
        t.reset()
        t0 = time.perf_counter()
        assert worker.run_once()
        total = time.perf_counter() - t0
        with rt.db.session() as s:
            d = s.scalars(select(Delivery).where(Delivery.party == p).order_by(Delivery.id.desc())).first()
            status = d.status
        out.append({"n": i, "party": p, "status": status, "run_once": total, "record": t.record,
                    "apply": sum(t.apply.values()), "apply_units": dict(t.apply),
                    "rows": dict(t.apply_rows), "consolidated": sum(t.apply_rows.values())})
        print(f"  {i:2d}. {p}: {status}, {total:.2f} s, apply {sum(t.apply.values()):.2f} s, "
              f"{sum(t.apply_rows.values()):,} rows", file=sys.stderr, flush=True)
    return out


def replay_first(rt: Any, party: str, t: Timings) -> dict[str, Any]:
    """Consolidate the 1st province's delivery again into an empty scratch cycle, tables full; rolled back."""
    from sqlalchemy import select

    from exchange_server.consolidation.services import Consolidator
    from exchange_server.submissions.models import Delivery, UnitVersion

    t.reset()
    with rt.db.engine.connect() as conn:
        from sqlalchemy.orm import Session

        trans = conn.begin()
        s = Session(bind=conn, autoflush=False)
        d = s.scalars(select(Delivery).where(Delivery.party == party, Delivery.period == CYCLE)
                      .order_by(Delivery.id.desc())).first()
        versions = list(s.scalars(select(UnitVersion).where(UnitVersion.delivery_id == d.id)))
        d.period = SCRATCH_CYCLE  # only the facts' cycle column reads it
        c = Consolidator(s, rt.archive, rt.spec)
        t0 = time.perf_counter()
        for v in versions:
            c.apply(v, d, v.scope.unit, None, True)
        s.flush()
        seconds = time.perf_counter() - t0
        s.close()
        trans.rollback()
    return {"apply": seconds, "apply_units": dict(t.apply), "rows": dict(t.apply_rows),
            "consolidated": sum(t.apply_rows.values())}


def fact_counts(rt: Any) -> dict[str, int]:
    from sqlalchemy import text

    with rt.db.engine.connect() as c:
        return {tb: int(c.execute(text(f"SELECT count(*) FROM {tb}")).scalar()) for tb in
                ("fact_summary", "fact_serv", "fact_income", "fact_customer", "fact_contact", "fact_cust_prod")}


# -- downloads -----------------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    return str(o)


def download_fns(rt: Any) -> tuple[dict[str, Callable[[], Any]], list[str]]:
    """In process: the roll-up alone, and each export's serialisation of one precomputed roll-up."""
    from exchange_server.consolidation.rollups import RollupService

    notes = []

    def rollup() -> Any:
        with rt.db.session() as s:
            return RollupService(s, rt.spec).rollup(CYCLE)

    fns: dict[str, Callable[[], Any]] = {"in process: RollupService.rollup() only": rollup}
    try:
        exports = importlib.import_module("exchange_server.consolidation.exports")
    except ImportError:
        notes.append("`exchange_server.consolidation.exports` does not exist: JSON = `rollup()` + `json.dumps`")
        fns["in process: rollup() + json.dumps"] = lambda: json.dumps(
            rollup().as_dict(), default=_json_default, ensure_ascii=False).encode()
        return fns, notes
    done = rollup()
    fns["in process: rollup_json(r) only"] = lambda: exports.rollup_json(done)
    fns["in process: rollup_csv(r, 'by_province') only"] = lambda: exports.rollup_csv(done, "by_province")
    fns["in process: rollup_xlsx(r) only"] = lambda: exports.rollup_xlsx(done)
    return fns, notes


def reference_fns(rt: Any) -> dict[str, Callable[[], Any]]:
    from sqlalchemy import text

    def q(sql: str) -> Callable[[], Any]:
        def run() -> Any:
            with rt.db.engine.connect() as c:
                return c.execute(text(sql), {"c": CYCLE, "t": True}).all()
        return run

    return {
        "GROUP BY prov_id over fact_summary": q(
            'SELECT prov_id, SUM(income_amt) FROM fact_summary WHERE cycle = :c AND "current" = :t GROUP BY prov_id'),
        "GROUP BY prov_id over fact_cust_prod (detail)": q(
            'SELECT prov_id, SUM(income_amt) FROM fact_cust_prod WHERE cycle = :c AND "current" = :t '
            'GROUP BY prov_id'),
        "GROUP BY level_id, join fact_customer x fact_cust_prod": q(
            'SELECT c.level_id, SUM(p.income_amt) FROM fact_cust_prod p JOIN fact_customer c '
            'ON c.national_cust_id = p.national_cust_id AND c.cycle = p.cycle AND c."current" = :t '
            'WHERE p.cycle = :c AND p."current" = :t GROUP BY c.level_id'),
    }


def breakdown_fns(rt: Any) -> dict[str, Callable[[], Any]]:
    from exchange_server.consolidation.rollups import RollupService

    def part(name: str) -> Callable[[], Any]:
        def run() -> Any:
            with rt.db.session() as s:
                return getattr(RollupService(s, rt.spec), name)(CYCLE)
        return run

    return {n: part(n) for n in ("totals", "by_province", "by_network", "by_product", "by_billing_item",
                                 "by_level", "by_industry", "coverage", "completeness", "lineage")}


def http_fns(rt: Any, token: str) -> tuple[Any, dict[str, Callable[[], Any]]] | None:
    """Downloads over HTTP when the reports route exists."""
    import urllib.request

    from exchange_server.app import create_app

    rules = [r.rule for r in create_app(runtime=rt).url_map.iter_rules()]
    if not any(r.startswith("/api/v1/reports/") for r in rules):
        return None
    from exchange_server.runtime.serve import Server

    server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=0)
    base = server.url

    def get(path: str) -> Callable[[], Any]:
        def run() -> Any:
            req = urllib.request.Request(f"{base}/api/v1/reports/{CYCLE}/{path}",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.read()
        return run

    return server, {"HTTP JSON (rollup.json)": get("rollup.json"), "HTTP CSV (by_province.csv)": get("by_province.csv"),
                    "HTTP CSV (by_level.csv)": get("by_level.csv"), "HTTP XLSX (rollup.xlsx)": get("rollup.xlsx")}


def time_calls(fn: Callable[[], Any], n: int, budget: float) -> dict[str, Any]:
    """One untimed warm-up, then up to n calls (stopping early past ``budget`` seconds)."""
    result = fn()
    size = len(result) if isinstance(result, (bytes, str)) else (len(result) if isinstance(result, list) else None)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return {"n": len(times), "p50": statistics.median(times), "p95": percentile(times, 95), "max": max(times),
            "size": size}


# -- the first download after an acceptance ------------------------------------------------------
def correction(data: Path, party: str, cycle: str, resend: int, out: Path) -> Path:
    """A province's 32001 and 32003 of ``data``, for ``cycle``, one network's revenue moved by ``resend`` fen."""
    from decimal import Decimal

    from schemas import load_spec
    from schemas.conventions import CheckFile
    from schemas.writer import DeliveryWriter

    spec = load_spec()
    folder = data / party
    check = CheckFile.parse(next(folder.glob("*.chk")).read_bytes())
    rows: dict[str, list[dict[str, str]]] = {}
    for e in check.entries:
        unit = e.name.split("_")[3]
        if unit in ("32001", "32003"):
            ids = spec.unit(unit).field_ids
            text = (folder / e.name).read_bytes().decode("gb18030" if check.encoding == "GB18030" else "utf-8-sig")
            rows[unit] = [dict(zip(ids, line.rstrip("\r").split(check.delimiter))) for line in text.split("\n")[:-1]]
    net = rows["32001"][0]["LATN_ID"]
    delta = Decimal(resend).scaleb(-2)
    for unit in ("32001", "32003"):
        row = next(r for r in rows[unit] if r["LATN_ID"] == net)
        for f in ("INCOME_AMT", "INCOME_YTD_AMT"):
            row[f] = str(Decimal(row[f]) + delta)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    w = DeliveryWriter(spec, out, "P", party, cycle, resend=resend)
    for unit in ("32001", "32003"):
        with w.unit(unit) as u:
            for r in rows[unit]:
                u.write(dict(r, CYCLE_ID=cycle))
    w.close()
    return out


def first_downloads(rt: Any, data: Path, party: str, token: str, work: Path, n: int) -> dict[str, Any]:
    """Accept a small correction, then time the first (stale) and the second (cached) download; n times each."""
    import urllib.request

    from exchange_server.ingestion.worker import IngestionWorker
    from exchange_server.runtime.serve import Server

    server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=0)
    worker = IngestionWorker(rt, "bench")
    formats = {"JSON (rollup.json)": "rollup.json", "CSV (by_province.csv)": "by_province.csv",
               "XLSX (rollup.xlsx)": "rollup.xlsx"}
    resend = {CYCLE: 1, PREVIOUS_CYCLE: 0}
    out: dict[str, Any] = {}

    def get(path: str) -> float:
        req = urllib.request.Request(f"{server.url}/api/v1/reports/{CYCLE}/{path}",
                                     headers={"Authorization": f"Bearer {token}"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
        return time.perf_counter() - t0

    try:
        for target, label in ((CYCLE, "this cycle"), (PREVIOUS_CYCLE, "the previous cycle")):
            for name, path in formats.items():
                first, cached, accept = [], [], []
                for _ in range(n):
                    folder = correction(data, party, target, resend[target], work / "correction")
                    resend[target] += 1
                    receive(rt, party, folder)
                    t0 = time.perf_counter()
                    assert worker.run_once()
                    accept.append(time.perf_counter() - t0)
                    first.append(get(path))
                    cached.append(get(path))
                out[f"{name}|{label}"] = {"first": first, "cached": cached, "accept": accept}
                print(f"  first {name} after an acceptance into {label}: p95 {ms(percentile(first, 95))} ms, "
                      f"cached p95 {ms(percentile(cached, 95))} ms", file=sys.stderr, flush=True)
    finally:
        server.shutdown()
    from sqlalchemy import select

    from exchange_server.submissions.models import Delivery

    with rt.db.session() as s:
        statuses = sorted(set(s.scalars(select(Delivery.status).where(Delivery.party == party))))
    out["statuses"] = statuses
    return out


# -- report --------------------------------------------------------------------------------------
def ms(s: float) -> str:
    return f"{s * 1000:,.1f}"


def run_db(label: str, database_url: str | None, data: Path, order: list[str], work: Path, requests: int,
           budget: float, t: Timings, first_after: int) -> dict[str, Any]:
    rt = open_instance(work / label, database_url)
    prep = prepare(rt, data, order)
    print(f"[{label}] list published in {prep['list_seconds']:.1f} s", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    deliveries = accept_all(rt, data, order, t)
    accept_wall = time.perf_counter() - t0
    replay = replay_first(rt, order[0], t)
    counts = fact_counts(rt)
    print(f"[{label}] facts: {counts}", file=sys.stderr, flush=True)
    fns, notes = download_fns(rt)
    downloads = {}
    http = http_fns(rt, prep["analyst_token"])
    if http is not None:
        server, hfns = http
        try:
            for name, fn in hfns.items():
                downloads[name] = time_calls(fn, requests, budget)
                print(f"[{label}] {name}: p95 {ms(downloads[name]['p95'])} ms", file=sys.stderr, flush=True)
        finally:
            server.shutdown()
    for name, fn in fns.items():
        downloads[name] = time_calls(fn, requests, budget)
        print(f"[{label}] {name}: p95 {ms(downloads[name]['p95'])} ms", file=sys.stderr, flush=True)
    refs = {name: time_calls(fn, requests, budget) for name, fn in reference_fns(rt).items()}
    parts = {name: time_calls(fn, max(5, requests // 5), budget / 2) for name, fn in breakdown_fns(rt).items()}
    accepted = [x["party"] for x in deliveries if x["status"] in ("accepted", "accepted_with_warnings")]
    firsts = first_downloads(rt, data, accepted[len(accepted) // 2], prep["analyst_token"], work / label,
                             first_after) if first_after and accepted else {}
    rt.db.dispose()
    return {"label": label, "prep": prep, "deliveries": deliveries, "accept_wall": accept_wall, "replay": replay,
            "counts": counts, "downloads": downloads, "refs": refs, "parts": parts, "notes": notes,
            "firsts": firsts}


def report(scale: int, gen_seconds: float, rows: dict[str, dict[str, int]], order: list[str],
           results: list[dict[str, Any]], wall: float) -> None:
    print(f"**Machine**: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{dt.date.today().isoformat()}; scale {scale}; wall {wall:.0f} s"
          + (f" (sample-data generation {gen_seconds:.0f} s)" if gen_seconds else "") + "\n")
    tot = {u: sum(r.get(u, 0) for r in rows.values()) for u in UNITS}
    first, last = order[0], order[-1]
    print("| unit | fact table | rows, all 31 | rows, 1st (" + first + ") | rows, 31st (" + last + ") |")
    print("|---|---|---:|---:|---:|")
    tables = {"31201": "fact_customer", "31202": "fact_contact", "31203": "fact_cust_prod",
              "32001": "fact_summary", "32002": "fact_serv", "32003": "fact_income"}
    for u in UNITS:
        print(f"| {u} | {tables[u]} | {tot[u]:,} | {rows[first].get(u, 0):,} | {rows[last].get(u, 0):,} |")
    print(f"| detail (31201–31203) | | {sum(tot[u] for u in DETAIL_UNITS):,} | "
          f"{sum(rows[first].get(u, 0) for u in DETAIL_UNITS):,} | {sum(rows[last].get(u, 0) for u in DETAIL_UNITS):,} |")
    print(f"| all | | {sum(tot.values()):,} | {sum(rows[first].values()):,} | {sum(rows[last].values()):,} |\n")

    for res in results:
        d = res["deliveries"]
        a, z = d[0], d[-1]
        print(f"### {res['label']}\n")
        print(f"HQ's top-500 list published in {res['prep']['list_seconds']:.1f} s (untimed preparation); "
              f"31 acceptances in {res['accept_wall']:.1f} s; verdicts: "
              f"{', '.join(sorted({x['status'] for x in d}))}.\n")
        print("| acceptance | province | rows consolidated | run_once s | recording txn s | Consolidator.apply s "
              "| apply µs/row | validation etc. s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for tag, x in (("1st", a), ("31st", z)):
            print(f"| {tag} | {x['party']} | {x['consolidated']:,} | {x['run_once']:.2f} | {x['record']:.2f} | "
                  f"{x['apply']:.2f} | {x['apply'] / max(x['consolidated'], 1) * 1e6:.1f} | "
                  f"{x['run_once'] - x['record']:.2f} |")
        r = res["replay"]
        print(f"| 1st again, scratch cycle, full tables | {a['party']} | {r['consolidated']:,} |  |  | "
              f"{r['apply']:.2f} | {r['apply'] / max(r['consolidated'], 1) * 1e6:.1f} |  |")
        pr = lambda x: x["apply"] / max(x["consolidated"], 1)  # noqa: E731
        print(f"| **31st ÷ 1st** | | {z['consolidated'] / max(a['consolidated'], 1):.2f} | "
              f"{z['run_once'] / a['run_once']:.2f} | {z['record'] / a['record']:.2f} | {z['apply'] / a['apply']:.2f} | "
              f"{pr(z) / pr(a):.2f} | |")
        print(f"| **replay ÷ 1st** | | | | | {r['apply'] / a['apply']:.2f} | {pr(r) / pr(a):.2f} | |\n")
        all_rows = sum(x["consolidated"] for x in d)
        all_apply = sum(x["apply"] for x in d)
        per_unit: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for x in d:
            for u, s in x["apply_units"].items():
                per_unit[u][0] += s
                per_unit[u][1] += x["rows"].get(u, 0)
        print("| unit | rows consolidated (31 provinces) | apply s | µs/row | rows/s |")
        print("|---|---:|---:|---:|---:|")
        for u in sorted(per_unit):
            s, n = per_unit[u]
            print(f"| {u} | {n:,} | {s:.2f} | {s / max(n, 1) * 1e6:.1f} | {n / s if s else 0:,.0f} |")
        print(f"| all | {all_rows:,} | {all_apply:.2f} | {all_apply / max(all_rows, 1) * 1e6:.1f} | "
              f"{all_rows / all_apply if all_apply else 0:,.0f} |\n")
        # per-row trend over the 31 acceptances
        half = len(d) // 2
        early = sum(x["apply"] for x in d[:half]) / max(sum(x["consolidated"] for x in d[:half]), 1)
        late = sum(x["apply"] for x in d[half:]) / max(sum(x["consolidated"] for x in d[half:]), 1)
        print(f"Apply µs/row, acceptances 1–{half}: {early * 1e6:.1f}; {half + 1}–{len(d)}: {late * 1e6:.1f} "
              f"(ratio {late / early:.2f}). Facts after the cycle: "
              + ", ".join(f"{k} {v:,}" for k, v in res["counts"].items()) + ".\n")
        ref = res["refs"]["GROUP BY prov_id over fact_summary"]
        print("| download / query | requests | p50 ms | p95 ms | max ms | × reference p95 | bytes / rows |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, m in list(res["downloads"].items()) + list(res["refs"].items()):
            print(f"| {name} | {m['n']} | {ms(m['p50'])} | {ms(m['p95'])} | {ms(m['max'])} | "
                  f"{m['p95'] / ref['p95']:,.1f} | {m['size'] if m['size'] is not None else ''} |")
        print("\n(× reference = against the GROUP BY over fact_summary.)\n")
        total_parts = sum(m["p50"] for m in res["parts"].values())
        print("| roll-up part | calls | p50 ms | p95 ms | share of the parts' p50 sum |")
        print("|---|---:|---:|---:|---:|")
        for name, m in res["parts"].items():
            print(f"| {name} | {m['n']} | {ms(m['p50'])} | {ms(m['p95'])} | {m['p50'] / total_parts * 100:.0f}% |")
        print()
        firsts = res.get("firsts") or {}
        if firsts:
            detail = res["refs"]["GROUP BY prov_id over fact_cust_prod (detail)"]
            print(f"First download after an acceptance (a correction of one province's 32001+32003, accepted "
                  f"before each download; verdicts {', '.join(firsts['statuses'])}):\n")
            print("| download | after an acceptance into | n | acceptance p50 s | first p50 ms | first p95 ms "
                  "| cached p50 ms | cached p95 ms | first p95 × cached p95 | first p95 × GROUP BY detail p95 |")
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for key, m in firsts.items():
                if key == "statuses":
                    continue
                name, target = key.split("|")
                f95, c95 = percentile(m["first"], 95), percentile(m["cached"], 95)
                print(f"| {name} | {target} | {len(m['first'])} | {statistics.median(m['accept']):.2f} | "
                      f"{ms(statistics.median(m['first']))} | {ms(f95)} | {ms(statistics.median(m['cached']))} | "
                      f"{ms(c95)} | {f95 / c95:.2f} | {f95 / detail['p95']:.2f} |")
            print()
        for n in res["notes"]:
            print(f"- {n}")
        print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=None, help="sample-data scale (default 2290: about 5M detail rows)")
    ap.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    ap.add_argument("--quick", action="store_true", help="scale 20, 10 requests per download")
    ap.add_argument("--requests", type=int, default=None, help="requests per download (default 50)")
    ap.add_argument("--budget", type=float, default=180.0, help="stop a download's series after this many seconds")
    ap.add_argument("--first-after", type=int, default=20,
                    help="acceptances per format and target before a timed first download (0: skip)")
    ap.add_argument("--data", type=Path, help="where the sample data is (kept); default a temp dir (deleted)")
    ap.add_argument("--work", type=Path, help="where data directories go (default a temp dir)")
    args = ap.parse_args(argv)
    scale = args.scale or (20 if args.quick else 2290)
    requests = args.requests or (10 if args.quick else 50)
    t_start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="kam-cons-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or work / f"scale{scale}"
    gen = generate(scale, data)
    rows = {d.name: unit_rows_of(d) for d in sorted(data.iterdir()) if d.is_dir() and d.name != "00"}
    order = order_provinces(rows)
    print(f"order: {' '.join(order)}", file=sys.stderr, flush=True)
    t = Timings()
    install_wrappers(t)
    results = []
    pg = None
    try:
        if not args.no_sqlite:
            results.append(run_db("SQLite", None, data, order, work, requests, args.budget, t, args.first_after))
        if args.postgres:
            from tests.support.postgres import PostgresServer, find_bindir

            bindir = find_bindir()
            if bindir is None:
                print("PostgreSQL binaries not found", file=sys.stderr)
            else:
                pg = PostgresServer(bindir).start()
                url = pg.create_database("kam_cons_bench")
                results.append(run_db("PostgreSQL", url, data, order, work, requests, args.budget, t,
                                      args.first_after))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work / "SQLite", ignore_errors=True)
        shutil.rmtree(work / "PostgreSQL", ignore_errors=True)
        if args.data is None and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report(scale, gen, rows, order, results, time.perf_counter() - t_start)
    print(f"peak memory of this process: {peak_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
