"""Write spec-conformant deliveries: data files in either format plus the check file.

Used by the province agent (building deliveries from exports), the sample-data generator
and the tests. Rows are streamed to disk; memory does not grow with the number of rows.
Every file is written under a temporary ``.part`` name and renamed when complete, so a
reader never sees half a file (CONVENTIONS.md §7).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Mapping, Sequence
from xml.sax.saxutils import escape

from .conventions import DELIMITERS, TEMP_SUFFIX, CheckEntry, CheckFile, CheckFileName, now_stamp
from .spec.model import Field, Spec, Unit


def format_value(field: Field, value: Any) -> str:
    """The lexical form of a typed value (None and '' are empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if field.type == "decimal":
        q = Decimal(1).scaleb(-(field.scale or 0))
        return str(Decimal(value).quantize(q))
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value)


class _HashingFile:
    """A binary file that counts and hashes what is written to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.part = path.with_name(path.name + TEMP_SUFFIX)
        self.fh: IO[bytes] = self.part.open("wb")
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.sha.update(data)
        self.size += len(data)

    def finish(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.part, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.part.unlink(missing_ok=True)


class UnitWriter:
    """Writes the rows of one unit to one data file; use as a context manager."""

    def __init__(self, delivery: "DeliveryWriter", unit: Unit, seq: int, fmt: str) -> None:
        self.delivery = delivery
        self.unit = unit
        self.fmt = fmt
        self.name = str(delivery.name.data_name(unit.code, seq, fmt))
        self.out = _HashingFile(delivery.out_dir / self.name)
        self.rows = 0
        self.encoding = delivery.encoding
        if fmt == "xml":
            ns = delivery.spec.namespace
            head = (f'<?xml version="1.0" encoding="{self.encoding}"?>\n'
                    f'<{unit.name} xmlns="{ns}" unit="{unit.code}" party="{delivery.name.party}" '
                    f'period="{delivery.name.period}" specVersion="{delivery.spec.version}">\n')
            self.out.write(head.encode(self.encoding))

    def write(self, row: Mapping[str, Any] | Sequence[Any]) -> None:
        """Write one record: a mapping of field id to value, or values in column order."""
        fields = self.unit.fields
        if isinstance(row, Mapping):
            values = [format_value(f, row.get(f.id)) for f in fields]
        else:
            values = [format_value(f, v) for f, v in zip(fields, row)]
        if self.fmt == "xml":
            parts = ["  <ROW>"]
            for f, v in zip(fields, values):
                if v == "" and not f.required:
                    continue
                parts.append(f"<{f.id}>{escape(v)}</{f.id}>")
            parts.append("</ROW>\n")
            self.out.write("".join(parts).encode(self.encoding))
        else:
            line = self.delivery.delimiter.join(values) + self.delivery.newline
            self.out.write(line.encode(self.encoding))
        self.rows += 1

    def close(self) -> CheckEntry:
        """Finish the file and return its check-file line."""
        if self.fmt == "xml":
            self.out.write(f"</{self.unit.name}>\n".encode(self.encoding))
        self.out.finish()
        entry = CheckEntry(self.name, self.out.size, self.rows, self.delivery.name.period, now_stamp(),
                           self.out.sha.hexdigest())
        self.delivery.entries.append(entry)
        return entry

    def __enter__(self) -> "UnitWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.out.abort()


class DeliveryWriter:
    """Builds one delivery in a directory: data files, then the check file last."""

    def __init__(self, spec: Spec, out_dir: Path, mode: str, party: str, period: str, resend: int = 0,
                 encoding: str = "UTF-8", delimiter: str = "PIPE", newline: str = "\n") -> None:
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = CheckFileName(mode, party, period, resend)
        self.encoding = encoding
        self.delimiter_name = delimiter
        self.delimiter = DELIMITERS[delimiter]
        self.newline = newline
        self.entries: list[CheckEntry] = []

    def unit(self, unit: str, fmt: str = "txt", seq: int = 1) -> UnitWriter:
        """A writer for one data file of ``unit`` (code or name)."""
        return UnitWriter(self, self.spec.unit(unit), seq, fmt)

    def close(self) -> Path:
        """Write the check file (last, as the conventions require) and return its path."""
        check = CheckFile(self.spec.version, self.name.mode, self.name.party, self.name.period, self.name.resend,
                          now_stamp(), self.encoding, self.delimiter_name, tuple(self.entries))
        out = _HashingFile(self.out_dir / str(self.name))
        out.write(check.render(self.newline))
        out.finish()
        return out.path
