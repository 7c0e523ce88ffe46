"""Reading a national top-500 list (unit 31101) from the spec's files, CSV or XLSX.

Every format ends in the same place: a spec-format delivery checked by ``validate_delivery``.
CSV and XLSX are first converted to such a delivery in a temporary directory, so a list
typed in a spreadsheet gets exactly the checks and error codes of one sent as the spec's
files; the findings are then pointed back at the spreadsheet's own file, line and column.

Records come back as tuples of text in the unit's field order, in the files' lexical forms
(dates ``YYYYMMDD``); ``ImportedList.rows`` gives them as dicts. A real list is about 500
rows, but files of a million must not fall over: records are kept in memory as plain
tuples, values many customers share (codes, dates, managers) once, where they come from as
one integer each; nothing larger (no whole-workbook DOM: XLSX is read with
``read_only=True``) is.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tempfile
import zipfile
from array import array
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Iterator

from schemas import CheckFileError, FileNameError, Spec, Unit
from schemas.conventions import CheckFile, CheckFileName, is_ignored
from schemas.validation import Finding, Report, ValidationOptions, group_deliveries, validate_delivery
from schemas.validation.readers import XmlProblem, text_lines, xml_rows
from schemas.writer import DeliveryWriter

from ..errors import BadRequest, Unprocessable

UNIT = "TOP500_LIST"
UNIT_CODE = "31101"
NATIONAL = "00"
VERSION_RE = re.compile(r"^[0-9]{4}V[0-9]{2}$")
SPEC, CSV, XLSX = "spec", "csv", "xlsx"
CSV_SUFFIXES = (".csv",)
XLSX_SUFFIXES = (".xlsx", ".xlsm")
# Columns a spreadsheet may leave out: the importer knows the version and recomputes changes.
OPTIONAL_COLUMNS = ("LIST_VERSION", "CHANGE_TYPE")
# The temporary delivery uses the US separator so that a "|" typed in a cell reaches the
# validator intact and is reported once, by us, instead of as a wrong column count.
TEMP_DELIMITER = "US"
UNWRITABLE = ("|", "\r", "\n", "\x1f")
# Fields whose values repeat across customers: each distinct value is kept once, which
# roughly halves the memory a big list takes. The ids, ranks, names and phones are unique.
SHARED = ("LIST_VERSION", "GROUP_PARENT_NAME", "C_TYPE_ID", "LEVEL_ID", "LEAD_PROV_ID", "LEAD_LATN_ID",
          "HQ_MANAGER_NAME", "EFF_DATE", "EXP_DATE", "CHANGE_TYPE")


@dataclass
class ImportedList:
    """A national list read and validated: its version and records (text in ``fields`` order)."""

    version: str
    fields: tuple[str, ...]
    records: list[tuple[str, ...]]
    format: str
    source_name: str
    # Where each record came from, for messages raised after import: the files in record
    # order with how many records each gave, and each record's line.
    files: list[tuple[str, int]] = dc_field(default_factory=list)
    lines: array[int] = dc_field(default_factory=lambda: array("l"))
    warnings: list[dict[str, Any]] = dc_field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, str]]:
        """The records as dicts of field id to text."""
        return [dict(zip(self.fields, r)) for r in self.records]

    @property
    def origins(self) -> list[tuple[str, int]]:
        """(file, line) of each record."""
        names = [name for name, count in self.files for _ in range(count)]
        return list(zip(names, self.lines))


class _Sharer:
    """Replaces the values of the SHARED fields of a record by one copy per distinct value."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.at = [i for i, f in enumerate(fields) if f in SHARED]
        self.seen: dict[str, str] = {}

    def __call__(self, values: list[str]) -> tuple[str, ...]:
        seen = self.seen
        for i in self.at:
            v = values[i]
            values[i] = seen.setdefault(v, v)
        return tuple(values)


