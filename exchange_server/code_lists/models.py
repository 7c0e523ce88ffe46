"""An effective-dated code-list version an admin has proposed, published or withdrawn."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..db import Base, UTCDateTime

PROPOSED, PUBLISHED, WITHDRAWN = "proposed", "published", "withdrawn"
STATES = (PROPOSED, PUBLISHED, WITHDRAWN)


class CodeListVersionRecord(Base):
    """A new version of one code list, as a delta (add, update, remove) on an earlier version.

    Proposed versions change nothing. A published one is in force for cycles beginning on or
    after ``effective_from`` and can no longer change or be withdrawn: a later version
    corrects it, so every verdict can be traced to the codes it was judged against.
    """

    __tablename__ = "code_list_version"
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
    published_by: Mapped[str | None] = mapped_column(String(64), default=None)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    def as_version(self) -> dict[str, Any]:
        """The ``versions:`` entry this record stands for, as the spec loader reads it."""
        out: dict[str, Any] = {"version": self.version, "effective_from": self.effective_from.isoformat(),
                               "based_on": self.based_on}
        for key in ("note_zh", "note_en"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in ("add", "update", "remove"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out
