"""The application factory."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import text
from werkzeug.wrappers import Response

from templates import TEMPLATE_DIR

from . import db, errors_http, routing
from .runtime import Runtime, open_runtime


def create_app(test_config: Mapping[str, Any] | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the exchange server's WSGI app: settings, database, archive, API, pages."""
    rt = runtime or open_runtime(test_config)
    # pages: the jinja templates live in the top-level templates/ package.
    app = Flask(__name__, instance_path=str(rt.settings.data_path), template_folder=str(TEMPLATE_DIR))
    app.config.update(SECRET_KEY=rt.settings.secret_key, JSON_AS_ASCII=False,
                      # pages: the sign-in session cookie is out of scripts' reach and not sent cross-site.
                      SESSION_COOKIE_NAME="kam_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=rt.settings.session_cookie_secure,
                      # Werkzeug's own cap, above ours, so that ours (with its clear message) speaks first.
                      MAX_CONTENT_LENGTH=None)
    # HTTPS (served directly, or by a trusted proxy: see runtime/serve.py TrustedProxies) makes
    # the session cookie Secure and adds Strict-Transport-Security.
    app.session_interface = _SessionInterface()
    if rt.settings.hsts_max_age > 0:
        app.after_request(_strict_transport_security(rt.settings.hsts_max_age))
    if isinstance(app.json, DefaultJSONProvider):
        app.json.ensure_ascii = False  # Chinese stays readable in every JSON answer
    app.extensions["kam_runtime"] = rt
    db.init_app(app, rt.db)
    errors_http.init_app(app)
    routing.init_app(app)  # bounded ids and storable text in URLs: before any route is added
    from . import api

    api.init_app(app)
    from . import pages  # pages: sign-in and the analyst dashboard

    pages.init_app(app)

    @app.get("/healthz")
    def healthz() -> Any:
        """Ready when the database answers."""
        with rt.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return jsonify(status="ok", database=rt.db.engine.dialect.name)

    logging.getLogger("exchange_server").setLevel(logging.INFO)
    return app


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, whose cookie is ``Secure`` on every HTTPS request."""

    def get_cookie_secure(self, app: Flask) -> bool:
        """``session_cookie_secure``, or whether this request came over HTTPS (directly or via a trusted proxy)."""
        return bool(super().get_cookie_secure(app)) or request.is_secure


def _strict_transport_security(max_age: int) -> Any:
    def add_header(response: Response) -> Response:
        """Over HTTPS, tell browsers to come back over HTTPS only."""
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", f"max-age={max_age}")
        return response

    return add_header

