"""Where each line of a built delivery came from: the source map of a build.

``build_delivery`` records, for every data line it writes, the export file (relative to
``export_dir``), the sheet (XLSX), the row as the spreadsheet numbers it (an XLSX row is
its Excel row, title and header rows included; a CSV row is the physical line its record
starts on) and, per mapped field, the column header and its letter. A finding about line
27 of ``P_42_202610_31201_00_001.txt`` can then be told in the province's own terms:
``客户明细.xlsx 工作表 明细 第29行 本地网列 (B29)``.

The map is written beside the delivery directory, never inside it — the runner and the
transports send every file of the delivery directory — as the hidden file
``.<delivery_dir name>.sources.jsonl`` (:func:`sources_path`), which receivers and the
validator skip like every hidden file (CONVENTIONS.md §7). It is JSON Lines, written while the build streams: one line per
export read, one per data file, and one per *run* of consecutive data lines that come from
consecutive export rows, so a million-row export that is read straight through costs a
handful of lines and memory does not grow with the export's size.

Readers: :meth:`SourceMap.for_delivery` and :meth:`SourceMap.locate`;
:func:`enrich_finding` adds the export's location (and, for a code the list does not
know, the closest names the list has) to a finding of ``schemas.validation``.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping

from schemas.conventions import Cycle, DataFileName
from schemas.spec.model import Spec
from schemas.validation.report import Finding

SUFFIX = ".sources.jsonl"
FORMAT_VERSION = 1


def sources_path(delivery_dir: Path) -> Path:
    """Where the source map of the delivery built into ``delivery_dir`` is kept (a sibling, never sent)."""
    d = Path(delivery_dir)
    # why hidden: receivers and the validator skip hidden files (CONVENTIONS.md §7), so even a
    # `validate` of the spool's cycle folder, or a transport sweeping a folder, never takes it
    return d.parent / f".{d.name}{SUFFIX}"


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index (0 -> A, 26 -> AA)."""
    letters = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(65 + r) + letters
    return letters


@dataclass(frozen=True)
class SourceCell:
    """One place in a province's export: file, sheet, row and (when known) column and cell."""

    export: str
    sheet: str | None
    row: int
    column: str | None
    cell: str | None

    def describe_zh(self) -> str:
        """``客户明细.xlsx 工作表 明细 第5行 本地网列 (B5)``."""
        sheet = f" 工作表 {self.sheet}" if self.sheet else ""
        col = f" {self.column}列" if self.column else ""
        cell = f" ({self.cell})" if self.cell else ""
        return f"{self.export}{sheet} 第{self.row}行{col}{cell}"

    def describe_en(self) -> str:
        """``客户明细.xlsx sheet 明细 row 5, column 本地网 (B5)``."""
        sheet = f" sheet {self.sheet}" if self.sheet else ""
        col = f", column {self.column}" if self.column else ""
        cell = f" ({self.cell})" if self.cell else ""
        return f"{self.export}{sheet} row {self.row}{col}{cell}"

    def describe(self) -> str:
        """Both languages: ``<Chinese> / <English>``."""
        return f"{self.describe_zh()} / {self.describe_en()}"


@dataclass(frozen=True)
class _Export:
    export: str
    sheet: str | None
    columns: Mapping[str, tuple[str, str]]  # field id -> (header, column letter)


@dataclass
class _File:
    name: str
    format: str
    unit: str
    starts: list[int] = dataclasses.field(default_factory=list)  # first data row index of each run
    runs: list[tuple[int, int, int, int]] = dataclasses.field(default_factory=list)  # (first, count, export, row)


class SourceMap:
    """The source map of one built delivery: data file line -> export cell."""

    def __init__(self, exports: list[_Export], files: dict[str, _File]) -> None:
        self._exports = exports
        self._files = files

    @classmethod
    def for_delivery(cls, delivery_dir: Path) -> "SourceMap | None":
        """The map ``build_delivery`` saved for the delivery built into ``delivery_dir``; None if there is none."""
        path = sources_path(delivery_dir)
        try:
            fh = path.open("r", encoding="utf-8")
        except OSError:
            return None
        with fh:
            return cls.read(fh)

    @classmethod
    def read(cls, fh: IO[str]) -> "SourceMap | None":
        """Parse a map from its JSON Lines; None when it is not one this version reads."""
        exports: list[_Export] = []
        files: dict[str, _File] = {}
        try:
            for text in fh:
                rec = json.loads(text)
                kind = rec.get("t")
                if kind == "map" and rec.get("version") != FORMAT_VERSION:
                    return None
                if kind == "export":
                    exports.append(_Export(rec["export"], rec.get("sheet"),
                                           {k: (v[0], v[1]) for k, v in rec["columns"].items()}))
                elif kind == "file":
                    files[rec["name"]] = _File(rec["name"], rec["format"], rec["unit"])
                elif kind == "run":
                    f = files[rec["file"]]
                    f.starts.append(rec["line"])
                    f.runs.append((rec["line"], rec["count"], rec["export"], rec["row"]))
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        return cls(exports, files)

    def files(self) -> list[str]:
        """The data files the map knows."""
        return list(self._files)

    def locate(self, file: str, line: int, field: str | None = None) -> SourceCell | None:
        """Where line ``line`` of data file ``file`` (a name or path) came from; with ``field``, its cell.

        ``line`` is the file's line as the validator counts it (for XML the physical line of the
        ``<ROW>``; the declaration and the root element take lines 1 and 2). None when the line was not
        built from an export (a ``format = "spec"`` copy) or is not in the file.
        """
        f = self._files.get(Path(file).name)
        if f is None or line is None:
            return None
        index = line - 2 if f.format == "xml" else line
        at = bisect.bisect_right(f.starts, index) - 1
        if at < 0:
            return None
        first, count, export_id, row0 = f.runs[at]
        if index >= first + count:
            return None
        ex = self._exports[export_id]
        row = row0 + (index - first)
        column = cell = None
        if field is not None and field in ex.columns:
            column, letter = ex.columns[field]
            cell = f"{letter}{row}"
        return SourceCell(ex.export, ex.sheet, row, column, cell)


