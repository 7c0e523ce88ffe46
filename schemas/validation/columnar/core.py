"""Check one delimited file batch by batch: a vectorised screen, the row path for what it flags.

For each batch of lines the compiled screen (``plan.py``) marks every row the reference
row path might report something about: a wrong column count, a forbidden character, a
line past MAX_LINE, any field or record check that fails or that the screen cannot decide.
Those rows, in line order, go through the row path's own compiled function
(``run_rows`` of ``compiler.build_checker``), which reports them exactly as a serial run of
the row core would — same findings, same order, same per-code cap, because ``Report.add``
sees the same calls in the same order (clean rows produce no call). The facts clean rows
leave for the file-level and cross-unit checks (key projections, per-key sums, the local
networks seen) are computed from the batch's columns and given to the same key store and
sinks the row path fills — except that repeated unique keys are found by sorted runs
(``keys.py``), not by SQLite, a key table only those read is not written to SQLite, and the
others are held as frames until a check reads them (``KeyStore.defer``).
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import polars as pl

from ..compiler import Sinks, SumSpec
from ..readers import MAX_LINE, text_lines
from ..store import SEP, KeyStore
from . import reader
from .keys import DeferredRows, SortedRuns
from .plan import UnitPlan, col, forbidden_class, scaled


BATCH_ROWS = 20_000  # parsed rows (XML) gathered before a batch is screened, about a text batch's
# polars' CSV reader decompresses bytes that begin like gzip, zlib or zstd (it has no switch to
# stop it): a batch that begins so is split line by line instead (a test pins this list).
COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x28\xb5\x2f\xfd")


def _read(data: bytes, separator: str, names: list[str]) -> pl.DataFrame:
    return pl.read_csv(data, separator=separator, has_header=False, quote_char=None, infer_schema=False,
                       new_columns=names, empty_string_is_null=False, truncate_ragged_lines=False,
                       raise_if_empty=False)


def _wheres(plan: UnitPlan) -> list[pl.Expr]:
    return [w.fill_null(False).alias(f"w{k}") for k, (_, w) in enumerate(plan.projections) if w is not None]


def _screened(frame: pl.LazyFrame, plan: UnitPlan, structural: pl.Expr) -> pl.LazyFrame:
    """``frame`` with ``suspect`` and the ``where``s; each check a column of its own, so polars runs them in parallel."""
    names = [f"s{k}" for k in range(len(plan.parts))]
    return (frame.with_columns(*[p.alias(n) for p, n in zip(plan.parts, names)], *_wheres(plan))
            .with_columns((structural | pl.any_horizontal(names)).fill_null(True).alias("suspect"))
            .drop(names))


def _fast_screen(data: bytes, count: int, plan: UnitPlan, delimiter: str, crlf: bool | None = None
                 ) -> pl.DataFrame | None:
    """The batch's fields by polars' CSV reader, screened; None when a line may not split as the row path splits it.

    With quoting off the reader cuts lines at LF (dropping a CR just before it) and fields
    at the delimiter, as the row path's ``rstrip("\\r").split`` does, for every line with
    the right number of fields. It refuses a line with too many; one with too few it pads
    with empty fields, which the row path would not: so the batch is taken only if its
    fields' bytes, plus the delimiters and line ends they imply, are exactly the batch's
    bytes (a short line, an empty one or a CR inside a field always make them more). Then
    every line split exactly; a line's own length is its fields' plus the delimiters.
    Forbidden characters are looked for in the fields whose own check would not already
    fail on one (free text; codes, numbers and dates cannot hold one and pass), by the plan.
    """
    if data.startswith(COMPRESSED_MAGIC):
        return None
    names = [col(i) for i in range(plan.nf)]
    try:
        fields = _read(data, delimiter, names)
    except (pl.exceptions.PolarsError, OSError):  # OSError: bytes polars took for a compressed stream
        return None
    if len(fields) != count:
        return None
    widths = fields.select(pl.all().str.len_bytes().cast(pl.Int64).sum()).row(0)
    # Tier 1 has seen every line end alike (a mix, or a CR alone, stops it): count CRs only if it could not say.
    crs = (data.count(b"\r") if b"\r" in data else 0) if crlf is None else count if crlf else 0
    if sum(widths) + (plan.nf - 1) * count != len(data) - count - crs:
        return None
    # A line past MAX_LINE is suspect; a line the field checks pass is never that long (the plan
    # knows how long it can be), so only a unit whose lines could be needs to measure each one.
    long_line = pl.lit(False)
    if plan.clean_line_bytes >= MAX_LINE:
        long_line = pl.sum_horizontal([pl.col(n).str.len_bytes() for n in names]) + (plan.nf - 1) >= MAX_LINE
    try:
        return _screened(fields.lazy().with_row_index("i"), plan, long_line).collect()
    except pl.exceptions.PolarsError:
        return None


def _slow_screen(data: bytes, plan: UnitPlan, delimiter: str) -> pl.DataFrame:
    """The batch split line by line as strings and screened, structure included: slower, but takes any line."""
    names = [col(i) for i in range(plan.nf)]
    lines = reader.as_lines(data).str.strip_chars_end("\r")
    line = pl.col("l")
    structural = ((line.str.count_matches(delimiter, literal=True) != plan.nf - 1)
                  | (line.str.len_chars() >= MAX_LINE)
                  | line.str.contains(forbidden_class(delimiter)))
    frame = (pl.DataFrame({"l": lines}).lazy().with_row_index("i")
             .with_columns(line.str.split_exact(delimiter, plan.nf - 1).struct.rename_fields(names).alias("s"))
             .unnest("s"))
    try:
        return _screened(frame, plan, structural).collect()
    except pl.exceptions.PolarsError:
        # Whatever the screen could not compute, the row path can: every row of the batch is suspect.
        return pl.DataFrame({"l": lines}).with_row_index("i").with_columns(suspect=pl.lit(True))


def _prepare_store(plan: UnitPlan, store: KeyStore) -> None:
    for name in plan.sorted_keys:  # repeated keys found by sorted runs, not by sorting in SQLite
        store.track(name, SortedRuns(store.path.parent))
    for p, _ in plan.projections:  # held out of SQLite until a cross-unit check reads them
        if p.name not in plan.runs_only:
            store.defer(p.name, DeferredRows(store.path.parent))


def _flush_row_path(plan: UnitPlan, sinks: Sinks, store: KeyStore) -> None:
    """Move the key rows the row path buffered for a batch's suspect rows to the key store."""
    for p, _ in plan.projections:
        store.flush(p.name, sinks.projections.setdefault(p.name, []))


