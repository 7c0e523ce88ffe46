"""Records the admin console adds: cycle exceptions, sign-in attempts."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
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
