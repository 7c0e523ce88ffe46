"""Validation benchmark: our engine against the parse-only floor and frictionless, side by side.

    python -m bench.validate                      # 1M and 4M rows of VIP_CUST_INFO, txt and XML
    python -m bench.validate --rows 200000 --big 0 --frictionless-rows 50000   # a quick run
    python -m bench.validate --rows 200000 --big 800000 --no-xml   # text only: rows core vs columnar core
    python -m bench.validate --rows 1000000 --big 0 --no-txt       # XML only

The data is the widest upload unit (31201 VIP_CUST_INFO, 25 columns) from the sample-data
generator. Every measurement runs in a fresh Python process, one after another, so each one
has the machine to itself and its peak memory (ru_maxrss) is its own. Results are printed as
a Markdown table of rows/s and ratios, ready for docs/benchmarks.md; ``--json`` writes them
as data too.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

UNIT = "31201"
CYCLE = "202610"


@dataclass
class Measurement:
    """One timed run in its own process."""

    name: str
    fmt: str
    rows: int
    seconds: float
    peak_mib: float
    findings: int | None = None

    @property
    def rows_per_s(self) -> float:
        """Throughput."""
        return self.rows / self.seconds if self.seconds else 0.0


# -- data ----------------------------------------------------------------------------------
def make_delivery(rows: int, fmt: str, work: Path, encoding: str = "GB18030") -> Path:
    """A delivery holding one VIP_CUST_INFO file of about ``rows`` rows (and its check file)."""
    from bench.data import unit_delivery

    return unit_delivery(UNIT, rows, fmt, work / f"{fmt}_{encoding}_{rows}", cycle=CYCLE, encoding=encoding)


def make_failing(delivery: Path, failing: int, work: Path) -> Path:
    """A copy of a text delivery whose last field (JOIN_DATE) is a date that does not exist on ``failing`` rows.

    The rows are spread evenly over the file; the check file is rewritten (size, digest) so
    tier 1 passes and every failing row reaches the field checks (E304).
    """
    import hashlib

    from schemas.conventions import CheckFile

    out = work / f"{delivery.name}_failing_{failing}"
    out.mkdir()
    check_path = next(delivery.glob("*.chk"))
    data = next(p for p in delivery.iterdir() if not p.name.endswith(".chk"))
    total = CheckFile.parse(check_path.read_bytes()).entries[0].rows
    step = max(1, total // max(1, failing))
    digest = hashlib.sha256()
    size = 0
    with data.open("rb") as src, (out / data.name).open("wb") as dst:
        for n, line in enumerate(src):
            if n % step == 0 and n // step < failing:
                line = line[:-9] + b"20261332\n"  # JOIN_DATE: no 32nd of a 13th month
            digest.update(line)
            size += len(line)
            dst.write(line)
    check = CheckFile.parse(check_path.read_bytes())
    entry = check.entries[0]
    entries = [type(entry)(entry.name, size, entry.rows, entry.period, entry.generated_at, digest.hexdigest())]
    (out / check_path.name).write_bytes(check.with_entries(entries).render())
    return out


# -- what each child process runs --------------------------------------------------------
def _child(kind: str, delivery: str, extra: str) -> dict[str, Any]:
    """Prepare (imports, spec, schemas: not timed), then time one full pass over the file."""
    path = Path(delivery)
    data = next(p for p in path.iterdir() if not p.name.endswith(".chk"))
    run = _prepare(kind, path, data, extra)
    t0 = time.perf_counter()
    rows, findings = run()
    seconds = time.perf_counter() - t0
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"rows": rows, "seconds": seconds, "peak_mib": peak / 1024, "findings": findings}


def _prepare(kind: str, path: Path, data: Path, extra: str) -> Callable[[], tuple[int, int | None]]:
    from schemas.conventions import DELIMITERS, CheckFile, Cycle
    from schemas.spec import load_spec

    spec = load_spec()
    check = CheckFile.parse(next(path.glob("*.chk")).read_bytes())
    if kind == "ours":
        from schemas.validation import ValidationOptions, validate_paths

        workers = int(extra) if extra.isdigit() else 1
        # A parallel run splits files above parallel_min_bytes; a serial one never does.
        # The 4M-row XML file is past the standard's 2 GiB cap per file; lift it to measure.
        opts = ValidationOptions(core="rows", workers=workers, parallel_min_bytes=1 if workers > 1 else 1 << 62,
                                 max_file_size=1 << 40)

        if extra.startswith("default:"):  # what a run gets by default (auto core), on N worker processes
            opts = ValidationOptions(workers=int(extra.split(":")[1]), max_file_size=1 << 40)

        if extra == "columnar":
            import schemas.validation.columnar.core  # noqa: F401  (an import: prepared, not timed, as for the row core)

            opts = ValidationOptions(core="columnar", workers=1, max_file_size=1 << 40)

        def ours() -> tuple[int, int | None]:
            report = validate_paths([path], spec, options=opts)[0]
            return sum(f.rows for f in report.files.values()), sum(report.counts.values())
        return ours
    if kind == "csv":
        import csv
        import io

        def floor_csv() -> tuple[int, int | None]:
            rows = 0
            with data.open("rb") as raw:
                text = io.TextIOWrapper(raw, encoding=check.encoding.lower(), newline="")
                for _ in csv.reader(text, delimiter=DELIMITERS[check.delimiter_name], quoting=csv.QUOTE_NONE):
                    rows += 1
            return rows, None
        return floor_csv
    if kind == "iterparse":
        from lxml import etree

        def floor_xml() -> tuple[int, int | None]:
            rows = 0
            for _, el in etree.iterparse(str(data), events=("end",), tag="{*}ROW", resolve_entities=False,
                                         no_network=True):
                rows += 1
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
            return rows, None
        return floor_xml
    if kind == "frictionless":
        from frictionless import Dialect, Resource, Schema, formats

        from bench.table_schema import table_schema

        schema = Schema.from_descriptor(table_schema(spec, spec.unit(UNIT), Cycle.parse(CYCLE).begin))
        control = formats.CsvControl(delimiter=DELIMITERS[check.delimiter_name], quote_char="\x00")

        def friction() -> tuple[int, int | None]:
            # frictionless refuses absolute paths as unsafe; give it the folder as its base path.
            res = Resource(path=data.name, basepath=str(data.parent), format="csv", encoding=check.encoding.lower(),
                           schema=schema, dialect=Dialect(header=False, controls=[control]))
            report = res.validate(limit_errors=1000)
            return report.task.stats.get("rows") or 0, len(report.task.errors)
        return friction
    raise SystemExit(f"unknown kind {kind}")


def measure(kind: str, delivery: Path, fmt: str, extra: str = "", label: str = "") -> Measurement:
    """Run one measurement in a fresh interpreter."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, "-m", "bench.validate", "--child", kind, str(delivery), extra],
                         check=True, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    name = {"ours": f"ours ({extra or 1} worker{'s' if extra not in ('', '1') else ''})"}.get(kind, kind)
    if kind == "ours" and extra == "columnar":
        name = "columnar (1 process)"
    if kind == "ours" and extra.startswith("default:"):
        name = f"default ({extra.split(':')[1]} workers)"
    if label:
        name = f"{name}, {label}"
    return Measurement(name, fmt, r["rows"], r["seconds"], r["peak_mib"], r["findings"])


