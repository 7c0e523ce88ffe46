"""Records the admin console adds: cycle exceptions, sign-in attempts, reminders sent."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import as_utc, utcnow
from ..db import Base, UTCDateTime


class CycleException(Base):
    """A province may still deliver to a cycle (closed or past its deadline) until ``until``, UTC.

    While it is valid, that province's deliveries to the cycle are neither rejected for a
    closed cycle (E601) nor late (W603): the context builder treats the cycle as open with
    ``until`` as its deadline. Revoking ends it at once; rows are kept for the record.
    """

    __tablename__ = "cycle_exception"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[str] = mapped_column(ForeignKey("reporting_cycle.id"), index=True)
    province: Mapped[str] = mapped_column(ForeignKey("area.code"))
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500))
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(64), default=None)

    def valid_at(self, moment: dt.datetime) -> bool:
        """Whether the exception covers a delivery received at ``moment``."""
        return self.revoked_at is None and as_utc(moment) <= as_utc(self.until)


class LoginAttempt(Base):
    """One password sign-in attempt on the pages, kept to lock an account out after repeated failures."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_name_at", "account_name", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)


class Reminder(Base):
    """One reminder sent to a party that had not delivered a cycle's units ``lead_days`` before its deadline.

    At most one per (party, cycle, lead): the unique key is what makes sending idempotent,
    whether the command, the server's loop or an admin's "send now" runs first.
    """

    __tablename__ = "reminder"
    __table_args__ = (UniqueConstraint("party", "cycle", "lead_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    party: Mapped[str] = mapped_column(String(4), index=True)
    cycle: Mapped[str] = mapped_column(String(7), index=True)
    lead_days: Mapped[int] = mapped_column()
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the party's deadline when sent (exceptions move it)
    missing_units: Mapped[list[str]] = mapped_column(JSON, default=list)
    outbox_file: Mapped[str | None] = mapped_column(String(64), default=None)
    emailed_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    email_error: Mapped[str | None] = mapped_column(Text, default=None)
    sent_by: Mapped[str] = mapped_column(String(64), default="system")
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
