"""What a request may carry: ids and numbers the database can hold, text it can store.

    <id:delivery_id>     a row id, 1 … 2147483647 (``int`` means the same: every route's number is an id)
    ?page=, ?finding=    :func:`int_arg` for the pages, :data:`MAX_PAGE` for the API's paging schemas
    NUL anywhere         refused before any view runs (PostgreSQL text cannot hold it): path 404,
                         query 422, a page's form 400

The database drivers refuse numbers beyond their integer types (SQLite: 64 bits; PostgreSQL:
``int4`` for every ``Integer`` primary key) with an ``OverflowError`` or a ``DataError``, which
would be a 500. An id beyond :data:`MAX_ID` cannot exist, so its URL does not match any route:
404. A query argument out of range is an argument error: 422 ``invalid_arguments``. Both in the
documented shape (JSON for the API, the HTML error page for the pages).
"""
from __future__ import annotations

from typing import Any, Mapping, overload

from flask import Flask, request
from werkzeug.routing import IntegerConverter, Map

from .errors import BadRequest, NotFound, Unprocessable

#: The largest id any table holds: PostgreSQL's int4, the type of every Integer primary key.
MAX_ID = 2**31 - 1
#: The largest page number a listing takes (its offset then still fits every database's integers).
MAX_PAGE = MAX_ID


def up_to(n: int) -> str:
    """A regular expression for the decimal numbers 1 … ``n``, without leading zeros."""
    digits = str(n)
    k = len(digits)
    parts = [f"[1-9][0-9]{{0,{k - 2}}}"] if k > 1 else []  # the shorter numbers
    for i, d in enumerate(digits):  # k digits: n's first i digits, then a smaller one, then any
        low = 1 if i == 0 else 0
        if int(d) > low:
            parts.append(f"{digits[:i]}[{low}-{int(d) - 1}]" + (f"[0-9]{{{k - i - 1}}}" if i < k - 1 else ""))
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


class IdConverter(IntegerConverter):
    """A row id in a URL: 1 … :data:`MAX_ID`; anything else matches no route (404).

    The range is in the regular expression, not only in ``to_python``: Werkzeug's router
    falls through to the next rule (a blueprint's HTML 404 page) only when the pattern fails.
    """

    regex = up_to(MAX_ID)

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


@overload
def int_arg(args: Mapping[str, str], name: str, default: int, low: int = 1, high: int = MAX_ID) -> int: ...


@overload
def int_arg(args: Mapping[str, str], name: str, default: None = None, low: int = 1,
            high: int = MAX_ID) -> int | None: ...


def int_arg(args: Mapping[str, str], name: str, default: int | None = None, low: int = 1,
            high: int = MAX_ID) -> int | None:
    """A whole-number query argument, ``low`` … ``high``; ``default`` when absent or empty.

    Anything else (not a number, out of range) is refused: 422 ``invalid_arguments``.
    """
    text = str(args.get(name, "") or "").strip()
    if not text:
        return default
    if text.isascii() and text.isdigit() and len(text) <= len(str(high)) and low <= int(text) <= high:
        return int(text)
    raise Unprocessable(f"{name} must be a whole number from {low} to {high}, not {text[:40]!r}",
                        f"{name} 须为 {low} 至 {high} 的整数，收到 {text[:40]!r}", code="invalid_arguments",
                        errors={"query": {name: [f"a whole number from {low} to {high}"]}})


def _with_nul(fields: Any) -> dict[str, list[str]]:
    return {k.replace("\x00", "\\x00"): ["contains a NUL character"]
            for k in sorted({k for k, v in fields.items(multi=True) if "\x00" in k or "\x00" in v})}


def refuse_unstorable_text() -> None:
    """Refuse a NUL character in the path, the query or a form (it names nothing stored; PostgreSQL rejects it)."""
    if "\x00" in request.path:
        raise NotFound("there is no such resource", "资源不存在", code="not_found")
    bad = _with_nul(request.args)
    if bad:
        raise Unprocessable("query arguments cannot contain NUL characters", "查询参数不能包含NUL字符",
                            code="invalid_arguments", errors={"query": bad})
    # The pages' forms (small, parsed anyway); never a multipart body, which the upload route streams.
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        bad = _with_nul(request.form)
        if bad:
            raise BadRequest("form fields cannot contain NUL characters", "表单字段不能包含NUL字符",
                             code="bad_form", errors={"form": bad})


def init_app(app: Flask) -> None:
    """Register the converters (before any route is added) and the check of what a request carries."""
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["int"] = IdConverter  # every number in our URLs is an id
    app.before_request(refuse_unstorable_text)
