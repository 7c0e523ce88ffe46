"""The agent's memory: which deliveries it built, sent and how HQ judged them (SQLite).

The state lives beside the spool of built deliveries, so after a crash or a killed process
the next run knows exactly where each delivery stood: built but not sent (send the same
files), sent but not judged (ask for the verdict), judged (done). Resend numbers are
reserved here before anything is sent, and a delivery's files never change once built —
so sending again after any failure sends the same bytes, which HQ recognises.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

BUILT, SENT, JUDGED, LOCAL_REJECTED = "built", "sent", "judged", "local_rejected"
GOOD = ("accepted", "accepted_with_warnings")

SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery (
    id INTEGER PRIMARY KEY,
    cycle TEXT NOT NULL,
    mode TEXT NOT NULL,
    resend INTEGER NOT NULL,
    check_name TEXT NOT NULL,
    spool TEXT NOT NULL,
    units TEXT NOT NULL,
    content TEXT NOT NULL,          -- SHA-256 over the data rows, resend number left out
    state TEXT NOT NULL,
    server_id INTEGER,
    status TEXT,                    -- accepted | accepted_with_warnings | rejected | failed
    errors INTEGER,
    warnings INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    judged_at TEXT,
    UNIQUE (cycle, mode, resend)
);
-- What each cycle's last build was checked against: the list as it counted for the cycle
-- (its versions and customers), so the next build can say what changed since.
CREATE TABLE IF NOT EXISTS build_basis (
    cycle TEXT NOT NULL,
    mode TEXT NOT NULL,
    list_label TEXT,
    list_ids TEXT NOT NULL,         -- JSON array of the customers on the cycle's list
    built_at TEXT NOT NULL,
    PRIMARY KEY (cycle, mode)
);
-- Small named documents: the calendar as last read from HQ ("calendar").
CREATE TABLE IF NOT EXISTS memo (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    saved_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS list_version (
    version TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    rows INTEGER NOT NULL,
    fetched_at TEXT NOT NULL
);
"""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Record:
    """One delivery the agent built."""

    id: int
    cycle: str
    mode: str
    resend: int
    check_name: str
    spool: str
    units: str
    content: str
    state: str
    server_id: int | None
    status: str | None
    errors: int | None
    warnings: int | None
    attempts: int
    last_error: str | None
    created_at: str
    sent_at: str | None
    judged_at: str | None

    @property
    def files(self) -> list[Path]:
        """The spooled files, check file last (the order they are sent in)."""
        folder = Path(self.spool)
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        return [p for p in files if not p.name.endswith(".chk")] + [p for p in files if p.name.endswith(".chk")]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


