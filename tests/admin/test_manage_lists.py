"""The list pages in-process: upload CSV, see the findings or the diff, publish, see who fetched it."""
from __future__ import annotations

import csv
import io

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from exchange_server.audit.models import AuditEvent
from exchange_server.runtime import Runtime
from exchange_server.sample_data.generator import generate
from exchange_server.sftp.outbox import trees
from province_agent.transport import HttpTransport
from schemas import Spec
from tests.admin.conftest import Accounts, sign_in

Row = dict[str, str]


@pytest.fixture(scope="module")
def list_rows(tmp_path_factory: pytest.TempPathFactory, spec: Spec) -> list[Row]:
    """The sample national list's active rows (as text)."""
    out = tmp_path_factory.mktemp("list")
    generate(spec, "202610", out, provinces=["42"], scale=1, fmt="txt", seed=2002)
    ids = spec.unit("TOP500_LIST").field_ids
    text = (out / "00" / "D_00_2026V01_31101_00_001.txt").read_text("utf-8")
    return [r for r in (dict(zip(ids, line.split("|"))) for line in text.splitlines()) if r["CHANGE_TYPE"] != "D"]


def csv_bytes(spec: Spec, rows: list[Row]) -> bytes:
    ids = [f for f in spec.unit("TOP500_LIST").field_ids if f not in ("LIST_VERSION", "CHANGE_TYPE")]
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(ids)
    w.writerows([[r[f] for f in ids] for r in rows])
    return buf.getvalue().encode("utf-8-sig")


def send(client: FlaskClient, csrf: str, data: bytes, name: str, version: str) -> TestResponse:
    return client.post("/admin/lists", data={"csrf_token": csrf, "version": version, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def test_upload_diff_publish_and_downloads(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime,
                                           admin_url: str, spec: Spec, list_rows: list[Row]) -> None:
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    assert "尚未导入任何版本" in client.get("/admin/lists").get_data(as_text=True)

    r = send(client, csrf, csv_bytes(spec, list_rows), "名单2026.csv", "2026V01")
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin/lists/2026V01")
    page = client.get("/admin/lists/2026V01").get_data(as_text=True)
    assert f'data-added="{len(list_rows)}"' in page and 'id="publish"' in page

    # Version 2: one customer renamed, the last one dropped.
    changed = [dict(r) for r in list_rows[:-1]]
    changed[0]["CUST_NAME"] = changed[0]["CUST_NAME"] + "（集团）"
    assert client.post("/admin/lists/2026V01/publish", data={"csrf_token": csrf,
                                                             "confirm_impact": "yes"}).status_code == 303
    hubei = accounts.province("42")
    assert any(p.name.startswith("D_42_2026V01") for p in trees(admin_runtime)[0].outbox("42").iterdir())
    r = send(client, csrf, csv_bytes(spec, changed), "v2.csv", "2026V02")
    assert r.status_code == 303
    page = client.get("/admin/lists/2026V02").get_data(as_text=True)
    assert 'data-added="0" data-changed="1" data-removed="1"' in page
    assert f'data-customer="{list_rows[0]["NATIONAL_CUST_ID"]}"' in page and "CUST_NAME" in page
    assert client.post("/admin/lists/2026V02/publish", data={"csrf_token": csrf,
                                                             "confirm_impact": "yes"}).status_code == 303
    r = client.post("/admin/lists/2026V02/publish", data={"csrf_token": csrf})
    assert r.status_code == 409 and "list_already_published" in r.get_data(as_text=True)

    # Hubei fetches its slice over the API: the page names the account.
    http = HttpTransport(admin_url, hubei.token or "")
    try:
        listing = http.get_json("/api/v1/list")
        name = listing["files"][0]["name"]
        http.get_bytes(f"/api/v1/list/files/{name}")
    finally:
        http.close()
    page = client.get("/admin/lists/2026V02").get_data(as_text=True)
    assert 'id="downloads"' in page and f'data-account="{hubei.name}"' in page
    with admin_runtime.db.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.actor == admin.name))]
    assert actions.count("list.load") == 2 and actions.count("list.publish") == 2


def test_upload_errors_are_shown_as_a_table(client: FlaskClient, accounts: Accounts, spec: Spec,
                                            list_rows: list[Row]) -> None:
    csrf = sign_in(client, accounts.admin())
    bad = [dict(r) for r in list_rows[:3]]
    bad[1]["LEVEL_ID"] = "X"
    r = send(client, csrf, csv_bytes(spec, bad), "broken.csv", "2026V09")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and 'id="findings"' in html and "broken.csv" in html
    r = send(client, csrf, b"PK", "list.exe", "2026V09")
    assert r.status_code == 400 and "bad_file_name" in r.get_data(as_text=True)
    r = client.post("/admin/lists", data={"csrf_token": csrf, "version": "2026V09"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "no_file" in r.get_data(as_text=True)


def test_unknown_version_is_404(client: FlaskClient, accounts: Accounts) -> None:
    sign_in(client, accounts.admin())
    assert client.get("/admin/lists/2099V01").status_code == 404