def detect_format(path: Path, name: str | None = None) -> str:
    """spec (a directory or a check file), csv or xlsx, from the path (or the name it was sent under)."""
    if path.is_dir() or path.name.endswith(".chk"):
        return SPEC
    suffix = Path(name or path.name).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return CSV
    if suffix in XLSX_SUFFIXES:
        return XLSX
    shown = name or path.name
    raise BadRequest(f"{shown}: a list must be the spec's check file (.chk) with its data files, a .csv or a "
                     f".xlsx file", f"{shown}：名单应为规范格式（校验文件 .chk 及其数据文件）、.csv 或 .xlsx 文件",
                     code="list_format_unknown", errors={"file": shown})


def check_version(version: str) -> str:
    """The version if it looks like ``2026V02``; BadRequest otherwise."""
    if not VERSION_RE.match(version):
        raise BadRequest(f"list version {version!r} is not of the form 2026V02",
                         f"名单版本 {version!r} 格式不符，应形如 2026V02", code="list_version_invalid",
                         errors={"field": "LIST_VERSION", "value": version, "expected": "YYYYVnn"})
    return version


def find_check_file(path: Path, version: str | None = None) -> Path:
    """The check file of the national list delivery at ``path`` (a directory or the check file itself)."""
    if not path.is_dir():
        if not path.is_file():
            raise BadRequest(f"{path.name} does not exist", f"{path.name} 不存在", code="list_source_missing",
                             errors={"file": path.name})
        return path
    found = []
    for p in sorted(path.iterdir()):
        if is_ignored(p.name) or not p.name.endswith(".chk") or not p.is_file():
            continue
        try:
            name = CheckFileName.parse(p.name)
        except FileNameError:
            continue
        if name.mode == "D" and name.party == NATIONAL and VERSION_RE.match(name.period) \
                and (version is None or name.period == version):
            found.append(p)
    if not found:
        want = f"D_00_{version or '<version>'}_nn.chk"
        raise BadRequest(f"no national list check file ({want}) in {path.name}",
                         f"目录 {path.name} 中没有全国名单校验文件（{want}）", code="list_source_missing",
                         errors={"file": path.name, "expected": want})
    if len(found) > 1:
        names = [p.name for p in found]
        raise BadRequest(f"several list deliveries in {path.name}: {', '.join(names)}; name one check file",
                         f"目录 {path.name} 中有多个名单报送：{'、'.join(names)}；请指定一个校验文件",
                         code="list_source_ambiguous", errors={"files": names})
    return found[0]


def source_files(path: Path, version: str | None = None, name: str | None = None) -> list[Path]:
    """Every file that makes up the list at ``path``: the check file and its data files, or the one sheet."""
    path = Path(path)
    if detect_format(path, name) != SPEC:
        if not path.is_file():
            raise BadRequest(f"{path.name} does not exist", f"{path.name} 不存在", code="list_source_missing",
                             errors={"file": path.name})
        return [path]
    check = find_check_file(path, version)
    for group in group_deliveries([check.parent]):
        if check in group:
            # The check file first: it names the delivery and its digest identifies the source.
            return [check] + [p for p in group if p != check]
    return [check]


def import_list(path: Path, spec: Spec, version: str | None = None, options: ValidationOptions | None = None,
                name: str | None = None, party: str = NATIONAL) -> ImportedList:
    """Read and validate a national list in any supported format; Unprocessable when it is rejected.

    ``name`` is the name a CSV or XLSX file was sent under, when it is stored under
    another (an upload's temporary file): findings and the format follow it. The spec's
    files always go by their own names. ``party`` is whose list the spec's files must be:
    HQ's national one (``00``), or at a province hub the province's slice HQ sent it.
    """
    path = Path(path)
    if version is not None:
        check_version(version)
    fmt = detect_format(path, name)
    if fmt == SPEC:
        return _import_spec(path, spec, version, options, party)
    shown = name or path.name
    if fmt == CSV:
        table = _csv_table(path, shown)
    else:
        table = _xlsx_table(path, spec, shown)
    return _import_table(shown, fmt, table, spec, version, options)


