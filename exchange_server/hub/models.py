"""The province hub's records: approvals per cycle and local network, forwards to HQ and what came back.

A hub is the exchange server run by a province for its prefectures (docs/tiers.md). What
it adds to the server's own tables:

- ``Approval``: each approve or return of one local network's data for a cycle, with the
  versions approved (``ApprovedVersion``); the latest one per (cycle, network) is in force.
- ``Forward``: each delivery the hub assembled from approved versions and sent to HQ,
  its state (built, sent, judged) and HQ's verdict; ``ForwardSource`` names the versions it
  carries, ``ForwardLine`` maps its lines back to the prefecture files they came from, and
  ``HqFinding`` keeps HQ's findings mapped to those files.
- ``HubCycle``: HQ's deadline and state of a cycle, and the province's earlier deadline for its prefectures.

At HQ, ``submissions.models.DeliveryApproval`` records what a hub said about a delivery
it forwarded: who approved which networks at the province, and when.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..clock import utcnow
from ..db import Base, UTCDateTime

# Decisions on a network's data for a cycle.
APPROVED, RETURNED = "approved", "returned"
# A forward's life: built (archived, queued to send), sent (HQ's receipt), judged (HQ's verdict).
BUILT, SENT, JUDGED = "built", "sent", "judged"


class Approval(Base):
    """One decision on one local network's data for a cycle: approved (with the versions), or returned."""

    __tablename__ = "hub_approval"
    __table_args__ = (Index("ix_hub_approval_cycle", "cycle", "latn_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle: Mapped[str] = mapped_column(String(7))
    latn_id: Mapped[str] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(16))  # approved | returned
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    comment: Mapped[str] = mapped_column(Text, default="")

    versions: Mapped[list[ApprovedVersion]] = relationship(cascade="all, delete-orphan")


class ApprovedVersion(Base):
    """A version (of one unit, counting for the network) an approval covered."""

    __tablename__ = "hub_approved_version"

    approval_id: Mapped[int] = mapped_column(ForeignKey("hub_approval.id", ondelete="CASCADE"), primary_key=True)
    unit: Mapped[str] = mapped_column(String(5), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("unit_version.id"))


class HubCycle(Base):
    """A cycle as HQ runs it (deadline, state) and the province's own, earlier deadline for its prefectures.

    The hub's ``ReportingCycle`` is what its prefectures see: HQ's state, and the internal
    deadline where the province set one (else HQ's). HQ's own deadline stays here: it
    decides when a forward is late.
    """

    __tablename__ = "hub_cycle"

    cycle: Mapped[str] = mapped_column(String(7), primary_key=True)
    hq_deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    hq_state: Mapped[str] = mapped_column(String(16))
    internal_deadline: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    set_by: Mapped[str | None] = mapped_column(String(64), default=None)
    set_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Forward(Base):
    """A delivery the hub assembled from approved versions and sends (sent) to HQ."""

    __tablename__ = "hub_forward"
    __table_args__ = (UniqueConstraint("party", "cycle", "resend"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    party: Mapped[str] = mapped_column(String(4))  # the province, or one network (a partial forward)
    cycle: Mapped[str] = mapped_column(String(7))
    resend: Mapped[int] = mapped_column()
    check_name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=BUILT)  # built | sent | judged
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{name, sha256, size, unit}] archived
    manifest_sha256: Mapped[str] = mapped_column(String(64))  # <check>.approval.json, sent with the files
    report_sha256: Mapped[str | None] = mapped_column(String(64), default=None)  # the hub's own validation (JSON)
    hub_warnings: Mapped[int] = mapped_column(default=0)
    networks: Mapped[list[str]] = mapped_column(JSON, default=list)
    approvals: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # who approved which network, when
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    hq_delivery_id: Mapped[int | None] = mapped_column(default=None)
    hq_status: Mapped[str | None] = mapped_column(String(32), default=None)
    hq_errors: Mapped[int] = mapped_column(default=0)
    hq_warnings: Mapped[int] = mapped_column(default=0)
    judged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    hq_review_state: Mapped[str | None] = mapped_column(String(32), default=None)  # e.g. resend_requested
    hq_comments: Mapped[list[str]] = mapped_column(JSON, default=list)  # as HQ wrote them, oldest first
    answers_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)  # last asked HQ

    sources: Mapped[list[ForwardSource]] = relationship(cascade="all, delete-orphan")


class ForwardSource(Base):
    """A version a forward carries the rows of, for one unit and network."""

    __tablename__ = "hub_forward_source"

    forward_id: Mapped[int] = mapped_column(ForeignKey("hub_forward.id", ondelete="CASCADE"), primary_key=True)
    unit: Mapped[str] = mapped_column(String(5), primary_key=True)
    latn_id: Mapped[str] = mapped_column(String(4), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("unit_version.id"), index=True)
    rows: Mapped[int] = mapped_column(default=0)


class ForwardLine(Base):
    """A run of lines of a forwarded file that came, in order, from one run of a prefecture file."""

    __tablename__ = "hub_forward_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    forward_id: Mapped[int] = mapped_column(ForeignKey("hub_forward.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(String(5))
    file: Mapped[str] = mapped_column(String(255))  # the forwarded file's name
    first_line: Mapped[int] = mapped_column()  # its line (or XML row) where the run starts
    count: Mapped[int] = mapped_column()
    source_delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id"))
    source_file: Mapped[str] = mapped_column(String(255))
    source_first_line: Mapped[int] = mapped_column()


class HqFinding(Base):
    """One of HQ's findings on a forward, with the prefecture delivery, file and line it points back to."""

    __tablename__ = "hub_hq_finding"

    id: Mapped[int] = mapped_column(primary_key=True)
    forward_id: Mapped[int] = mapped_column(ForeignKey("hub_forward.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8))
    file: Mapped[str | None] = mapped_column(String(255), default=None)
    line: Mapped[int | None] = mapped_column(default=None)
    field: Mapped[str | None] = mapped_column(String(64), default=None)
    value: Mapped[str | None] = mapped_column(Text, default=None)
    expected: Mapped[str | None] = mapped_column(Text, default=None)
    message_zh: Mapped[str] = mapped_column(Text, default="")
    message_en: Mapped[str] = mapped_column(Text, default="")
    source_delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"), default=None, index=True)
    source_file: Mapped[str | None] = mapped_column(String(255), default=None)
    source_line: Mapped[int | None] = mapped_column(default=None)
