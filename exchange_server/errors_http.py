"""Errors to HTTP responses, in one place: the JSON error shape (HTML pages for browsers), never a stack trace.

The API (``/api/...``) and every client that does not prefer HTML get JSON. A browser asking for
a page that exists nowhere (an unknown URL outside the API) gets the pages' HTML error page in
its reader's language, not raw JSON: it prefers ``text/html`` to ``application/json``.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, has_request_context, jsonify, make_response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .errors import ExchangeError

log = logging.getLogger(__name__)

# Werkzeug's errors by status, named and translated (the ones a client can meet).
HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求格式错误"), 401: ("unauthorized", "未认证"), 403: ("forbidden", "无权访问"),
    404: ("not_found", "资源不存在"), 405: ("method_not_allowed", "不支持该请求方法"),
    409: ("conflict", "状态冲突"), 413: ("payload_too_large", "请求过大"),
    415: ("unsupported_media_type", "不支持的内容类型"), 422: ("invalid_arguments", "参数无效"),
    429: ("too_many_requests", "请求过多"), 500: ("internal_error", "服务器内部错误"),
}

#: What a sender is told of a delivery the server could not validate (status ``failed``): a stable code,
#: English, Chinese. Never the recorded cause, which may be an internal error's text (HQ's accounts see that).
DELIVERY_FAILED: tuple[str, str, str] = (
    "validation_failed",
    "The server could not finish validating this delivery; HQ's administrators will look at it.",
    "服务器未能完成对该报送的校验，总部管理员会处理。",
)


def _response(body: dict[str, Any], status: int) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp


def exchange_error_response(error: ExchangeError) -> Response:
    """A domain error as JSON."""
    return _response(error.as_dict(), error.status)


def wants_page() -> bool:
    """Whether this request is a browser's for a page: outside ``/api/`` and preferring HTML to JSON."""
    if not has_request_context():
        return False
    path = request.path
    if path == "/api" or path.startswith("/api/") or path == "/healthz":
        return False
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


def _page_response(error: HTTPException) -> Response:
    """The pages' HTML error page for ``error``, with the pages' security headers (and Allow on a 405)."""
    # The pages import this module: import them late.
    from .pages.blueprints import security_headers
    from .pages.errors import http_error_page

    html, status = http_error_page(error)
    resp = make_response(html, status)
    if status == 405 and error.get_response().headers.get("Allow"):
        resp.headers["Allow"] = error.get_response().headers["Allow"]
    security_headers(resp)
    return resp


def http_error_response(error: HTTPException) -> Response:
    """A Werkzeug HTTP error as JSON (flask-smorest puts argument errors in ``data``); a page for a browser."""
    status = error.code or 500
    if status < 500 and wants_page():
        return _page_response(error)
    code, zh = HTTP_CODES.get(status, ("http_error", "请求错误"))
    body: dict[str, Any] = {"code": code, "status": status, "message": error.description or error.name,
                            "message_zh": zh}
    data = getattr(error, "data", None) or {}
    if isinstance(data, dict) and data.get("messages"):
        body["errors"] = data["messages"]
    if isinstance(error, RequestEntityTooLarge):
        body["code"] = "payload_too_large"
    resp = _response(body, status)
    if status == 405 and error.get_response().headers.get("Allow"):
        resp.headers["Allow"] = error.get_response().headers["Allow"]
    return resp


def unexpected_error_response(error: Exception) -> Response:
    """Anything unforeseen: logged with its trace, answered with a plain 500 in our shape."""
    log.error("unhandled error", exc_info=error)
    return _response({"code": "internal_error", "status": 500,
                      "message": "the server failed to handle the request; it has been logged",
                      "message_zh": "服务器处理请求失败，已记录日志"}, 500)


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(ExchangeError, exchange_error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)
