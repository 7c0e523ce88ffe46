"""The pages' language: Chinese (zh-CN, the default) or English, chosen by the reader.

Templates write every text once per language, ``{{ t("审核队列", "Review queue") }}``, and the
reader's choice picks one. The choice is a long-lived cookie set by ``/lang/<code>`` (a link
in every page's header), so it holds before sign-in and across sessions. Chinese is the
default whatever the browser asks for: the readers are HQ and province staff, and an
English browser should not silently change what a colleague sees on a shared screen.
"""
from __future__ import annotations

from typing import Literal

from flask import g, make_response, request
from werkzeug.wrappers import Response

from .blueprints import page_blueprint

Language = Literal["zh", "en"]
LANGUAGES: dict[str, str] = {"zh": "zh-CN", "en": "en"}  # our code -> the HTML lang attribute
DEFAULT: Language = "zh"
COOKIE = "kam_lang"
COOKIE_DAYS = 365

bp = page_blueprint("i18n", __name__)


def current_language() -> Language:
    """The language of this request's page: the reader's cookie, else Chinese."""
    if "page_language" not in g:
        chosen = request.cookies.get(COOKIE, DEFAULT)
        g.page_language = chosen if chosen in LANGUAGES else DEFAULT
    language: Language = g.page_language
    return language


def html_lang() -> str:
    """The ``<html lang>`` value for this request's page."""
    return LANGUAGES[current_language()]


def t(zh: str, en: str) -> str:
    """The text of this request's language, given the Chinese and the English."""
    return en if current_language() == "en" else zh


def pick(pair: tuple[str, str] | list[str]) -> str:
    """One side of a (Chinese, English) pair, for the pairs views pass to templates."""
    return t(pair[0], pair[1])


@bp.get("/lang/<code>")
def choose(code: str) -> Response:
    """Remember the reader's language and go back to the page they were on."""
    from .auth import safe_next  # auth imports the blueprint helpers; late import avoids a cycle

    response = make_response("", 303)
    response.headers["Location"] = safe_next(request.args.get("next"))
    if code in LANGUAGES:
        response.set_cookie(COOKIE, code, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="Lax",
                            secure=request.is_secure)
    return response