# -- the spec's own format ------------------------------------------------------------------
def _import_spec(path: Path, spec: Spec, version: str | None, options: ValidationOptions | None,
                 party: str = NATIONAL) -> ImportedList:
    files = source_files(path, version)
    check_path = files[0]
    try:
        check = CheckFile.parse(check_path.read_bytes())
    except CheckFileError:
        check = None  # the validator reports it (E103) with line and value
    if check is not None and (check.mode != "D" or check.party != party):
        raise BadRequest(f"{check_path.name} is not a national list delivery (D_00_...)",
                         f"{check_path.name} 不是集团下发的全国名单（D_00_...）", code="list_not_national",
                         errors={"file": check_path.name, "expected": "D_00_<version>_nn.chk"})
    report = validate_delivery(files, spec, None, options)
    _raise_if_rejected(report, check_path.name)
    assert check is not None  # a check file that does not parse rejects the delivery
    if version is not None and check.period != version:
        raise BadRequest(f"{check_path.name} carries list version {check.period}, not {version}",
                         f"{check_path.name} 的名单版本为 {check.period}，不是 {version}",
                         code="list_version_mismatch", errors={"value": check.period, "expected": version})
    unit = spec.unit(UNIT)
    by_name = {p.name: p for p in files}
    data = sorted((e.name for e in check.entries if e.name.split("_")[3:4] == [UNIT_CODE]),
                  key=lambda n: n.rsplit("_", 1)[-1])
    if not data:
        raise Unprocessable(f"{check_path.name} lists no {UNIT_CODE} ({UNIT}) data file",
                            f"{check_path.name} 未列出 {UNIT_CODE}（{unit.name_zh}）数据文件", code="list_empty",
                            errors=[])
    fields = tuple(unit.field_ids)
    share = _Sharer(fields)
    at_version = fields.index("LIST_VERSION")
    records: list[tuple[str, ...]] = []
    lines = array("l")
    sources: list[tuple[str, int]] = []
    for name in data:
        before = len(records)
        for values, line in _spec_rows(by_name[name], check, unit, spec):
            value = values[at_version] if len(values) > at_version else ""
            if value and value != check.period:
                report.add("E402", name, line, "LIST_VERSION", value, check.period)
            records.append(share(values))
            lines.append(line)
        sources.append((name, len(records) - before))
    _raise_if_rejected(report, check_path.name)
    return ImportedList(check.period, fields, records, SPEC, check_path.name, sources, lines, _warnings(report))


def _spec_rows(path: Path, check: CheckFile, unit: Unit, spec: Spec) -> Iterator[tuple[list[str], int]]:
    """(values, line) of one validated data file."""
    if path.suffix == ".xml":
        try:
            for values, line, _ in xml_rows(path, unit.name, unit.field_ids, spec.namespace, None):
                yield values, line
        except XmlProblem as exc:  # validated just before; only a file changed underneath gets here
            raise Unprocessable(f"{path.name} line {exc.line}: {exc}", f"{path.name} 第 {exc.line} 行：{exc}",
                                code="list_invalid", errors=[{"code": exc.code, "file": path.name,
                                                              "line": exc.line}]) from None
        return
    delimiter = check.delimiter
    for no, text in enumerate(text_lines(path, check.encoding), start=1):
        yield text.rstrip("\r").split(delimiter), no


# -- CSV and XLSX ---------------------------------------------------------------------------
@dataclass
class _Table:
    """A sheet as read: its header (with line) and data rows as text with their source lines."""

    name: str
    header: list[str]
    header_line: int
    rows: list[tuple[int, list[str]]]


def _csv_table(path: Path, name: str) -> _Table:
    """A CSV file's cells; UTF-8 (BOM or not) or GB18030."""
    data = path.read_bytes()
    text = _decode(data, name)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    end = 0  # the line the previous record ended on: a record starts on the next one
    try:
        for cells in reader:
            start = end + 1
            end = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank lines and rows of empty cells, as spreadsheets leave at the end
            if header is None:
                header, header_line = cells, start
            else:
                rows.append((start, cells))
    except csv.Error as exc:
        raise Unprocessable(f"{name} line {reader.line_num}: not readable as CSV ({exc})",
                            f"{name} 第 {reader.line_num} 行：无法按CSV读取（{exc}）", code="list_unreadable",
                            errors=[{"file": name, "line": reader.line_num, "message_en": str(exc)}]) from None
    return _Table(name, header or [], header_line or 1, rows)


