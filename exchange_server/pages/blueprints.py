"""What every page blueprint shares: CSRF checks, HTML error pages, security headers."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from werkzeug.wrappers import Response

from . import errors
from .csrf import check_csrf

# Pages draw charts as inline SVG and run no script at all, so the policy can be strict.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")


def security_headers(response: Response) -> Response:
    """Headers every page answer carries: no framing, no sniffing, no caching of signed-in pages."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def page_blueprint(name: str, import_name: str, **options: Any) -> Blueprint:
    """A blueprint whose POSTs need the CSRF token and whose errors render as HTML pages."""
    bp = Blueprint(name, import_name, **options)
    bp.before_request(check_csrf)
    bp.after_request(security_headers)
    errors.register(bp)
    return bp
