"""Errors to HTTP responses, in one place: always the JSON error shape, never a stack trace."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
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


def http_error_response(error: HTTPException) -> Response:
    """A Werkzeug HTTP error as JSON (flask-smorest puts argument errors in ``data``)."""
    status = error.code or 500
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
