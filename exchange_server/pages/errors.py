"""Errors on the pages: a plain HTML page in the reader's language, never a stack trace (the API keeps its JSON).

Every error carries its message in English and Chinese; ``auth/error.html`` shows the one of the
page's language (:mod:`.i18n`) with the error's stable code.
"""
from __future__ import annotations

import logging

from flask import Blueprint, render_template
from werkzeug.exceptions import HTTPException

from ..errors import ExchangeError
from ..errors_http import HTTP_CODES

log = logging.getLogger(__name__)

# What a person should read for the statuses they can meet on a page: English, Chinese.
PAGE_MESSAGES: dict[int, tuple[str, str]] = {
    400: ("The request could not be understood.", "请求无法处理。"),
    401: ("Please sign in.", "请先登录。"),
    403: ("Your account may not open this page.", "您的账户无权访问此页面。"),
    404: ("There is no such page.", "页面不存在。"),
    405: ("That action is not possible here.", "此处不支持该操作。"),
    500: ("The server failed to handle the request; it has been logged.",
          "服务器处理请求失败，已记录日志。"),
}


def _page(status: int, message: str, message_zh: str, code: str) -> tuple[str, int]:
    # bare: the page does not look up the signed-in account, in case the database is what failed.
    return render_template("auth/error.html", status=status, message=message, message_zh=message_zh,
                           code=code, bare=status >= 500), status


def exchange_error_page(error: ExchangeError) -> tuple[str, int]:
    """A domain error as a page, with its own bilingual message."""
    if error.status >= 500:
        log.error("page error %s", error.code, exc_info=error)
        message, message_zh = PAGE_MESSAGES[500]
        return _page(500, message, message_zh, error.code)
    return _page(error.status, error.message, error.message_zh, error.code)


def http_error_page(error: HTTPException) -> tuple[str, int]:
    """A Werkzeug HTTP error (abort(404), 405, ...) as a page."""
    status = error.code or 500
    code, zh = HTTP_CODES.get(status, ("http_error", "请求错误"))
    message, message_zh = PAGE_MESSAGES.get(status, (error.name, zh))
    return _page(status, message, message_zh, code)


def unexpected_error_page(error: Exception) -> tuple[str, int]:
    """Anything unforeseen: logged with its trace server-side, a plain 500 page for the reader."""
    log.error("unhandled page error", exc_info=error)
    message, message_zh = PAGE_MESSAGES[500]
    return _page(500, message, message_zh, "internal_error")


def register(bp: Blueprint) -> None:
    """Render errors raised in ``bp``'s views as HTML (blueprint handlers win over the app's JSON ones)."""
    bp.register_error_handler(ExchangeError, exchange_error_page)
    bp.register_error_handler(HTTPException, http_error_page)
    bp.register_error_handler(Exception, unexpected_error_page)
