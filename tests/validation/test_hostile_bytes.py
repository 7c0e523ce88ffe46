"""Any bytes get a verdict (issue 14): valid deliveries mutated byte by byte never make the engine raise.

Property-based: hypothesis flips, inserts and deletes bytes of a data file or the check file
of a valid delivery — both formats (txt, XML), both encodings (UTF-8, GB18030) — inserting
control characters, NUL, huge digit runs, broken multi-byte sequences and XML markup. Every
result must be a report with a status whose feedback files and JSON report are written and
parse back, holding no character XML 1.0 cannot carry. Bounded (200 examples, no deadline).
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from lxml import etree

from schemas import Spec
from schemas.conventions import find_forbidden, shown
from schemas.validation import (
    ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED, Report, file_feedback_xml, receipt_xml, record_feedback_xml,
    render_text, report_json, validate_delivery,
)
from schemas.validation.readers import DeclarationScanner, find_declaration
from tests.support.deliveries import refresh_check, valid_rows

KINDS = [("txt", "UTF-8"), ("txt", "GB18030"), ("xml", "UTF-8"), ("xml", "GB18030")]
# What the property test mutates: the four above with the default delimiter, and the two
# control-character delimiters (a TAB or US inside a line is then no forbidden character).
FUZZ_KINDS = [(fmt, enc, "PIPE") for fmt, enc in KINDS] + [("txt", "UTF-8", "TAB"), ("txt", "GB18030", "US")]

HOSTILE = [
    b"\x00", b"\x01", b"\x08", b"\x0b", b"\x1b", b"\x1f", b"\x7f", b"\t", b"\r", b"\n", b"\r\n", b"|",
    b"\xc2\x85", b"\xef\xbf\xbe", b"\xef\xbf\xbf",  # C1 and non-characters in UTF-8
    b"\x81\x30\x81\x30", b"\x84\x31\xa4\x39",  # U+0080 and U+FFFF in GB18030
    b"\xff", b"\xfe", b"\x80", b"\xed\xa0\x80", b"\xe4\xb8", b"\x81", b"\x81\x30", b"\xf4\x90\x80\x80",  # invalid
    b"9" * 5000, b"-" + b"9" * 4400 + b".5", b"1e999999", b"\xef\xbc\x91\xef\xbc\x92",  # huge, exponent, fullwidth
    b"\xc2\xb2",  # superscript two: str.isdigit() says yes
    b"&#0;", b"&#1;", b"&#xFFFF;", b"&#99999999999;", b"&xxe;", b"<", b">", b"&", b"]]>", b"<!--", b"-->",
    b"<!DOCTYPE x>", b"<!ENTITY e 'x'>", b"<?pi?>", b"<![CDATA[", b"</ROW>", b"<ROW>",
    b"\xef\xbb\xbf", b"\xe3\x80\x80",  # BOM, ideographic space
]


@dataclass(frozen=True)
class Mutation:
    """One edit of one file's bytes at a relative position."""

    kind: str  # flip | insert | delete
    at: float  # 0..1 of the file's length
    data: bytes = b""
    length: int = 0
    xor: int = 1

    def apply(self, data: bytes) -> bytes:
        """The edited bytes."""
        i = min(int(self.at * len(data)), len(data))
        if self.kind == "flip" and data:
            i = min(i, len(data) - 1)
            return data[:i] + bytes([data[i] ^ self.xor]) + data[i + 1:]
        if self.kind == "insert":
            return data[:i] + self.data + data[i:]
        return data[:i] + data[i + self.length:]


positions = st.floats(min_value=0, max_value=1, allow_nan=False)
mutations = st.one_of(
    st.builds(Mutation, st.just("flip"), positions, xor=st.integers(1, 255)),
    st.builds(Mutation, st.just("insert"), positions, data=st.one_of(st.sampled_from(HOSTILE), st.binary(min_size=1, max_size=6))),
    st.builds(Mutation, st.just("delete"), positions, length=st.integers(1, 40)),
)


@pytest.fixture(scope="module")
def bases(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], Path]:
    """One valid delivery per format, encoding and delimiter, written once."""
    root = tmp_path_factory.mktemp("hostile")
    out: dict[tuple[str, ...], Path] = {}
    for fmt, enc, delimiter in FUZZ_KINDS:
        folder = valid_rows(spec).write(root / f"{fmt}-{enc}-{delimiter}", fmt=fmt, encoding=enc, delimiter=delimiter)
        out[(fmt, enc, delimiter)] = folder
        if delimiter == "PIPE":
            out[(fmt, enc)] = folder
    return out


def assert_answerable(report: Report) -> None:
    """A status, and every output written, parsed back and free of what XML 1.0 cannot carry."""
    assert report.status in (ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED)
    for xml in (file_feedback_xml(report, "17"), record_feedback_xml(report, "17")):
        etree.fromstring(xml)
    text = report_json(report)
    assert json.loads(text.encode("utf-8"))["status"] == report.status
    render_text(report, max_findings=None)
    for f in report.findings:
        for value in (f.message_zh, f.message_en, f.file, f.value, f.expected, f.field, f.xpath):
            assert value is None or find_forbidden(value) is None, f.as_dict()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(kind=st.sampled_from(FUZZ_KINDS), target=st.integers(0, 6), edits=st.lists(mutations, min_size=1, max_size=3),
       refresh=st.booleans())
