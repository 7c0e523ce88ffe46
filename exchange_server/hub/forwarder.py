"""The forwarder: sends queued forwards to HQ, collects HQ's verdicts and answers, syncs down.

It runs as a thread of the hub's ``serve`` (and as ``exchange-server hub run --once``).
Sending is safe to repeat: a forward's files are fixed once built (archived), and HQ
answers the same bytes from the same account with the first receipt, so a forward sent
by a process killed before it recorded the receipt is sent again and recorded once —
nothing lost, nothing counted twice at HQ. While HQ cannot be reached the forward waits
(state ``built``, the error and attempts on record) and is retried with a growing pause;
the hub goes on taking prefecture deliveries meanwhile.
"""
from __future__ import annotations

import http.client
import logging
import shutil
import threading
import time
from collections.abc import Callable

from sqlalchemy import select

from province_agent._exceptions import AgentError
from province_agent.transport.base import Receipt, Transport
from province_agent.transport.http import HttpError

from ..audit.services import record
from ..clock import as_utc, utcnow
from ..cycles.models import CLOSED
from ..errors import ExchangeError
from ..runtime import Runtime
from ..storage.scratch import make_dir
from .answers import Answers, HqAnswer
from .forward import FORWARD_KIND, ForwardService
from .models import BUILT, JUDGED, SENT, Forward, HubCycle
from .sync import HubSync
from .upstream import open_upstream

log = logging.getLogger(__name__)
#: what may go wrong talking to HQ; the forward waits and is tried again
UPSTREAM_ERRORS = (OSError, EOFError, http.client.HTTPException, HttpError, AgentError, ExchangeError)
ANSWERS_DAYS = 60  # judged forwards are asked again for HQ's later comments this long
#: set when a forward is built in this process (a page, the API): the forwarder sends it at once
WAKE = threading.Event()


