"""The org tree as stored: one row per area code ever in the code list."""
from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base

GROUP, PROVINCE, LOCAL_NETWORK = "group", "province", "local_network"


class Area(Base):
    """Group HQ (``00``), a province (``42``) or a local network (``0668``)."""

    __tablename__ = "area"

    code: Mapped[str] = mapped_column(String(4), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("area.code"), default=None)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)  # in the code list version in force today
    code_list_version: Mapped[str] = mapped_column(String(16))
