"""Validate one large delimited or XML file on several cores.

A delimited file is cut at line starts into one byte range per worker; an XML file at
``<ROW`` starts (``readers.xml_parts``), each part read as a document of its own. Each
worker process runs the same compiled checks over its range with its own report and its
own key store, and sends back what it found; the parent merges counts, findings (still
capped per code), the per-key sums and the key tables, then runs the file-level and
cross-unit checks once, as for a file read in one piece. Workers are forked from a single-threaded process and
spawned from one with threads (a server), which must never fork.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field as dc_field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..spec import load_spec
from .compiler import RunContext, Sinks, build_checker, needed_projections
from .readers import CountedRows, XmlPart, XmlProblem, text_lines, xml_rows
from .report import Finding, Report
from .store import FLUSH_EVERY, KeyStore


@dataclass
class RangeJob:
    """One worker's share of a file."""

    spec_root: str
    ctx: dict[str, Any]  # RunContext without the spec
    unit_code: str
    path: str
    encoding: str
    delimiter: str
    start: int
    end: int
    first_line: int
    file_name: str
    file_id: int
    cap: int
    tmp_dir: str | None
    code_additions: str = ""  # the Spec's code-list versions beyond the YAML (see with_code_versions)
    xml: XmlPart | None = None  # an XML file's part (start, end, and the bytes around them)


@dataclass
class RangeResult:
    """What one worker found in its share."""

    rows: int
    counts: dict[str, int]
    findings: list[Finding]
    errors: int
    warnings: int
    sums: dict[tuple[str, str], dict[tuple[str, ...], Decimal]]
    first_line: dict[tuple[str, str], dict[tuple[str, ...], tuple[int, int]]]
    networks_seen: dict[str, set[str]]
    networks_by_unit: dict[str, set[str]]
    keys_db: str
    tables: list[str] = dc_field(default_factory=list)
    # XML: the part could not be read whole (its parse stopped). The caller then reads the file
    # in one piece, which says where and why; nothing else here counts.
    stopped: bool = False


def run_range(job: RangeJob) -> RangeResult:
    """Worker entry point: validate lines [start, end) of one file."""
    spec = load_spec(job.spec_root, job.code_additions)
    unit = spec.unit(job.unit_code)
    ctx = RunContext(spec=spec, **job.ctx)
    report = Report(spec, cap=job.cap)
    from .report import FileSummary

    report.files[job.file_name] = FileSummary(job.file_name, unit=unit.name)
    sinks = Sinks()
    store = KeyStore(job.tmp_dir)
    field_ids = unit.field_ids

    def xpath(rowno: int, fld: str | None) -> str | None:
        # The part's own row number; merge() adds the rows of the parts before it.
        return None if job.xml is None else f"/{unit.name}/ROW[{rowno}]" + (f"/{fld}" if fld else "")

    def emit_field(code: str, line: int, rowno: int, fld: str, value: str, expected: Any) -> None:
        report.add(code, job.file_name, line, fld, value, expected, xpath=xpath(rowno, fld), unit=unit.name)

    def emit_rule(code: str, line: int, rowno: int, fld: str | None, value: Any, vals: list[str]) -> None:
        report.add(code, job.file_name, line, fld, value, None, row=dict(zip(field_ids, vals)),
                   xpath=xpath(rowno, fld), unit=unit.name)

    def emit_columns(line: int, rowno: int, found: int) -> None:
        report.add("E201", job.file_name, line, value=found, expected=len(field_ids), xpath=xpath(rowno, None),
                   unit=unit.name)

    buffers = [(p.name, sinks.projections.setdefault(p.name, [])) for p in needed_projections(spec, unit)]

    def flush() -> None:
        for name, buf in buffers:
            store.flush(name, buf)

    checks = build_checker(ctx, unit, sinks, emit_field=emit_field, emit_rule=emit_rule, emit_columns=emit_columns,
                           flush=flush, file_id=job.file_id, flush_every=FLUSH_EVERY)
    stopped = False
    if job.xml is None:
        lines = text_lines(Path(job.path), job.encoding, job.start, job.end)
        rows = checks.run_text(lines, job.delimiter, job.first_line)
    else:
        from .engine import _structural_schema

        counted = CountedRows(xml_rows(job.xml, unit.name, field_ids, spec.namespace,
                                        _structural_schema(job.spec_root, unit.code)))
        try:
            checks.run_rows(counted)
        except XmlProblem:
            stopped = True
        rows = counted.n
    flush()
    store.db.execute("COMMIT")
    store.db.close()
    fs = report.files[job.file_name]
    return RangeResult(rows=rows, counts=dict(report.counts), findings=report.findings, errors=fs.errors,
                       warnings=fs.warnings, sums=sinks.sums, first_line=sinks.first_line,
                       networks_seen=sinks.networks_seen, networks_by_unit=sinks.networks_by_unit,
                       keys_db=str(store.path), tables=sorted(store.tables), stopped=stopped)


def _start_method() -> str:
    # fork is cheap and needs no importable __main__, but is unsafe in a process with
    # threads (a web server); there, spawn.
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def run_ranges(jobs: list[RangeJob]) -> list[RangeResult]:
    """Run the jobs on as many processes, results in job order."""
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=context) as pool:
        return list(pool.map(run_range, jobs))


def merge(report: Report, file_name: str, results: list[RangeResult], sinks: Sinks, store: KeyStore) -> int:
    """Fold the workers' results into the parent's report, sinks and key store; return rows.

    An XML part's findings name rows by the part's own count (``ROW[n]``): the rows of the
    parts before it are added.
    """
    rows = 0
    fs = report.files[file_name]
    listed: dict[str, int] = {}
    for f in report.findings:
        listed[f.code] = listed.get(f.code, 0) + 1
    for res in results:
        fs.errors += res.errors
        fs.warnings += res.warnings
        for f in res.findings:
            if listed.get(f.code, 0) < report.cap:
                report.findings.append(_row_shifted(f, rows) if rows and f.xpath else f)
                listed[f.code] = listed.get(f.code, 0) + 1
        rows += res.rows
        for code, n in res.counts.items():
            report.counts[code] += n
            if report.tier_of(code) == 2:
                report.structural.setdefault(file_name, code)
        for key, table in res.sums.items():
            sums = sinks.sums.setdefault(key, {})
            for k, amount in table.items():
                sums[k] = sums.get(k, 0) + amount
        for key, lines in res.first_line.items():
            target_lines = sinks.first_line.setdefault(key, {})
            for k, where in lines.items():
                target_lines.setdefault(k, where)
        for rule, seen in res.networks_seen.items():
            sinks.networks_seen.setdefault(rule, set()).update(seen)
        for unit, nets in res.networks_by_unit.items():
            sinks.networks_by_unit.setdefault(unit, set()).update(nets)
        store.absorb(res.keys_db, res.tables)
    return rows


_XPATH_ROW = re.compile(r"^(/[^/]+/ROW\[)([0-9]+)(\].*)$", re.S)


def _row_shifted(f: Finding, before: int) -> Finding:
    """``f`` with its XPath's row number counted from the file's start (``before`` rows precede its part)."""
    m = _XPATH_ROW.match(f.xpath or "")
    if m is None:
        return f
    return dataclasses.replace(f, xpath=f"{m.group(1)}{int(m.group(2)) + before}{m.group(3)}")
