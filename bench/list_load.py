"""List-load benchmark: ``ListService.load`` of big national lists on SQLite, against the raw floor.

    python -m bench.list_load                              # 1k, 100k and 950k rows (about 2 minutes)
    python -m bench.list_load --sizes 1000,100000 --csv 0  # a quick run
    python -m bench.list_load --impl DIR --label before    # another implementation, side by side

``--impl DIR`` loads ``ListService`` from ``DIR/services.py`` (and ``DIR/importers.py``
when there) instead of the tree's, e.g. the code of an earlier commit::

    mkdir /tmp/old && git show HEAD~1:exchange_server/lists/services.py > /tmp/old/services.py
    git show HEAD~1:exchange_server/lists/importers.py > /tmp/old/importers.py

**Data.** For each size N, two versions of the national list (31101) in the spec's format (one
UTF-8 pipe-delimited file): ``2026V01`` with N customers, every row new; ``2026V02`` from it
with 1% of the customers dropped silently, 1% renamed, 1% removed explicitly (``D`` rows)
and 1% more added at the end. The rows repeat the sample-data generator's 500 list rows
under fresh ids (``G<province><7 digits>``), so every rule holds. ``--csv N`` also loads an
N-row first version sent as a CSV file (the admin upload's format).

**Runs**, each in a fresh Python process (imports, spec and database set up untimed):
- ``load first`` — ``ListService.load`` of 2026V01 into an empty database, commit included,
  in one session the way ``exchange-server list load`` opens it.
- ``load next`` — 2026V02 into a copy of a database where 2026V01 is published (loaded by
  the tree's code, marked published with an UPDATE; untimed): the change types are computed against
  N published entries.
- ``validate`` — ``validate_delivery`` of the same files alone: the checks any load must make.
- ``executemany`` — ``sqlite3`` ``executemany`` of the same rows (already parsed, untimed) into
  the same ``list_entry`` table and indexes, in one ``BEGIN IMMEDIATE`` transaction: what
  writing the rows costs at least.

The floor is validate + executemany; ``× floor`` is the load's time over it. During every
load a probe process makes a small write transaction (``BEGIN IMMEDIATE``, one insert,
commit) every 20 ms on its own connection and records how long each waited for the
writer lock: its longest wait is how long the load kept other writers out at a stretch
(a server thread with a 2 s busy timeout fails past 2 s; ours is 60 s). The longest
transaction the load's engine ran (begin to commit) is reported as well.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
UNIT = "TOP500_LIST"
V1, V2 = "2026V01", "2026V02"
PROBE_EVERY = 0.02


# -- data ----------------------------------------------------------------------------------------
def _templates(spec: Any) -> list[dict[str, Any]]:
    """The sample list's 500 ranked rows (removal notes left out)."""
    from exchange_server.sample_data.generator import SampleModel, list_rows

    return [r for r in list_rows(SampleModel(spec, seed=2002, scale=1), V1) if r["CHANGE_TYPE"] != "D"]