def check_text_file(plan: UnitPlan, run_rows: Callable[[Any], int], path: Path, encoding: str, delimiter: str,
                    sinks: Sinks, store: KeyStore, file_id: int, crlf: bool | None = None) -> int:
    """Check every line of ``path``; returns the number of lines (as the row path's ``run_text``).

    Three stages overlap, each a batch ahead of the next: reading (and transcoding) on one
    thread, splitting and screening on another, and here, in line order, the row path for
    the suspect rows and the clean rows' facts.
    """
    lines_read = 0
    _prepare_store(plan, store)
    for batch, bad, clean in reader.ahead(lambda: _screened_batches(plan, path, encoding, delimiter, crlf),
                                          "columnar-screen"):
        if bad is None or clean is None:  # one line too long for a batch: the row path's reader cuts it as always
            line = batch.first + 1
            for raw in text_lines(path, encoding, batch.start, batch.end):
                vals = raw.rstrip("\r").split(delimiter)
                run_rows([(vals, line, line)])
            lines_read = batch.first + 1
        else:
            first = batch.first
            if len(bad):
                rows = [(raw[:MAX_LINE].split(delimiter), first + i + 1, first + i + 1)
                        for i, raw in zip(bad["i"].to_list(), bad["l"].to_list())]
                run_rows(rows)
            if len(clean):
                _clean_facts(plan, clean, first, sinks, store, file_id)
            lines_read = first + batch.count
        _flush_row_path(plan, sinks, store)
    _reorder_sums(plan, sinks)
    return lines_read


