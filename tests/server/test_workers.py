"""Several workers at once, as threads and as separate processes: each delivery judged once."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from exchange_server.accounts.models import Account
from exchange_server.ingestion.models import IngestJob
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.storage import LocalArchive
from exchange_server.submissions.models import Delivery, FindingCount, UnitVersion
from exchange_server.submissions.receiving import ReceivingService
from exchange_server.submissions.upload import ReceivedFile
from tests.server.conftest import Setup
from tests.support.deliveries import valid_rows


def queue_deliveries(runtime: Any, setup: Setup, tmp_path: Path, spec: Any, n: int) -> None:
    """Receive ``n`` resends of province 42 (through the receiving service, as the API does)."""
    setup.cycle("202610")
    setup.province("42")
    rows = valid_rows(spec)
    with runtime.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == "prov42"))
        for i in range(n):
            rows.rows["VIP_CUST_CONTACT"][0]["TITLE"] = f"主任{i}"
            folder = rows.write(tmp_path / f"r{i}", resend=i)
            files = []
            for p in sorted(folder.iterdir()):
                staged = runtime.archive.stage()
                staged.write(p.read_bytes())
                files.append(ReceivedFile(p.name, staged.commit(), p.stat().st_size))
            ReceivingService(s, runtime.archive, runtime.spec).receive(account, "http", files)


def assert_each_judged_once(runtime: Any, n: int) -> None:
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(IngestJob).where(IngestJob.state == "done")) == n
        assert s.scalar(select(func.max(IngestJob.attempts))) == 1
        statuses = s.scalars(select(Delivery.status)).all()
        assert statuses == ["accepted"] * n
        # Six units per delivery, one version each; counts written once per delivery.
        assert s.scalar(select(func.count()).select_from(UnitVersion)) == 6 * n
        assert s.scalar(select(func.count()).select_from(FindingCount)) == 0
        current = s.scalars(select(UnitVersion).where(UnitVersion.superseded_at.is_(None))).all()
        assert len(current) == 6 and {v.resend for v in current} == {n - 1}  # the newest resend wins


def test_four_worker_threads_share_the_queue(runtime: Any, setup: Setup, tmp_path: Path, spec: Any) -> None:
    queue_deliveries(runtime, setup, tmp_path, spec, 8)
    workers = [IngestionWorker(runtime, f"t{i}") for i in range(4)]
    done: list[int] = []
    threads = [threading.Thread(target=lambda w=w: done.append(w.drain())) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(done) == 8
    assert_each_judged_once(runtime, 8)


def test_two_worker_processes_share_the_queue(runtime: Any, setup: Setup, tmp_path: Path, spec: Any) -> None:
    queue_deliveries(runtime, setup, tmp_path, spec, 6)
    s = runtime.settings
    cmd = [sys.executable, "-m", "exchange_server.cli", "--data-dir", str(s.data_path), "--database-url",
           s.effective_database_url, "worker", "--drain"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    processed = [int(o[0].split()[1]) for o in outs]
    assert sum(processed) == 6
    assert_each_judged_once(runtime, 6)
    assert isinstance(runtime.archive, LocalArchive)
