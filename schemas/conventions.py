"""File names, check files and cycle ids as CONVENTIONS.md defines them."""
from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Iterable

from ._exceptions import CheckFileError, FileNameError

MODES = ("P", "T", "D")
UPLOAD_MODES = ("P", "T")
ENCODINGS = ("UTF-8", "GB18030")
DELIMITERS = {"PIPE": "|", "TAB": "\t", "COMMA": ",", "CARET": "^", "US": "\x1f"}
EXTENSIONS = ("txt", "xml")
TEMP_SUFFIX = ".part"
CHECK_SUFFIX = ".chk"

_PARTY = r"00|[1-9][0-9]|0[0-9]{2,3}"
_PERIOD = r"[0-9]{4}(?:0[1-9]|1[0-2]|Q[1-4]|H[12]|V[0-9]{2})?"
DATA_NAME_RE = re.compile(
    rf"^(?P<mode>[PTD])_(?P<party>{_PARTY})_(?P<period>{_PERIOD})_(?P<unit>[0-9]{{5}})"
    rf"_(?P<resend>[0-9]{{2}})_(?P<seq>[0-9]{{3}})\.(?P<ext>txt|xml)\Z")
CHECK_NAME_RE = re.compile(rf"^(?P<mode>[PTD])_(?P<party>{_PARTY})_(?P<period>{_PERIOD})_(?P<resend>[0-9]{{2}})\.chk\Z")
DATA_NAME_FORM = "{MODE}_{PARTY}_{PERIOD}_{UNIT}_{RESEND}_{SEQ}.txt|xml, e.g. P_42_202610_32001_00_001.txt"
CHECK_NAME_FORM = "{MODE}_{PARTY}_{PERIOD}_{RESEND}.chk, e.g. P_42_202610_00.chk"
# \Z, not $: "$" also matches before a trailing line break ("202610\n" is no cycle id).
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
STAMP_RE = re.compile(r"^[0-9]{14}\Z")
REAL_STAMP = "a real date and time YYYYMMDDHHMMSS / 有效的日期时间YYYYMMDDHHMMSS"
# A size, row or file count: ASCII digits only (str.isdigit also takes "²"), at most 18 of them.
_COUNT = re.compile(r"[0-9]{1,18}").fullmatch

# Characters no value, name or check-file line may carry (CONVENTIONS.md §5, docs/validation.md):
# every control character (Unicode category Cc: C0, DEL, C1) except TAB, and what XML 1.0
# cannot carry at all (lone surrogates, U+FFFE, U+FFFF). TAB is allowed inside a value
# (where TAB is the delimiter it cannot occur there), CR and LF never are (they end lines).
FORBIDDEN_RANGES = ((0x00, 0x08), (0x0A, 0x1F), (0x7F, 0x9F), (0xD800, 0xDFFF), (0xFFFE, 0xFFFF))
FORBIDDEN_TEXT = "no control characters (TAB allowed), no U+FFFE/U+FFFF / 不含控制字符（制表符除外）及U+FFFE/U+FFFF"


def forbidden_pattern(allowed: str = "") -> re.Pattern[str]:
    """A regular expression matching one forbidden character, less those in ``allowed`` (a delimiter)."""
    spans: list[tuple[int, int]] = []
    for lo, hi in FORBIDDEN_RANGES:
        cuts = sorted(ord(c) for c in allowed if lo <= ord(c) <= hi)
        for c in cuts:
            if lo < c:
                spans.append((lo, c - 1))
            lo = c + 1
        if lo <= hi:
            spans.append((lo, hi))
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in spans) + "]")


_FORBIDDEN = forbidden_pattern()
find_forbidden = _FORBIDDEN.search


def shown(text: str) -> str:
    """``text`` with every forbidden character written as an escape (``14\\x0006``), for reports.

    The result is plain text that any XML 1.0 document, JSON file, terminal or database can
    carry; text without forbidden characters comes back unchanged.
    """
    if _FORBIDDEN.search(text) is None:
        return text
    return _FORBIDDEN.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_real_stamp(stamp: str) -> bool:
    """Whether a ``YYYYMMDDHHMMSS`` stamp names a real moment (no month 13, no second 99)."""
    if STAMP_RE.match(stamp) is None:
        return False
    try:
        moment = dt.datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[8:10]),
                             int(stamp[10:12]), int(stamp[12:14]))
    except ValueError:
        return False
    return moment.year >= 1900