def _decode(data: bytes, name: str) -> str:
    """CSV text: UTF-8 first (a BOM is dropped), else GB18030; E110 when it is neither."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError:
            at = utf8_error.start
            line = data.count(b"\n", 0, at) + 1
            value = f"bytes {data[at:at + 4].hex(' ')} at byte {at}"
            finding = {"code": "E110", "severity": "error", "tier": 1, "file": name, "line": line,
                       "value": value, "expected": "UTF-8 / GB18030",
                       "message_en": f"File {name} line {line} is neither UTF-8 nor GB18030: {value}",
                       "message_zh": f"文件 {name} 第 {line} 行既不是UTF-8也不是GB18030编码：{value}"}
            raise Unprocessable(f"{name} is neither UTF-8 nor GB18030 (line {line})",
                                f"{name} 既不是UTF-8也不是GB18030编码（第 {line} 行）", code="list_invalid",
                                errors=[finding]) from None


def _xlsx_table(path: Path, spec: Spec, name: str) -> _Table:
    """The first sheet of a workbook, cells turned into the spec's lexical forms."""
    try:
        # Only XLSX needs it; CSV and the spec's files work without.
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException
    except ImportError:
        raise BadRequest("reading XLSX needs the openpyxl package, which is not installed; send CSV instead",
                         "读取XLSX需要安装openpyxl，当前未安装；请改用CSV", code="list_xlsx_unsupported") from None
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise Unprocessable(f"{name} is not a readable XLSX workbook ({exc})",
                            f"{name} 不是可读取的XLSX工作簿（{exc}）", code="list_unreadable",
                            errors=[{"file": name, "message_en": str(exc)}]) from None
    try:
        ws = wb.worksheets[0]
        # Some writers record a wrong sheet size, which read-only mode would trust.
        ws.reset_dimensions()
        header: list[str] | None = None
        header_line = 1
        types: list[str | None] = []
        rows: list[tuple[int, list[str]]] = []
        for no, values in enumerate(ws.iter_rows(values_only=True), start=1):
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            if header is None:
                header, header_line = [_cell_text(v, None) for v in values], no
                unit = spec.unit(UNIT)
                types = [unit.field(i).type if i else None for i in _header_ids(header, unit)]
                continue
            rows.append((no, [_cell_text(v, types[i] if i < len(types) else None) for i, v in enumerate(values)]))
    finally:
        wb.close()
    return _Table(name, header or [], header_line, rows)


