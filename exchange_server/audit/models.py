"""Audit events."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..db import Base, UTCDateTime


class AuditEvent(Base):
    """One state change. Rows are only ever inserted."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # account name, or "system"
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "cycle.close", "delivery.accepted"
    target: Mapped[str] = mapped_column(String(128), index=True)  # e.g. "cycle:202610", "delivery:17"
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