@dataclass(frozen=True)
class DataFileName:
    """The parts of a data file's name."""

    mode: str
    party: str
    period: str
    unit: str
    resend: int
    seq: int
    ext: str

    @classmethod
    def parse(cls, name: str) -> "DataFileName":
        """Parse a data file name; FileNameError when it does not follow §3."""
        m = DATA_NAME_RE.match(name)
        if not m:
            raise FileNameError(name)
        g = m.groupdict()
        return cls(g["mode"], g["party"], g["period"], g["unit"], int(g["resend"]), int(g["seq"]), g["ext"])

    def __str__(self) -> str:
        return f"{self.mode}_{self.party}_{self.period}_{self.unit}_{self.resend:02d}_{self.seq:03d}.{self.ext}"

    @property
    def check_name(self) -> "CheckFileName":
        """The check file name of the delivery this file belongs to."""
        return CheckFileName(self.mode, self.party, self.period, self.resend)


@dataclass(frozen=True)
class CheckFileName:
    """The parts of a check file's name."""

    mode: str
    party: str
    period: str
    resend: int

    @classmethod
    def parse(cls, name: str) -> "CheckFileName":
        """Parse a check file name; FileNameError when it does not follow §3."""
        m = CHECK_NAME_RE.match(name)
        if not m:
            raise FileNameError(name)
        g = m.groupdict()
        return cls(g["mode"], g["party"], g["period"], int(g["resend"]))

    def __str__(self) -> str:
        return f"{self.mode}_{self.party}_{self.period}_{self.resend:02d}{CHECK_SUFFIX}"

    @property
    def stem(self) -> str:
        """The name without ``.chk``: the base of receipt and feedback file names."""
        return str(self)[: -len(CHECK_SUFFIX)]

    def data_name(self, unit: str, seq: int = 1, ext: str = "txt") -> DataFileName:
        """The name of a data file of this delivery."""
        return DataFileName(self.mode, self.party, self.period, unit, self.resend, seq, ext)


def is_check_file(name: str) -> bool:
    """Whether a name looks like a check file (final name, not a temporary one)."""
    return name.endswith(CHECK_SUFFIX)


def is_ignored(name: str) -> bool:
    """Temporary and hidden files a receiver must not take (CONVENTIONS.md §7)."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIX)


@dataclass(frozen=True)
class CheckEntry:
    """One ``F`` line of a check file."""

    name: str
    size: int
    rows: int
    period: str
    generated_at: str
    sha256: str
    line: int = 0


@dataclass(frozen=True)
class CheckFile:
    """A parsed check file: the header and its file lines."""

    spec_version: str
    mode: str
    party: str
    period: str
    resend: int
    generated_at: str
    encoding: str
    delimiter_name: str
    entries: tuple[CheckEntry, ...]

    @property
    def delimiter(self) -> str:
        """The delimiter character the header declares."""
        return DELIMITERS[self.delimiter_name]

    @property
    def name(self) -> CheckFileName:
        """The file name this check file should have."""
        return CheckFileName(self.mode, self.party, self.period, self.resend)

    def render(self, newline: str = "\n") -> bytes:
        """The check file's bytes."""
        lines = ["|".join(["H", self.spec_version, self.mode, self.party, self.period, f"{self.resend:02d}",
                           self.generated_at, self.encoding, self.delimiter_name, str(len(self.entries))])]
        for e in self.entries:
            lines.append("|".join(["F", e.name, str(e.size), str(e.rows), e.period, e.generated_at, e.sha256]))
        return (newline.join(lines) + newline).encode("utf-8")

    def with_entries(self, entries: Iterable[CheckEntry]) -> "CheckFile":
        """A copy listing other files."""
        return replace(self, entries=tuple(entries))

    @classmethod
    def parse(cls, data: bytes) -> "CheckFile":
        """Parse a check file's bytes; CheckFileError names the first bad line."""
        header_form = "H|spec version|mode|party|period|resend|YYYYMMDDHHMMSS|encoding|delimiter|file count"
        file_form = "F|file name|size|rows|period|YYYYMMDDHHMMSS|sha256"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckFileError("check file is not UTF-8", 1, repr(data[exc.start:exc.start + 8]), "UTF-8") from None
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise CheckFileError("check file is empty", 1, "", header_form)
        for no, line in enumerate(lines, start=1):
            if _FORBIDDEN.search(line) is not None:  # a NUL in a name, a stray CR, U+FFFF, ...
                raise CheckFileError("forbidden character", no, shown(line[:200]), FORBIDDEN_TEXT)
        h = lines[0].split("|")
        if len(h) != 10 or h[0] != "H":
            raise CheckFileError("bad header", 1, lines[0][:200], header_form)
        _, version, mode, party, period, resend, stamp, encoding, delim, count = h
        if mode not in MODES or not re.fullmatch(_PARTY, party) or not re.fullmatch(_PERIOD, period) \
                or not re.fullmatch(r"[0-9]{2}", resend) or not STAMP_RE.match(stamp) or not _COUNT(count):
            raise CheckFileError("bad header", 1, lines[0][:200], header_form)
        if not is_real_stamp(stamp):
            raise CheckFileError("generation time is not a real date and time", 1, stamp, REAL_STAMP)
        entries = []
        for no, line in enumerate(lines[1:], start=2):
            f = line.split("|")
            if len(f) != 7 or f[0] != "F" or not _COUNT(f[2]) or not _COUNT(f[3]) \
                    or not STAMP_RE.match(f[5]) or not SHA256_RE.match(f[6]):
                raise CheckFileError("bad file line", no, line[:200], file_form)
            if not is_real_stamp(f[5]):
                raise CheckFileError("generation time is not a real date and time", no, f[5], REAL_STAMP)
            entries.append(CheckEntry(f[1], int(f[2]), int(f[3]), f[4], f[5], f[6], no))
        if int(count) != len(entries):
            raise CheckFileError("file count differs from the number of F lines", 1, count, str(len(entries)))
        return cls(version, mode, party, period, int(resend), stamp, encoding, delim, tuple(entries))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        _feed(h, fh, chunk)
    return h.hexdigest()


