"""Duplicate keys without SQLite: sorted runs of (key, file, line) in polars, spilled past a budget.

The row path finds repeated keys by sorting a key table in SQLite (``KeyStore.duplicates``).
For the tables the columnar core registers (a unit's primary key and its unique rules),
every row that would go to that table is also given, batch by batch, to a ``SortedRuns``:
clean rows as a polars frame straight from the batch's columns, the row path's rows (the
suspect ones, and any earlier file of the unit) as the ``KeyRow``s it flushes. Frames are
kept in memory up to ``BUDGET`` bytes; past it they are sorted by (key, file, line) into a
run written to disk as Arrow IPC chunks of ``CHUNK`` rows under the store's directory. At
the end the runs are merged window by window — a window holds every row whose key is below
the smallest last key of the chunks in hand (a run's rows of that key may go on in its next
chunk), so all rows of a key are in one window —
and each window's repeats are found with vectorised expressions. Only repeats reach Python,
in the order SQLite's ``ORDER BY k, file, line`` gives (polars and SQLite both order text by
its UTF-8 bytes), with the same first occurrence, so the findings are the row path's.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import polars as pl

from ..store import KeyRow

BUDGET = 4 << 20  # bytes of unsorted frames held per table before a run is written
CHUNK = 1 << 16  # rows per spilled chunk file: what the merge holds per run
SCHEMA = {"k": pl.String, "file": pl.Int64, "line": pl.Int64}
ROW_SCHEMA = {"k": pl.String, "v": pl.String, "line": pl.Int64, "file": pl.Int64}  # a KeyStore table's
ORDER = ["k", "file", "line"]
Duplicate = tuple[str, int, str, int, str]


def _temp_ipc(folder: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".arrow", dir=folder)
    os.close(fd)
    return Path(name)


class _HeldFrames:
    """Frames of one schema held in memory up to ``budget`` bytes; past it the subclass spills them to disk."""

    schema: dict[str, type[pl.DataType]]

    def __init__(self, tmp_dir: str | os.PathLike[str], budget: int | None = None) -> None:
        self.dir = Path(tmp_dir)
        self.budget = BUDGET if budget is None else budget
        self.frames: list[pl.DataFrame] = []
        self.size = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Take a frame with the schema's columns."""
        if not len(frame):
            return
        if frame.schema != self.schema:
            frame = frame.select(pl.col(c).cast(t) for c, t in self.schema.items())
        self.frames.append(frame)
        self.size += int(frame.estimated_size())
        if self.size > self.budget:
            self._spill()

    def _spill(self) -> None:
        raise NotImplementedError


class SortedRuns(_HeldFrames):
    """The (key, file, line) rows of one key table, for finding repeated keys in bounded memory."""

    schema = SCHEMA

    def __init__(self, tmp_dir: str | os.PathLike[str], budget: int | None = None, chunk: int | None = None) -> None:
        super().__init__(tmp_dir, budget)
        self.chunk = CHUNK if chunk is None else chunk
        self.runs: list[list[Path]] = []

    def add_rows(self, rows: Iterable[KeyRow]) -> None:
        """Take the row path's (key, value, line, file id) rows; accepted rows (no line) are never repeats here."""
        got = [r for r in rows if r[2] is not None]
        if got:
            self.add(pl.DataFrame({"k": [r[0] for r in got], "file": [r[3] for r in got],
                                   "line": [r[2] for r in got]}, schema=SCHEMA))

    def _spill(self) -> None:
        """Sort what is held into one run and write it to disk in chunks."""
        if not self.frames:
            return
        run = pl.concat(self.frames).sort(ORDER)
        self.frames, self.size = [], 0
        paths = []
        for start in range(0, len(run), self.chunk):
            path = _temp_ipc(self.dir, "kam-run-")
            run.slice(start, self.chunk).write_ipc(path)
            paths.append(path)
        self.runs.append(paths)

    def duplicates(self, file_name: Callable[[int], str]) -> Iterator[Duplicate]:
        """(key, line, file, first line, first file) for every repeat of a key, in key order (as ``KeyStore``)."""
        if not self.runs:  # everything fits the budget: one window
            if self.frames:
                yield from _repeats(pl.concat(self.frames).sort(ORDER), file_name)
            return
        self._spill()
        for window in self._windows():
            yield from _repeats(window, file_name)

    def _windows(self) -> Iterator[pl.DataFrame]:
        """The merged runs, cut so that every key's rows fall in one sorted window."""
        queues = [list(paths) for paths in self.runs]
        held = [pl.DataFrame(schema=SCHEMA) for _ in queues]
        while True:
            for i, queue in enumerate(queues):
                # A run's rows in hand are complete below their last key; load on while that leaves none.
                while queue and (not len(held[i]) or held[i]["k"][0] == held[i]["k"][-1]):
                    held[i] = pl.concat([held[i], pl.read_ipc(queue.pop(0))])
            if not any(len(h) for h in held):
                return
            limits = [h["k"][-1] for h, q in zip(held, queues) if q]
            bound = min(limits) if limits else None
            parts = []
            for i, h in enumerate(held):
                cut = len(h) if bound is None else h["k"].search_sorted(bound, side="left")
                parts.append(h.slice(0, cut))
                held[i] = h.slice(cut)
            yield pl.concat(parts).sort(ORDER)

    def close(self) -> None:
        """Drop what is held and the spilled runs."""
        self.frames = []
        for paths in self.runs:
            for p in paths:
                p.unlink(missing_ok=True)
        self.runs = []