def _cell_text(value: Any, ftype: str | None) -> str:
    """A cell's value as the spec writes it: dates YYYYMMDD, whole numbers without a decimal point."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S" if ftype == "datetime" else "%Y%m%d")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _header_ids(header: list[str], unit: Unit) -> list[str | None]:
    """The field id of each header cell (id, Chinese or English name); None for unknown cells."""
    names: dict[str, str] = {}
    for f in unit.fields:
        names[f.id.upper()] = f.id
        names[f.name_zh] = f.id
        names[f.name_en.upper()] = f.id
    keys = [h.strip().lstrip("\ufeff").strip() for h in header]
    return [names.get(k.upper()) or names.get(k) for k in keys]


def _header_problems(table: _Table, unit: Unit) -> list[dict[str, Any]]:
    """Unknown, repeated and missing columns, as findings on the header line."""
    ids = _header_ids(table.header, unit)
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for col, (cell, fid) in enumerate(zip(table.header, ids), start=1):
        if fid is None:
            if not cell.strip():
                continue  # an unnamed column is fine as long as it stays empty (checked per row)
            problems.append({"code": "list_unknown_column", "severity": "error", "file": table.name,
                             "line": table.header_line, "value": cell,
                             "message_en": f"{table.name} line {table.header_line}: column {col} {cell!r} "
                                           f"is not a field of {unit.code} {unit.name}",
                             "message_zh": f"{table.name} 第 {table.header_line} 行：第 {col} 列 {cell!r} "
                                           f"不是 {unit.code}（{unit.name_zh}）的字段"})
        elif fid in seen:
            problems.append({"code": "list_repeated_column", "severity": "error", "file": table.name,
                             "line": table.header_line, "field": fid, "value": cell,
                             "message_en": f"{table.name} line {table.header_line}: column {col} repeats "
                                           f"{fid} (column {seen[fid]})",
                             "message_zh": f"{table.name} 第 {table.header_line} 行：第 {col} 列与第 {seen[fid]} "
                                           f"列重复（{fid}）"})
        else:
            seen[fid] = col
    for f in unit.fields:
        if f.id not in seen and f.id not in OPTIONAL_COLUMNS:
            problems.append({"code": "list_missing_column", "severity": "error", "file": table.name,
                             "line": table.header_line, "field": f.id,
                             "message_en": f"{table.name} line {table.header_line}: no column for {f.id} "
                                           f"({f.name_en} / {f.name_zh})",
                             "message_zh": f"{table.name} 第 {table.header_line} 行：缺少字段 {f.id}"
                                           f"（{f.name_zh}）"})
    return problems


def _import_table(name: str, fmt: str, table: _Table, spec: Spec, version: str | None,
                  options: ValidationOptions | None) -> ImportedList:
    """Convert a sheet into a spec delivery, validate it, and point the findings back at the sheet."""
    unit = spec.unit(UNIT)
    if not table.header:
        raise Unprocessable(f"{name} is empty: no header row", f"{name} 为空：没有表头行", code="list_empty",
                            errors=[{"file": name, "line": 1}])
    problems = _header_problems(table, unit)
    if problems:
        raise Unprocessable(f"{name}: the header row does not name the fields of {unit.code} {unit.name}",
                            f"{name}：表头与 {unit.code}（{unit.name_zh}）的字段不符", code="list_bad_header",
                            errors=problems)
    if not table.rows:
        raise Unprocessable(f"{name} has a header but no rows", f"{name} 只有表头，没有数据行", code="list_empty",
                            errors=[{"file": name, "line": table.header_line}])
    ids = _header_ids(table.header, unit)
    fields = tuple(unit.field_ids)
    at = {f: i for i, f in enumerate(fields)}
    place = [at[fid] if fid is not None else None for fid in ids]  # each column's place in a record
    at_version, at_change = at["LIST_VERSION"], at["CHANGE_TYPE"]
    rows: list[list[str]] = []
    lines: list[int] = []
    extra: list[tuple[int, int]] = []  # (line, number of cells) of rows with cells past the header
    for line, cells in table.rows:
        values = [""] * len(fields)
        for i, cell in enumerate(cells):
            p = place[i] if i < len(place) else None
            if p is not None:
                values[p] = cell
            elif cell.strip():
                extra.append((line, len(cells)))
                break
        rows.append(values)
        lines.append(line)
    table.rows.clear()  # the cells live on in the rows
    if version is None:
        given = next((r[at_version].strip() for r in rows if r[at_version].strip()), None)
        if given is None:
            raise BadRequest(f"{name} has no LIST_VERSION column: give the list version",
                             f"{name} 没有名单版本（LIST_VERSION）列：请指定名单版本", code="list_version_required")
        version = check_version(given)
    share = _Sharer(fields)
    records: list[Any] = rows  # each row becomes its record in place: one copy in memory
    for k, values in enumerate(rows):
        if not values[at_version]:
            values[at_version] = version
        if not values[at_change]:
            values[at_change] = "A"  # provisional: the service computes it against the published list
        records[k] = share(values)

    with tempfile.TemporaryDirectory(prefix="list-import-") as tmp:
        writer = DeliveryWriter(spec, Path(tmp), "D", NATIONAL, version, delimiter=TEMP_DELIMITER)
        with writer.unit(UNIT) as out:
            data_name = out.name
            for rec in records:
                out.write({f: _writable(v) for f, v in zip(fields, rec)})
        check_path = writer.close()
        temp = validate_delivery([check_path, Path(tmp) / data_name], spec, None, options)

    report = Report(spec, cap=temp.cap)
    for f in temp.findings:
        _readd(report, f, data_name, name, lines, fields, records)
    # Totals above the cap were not listed; keep them exact.
    for code, n in temp.counts.items():
        report.counts[code] = max(report.counts[code], n)
    for line, n in extra:
        report.add("E201", name, line, None, n, len(ids))
    for rec, line in zip(records, lines):
        joined = "\x00".join(rec)  # one scan per row; the fields only when it finds something
        if any(ch in joined for ch in UNWRITABLE):
            for fid, value in zip(fields, rec):
                if any(ch in value for ch in UNWRITABLE):
                    _add_unwritable(report, name, line, fid, value)
        value = rec[at_version]
        if value != version:
            report.add("E402", name, line, "LIST_VERSION", value, version)
    _raise_if_rejected(report, name)
    return ImportedList(version, fields, records, fmt, name, [(name, len(records))], array("l", lines),
                        _warnings(report))


def _writable(value: str) -> str:
    """A value the temporary delimited file can carry (the original is reported separately)."""
    if "\r" in value or "\n" in value or "\x1f" in value:
        return value.replace("\r", " ").replace("\n", " ").replace("\x1f", " ")
    return value


def _readd(report: Report, f: Finding, data_name: str, name: str, lines: list[int], fields: tuple[str, ...],
           records: list[tuple[str, ...]]) -> None:
    """Add a finding of the temporary delivery to ``report`` with the sheet's file name and line."""
    def source_line(temp_line: int | None) -> int | None:
        if temp_line is None or not 1 <= temp_line <= len(lines):
            return temp_line
        return lines[temp_line - 1]

    on_data = f.file == data_name
    line = source_line(f.line) if on_data else f.line
    expected: Any = f.expected
    if f.code == "E401" and on_data and expected is not None and expected.isdigit():
        expected = source_line(int(expected))  # "repeats line n": the sheet's line n
    row = dict(zip(fields, records[f.line - 1])) if on_data and f.line is not None and 1 <= f.line <= len(records) \
        else None
    report.add(f.code, name if on_data else f.file, line, f.field, f.value, expected, row=row, unit=f.unit)


