"""CSRF protection for the page forms: one random token per session, checked on every POST.

The session cookie is SameSite=Lax, which already keeps other sites' POSTs from carrying it;
the token is the second lock (and covers the sign-in form, which has no session yet).
"""
from __future__ import annotations

import hmac
import secrets

from flask import request, session

from ..errors import BadRequest

FIELD = "csrf_token"


def csrf_token() -> str:
    """The session's CSRF token, created on first use (templates put it in every POST form)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


#: Endpoints whose POST body is a streamed upload. They check the token themselves (from the body's
#: first part, ``verify_csrf``): reading ``request.form`` here would spool the whole upload first.
STREAMED: set[str] = set()


def check_csrf() -> None:
    """Refuse a POST whose form does not carry the session's CSRF token."""
    if request.method != "POST" or request.endpoint in STREAMED:
        return
    verify_csrf(request.form.get(FIELD, ""))


def verify_csrf(sent: str) -> None:
    """Refuse ``sent`` unless it is the session's CSRF token."""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise BadRequest("the form is out of date or was not sent from this site; reload the page and try again",
                         "表单已过期或并非来自本站，请刷新页面后重试", code="csrf_failed")