class Forwarder:
    """Moves forwards along: built -> sent (HQ's receipt) -> judged (HQ's verdict and answers)."""

    def __init__(self, rt: Runtime, transport: Transport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rt = rt
        self._transport = transport
        self._given = transport is not None  # a caller's transport is kept (and reconnects by itself)
        self.clock = clock
        self.wake = WAKE
        self._next_try: dict[int, float] = {}
        self._next_sync = 0.0
        self._next_answers = 0.0

    @property
    def transport(self) -> Transport:
        """The upstream client, opened on first use."""
        if self._transport is None:
            self._transport = open_upstream(self.rt.settings)
        return self._transport

    def close(self) -> None:
        """Release the connection to HQ."""
        if self._transport is not None:
            self._transport.close()

    # -- the loop ------------------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        """Sync, send, collect every ``hub_poll_seconds`` (at once when woken by a new forward)."""
        while not stop.is_set():
            self.wake.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("hub forwarder pass failed; trying again")
            self.wake.wait(self.rt.settings.hub_poll_seconds)
        self.close()

    def run_once(self, sync: bool | None = None) -> dict[str, int]:
        """One pass: sync when due (or ``sync``), send what is built, collect what is sent, ask for late answers."""
        done = {"synced": 0, "sent": 0, "judged": 0, "answered": 0}
        now = self.clock()
        if sync or (sync is None and now >= self._next_sync):
            done["synced"] = int(self.sync())
            self._next_sync = now + self.rt.settings.hub_sync_seconds
        with self.rt.db.session() as s:
            built = list(s.scalars(select(Forward.id).where(Forward.state == BUILT).order_by(Forward.id)))
            sent = list(s.scalars(select(Forward.id).where(Forward.state == SENT).order_by(Forward.id)))
        for fid in built:
            if self.clock() >= self._next_try.get(fid, 0.0) and self.send(fid):
                done["sent"] += 1
                sent.append(fid)
        for fid in sent:
            if self.collect(fid):
                done["judged"] += 1
        if now >= self._next_answers:
            done["answered"] = self.later_answers()
            self._next_answers = now + self.rt.settings.hub_sync_seconds
        return done

    # -- down: calendar, list, code lists ------------------------------------------------------------------
    def sync(self) -> bool:
        """Fetch what HQ publishes; False (logged, recorded) when HQ cannot be reached."""
        try:
            HubSync(self.rt, self.transport).run()
            return True
        except UPSTREAM_ERRORS as exc:
            log.warning("hub sync with HQ failed (the hub serves what it fetched last): %s", exc)
            with self.rt.db.session() as s:
                record(s, "system", "hub.sync_failed", f"party:{self.rt.settings.hub_party}", error=str(exc)[:500])
            self._reset()
            return False

    # -- up: sending -------------------------------------------------------------------------------------------
    def send(self, forward_id: int) -> bool:
        """Send one built forward; True when HQ's receipt is recorded."""
        with self.rt.db.session() as s:
            fwd = s.get(Forward, forward_id)
            if fwd is None or fwd.state != BUILT:
                return False
            folder = make_dir(FORWARD_KIND)
            paths = ForwardService(self.rt, s).materialise(fwd, folder)
            check = fwd.check_name
        try:
            receipt = self.transport.send(paths)
        except UPSTREAM_ERRORS as exc:
            self._failed(forward_id, exc)
            return False
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        with self.rt.db.session() as s:
            fwd = s.get(Forward, forward_id)
            assert fwd is not None
            fwd.state, fwd.hq_delivery_id, fwd.sent_at = SENT, receipt.delivery_id, utcnow()
            fwd.attempts += 1
            fwd.last_error = None
            record(s, "system", "hub.forward_sent", f"forward:{forward_id}", check=check,
                   hq_delivery=receipt.delivery_id, duplicate=receipt.duplicate)
        self._next_try.pop(forward_id, None)
        log.info("forward %s sent to HQ as delivery %s%s", check, receipt.delivery_id,
                 " (HQ had it already)" if receipt.duplicate else "")
        return True

    def _failed(self, forward_id: int, exc: BaseException) -> None:
        with self.rt.db.session() as s:
            fwd = s.get(Forward, forward_id)
            assert fwd is not None
            fwd.attempts += 1
            fwd.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            attempts = fwd.attempts
        pause = min(5.0 * 2 ** min(attempts - 1, 6), 300.0)
        self._next_try[forward_id] = self.clock() + pause
        log.warning("forward %s not sent (attempt %d, next in %.0f s): %s", forward_id, attempts, pause, exc)
        self._reset()

    def _reset(self) -> None:
        """Drop the connection after a failure: the next attempt opens a fresh one."""
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail too
            log.debug("closing the connection to HQ failed: %s", exc)
        if not self._given:
            self._transport = None

    # -- answers -------------------------------------------------------------------------------------------
    def collect(self, forward_id: int) -> bool:
        """Ask HQ for the verdict on a sent forward; True when it is judged now."""
        with self.rt.db.session() as s:
            fwd = s.get(Forward, forward_id)
            if fwd is None or fwd.state != SENT:
                return False
            receipt = Receipt(fwd.hq_delivery_id, fwd.check_name)
        try:
            verdict = self.transport.verdict(receipt)
            if verdict is None:
                return False
            answer = HqAnswer(str(verdict.status), verdict.errors, verdict.warnings, self.transport.findings(receipt),
                              self.transport.comments(receipt), self.transport.review_state(receipt))
        except UPSTREAM_ERRORS as exc:
            log.warning("asking HQ about forward %s failed (asked again later): %s", forward_id, exc)
            self._reset()
            return False
        self._take(forward_id, answer)
        return True

    def later_answers(self) -> int:
        """Ask HQ again about recently judged forwards of cycles still open: comments and resend requests come later."""
        horizon = utcnow().timestamp() - ANSWERS_DAYS * 86400
        with self.rt.db.session() as s:
            closed = set(s.scalars(select(HubCycle.cycle).where(HubCycle.hq_state == CLOSED)))
            judged = [(f.id, f.hq_delivery_id, f.check_name, f.hq_status, f.hq_errors, f.hq_warnings)
                      for f in s.scalars(select(Forward).where(Forward.state == JUDGED))
                      if f.cycle not in closed and f.judged_at is not None and as_utc(f.judged_at).timestamp() > horizon]
        n = 0
        for fid, hq_id, check, status, errors, warnings in judged:
            receipt = Receipt(hq_id, check)
            try:
                answer = HqAnswer(str(status), errors, warnings, [], self.transport.comments(receipt),
                                  self.transport.review_state(receipt))
            except UPSTREAM_ERRORS as exc:
                log.warning("asking HQ for comments on forward %s failed: %s", fid, exc)
                self._reset()
                return n
            self._take(fid, answer)
            n += 1
        return n

    def _take(self, forward_id: int, answer: HqAnswer) -> None:
        with self.rt.db.session() as s:
            fwd = s.get(Forward, forward_id)
            assert fwd is not None
            answers = Answers(self.rt, s)
            answers.take(fwd, answer)
        answers.deliver()  # the prefectures' outbox files, after the answers committed


def upstream_resend_floor(rt: Runtime, cycle_id: str, timeout: float = 5.0) -> int | None:
    """The highest resend number HQ holds from this province for a cycle, if HQ answers quickly; else None.

    A province that delivered directly before it ran a hub has used numbers the hub must
    not reuse (HQ would reject a lower one as stale, E605). HQ down does not stop a forward
    from being built: the hub's own numbering then decides.
    """
    from dataclasses import replace

    try:
        transport = open_upstream(replace(rt.settings, upstream_timeout=timeout))
    except ExchangeError:
        return None
    try:
        return transport.max_resend(cycle_id)
    except UPSTREAM_ERRORS as exc:
        log.info("HQ's resend numbers for %s could not be read (%s); the hub's own numbering decides", cycle_id, exc)
        return None
    finally:
        transport.close()
