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
skip_rows_matching = ["合计", "小计", "总计"]  # total rows (the default); [] keeps every row
amount_unit = "万元"                    # money counted in 万元 (or a table FIELD = "万元"); default 元
own_rows_only = true                   # a local network's agent: only its LATN_ID rows (default for a network)

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

Coded fields (a code of an enumerated list) accept the list's own Chinese and English
names and their short forms (``武汉`` -> ``027``, ``是`` -> ``Y``) with no table at all; see
``codes.py``. A province's own names go in one ``[codes.<Domain>]`` table of the config,
used by every unit and field of that list; a per-field ``values`` table still works and is
asked first. Title and unit rows above ``header_row`` are ignored (rows keep Excel's
numbers); total rows (``skip_rows_matching``, default 合计/小计/总计 in a row's first three
cells) are left out; ``amount_unit = "万元"`` multiplies money exactly; thousands separators
in the wrong place (``12,3456.70``) are refused; a local network's agent keeps only its own
rows of a province-wide export (``own_rows_only``).

Mapping mistakes raise ConfigError naming the file and key
(``units.VIP_SUMMARY.columns.CUST_CNT``). Values that cannot be converted are collected —
every one in the build, up to MAX_PROBLEMS — and raised together as ExportDataError (a
BuildError, exit status 1): each MappingProblem names the export file, sheet, row, column
header and cell, the value, what was expected (English and Chinese) and the line of the
generated file the row became. ``build_delivery`` also writes the build's source map beside
the delivery (``provenance.py``).
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

from ._exceptions import BuildError, ConfigError, ExportProblems
from .codes import CodeNames, fold, suggestion_for
from .config import AgentConfig
from .provenance import SourceCell, SourceRecorder, column_letter

FORMATS = ("csv", "xlsx", "spec")
EXTENSION_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".txt": "spec"}
PLACEHOLDERS = ("cycle", "party", "year", "month")
# Python codecs for the encodings a CSV export may declare; GBK and GB2312 text is valid GB18030.
CSV_ENCODINGS = {"UTF-8": "utf-8-sig", "UTF8": "utf-8-sig", "GB18030": "gb18030", "GBK": "gb18030",
                 "GB2312": "gb18030"}
_COMMON_KEYS = {"source", "format"}
_TABLE_KEYS = {"columns", "constants", "values", "values_strict", "dates", "defaults", "header_row", "skip_blank",
               "skip_rows_matching", "amount_unit", "own_rows_only"}
# Rows whose first cells start with one of these words are totals, not records (skip_rows_matching).
TOTAL_WORDS = ("合计", "小计", "总计")
TOTAL_COLUMNS = 3  # how many leading cells of a row are looked at for them
# amount_unit: what a money column's numbers count in; multiplied exactly (Decimal) into yuan.
AMOUNT_UNITS = {"元": Decimal(1), "千元": Decimal(1000), "万元": Decimal(10000), "百万元": Decimal(1000000),
                "亿元": Decimal(100000000)}
