"""A list version as files to download: the standard's own files (zipped), CSV and XLSX.

The standard's files are the national list delivery ``D_00_<version>_00.chk`` with its
31101 data file, written from the stored entries exactly as a province's slice is cut
(``ListService._cut``: rank order, every entry with its change type, removals included), so
the loader (``ListService.load``, ``exchange-server list load``) reads them back as the same
customers. The time stamps are the version's publication (or load) time, so the same
version always downloads as the same bytes.

CSV and XLSX carry the same fields but the version (it is in the file name), headed by the
fields' names in the reader's language — names the upload form accepts, so a downloaded
sheet can be edited and loaded as the next version. Every value is text: customer ids,
codes and dates keep their leading zeros (CSV is UTF-8 with a BOM, for Excel).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from schemas.conventions import CheckFile, now_stamp
from schemas.writer import DeliveryWriter

from ..media_types import CSV_TYPE, XLSX_TYPE
from .importers import NATIONAL, UNIT
from .models import ListVersion
from .services import ListService, entry_row

ZIP_TYPE = "application/zip"
FORMATS = ("spec", "csv", "xlsx")
# Columns of the CSV and XLSX: the unit's fields but the version, which names the file.
OMITTED = ("LIST_VERSION",)


@dataclass(frozen=True)
class ListFile:
    """One download: its bytes, media type and file name."""

    data: bytes
    mimetype: str
    filename: str


def _stamp(version: ListVersion) -> str:
    """The version's own time (published, else loaded) as the standard's YYYYMMDDHHMMSS, Beijing time."""
    return now_stamp(version.published_at or version.loaded_at)


def spec_files(svc: ListService, version: ListVersion, out_dir: Path, party: str = NATIONAL) -> list[Path]:
    """Write the version as the standard's list delivery in ``out_dir``: [check file, data file].

    ``party``: HQ's national list (``00``); a province hub's versions are its province's slice.
    """
    writer = DeliveryWriter(svc.spec, out_dir, "D", party, version.version)
    with writer.unit(UNIT) as out:
        for e in svc.iter_entries(version):
            out.write(entry_row(e, version.version))
        data_path = out_dir / out.name
    check_path = writer.close()
    # The writer stamps "now"; the version's own time makes the bytes the same on every download.
    stamp = _stamp(version)
    check = CheckFile.parse(check_path.read_bytes())
    check = dataclasses.replace(check, generated_at=stamp).with_entries(
        dataclasses.replace(entry, generated_at=stamp) for entry in check.entries)
    check_path.write_bytes(check.render())
    return [check_path, data_path]


def spec_zip(svc: ListService, version: ListVersion, party: str = NATIONAL) -> ListFile:
    """The standard's files of the version in one zip (``D_00_<version>_00.zip``)."""
    stamp = _stamp(version)
    when = tuple(int(x) for x in (stamp[:4], stamp[4:6], stamp[6:8], stamp[8:10], stamp[10:12], stamp[12:14]))
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="list-download-") as tmp:
        paths = spec_files(svc, version, Path(tmp), party)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in paths:
                info = zipfile.ZipInfo(path.name, date_time=when)  # type: ignore[arg-type]
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with path.open("rb") as src, zf.open(info, "w") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
    return ListFile(buf.getvalue(), ZIP_TYPE, f"{paths[0].stem}.zip")


def _columns(svc: ListService, english: bool) -> tuple[list[str], list[str]]:
    """(field ids, header names in the reader's language) of the CSV and XLSX columns."""
    unit = svc.spec.unit(UNIT)
    fields = [f for f in unit.fields if f.id not in OMITTED]
    return [f.id for f in fields], [f.name_en if english else f.name_zh for f in fields]


def _records(svc: ListService, version: ListVersion, ids: list[str]) -> Iterator[list[str]]:
    """Each entry's values as the standard writes them, in column order."""
    for e in svc.iter_entries(version):
        row = entry_row(e, version.version)
        yield [row[f] for f in ids]


def list_csv(svc: ListService, version: ListVersion, english: bool = False) -> ListFile:
    """The version as CSV: UTF-8 with a BOM, CRLF, a header of field names, every value as text."""
    ids, header = _columns(svc, english)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(_records(svc, version, ids))
    return ListFile(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"), CSV_TYPE, f"list-{version.version}.csv")


def list_xlsx(svc: ListService, version: ListVersion, english: bool = False) -> ListFile:
    """The version as an XLSX workbook: one sheet, a bold frozen header, every value a text cell in a text column."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ids, header = _columns(svc, english)
    # Write-only: rows go straight to the file, so a large list does not build a workbook in memory.
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(version.version)
    for i, (fid, name) in enumerate(zip(ids, header), start=1):
        column = ws.column_dimensions[get_column_letter(i)]
        wide = fid in ("CUST_NAME", "GROUP_PARENT_NAME")
        column.width = 36 if wide else max(len(name.encode("gbk", "replace")) + 2, 12)  # CJK: two columns each
        # Text columns: what is typed in later stays text too (0751 stays 0751, 20260101 is no number).
        column.number_format = "@"
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    head = []
    for name in header:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = bold
        head.append(cell)
    ws.append(head)
    # Every value is a str, so a text cell: ids and codes keep their leading zeros. (Plain values, not
    # a styled cell each: three times quicker, and the column's text format covers editing.)
    for values in _records(svc, version, ids):
        ws.append(values)
    buf = io.BytesIO()
    wb.save(buf)
    return ListFile(buf.getvalue(), XLSX_TYPE, f"list-{version.version}.xlsx")


def list_file(svc: ListService, version: ListVersion, fmt: str, english: bool = False,
              party: str = NATIONAL) -> ListFile:
    """The version in one of FORMATS (``spec``: the standard's files of ``party``'s list, zipped)."""
    if fmt == "spec":
        return spec_zip(svc, version, party)
    if fmt == "csv":
        return list_csv(svc, version, english)
    if fmt == "xlsx":
        return list_xlsx(svc, version, english)
    raise ValueError(f"unknown list download format {fmt!r}")
