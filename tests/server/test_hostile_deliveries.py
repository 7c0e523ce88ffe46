"""Hostile bytes over real HTTP, on SQLite and PostgreSQL (issue 14): a verdict, never a failure.

Each delivery is uploaded to a live server (cheroot plus an ingestion worker) and must end
``rejected`` with its code and readable feedback files — not ``failed`` with an internal
error such as ``All strings must be XML compatible`` or a PostgreSQL refusal of a NUL.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from lxml import etree
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.ingestion import worker as worker_module
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import Delivery
from province_agent.transport import HttpTransport
from tests.server.conftest import Setup
from tests.server.test_delivery_lifecycle import files_of, wait_final
from tests.support.deliveries import DeliveryRows, data_file, refresh_check, valid_rows

Break = Callable[[DeliveryRows, Path], Path]


def _value(unit: str, field: str, value: str, fmt: str = "txt", encoding: str = "UTF-8") -> Break:
    def make(rows: DeliveryRows, out: Path) -> Path:
        rows.rows[unit][1][field] = value
        return rows.write(out, fmt=fmt, encoding=encoding)
    return make


def _bytes(unit: str, edit: Callable[[bytes], bytes], fmt: str = "txt") -> Break:
    def make(rows: DeliveryRows, out: Path) -> Path:
        rows.write(out, fmt=fmt)
        f = data_file(out, unit)
        f.write_bytes(edit(f.read_bytes()))
        refresh_check(out)
        return out
    return make


def _check_line(edit: Callable[[list[bytes]], None]) -> Break:
    def make(rows: DeliveryRows, out: Path) -> Path:
        rows.write(out)
        chk = next(out.glob("*.chk"))
        lines = chk.read_bytes().split(b"\n")
        edit(lines)
        chk.write_bytes(b"\n".join(lines))
        return out
    return make


def _nul_in_listed_name(lines: list[bytes]) -> None:
    lines[1] = lines[1].replace(b"_001.txt", b"_001\x00.txt", 1)


def _huge_size(lines: list[bytes]) -> None:
    parts = lines[1].split(b"|")
    parts[2] = b"9" * 5000
    lines[1] = b"|".join(parts)


def _odd_file_name(rows: DeliveryRows, out: Path) -> Path:
    rows.write(out)
    f = data_file(out, "32002")
    shutil.copy(f, f.with_name(f.name + "\uffff"))  # XML 1.0 cannot carry U+FFFF: the receipt must still be written
    return out


def _period(period: str) -> Break:
    """The delivery renamed to a period no calendar has (the check file's name and lines say so too)."""
    def make(rows: DeliveryRows, out: Path) -> Path:
        rows.write(out)
        for f in out.iterdir():
            f.rename(f.with_name(f.name.replace("_202610_", f"_{period}_")))
        chk = next(out.glob("*.chk"))
        chk.write_bytes(chk.read_bytes().replace(b"|202610|", f"|{period}|".encode()).replace(
            b"_202610_", f"_{period}_".encode()))
        return out
    return make


CASES: dict[str, tuple[Break, str]] = {
    "period 0000": (_period("0000"), "E602"),
    "period 9999": (_period("9999"), "E602"),
    "period 0001": (_period("0001"), "E602"),
    "a list version as period": (_period("2026V02"), "E602"),
    "NUL in a text value (UTF-8)": (_value("VIP_CUST_INFO", "CUST_NAME", "测试\x00公司"), "E310"),
    "control character in a number (GB18030)": (_value("VIP_SUMMARY", "CUST_CNT", "14\x0006", encoding="GB18030"),
                                                "E310"),
    "C1 control in an XML value": (_value("VIP_CUST_INFO", "CUST_NAME", "测试\x85公司", fmt="xml"), "E310"),
    "5000-digit count": (_value("VIP_SUMMARY", "CUST_CNT", "9" * 5000), "E305"),
    "NUL in an XML file": (_bytes("32002", lambda b: b.replace(b"<ROW>", b"<ROW>\x00", 1), fmt="xml"), "E202"),
    "DOCTYPE after 100 KiB of comment": (_bytes("32002", lambda b: b.replace(
        b"?>\n", b"?>\n<!--" + b"x" * 102400 + b'-->\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n', 1),
        fmt="xml"), "E205"),
    "NUL in a check-file name": (_check_line(_nul_in_listed_name), "E103"),
    "5000-digit size in the check file": (_check_line(_huge_size), "E103"),
    "U+FFFF in a file name": (_odd_file_name, "E101"),
}


@pytest.fixture
def hubei(setup: Setup, live_server: Server) -> HttpTransport:
    """Province 42's HTTP client against the live server, with cycle 202610 open."""
    setup.cycle("202610")
    return HttpTransport(live_server.url, setup.province("42"))


def test_hostile_deliveries_are_rejected_with_their_code(hubei: HttpTransport, tmp_path: Path, spec: Any) -> None:
    receipts = {}
    for i, (name, (make, _code)) in enumerate(CASES.items()):
        folder = make(valid_rows(spec), tmp_path / f"d{i}")
        status, receipt = hubei.upload(files_of(folder))
        assert status == 202, (name, receipt)
        etree.fromstring(hubei.get_bytes(f"/api/v1/deliveries/{receipt['delivery_id']}/receipt.xml"))
        receipts[name] = receipt["delivery_id"]
    for name, (_make, code) in CASES.items():
        d = wait_final(hubei, receipts[name])
        assert d["status"] == "rejected", (name, d.get("failure"), d["counts"])
        assert code in {c["code"] for c in d["counts"]}, (name, d["counts"])
        fbr = etree.fromstring(hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbr.xml"))
        assert f'code="{code}"'.encode() in etree.tostring(fbr), name
        etree.fromstring(hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbf.xml"))
        report = hubei.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
        assert report["status"] == "rejected" and any(f["code"] == code for f in report["findings"]), name


def test_the_escaped_value_reaches_the_province(hubei: HttpTransport, tmp_path: Path, spec: Any) -> None:
    folder = _value("VIP_SUMMARY", "CUST_CNT", "14\x0006")(valid_rows(spec), tmp_path / "d")
    _, receipt = hubei.upload(files_of(folder))
    d = wait_final(hubei, receipt["delivery_id"])
    assert d["status"] == "rejected"
    report = hubei.get_json(f"/api/v1/deliveries/{d['delivery_id']}/report")
    [e310] = [f for f in report["findings"] if f["code"] == "E310"]
    assert (e310["line"], e310["field"], e310["value"]) == (2, "CUST_CNT", "14\\x0006")
    assert e310["file"].endswith("_32001_00_001.txt")
    fbr = etree.fromstring(hubei.get_bytes(f"/api/v1/deliveries/{d['delivery_id']}/feedback.fbr.xml"))
    assert "14\\x0006" in [v.text for v in fbr.iter("{*}Value")]


def test_xml_comments_inside_rows_are_accepted_and_consolidated(hubei: HttpTransport, tmp_path: Path,
                                                                spec: Any) -> None:
    """A valid file the server itself then reads back (facts, later comparisons) must not fail there."""
    folder = _bytes("32002", lambda b: b.replace(b"<ROW>", b"<ROW><!-- checked --><?note x?>"), fmt="xml")(
        valid_rows(spec), tmp_path / "d")
    _, receipt = hubei.upload(files_of(folder))
    d = wait_final(hubei, receipt["delivery_id"])
    assert d["status"] == "accepted", (d.get("failure"), d["counts"])
    assert "32002" in {v["unit"] for v in d["versions"]}


def test_an_unexpected_error_fails_the_delivery_with_a_stable_message(hubei: HttpTransport, tmp_path: Path,
                                                                      spec: Any, runtime: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kw: Any) -> Any:
        raise ValueError("All strings must be XML compatible: \x00 internal detail")

    monkeypatch.setattr(worker_module, "validate_delivery", broken)
    _, receipt = hubei.upload(files_of(valid_rows(spec).write(tmp_path / "d")))
    d = wait_final(hubei, receipt["delivery_id"])
    assert d["status"] == "failed" and d["failure"]
    assert "XML compatible" not in str(d) and "ValueError" not in str(d)  # what the province reads
    with runtime.db.session() as s:
        delivery = s.get(Delivery, receipt["delivery_id"])
        assert delivery is not None and delivery.failure == worker_module.FAILURE_MESSAGE
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "delivery.failed")).one()
        assert "ValueError: All strings must be XML compatible: \\x00 internal detail" in event.detail["trace"]
        assert "Traceback" in event.detail["trace"]