MAX_PROBLEMS = 1000  # problems kept (and reported) per build; the rest are only counted
KEYS_BY_FORMAT = {
    "csv": frozenset(_COMMON_KEYS | _TABLE_KEYS | {"encoding", "delimiter"}),
    "xlsx": frozenset(_COMMON_KEYS | _TABLE_KEYS | {"sheet"}),
    "spec": frozenset(_COMMON_KEYS),
}
ALL_KEYS = frozenset().union(*KEYS_BY_FORMAT.values())
_CURRENCY = ("RMB", "CNY", "¥", "￥", "$")
_SPACES_AND_SEPARATORS = re.compile(r"[\s,，]+")
# Digits grouped by thousands: 1,060,103 or 1 234; anything else with a separator (12,3456) is refused.
_GROUPED = re.compile(r"\d{1,3}(?:[\s,，]\d{3})+|\d+")
_INTEGER = re.compile(r"([+-]?)(\d+)(?:\.0*)?")
_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d")
_DATETIME_FORMATS = ("%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                     "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y.%m.%d %H:%M:%S")
# XML 1.0 cannot carry these control characters at all.
_XML_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f"


# -- value normalisation ---------------------------------------------------------------
class ValueProblem(ValueError):
    """What a value was expected to be, in English (``str``) and Chinese (``zh``)."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.zh = zh


_EXPECT_INTEGER = ("an integer (digits, optionally with thousands separators)", "整数（数字，可带千位分隔符）")
_EXPECT_NUMBER = ("a number such as 1234.50, 1,234.50 or ¥1,234.50", "数字，如 1234.50、1,234.50 或 ¥1,234.50")
_BAD_GROUPING = ("digits grouped by thousands (1,060,103.91): {text!r} has a separator in the wrong place",
                 "按千位分组的数字（如 1,060,103.91）：“{text}”的分隔符位置不对")


def _check_grouping(text: str) -> None:
    """Refuse thousands separators in the wrong place: 12,3456.70 is never read as 123456.70."""
    body = text.strip().lstrip("(+-¥￥$").rstrip(")元").strip()
    for symbol in ("RMB", "CNY"):
        if body.upper().startswith(symbol):
            body = body[len(symbol):].strip()
    whole = body.split(".", 1)[0].lstrip("+-").strip()
    if whole and not _GROUPED.fullmatch(whole) and re.fullmatch(r"[\d\s,，]+", whole):
        raise ValueProblem(_BAD_GROUPING[0].format(text=text), _BAD_GROUPING[1].format(text=text))


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
    bad = ValueProblem(*_EXPECT_INTEGER)
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if not (math.isfinite(value) and value == int(value)):
            raise bad
        return str(int(value))
    if not isinstance(value, str):
        raise bad
    m = _INTEGER.fullmatch(_SPACES_AND_SEPARATORS.sub("", value))
    if not m:
        raise bad
    _check_grouping(value)
    return str(int(m[1] + m[2]))


def _decimal(value: Any, scale: int | None, factor: Decimal | None = None) -> str:
    expected = _EXPECT_NUMBER[0]
    if isinstance(value, bool):
        raise ValueProblem(*_EXPECT_NUMBER)
    if isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueProblem(*_EXPECT_NUMBER)
        # why: XLSX stores binary floats; their shortest repr is the number the user typed
        # (0.1+0.2 -> 0.30000000000000004, rounded to 0.30 below), never the float's exact binary value.
        d = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueProblem(*_EXPECT_NUMBER)
        d = value
    elif isinstance(value, str):
        d = _parse_money(value, expected)
        _check_grouping(value)
    else:
        raise ValueProblem(*_EXPECT_NUMBER)
    if factor is not None:
        d = d * factor  # exact: Decimal times an integer power of ten
    try:
        if scale is not None:
            d = d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ValueProblem(f"{expected}, with at most 28 digits", f"{_EXPECT_NUMBER[1]}，最多 28 位") from None
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
        raise ValueProblem(expected, _EXPECT_NUMBER[1])
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
        raise ValueProblem("a date" if not with_time else "a date and time", "日期" if not with_time else "日期时间")
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
        raise ValueProblem(f"a {'date-time' if with_time else 'date'} in the form {date_format!r}",
                           f"格式为 {date_format} 的{'日期时间' if with_time else '日期'}")
    if with_time:
        raise ValueProblem("a date-time such as 2026-10-05 14:30:00 or 20261005143000",
                           "日期时间，如 2026-10-05 14:30:00 或 20261005143000")
    raise ValueProblem("a date such as 2026-10-05, 2026/10/05 or 20261005", "日期，如 2026-10-05、2026/10/05 或 20261005")


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


CUSTOMERS, CONTACTS = "VIP_CUST_INFO", "VIP_CUST_CONTACT"


@dataclass(frozen=True)
class BuildContext:
    """The output settings and placeholder values of one build: what the built files can carry."""

    format: str
    encoding: str
    delimiter: str
    delimiter_name: str
    forbidden: re.Pattern[str]
    values: Mapping[str, str]
    # what coded fields are resolved against: the spec, the cycle's first day, the province's tables
    spec: Spec | None = None
    day: dt.date | None = None
    codes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    party: str = ""
    # a local network's build: the customers of its own rows of VIP_CUST_INFO, so that their
    # contacts (which carry no LATN_ID) are kept and the other networks' are not
    own_customers: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, config: AgentConfig, cycle: Cycle, spec: Spec | None = None) -> "BuildContext":
        """The context of building ``cycle`` with ``config``'s output settings (and ``spec``'s code lists)."""
        out = config.output
        delim = DELIMITERS[out.delimiter]
        bad = "\r\n" + (_XML_FORBIDDEN if out.format == "xml" else re.escape(delim))
        return cls(out.format, out.encoding, delim, out.delimiter, re.compile(f"[{bad}]"),
                   placeholders(config.party, cycle), spec, cycle.begin, dict(config.codes), config.party)

    def code_names(self, fld: Field) -> CodeNames | None:
        """How ``fld``'s names map to its codes in this build (None: not an enumerated code, or no spec)."""
        if self.spec is None or self.day is None:
            return None
        return CodeNames.for_field(self.spec, fld, self.day, self.codes)


