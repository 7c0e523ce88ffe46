"""Turn a province's CRM exports into spec-conformant deliveries with a declarative mapping.

Each unit the province sends has one ``[units.<NAME>]`` table in the agent's TOML file;
no province ever needs code of its own:

```toml
[units.VIP_SUMMARY]
source = "summary_{cycle}.csv"         # glob under agent.export_dir; several matches are read in name order
format = "csv"                         # csv | xlsx | spec (default by extension: .csv, .xlsx/.xlsm, .txt = spec)
encoding = "GB18030"                   # csv only: UTF-8 (default, a BOM is accepted) or GB18030 (GBK, GB2312)
delimiter = ","                        # csv only: one character (default ","), or PIPE/TAB/COMMA/CARET/US
header_row = 1                         # csv: the record holding the header; xlsx: the sheet row
skip_blank = true                      # skip rows whose cells are all empty
constants = { CYCLE_ID = "{cycle}", PROV_ID = "{party}" }
values_strict = false                  # true: a value missing from a field's `values` table is an error

[units.VIP_SUMMARY.columns]            # spec field = the export's column header
LATN_ID = "本地网"
CUST_CNT = "期末客户数"
INCOME_AMT = "本期收入(元)"

[units.VIP_SUMMARY.values]             # translate the CRM's codes (other values pass through)
LATN_ID = { "武汉" = "027", "黄石" = "0714" }

[units.VIP_SUMMARY.dates]              # strptime format of a date/datetime column given as text
# JOIN_DATE = "%d.%m.%Y"               # (xlsx date cells need none)

[units.VIP_SUMMARY.defaults]           # used when the export's cell is empty
MANAGER_CNT = "0"

[units.VIP_CUST_PROD]                  # the sheet of a workbook
source = "{year}/prod_{month}.xlsx"
sheet = "明细"
...

[units.VIP_INCOME_SUM]                 # already a spec data file, in output.encoding and output.delimiter
source = "P_{party}_{cycle}_32003_*.txt"
format = "spec"
```

Placeholders in ``source`` and ``constants``: ``{cycle}`` (``202610``), ``{party}`` (``42``),
``{year}`` (``2026``) and ``{month}`` (``10``: the last month of the cycle); ``{{`` and
``}}`` stand for literal braces. Values are normalised to the spec's lexical forms by the
field's type: integers lose spaces and thousands separators (``1,200`` -> ``1200``,
``12.0`` -> ``12``); decimals are exact (``decimal.Decimal``; an XLSX number is read as
the shortest repr of its float, so ``0.1+0.2`` is ``0.30``), currency signs and thousands
separators are dropped and the value is rounded half-up to the field's scale; dates become
``YYYYMMDD`` and date-times ``YYYYMMDDHHMMSS``; strings and codes are stripped. Anything
else (lengths, ranges, codes, rules) is the validation engine's job once the delivery is
built. XLSX formula cells give the value Excel cached when it last saved the workbook.

Mapping mistakes raise ConfigError naming the file and key
(``units.VIP_SUMMARY.columns.CUST_CNT``); exports that cannot be converted raise
BuildError naming the export file, the line (CSV) or row (XLSX), the column, the value and
what was expected.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
import re
import string
import zipfile
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from schemas.conventions import DELIMITERS, UPLOAD_MODES, Cycle
from schemas.spec.model import Field, Spec, Unit
from schemas.writer import DeliveryWriter

from ._exceptions import BuildError, ConfigError
from .config import AgentConfig

FORMATS = ("csv", "xlsx", "spec")
EXTENSION_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".txt": "spec"}
PLACEHOLDERS = ("cycle", "party", "year", "month")
# Python codecs for the encodings a CSV export may declare; GBK and GB2312 text is valid GB18030.
CSV_ENCODINGS = {"UTF-8": "utf-8-sig", "UTF8": "utf-8-sig", "GB18030": "gb18030", "GBK": "gb18030",
                 "GB2312": "gb18030"}
_COMMON_KEYS = {"source", "format"}
_TABLE_KEYS = {"columns", "constants", "values", "values_strict", "dates", "defaults", "header_row", "skip_blank"}
KEYS_BY_FORMAT = {
    "csv": frozenset(_COMMON_KEYS | _TABLE_KEYS | {"encoding", "delimiter"}),
    "xlsx": frozenset(_COMMON_KEYS | _TABLE_KEYS | {"sheet"}),
    "spec": frozenset(_COMMON_KEYS),
}
ALL_KEYS = frozenset().union(*KEYS_BY_FORMAT.values())
_CURRENCY = ("RMB", "CNY", "¥", "￥", "$")
_SPACES_AND_SEPARATORS = re.compile(r"[\s,，]+")
_INTEGER = re.compile(r"([+-]?)(\d+)(?:\.0*)?")
_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d")
_DATETIME_FORMATS = ("%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                     "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y.%m.%d %H:%M:%S")
# XML 1.0 cannot carry these control characters at all.
_XML_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f"


# -- value normalisation ---------------------------------------------------------------
def normalize(fld: Field, value: Any, date_format: str | None = None) -> str:
    """The spec's lexical form of one export value for ``fld``; ValueError says what was expected."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return ""
    if fld.type == "integer":
        return _integer(value)
    if fld.type == "decimal":
        return _decimal(value, fld.scale)
    if fld.type in ("date", "datetime"):
        return _date(value, date_format, with_time=fld.type == "datetime")
    return as_text(value)


