"""The pusher: copies queued files to provinces' SFTP servers, with retries and backoff.

One job at a time: claim it in a short transaction (attempt counted, lease taken by moving
``next_attempt_at`` past the push's time limit, so a crashed pusher's job comes back on its
own), push with no transaction open, then record the outcome in another short transaction.
The remote side only ever sees whole files: bytes go to ``<name>.part``, which is renamed
once complete and its size checked.
"""
from __future__ import annotations

import datetime as dt
import logging
import posixpath
import random
import socket
import threading
from dataclasses import dataclass

import paramiko
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from ..audit.services import record
from ..clock import utcnow
from ..runtime import Runtime
from .keys import fingerprint, host_key_from_line, load_or_create_hq_key
from .models import DONE, FAILED, PENDING, PushJob, PushTarget

log = logging.getLogger(__name__)


class PushError(Exception):
    """A push that did not complete (the message is what admins see as ``last_error``)."""


@dataclass(frozen=True)
class _Claim:
    """What one push needs, copied out of the claiming transaction."""

    job_id: int
    attempts: int
    party: str
    host: str
    port: int
    username: str
    remote_dir: str
    host_key: str
    file_name: str
    sha256: str
    size: int


class _PinnedKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse a server whose key type we have no pin for, naming both fingerprints.

    paramiko itself raises ``BadHostKeyException`` when the offered key has the pinned type
    but other bytes; this covers the server offering another type altogether.
    """

    def __init__(self, expected: paramiko.PKey) -> None:
        self.expected = expected

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        """Always refuse: the only acceptable key is the pinned one."""
        raise PushError(_mismatch(hostname, self.expected, key))


def _mismatch(hostname: str, expected: paramiko.PKey, offered: paramiko.PKey) -> str:
    return (f"host key mismatch for {hostname}: expected {expected.get_name()} {fingerprint(expected)}, "
            f"server offered {offered.get_name()} {fingerprint(offered)}")


class Pusher:
    """Takes due push jobs from the queue and delivers them over SFTP."""

    def __init__(self, runtime: Runtime, *, base_delay: float = 5.0, max_delay: float = 3600.0,
                 max_attempts: int = 10, timeout: float = 30.0, lease_seconds: float = 900.0,
                 actor: str = "system", rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.actor = actor
        self.rng = rng or random.Random()
        self._hq_key: paramiko.PKey | None = None

    @property
    def hq_key(self) -> paramiko.PKey:
        """HQ's push key, loaded (or created) once per pusher."""
        if self._hq_key is None:
            self._hq_key = load_or_create_hq_key(self.runtime.settings)
        return self._hq_key

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts: doubling from the base, capped, ±20 % jitter."""
        # Jitter spreads out the retries of many provinces' jobs that failed together
        # (e.g. HQ's own network was down), so they do not all come back at once.
        delay = min(self.base_delay * 2 ** max(attempts - 1, 0), self.max_delay)
        return float(delay * self.rng.uniform(0.8, 1.2))

    # -- the loop ---------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Push the oldest due job, if any; False when nothing is due."""
        claim = self._claim()
        if claim is None:
            return False
        try:
            self._push(claim)
        except PushError as exc:
            self._failed(claim, str(exc))
        except paramiko.BadHostKeyException as exc:
            self._failed(claim, _mismatch(exc.hostname, exc.expected_key, exc.key))
        except paramiko.AuthenticationException as exc:
            self._failed(claim, f"authentication as {claim.username} with HQ's push key failed: {exc} "
                                f"(is `exchange-server push hq-key` in the province's authorized_keys?)")
        except socket.timeout as exc:
            self._failed(claim, f"timed out talking to {claim.host}:{claim.port}: {exc}")
        except paramiko.SSHException as exc:
            self._failed(claim, f"SSH error with {claim.host}:{claim.port}: {exc}")
        except EOFError as exc:  # paramiko's SFTP client raises it when the server hangs up mid-call
            self._failed(claim, f"connection to {claim.host}:{claim.port} closed unexpectedly: {exc}")
        except OSError as exc:  # connection refused, unreachable, remote I/O errors, missing archive object
            self._failed(claim, f"{type(exc).__name__}: {exc}")
        else:
            self._done(claim)
        return True

    def run_forever(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Push due jobs until ``stop`` is set, polling every ``poll`` seconds when idle."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except SQLAlchemyError as exc:
                # The database being briefly away must not end the pusher thread.
                log.error("push queue unavailable: %s", exc)
                busy = False
            if not busy:
                stop.wait(poll)

    def drain(self, max_jobs: int = 1000) -> int:
        """Process due jobs until none is due (or ``max_jobs``); returns how many were attempted."""
        n = 0
        while n < max_jobs and self.run_once():
            n += 1
        return n

    # -- the steps --------------------------------------------------------------------------
    def _claim(self) -> _Claim | None:
        """Take the oldest due job in one short transaction; None when nothing is due."""
        for _ in range(5):  # another pusher may take the same candidate between select and update
            with self.runtime.db.session() as session:
                now = utcnow()
                due = (PushJob.state == PENDING) & (PushJob.next_attempt_at <= now)
                candidate = session.scalar(
                    select(PushJob.id).join(PushTarget, PushJob.target_id == PushTarget.id)
                    .where(due, PushTarget.enabled.is_(True))
                    .order_by(PushJob.next_attempt_at, PushJob.id).limit(1)
                    .with_for_update(of=PushJob, skip_locked=True))
                if candidate is None:
                    return None
                lease_until = now + dt.timedelta(seconds=self.lease_seconds)
                result = session.execute(update(PushJob).where(PushJob.id == candidate, due).values(
                    attempts=PushJob.attempts + 1, next_attempt_at=lease_until))
                if getattr(result, "rowcount", 0) != 1:
                    continue
                job = session.get(PushJob, candidate, populate_existing=True)
                assert job is not None
                t = job.target
                return _Claim(job.id, job.attempts, t.party, t.host, t.port, t.username, t.remote_dir,
                              t.host_key, job.file_name, job.sha256, job.size)
        return None

    def _connect(self, c: _Claim) -> paramiko.SSHClient:
        """An SSH connection to the target that accepts only its pinned host key and uses only HQ's key."""
        expected = host_key_from_line(c.host_key)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_PinnedKeyPolicy(expected))
        known_name = c.host if c.port == 22 else f"[{c.host}]:{c.port}"
        client.get_host_keys().add(known_name, expected.get_name(), expected)
        try:
            client.connect(c.host, port=c.port, username=c.username, pkey=self.hq_key, look_for_keys=False,
                           allow_agent=False, timeout=self.timeout, banner_timeout=self.timeout,
                           auth_timeout=self.timeout, channel_timeout=self.timeout)
        except BaseException:
            client.close()
            raise
        return client

    def _push(self, c: _Claim) -> None:
        """Upload the file as ``.part``, rename it into place, check its size."""
        log.info("pushing %s to %s@%s:%s (%s), attempt %d", c.file_name, c.username, c.host, c.port,
                 c.party, c.attempts)
        final = posixpath.join(c.remote_dir, c.file_name)
        part = final + ".part"
        with self._connect(c) as client, client.open_sftp() as sftp:
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.timeout)
            try:
                with self.runtime.archive.open(c.sha256) as fh:
                    sftp.putfo(fh, part, file_size=c.size, confirm=True)
                try:
                    sftp.posix_rename(part, final)
                except (OSError, paramiko.SSHException):
                    # Servers without OpenSSH's posix-rename extension refuse to rename over an
                    # existing file; removing it first leaves a short window without the file,
                    # never a partial one.
                    try:
                        sftp.remove(final)
                    except FileNotFoundError:
                        pass
                    sftp.rename(part, final)
            except (OSError, paramiko.SSHException, EOFError):
                self._discard_part(sftp, part)
                raise
            size = sftp.stat(final).st_size
            if size != c.size:
                raise PushError(f"{final} has {size} bytes on {c.host} after the upload, expected {c.size}")

    @staticmethod
    def _discard_part(sftp: paramiko.SFTPClient, part: str) -> None:
        """Best effort: don't leave a half-written ``.part`` behind (the next attempt overwrites it anyway)."""
        try:
            sftp.remove(part)
        except (OSError, paramiko.SSHException, EOFError):
            pass

    def _done(self, c: _Claim) -> None:
        with self.runtime.db.session() as session:
            job = session.get(PushJob, c.job_id, with_for_update=True)
            if job is None or job.state != PENDING:
                # Removed with its target, or superseded while in flight: nothing to record.
                log.info("push job %s finished but is no longer pending", c.job_id)
                return
            job.state = DONE
            job.pushed_at = utcnow()
            job.last_error = None
            record(session, self.actor, "push.done", f"push_job:{c.job_id}", party=c.party, file=c.file_name,
                   sha256=c.sha256, size=c.size, host=c.host, port=c.port, remote_dir=c.remote_dir,
                   attempts=c.attempts)
        log.info("pushed %s to %s (%s:%s)", c.file_name, c.party, c.host, c.port)

    def _failed(self, c: _Claim, error: str) -> None:
        with self.runtime.db.session() as session:
            job = session.get(PushJob, c.job_id, with_for_update=True)
            if job is None or job.state != PENDING:
                return
            job.last_error = error[:4000]
            if job.attempts >= self.max_attempts:
                job.state = FAILED
                record(session, self.actor, "push.failed", f"push_job:{c.job_id}", party=c.party,
                       file=c.file_name, sha256=c.sha256, host=c.host, port=c.port, attempts=job.attempts,
                       error=job.last_error)
                log.error("giving up pushing %s to %s after %d attempts: %s", c.file_name, c.party,
                          job.attempts, error)
            else:
                delay = self.backoff(job.attempts)
                job.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
                log.warning("push of %s to %s failed (attempt %d/%d), retrying in %.1fs: %s", c.file_name,
                            c.party, job.attempts, self.max_attempts, delay, error)


__all__ = ["Pusher", "PushError", "DONE", "FAILED", "PENDING"]
