"""Records the admin console adds: cycle exceptions, proposed code-list versions, sign-in attempts."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import as_utc, utcnow
from ..db import Base, UTCDateTime

PROPOSED, WITHDRAWN = "proposed", "withdrawn"


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


class CodeListVersionDraft(Base):
    """A code-list version an admin proposes; it takes effect only once merged into interface_specs/.

    The standard is loaded from YAML once per process and never written at run time, so a
    draft is a record of the change and the YAML snippet to merge, not a change in force.
    """

    __tablename__ = "code_list_version_draft"
    __table_args__ = (UniqueConstraint("domain", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(20))
    effective_from: Mapped[dt.date] = mapped_column(Date)
    based_on: Mapped[str] = mapped_column(String(20))
    add: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    update: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    remove: Mapped[list[str]] = mapped_column(JSON, default=list)
    note_zh: Mapped[str] = mapped_column(String(500), default="")
    note_en: Mapped[str] = mapped_column(String(500), default="")
    state: Mapped[str] = mapped_column(String(16), default=PROPOSED)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginAttempt(Base):
    """One password sign-in attempt on the pages, kept to lock an account out after repeated failures."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_name_at", "account_name", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)
