"""A delivery's review by HQ and the comments HQ sends the province about it."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..db import Base, UTCDateTime

# Review states. A delivery without a review row is "open".
OPEN, REVIEWED, RESEND_REQUESTED, WARNINGS_ACCEPTED = "open", "reviewed", "resend_requested", "warnings_accepted"
REVIEW_STATES = (OPEN, REVIEWED, RESEND_REQUESTED, WARNINGS_ACCEPTED)


class DeliveryReview(Base):
    """Where HQ's review of one delivery stands (one row per reviewed delivery)."""

    __tablename__ = "delivery_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(32), default=OPEN, index=True)
    reviewer: Mapped[str | None] = mapped_column(String(64), default=None)  # account name
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    justification: Mapped[str | None] = mapped_column(Text, default=None)  # why warnings were accepted


class ReviewComment(Base):
    """A comment from HQ to the sending province, delivered to its outbox and shown by its agent."""

    __tablename__ = "review_comment"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)  # placed in the outbox
