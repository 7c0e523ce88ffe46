"""The columnar core decodes text once, as it reads (issue 18): tier 1's findings stay exactly the row core's.

With ``core="columnar"`` tier 1 hashes and counts a text file but leaves decoding it to the
core (Python's codec for GB18030, polars' validation for UTF-8). A delivery with bytes not in
its encoding — alone, next to another tier-1 error,
in a unit the screen hands to the row path, in the second file of a delivery, or as an
incomplete character at the very end — must still get the row core's report: E110 with its
line, in its place, the run stopped at tier 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas import Spec
from schemas.validation import ValidationOptions, validate_delivery
from tests.support.deliveries import refresh_check, valid_rows


def _report(folder: Path, spec: Spec, core: str) -> dict[str, Any]:
    r = validate_delivery(sorted(folder.iterdir()), spec, None, ValidationOptions(core=core, workers=1))
    return {"status": r.status, "stopped": r.stopped_at_tier, "counts": dict(r.counts),
            "findings": [f.as_dict() for f in r.findings], "files": {k: v.as_dict() for k, v in r.files.items()}}


def _break(folder: Path, unit: str, line: int, bad: bytes, refresh: bool = True, tail: bytes = b"") -> None:
    path = next(p for p in folder.iterdir() if f"_{unit}_" in p.name)
    lines = path.read_bytes().split(b"\n")[:-1]
    i = line % len(lines)
    lines[i] = lines[i] + bad
    path.write_bytes(b"\n".join(lines) + b"\n" + tail)
    if refresh:
        refresh_check(folder)


CASES = {
    "one bad byte late in the customers": dict(unit="31201", line=-1, bad=b"\x81"),
    "a lead byte before LF in the products": dict(unit="31203", line=2, bad=b"\xfe"),
    "bad bytes and a stale check file (E106/E108 first)": dict(unit="31202", line=1, bad=b"\x80\x80", refresh=False),
    "an incomplete character at the end, no final LF": dict(unit="32001", line=0, bad=b"", tail=b"\x81"),
    "bad bytes in a summary unit": dict(unit="32003", line=0, bad=b"\xff\xff"),
}


@pytest.mark.parametrize("core", ["columnar", "auto"])  # auto: these small files are read by the row path
@pytest.mark.parametrize("encoding", ["GB18030", "UTF-8"])
@pytest.mark.parametrize("case", list(CASES))
def test_undecodable_text_is_reported_by_tier_1_as_the_row_core_does(spec: Spec, tmp_path: Path, case: str,
                                                                     encoding: str, core: str) -> None:
    folder = valid_rows(spec, customers=30).write(tmp_path / "d", encoding=encoding)
    _break(folder, **CASES[case])
    rows, other = _report(folder, spec, "rows"), _report(folder, spec, core)
    assert rows["stopped"] == 1 and rows["status"] == "rejected"
    assert "E110" in rows["counts"] or "E106" in rows["counts"] or "E113" in rows["counts"]
    assert other == rows


@pytest.mark.parametrize("encoding", ["GB18030", "UTF-8"])
def test_a_valid_delivery_is_decoded_once_and_accepted(spec: Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       encoding: str) -> None:
    import codecs

    from schemas.validation import readers

    folder = valid_rows(spec, customers=30).write(tmp_path / "d", encoding=encoding)
    decoders: list[str] = []
    real = codecs.getincrementaldecoder

    def counting(name: str) -> Any:
        decoders.append(name)
        return real(name)

    monkeypatch.setattr(readers.codecs, "getincrementaldecoder", counting)
    columnar = _report(folder, spec, "columnar")
    assert columnar["status"] == "accepted" and not decoders  # tier 1 left the decoding to the core
    assert columnar == _report(folder, spec, "rows") and decoders  # the row core's tier 1 decodes