def list_rows(spec: Any, n: int, version: str) -> Iterator[dict[str, Any]]:
    """Version 1 (``V1``) or 2 (``V2``) of an n-customer list, streamed."""
    ts = _templates(spec)

    def row(i: int, **extra: Any) -> dict[str, Any]:
        t = ts[i % len(ts)]
        return dict(t, NATIONAL_CUST_ID=f"G{t['LEAD_PROV_ID']}{i + 1:07d}", CUST_RANK=i + 1, LIST_VERSION=version,
                    **extra)

    for i in range(n):
        if version == V1:
            yield row(i, CHANGE_TYPE="A")
        elif i % 100 == 0:
            continue  # dropped silently: removed as of the load day
        elif i % 100 == 1:
            r = row(i, CHANGE_TYPE="M")
            r["CUST_NAME"] += "（更名）"
            yield r
        elif i % 100 == 2:
            yield row(i, CHANGE_TYPE="D", EXP_DATE=dt.date(2026, 10, 31))
        else:
            yield row(i, CHANGE_TYPE="U")
    if version == V2:
        for j in range(max(n // 100, 1)):
            yield row(n + j, CHANGE_TYPE="A")


def write_delivery(n: int, version: str, out: Path) -> Path:
    """The list as the spec's files; the check file."""
    from schemas.spec import load_spec
    from schemas.writer import DeliveryWriter

    spec = load_spec()
    w = DeliveryWriter(spec, out, "D", "00", version)
    with w.unit(UNIT) as u:
        for r in list_rows(spec, n, version):
            u.write(r)
    return w.close()


def write_csv(n: int, out: Path) -> Path:
    """Version 1 as a CSV file with the field ids as header (no LIST_VERSION / CHANGE_TYPE)."""
    from schemas.spec import load_spec

    spec = load_spec()
    ids = [f for f in spec.unit(UNIT).field_ids if f not in ("LIST_VERSION", "CHANGE_TYPE")]
    path = out / f"list_{n}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ids)
        for r in list_rows(spec, n, V1):
            w.writerow(["" if r.get(f) is None else (r[f].strftime("%Y%m%d") if isinstance(r[f], dt.date) else r[f])
                        for f in ids])
    return path


# -- the probe: another writer -------------------------------------------------------------------
def _probe(db: str, stop: Any, out: Any) -> None:
    """Small write transactions until ``stop``; sends (waits in seconds) back."""
    conn = sqlite3.connect(db, timeout=600, isolation_level=None)
    waits: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waits.append(time.perf_counter() - t0)
        conn.execute("INSERT INTO bench_probe (at) VALUES (?)", (time.time(),))
        conn.execute("COMMIT")
        time.sleep(PROBE_EVERY)
    conn.close()
    out.send(waits)


class Probe:
    """A process making small write transactions on the database while the load runs."""

    def __init__(self, db: Path) -> None:
        c = sqlite3.connect(db, isolation_level=None)
        c.execute("CREATE TABLE IF NOT EXISTS bench_probe (id INTEGER PRIMARY KEY, at REAL)")
        c.close()
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_probe, args=(str(db), self.stop, send), daemon=True)

    def __enter__(self) -> "Probe":
        self.proc.start()
        time.sleep(0.5)  # let it start writing before the load begins
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.waits: list[float] = self.recv.recv()
        self.proc.join()


# -- the runs (child processes) ------------------------------------------------------------------
def _service_class(impl: str) -> Any:
    """ListService from the tree, or from ``impl``/services.py (with its importers.py when there)."""
    if not impl:
        from exchange_server.lists.services import ListService

        return ListService
    import exchange_server.lists.importers as importers
    import exchange_server.lists.models as models

    name = "exchange_server.lists_bench_impl"
    pkg = types.ModuleType(name)
    pkg.__path__ = [impl]
    pkg.__package__ = name
    sys.modules[name] = pkg
    sys.modules[name + ".models"] = models  # one mapping of the tables
    if not (Path(impl) / "importers.py").exists():
        sys.modules[name + ".importers"] = importers
    return importlib.import_module(name + ".services").ListService


def _runtime(data_dir: Path) -> Any:
    from exchange_server.runtime import open_runtime

    return open_runtime({"data_dir": str(data_dir), "sftp_port": 0})


def _transactions(engine: Any) -> list[float]:
    """Durations of the engine's transactions (begin to commit or rollback), filled in as they end."""
    from sqlalchemy import event

    spans: list[float] = []
    began: dict[int, float] = {}

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        began[id(conn)] = time.perf_counter()

    def _end(conn: Any) -> None:
        t0 = began.pop(id(conn), None)
        if t0 is not None:
            spans.append(time.perf_counter() - t0)

    event.listen(engine, "commit", _end)
    event.listen(engine, "rollback", _end)
    return spans


def child_prepare(work: str, chk: str) -> dict[str, Any]:
    """An initialised data directory with ``chk`` loaded (by the tree's code) and marked published."""
    from sqlalchemy import update

    from exchange_server.clock import utcnow
    from exchange_server.lists.models import PUBLISHED, ListVersion
    from exchange_server.lists.services import ListService
    from exchange_server.setup_service import initialise

    rt = _runtime(Path(work))
    initialise(rt)
    with rt.db.session() as s:
        v = ListService(s, rt.archive, rt.spec, "bench").load(Path(chk))
        s.execute(update(ListVersion).where(ListVersion.id == v.id).values(state=PUBLISHED, published_at=utcnow()))
    rt.db.dispose()
    return {}


def child_load(work: str, source: str, impl: str, version: str) -> dict[str, Any]:
    """Time one load in the data directory ``work`` (prepared, or empty)."""
    from exchange_server.setup_service import initialise

    service = _service_class(impl)
    rt = _runtime(Path(work))
    initialise(rt)
    spans = _transactions(rt.db.engine)
    db = Path(rt.db.engine.url.database)
    path = Path(source)
    with Probe(db) as probe:
        spans.clear()
        t0 = time.perf_counter()
        with rt.db.session() as s:
            v = service(s, rt.archive, rt.spec, "bench").load(path, version if path.suffix == ".csv" else None,
                                                             source_name=path.name if path.suffix == ".csv" else None)
            counts = (v.added, v.changed, v.removed, v.unchanged)
        seconds = time.perf_counter() - t0
    rt.db.dispose()
    waits = probe.waits
    return {"seconds": seconds, "counts": counts, "entries": sum(counts), "peak_mib": _peak(),
            "probe_n": len(waits), "probe_max": max(waits, default=0.0),
            "probe_over_2s": sum(1 for w in waits if w > 2), "txn_max": max(spans, default=0.0),
            "txns": len(spans)}


def child_validate(chk: str) -> dict[str, Any]:
    """Time ``validate_delivery`` of the delivery alone."""
    from exchange_server.lists.importers import source_files
    from schemas.spec import load_spec
    from schemas.validation import validate_delivery

    spec = load_spec()
    files = source_files(Path(chk))
    t0 = time.perf_counter()
    report = validate_delivery(files, spec)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "errors": report.errors, "peak_mib": _peak()}


