"""Where to push a province's files, and each push with its attempts."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..clock import utcnow
from ..db import Base, UTCDateTime

PENDING, DONE, FAILED = "pending", "done", "failed"


class PushTarget(Base):
    """A province's own SFTP endpoint that HQ pushes its outbox files to."""

    __tablename__ = "push_target"

    id: Mapped[int] = mapped_column(primary_key=True)
    party: Mapped[str] = mapped_column(ForeignKey("area.code"), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=22)
    username: Mapped[str] = mapped_column(String(64))
    remote_dir: Mapped[str] = mapped_column(String(255), default=".")
    # The endpoint's host key, as a known_hosts entry's "type base64" part: verified on every
    # connection, never learned on first use.
    host_key: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushJob(Base):
    """One file to push to one target; retried with backoff until done or given up."""

    __tablename__ = "push_job"
    __table_args__ = (UniqueConstraint("target_id", "file_name", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("push_target.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))  # the bytes, in the archive
    size: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(64))  # list.publish, delivery.receipt, delivery.feedback
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    pushed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    target: Mapped[PushTarget] = relationship()
