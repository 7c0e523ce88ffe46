"""Time in the server: stored in UTC, shown to provinces in Beijing time as the standard does."""
from __future__ import annotations

import datetime as dt

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A datetime read back from the database (naive on SQLite) as aware UTC."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def beijing_stamp(moment: dt.datetime) -> str:
    """``YYYYMMDDHHMMSS`` in Beijing time, the standard's stamp format."""
    return as_utc(moment).astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def parse_beijing_stamp(stamp: str) -> dt.datetime:
    """A ``YYYYMMDDHHMMSS`` Beijing stamp (or ``YYYYMMDD``, meaning 23:59:59) as aware UTC."""
    if len(stamp) == 8:
        stamp += "235959"
    local = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    return local.astimezone(dt.timezone.utc)


def parse_iso(text: object) -> dt.datetime | None:
    """An ISO 8601 time written by another party (a hub's approval manifest) in UTC; None when absent or unreadable."""
    try:
        return as_utc(dt.datetime.fromisoformat(str(text))) if text else None
    except ValueError:
        return None


def iso(moment: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, for JSON."""
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")
