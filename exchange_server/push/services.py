"""Push targets (provinces' own SFTP endpoints) and the queue of files to push to them.

Everything here runs inside the caller's transaction: publishing a list version enqueues
its slices in the same commit that publishes it, so a file is either published *and*
queued for push, or neither. The network side is ``worker.Pusher``.
"""
from __future__ import annotations

import logging
import posixpath
import re

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..audit.services import record
from ..clock import utcnow
from ..errors import BadRequest, NotFound
from ..org.models import Area
from ..storage import Archive
from ..storage.archive import DIGEST_RE
from .keys import HostKeyError, fingerprint, host_key_from_parts, parse_host_key
from .models import DONE, FAILED, PENDING, PushJob, PushTarget

log = logging.getLogger(__name__)

STATES = (PENDING, DONE, FAILED)
# A host name or an IP literal (v6 without brackets); no spaces, no shell or URL syntax.
_HOST_RE = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
_USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}$")


def _bad(message: str, message_zh: str, code: str, **errors: object) -> BadRequest:
    return BadRequest(message, message_zh, code=code, errors=errors or None)


class PushService:
    """Configure push targets, queue files for them and list the queue (admins)."""

    def __init__(self, session: Session, archive: Archive | None = None, actor: str = "system") -> None:
        self.session = session
        self.archive = archive
        self.actor = actor

    # -- targets ----------------------------------------------------------------------------
    def set_target(self, party: str, host: str, port: int, username: str, remote_dir: str,
                   host_key_line: str) -> PushTarget:
        """Create or replace a party's push endpoint (enabled); its host key is pinned, never learned."""
        area = self.session.get(Area, party)
        if area is None or party == "00":
            raise NotFound(f"no province or local network {party!r}", f"没有省份或本地网 {party!r}",
                           code="party_not_found")
        host = (host or "").strip()
        if not _HOST_RE.match(host):
            raise _bad(f"invalid host {host!r}", f"主机名无效：{host!r}", "invalid_push_host", host=host)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise _bad(f"invalid port {port!r}", f"端口无效：{port!r}", "invalid_push_port", port=port)
        if not _USER_RE.match(username or ""):
            raise _bad(f"invalid user name {username!r}", f"用户名无效：{username!r}", "invalid_push_user")
        remote_dir = (remote_dir or ".").strip() or "."
        if any(ch in remote_dir for ch in "\x00\r\n") or len(remote_dir) > 255:
            raise _bad(f"invalid remote directory {remote_dir!r}", f"远端目录无效：{remote_dir!r}",
                       "invalid_push_path")
        try:
            key_type, blob = parse_host_key(host_key_line or "")
        except HostKeyError as exc:
            raise _bad(f"invalid host key: {exc}", f"主机公钥无效：{exc}", "invalid_host_key") from exc
        host_key = f"{key_type} {blob}"
        target = self.session.scalar(select(PushTarget).where(PushTarget.party == party))
        changed = target is not None and (target.host, target.port, target.username, target.remote_dir,
                                          target.host_key) != (host, port, username, remote_dir, host_key)
        if target is None:
            target = PushTarget(party=party, host=host, port=port, username=username, remote_dir=remote_dir,
                                host_key=host_key, enabled=True)
            self.session.add(target)
        else:
            target.host, target.port, target.username = host, port, username
            target.remote_dir, target.host_key, target.enabled = remote_dir, host_key, True
        self.session.flush()
        if changed:
            # A corrected endpoint should be tried at once, not after the backoff earned by the
            # old, wrong one.
            self.session.execute(update(PushJob).where(PushJob.target_id == target.id, PushJob.state == PENDING)
                                 .values(next_attempt_at=utcnow()))
        record(self.session, self.actor, "push.target.set", f"push_target:{party}", host=host, port=port,
               username=username, remote_dir=remote_dir,
               host_key_fingerprint=fingerprint(host_key_from_parts(key_type, blob)))
        return target

    def remove_target(self, party: str) -> None:
        """Remove a party's push endpoint and drop its queued (not yet pushed) files."""
        target = self.target_for(party, enabled_only=False)
        if target is None:
            raise NotFound(f"no push target for {party}", f"{party} 未配置推送目标", code="push_target_not_found")
        pending = self.session.scalar(select(PushJob.id).where(PushJob.target_id == target.id,
                                                               PushJob.state == PENDING).limit(1))
        # Jobs are deleted explicitly rather than relying on ON DELETE CASCADE, so the ORM's
        # identity map never holds jobs whose rows are gone.
        self.session.execute(delete(PushJob).where(PushJob.target_id == target.id))
        self.session.delete(target)
        self.session.flush()
        record(self.session, self.actor, "push.target.remove", f"push_target:{party}", host=target.host,
               port=target.port, had_pending_jobs=pending is not None)

    def targets(self) -> list[PushTarget]:
        """Every configured push target, by party."""
        return list(self.session.scalars(select(PushTarget).order_by(PushTarget.party)))

    def target_for(self, party: str, enabled_only: bool = True) -> PushTarget | None:
        """The party's push target, or None (also None when disabled, unless ``enabled_only`` is False)."""
        q = select(PushTarget).where(PushTarget.party == party)
        if enabled_only:
            q = q.where(PushTarget.enabled.is_(True))
        return self.session.scalar(q)

    # -- the queue --------------------------------------------------------------------------
    def enqueue(self, party: str, file_name: str, sha256: str, size: int, reason: str) -> PushJob | None:
        """Queue an archived file for the party's endpoint; None if it has none; same file twice is one job."""
        target = self.target_for(party)
        if target is None:
            return None
        if not file_name or file_name != posixpath.basename(file_name) or file_name in (".", "..") \
                or "\\" in file_name or "\x00" in file_name or file_name.endswith(".part"):
            raise _bad(f"invalid file name to push: {file_name!r}", f"推送文件名无效：{file_name!r}",
                       "invalid_push_file_name")
        if not DIGEST_RE.match(sha256 or ""):
            raise _bad(f"not a SHA-256 digest: {sha256!r}", f"不是 SHA-256 摘要：{sha256!r}", "invalid_digest")
        if self.archive is not None and not self.archive.exists(sha256):
            raise NotFound(f"{file_name}: {sha256} is not in the archive", f"{file_name}：归档中没有 {sha256}",
                           code="archive_object_not_found")
        existing = self._job(target.id, file_name, sha256)
        if existing is not None:
            return existing
        job = PushJob(target_id=target.id, file_name=file_name, sha256=sha256, size=size, reason=reason,
                      state=PENDING, attempts=0, next_attempt_at=utcnow())
        try:
            # A savepoint, so losing the race to a concurrent enqueue of the same file only
            # undoes this insert, not the caller's transaction (e.g. the publish).
            with self.session.begin_nested():
                self.session.add(job)
                self.session.flush()
        except IntegrityError:
            existing = self._job(target.id, file_name, sha256)
            if existing is None:
                raise
            return existing
        self._supersede(job)
        log.info("queued %s (%s) for push to %s", file_name, reason, party)
        return job

    def _job(self, target_id: int, file_name: str, sha256: str) -> PushJob | None:
        return self.session.scalar(select(PushJob).where(PushJob.target_id == target_id,
                                                         PushJob.file_name == file_name,
                                                         PushJob.sha256 == sha256))

    def _supersede(self, job: PushJob) -> None:
        """Give up older, still pending pushes of the same file name with other bytes.

        Otherwise an old version still backing off could land after the new one and
        overwrite it on the province's side.
        """
        older = self.session.scalars(select(PushJob).where(
            PushJob.target_id == job.target_id, PushJob.file_name == job.file_name,
            PushJob.state == PENDING, PushJob.id != job.id))
        for old in older:
            old.state = FAILED
            old.last_error = f"superseded by push job {job.id} (same file name, new content {job.sha256[:12]})"

    def jobs(self, party: str | None = None, state: str | None = None, limit: int = 200) -> list[PushJob]:
        """The newest push jobs, optionally for one party and/or in one state (for admins)."""
        if state is not None and state not in STATES:
            raise _bad(f"unknown push state {state!r}", f"推送状态未知：{state!r}", "invalid_push_state",
                       allowed=list(STATES))
        q = select(PushJob).join(PushTarget, PushJob.target_id == PushTarget.id)
        if party is not None:
            q = q.where(PushTarget.party == party)
        if state is not None:
            q = q.where(PushJob.state == state)
        return list(self.session.scalars(q.order_by(PushJob.id.desc()).limit(max(1, min(limit, 10000)))))
