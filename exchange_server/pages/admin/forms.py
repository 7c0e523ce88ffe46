"""Reading the admin forms: Beijing date-times, dates, integers and code-list change lines.

Every parser raises :class:`~exchange_server.errors.BadRequest` with a bilingual message
naming the field, so a page can show what to fix next to the form it came from.
"""
from __future__ import annotations

import datetime as dt
import re

from ...code_lists.services import CodeChange
from ...clock import BEIJING
from ...errors import BadRequest


def beijing_datetime(text: str, field: str) -> dt.datetime:
    """``YYYY-MM-DDTHH:MM`` (a datetime-local input) or ``YYYY-MM-DD HH:MM[:SS]``, Beijing time, as aware UTC."""
    value = text.strip().replace("T", " ")
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=BEIJING).astimezone(dt.timezone.utc)
        except ValueError:
            continue
    raise BadRequest(f"{field}: {text!r} is not a date and time (YYYY-MM-DD HH:MM, Beijing time)",
                     f"{field}：{text!r} 不是日期时间（YYYY-MM-DD HH:MM，北京时间）", code="bad_datetime",
                     errors={"field": field, "value": text})


def date(text: str, field: str) -> dt.date:
    """``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{field}: {text!r} is not a date (YYYY-MM-DD)", f"{field}：{text!r} 不是日期（YYYY-MM-DD）",
                         code="bad_date", errors={"field": field, "value": text}) from None


def integer(text: str, field: str, low: int, high: int) -> int:
    """A whole number between ``low`` and ``high``."""
    try:
        value = int(text.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"{field} must be a whole number from {low} to {high}", f"{field} 须为 {low} 至 {high} 的整数",
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
            raise BadRequest(f"{field}, line {n}: write code | 中文名 | English name [| parent | level]",
                             f"{field} 第 {n} 行：格式应为 代码 | 中文名 | 英文名 [| 上级 | 层级]", code="bad_code_line",
                             errors={"field": field, "line": n, "value": raw})
        parts += [""] * (5 - len(parts))
        out.append(CodeChange(*parts))
    return out


def code_list(text: str) -> list[str]:
    """Codes separated by commas, spaces or new lines."""
    return [c for c in re.split(r"[\s,，]+", text) if c]
