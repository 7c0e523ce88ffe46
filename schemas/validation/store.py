"""Disk-backed key sets for uniqueness and cross-unit checks, so memory stays flat.

A delivery of millions of rows cannot keep every key in a Python set without memory
growing with the file. Keys go instead to a throw-away SQLite file (journal off, small
page cache); SQLite sorts and joins on disk with bounded memory.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

FLUSH_EVERY = 50_000
SEP = "\x1f"
# (key, value, line, file id); the line is None for accepted rows (they come from the server's facts).
KeyRow = tuple[str, str, int | None, int]


class KeyTracker(Protocol):
    """Finds a table's repeated keys instead of SQLite (the columnar core's sorted runs)."""

    def add_rows(self, rows: Iterable[KeyRow]) -> None:
        """Take rows that go to the table."""

    def duplicates(self, file_name: Callable[[int], str]) -> Iterator[tuple[str, int, str, int, str]]:
        """What ``KeyStore.duplicates`` yields."""

    def close(self) -> None:
        """Drop what it holds."""


class DeferredTable(Protocol):
    """Holds a table's rows outside SQLite until a check reads the table (the columnar core's)."""

    def add_rows(self, rows: Iterable[KeyRow]) -> None:
        """Take rows that go to the table, after those it holds."""

    def rows(self) -> Iterator[KeyRow]:
        """Every row held, in order."""

    def close(self) -> None:
        """Drop what it holds."""


class KeyStore:
    """Named tables of (key, value, line, file) rows, filled in batches."""

    def __init__(self, tmp_dir: str | os.PathLike[str] | None = None, cache_kib: int = 16_384) -> None:
        fd, path = tempfile.mkstemp(prefix="kam-keys-", suffix=".sqlite", dir=tmp_dir)
        os.close(fd)
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", f"cache_size=-{cache_kib}",
                       "locking_mode=EXCLUSIVE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("BEGIN")
        self.tables: set[str] = set()
        self.indexed: set[str] = set()
        self.files: dict[str, int] = {}
        self._names: dict[int, str] = {}
        # Tables whose repeated keys a tracker finds (only the columnar core registers any).
        self.trackers: dict[str, KeyTracker] = {}
        # Tables whose rows are held outside SQLite until read (only the columnar core defers any).
        self.deferred: dict[str, DeferredTable] = {}

    def _table(self, name: str) -> None:
        if name not in self.tables:
            self.db.execute(f'CREATE TABLE "{name}" (k TEXT, v TEXT, line INTEGER, file INTEGER)')
            self.tables.add(name)

    def file_id(self, name: str) -> int:
        """A small integer standing for a file name."""
        fid = self.files.setdefault(name, len(self.files))
        self._names[fid] = name
        return fid

    def file_name(self, file_id: int) -> str:
        """The file name a file id stands for."""
        return self._names.get(file_id, "")

    def flush(self, name: str, rows: list[KeyRow]) -> None:
        """Move buffered (key, value, line, file id) rows into table ``name``; empty the buffer.

        The line is None for accepted rows (they come from the server's facts, not a file).
        """
        self._table(name)
        if rows and name in self.trackers:
            self.trackers[name].add_rows(rows)
        if rows:
            self.insert(name, rows)
            rows.clear()

    def insert(self, name: str, rows: Iterable[KeyRow]) -> None:
        """Write rows to table ``name`` as they are, past any tracker (its caller gave them to it already)."""
        self._table(name)
        held = self.deferred.get(name)
        if held is not None:
            held.add_rows(rows)
        else:
            self._write(name, rows)

    def _write(self, name: str, rows: Iterable[KeyRow]) -> None:
        self.db.executemany(f'INSERT INTO "{name}" VALUES (?, ?, ?, ?)', rows)

    def defer(self, name: str, holder: DeferredTable) -> DeferredTable:
        """Hold table ``name``'s rows in ``holder`` until a check reads the table; the holder it has if any."""
        self._table(name)
        return self.deferred.setdefault(name, holder)

    def _ready(self, *names: str) -> None:
        """Write the rows held outside SQLite for these tables, in order, before a check reads them."""
        for name in names:
            self._table(name)
            held = self.deferred.pop(name, None)
            if held is not None:
                try:
                    self._write(name, held.rows())
                finally:
                    held.close()

    def absorb(self, other_db: str, tables: list[str]) -> None:
        """Copy the rows of another store's tables (a worker's) into this one, then delete it."""
        self._ready(*tables)
        self.db.execute("COMMIT")
        self.db.execute("ATTACH DATABASE ? AS w", (other_db,))
        try:
            for name in tables:
                self._table(name)
                self.db.execute(f'INSERT INTO main."{name}" SELECT * FROM w."{name}"')
                if name in self.trackers:
                    self.trackers[name].add_rows(self.db.execute(f'SELECT * FROM w."{name}"'))
        finally:
            self.db.execute("DETACH DATABASE w")
            Path(other_db).unlink(missing_ok=True)
        self.db.execute("BEGIN")

    def track(self, name: str, tracker: KeyTracker) -> None:
        """Let ``tracker`` find the repeated keys of table ``name``: it gets the rows already there and every row
        flushed or absorbed from now on; callers may give it rows directly that they do not flush."""
        if name in self.trackers:
            return
        self._ready(name)
        tracker.add_rows(self.db.execute(f'SELECT * FROM "{name}"'))
        self.trackers[name] = tracker

    def ensure(self, name: str) -> None:
        """Create table ``name`` if no row was ever flushed to it."""
        self._table(name)

    def _index(self, name: str) -> None:
        if name not in self.indexed:
            self.db.execute(f'CREATE INDEX "ix_{name}" ON "{name}" (k)')
            self.indexed.add(name)

    def duplicates(self, name: str) -> Iterator[tuple[str, int, str, int, str]]:
        """(key, line, file, first line, first file) for every repeat of a key, in key order."""
        if name in self.trackers:
            self._table(name)
            yield from self.trackers[name].duplicates(self.file_name)
            return
        self._ready(name)
        prev_k: str | None = None
        first: tuple[int, int] = (0, 0)
        for k, line, f in self.db.execute(f'SELECT k, line, file FROM "{name}" ORDER BY k, file, line'):
            if k == prev_k:
                yield k, line, self.file_name(f), first[0], self.file_name(first[1])
            else:
                prev_k, first = k, (line, f)

    def missing(self, left: str, right: str) -> Iterator[tuple[str, int, str]]:
        """(key, line, file) of rows of ``left`` whose key is not in ``right``."""
        self._ready(left, right)
        self._index(right)
        q = (f'SELECT l.k, l.line, l.file FROM "{left}" l WHERE NOT EXISTS '
             f'(SELECT 1 FROM "{right}" r WHERE r.k = l.k) ORDER BY l.file, l.line')
        for k, line, f in self.db.execute(q):
            yield k, line, self.file_name(f)

    def count_by_key(self, left: str, right: str) -> Iterator[tuple[str, int, str, int]]:
        """(key, line, file, n) for each ``left`` row: how many ``right`` rows share its key."""
        self._ready(left, right)
        self._index(right)
        q = (f'SELECT l.k, l.line, l.file, (SELECT COUNT(*) FROM "{right}" r WHERE r.k = l.k) '
             f'FROM "{left}" l ORDER BY l.file, l.line')
        for k, line, f, n in self.db.execute(q):
            yield k, line, self.file_name(f), n

    def distinct_counts(self, name: str) -> dict[str, int]:
        """Number of distinct values per key (keys here are few: local networks)."""
        self._ready(name)
        return dict(self.db.execute(f'SELECT k, COUNT(DISTINCT v) FROM "{name}" GROUP BY k'))

    def networks_through(self, child: str, parent: str, accepted_parent: str) -> set[str]:
        """The networks of the parent rows ``child``'s keys point at: the delivery's parent rows, else accepted ones.

        ``parent`` and ``accepted_parent`` are key -> network tables (31201: customer -> home
        network); ``child`` holds the keys a network-less unit's rows carry (31202's customers).
        """
        self._ready(child, parent, accepted_parent)
        self._index(parent)
        self._index(accepted_parent)
        q = (f'SELECT DISTINCT COALESCE((SELECT d.v FROM "{parent}" d WHERE d.k = c.k LIMIT 1), '
             f'(SELECT a.v FROM "{accepted_parent}" a WHERE a.k = c.k LIMIT 1)) FROM "{child}" c')
        return {n for (n,) in self.db.execute(q) if n is not None}

    def keys(self, name: str) -> Iterator[str]:
        """Every distinct key of a table."""
        self._ready(name)
        for (k,) in self.db.execute(f'SELECT DISTINCT k FROM "{name}"'):
            yield k

    def has_key(self, name: str, key: str) -> bool:
        """Whether ``key`` is in table ``name``."""
        self._ready(name)
        self._index(name)
        return self.db.execute(f'SELECT 1 FROM "{name}" WHERE k = ? LIMIT 1', (key,)).fetchone() is not None

    def close(self) -> None:
        """Drop the store and its file."""
        try:
            for tracker in self.trackers.values():
                tracker.close()
            for held in self.deferred.values():
                held.close()
            self.db.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "KeyStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
