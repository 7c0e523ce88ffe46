"""A big XML file is read in parts on several processes (issue 18), with exactly the report of one read.

``readers.xml_parts`` cuts a file at ``<ROW`` starts; each part is parsed as a document of
its own (the prolog and root start tag before it, padded so lines keep their numbers; the
root closed after it), checked by the row path on a worker, and merged: row numbers in
XPaths are counted from the file's start. A part that stops parsing (the file is broken, or
a cut fell inside a comment or a value) makes the delivery be validated again, reading the
file whole. Every test compares the split run with a serial one, findings in order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas import Spec
from schemas.validation import ValidationOptions, validate_delivery
from schemas.validation.readers import xml_parts
from tests.support.deliveries import DeliveryRows, data_file, refresh_check, valid_rows
from tests.support.splits import spy_on_xml_splits


def _report(folder: Path, spec: Spec, **options: Any) -> dict[str, Any]:
    r = validate_delivery(sorted(folder.iterdir()), spec, None, ValidationOptions(**options))
    return {"status": r.status, "stopped": r.stopped_at_tier, "counts": dict(r.counts),
            "findings": [f.as_dict() for f in r.findings], "files": {k: v.as_dict() for k, v in r.files.items()}}


@pytest.fixture
def split_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of XML parts each split read ran on."""
    return spy_on_xml_splits(monkeypatch)


def _compare(folder: Path, spec: Spec, workers: int = 2, cap: int = 1000) -> dict[str, Any]:
    serial = _report(folder, spec, workers=1, cap=cap)
    split = _report(folder, spec, workers=workers, parallel_min_bytes=0, cap=cap)
    assert split == serial
    return serial


def _customers(spec: Spec, n: int = 60) -> DeliveryRows:
    return valid_rows(spec, customers=n)


@pytest.mark.parametrize("workers", [2, 3])
def test_a_valid_xml_delivery_split_gets_the_serial_report(spec: Spec, tmp_path: Path, split_runs: list[int],
                                                           workers: int) -> None:
    folder = _customers(spec).write(tmp_path / "d", fmt="xml", encoding="GB18030")
    assert _compare(folder, spec, workers)["status"] == "accepted"
    assert split_runs and all(n == workers for n in split_runs[:1])  # the split really ran


def test_findings_in_every_part_keep_their_lines_rows_and_order(spec: Spec, tmp_path: Path,
                                                              split_runs: list[int]) -> None:
    rows = _customers(spec)
    info = rows.rows["VIP_CUST_INFO"]
    for i in (2, 31, 57):  # early, middle, late: in every part
        info[i]["JOIN_DATE"] = "20261332"
    info[45]["C_TYPE_ID"] = "ZZZ"
    info[50]["NATIONAL_CUST_ID"] = info[5]["NATIONAL_CUST_ID"]  # a key repeated across parts
    folder = rows.write(tmp_path / "d", fmt="xml", encoding="UTF-8")
    serial = _compare(folder, spec, 3)
    late = [f for f in serial["findings"] if f["code"] == "E304" and f["field"] == "JOIN_DATE"]
    assert [f["xpath"] for f in late][-1] == "/VIP_CUST_INFO/ROW[58]/JOIN_DATE"
    assert serial["status"] == "rejected" and len(serial["counts"]) >= 3
    assert split_runs


def test_the_cap_counts_findings_in_part_order(spec: Spec, tmp_path: Path, split_runs: list[int]) -> None:
    rows = _customers(spec)
    for r in rows.rows["VIP_CUST_INFO"][::4]:
        r["JOIN_DATE"] = "20261332"
    folder = rows.write(tmp_path / "d", fmt="xml", encoding="GB18030")
    serial = _compare(folder, spec, 2, cap=3)
    assert serial["counts"]["E304"] == 15 and sum(f["code"] == "E304" for f in serial["findings"]) == 3


@pytest.mark.parametrize("damage", ["a tag left open late in the file", "a comment holding rows across the middle",
                                    "a CDATA section holding a row tag", "the whole file on one line",
                                    "CR alone as line end", "CRLF line ends"])
def test_a_part_that_stops_parsing_or_a_file_cut_badly_gets_the_serial_report(
        spec: Spec, tmp_path: Path, split_runs: list[int], damage: str) -> None:
    rows_ = _customers(spec)
    for i in (3, 52):  # findings early and late, so that their lines are compared too
        rows_.rows["VIP_CUST_INFO"][i]["JOIN_DATE"] = "20261332"
    folder = rows_.write(tmp_path / "d", fmt="xml", encoding="GB18030")
    path = data_file(folder, "31201")
    data = path.read_bytes()
    rows = data.split(b"<ROW>")
    if damage == "a tag left open late in the file":
        rows[-5] = rows[-5].replace(b"</CUST_NAME>", b"", 1)
    elif damage == "a comment holding rows across the middle":
        rows[25] = b"<!-- " + rows[25]
        rows[35] = rows[35].replace(b"</ROW>", b"</ROW> -->", 1)
    elif damage == "a CDATA section holding a row tag":
        rows[30] = rows[30].replace(b"<ADDRESS>", b"<ADDRESS><![CDATA[<ROW>]]>", 1)
    elif damage == "the whole file on one line":
        data = data.replace(b"\n", b" ")
    else:
        data = data.replace(b"\n", b"\r" if damage.startswith("CR alone") else b"\r\n")
    path.write_bytes(b"<ROW>".join(rows) if damage.startswith("a ") else data)
    refresh_check(folder)
    _compare(folder, spec, 2)
    assert split_runs


def test_only_a_file_with_a_plain_root_is_cut(tmp_path: Path) -> None:
    body = "".join(f"<ROW><A>{i}</A></ROW>\n" for i in range(200))
    plain = tmp_path / "plain.xml"
    plain.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<U xmlns="urn:x" a=">">\n{body}</U>\n')
    prefixed = tmp_path / "prefixed.xml"
    prefixed.write_text(f'<?xml version="1.0"?>\n<k:U xmlns:k="urn:x">\n{body}</k:U>\n')
    commented = tmp_path / "commented.xml"
    commented.write_text(f'<?xml version="1.0"?>\n<!-- before the root -->\n<U>\n{body}</U>\n')
    assert xml_parts(prefixed, 2) is None and xml_parts(commented, 2) is None
    parts = xml_parts(plain, 3)
    assert parts is not None and len(parts) == 3
    data = plain.read_bytes()
    assert [data[p.start:p.start + 5] for p in parts[1:]] == [b"<ROW>", b"<ROW>"]
    assert parts[0].start == 0 and parts[-1].end == len(data) and parts[-1].tail == b""
    for p in parts[1:]:  # the head pads the part onto its own line number
        text = b"".join(iter(lambda s=p.stream(): s.read(7), b""))
        assert text.count(b"\n", 0, len(p.head)) == data.count(b"\n", 0, p.start)
