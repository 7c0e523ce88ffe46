"""Errors raised by the exchange server, and the one JSON shape every error takes.

    ExchangeError              base: a stable ``code``, an HTTP ``status``, English and Chinese text
    ├── ConfigError            the configuration is wrong (start-up fails with one clear line)
    ├── BadRequest        400  the request is malformed (bad multipart, bad file name, bad parameter)
    ├── Unauthorized      401  no or unknown credentials
    ├── Forbidden         403  authenticated, but not allowed (e.g. a province on an admin route)
    ├── NotFound          404  no such thing, or not yours (provinces never learn what others sent)
    ├── Conflict          409  the state does not allow it (cycle already open, list already published)
    ├── PayloadTooLarge   413  a file or request over its cap
    ├── Unprocessable     422  well-formed but invalid content (a list file that fails validation)
    └── InsufficientStorage 507  the disk is full: nothing was kept, try again later

Every error reaches the client as::

    {"code": "delivery_not_found", "status": 404, "message": "...", "message_zh": "...", "errors": {...}}

``code`` never changes meaning; ``errors`` (optional) carries field-level details.
"""
from __future__ import annotations

from typing import Any


class ExchangeError(Exception):
    """Base of every error the server raises on purpose."""

    status = 500
    default_code = "internal_error"

    def __init__(self, message: str, message_zh: str | None = None, *, code: str | None = None,
                 errors: Any = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_zh = message_zh or message
        self.code = code or self.default_code
        self.errors = errors
        if status is not None:
            self.status = status

    def as_dict(self) -> dict[str, Any]:
        """The error's JSON shape."""
        body: dict[str, Any] = {"code": self.code, "status": self.status, "message": self.message,
                                "message_zh": self.message_zh}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class ConfigError(ExchangeError):
    """The configuration is wrong."""

    default_code = "config_error"


class BadRequest(ExchangeError):
    """The request is malformed."""

    status = 400
    default_code = "bad_request"


class Unauthorized(ExchangeError):
    """Missing or unknown credentials."""

    status = 401
    default_code = "unauthorized"


class Forbidden(ExchangeError):
    """Authenticated but not allowed."""

    status = 403
    default_code = "forbidden"


class NotFound(ExchangeError):
    """No such resource, or not the caller's."""

    status = 404
    default_code = "not_found"


class Conflict(ExchangeError):
    """The current state does not allow the action."""

    status = 409
    default_code = "conflict"


class PayloadTooLarge(ExchangeError):
    """A file or request over its size cap."""

    status = 413
    default_code = "payload_too_large"


class Unprocessable(ExchangeError):
    """Well-formed but invalid content."""

    status = 422
    default_code = "unprocessable"


class InsufficientStorage(ExchangeError):
    """The server's disk is full: nothing of the request was kept; the sender may try again later."""

    status = 507
    default_code = "insufficient_storage"