def as_text(value: Any) -> str:
    """An export cell as text: strings stripped, whole XLSX numbers without ``.0``, dates in spec form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"  # as Excel shows it; translate with `values` if needed
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S" if value.time() != dt.time() else "%Y%m%d")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value).strip()


def _integer(value: Any) -> str:
    expected = "an integer (digits, optionally with thousands separators)"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if not (math.isfinite(value) and value == int(value)):
            raise ValueError(expected)
        return str(int(value))
    if not isinstance(value, str):
        raise ValueError(expected)
    m = _INTEGER.fullmatch(_SPACES_AND_SEPARATORS.sub("", value))
    if not m:
        raise ValueError(expected)
    return str(int(m[1] + m[2]))


def _decimal(value: Any, scale: int | None) -> str:
    expected = "a number such as 1234.50, 1,234.50 or ¥1,234.50"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(expected)
        # why: XLSX stores binary floats; their shortest repr is the number the user typed
        # (0.1+0.2 -> 0.30000000000000004, rounded to 0.30 below), never the float's exact binary value.
        d = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(expected)
        d = value
    elif isinstance(value, str):
        d = _parse_money(value, expected)
    else:
        raise ValueError(expected)
    try:
        if scale is not None:
            d = d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ValueError(f"{expected}, with at most 28 digits") from None
    if d == 0:
        d = abs(d)  # why: "-0.00" is lexically valid but would read as a sign error to people
    return format(d, "f")


def _parse_money(text: str, expected: str) -> Decimal:
    s = _SPACES_AND_SEPARATORS.sub("", text)
    negative = False
    if s.startswith("(") and s.endswith(")"):  # accountants' negative: (1,234.50)
        negative, s = True, s[1:-1]
    sign = ""
    if s[:1] in ("+", "-"):
        sign, s = s[0], s[1:]
    for symbol in _CURRENCY:
        if s.upper().startswith(symbol):
            s = s[len(symbol):]
            break
    if s.endswith("元"):
        s = s[:-1]
    if not sign and s[:1] in ("+", "-"):
        sign, s = s[0], s[1:]
    if not s or not _DECIMAL.fullmatch(s) or (negative and sign):
        raise ValueError(expected)
    d = Decimal(sign + s)
    return -d if negative else d


def _date(value: Any, date_format: str | None, with_time: bool) -> str:
    out = "%Y%m%d%H%M%S" if with_time else "%Y%m%d"
    if isinstance(value, dt.datetime):
        return value.strftime(out)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day).strftime(out)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = as_text(value)  # a date typed as a number, 20150301
    if not isinstance(value, str):
        raise ValueError("a date" if not with_time else "a date and time")
    formats: Sequence[str]
    if date_format:
        formats = (date_format,)
    elif with_time:
        formats = _DATETIME_FORMATS
    else:
        # why: CRM exports often print dates as timestamps; a date field keeps the day
        formats = _DATE_FORMATS + _DATETIME_FORMATS
    for fmt in formats:
        try:
            return dt.datetime.strptime(value, fmt).strftime(out)
        except ValueError:
            continue
    if date_format:
        raise ValueError(f"a {'date-time' if with_time else 'date'} in the form {date_format!r}")
    if with_time:
        raise ValueError("a date-time such as 2026-10-05 14:30:00 or 20261005143000")
    raise ValueError("a date such as 2026-10-05, 2026/10/05 or 20261005")


# -- the mapping -----------------------------------------------------------------------
def _check_placeholders(text: str, file: Path | None, key: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{text!r}: {exc} (write {{{{ and }}}} for literal braces)", file=file, key=key) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ConfigError(f"{text!r}: unknown placeholder {{{name}}}; allowed: "
                              f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}", file=file, key=key)


def placeholders(party: str, cycle: Cycle) -> dict[str, str]:
    """The values of ``{cycle}``, ``{party}``, ``{year}`` and ``{month}`` for a build."""
    return {"cycle": cycle.id, "party": party, "year": f"{cycle.begin.year:04d}", "month": f"{cycle.end.month:02d}"}


@dataclass(frozen=True)
class BuildContext:
    """The output settings and placeholder values of one build: what the built files can carry."""

    format: str
    encoding: str
    delimiter: str
    delimiter_name: str
    forbidden: re.Pattern[str]
    values: Mapping[str, str]

    @classmethod
    def of(cls, config: AgentConfig, cycle: Cycle) -> "BuildContext":
        """The context of building ``cycle`` with ``config``'s output settings."""
        out = config.output
        delim = DELIMITERS[out.delimiter]
        bad = "\r\n" + (_XML_FORBIDDEN if out.format == "xml" else re.escape(delim))
        return cls(out.format, out.encoding, delim, out.delimiter, re.compile(f"[{bad}]"),
                   placeholders(config.party, cycle))