# -- the run -------------------------------------------------------------------------------
def run(rows: int, big: int, friction_rows: int, work: Path, workers: int, xml: bool = True,
        failing: int = 0, text: bool = True) -> list[Measurement]:
    """Generate the data and take every measurement; returns them in table order.

    Text runs carry the encoding in their format column (``txt GB18030``, ``txt UTF-8``);
    the columnar core (issue 18), the default, runs next to the row core ("ours", the reference) on each file.
    """
    results: list[Measurement] = []
    kinds = ([("txt", "GB18030"), ("txt", "UTF-8")] if text else []) + ([("xml", "GB18030")] if xml else [])
    for fmt, enc in kinds:
        d = make_delivery(rows, fmt, work, enc)
        tag = f"{fmt} {enc}" if fmt == "txt" else fmt
        results.append(measure("csv" if fmt == "txt" else "iterparse", d, tag))
        results.append(measure("ours", d, tag, "1"))
        results.append(measure("ours", d, tag, "columnar"))
        if workers > 1 and fmt == "txt" and enc == "GB18030":
            results.append(measure("ours", d, tag, str(workers)))
        if workers > 1 and fmt == "xml":  # a big XML file is read in parts on several processes by default
            results.append(measure("ours", d, tag, f"default:{workers}"))
        if fmt == "txt" and enc == "GB18030" and friction_rows:
            fd = d if friction_rows >= rows else make_delivery(friction_rows, fmt, work, enc)
            results.append(measure("frictionless", fd, tag))
        if fmt == "txt" and enc == "GB18030" and failing:
            f = make_failing(d, failing, work)
            results.append(measure("ours", f, tag, "1", f"{failing:,} failing rows"))
            results.append(measure("ours", f, tag, "columnar", f"{failing:,} failing rows"))
            shutil.rmtree(f)
        if big and enc == "GB18030":
            b = make_delivery(big, fmt, work, enc)
            results.append(measure("csv" if fmt == "txt" else "iterparse", b, tag))
            results.append(measure("ours", b, tag, "1"))
            results.append(measure("ours", b, tag, "columnar"))
            shutil.rmtree(b)
        shutil.rmtree(d)
    return results