def _add_unwritable(report: Report, name: str, line: int, fid: str, value: str) -> None:
    """A value holding a delimiter or line break, which the spec's delimited files cannot carry."""
    report.counts["E201"] += 1
    shown = value.replace("\r", "\\r").replace("\n", "\\n").replace("\x1f", "\\x1f")
    report.findings.append(Finding(
        "E201", report.severity_of("E201"), report.tier_of("E201"),
        f"第 {line} 行字段 {fid} 的值 {shown} 含有分隔符“|”或换行符，规范的分隔符文本无法承载",
        f"Line {line}: field {fid} value {shown} contains the delimiter '|' or a line break, which the spec's "
        f"delimited files cannot carry", name, line, fid, shown, "no | or line break"))


# -- shared ----------------------------------------------------------------------------
def _raise_if_rejected(report: Report, name: str) -> None:
    """Unprocessable ``list_invalid`` with every finding when the report rejects the list."""
    if report.errors == 0:
        return
    findings = [f.as_dict() for f in report.sorted_findings()]
    codes = ", ".join(f"{c} x{report.counts[c]}" for c in report.codes())
    raise Unprocessable(f"the list {name} was rejected: {report.errors} error(s) ({codes})",
                        f"名单 {name} 未通过校验：{report.errors} 个错误（{codes}）", code="list_invalid",
                        errors=findings)


def _warnings(report: Report) -> list[dict[str, Any]]:
    """The warnings of an accepted list (leading spaces and the like)."""
    return [f.as_dict() for f in report.sorted_findings() if f.severity == "warning"]