class State:
    """The state database, ``<state_dir>/state.db``."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.dir = state_dir
        self.db = sqlite3.connect(state_dir / "state.db", timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a recorded send must survive a power cut
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def _rows(self, sql: str, *args: Any) -> Iterator[Record]:
        for row in self.db.execute(sql, args):
            yield Record(**dict(row))

    def get(self, rid: int) -> Record:
        """One record by id."""
        return next(self._rows("SELECT * FROM delivery WHERE id = ?", rid))

    def for_cycle(self, cycle: str, mode: str = "P") -> list[Record]:
        """Every delivery of a cycle, oldest first."""
        return list(self._rows("SELECT * FROM delivery WHERE cycle = ? AND mode = ? ORDER BY resend", cycle, mode))

    def all(self) -> list[Record]:
        """Every delivery, newest first."""
        return list(self._rows("SELECT * FROM delivery ORDER BY cycle DESC, mode, resend DESC"))

    def pending(self) -> list[Record]:
        """Deliveries built or sent but not yet judged."""
        return list(self._rows("SELECT * FROM delivery WHERE state IN (?, ?) ORDER BY id", BUILT, SENT))

    def accepted(self, cycle: str, mode: str = "P") -> Record | None:
        """The latest delivery of a cycle HQ accepted, if any."""
        good = [r for r in self.for_cycle(cycle, mode) if r.status in GOOD]
        return good[-1] if good else None

    def next_resend(self, cycle: str, mode: str = "P", server_max: int | None = None) -> int:
        """The next resend number: after every number used here or known to HQ (CONVENTIONS §8)."""
        row = self.db.execute("SELECT MAX(resend) FROM delivery WHERE cycle = ? AND mode = ? AND state != ?",
                              (cycle, mode, LOCAL_REJECTED)).fetchone()
        used = [n for n in (row[0], server_max) if n is not None]
        return max(used) + 1 if used else 0

    def add(self, cycle: str, mode: str, resend: int, check_name: str, spool: Path, units: list[str],
            content: str, state: str = BUILT) -> Record:
        """Record a built delivery (its files are already in the spool)."""
        # A locally rejected build never went anywhere: its number is used again by the next
        # build, whether that one is rejected again or good to send.
        self.db.execute("DELETE FROM delivery WHERE cycle = ? AND mode = ? AND resend = ? AND state = ?",
                        (cycle, mode, resend, LOCAL_REJECTED))
        cur = self.db.execute(
            "INSERT INTO delivery (cycle, mode, resend, check_name, spool, units, content, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cycle, mode, resend, check_name, str(spool), ",".join(units), content, state, _now()))
        return self.get(int(cur.lastrowid or 0))

    def mark_attempt(self, rid: int, error: str | None) -> None:
        """Count a send attempt (and why it failed)."""
        self.db.execute("UPDATE delivery SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, rid))

    def mark_sent(self, rid: int, server_id: int | None) -> None:
        """HQ acknowledged the delivery with a receipt."""
        self.db.execute("UPDATE delivery SET state = ?, server_id = ?, sent_at = ?, last_error = NULL WHERE id = ?",
                        (SENT, server_id, _now(), rid))

    def mark_judged(self, rid: int, status: str, errors: int, warnings: int) -> None:
        """HQ's verdict arrived."""
        self.db.execute("UPDATE delivery SET state = ?, status = ?, errors = ?, warnings = ?, judged_at = ? "
                        "WHERE id = ?", (JUDGED, status, errors, warnings, _now(), rid))

    # -- lists ------------------------------------------------------------------------------
    def list_versions(self) -> list[dict[str, Any]]:
        """Fetched list versions, newest first."""
        return [dict(r) for r in self.db.execute("SELECT * FROM list_version ORDER BY version DESC")]

    def add_list_version(self, version: str, folder: Path, rows: int) -> None:
        """Remember a fetched list version."""
        self.db.execute("INSERT OR REPLACE INTO list_version VALUES (?, ?, ?, ?)", (version, str(folder), rows, _now()))

    # -- what the last build was checked against -------------------------------------------------
    def basis(self, cycle: str, mode: str = "P") -> dict[str, Any] | None:
        """The list the cycle's last build was checked against: ``{"label", "ids", "built_at"}``."""
        row = self.db.execute("SELECT * FROM build_basis WHERE cycle = ? AND mode = ?", (cycle, mode)).fetchone()
        if row is None:
            return None
        return {"label": row["list_label"], "ids": list(json.loads(row["list_ids"])), "built_at": row["built_at"]}

    def set_basis(self, cycle: str, mode: str, label: str | None, ids: list[str]) -> None:
        """Remember the list a build was checked against."""
        self.db.execute("INSERT OR REPLACE INTO build_basis VALUES (?, ?, ?, ?, ?)",
                        (cycle, mode, label, json.dumps(sorted(ids)), _now()))

    def memo(self, name: str) -> Any:
        """A saved JSON document, None when never saved."""
        row = self.db.execute("SELECT value FROM memo WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def set_memo(self, name: str, value: Any) -> None:
        """Save a JSON document under a name."""
        self.db.execute("INSERT OR REPLACE INTO memo VALUES (?, ?, ?)",
                        (name, json.dumps(value, ensure_ascii=False, default=str), _now()))

    # -- HQ's reports ----------------------------------------------------------------------------
    @property
    def reports_dir(self) -> Path:
        """Where HQ's full reports are kept: ``<state_dir>/reports/``."""
        return self.dir / "reports"

    def report_paths(self, check_name: str) -> tuple[Path, Path]:
        """The JSON and the readable text of a delivery's full report."""
        return self.reports_dir / f"{check_name}.json", self.reports_dir / f"{check_name}.txt"