def table(results: list[Measurement]) -> str:
    """The results as a Markdown table with ratios against the floor of the same size and format."""
    floors = {(m.fmt, m.rows): m for m in results if m.name in ("csv", "iterparse")}
    ours1 = {(m.fmt, m.rows): m for m in results if m.name.startswith("ours (1") and "failing" not in m.name}
    lines = ["| format | run | rows | seconds | rows/s | × floor time | peak MiB | findings |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in results:
        floor = floors.get((m.fmt, m.rows))
        ratio = f"{m.seconds / floor.seconds:.2f}" if floor else "—"
        lines.append(f"| {m.fmt} | {m.name} | {m.rows:,} | {m.seconds:.2f} | {m.rows_per_s:,.0f} | {ratio} | "
                     f"{m.peak_mib:.0f} | {'' if m.findings is None else m.findings} |")
    notes = []
    for m in results:
        if m.name == "frictionless" and m.rows_per_s:
            main = results[0].rows  # frictionless may run on a smaller file: compare with the main size
            for prefix in ("ours", "columnar"):
                runs = [o for o in results if o.fmt == m.fmt and o.name.startswith(prefix) and "failing" not in o.name
                        and o.rows == main]
                if runs:
                    best = max(runs, key=lambda o: o.rows_per_s)
                    notes.append(f"- {best.name} vs frictionless: {best.rows_per_s / m.rows_per_s:.1f}x the rows/s")
    for m in results:
        if "failing" in m.name:
            clean = next((o for o in results if o.fmt == m.fmt and o.rows == m.rows
                          and o.name == m.name.split(", ")[0]), None)
            if clean:
                notes.append(f"- {m.name}: {m.seconds / clean.seconds:.2f}x the clean file's time")
    columnar = {(m.fmt, m.rows): m for m in results if m.name == "columnar (1 process)"}
    sizes = sorted({k[1] for k in ours1})
    if len(sizes) > 1:
        for fmt in sorted({k[0] for k in columnar}):
            small, large = columnar.get((fmt, sizes[0])), columnar.get((fmt, sizes[-1]))
            if small and large:
                notes.append(f"- peak memory {fmt} columnar: {large.rows:,} rows {large.peak_mib:.0f} MiB vs "
                             f"{small.rows:,} rows {small.peak_mib:.0f} MiB = {large.peak_mib / small.peak_mib:.2f}x")
        for fmt in sorted({k[0] for k in ours1}):
            small, large = ours1.get((fmt, sizes[0])), ours1.get((fmt, sizes[-1]))
            if small and large:
                notes.append(f"- peak memory {fmt}: {large.rows:,} rows {large.peak_mib:.0f} MiB vs {small.rows:,} rows "
                             f"{small.peak_mib:.0f} MiB = {large.peak_mib / small.peak_mib:.2f}x")
    return "\n".join(lines + [""] + notes)


def main() -> None:
    """Command line: run the benchmark and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the main file (default 1,000,000)")
    ap.add_argument("--big", type=int, default=4_000_000, help="rows of the memory-flatness file (0: skip)")
    ap.add_argument("--frictionless-rows", type=int, default=1_000_000,
                    help="rows frictionless validates (0: skip); it is slow, so a smaller file is allowed")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="for the parallel run")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--no-xml", action="store_true", help="text runs only")
    ap.add_argument("--no-txt", action="store_true", help="XML runs only")
    ap.add_argument("--failing", type=int, default=100_000,
                    help="failing rows in the extra GB18030 text file (0: skip)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="kam-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.time()
        results = run(a.rows, a.big, a.frictionless_rows, work, a.workers, not a.no_xml, min(a.failing, a.rows // 2),
                      not a.no_txt)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"wall {time.time() - started:.0f} s")
        print(table(results))
        if a.json:
            a.json.write_text(json.dumps([asdict(m) | {"rows_per_s": m.rows_per_s} for m in results], indent=2))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