def child_executemany(work: str, chk: str) -> dict[str, Any]:
    """Time a plain executemany of the file's rows into list_entry (a new list_version row first)."""
    from exchange_server.setup_service import initialise

    rt = _runtime(Path(work))
    initialise(rt)
    db = rt.db.engine.url.database
    rt.db.dispose()
    data = next(p for p in Path(chk).parent.iterdir() if p.name.endswith(".txt"))
    rows = []
    iso: dict[str, str] = {}
    for line in data.read_text("utf-8").splitlines():
        f = line.split("|")
        eff = iso.setdefault(f[11], f"{f[11][:4]}-{f[11][4:6]}-{f[11][6:]}")
        exp = f"{f[12][:4]}-{f[12][4:6]}-{f[12][6:]}" if f[12] else None
        rows.append((f[1], int(f[2]), f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], eff, exp, f[13]))
    conn = sqlite3.connect(db, isolation_level=None)
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute("INSERT INTO list_version (version, state, source_name, source_sha256, loaded_by, loaded_at, "
                       "added, changed, removed, unchanged) VALUES ('2099V01', 'draft', 'x', 'x', 'bench', "
                       "'2026-01-01 00:00:00', 0, 0, 0, 0)")
    vid = cur.lastrowid
    conn.executemany("INSERT INTO list_entry (list_version_id, national_cust_id, rank, cust_name, group_parent_name, "
                     "c_type_id, level_id, lead_prov_id, lead_latn_id, hq_manager_name, hq_manager_phone, eff_date, "
                     "exp_date, change_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     ((vid, *r) for r in rows))
    conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    return {"seconds": seconds, "rows": len(rows), "peak_mib": _peak()}


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {"prepare": child_prepare, "load": child_load, "validate": child_validate,
            "executemany": child_executemany}


def run_child(kind: str, *args: str) -> dict[str, Any]:
    """One run in a fresh interpreter; its JSON result."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, "-m", "bench.list_load", "--child", kind, *args], check=True,
                         capture_output=True, text=True, env=env, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- the run -------------------------------------------------------------------------------------
def copy_data(src: Path, dst: Path) -> Path:
    """A copy of a prepared data directory (the database and the archive)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def run(sizes: list[int], next_sizes: list[int], csv_rows: int, impl: str, work: Path) -> list[dict[str, Any]]:
    """Every measurement, in table order."""
    results: list[dict[str, Any]] = []

    def note(r: dict[str, Any]) -> None:
        results.append(r)
        print(f"  {r['case']} {r['rows']:,}: {r['run']} {r['seconds']:.2f} s", file=sys.stderr, flush=True)

    for n in sizes:
        d1 = write_delivery(n, V1, work / f"v1_{n}")
        ref_v = run_child("validate", str(d1))
        ref_x = run_child("executemany", str(work / f"x1_{n}"), str(d1))
        shutil.rmtree(work / f"x1_{n}")
        load = run_child("load", str(work / f"l1_{n}"), str(d1), impl, V1)
        shutil.rmtree(work / f"l1_{n}")
        note({"case": "first", "rows": n, "run": "validate", **ref_v})
        note({"case": "first", "rows": n, "run": "executemany", **ref_x})
        note({"case": "first", "rows": n, "run": "load", **load, "floor": ref_v["seconds"] + ref_x["seconds"],
              "insert": ref_x["seconds"]})
        if n in next_sizes:
            d2 = write_delivery(n, V2, work / f"v2_{n}")
            base = work / f"base_{n}"
            run_child("prepare", str(base), str(d1))
            ref_v = run_child("validate", str(d2))
            ref_x = run_child("executemany", str(copy_data(base, work / f"x2_{n}")), str(d2))
            shutil.rmtree(work / f"x2_{n}")
            load = run_child("load", str(copy_data(base, work / f"l2_{n}")), str(d2), impl, V2)
            shutil.rmtree(work / f"l2_{n}")
            shutil.rmtree(base)
            shutil.rmtree(d2.parent)
            rows = n - (n + 99) // 100 + max(n // 100, 1)  # dropped: i % 100 == 0; added: 1%
            note({"case": "next", "rows": rows, "run": "validate", **ref_v})
            note({"case": "next", "rows": rows, "run": "executemany", **ref_x})
            note({"case": "next", "rows": rows, "run": "load", **load, "floor": ref_v["seconds"] + ref_x["seconds"],
                  "insert": ref_x["seconds"]})
        shutil.rmtree(d1.parent)
    if csv_rows:
        d1 = write_delivery(csv_rows, V1, work / f"v1c_{csv_rows}")
        source = write_csv(csv_rows, work)
        ref_v = run_child("validate", str(d1))
        ref_x = run_child("executemany", str(work / "xc"), str(d1))
        load = run_child("load", str(work / "lc"), str(source), impl, V1)
        note({"case": "first, CSV", "rows": csv_rows, "run": "validate (spec files)", **ref_v})
        note({"case": "first, CSV", "rows": csv_rows, "run": "executemany", **ref_x})
        note({"case": "first, CSV", "rows": csv_rows, "run": "load", **load,
              "floor": ref_v["seconds"] + ref_x["seconds"], "insert": ref_x["seconds"]})
        for p in (work / "xc", work / "lc", d1.parent):
            shutil.rmtree(p)
        source.unlink()
    return results


def table(results: list[dict[str, Any]], label: str) -> str:
    """A Markdown table: seconds, rows/s, the ratio to the floor, how long other writers waited."""
    lines = [f"| case | rows | run ({label}) | seconds | rows/s | × floor | longest writer wait (probe) | "
             f"waits > 2 s | longest transaction | peak MiB | counts (A/M/D/U) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        load = r["run"] == "load"
        ratio = f"{r['seconds'] / r['floor']:.2f}" if load else ""
        wait = f"{r['probe_max']:.2f} s" if load else ""
        over = f"{r['probe_over_2s']} of {r['probe_n']}" if load else ""
        txn = f"{r['txn_max']:.2f} s ({r['txns']})" if load else ""
        counts = "/".join(str(c) for c in r["counts"]) if load else ""
        lines.append(f"| {r['case']} | {r['rows']:,} | {r['run']} | {r['seconds']:.2f} | "
                     f"{r['rows'] / r['seconds']:,.0f} | {ratio} | {wait} | {over} | {txn} | "
                     f"{r['peak_mib']:.0f} | {counts} |")
    return "\n".join(lines)


def main() -> None:
    """Command line: run the benchmark and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,100000,950000",
                    help="customers per list, comma-separated (ranks have 6 digits: at most 999,999)")
    ap.add_argument("--next-sizes", default=None, help="sizes that also load a second version (default: all)")
    ap.add_argument("--csv", type=int, default=100_000, help="rows of the CSV first load (0: skip)")
    ap.add_argument("--impl", default="", help="a folder with another services.py (and importers.py) to measure")
    ap.add_argument("--label", default="tree", help="name of the implementation in the table")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",") if s]
    next_sizes = sizes if a.next_sizes is None else [int(s) for s in a.next_sizes.split(",") if s]
    impl = str(Path(a.impl).resolve()) if a.impl else ""
    work = a.work or Path(tempfile.mkdtemp(prefix="kam-listbench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.time()
        results = run(sizes, next_sizes, a.csv, impl, work)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}; {dt.date.today().isoformat()}; wall {time.time() - started:.0f} s")
        print(table(results, a.label))
        if a.json:
            a.json.write_text(json.dumps(results, indent=2))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