def _feed(h: "hashlib._Hash", fh: BinaryIO, chunk: int) -> None:
    while True:
        block = fh.read(chunk)
        if not block:
            return
        h.update(block)


def now_stamp(at: dt.datetime | None = None) -> str:
    """``YYYYMMDDHHMMSS`` in Beijing time (UTC+8), the standard's time stamps."""
    beijing = dt.timezone(dt.timedelta(hours=8))
    if at is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        # Reproducible builds convention: a fixed clock makes generated deliveries byte-identical.
        at = dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), dt.timezone.utc)
    moment = (at or dt.datetime.now(dt.timezone.utc)).astimezone(beijing)
    return moment.strftime("%Y%m%d%H%M%S")


# -- cycles ---------------------------------------------------------------------------
CYCLE_RE = re.compile(r"^(?P<year>[0-9]{4})(?:(?P<month>0[1-9]|1[0-2])|Q(?P<q>[1-4])|H(?P<h>[12]))?\Z")


@dataclass(frozen=True)
class Cycle:
    """A reporting cycle id with its frequency and period."""

    id: str
    freq: str
    begin: dt.date
    end: dt.date

    @classmethod
    def parse(cls, cycle_id: str) -> "Cycle":
        """Parse ``202610``, ``2026Q3``, ``2026H2`` or ``2026``; ValueError otherwise."""
        m = CYCLE_RE.match(cycle_id)
        if not m:
            raise ValueError(f"not a cycle id: {cycle_id!r}")
        year = int(m["year"])
        if m["month"]:
            first, last, freq = int(m["month"]), int(m["month"]), "M"
        elif m["q"]:
            first, freq = 3 * int(m["q"]) - 2, "Q"
            last = first + 2
        elif m["h"]:
            first, freq = 6 * int(m["h"]) - 5, "H"
            last = first + 5
        else:
            first, last, freq = 1, 12, "Y"
        begin = dt.date(year, first, 1)
        end = dt.date(year, last, calendar.monthrange(year, last)[1])
        return cls(cycle_id, freq, begin, end)

    def previous(self) -> "Cycle":
        """The cycle of the same frequency just before this one."""
        return self._shift(-1)

    def next(self) -> "Cycle":
        """The cycle of the same frequency just after this one."""
        return self._shift(1)

    def same_period_last_year(self) -> "Cycle":
        """The same cycle one year earlier (for year-on-year figures)."""
        return Cycle.parse(f"{self.begin.year - 1}{self.id[4:]}")

    def _shift(self, step: int) -> "Cycle":
        y = self.begin.year
        if self.freq == "Y":
            return Cycle.parse(f"{y + step}")
        per_year = {"M": 12, "Q": 4, "H": 2}[self.freq]
        index = int(self.id[4:] if self.freq == "M" else self.id[5:]) - 1 + step
        y += index // per_year
        index %= per_year
        suffix = {"M": f"{index + 1:02d}", "Q": f"Q{index + 1}", "H": f"H{index + 1}"}[self.freq]
        return Cycle.parse(f"{y}{suffix}")

    @property
    def months_into_year(self) -> int:
        """How many months of the year the period reaches (for year-to-date figures)."""
        return self.end.month
