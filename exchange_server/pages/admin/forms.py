"""Reading the admin forms: Beijing date-times, dates, integers and code-list change lines.

Every parser raises :class:`~exchange_server.errors.BadRequest` naming the field in English
(``message``) and in Chinese (``message_zh``), so a page can show what to fix, in the reader's
language, next to the form it came from. ``field`` is the form field's name, optionally followed by
its Chinese name: ``"deadline 截止时间"``.
"""
from __future__ import annotations

import datetime as dt
import re

from ...code_lists.services import CodeChange
from ...clock import BEIJING
from ...errors import BadRequest


def _names(field: str) -> tuple[str, str]:
    """``"deadline 截止时间"`` -> ("deadline", "截止时间"): the field as English and Chinese messages name it."""
    en, _, zh = field.strip().partition(" ")
    return en, zh.strip() or en


def beijing_datetime(text: str, field: str) -> dt.datetime:
    """``YYYY-MM-DDTHH:MM`` (a datetime-local input) or ``YYYY-MM-DD HH:MM[:SS]``, Beijing time, as aware UTC."""
    value = text.strip().replace("T", " ")
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=BEIJING).astimezone(dt.timezone.utc)
        except ValueError:
            continue
    en, zh = _names(field)
    raise BadRequest(f"{en}: {text!r} is not a date and time (YYYY-MM-DD HH:MM, Beijing time)",
                     f"{zh}：{text!r} 不是日期时间（YYYY-MM-DD HH:MM，北京时间）", code="bad_datetime",
                     errors={"field": field, "value": text})


def date(text: str, field: str) -> dt.date:
    """``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        en, zh = _names(field)
        raise BadRequest(f"{en}: {text!r} is not a date (YYYY-MM-DD)", f"{zh}：{text!r} 不是日期（YYYY-MM-DD）",
                         code="bad_date", errors={"field": field, "value": text}) from None


def integer(text: str, field: str, low: int, high: int) -> int:
    """A whole number between ``low`` and ``high``."""
    try:
        value = int(text.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        en, zh = _names(field)
        raise BadRequest(f"{en} must be a whole number from {low} to {high}", f"{zh} 须为 {low} 至 {high} 的整数",
                         code="bad_number", errors={"field": field, "value": text})
    return value


def beijing_local(moment: dt.datetime | None) -> str:
    """An aware datetime as a datetime-local input value in Beijing time."""
    return moment.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M") if moment else ""


def code_changes(text: str, field: str) -> list[CodeChange]:
    """Lines ``code | 中文名 | English name [| parent | level]``; blank lines and ``#`` comments are skipped."""
    out: list[CodeChange] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) > 5 or not parts[0] or not re.fullmatch(r"[0-9A-Za-z_.-]{1,20}", parts[0]):
            en, zh = _names(field)
            raise BadRequest(f"{en}, line {n}: write code | Chinese name | English name [| parent | level]",
                             f"{zh} 第 {n} 行：格式应为 代码 | 中文名 | 英文名 [| 上级 | 层级]", code="bad_code_line",
                             errors={"field": field, "line": n, "value": raw})
        parts += [""] * (5 - len(parts))
        out.append(CodeChange(*parts))
    return out


def code_list(text: str) -> list[str]:
    """Codes separated by commas, spaces or new lines."""
    return [c for c in re.split(r"[\s,，]+", text) if c]