def _screened_batches(plan: UnitPlan, path: Path, encoding: str, delimiter: str, crlf: bool | None
                      ) -> Iterator[tuple[reader.Batch, pl.DataFrame | None, pl.DataFrame | None]]:
    """Each batch of the file with its suspect rows (index, text) and its clean rows' fact columns.

    Both are None for an over-long line the row path reads itself.
    """
    for batch in reader.batches(path, encoding, reader.BLOCK, reader.LONG_LINE):
        if batch.data is None:
            yield batch, None, None
            continue
        if not batch.count:
            continue
        df = _fast_screen(batch.data, batch.count, plan, delimiter, crlf)
        if df is None:
            df = _slow_screen(batch.data, plan, delimiter)
            text = pl.col("l")
        else:  # every line split exactly: its text is its fields joined
            text = pl.concat_str([pl.col(col(i)) for i in range(plan.nf)], separator=delimiter)
        bad = df.filter(pl.col("suspect")).select("i", text.alias("l"))
        clean = df.select(plan.fact_columns).filter(~pl.col("suspect")) if "c0" in df.columns else df.clear()
        yield batch, bad, clean


def _clean_facts(plan: UnitPlan, clean: pl.DataFrame, first: int | None, sinks: Sinks, store: KeyStore,
                 file_id: int) -> None:
    """Key projections, sums and networks of rows the screen proved clean (the row path's side effects).

    A row's line is ``first`` + its index + 1 (text), or its ``line`` column when ``first`` is None (XML).
    """
    idx = {f: i for i, f in enumerate(plan.columns)}
    line = (pl.col("line") if first is None else pl.col("i") + (first + 1)).cast(pl.Int64).alias("line")
    # Every projection's key (and value) in one pass; a one-field key is its column as it is.
    exprs: list[pl.Expr] = [line, pl.lit(file_id, dtype=pl.Int64).alias("file")]
    for k, (p, where) in enumerate(plan.projections):
        cols = [pl.col(col(idx[n])) for n in p.key]
        exprs.append((cols[0] if len(cols) == 1 else pl.concat_str(cols, separator=SEP)).alias(f"k{k}"))
        exprs.append((pl.col(col(idx[p.value])) if p.value else pl.lit("", dtype=pl.String)).alias(f"v{k}"))
        if where is not None:
            exprs.append(pl.col(f"w{k}"))
    facts = clean.select(exprs)
    for k, (p, where) in enumerate(plan.projections):
        frame = facts if where is None else facts.filter(pl.col(f"w{k}"))
        if not len(frame):
            store.ensure(p.name)
            continue
        tracker = store.trackers.get(p.name)
        if tracker is not None:
            assert isinstance(tracker, SortedRuns)
            tracker.add(frame.select(pl.col(f"k{k}").alias("k"), "file", "line"))
            if p.name in plan.runs_only:  # nothing but the repeated-key check reads this table
                store.ensure(p.name)
                continue
        rows = frame.select(pl.col(f"k{k}").alias("k"), pl.col(f"v{k}").alias("v"), "line", "file")
        held = store.deferred.get(p.name)
        if isinstance(held, DeferredRows):
            held.add(rows)
        else:  # read already (a later file of the unit): straight to SQLite
            store.insert(p.name, rows.iter_rows())
    for s in plan.sums:
        _add_sums(plan, s, clean, idx, line, sinks, file_id)
    if plan.network is not None:
        nets = sinks.networks_by_unit.setdefault(plan.unit.name, set())
        nets.update(clean[col(idx[plan.network])].unique().to_list())
    for rule_id, field in plan.seen:
        sinks.networks_seen.setdefault(rule_id, set()).update(clean[col(idx[field])].unique().to_list())