@dataclass(frozen=True)
class _Column:
    """One spec field read from an export column, compiled for a file's header."""

    field: Field
    index: int
    header: str
    convert: Callable[[Any], str]
    check_chars: bool


@dataclass(frozen=True)
class UnitMapping:
    """How one unit is built from the province's exports (one ``[units.<NAME>]`` table)."""

    unit: Unit
    source: str
    format: str
    config_name: str = ""
    config_path: Path | None = None
    encoding: str = "UTF-8"
    delimiter: str = ","
    sheet: str | None = None
    header_row: int = 1
    skip_blank: bool = True
    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    values_strict: bool = False
    dates: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)

    # -- parsing ----------------------------------------------------------------------
    @classmethod
    def from_config(cls, name: str, table: Mapping[str, Any], spec: Spec,
                    config_path: Path | str | None = None) -> "UnitMapping":
        """Parse and check one ``[units.<name>]`` table; ConfigError names the key at fault."""
        file = Path(config_path) if config_path is not None else None
        base = f"units.{name}"

        def fail(message: str, *parts: str) -> ConfigError:
            return ConfigError(message, file=file, key=".".join((base, *parts)))

        if not spec.has_unit(name):
            ups = ", ".join(u.name for u in spec.upload_units)
            raise fail(f"unknown unit {name!r}; the units a province sends: {ups}")
        unit = spec.unit(name)
        if unit.direction != "up":
            raise fail(f"{unit.name} ({unit.code}) is sent down by HQ; a province cannot upload it")
        if not isinstance(table, Mapping):
            raise fail(f"[{base}] must be a table")
        unknown = sorted(set(table) - ALL_KEYS)
        if unknown:
            raise fail(f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(ALL_KEYS))}", unknown[0])

        source = table.get("source")
        if not isinstance(source, str) or not source.strip():
            raise fail("source is required: a glob of the export file(s) under agent.export_dir", "source")
        if Path(source).is_absolute():
            raise fail(f"source {source!r} must be relative to agent.export_dir", "source")
        _check_placeholders(source, file, f"{base}.source")

        fmt = table.get("format")
        if fmt is None:
            suffix = Path(source).suffix.lower()
            if suffix == ".xls":
                raise fail("legacy .xls workbooks are not read; save the export as .xlsx or .csv", "source")
            if suffix not in EXTENSION_FORMATS:
                raise fail(f"cannot tell the format of {source!r} from its extension; set format = "
                           f"{' | '.join(FORMATS)}", "format")
            fmt = EXTENSION_FORMATS[suffix]
        elif fmt not in FORMATS:
            raise fail(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", "format")
        for key in sorted(set(table) - KEYS_BY_FORMAT[fmt]):
            where = [f for f, keys in KEYS_BY_FORMAT.items() if key in keys and f != fmt]
            raise fail(f"{key} does not apply to format = {fmt!r} (only to {' and '.join(where)})", key)

        kwargs: dict[str, Any] = {}
        if "encoding" in table:
            enc = table["encoding"]
            if not isinstance(enc, str) or enc.upper() not in CSV_ENCODINGS:
                raise fail(f"encoding must be UTF-8 or GB18030 (GBK, GB2312), got {enc!r}", "encoding")
            kwargs["encoding"] = "UTF-8" if CSV_ENCODINGS[enc.upper()].startswith("utf") else "GB18030"
        if "delimiter" in table:
            d = table["delimiter"]
            d = DELIMITERS.get(d, d) if isinstance(d, str) else d
            if not isinstance(d, str) or len(d) != 1 or d in "\r\n\"":
                raise fail(f"delimiter must be one character (or PIPE, TAB, COMMA, CARET, US), "
                           f"got {table['delimiter']!r}", "delimiter")
            kwargs["delimiter"] = d
        if "sheet" in table:
            if not isinstance(table["sheet"], str) or not table["sheet"]:
                raise fail(f"sheet must be a sheet name, got {table['sheet']!r}", "sheet")
            kwargs["sheet"] = table["sheet"]
        if "header_row" in table:
            h = table["header_row"]
            if not isinstance(h, int) or isinstance(h, bool) or h < 1:
                raise fail(f"header_row must be a row number from 1, got {h!r}", "header_row")
            kwargs["header_row"] = h
        for key in ("skip_blank", "values_strict"):
            if key in table:
                if not isinstance(table[key], bool):
                    raise fail(f"{key} must be true or false, got {table[key]!r}", key)
                kwargs[key] = table[key]

        def field_table(key: str) -> dict[str, Any]:
            sub = table.get(key, {})
            if not isinstance(sub, Mapping):
                raise fail(f"{key} must be a table of SPEC_FIELD = ...", key)
            for fid in sub:
                if not unit.has_field(fid):
                    raise fail(f"{unit.name} has no field {fid!r}; its fields: {', '.join(unit.field_ids)}", key, fid)
            return dict(sub)

        def strings(key: str, sub: Mapping[str, Any], what: str) -> dict[str, str]:
            for fid, v in sub.items():
                if not isinstance(v, str) or (key == "columns" and not v.strip()):
                    raise fail(f"{fid} must be {what} in quotes, got {v!r}", key, fid)
            return dict(sub)

        columns = {k: v.strip() for k, v in strings("columns", field_table("columns"), "a column header").items()}
        constants = strings("constants", field_table("constants"), "a value")
        for fid, text in constants.items():
            if fid in columns:
                raise fail(f"{fid} is both in columns and constants; keep one", "constants", fid)
            _check_placeholders(text, file, f"{base}.constants.{fid}")
        values: dict[str, dict[str, str]] = {}
        for fid, trans in field_table("values").items():
            if fid not in columns:
                raise fail(f"{fid} is translated but not read from a column (add it to columns)", "values", fid)
            if not isinstance(trans, Mapping) or not all(isinstance(v, str) for v in trans.values()):
                raise fail(f'{fid} must be a table of "source value" = "code" (codes in quotes)', "values", fid)
            values[fid] = {str(k).strip(): v.strip() for k, v in trans.items()}
        dates = strings("dates", field_table("dates"), "a strptime format such as \"%Y-%m-%d\"")
        for fid, fmt_text in dates.items():
            if unit.field(fid).type not in ("date", "datetime"):
                raise fail(f"{fid} is a {unit.field(fid).type} field, not a date or datetime", "dates", fid)
            if fid not in columns:
                raise fail(f"{fid} has a date format but is not read from a column", "dates", fid)
            if "%" not in fmt_text:
                raise fail(f"{fmt_text!r} is not a strptime format (such as \"%Y-%m-%d\")", "dates", fid)
        defaults: dict[str, str] = {}
        for fid, text in strings("defaults", field_table("defaults"), "a value").items():
            if fid not in columns:
                raise fail(f"{fid} has a default but is not read from a column (use constants)", "defaults", fid)
            try:
                defaults[fid] = normalize(unit.field(fid), text)
            except ValueError as exc:
                raise fail(f"default {text!r} is not usable: expected {exc}", "defaults", fid) from None

        if fmt != "spec":
            missing = [f for f in unit.fields if f.required and f.id not in columns and f.id not in constants]
            if missing:
                f = missing[0]
                raise fail(f"required field {f.id} ({f.name_zh} / {f.name_en}) is in neither columns nor constants"
                           + (f" (nor are {', '.join(m.id for m in missing[1:])})" if len(missing) > 1 else ""),
                           "columns", f.id)
        return cls(unit=unit, source=source, format=fmt, config_name=name, config_path=file, columns=columns,
                   constants=constants, values=values, dates=dates, defaults=defaults, **kwargs)

    def key(self, *parts: str) -> str:
        """The configuration key of this mapping (or of one of its entries), for messages."""
        return ".".join((f"units.{self.config_name or self.unit.name}", *parts))

    # -- reading ----------------------------------------------------------------------
    def source_files(self, export_dir: Path, values: Mapping[str, str]) -> list[Path]:
        """The export files this unit is read from, in name order; BuildError when none match."""
        pattern = self.source.format_map(values)
        export_dir = Path(export_dir)
        found = sorted(p for p in export_dir.glob(pattern) if p.is_file() and not _ignored(p.name))
        if not found:
            raise BuildError(f"{self.key('source')}: no export file matches {pattern!r} in {export_dir}")
        return found

    def constant_values(self, out: "BuildContext") -> dict[str, str]:
        """The constants with their placeholders filled, in the spec's lexical form."""
        row: dict[str, str] = {}
        for fid, text in self.constants.items():
            key = self.key("constants", fid)
            value = text.format_map(out.values)
            try:
                row[fid] = normalize(self.unit.field(fid), value)
            except ValueError as exc:
                raise ConfigError(f"constant {value!r} is not usable: expected {exc}", file=self.config_path,
                                  key=key) from None
            if out.forbidden.search(row[fid]):
                raise ConfigError(f"constant {value!r} contains the output delimiter, a line break or a control "
                                  f"character, which the built file cannot carry", file=self.config_path, key=key)
        return row

    def rows(self, export_dir: Path, out: "BuildContext") -> Iterator[dict[str, str]]:
        """Every record of the unit, as field id -> lexical value, streamed from the exports."""
        constants = self.constant_values(out)
        for path in self.source_files(export_dir, out.values):
            if self.format == "spec":
                yield from self._spec_rows(path, out)
            elif self.format == "csv":
                yield from self._mapped_rows(path, self._csv_records(path), constants, out)
            else:
                yield from self._mapped_rows(path, self._xlsx_records(path), constants, out)

    def _csv_records(self, path: Path) -> Iterator[tuple[int, int, list[Any]]]:
        """(record number, line number, cells) of a CSV export."""
        codec = CSV_ENCODINGS[self.encoding]
        line = 0
        try:
            with path.open("r", encoding=codec, newline="") as fh:
                reader = csv.reader(fh, delimiter=self.delimiter)
                for record, cells in enumerate(reader, start=1):
                    start, line = line + 1, reader.line_num
                    yield record, start, cells
        except UnicodeDecodeError as exc:
            other = "GB18030" if self.encoding == "UTF-8" else "UTF-8"
            raise BuildError(f"{path}, near line {line + 1}: not valid {self.encoding} text ({exc.reason}); "
                             f"if the export is {other}, set {self.key('encoding')} = \"{other}\"") from None
        except csv.Error as exc:
            raise BuildError(f"{path}, line {line + 1}: unreadable CSV ({exc})") from None
        except OSError as exc:
            raise BuildError(f"{path}: cannot read the export ({exc.strerror})") from None

    def _xlsx_records(self, path: Path) -> Iterator[tuple[int, int, Sequence[Any]]]:
        """(row number, row number, values) of the sheet of an XLSX export, in read-only mode."""
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
            raise BuildError(f"{path}: not a readable .xlsx workbook ({exc})") from None
        try:
            if self.sheet is None:
                ws = wb.worksheets[0]
            elif self.sheet in wb.sheetnames:
                ws = wb[self.sheet]
            else:
                raise BuildError(f"{path}: no sheet {self.sheet!r} ({self.key('sheet')}); the workbook has "
                                 f"{', '.join(repr(s) for s in wb.sheetnames)}")
            # why: many CRM tools write a wrong <dimension>, which makes read-only mode cut rows and columns
            ws.reset_dimensions()
            for no, cells in enumerate(ws.iter_rows(values_only=True), start=1):
                yield no, no, cells
        finally:
            wb.close()

    def _compile(self, path: Path, header: Sequence[Any], where: str) -> list[_Column]:
        """The columns of a file's header for every mapped field; BuildError when one is missing."""
        names = [as_text(h).lstrip("\ufeff").strip() for h in header]
        compiled = []
        for fid, col in self.columns.items():
            hits = [i for i, n in enumerate(names) if n == col]
            if not hits:
                found = ", ".join(repr(n) for n in names if n) or "nothing"
                raise BuildError(f"{path}: {self.key('columns', fid)} expects a column {col!r}, but the header "
                                 f"({where}) has {found}")
            if len(hits) > 1:
                raise BuildError(f"{path}: column {col!r} ({self.key('columns', fid)}) appears {len(hits)} times "
                                 f"in the header ({where}); rename one in the export")
            fld = self.unit.field(fid)
            compiled.append(_Column(fld, hits[0], col, self._converter(fld),
                                    fld.type not in ("integer", "decimal", "date", "datetime")))
        return compiled

    def _converter(self, fld: Field) -> Callable[[Any], str]:
        """raw cell -> lexical value for one field: default, translation, then normalisation."""
        default = self.defaults.get(fld.id, "")
        table = self.values.get(fld.id)
        strict = self.values_strict
        date_format = self.dates.get(fld.id)
        typed: Callable[[Any], str] | None = {
            "integer": _integer, "decimal": lambda v: _decimal(v, fld.scale),
            "date": lambda v: _date(v, date_format, with_time=False),
            "datetime": lambda v: _date(v, date_format, with_time=True)}.get(fld.type)

        # why the shape below: this runs once per cell of exports with millions of cells,
        # so the common case (a text cell) takes the fewest steps
        def convert(raw: Any) -> str:
            if raw.__class__ is str:
                raw = raw.strip()
                if not raw:
                    return default
            elif raw is None:
                return default
            if table is not None:
                text = raw if raw.__class__ is str else as_text(raw)
                if text in table:
                    return normalize(fld, table[text])
                if strict:
                    shown = ", ".join(repr(k) for k in list(table)[:20])
                    raise ValueError(f"one of {shown} ({self.key('values', fld.id)}, values_strict = true)")
            if typed is None:
                return raw if raw.__class__ is str else as_text(raw)
            return typed(raw)

        return convert

    def _mapped_rows(self, path: Path, records: Iterator[tuple[int, int, Sequence[Any]]],
                     constants: Mapping[str, str], out: "BuildContext") -> Iterator[dict[str, str]]:
        """Rows of one CSV or XLSX export through the column mapping."""
        kind = "line" if self.format == "csv" else "row"
        csv_format = self.format == "csv"
        is_blank = _blank_text if csv_format else _blank_cells
        columns: list[_Column] | None = None
        width = 0
        for record, line, cells in records:
            if columns is None:
                if record < self.header_row:
                    continue
                columns = self._compile(path, cells, f"{kind} {line}")
                width = len(cells)
                continue
            if is_blank(cells):
                if self.skip_blank:
                    continue
            elif csv_format and len(cells) != width and (len(cells) < width or not is_blank(cells[width:])):
                raise BuildError(f"{path}, line {line}: {len(cells)} values but the header has {width} columns "
                                 f"(an unquoted {self.delimiter!r} or line break inside a value?)")
            row = dict(constants)
            for c in columns:
                raw = cells[c.index] if c.index < len(cells) else None
                try:
                    value = c.convert(raw)
                except ValueError as exc:
                    raise BuildError(f"{self._where(path, kind, line, c)}: value {raw!r} for {c.field.id}: "
                                     f"expected {exc}") from None
                if c.check_chars and out.forbidden.search(value):
                    raise BuildError(f"{self._where(path, kind, line, c)}: value {raw!r} for {c.field.id} contains "
                                     f"the output delimiter ({out.delimiter_name}), a line break or a control "
                                     f"character, which a {out.format} data file cannot carry")
                row[c.field.id] = value
            yield row
        if columns is None:
            raise BuildError(f"{path}: no header {kind} {self.header_row} ({self.key('header_row')}): "
                             f"the export is empty or shorter")

    def _where(self, path: Path, kind: str, line: int, column: _Column) -> str:
        if kind == "line":
            return f"{path}, line {line}, column {column.header!r}"
        from openpyxl.utils import get_column_letter

        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return (f"{path}{sheet}, row {line}, column {column.header!r} "
                f"(cell {get_column_letter(column.index + 1)}{line})")

    def _spec_rows(self, path: Path, out: "BuildContext") -> Iterator[dict[str, str]]:
        """Rows of an export that is already a spec data file, copied value for value."""
        ids = self.unit.field_ids
        codec = CSV_ENCODINGS[out.encoding]
        line_no = 0
        try:
            # newline="\n": split on LF only, so the US delimiter and a stray CR stay inside their line
            with path.open("r", encoding=codec, newline="\n") as fh:
                for line_no, line in enumerate(fh, start=1):
                    if not line.endswith("\n"):
                        raise BuildError(f"{path}, line {line_no}: the last line has no line terminator; "
                                         f"the file looks truncated")
                    text = line[:-2] if line.endswith("\r\n") else line[:-1]
                    values = text.split(out.delimiter)
                    if len(values) != len(ids):
                        raise BuildError(
                            f"{path}, line {line_no}: {len(values)} values separated by {out.delimiter_name}, but "
                            f"{self.unit.name} ({self.unit.code}) has {len(ids)} fields; format = \"spec\" expects "
                            f"a {self.unit.code} data file in {out.encoding} with {out.delimiter_name} delimiters")
                    bad = next((v for v in values if out.forbidden.search(v)), None)
                    if bad is not None:
                        raise BuildError(f"{path}, line {line_no}: value {bad!r} contains a CR or a control "
                                         f"character, which a {out.format} data file cannot carry")
                    yield dict(zip(ids, values))
        except UnicodeDecodeError as exc:
            raise BuildError(f"{path}, near line {line_no + 1}: not valid {out.encoding} text ({exc.reason}); "
                             f"format = \"spec\" exports must be in output.encoding") from None
        except OSError as exc:
            raise BuildError(f"{path}: cannot read the export ({exc.strerror})") from None


def _blank_text(cells: Sequence[str]) -> bool:
    return not "".join(cells).strip()


def _blank_cells(cells: Sequence[Any]) -> bool:
    return all(c is None or (c.__class__ is str and not c.strip()) for c in cells)


def _ignored(name: str) -> bool:
    """Files a glob must not pick up: hidden, still being written, or Excel's lock files."""
    return name.startswith((".", "~$")) or name.endswith(".part")


# -- building --------------------------------------------------------------------------
def load_mappings(config: AgentConfig, spec: Spec) -> dict[str, UnitMapping]:
    """Every configured unit's mapping, checked, keyed by unit name in the spec's order."""
    parsed: dict[str, UnitMapping] = {}
    for name, table in config.units.items():
        m = UnitMapping.from_config(name, table, spec, config.path)
        if m.unit.name in parsed:
            raise ConfigError(f"{m.unit.name} ({m.unit.code}) is configured twice", file=config.path,
                              key=f"units.{name}")
        parsed[m.unit.name] = m
    return {u.name: parsed[u.name] for u in spec.upload_units if u.name in parsed}


def build_delivery(config: AgentConfig, spec: Spec, cycle: str, resend: int, out_dir: Path, mode: str = "P",
                   units: list[str] | None = None) -> Path:
    """Build the configured units (or ``units``) of ``cycle`` from the exports into ``out_dir``; return the check file."""
    if mode not in UPLOAD_MODES:
        raise ValueError(f"mode must be one of {', '.join(UPLOAD_MODES)}, got {mode!r}")
    try:
        cyc = Cycle.parse(cycle)
    except ValueError as exc:
        raise ConfigError(f"{exc} (YYYYMM, YYYYQn, YYYYHn or YYYY)") from None
    mappings = load_mappings(config, spec)
    if not mappings:
        raise ConfigError("no [units.<NAME>] table: nothing to build", file=config.path, key="units")
    if units is not None:
        wanted = []
        for name in units:
            unit_name = spec.unit(name).name if spec.has_unit(name) else name
            if unit_name not in mappings:
                raise ConfigError(f"{name} has no [units.{unit_name}] table", file=config.path,
                                  key=f"units.{unit_name}")
            wanted.append(unit_name)
        selected = [m for n, m in mappings.items() if n in wanted]
    else:
        selected = list(mappings.values())
    out = BuildContext.of(config, cyc)
    writer = DeliveryWriter(spec, Path(out_dir), mode, config.party, cyc.id, resend=resend,
                            encoding=config.output.encoding, delimiter=config.output.delimiter, newline="\n")
    done = False
    try:
        for m in selected:
            with writer.unit(m.unit.name, fmt=config.output.format) as uw:
                for row in m.rows(config.export_dir, out):
                    uw.write(row)
        check = writer.close()
        done = True
        return check
    finally:
        if not done:
            # why: without its check file HQ never takes the files, but half a delivery left
            # in the spool would mislead whoever looks at it next
            for entry in writer.entries:
                (Path(out_dir) / entry.name).unlink(missing_ok=True)
