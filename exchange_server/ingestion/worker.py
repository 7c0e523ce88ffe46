"""The ingestion worker: validate a queued delivery and record its verdict.

1. Claim a job (short transaction).
2. Mark the delivery ``validating`` and build its context (short transaction).
3. Validate the archived files — outside any transaction, however long it takes.
4. In one transaction: check the job is still ours, store the report, findings and
   feedback files, set the verdict, and for an accepted production delivery record the new
   versions (superseding the old ones). Either all of that happens or none of it.

A worker that dies at any point leaves the job claimable again (its lease runs out, or the
restarted server requeues jobs of dead local processes), and step 4 runs at most once.
"""
from __future__ import annotations

import logging
import shutil
import threading
import traceback
from pathlib import Path
from typing import Callable

from schemas.validation import (
    file_feedback_xml, record_feedback_xml, report_json, validate_delivery,
)
from schemas.conventions import shown
from schemas.validation.report import Report

from ..accounts.models import Account
from ..audit.services import record
from ..clock import utcnow
from ..consolidation.services import Consolidator
from ..runtime import Runtime, janitor
from ..runtime.janitor import VALIDATION_KIND
from ..storage.scratch import make_dir
from ..submissions.context import ContextBuilder
from ..submissions.models import (
    ACCEPTED, ACCEPTED_WITH_WARNINGS, FAILED, VALIDATING, Delivery, Finding, FindingCount,
)
from ..submissions.versions import VersionService
from . import queue
from .models import IngestJob

log = logging.getLogger(__name__)

# Called after a verdict is committed (the SFTP outbox writes feedback files from here).
VerdictHook = Callable[[Runtime, int], None]

# What a province reads when validation itself failed (``Delivery.failure``): stable and
# bilingual; the internal error stays in the server log and the audit record.
FAILURE_MESSAGE = "the server could not validate this delivery; HQ has been told / 服务器未能校验此报送，已通知集团"


def recover(rt: Runtime) -> None:
    """At a process's start (``serve``, with or without workers; ``worker``): requeue the jobs
    dead local processes held, and sweep their debris."""
    with rt.db.session() as session:
        n = queue.recover_orphans(session)
    if n:
        log.info("requeued %d job(s) left by a previous server process", n)
    janitor.sweep(rt)


def sweep_forever(rt: Runtime, stop: threading.Event) -> None:
    """Sweep what dead processes left every ``janitor.SWEEP_SECONDS`` until ``stop`` is set."""
    while not stop.wait(janitor.SWEEP_SECONDS):
        try:
            janitor.sweep(rt)
        except OSError as exc:  # a vanished file is not a reason to stop sweeping
            log.warning("sweep failed: %s", exc)