def check_rows(plan: UnitPlan, run_rows: Callable[[Any], int], rows: Iterable[tuple[list[str], int, int]],
               sinks: Sinks, store: KeyStore, file_id: int) -> None:
    """Check parsed rows (an XML file's ``(values, line, row number)``) batch by batch, as ``check_text_file``.

    The values are gathered into columns, screened, and the suspect rows go to the row
    path in order; the clean rows' facts come from the columns. Should the parser stop
    (``XmlProblem``), the rows before that point are checked first and the error is then
    raised, so the findings come in the row path's order.
    """
    _prepare_store(plan, store)
    names = [col(i) for i in range(plan.nf)]
    try:
        # Parsing (lxml, holding the GIL) runs on a second thread a batch ahead; the screen here releases it.
        for held, lines, rownos in reader.ahead(lambda: _row_batches(rows), "columnar-xml"):
            values = pl.Series("v", held, dtype=pl.String).reshape((len(lines), plan.nf))
            frame = values.arr.to_struct(fields=names).struct.unnest().with_columns(
                line=pl.Series(lines, dtype=pl.Int64), rowno=pl.Series(rownos, dtype=pl.Int64))
            try:
                df = _screened(frame.lazy().with_row_index("i"), plan, pl.lit(False)).collect()
            except pl.exceptions.PolarsError:  # whatever the screen could not compute, the row path can
                df = frame.with_row_index("i").with_columns(suspect=pl.lit(True))
            bad = df.filter(pl.col("suspect"))
            if len(bad):
                run_rows([(list(vals), line, rowno) for vals, line, rowno in
                          zip(bad.select(names).iter_rows(), bad["line"].to_list(), bad["rowno"].to_list())])
            clean = df.filter(~pl.col("suspect")).select(*plan.fact_columns, "line")
            if len(clean):
                _clean_facts(plan, clean, None, sinks, store, file_id)
            _flush_row_path(plan, sinks, store)
    finally:
        _reorder_sums(plan, sinks)


def _row_batches(rows: Iterable[tuple[list[str], int, int]]) -> Iterator[tuple[list[str], list[int], list[int]]]:
    """Parsed rows gathered ``BATCH_ROWS`` at a time: (their values row after row, lines, row numbers).

    Should the parser stop, the rows read before that point still come as a last batch,
    and then its error is raised.
    """
    held: list[str] = []  # one Series cut into columns: faster than building a frame from rows
    lines: list[int] = []
    rownos: list[int] = []
    try:
        for vals, line, rowno in rows:
            held.extend(vals)
            lines.append(line)
            rownos.append(rowno)
            if len(lines) >= BATCH_ROWS:
                yield held, lines, rownos
                held, lines, rownos = [], [], []
    except Exception:
        if lines:
            yield held, lines, rownos
        raise
    if lines:
        yield held, lines, rownos


def _add_sums(plan: UnitPlan, s: SumSpec, clean: pl.DataFrame, idx: dict[str, int], line: pl.Expr,
              sinks: Sinks, file_id: int) -> None:
    """Add clean rows' amounts per key as the row path does: ``total + (typed_value(amount) or 0)``, row by row.

    Summed per key in polars at the field's scale (exact: clean amounts passed the field's
    pattern). A Decimal sum's exponent is the smallest of its non-zero addends' (and 0, the
    start): zero amounts are falsy and add the int 0. So each key's batch total is rebuilt
    with the exponent the row-by-row sum would have, and an all-zero key adds the int 0.
    """
    table: dict[tuple[str, ...], Any] = sinks.sums.setdefault((s.rule, s.side), {})
    firsts = sinks.first_line.setdefault((s.rule, s.side), {})
    ftype = plan.typed[s.field]
    amount = pl.col(col(idx[s.field]))
    by = [pl.col(col(idx[b])).alias(f"b{n}") for n, b in enumerate(s.by)]
    if ftype == "decimal":
        scale = plan.scales[s.field]
        value = scaled(amount, scale).cast(pl.Int128).fill_null(0)
        digits = amount.str.split_exact(".", 1).struct.field("field_1").str.len_bytes().fill_null(0)
        aggs = [value.sum().alias("t"), pl.when(value != 0).then(digits).max().alias("d")]
    elif ftype == "integer":
        value = amount.cast(pl.Int128, strict=False).fill_null(0)
        aggs = [value.sum().alias("t")]
    else:
        raise TypeError(f"a sum over a {ftype} field")
    groups = clean.group_by(by, maintain_order=True).agg(*aggs, line.min().alias("first"))
    for row in groups.iter_rows(named=True):
        key = tuple(row[f"b{n}"] for n in range(len(s.by)))
        total: Any = row["t"]
        if ftype == "decimal":
            digits = row["d"]
            total = 0 if digits is None else Decimal(total).scaleb(-scale).quantize(Decimal(1).scaleb(-digits))
        if total != 0 or isinstance(total, Decimal):
            table[key] = table.get(key, 0) + total
        elif key not in table:
            table[key] = 0
        seen = firsts.get(key)
        # The row path may have met the key first in a later suspect row of this batch.
        if seen is None or (seen[1] == file_id and seen[0] is not None and seen[0] > row["first"]):
            firsts[key] = (row["first"], file_id)


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
