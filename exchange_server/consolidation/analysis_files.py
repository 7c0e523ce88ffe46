"""The comparison and pivot downloads: CSV (UTF-8 with BOM, codes quoted) and formatted XLSX.

Both take flat columns with a kind each — ``text`` (codes and names: kept as text, so 01
stays 01), ``money`` (exact yuan), ``count``, ``pct``, ``bool`` — and rows of values. The XLSX
cells reuse the roll-up workbook's writing (``exports._put``: a Decimal reaches the file as
its own digits) and look (bilingual two-row header, frozen, filtered, fitted widths).
"""
from __future__ import annotations

import io
from decimal import Decimal
from typing import Any, Literal, Sequence

from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from .exports import (
    COUNT_FORMAT,
    MONEY_FORMAT,
    PCT_FORMAT,
    _fit,
    _header,
    _put,
    _text,
    _width,
)

Kind = Literal["text", "money", "count", "pct", "bool"]
_FORMATS: dict[str, str] = {"money": MONEY_FORMAT, "count": COUNT_FORMAT, "pct": PCT_FORMAT}


def _csv_field(value: Any, kind: Kind) -> str:
    """One CSV field: text fields always quoted (LibreOffice can then keep them as text), others when needed."""
    if kind == "bool":
        text = "" if value is None else ("true" if value else "false")
    else:
        text = _text(value)
    if kind == "text" or any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_bytes(titles: Sequence[str], kinds: Sequence[Kind], rows: Sequence[Sequence[Any]]) -> bytes:
    """A CSV file: UTF-8 with a BOM (Excel then reads the Chinese right), CRLF, one header row."""
    lines = [",".join(_csv_field(t, "text") for t in titles)]
    lines += [",".join(_csv_field(v, k) for v, k in zip(row, kinds)) for row in rows]
    return b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode("utf-8")


def xlsx_bytes(sheet: str, titles: Sequence[tuple[str, str]], kinds: Sequence[Kind],
               rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()) -> bytes:
    """A one-sheet workbook: two header rows (Chinese, English), the rows, then notes (partial periods...)."""
    wb = Workbook()
    ws = wb.active
    ws.title = sheet[:31]
    _header(ws, [str(i) for i in range(len(titles))], list(titles))
    widths = {i: max(_width(zh), min(_width(en), 24)) for i, (zh, en) in enumerate(titles, start=1)}
    r = 2
    for r, row in enumerate(rows, start=3):
        for i, (value, kind) in enumerate(zip(row, kinds), start=1):
            if kind == "text":
                ws.cell(row=r, column=i, value=None if value is None else str(value))  # a code stays text
            elif kind == "bool":
                cell = ws.cell(row=r, column=i, value=None if value is None else ("是 yes" if value else "否 no"))
            else:
                cell = _put(ws, r, i, Decimal(value) if isinstance(value, int) and kind == "money" else value)
                if value is not None:
                    cell.number_format = _FORMATS[kind]
            widths[i] = max(widths[i], _width(value) + (4 if kind == "money" else 0))
    if titles and r >= 3:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(titles))}{r}"
    for offset, note in enumerate(notes, start=2):
        ws.cell(row=r + offset, column=1, value=note)
    _fit(ws, widths)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