def _repeats(frame: pl.DataFrame, file_name: Callable[[int], str]) -> Iterator[Duplicate]:
    """The repeats of a frame sorted by (k, file, line), each with its key's first row."""
    repeat = (pl.col("k") == pl.col("k").shift(1)).fill_null(False)
    dups = (frame.lazy()
            .with_columns(repeat.alias("r"))
            .with_columns(pl.when(~pl.col("r")).then(pl.col("line")).forward_fill().alias("fl"),
                          pl.when(~pl.col("r")).then(pl.col("file")).forward_fill().alias("ff"))
            .filter(pl.col("r"))
            .collect())
    for k, line, f, fl, ff in zip(dups["k"].to_list(), dups["line"].to_list(), dups["file"].to_list(),
                                  dups["fl"].to_list(), dups["ff"].to_list()):
        yield k, line, file_name(f), fl, file_name(ff)


class DeferredRows(_HeldFrames):
    """A key table's rows kept out of SQLite until a check reads the table (``KeyStore.defer``).

    The columnar core hands over a batch's clean rows as one frame; the row path's rows for
    the same table (its suspect rows) arrive as ``KeyRow`` lists and are kept in between, in
    the order given. Most key tables are read only by cross-unit rules that a delivery of
    one unit never runs; those are then never written at all. Past ``budget`` bytes held,
    the frames go to an Arrow IPC file under the store's directory, so memory stays flat.
    """

    schema = ROW_SCHEMA

    def __init__(self, tmp_dir: str | os.PathLike[str], budget: int | None = None) -> None:
        super().__init__(tmp_dir, budget)
        self.spilled: list[Path] = []

    def add_rows(self, rows: Iterable[KeyRow]) -> None:
        """Take the row path's (key, value, line, file id) rows."""
        got = list(rows)
        if got:
            self.add(pl.DataFrame(got, schema=ROW_SCHEMA, orient="row"))

    def _spill(self) -> None:
        if self.frames:
            path = _temp_ipc(self.dir, "kam-rows-")
            pl.concat(self.frames).write_ipc(path)
            self.spilled.append(path)
        self.frames, self.size = [], 0

    def rows(self) -> Iterator[KeyRow]:
        """Every row held, in the order given (what was spilled came first)."""
        for path in self.spilled:
            yield from pl.read_ipc(path).iter_rows()
        for frame in self.frames:
            yield from frame.iter_rows()

    def close(self) -> None:
        """Drop what is held and the spilled files."""
        for path in self.spilled:
            path.unlink(missing_ok=True)
        self.spilled, self.frames, self.size = [], [], 0