class IngestionWorker:
    """Processes queued deliveries one at a time; run several for parallelism."""

    def __init__(self, runtime: Runtime, name: str = "w0", hooks: list[VerdictHook] | None = None) -> None:
        self.runtime = runtime
        self.identity = queue.worker_identity(name)
        self.hooks = hooks or []

    def run_once(self) -> bool:
        """Process one job if there is one; False when the queue is empty."""
        settings = self.runtime.settings
        with self.runtime.db.session() as session:
            job = queue.claim(session, self.identity, settings.job_lease_seconds)
            if job is None:
                return False
            job_id, delivery_id, attempts = job.id, job.delivery_id, job.attempts
        try:
            self._process(job_id, delivery_id)
        except Exception as exc:  # the worker must outlive any one delivery; the error is kept on the job
            log.error("delivery %s: validation failed: %s", delivery_id, exc, exc_info=True)
            self._failed(job_id, delivery_id, attempts, traceback.format_exc(limit=5))
        return True

    def run_forever(self, stop: threading.Event) -> None:
        """Poll the queue until ``stop`` is set (the process called :func:`recover` at its start)."""
        while not stop.is_set():
            if not self.run_once():
                stop.wait(self.runtime.settings.worker_poll_seconds)

    def drain(self) -> int:
        """Process jobs until the queue is empty (commands and tests); returns how many."""
        n = 0
        while self.run_once():
            n += 1
        return n

    # -- the steps ------------------------------------------------------------------------
    def _process(self, job_id: int, delivery_id: int) -> None:
        rt = self.runtime
        with rt.db.session() as session:
            delivery = session.get(Delivery, delivery_id)
            assert delivery is not None
            account = session.get(Account, delivery.account_id)
            assert account is not None
            delivery.status = VALIDATING
            builder = ContextBuilder(session, rt.archive, rt.spec)
            spec = builder.spec  # the standard in force now, with published code-list versions
            context = builder.build(delivery, account)
            files = [(f.name, f.sha256) for f in delivery.files]
            mode = delivery.mode
        scratch = make_dir(VALIDATION_KIND)  # named with its owner: a sweep removes it if we are killed
        try:
            paths = self._materialise(scratch, files)
            report = validate_delivery(paths, spec, context, rt.validation_options(scratch))
            if mode not in (None, "P", "T"):  # only HQ sends D files; a province may not
                report.add("E120", f"{report.delivery}.chk", value=f"mode {mode}", expected="P / T")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._record(job_id, delivery_id, report)

    def _materialise(self, scratch: Path, files: list[tuple[str, str]]) -> list[Path]:
        """Links to the archived bytes under the names they were sent with (one folder per repeat)."""
        paths = []
        seen: dict[str, int] = {}
        for name, digest in files:
            n = seen.get(name, 0)
            seen[name] = n + 1
            folder = scratch / "files" / str(n)
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / name
            link.symlink_to(self.runtime.archive.path(digest))
            paths.append(link)
        return paths

    def _record(self, job_id: int, delivery_id: int, report: Report) -> None:
        rt = self.runtime
        report_key = rt.archive.put_bytes(report_json(report).encode("utf-8"))
        fbf_key = rt.archive.put_bytes(file_feedback_xml(report, str(delivery_id)))
        fbr_key = rt.archive.put_bytes(record_feedback_xml(report, str(delivery_id))) if report.counts else None
        with rt.db.session() as session:
            if not queue.still_mine(session, job_id, self.identity):
                log.warning("delivery %s: job %s was taken over; dropping this result", delivery_id, job_id)
                return
            delivery = session.get(Delivery, delivery_id)
            job = session.get(IngestJob, job_id)
            assert delivery is not None and job is not None
            delivery.status = report.status
            delivery.errors, delivery.warnings = report.errors, report.warnings
            delivery.validated_at = utcnow()
            delivery.late = "W603" in report.counts
            delivery.report_key, delivery.fbf_key, delivery.fbr_key = report_key, fbf_key, fbr_key
            rows = {name: fs.rows for name, fs in report.files.items()}
            for f in delivery.files:
                f.rows = rows.get(f.name, f.rows)
            for c in report.code_summary():
                session.add(FindingCount(delivery_id=delivery_id, code=c["code"], severity=c["severity"],
                                         count=c["count"]))
            session.add_all(Finding(delivery_id=delivery_id, code=f.code, severity=f.severity, tier=f.tier,
                                    file=f.file, line=f.line, field=f.field, value=f.value, expected=f.expected,
                                    xpath=f.xpath, unit=f.unit, message_zh=f.message_zh, message_en=f.message_en)
                            for f in report.sorted_findings())
            accepted = []
            if delivery.mode == "P" and delivery.status in (ACCEPTED, ACCEPTED_WITH_WARNINGS):
                accepted = VersionService(session).accept(delivery)
                # Facts and aggregates move in this same transaction.
                Consolidator(session, rt.archive, rt.spec).apply_delivery(delivery, accepted)
            queue.finish(job)
            record(session, "system", f"delivery.{delivery.status}", f"delivery:{delivery_id}",
                   errors=report.errors, warnings=report.warnings,
                   versions=[{"unit": a.unit, "number": a.version.number, "current": a.current} for a in accepted])
        self._after_verdict(delivery_id)

    def _failed(self, job_id: int, delivery_id: int, attempts: int, error: str) -> None:
        # A NUL in an error text would not go into PostgreSQL: what cannot be stored is shown as an escape.
        trace = "\n".join(shown(line) for line in error.strip().splitlines())
        with self.runtime.db.session() as session:
            if attempts < self.runtime.settings.job_max_attempts:
                queue.release(session, job_id, trace)
                return
            job = session.get(IngestJob, job_id)
            delivery = session.get(Delivery, delivery_id)
            if job is None or delivery is None:
                return
            # The trace is HQ's (the server log, the job, the audit record); the province reads a
            # stable message, never an internal error.
            queue.finish(job, failed=True, error=trace)
            delivery.status = FAILED
            delivery.failure = FAILURE_MESSAGE
            record(session, "system", "delivery.failed", f"delivery:{delivery_id}",
                   error=(trace.splitlines() or [""])[-1][:500], trace=trace[-8000:])
        self._after_verdict(delivery_id)

    def _after_verdict(self, delivery_id: int) -> None:
        # Every worker, in `serve` or in its own process, answers in the sender's outbox.
        from ..sftp.outbox import feedback_hook

        for hook in [feedback_hook, *self.hooks]:
            hook(self.runtime, delivery_id)
