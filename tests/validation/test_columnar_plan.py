"""The columnar core's screen (issue 18): what it compiles, and that its building blocks mean what Python means."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Spec
from schemas.conventions import DELIMITERS, forbidden_pattern
from schemas.spec import load_spec
from schemas.validation import ValidationOptions, validate_delivery
from schemas.validation.columnar import core as core_mod
from schemas.validation.columnar import reader as col_reader
from schemas.validation.columnar.plan import (
    Unsupported,
    compile_plan,
    forbidden_class,
    rust_pattern,
)
from schemas.validation.compiler import RunContext
from tests.support.deliveries import refresh_check, valid_rows


def _ctx(spec: Spec, **extra: Any) -> RunContext:
    return RunContext(spec=spec, day=dt.date(2026, 10, 1), period="202610", party="42", party_province="42",
                      party_network=None, **extra)


@pytest.mark.parametrize("code", [u.code for u in load_spec().units])
def test_every_unit_compiles_to_a_screen(spec: Spec, code: str) -> None:
    plan = compile_plan(_ctx(spec, list_ids=frozenset({"G420000001"})), spec.unit(code), "|")
    assert plan.nf == len(spec.unit(code).fields)


def test_the_previous_cycle_sends_watched_units_to_the_row_path(spec: Spec) -> None:
    ctx = _ctx(spec, previous={"VIP_SUMMARY": {"k": {}}})
    with pytest.raises(Unsupported):
        compile_plan(ctx, spec.unit("32001"), "|")
    compile_plan(ctx, spec.unit("31201"), "|")  # no previous values for it: screened as usual


@pytest.mark.parametrize("delimiter", list(DELIMITERS.values()))
def test_forbidden_class_matches_exactly_the_characters_python_forbids(delimiter: str) -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    found = pl.Series(chars).str.contains(forbidden_class(delimiter)).to_list()
    python = forbidden_pattern(delimiter).search
    assert [c for c, f in zip(chars, found) if f] == [c for c in chars if python(c)]


def test_unsafe_patterns_are_refused() -> None:
    for pattern in (r"^\d+$", r"^\w+$", r"^(?=a)a$", r"^(a)\1$", r"\bx"):
        with pytest.raises(Unsupported):
            rust_pattern(pattern)


def _spec_patterns() -> list[str]:
    spec = load_spec()
    pats = {f.pattern for u in spec.units for f in u.fields if f.pattern}
    pats |= {d.pattern for d in spec.domains.values() if getattr(d, "kind", None) == "pattern" and d.pattern}
    return sorted(pats)


@settings(max_examples=150, deadline=None)
@given(pattern=st.sampled_from(_spec_patterns()), data=st.data())
def test_spec_patterns_match_in_polars_only_what_python_matches(pattern: str, data: st.DataObject) -> None:
    samples = [data.draw(st.from_regex(pattern, fullmatch=True)),
               data.draw(st.text(st.characters(exclude_categories=["Cs"]), max_size=25)),
               data.draw(st.from_regex(pattern, fullmatch=True)) + data.draw(st.sampled_from([" ", "\x1c", "\u3000", "a"]))]
    got = pl.Series(samples).str.contains(rust_pattern(pattern)).to_list()
    assert got == [re.compile(pattern).fullmatch(s) is not None for s in samples]


def _rows_sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the rows the screen hands to the row path."""
    sent: list[int] = []
    original = core_mod.check_text_file

    def spy(plan: Any, run_rows: Any, *args: Any) -> int:
        def counted(rows: Any) -> int:
            rows = list(rows)
            sent.append(len(rows))
            return run_rows(rows)
        return original(plan, counted, *args)

    monkeypatch.setattr(core_mod, "check_text_file", spy)
    return sent


