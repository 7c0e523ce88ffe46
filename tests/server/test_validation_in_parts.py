"""The server validates a big XML file in parts on worker processes, with the report of one read (issue 18).

An ingestion worker runs in a process with threads, so the parts run on spawned
processes. ``validation_parallel_min_bytes`` is set just below the customers file's size,
so that file alone is split; the report the API gives must be the one a serial validation
of the same files gives — findings in every part, and a file that stops parsing late.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask.testing import FlaskClient

from exchange_server.app import create_app
from exchange_server.runtime import Runtime, open_runtime
from exchange_server.setup_service import initialise
from schemas import Spec
from schemas.validation import ValidationOptions, report_json, validate_delivery
from tests.server.conftest import Setup
from tests.server.test_api import bearer, uploaded
from tests.support.deliveries import data_file, refresh_check, valid_rows
from tests.support.splits import spy_on_xml_splits


@pytest.fixture
def split_runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose workers validate any file of 40 KB or more in two parts."""
    rt = open_runtime({"data_dir": str(tmp_path / "data"), "database_url": database_url, "sftp_port": 0,
                       "validation_workers": 2, "validation_parallel_min_bytes": 40_000})
    initialise(rt)
    yield rt
    rt.db.dispose()


def _delivery(spec: Spec, folder: Path, broken: bool) -> Path:
    rows = valid_rows(spec, customers=80)
    for i in (2, 41, 77):
        rows.rows["VIP_CUST_INFO"][i]["JOIN_DATE"] = "20261332"
    rows.write(folder, fmt="xml", encoding="GB18030")
    customers = data_file(folder, "31201")
    if broken:
        parts = customers.read_bytes().split(b"<ROW>")
        parts[-3] = parts[-3].replace(b"</CUST_NAME>", b"", 1)
        customers.write_bytes(b"<ROW>".join(parts))
        refresh_check(folder)
    assert customers.stat().st_size > 40_000 > max(p.stat().st_size for p in folder.iterdir() if p != customers)
    return folder


def _shown(report: dict[str, Any]) -> tuple[Any, ...]:
    return report["status"], report["counts"], report["findings"]


@pytest.mark.parametrize("broken", [False, True], ids=["findings in both parts", "a tag left open late"])
def test_an_uploaded_xml_file_validated_in_parts_gets_the_serial_report(
        split_runtime: Runtime, tmp_path: Path, spec: Spec, broken: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = spy_on_xml_splits(monkeypatch)
    setup = Setup(split_runtime)
    setup.cycle("202610")
    token = setup.province("42", "sender42")
    client: FlaskClient = create_app(runtime=split_runtime).test_client()
    folder = _delivery(spec, tmp_path / "d", broken)
    delivery_id = uploaded(client, token, folder)
    assert setup.drain() == 1
    assert parts == [2]  # the customers file, in two parts, and nothing else
    served = client.get(f"/api/v1/deliveries/{delivery_id}/report", headers=bearer(token))
    assert served.status_code == 200, served.get_data(as_text=True)
    serial = validate_delivery(sorted(folder.iterdir()), spec, None, ValidationOptions(workers=1))
    expected = json.loads(report_json(serial))
    assert _shown(served.json) == _shown(expected)
    codes = {c["code"] for c in expected["counts"]}
    assert codes >= {"E202"} if broken else "E304" in codes
    if not broken:  # the last bad date is in the second part, named by its row in the whole file
        assert any(f.get("xpath") == "/VIP_CUST_INFO/ROW[78]/JOIN_DATE" for f in expected["findings"])
