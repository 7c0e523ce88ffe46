"""A reporting cycle as HQ runs it."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, String
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..db import Base, UTCDateTime

PLANNED, OPEN, CLOSED = "planned", "open", "closed"
STATES = (PLANNED, OPEN, CLOSED)


class ReportingCycle(Base):
    """One row of the reporting calendar (REP_CYCLE) plus its state."""

    __tablename__ = "reporting_cycle"

    id: Mapped[str] = mapped_column(String(6), primary_key=True)  # 202610, 2026Q3, 2026H2, 2026
    freq: Mapped[str] = mapped_column(String(1))
    name: Mapped[str] = mapped_column(String(40))
    begin_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    units_due: Mapped[str] = mapped_column(String(100))  # comma-separated unit codes
    state: Mapped[str] = mapped_column(String(16), default=PLANNED)
    remark: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def units(self) -> list[str]:
        """The unit codes due, as a list."""
        return [u for u in self.units_due.split(",") if u]
