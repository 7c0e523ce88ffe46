"""Tier 1's byte pass runs beside tiers 2-4 for the files the columnar core reads (issue 18).

Under ``auto`` and ``columnar`` the digest, size, row count and line-end checks of such a
file run on a thread while the core already checks its rows. Whatever that pass finds, the
report must be the one a run in order gives (the row core's): tier 1's findings in their
places and nothing from tiers 2-4. These deliveries break tier 1 in every way its byte pass
can see, in both formats and encodings, and compare the columnar core's report with the
row core's; the last tests make sure the speculation really runs, and that a failure of the
core itself is neither hidden nor mistaken for tier 1's.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from schemas import Spec
from schemas.validation import ValidationOptions, engine, validate_delivery
from tests.support.deliveries import data_file, refresh_check, rewrite_check, valid_rows


def _report(folder: Path, spec: Spec, core: str) -> dict[str, Any]:
    r = validate_delivery(sorted(folder.iterdir()), spec, None, ValidationOptions(core=core, workers=1))
    return {"status": r.status, "stopped": r.stopped_at_tier, "counts": dict(r.counts),
            "findings": [f.as_dict() for f in r.findings], "files": {k: v.as_dict() for k, v in r.files.items()}}


def _edit(folder: Path, unit: str, change: Callable[[bytes], bytes], refresh: bool = True) -> None:
    path = data_file(folder, unit)
    path.write_bytes(change(path.read_bytes()))
    if refresh:
        refresh_check(folder)


def _declared_rows(folder: Path, unit: str, delta: int) -> None:
    name = data_file(folder, unit).name

    def edit(check: Any) -> Any:
        return check.with_entries([type(e)(e.name, e.size, e.rows + (delta if e.name == name else 0), e.period,
                                           e.generated_at, e.sha256) for e in check.entries])
    rewrite_check(folder, edit)


def _second_line(data: bytes, new: bytes) -> bytes:
    first = data.index(b"\n")
    return data[:first] + new + data[first + 1:]


TEXT_CASES: dict[str, Callable[[Path], None]] = {
    "a stale check file (E106, E108)": lambda f: _edit(f, "31201", lambda d: d + d[:d.index(b"\n") + 1], False),
    "a row count the check file does not state (E107)": lambda f: _declared_rows(f, "31201", 1),
    "no LF after the last line (E113)": lambda f: _edit(f, "31202", lambda d: d[:-1]),
    "a bare CR inside a line (E111)": lambda f: _edit(f, "31201", lambda d: d.replace(b"|", b"|\r", 1)),
    "CRLF after the first line only (E111 mixed)": lambda f: _edit(f, "31201", lambda d: _second_line(d, b"\r\n")),
    "two files with the same bytes (E114)": lambda f: (
        shutil.copyfile(data_file(f, "32003"), data_file(f, "32002")), refresh_check(f)),
    "a stale digest in a file read after the big one": lambda f: _edit(f, "32003", lambda d: d.replace(b"0", b"1", 1),
                                                                          False),
}


@pytest.mark.parametrize("encoding", ["GB18030", "UTF-8"])
@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_a_text_delivery_tier_1_refuses_gets_the_row_cores_report(spec: Spec, tmp_path: Path, case: str,
                                                                  encoding: str) -> None:
    folder = valid_rows(spec, customers=40).write(tmp_path / "d", encoding=encoding)
    TEXT_CASES[case](folder)
    rows = _report(folder, spec, "rows")
    assert rows["stopped"] == 1 and rows["status"] == "rejected"
    assert _report(folder, spec, "columnar") == rows


XML_CASES: dict[str, Callable[[Path], None]] = {
    "a stale check file (E106, E108)": lambda f: _edit(f, "31201", lambda d: d + b"\n", False),
    "a stale digest next to a renamed root (E108, E116)": lambda f: _edit(
        f, "31201", lambda d: d.replace(b'party="42"', b'party="43"', 1), False),
    "a DOCTYPE with an entity (E205, refused before parsing)": lambda f: _edit(
        f, "31201", lambda d: d.replace(b"?>", b'?>\n<!DOCTYPE x [<!ENTITY e "boom">]>', 1)),
}


@pytest.mark.parametrize("case", list(XML_CASES))
def test_an_xml_delivery_tier_1_refuses_gets_the_row_cores_report(spec: Spec, tmp_path: Path, case: str) -> None:
    folder = valid_rows(spec, customers=40).write(tmp_path / "d", fmt="xml", encoding="GB18030")
    XML_CASES[case](folder)
    rows = _report(folder, spec, "rows")
    assert rows["status"] == "rejected"
    assert _report(folder, spec, "columnar") == rows


def test_the_byte_pass_runs_beside_the_core_and_a_clean_delivery_is_read_once(
        spec: Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = valid_rows(spec, customers=40).write(tmp_path / "d", encoding="GB18030")
    runs: list[bool] = []
    settle = engine.DeliveryValidator.settle_scans

    def spying(self: engine.DeliveryValidator) -> bool:
        runs.append(bool(self.pending_scans))
        return settle(self)

    monkeypatch.setattr(engine.DeliveryValidator, "settle_scans", spying)
    columnar = _report(folder, spec, "columnar")
    assert runs == [True]  # speculated, and it stood: no second run
    assert columnar["status"] == "accepted" and columnar == _report(folder, spec, "rows")
    runs.clear()
    _report(folder, spec, "auto")  # these files are small: the row path reads them after tier 1, in order
    assert runs == [False]


def test_a_core_failing_on_a_file_tier_1_refuses_gives_tier_1s_report(
        spec: Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.validation import columnar

    folder = valid_rows(spec, customers=40).write(tmp_path / "d", encoding="UTF-8")
    TEXT_CASES["a stale check file (E106, E108)"](folder)
    rows = _report(folder, spec, "rows")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the core met what tier 1 refuses")

    monkeypatch.setattr(columnar, "check_text_file", broken)
    assert _report(folder, spec, "columnar") == rows


def test_a_core_failing_on_a_clean_delivery_is_not_hidden(spec: Spec, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.validation import columnar

    folder = valid_rows(spec, customers=40).write(tmp_path / "d", encoding="UTF-8")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the core")

    monkeypatch.setattr(columnar, "check_text_file", broken)
    with pytest.raises(RuntimeError, match="a bug in the core"):
        _report(folder, spec, "columnar")