def test_mutated_deliveries_always_get_a_verdict(spec: Spec, bases: dict[tuple[str, ...], Path],
                                                 kind: tuple[str, str, str], target: int, edits: list[Mutation],
                                                 refresh: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        folder = Path(shutil.copytree(bases[kind], Path(tmp) / "d"))
        files = sorted(folder.iterdir())
        victim = files[target % len(files)]
        data = victim.read_bytes()
        for m in edits:
            data = m.apply(data)
        victim.write_bytes(data)
        if refresh and victim.suffix != ".chk":
            refresh_check(folder)  # so tier 1 passes and the deeper tiers read the mutated bytes
        report = validate_delivery(sorted(folder.iterdir()), spec)
        assert_answerable(report)
        if any(b"\x00" in p.read_bytes() for p in folder.iterdir()):
            assert report.status == REJECTED, dict(report.counts)


@pytest.mark.parametrize("fmt,encoding", KINDS)
@pytest.mark.parametrize("bad", [b"\x00", b"\x01", b"\x7f", b"9" * 5000, b"\xff", b"<!DOCTYPE x>"])
def test_each_hostile_byte_in_each_format_is_rejected_with_a_code(spec: Spec, bases: dict[tuple[str, ...], Path],
                                                                   tmp_path: Path, fmt: str, encoding: str,
                                                                   bad: bytes) -> None:
    folder = Path(shutil.copytree(bases[(fmt, encoding)], tmp_path / "d"))
    f = next(p for p in folder.iterdir() if "_31201_" in p.name)
    f.write_bytes(f.read_bytes().replace("湖北".encode(encoding.lower()), bad, 1))
    refresh_check(folder)
    report = validate_delivery(sorted(folder.iterdir()), spec)
    assert_answerable(report)
    if fmt == "txt" and bad.startswith(b"<"):  # in delimited text it is just text
        assert report.status == ACCEPTED, dict(report.counts)
        return
    assert report.status == REJECTED and report.codes(), dict(report.counts)
    assert all(re.fullmatch(r"[EW][0-9]{3}|R[0-9]{5}-[0-9]{2}|X-[0-9]{3}", c) for c in report.codes())


def test_receipt_names_any_file_name(spec: Spec) -> None:
    names = ["P_42_202610_00.chk", "a\x00b", "c\x01\x7f\x85", "d\ufffe\uffff", "e\ud800", "f\udcff"]
    xml = receipt_xml(spec.namespace, "1", "P_42_202610_00.chk", "20261105102213",
                      [{"name": n, "size": 1, "sha256": "0" * 64} for n in names], spec.version)
    got = [e.get("name") for e in etree.fromstring(xml).iter("{*}File")]
    assert got == [shown(n) for n in names] and got[1] == "a\\x00b"


# -- the DOCTYPE search: any chunking finds the same, in flat memory ---------------------------
_TOKEN = re.compile(rb"<!--.*?(?:-->|\Z)|<\?.*?(?:\?>|\Z)|<!\[CDATA\[.*?(?:\]\]>|\Z)|<![A-Za-z]{1,12}", re.S)


def _reference(data: bytes) -> tuple[int, str] | None:
    for m in _TOKEN.finditer(data):
        if m.group()[:2] == b"<!" and m.group()[2:3].isalpha():
            return data.count(b"\n", 0, m.start()) + 1, m.group().decode("ascii")
    return None


pieces = st.lists(st.sampled_from([b"<!--", b"-->", b"<?", b"?>", b"<![CDATA[", b"]]>", b"<!DOCTYPE", b"<!ENTITY",
                                   b"<!", b"<", b"!", b"-", b"?", b">", b"]", b"\n", b"x", b"<ROW>", b"\xe4\xb8\xad",
                                   b"<!-", b"<![", b"DOCTYPE", b"<!D"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(parts=pieces, sizes=st.lists(st.integers(1, 20), min_size=1, max_size=8))
def test_declaration_scanner_does_not_depend_on_chunks(parts: list[bytes], sizes: list[int]) -> None:
    data = b"".join(parts)
    scanner = DeclarationScanner()
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        scanner.feed(data[i:i + n])
        i, k = i + n, k + 1
    scanner.feed(b"", final=True)
    assert scanner.found == _reference(data)


def test_declaration_search_streams_in_flat_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    with big.open("wb") as fh:
        fh.write(b'<?xml version="1.0"?>\n')
        for _ in range(32):
            fh.write(b"<!--" + b"x\n" * (512 * 1024) + b"-->")
        fh.write(b"<!DOCTYPE x>\n<x/>\n")
    tracemalloc.start()
    try:
        found = find_declaration(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == (2 + 32 * 512 * 1024, "<!DOCTYPE")
    assert peak < 4 * 1024 * 1024, peak  # a chunk or two, not the 32 MiB file


def test_one_huge_line_is_cut_and_read_in_flat_memory(tmp_path: Path) -> None:
    from schemas.validation.readers import MAX_LINE, text_lines

    f = tmp_path / "one_line.txt"
    with f.open("wb") as fh:
        fh.write(b"a|b\n")
        for _ in range(16):
            fh.write(b"x" * (1 << 20))
        fh.write(b"\nc|d\n")
    tracemalloc.start()
    try:
        lengths = [len(line) for line in text_lines(f, "UTF-8", block=1 << 20)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lengths == [3, MAX_LINE, 3]
    assert peak < 8 * 1024 * 1024, peak  # a block or two, not the 16 MiB line
