"""Deliveries, their files and findings, and the versions of accepted data per scope."""
from __future__ import annotations

import datetime as dt

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..clock import utcnow
from ..db import Base, UTCDateTime

# Delivery status: received and queued at once; a worker moves it to validating, then to a verdict.
QUEUED, VALIDATING = "queued", "validating"
ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED = "accepted", "accepted_with_warnings", "rejected"
FAILED = "failed"  # the server could not validate it (after retries); an admin looks at it
VERDICTS = (ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED)


class Delivery(Base):
    """One check file plus its data files, as received from one account over one channel."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("account_id", "fingerprint"),
        Index("ix_delivery_scope", "party", "period", "mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # http | sftp | dropbox | web (the province upload page)
    # The identity of the bytes: SHA-256 over the sorted "name sha256" lines of every file.
    fingerprint: Mapped[str] = mapped_column(String(64))
    check_name: Mapped[str | None] = mapped_column(String(64), default=None)  # P_42_202610_00 (no .chk)
    mode: Mapped[str | None] = mapped_column(String(1), default=None)
    party: Mapped[str | None] = mapped_column(String(4), default=None)
    period: Mapped[str | None] = mapped_column(String(7), default=None)
    resend: Mapped[int | None] = mapped_column(default=None)
    # Whether the sending account may send as the party its check file names (decided on
    # receipt). Only entitled deliveries count in a party's resend sequence, completeness
    # and history: what one province sends in another's name changes nothing for that one.
    entitled: Mapped[bool] = mapped_column(default=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(32), default=QUEUED, index=True)
    validated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    errors: Mapped[int] = mapped_column(default=0)
    warnings: Mapped[int] = mapped_column(default=0)
    late: Mapped[bool] = mapped_column(default=False)
    receipt_key: Mapped[str | None] = mapped_column(String(64), default=None)  # .rct.xml in the archive
    report_key: Mapped[str | None] = mapped_column(String(64), default=None)  # full JSON report
    fbf_key: Mapped[str | None] = mapped_column(String(64), default=None)  # .fbf.xml
    fbr_key: Mapped[str | None] = mapped_column(String(64), default=None)  # .fbr.xml
    failure: Mapped[str | None] = mapped_column(Text, default=None)

    files: Mapped[list["DeliveryFile"]] = relationship(back_populates="delivery", cascade="all, delete-orphan",
                                                       order_by="DeliveryFile.id")
    counts: Mapped[list["FindingCount"]] = relationship(cascade="all, delete-orphan")

    @property
    def is_final(self) -> bool:
        """Whether validation has ended (a verdict or a failure)."""
        return self.status in VERDICTS or self.status == FAILED


class DeliveryFile(Base):
    """One received file of a delivery; its bytes are in the archive under ``sha256``."""

    __tablename__ = "delivery_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(5), default=None)  # None for the check file
    rows: Mapped[int | None] = mapped_column(default=None)

    delivery: Mapped[Delivery] = relationship(back_populates="files")


class FindingCount(Base):
    """How often one code was found in a delivery (exact, never capped)."""

    __tablename__ = "finding_count"

    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), primary_key=True)
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    severity: Mapped[str] = mapped_column(String(8))
    count: Mapped[int] = mapped_column()


class Finding(Base):
    """One listed occurrence (at most the cap per code), for paging and filtering."""

    __tablename__ = "finding"
    __table_args__ = (Index("ix_finding_delivery_code", "delivery_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8))
    tier: Mapped[int] = mapped_column()
    file: Mapped[str | None] = mapped_column(String(255), default=None)
    line: Mapped[int | None] = mapped_column(default=None)
    field: Mapped[str | None] = mapped_column(String(64), default=None)
    value: Mapped[str | None] = mapped_column(Text, default=None)
    expected: Mapped[str | None] = mapped_column(Text, default=None)
    xpath: Mapped[str | None] = mapped_column(String(255), default=None)
    unit: Mapped[str | None] = mapped_column(String(32), default=None)
    message_zh: Mapped[str] = mapped_column(Text)
    message_en: Mapped[str] = mapped_column(Text)


class DataScope(Base):
    """(party, unit, cycle): the unit of replacement. Locked while a new version is accepted."""

    __tablename__ = "data_scope"
    __table_args__ = (UniqueConstraint("party", "unit", "cycle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    party: Mapped[str] = mapped_column(String(4))
    unit: Mapped[str] = mapped_column(String(5))
    cycle: Mapped[str] = mapped_column(String(7), index=True)
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("unit_version.id", use_alter=True, name="fk_data_scope_current_version"), default=None)
    versions_count: Mapped[int] = mapped_column(default=0)


class UnitVersion(Base):
    """One accepted version of one scope; kept forever, superseded but never overwritten."""

    __tablename__ = "unit_version"
    __table_args__ = (UniqueConstraint("scope_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope_id: Mapped[int] = mapped_column(ForeignKey("data_scope.id"), index=True)
    number: Mapped[int] = mapped_column()  # 1, 2, ... in order of acceptance
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id"), index=True)
    resend: Mapped[int] = mapped_column()
    rows: Mapped[int] = mapped_column(default=0)
    accepted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    superseded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("unit_version.id"), default=None)

    scope: Mapped[DataScope] = relationship(foreign_keys=[scope_id])
    delivery: Mapped[Delivery] = relationship()


class DeliveryApproval(Base):
    """What the province hub that forwarded a delivery says of it: who approved which networks, when.

    It arrives with the delivery as ``<check>.approval.json`` (docs/tiers.md), is archived
    like every received file and is not part of the delivery's data or its fingerprint.
    """

    __tablename__ = "delivery_approval"

    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))  # the manifest as received, in the archive
    hub: Mapped[str] = mapped_column(String(4))  # the province whose hub approved
    networks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{latn_id, by, at, versions}]
    forwarded_by: Mapped[str] = mapped_column(String(64), default="")  # who forwarded, at the hub
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