@dataclass
class MappingProblem:
    """One export value that could not be mapped: where it is, what it was, what was expected."""

    source: SourceCell
    field: str
    value: Any
    expected_en: str
    expected_zh: str
    legacy_where: str  # the export's full path with line/row and column, as earlier versions said it
    data_file: str | None = None  # the generated file and line the row became (or would have)
    data_line: int | None = None
    text_en: str | None = None  # instead of "value ... for ...: expected ...", when that does not fit

    @property
    def what_en(self) -> str:
        """The problem without its place."""
        return self.text_en or f"value {self.value!r} for {self.field}: expected {self.expected_en}"

    @property
    def message_en(self) -> str:
        """``<path>, line 3, column '期末客户数': value '十' for CUST_CNT: expected an integer ...``."""
        return f"{self.legacy_where}: {self.what_en}"

    @property
    def message_zh(self) -> str:
        """``汇总.csv 第3行 期末客户数列 (B3)：CUST_CNT 的值“十”不可用，应为整数……``."""
        return f"{self.source.describe_zh()}：{self.field} 的值“{self.value}”不可用，应为{self.expected_zh}"

    def describe(self) -> str:
        """Both languages with the cell and the generated line, one problem per line."""
        built = f" [{self.data_file}:{self.data_line}]" if self.data_file else ""
        return (f"{self.source.describe_zh()}：{self.field} 的值“{self.value}”不可用，应为{self.expected_zh}{built} / "
                f"{self.source.describe_en()}: {self.what_en}{built}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for --json reports)."""
        return {"export": self.source.export, "sheet": self.source.sheet, "row": self.source.row,
                "column": self.source.column, "cell": self.source.cell, "field": self.field,
                "value": self.value if isinstance(self.value, (str, int, float)) or self.value is None
                else str(self.value),
                "expected_en": self.expected_en, "expected_zh": self.expected_zh, "file": self.data_file,
                "line": self.data_line}


class ExportDataError(ExportProblems):
    """The exports hold values that cannot be mapped: every one of them (up to MAX_PROBLEMS) in ``problems``.

    A data problem, not a configuration one: exit status 1. ``str()`` lists them in English
    (one per line, as earlier versions worded a single one); :meth:`report` in both languages
    with cells and generated lines.
    """

    exit_code = 1

    def __init__(self, problems: list[MappingProblem], more: int = 0) -> None:
        self.problems = problems
        self.more = more
        lines = [p.message_en for p in problems]
        if more:
            lines.append(f"... and {more} more")
        super().__init__(problems, "\n".join(lines))

    def report(self) -> str:
        """Every problem in Chinese and English, one per line, with a count first."""
        total = len(self.problems) + self.more
        head = f"导出文件中有 {total} 个值无法转换 / {total} value(s) in the exports cannot be mapped"
        lines = [head, *(p.describe() for p in self.problems)]
        if self.more:
            lines.append(f"……另有 {self.more} 个 / ... and {self.more} more")
        return "\n".join(lines)


class ProblemLog:
    """The mapping problems of one build, kept up to MAX_PROBLEMS."""

    def __init__(self) -> None:
        self.problems: list[MappingProblem] = []
        self.more = 0

    def add(self, problem: MappingProblem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.problems) or bool(self.more)

    def raise_if_any(self) -> None:
        if self:
            raise ExportDataError(self.problems, self.more)


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
    skip_rows_matching: tuple[str, ...] = TOTAL_WORDS
    amount_units: Mapping[str, str] = field(default_factory=dict)  # field id -> 万元 etc. (not 元)
    own_rows_only: bool | None = None  # None: yes for a local network's agent

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
        if "skip_rows_matching" in table:
            words = table["skip_rows_matching"]
            if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                raise fail(f"skip_rows_matching must be a list of words such as [\"合计\", \"小计\"] (or [] to keep "
                           f"every row), got {words!r}", "skip_rows_matching")
            kwargs["skip_rows_matching"] = tuple(fold(w) for w in words)
        for key in ("skip_blank", "values_strict", "own_rows_only"):
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

        amount_units: dict[str, str] = {}
        if "amount_unit" in table:
            au = table["amount_unit"]
            allowed = ", ".join(AMOUNT_UNITS)
            if isinstance(au, str):
                if au not in AMOUNT_UNITS:
                    raise fail(f"amount_unit must be one of {allowed}, got {au!r}", "amount_unit")
                # a unit-wide setting concerns the money fields, not bandwidths or other decimals
                amount_units = {f.id: au for f in unit.fields if f.type == "decimal" and f.id.endswith("_AMT")}
            elif isinstance(au, Mapping):
                for fid, u in field_table("amount_unit").items():
                    if unit.field(fid).type != "decimal":
                        raise fail(f"{fid} is a {unit.field(fid).type} field, not an amount", "amount_unit", fid)
                    if u not in AMOUNT_UNITS:
                        raise fail(f"amount_unit must be one of {allowed}, got {u!r}", "amount_unit", fid)
                    amount_units[fid] = u
            else:
                raise fail(f"amount_unit must be {allowed} or a table FIELD = unit, got {au!r}", "amount_unit")
            amount_units = {k: v for k, v in amount_units.items() if v != "元"}
            kwargs["amount_units"] = amount_units

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
        """Every record of the unit, as field id -> lexical value, streamed from the exports.

        Values that cannot be mapped are collected; ExportDataError lists them all at the end.
        """
        problems = ProblemLog()
        for row, _, _, _ in self.sourced_rows(export_dir, out, problems):
            yield row
        problems.raise_if_any()

    def sourced_rows(self, export_dir: Path, out: "BuildContext", problems: ProblemLog,
                     recorder: SourceRecorder | None = None
                     ) -> Iterator[tuple[dict[str, str], int, int, list[MappingProblem]]]:
        """(row, export id in ``recorder`` or -1, export row number, the row's problems) for every record.

        A row with problems is still yielded (its bad values empty), so the generated lines keep
        their numbers while every problem of the exports is collected in ``problems``.
        """
        constants = self.constant_values(out)
        for path in self.source_files(export_dir, out.values):
            if self.format == "spec":
                for row in self._spec_rows(path, out):
                    yield row, -1, 0, []
            elif self.format == "csv":
                yield from self._mapped_rows(path, self._csv_records(path), constants, out, problems, recorder)
            else:
                yield from self._mapped_rows(path, self._xlsx_records(path), constants, out, problems, recorder)

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
                                 f"{', '.join(repr(s) for s in wb.sheetnames)} / 工作簿中没有工作表“{self.sheet}”，"
                                 f"现有：{'、'.join(wb.sheetnames)}")
            # why: many CRM tools write a wrong <dimension>, which makes read-only mode cut rows and columns
            ws.reset_dimensions()
            # why min_row: Excel's own row numbers, even when the sheet's first rows are empty
            for no, cells in enumerate(ws.iter_rows(min_row=1, values_only=True), start=1):
                yield no, no, cells
        finally:
            wb.close()

    def _compile(self, path: Path, header: Sequence[Any], where: str, out: "BuildContext") -> list[_Column]:
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
            compiled.append(_Column(fld, hits[0], col, self._converter(fld, out),
                                    fld.type not in ("integer", "decimal", "date", "datetime")))
        return compiled

    def _converter(self, fld: Field, out: "BuildContext | None" = None) -> Callable[[Any], str]:
        """raw cell -> lexical value for one field: default, translation, names, then normalisation."""
        default = self.defaults.get(fld.id, "")
        table = self.values.get(fld.id)
        strict = self.values_strict
        # why: an explicit per-field table with values_strict is the complete list (as it always was)
        table_only = strict and table is not None
        names = out.code_names(fld) if out is not None and not table_only else None
        date_format = self.dates.get(fld.id)
        unit_name = self.amount_units.get(fld.id)
        factor = AMOUNT_UNITS[unit_name] if unit_name else None
        typed: Callable[[Any], str] | None = {
            "integer": _integer, "decimal": lambda v: _decimal(v, fld.scale, factor),
            "date": lambda v: _date(v, date_format, with_time=False),
            "datetime": lambda v: _date(v, date_format, with_time=True)}.get(fld.type)
        spec, day, codes = (out.spec, out.day, out.codes) if out is not None else (None, None, {})
        resolved: dict[str, str] = {}

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
                if table_only:
                    shown = ", ".join(repr(k) for k in list(table)[:20])
                    hint = ""
                    if spec is not None and day is not None:
                        near = suggestion_for(spec, fld, text, day, codes)
                        hint = f"; the code list suggests {' or '.join(near)}" if near else ""
                    raise ValueProblem(f"one of {shown} ({self.key('values', fld.id)}, values_strict = true){hint}",
                                       f"{self.key('values', fld.id)} 中列出的值之一（values_strict = true）："
                                       f"{'、'.join(list(table)[:20])}")
            if names is not None:
                text = raw if raw.__class__ is str else as_text(raw)
                code = resolved.get(text)
                if code is not None:
                    return code
                code = names.resolve(text)  # AmbiguousName is a ValueError with both candidates
                if strict and code == text and code not in names.all_codes:
                    near = names.suggest(text)
                    hint = f"; did you mean {' or '.join(near)}?" if near else ""
                    hint_zh = f"；是否应为 {' 或 '.join(near)}？" if near else ""
                    raise ValueProblem(f"a code of {names.domain} or one of its names (values_strict = true){hint}",
                                       f"{names.domain} 中的代码或其名称（values_strict = true）{hint_zh}")
                if len(resolved) < 4096:  # a column holds few distinct names: resolve each once
                    resolved[text] = code
                return code
            if typed is None:
                return raw if raw.__class__ is str else as_text(raw)
            return typed(raw)

        return convert

    def _is_total(self, cells: Sequence[Any], marks: frozenset[str]) -> bool:
        """Whether a row is a total (合计/小计/总计 at the start of one of its first cells).

        ``marks``: the words' last characters (计 for 合计), a cheap test before folding a cell.
        """
        for c in cells[:TOTAL_COLUMNS]:
            if c.__class__ is str and c and any(ch in c for ch in marks):
                text = fold(c)
                for w in self.skip_rows_matching:
                    # 合计, 合计：, 小计(武汉), 全省合计 — but not a name such as 总计算机公司
                    if text.endswith(w) or (text.startswith(w) and (len(text) == len(w)
                                                                     or not text[len(w)].isalnum())):
                        return True
        return False

    def _source_cell(self, path: Path, rel: str, line: int, column: _Column) -> SourceCell:
        return SourceCell(rel, self.sheet if self.format == "xlsx" else None, line, column.header,
                          f"{column_letter(column.index)}{line}")

    def _mapped_rows(self, path: Path, records: Iterator[tuple[int, int, Sequence[Any]]],
                     constants: Mapping[str, str], out: "BuildContext", problems: ProblemLog,
                     recorder: SourceRecorder | None = None
                     ) -> Iterator[tuple[dict[str, str], int, int, list[MappingProblem]]]:
        """Rows of one CSV or XLSX export through the column mapping, with where each came from."""
        kind = "line" if self.format == "csv" else "row"
        csv_format = self.format == "csv"
        is_blank = _blank_text if csv_format else _blank_cells
        columns: list[_Column] | None = None
        width = 0
        export_id = -1
        rel = recorder.relative(path) if recorder is not None else path.name
        own = self.own_rows_only
        if own is None:
            own = len(out.party) >= 3  # a local network's agent reads the province's export
        own_party = out.party if own and "LATN_ID" in self.columns else None
        collect = own_party is not None and self.unit.name == CUSTOMERS
        # contacts have no LATN_ID: a network keeps those of its own customers, once it knows them
        by_customer = (own and self.unit.name == CONTACTS and "NATIONAL_CUST_ID" in self.columns
                       and bool(out.own_customers))
        skip_totals = bool(self.skip_rows_matching)
        marks = frozenset(w[-1] for w in self.skip_rows_matching)
        for record, line, cells in records:
            if columns is None:
                if record < self.header_row:
                    continue
                columns = self._compile(path, cells, f"{kind} {line}", out)
                width = len(cells)
                if recorder is not None:
                    export_id = recorder.export(path, self.sheet if self.format == "xlsx" else None,
                                                {c.field.id: (c.header, c.index) for c in columns})
                continue
            if is_blank(cells):
                if self.skip_blank:
                    continue
            elif skip_totals and self._is_total(cells, marks):
                continue
            elif csv_format and len(cells) != width and (len(cells) < width or not is_blank(cells[width:])):
                raise BuildError(f"{path}, line {line}: {len(cells)} values but the header has {width} columns "
                                 f"(an unquoted {self.delimiter!r} or line break inside a value?)")
            row = dict(constants)
            found: list[MappingProblem] = []
            for c in columns:
                raw = cells[c.index] if c.index < len(cells) else None
                try:
                    value = c.convert(raw)
                except ValueError as exc:
                    zh = getattr(exc, "zh", str(exc))
                    found.append(MappingProblem(self._source_cell(path, rel, line, c), c.field.id, raw, str(exc), zh,
                                                self._where(path, kind, line, c)))
                    row[c.field.id] = ""
                    continue
                if c.check_chars and out.forbidden.search(value):
                    found.append(MappingProblem(
                        self._source_cell(path, rel, line, c), c.field.id, raw,
                        f"no output delimiter ({out.delimiter_name}), line break or control character, which a "
                        f"{out.format} data file cannot carry",
                        f"不含输出分隔符（{out.delimiter_name}）、换行或控制字符（{out.format} 数据文件无法承载）",
                        self._where(path, kind, line, c),
                        text_en=f"value {raw!r} for {c.field.id} contains the output delimiter ({out.delimiter_name}), "
                                f"a line break or a control character, which a {out.format} data file cannot carry"))
                    row[c.field.id] = ""
                    continue
                row[c.field.id] = value
            if own_party is not None and not found and row.get("LATN_ID") not in (own_party, ""):
                continue  # another local network's row of the province's export
            if collect:
                out.own_customers.add(row.get("NATIONAL_CUST_ID", ""))
            elif by_customer and not found and row.get("NATIONAL_CUST_ID") not in out.own_customers:
                continue  # a contact of another local network's customer
            for p in found:
                problems.add(p)
            yield row, export_id, line, found
        if columns is None:
            raise BuildError(f"{path}: no header {kind} {self.header_row} ({self.key('header_row')}): "
                             f"the export is empty or shorter")

    def _where(self, path: Path, kind: str, line: int, column: _Column) -> str:
        if kind == "line":
            return f"{path}, line {line}, column {column.header!r}"
        sheet = f", sheet {self.sheet!r}" if self.sheet else ""
        return (f"{path}{sheet}, row {line}, column {column.header!r} "
                f"(cell {column_letter(column.index)}{line})")

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
    # customers first: a local network keeps the contacts of the customers it kept
    selected.sort(key=lambda m: m.unit.name != CUSTOMERS)
    check_code_tables(config, spec)
    out = BuildContext.of(config, cyc, spec)
    writer = DeliveryWriter(spec, Path(out_dir), mode, config.party, cyc.id, resend=resend,
                            encoding=config.output.encoding, delimiter=config.output.delimiter, newline="\n")
    recorder = SourceRecorder(Path(out_dir), config.export_dir)
    problems = ProblemLog()
    xml = config.output.format == "xml"
    done = False
    try:
        for m in selected:
            with writer.unit(m.unit.name, fmt=config.output.format) as uw:
                recorder.file(uw.name, config.output.format, m.unit.name)
                for row, export_id, export_row, found in m.sourced_rows(config.export_dir, out, problems, recorder):
                    uw.write(row)
                    if export_id >= 0:
                        recorder.add(uw.name, uw.rows, export_id, export_row)
                    for p in found:
                        p.data_file, p.data_line = uw.name, uw.rows + 2 if xml else uw.rows
        problems.raise_if_any()
        check = writer.close()
        recorder.close()
        done = True
        return check
    finally:
        if not done:
            # why: without its check file HQ never takes the files, but half a delivery left
            # in the spool would mislead whoever looks at it next
            recorder.abort()
            for entry in writer.entries:
                (Path(out_dir) / entry.name).unlink(missing_ok=True)


def check_code_tables(config: AgentConfig, spec: Spec) -> None:
    """The province's ``[codes.<Domain>]`` tables name enumerated lists and codes they hold (ConfigError if not)."""
    for domain, table in config.codes.items():
        key = f"codes.{domain}"
        try:
            dom = spec.domain(domain)
        except KeyError:
            coded = sorted({f.domain for u in spec.upload_units for f in u.fields if f.type == "code" and f.domain})
            raise ConfigError(f"no code list {domain!r}; the lists upload fields use: {', '.join(coded)}",
                              file=config.path, key=key) from None
        if dom.kind != "enumerated":
            raise ConfigError(f"{domain} is a pattern, not a list of codes: there is nothing to translate to",
                              file=config.path, key=key)
        known = {c for v in dom.versions for c in v.codes}
        for name, code in table.items():
            if code not in known:
                raise ConfigError(f"{name!r} = {code!r}: {code!r} is not a code of {domain}", file=config.path,
                                  key=f"{key}.{name}")