class SourceRecorder:
    """Writes a build's source map while the build streams (used by ``build_delivery``)."""

    def __init__(self, delivery_dir: Path, export_dir: Path) -> None:
        self.path = sources_path(delivery_dir)
        self.part = self.path.with_name(self.path.name + ".part")
        self.export_dir = Path(export_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.part.open("w", encoding="utf-8")
        self._exports = 0
        self._run: list[Any] | None = None  # [file, first, count, export, row]
        self._emit({"t": "map", "version": FORMAT_VERSION})

    def _emit(self, rec: Mapping[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    def relative(self, path: Path) -> str:
        """``path`` as the province knows it: relative to export_dir when it is under it."""
        try:
            return Path(path).resolve().relative_to(self.export_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def export(self, path: Path, sheet: str | None, columns: Mapping[str, tuple[str, int]]) -> int:
        """Register one export read (its mapped columns: field -> (header, 0-based index)); return its id."""
        self._emit({"t": "export", "export": self.relative(path), "sheet": sheet,
                    "columns": {k: [h, column_letter(i)] for k, (h, i) in columns.items()}})
        self._exports += 1
        return self._exports - 1

    def file(self, name: str, fmt: str, unit: str) -> None:
        """Register one data file of the delivery."""
        self._flush()
        self._emit({"t": "file", "name": name, "format": fmt, "unit": unit})

    def add(self, file: str, index: int, export_id: int, row: int) -> None:
        """Data row ``index`` (1-based) of ``file`` came from ``row`` of export ``export_id``."""
        r = self._run
        if r is not None and r[0] == file and r[3] == export_id and r[1] + r[2] == index and r[4] + r[2] == row:
            r[2] += 1
            return
        self._flush()
        self._run = [file, index, 1, export_id, row]

    def _flush(self) -> None:
        if self._run is not None:
            f, first, count, export_id, row = self._run
            self._emit({"t": "run", "file": f, "line": first, "count": count, "export": export_id, "row": row})
            self._run = None

    def close(self) -> Path:
        """Finish the map and put it in place."""
        self._flush()
        assert self._fh is not None
        self._fh.close()
        self._fh = None
        os.replace(self.part, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the map of a build that failed."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.part.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


# -- findings in the export's terms ----------------------------------------------------
def locate_finding(finding: Finding, sources: SourceMap | None) -> SourceCell | None:
    """The export cell a validation finding is about; None when it is not about a built line."""
    if sources is None or not finding.file or not finding.line:
        return None
    return sources.locate(finding.file, finding.line, finding.field)


def suggest(spec: Spec | None, file: str | None, field: str | None, value: str | None,
            tables: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """The codes the list suggests for ``value`` of ``field`` in data file ``file`` (``["027 武汉本地网"]``), or []."""
    if spec is None or not file or not field or not value:
        return []
    from .codes import suggestion_for

    try:
        name = DataFileName.parse(Path(file).name)
        unit = spec.unit(name.unit)
        fld = unit.field(field)
        day = Cycle.parse(name.period).begin
    except (ValueError, KeyError, AttributeError):
        return []
    return suggestion_for(spec, fld, value, day, tables)


def _suggestion(finding: Finding, spec: Spec | None, tables: Mapping[str, Mapping[str, str]] | None) -> list[str]:
    return suggest(spec, finding.file, finding.field, finding.value, tables)


def enrich_finding(finding: Finding, sources: SourceMap | None, spec: Spec | None = None,
                   tables: Mapping[str, Mapping[str, str]] | None = None) -> Finding:
    """``finding`` with the export's file, sheet, row, column and cell added to both messages.

    With ``spec``, a value the code list does not know (E307 and its kind) also gets the
    closest codes the list names: ``武汉市区`` -> ``是否应为 027 武汉本地网？ / did you mean 027 武汉本地网?``.
    ``tables`` are the province's ``[codes.<Domain>]`` tables (``AgentConfig.codes``). A finding
    not about a built line (cross-unit, check file) is returned unchanged, as is one already enriched.
    """
    cell = locate_finding(finding, sources)
    hints = _suggestion(finding, spec, tables) if finding.code == "E307" else []
    if cell is None and not hints:
        return finding
    zh, en = finding.message_zh, finding.message_en
    if cell is not None and cell.describe_en() not in en:
        zh += f"（来源：{cell.describe_zh()}）"
        en += f" (from {cell.describe_en()})"
    if hints and "did you mean" not in en:
        zh += f"；是否应为 {' 或 '.join(hints)}？"
        en += f"; did you mean {' or '.join(hints)}?"
    return dataclasses.replace(finding, message_zh=zh, message_en=en)


def enrich_findings(findings: list[Finding], delivery_dir: Path, spec: Spec | None = None,
                    tables: Mapping[str, Mapping[str, str]] | None = None) -> list[Finding]:
    """Every finding of a delivery enriched through the map saved beside ``delivery_dir`` (loaded once)."""
    sources = SourceMap.for_delivery(delivery_dir)
    return [enrich_finding(f, sources, spec, tables) for f in findings]