def test_clean_rows_never_reach_the_row_path(spec: Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _rows_sent(monkeypatch)
    rows = valid_rows(spec, customers=30)
    rows.rows["VIP_CUST_INFO"][7]["CUST_NAME"] = "名 "
    folder = rows.write(tmp_path / "d", encoding="GB18030")
    report = validate_delivery(sorted(folder.iterdir()), spec, None, ValidationOptions(core="columnar"))
    assert dict(report.counts) == {"W301": 1}
    assert sum(sent) == 1  # only the row with the stray space was looked at row by row


def test_batches_and_an_over_long_line_give_the_row_cores_findings(spec: Spec, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(col_reader, "BLOCK", 300)
    monkeypatch.setattr(col_reader, "LONG_LINE", 400)
    rows = valid_rows(spec, customers=25)
    rows.rows["VIP_CUST_INFO"][3]["ADDRESS"] = "长" * 500  # E305, on the over-long-line path
    rows.rows["VIP_CUST_INFO"][11]["JOIN_DATE"] = "20261332"
    rows.rows["VIP_CUST_INFO"][12]["PROV_CUST_ID"] = rows.rows["VIP_CUST_INFO"][2]["PROV_CUST_ID"]
    folder = rows.write(tmp_path / "d", encoding="UTF-8")
    data = next(p for p in folder.iterdir() if "_31201_" in p.name)
    data.write_bytes(data.read_bytes().replace(b"\n", b"\r\n"))  # CRLF throughout
    refresh_check(folder)
    files = sorted(folder.iterdir())
    reference = validate_delivery(files, spec, None, ValidationOptions(core="rows", workers=1))
    columnar = validate_delivery(files, spec, None, ValidationOptions(core="columnar"))
    assert {"E305", "E304", "R31201-04"} <= set(reference.counts)
    assert [f.as_dict() for f in columnar.findings] == [f.as_dict() for f in reference.findings]
    assert columnar.counts == reference.counts
    assert {k: v.as_dict() for k, v in columnar.files.items()} == {k: v.as_dict() for k, v in reference.files.items()}



def test_the_screens_dates_and_times_are_the_row_paths() -> None:
    from schemas.validation.columnar.plan import valid_date, valid_datetime
    from schemas.validation.compiler import _TIMES, valid_dates

    dates = valid_dates()
    near = [f"{y:04d}{m:02d}{d:02d}" for y in (*range(1890, 1910), *range(1996, 2005), *range(2090, 2110))
            for m in range(0, 14) for d in range(0, 33)]
    odd = ["", "2026101", "202610011", "2026-1-1", "+2026101", "２０２６１００１", "2026 101", "-0261001", "20261001\n"]
    text = pl.Series([*near, *sorted(dates)[::97], *odd], dtype=pl.String)
    got = pl.select(valid_date(pl.lit(text))).to_series().to_list()
    assert [t for t, ok in zip(text.to_list(), got) if ok] == [t for t in text.to_list() if t in dates]
    stamps = pl.Series(["20261001" + t for t in sorted(_TIMES)[::7]] + ["20261001" + t for t in
                       ("240000", "236000", "235960", "000000", "23595", "2359599", " 00000")] + ["20261301000000"])
    got = pl.select(valid_datetime(pl.lit(stamps))).to_series().to_list()
    assert [t for t, ok in zip(stamps.to_list(), got) if ok] == [
        t for t in stamps.to_list() if len(t) == 14 and t[:8] in dates and t[8:] in _TIMES]


def test_the_reader_thread_stops_when_the_caller_stops_reading(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "f.txt"
    path.write_bytes(b"".join(f"{n}|x\n".encode() for n in range(20000)))
    before = threading.active_count()
    it = col_reader.batches(path, "UTF-8", block=1024)
    first = next(it)
    assert first.first == 0 and first.count > 0
    it.close()  # the caller gives up after one batch: the producer, blocked on a full queue, must end
    assert threading.active_count() == before
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok|x\n" * 500 + b"\xff|x\n")
    with pytest.raises(UnicodeDecodeError):  # raised on the reader's thread, in its place here
        for _ in col_reader.batches(bad, "GB18030", block=1024):
            pass
    assert threading.active_count() == before


def test_the_fast_split_takes_exact_batches_and_refuses_the_rest(spec: Spec) -> None:
    """The CSV reader's split is used only when the fields' bytes add up to the batch (else the line-by-line split)."""
    plan = compile_plan(_ctx(spec), spec.unit("32003"), "|")
    line = "|".join(["x"] * plan.nf)
    lf = (line + "\n") * 3
    crlf = (line + "\r\n") * 3
    assert core_mod._fast_screen(lf.encode(), 3, plan, "|", False) is not None
    assert core_mod._fast_screen(crlf.encode(), 3, plan, "|", True) is not None
    assert core_mod._fast_screen(crlf.encode(), 3, plan, "|", None) is not None  # CRs counted
    assert core_mod._fast_screen(crlf.encode(), 3, plan, "|", False) is None  # not what tier 1 said: refused
    short = line + "\n" + "|".join(["x"] * (plan.nf - 1)) + "\n" + line + "\n"
    empty = line + "\n\n" + line + "\n"
    long = line + "\n" + line + "|x\n"
    cr_inside = line + "\n" + line.replace("x", "x\ry", 1) + "\n"
    bom_first = "\ufeff" + line + "\n" + line + "\n"  # the reader drops a leading BOM; the row path keeps it
    for bad, n in ((short, 3), (empty, 3), (long, 2), (cr_inside, 2), (bom_first, 2)):
        assert core_mod._fast_screen(bad.encode(), n, plan, "|", None) is None, repr(bad)


def test_a_batch_that_begins_like_a_compressed_stream_is_split_line_by_line(spec: Spec, tmp_path: Path) -> None:
    """polars would decompress it (gzip, zlib, zstd); the row path reads it as text, and so must the screen."""
    plan = compile_plan(_ctx(spec), spec.unit("32003"), "|")
    rest = "|".join(["x"] * (plan.nf - 1)) + "\n"
    for magic in core_mod.COMPRESSED_MAGIC:
        if magic.startswith(b"x"):  # the ones that are text: the first field of a line may hold them
            assert core_mod._fast_screen(magic + b"|" + rest.encode() * 2, 2, plan, "|", False) is None
    for first in ("x^y", "x\x01y"):  # a delivery whose customers file begins so: the row core's report
        rows = valid_rows(spec, customers=5)
        rows.rows["VIP_CUST_INFO"][0]["CYCLE_ID"] = first
        folder = rows.write(tmp_path / repr(first))
        reports = [validate_delivery(sorted(folder.iterdir()), spec, None, ValidationOptions(core=core, workers=1))
                   for core in ("rows", "columnar")]
        assert [f.as_dict() for f in reports[1].findings] == [f.as_dict() for f in reports[0].findings]
        assert reports[0].status == "rejected"


def test_polars_decompresses_exactly_the_formats_the_core_steers_around() -> None:
    """Should a polars upgrade learn another format, add its magic to COMPRESSED_MAGIC (this test says which)."""
    body = b"|a|b\n1|2|3\n"

    def sniffed(prefix: bytes) -> bool:
        try:
            pl.read_csv(prefix + body, separator="|", has_header=False, quote_char=None, infer_schema=False)
        except OSError:
            return True
        except pl.exceptions.PolarsError:
            return False
        return False

    assert all(sniffed(m) for m in core_mod.COMPRESSED_MAGIC)
    others = {"bzip2": b"BZh9", "lz4": b"\x04\x22\x4d\x18", "xz": b"\xfd7zXZ\x00", "zip": b"PK\x03\x04",
              "brotli?": b"\xce\xb2\xcf\x81", "snappy": b"\xff\x06\x00\x00sNaPpY"}
    assert [name for name, m in others.items() if sniffed(m)] == []
