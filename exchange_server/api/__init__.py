"""The agent API (``/api/v1``): flask-smorest blueprints, the OpenAPI document, one error shape."""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api

from .schemas import ErrorSchema


class ExchangeApi(Api):
    """flask-smorest's Api with our error shape for HTTP errors it raises (e.g. 422 on bad args)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: Any) -> Any:
        """Render a Werkzeug HTTP error (raised by flask-smorest or Flask) in our JSON shape."""
        from ..errors_http import http_error_response

        return http_error_response(error)


def init_app(app: Flask) -> ExchangeApi:
    """Register the API blueprints and serve the OpenAPI document at /api/v1/openapi.json."""
    app.config.setdefault("API_TITLE", "Key-account exchange API / 大客户数据交换接口")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = ExchangeApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "A province's API token"}}}})
    from . import code_lists, cycles, deliveries, lists, monitor, reports

    for module in (deliveries, cycles, lists, code_lists, reports, monitor):
        api.register_blueprint(module.blp)
    return api
