"""Check one delimited file batch by batch: a vectorised screen, the row path for what it flags.

For each batch of lines the compiled screen (``plan.py``) marks every row the reference
row path might report something about: a wrong column count, a forbidden character, a
line past MAX_LINE, any field or record check that fails or that the screen cannot decide.
Those rows, in line order, go through the row path's own compiled function
(``run_rows`` of ``compiler.build_checker``), which reports them exactly as a serial run of
the row core would — same findings, same order, same per-code cap, because ``Report.add``
sees the same calls in the same order (clean rows produce no call). The facts clean rows
leave for the file-level and cross-unit checks (key projections, per-key sums, the local
networks seen) are computed from the batch's columns and written to the same key store and
sinks the row path fills — except that repeated unique keys are found by sorted runs
(``keys.py``), not by SQLite, and a key table only those read is not written to SQLite.
"""
from __future__ import annotations

from itertools import repeat
from pathlib import Path
from typing import Any, Callable

import polars as pl

from ..compiler import Sinks
from ..engine import typed_value
from ..readers import MAX_LINE, text_lines
from ..store import SEP, KeyStore
from . import reader
from .keys import SortedRuns
from .plan import UnitPlan, col, forbidden_class


def _frame(lines: pl.Series, plan: UnitPlan, delimiter: str) -> pl.DataFrame:
    names = [col(i) for i in range(plan.nf)]
    text = pl.col("l").str.strip_chars_end("\r")
    lf = pl.LazyFrame({"l": lines}).with_row_index("i").with_columns(t=text)
    lf = lf.with_columns(pl.col("t").str.split_exact(delimiter, plan.nf - 1).struct.rename_fields(names)
                         .alias("s")).unnest("s")
    structural = ((pl.col("t").str.count_matches(delimiter, literal=True) != plan.nf - 1)
                  | (pl.col("l").str.len_chars() > MAX_LINE)
                  | pl.col("t").str.contains(forbidden_class(delimiter)))
    wheres = [(f"w{k}", w) for k, (_, w) in enumerate(plan.projections) if w is not None]
    lf = lf.with_columns((structural | plan.suspect).fill_null(True).alias("suspect"),
                         *[w.fill_null(False).alias(name) for name, w in wheres])
    return lf.drop("t").collect()


def check_text_file(plan: UnitPlan, run_rows: Callable[[Any], int], path: Path, encoding: str, delimiter: str,
                    sinks: Sinks, store: KeyStore, file_id: int) -> int:
    """Check every line of ``path``; returns the number of lines (as the row path's ``run_text``)."""
    lines_read = 0
    unit_projections = [p.name for p, _ in plan.projections]
    for name in plan.sorted_keys:  # repeated keys found by sorted runs, not by sorting in SQLite
        store.track(name, SortedRuns(store.path.parent))
    for batch in reader.batches(path, encoding, reader.BLOCK, reader.LONG_LINE):
        if batch.lines is None:  # one line too long for a batch: the row path's reader cuts it as always
            line = batch.first + 1
            for raw in text_lines(path, encoding, batch.start, batch.end):
                vals = raw.rstrip("\r").split(delimiter)
                run_rows([(vals, line, line)])
            lines_read = batch.first + 1
        elif len(batch.lines):
            first = batch.first
            try:
                df = _frame(batch.lines, plan, delimiter)
            except pl.exceptions.PolarsError:
                # Whatever the screen could not compute, the row path can: every row of the batch is suspect.
                df = pl.DataFrame({"l": batch.lines}).with_row_index("i").with_columns(suspect=pl.lit(True))
            bad = df.filter(pl.col("suspect"))
            if len(bad):
                rows = [(raw[:MAX_LINE].rstrip("\r").split(delimiter), first + i + 1, first + i + 1)
                        for i, raw in zip(bad["i"].to_list(), bad["l"].to_list())]
                run_rows(rows)
            clean = df.filter(~pl.col("suspect"))
            if len(clean):
                _clean_facts(plan, clean, first, sinks, store, file_id)
            lines_read = first + len(df)
        for name in unit_projections:  # what the row path buffered for the suspect rows
            store.flush(name, sinks.projections.setdefault(name, []))
    _reorder_sums(plan, sinks)
    return lines_read


def _clean_facts(plan: UnitPlan, clean: pl.DataFrame, first: int, sinks: Sinks, store: KeyStore,
                 file_id: int) -> None:
    """Key projections, sums and networks of rows the screen proved clean (the row path's side effects)."""
    idx = {f: i for i, f in enumerate(plan.columns)}
    lines = (clean["i"] + (first + 1)).to_list()
    for k, (p, where) in enumerate(plan.projections):
        frame = clean
        if where is not None:
            frame = clean.filter(pl.col(f"w{k}"))
        if not len(frame):
            store.ensure(p.name)
            continue
        key_expr = pl.concat_str([pl.col(col(idx[n])) for n in p.key], separator=SEP)
        tracker = store.trackers.get(p.name)
        if tracker is not None:
            assert isinstance(tracker, SortedRuns)
            tracker.add(frame.select(key_expr.alias("k"), pl.lit(file_id).alias("file"),
                                     (pl.col("i") + (first + 1)).alias("line")))
            if p.name in plan.runs_only:  # nothing but the repeated-key check reads this table
                store.ensure(p.name)
                continue
        keys = frame.select(key_expr).to_series().to_list()
        vals = frame[col(idx[p.value])].to_list() if p.value else repeat("")
        plines = lines if where is None else (frame["i"] + (first + 1)).to_list()
        store.insert(p.name, zip(keys, vals, plines, repeat(file_id)))
    for s in plan.sums:
        table: dict[tuple[str, ...], Any] = sinks.sums.setdefault((s.rule, s.side), {})
        firsts = sinks.first_line.setdefault((s.rule, s.side), {})
        ftype = plan.typed[s.field]
        by = [clean[col(idx[b])].to_list() for b in s.by]
        amounts = clean[col(idx[s.field])].to_list()
        for n, (line, amount) in enumerate(zip(lines, amounts)):
            key = tuple(b[n] for b in by)
            table[key] = table.get(key, 0) + (typed_value(ftype, amount) or 0)
            seen = firsts.get(key)
            # The row path may have met the key first in a later suspect row of this batch.
            if seen is None or (seen[1] == file_id and seen[0] is not None and seen[0] > line):
                firsts[key] = (line, file_id)
    if plan.network is not None:
        nets = sinks.networks_by_unit.setdefault(plan.unit.name, set())
        nets.update(clean[col(idx[plan.network])].unique().to_list())
    for rule_id, field in plan.seen:
        sinks.networks_seen.setdefault(rule_id, set()).update(clean[col(idx[field])].unique().to_list())


def _reorder_sums(plan: UnitPlan, sinks: Sinks) -> None:
    """Put each sum table back in first-seen order, as the row path fills it row by row.

    Clean rows add their amounts batch-wise and suspect rows through the row path, so keys
    enter the dicts out of line order; the tier-5 checks walk them in order, so restore it
    (sorted by the (line, file) each key was first seen at — exactly the row path's order).
    """
    for s in plan.sums:
        table = sinks.sums.get((s.rule, s.side))
        firsts = sinks.first_line.get((s.rule, s.side))
        if not table or not firsts:
            continue
        order = sorted(firsts, key=lambda key: (firsts[key][1], firsts[key][0]))
        items = [(key, table[key]) for key in order if key in table]
        table.clear()
        table.update(items)
        fitems = [(key, firsts[key]) for key in order]
        firsts.clear()
        firsts.update(fitems)
