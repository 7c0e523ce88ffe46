"""Accounts and their credentials. Secrets are never stored, only their hashes."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..clock import utcnow
from ..db import Base, UTCDateTime

PROVINCE, ANALYST, ADMIN = "province", "analyst", "admin"
ROLES = (PROVINCE, ANALYST, ADMIN)


class Account(Base):
    """Who acts: a province's (or local network's) system account, an analyst or an admin."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # login name, e.g. "prov42"
    role: Mapped[str] = mapped_column(String(16))
    party: Mapped[str | None] = mapped_column(ForeignKey("area.code"), default=None)  # provinces: 42 or 0668
    display_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(254), default=None)  # where reminders are e-mailed, if anywhere
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)  # argon2id
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Sign-in sessions carry the value they were opened under; moving it on (sign-out,
    # password change, disabling) ends every session of the account, wherever its cookie is.
    session_epoch: Mapped[int] = mapped_column(default=0)

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="account", cascade="all, delete-orphan")
    ssh_keys: Mapped[list["SshKey"]] = relationship(back_populates="account", cascade="all, delete-orphan")


class ApiToken(Base):
    """An API token: shown once when created; only its SHA-256 is kept.

    Tokens are 256-bit random strings, so a fast hash is as safe as a slow one and every
    request can be checked in microseconds (passwords, which people choose, use argon2).
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # shown in listings to tell tokens apart
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    account: Mapped[Account] = relationship(back_populates="tokens")


class SshKey(Base):
    """A public key a province's SFTP client authenticates with."""

    __tablename__ = "ssh_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)  # SHA256:...
    key_type: Mapped[str] = mapped_column(String(40))
    public_key: Mapped[str] = mapped_column(Text)  # the OpenSSH one-line form
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    account: Mapped[Account] = relationship(back_populates="ssh_keys")
