"""A server runtime for page tests: SQLite under a folder, the org tree, some cycles open."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from exchange_server.cycles.services import CycleService
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.setup_service import initialise


def runtime_with_open_cycles(root: Path, cycles: Iterable[str]) -> Runtime:
    """A fresh runtime under ``root`` (no SFTP port, quick worker polling) with ``cycles`` open for 30 days."""
    rt = open_runtime({"data_dir": str(root / "data"), "database_url": f"sqlite:///{root / 'exchange.db'}",
                       "worker_poll_seconds": 0.05, "sftp_port": 0})
    initialise(rt)
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    with rt.db.session() as s:
        service = CycleService(s, rt.spec, "test")
        for cycle_id in cycles:
            service.create(cycle_id, deadline=deadline, state="open")
    return rt
