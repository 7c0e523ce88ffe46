"""List versions, their entries, the slices cut for each province and who fetched them."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..clock import utcnow
from ..db import Base, UTCDateTime

# CLOSED: a draft closed without publishing it (kept, with its name, for the record; never in force).
DRAFT, PUBLISHED, SUPERSEDED, CLOSED = "draft", "published", "superseded", "closed"


class ListVersion(Base):
    """One publication of the national list (``2026V02``)."""

    __tablename__ = "list_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(10), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=DRAFT)
    source_name: Mapped[str] = mapped_column(String(255))
    source_sha256: Mapped[str] = mapped_column(String(64))
    based_on_id: Mapped[int | None] = mapped_column(ForeignKey("list_version.id"), default=None)
    loaded_by: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    published_by: Mapped[str | None] = mapped_column(String(64), default=None)
    added: Mapped[int] = mapped_column(default=0)
    changed: Mapped[int] = mapped_column(default=0)
    removed: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)

    # By rank; equal ranks in insertion order (entries are stored in bulk, read back from here).
    entries: Mapped[list["ListEntry"]] = relationship(cascade="all, delete-orphan",
                                                      order_by="[ListEntry.rank, ListEntry.id]")
    slices: Mapped[list["ListSlice"]] = relationship(cascade="all, delete-orphan")


class ListEntry(Base):
    """One customer of one list version, with its change against the previous published version."""

    __tablename__ = "list_entry"
    __table_args__ = (UniqueConstraint("list_version_id", "national_cust_id"),
                      Index("ix_list_entry_province", "list_version_id", "lead_prov_id"),
                      # What every version said of one customer (the list in force for a cycle).
                      Index("ix_list_entry_customer", "national_cust_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    list_version_id: Mapped[int] = mapped_column(ForeignKey("list_version.id", ondelete="CASCADE"))
    national_cust_id: Mapped[str] = mapped_column(String(10))
    rank: Mapped[int] = mapped_column()
    cust_name: Mapped[str] = mapped_column(String(100))
    group_parent_name: Mapped[str] = mapped_column(String(100), default="")
    c_type_id: Mapped[str] = mapped_column(String(4))
    level_id: Mapped[str] = mapped_column(String(1))
    lead_prov_id: Mapped[str] = mapped_column(String(2))
    lead_latn_id: Mapped[str] = mapped_column(String(4))
    hq_manager_name: Mapped[str] = mapped_column(String(30))
    hq_manager_phone: Mapped[str] = mapped_column(String(20))
    eff_date: Mapped[dt.date] = mapped_column(Date)
    exp_date: Mapped[dt.date | None] = mapped_column(Date, default=None)
    change_type: Mapped[str] = mapped_column(String(1))  # A new, M changed, D removed, U unchanged


class ListSlice(Base):
    """A province's part of a list version, as the spec's files (a D_ delivery) in the archive."""

    __tablename__ = "list_slice"
    __table_args__ = (UniqueConstraint("list_version_id", "province"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_version_id: Mapped[int] = mapped_column(ForeignKey("list_version.id", ondelete="CASCADE"))
    # A province; at a province hub also one of its local networks (its part of the slice).
    province: Mapped[str] = mapped_column(String(4))
    rows: Mapped[int] = mapped_column()
    check_name: Mapped[str] = mapped_column(String(64))
    check_sha256: Mapped[str] = mapped_column(String(64))
    data_name: Mapped[str] = mapped_column(String(64))
    data_sha256: Mapped[str] = mapped_column(String(64))
    data_size: Mapped[int] = mapped_column()

    version: Mapped[ListVersion] = relationship(back_populates="slices")


class ListDownload(Base):
    """An acknowledgement: a province's account fetched a slice file."""

    __tablename__ = "list_download"

    id: Mapped[int] = mapped_column(primary_key=True)
    slice_id: Mapped[int] = mapped_column(ForeignKey("list_slice.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    file_name: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
