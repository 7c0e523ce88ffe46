"""Uploading a delivery on the province page, in process: the API's receipt and verdict, entitlement, messages.

Each test module gets a fresh runtime from :func:`upload_runtime`: 202610 open with the national
list published, a Hubei (42) province login, a Beijing (11) login and a Hubei local network
(0714) login, and the generated sample delivery of Hubei on disk. The API's answer for the same
files comes from a second, identical runtime, so both deliveries are judged from the same start.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from exchange_server.accounts.services import AccountService
from exchange_server.admin.services import CycleExceptionService
from exchange_server.app import create_app
from exchange_server.cycles.services import CycleService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from exchange_server.sample_data.generator import generate
from exchange_server.submissions.models import Delivery, Finding
from exchange_server.submissions.services import DeliveryService
from tests.support.deliveries import valid_rows
from tests.support.runtimes import runtime_with_open_cycles

PASSWORDS = {"prov42": "province-42-upload", "prov11": "province-11-upload", "net0714": "network-0714-upload",
             "ana": "analyst-upload-2026"}


@dataclass(frozen=True)
class Env:
    """A runtime ready for uploads, with the sample delivery's folder and an API token for Hubei."""

    rt: Runtime
    sample: Path  # Hubei's generated delivery for 202610 (check file and six data files)
    token: str  # prov42's API token


def upload_runtime(root: Path) -> Env:
    """202610 open, the national list published, logins for 42, 11, 0714 and an analyst, Hubei's sample on disk."""
    rt = runtime_with_open_cycles(root, ["202610"])
    generate(rt.spec, "202610", root / "gen", provinces=["42"], scale=1, fmt="txt", seed=7)
    with rt.db.session() as s:
        accounts = AccountService(s, "test")
        prov42 = accounts.create("prov42", "province", "42", password=PASSWORDS["prov42"])
        accounts.create("prov11", "province", "11", password=PASSWORDS["prov11"])
        accounts.create("net0714", "province", "0714", password=PASSWORDS["net0714"])
        accounts.create("ana", "analyst", password=PASSWORDS["ana"])
        token, _ = accounts.create_token(prov42, "test")
        lists = ListService(s, rt.archive, rt.spec)
        lists.publish(lists.load(next((root / "gen" / "00").glob("D_00_2026V01_00.chk"))))
    return Env(rt, root / "gen" / "42", token)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The page's runtime (for this module)."""
    e = upload_runtime(tmp_path_factory.mktemp("upload"))
    yield e
    e.rt.db.dispose()


@pytest.fixture(scope="module")
def app(env: Env) -> Flask:
    """The WSGI app on the upload runtime."""
    return create_app(runtime=env.rt)


def sign_in(app: Flask, name: str) -> FlaskClient:
    """A fresh client signed in through the form."""
    c = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True))
    assert token
    r = c.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf_token": token.group(1)})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return c


def upload_token(c: FlaskClient) -> str:
    """The CSRF token of the upload form (the form's first field)."""
    html = c.get("/province/upload").get_data(as_text=True)
    form = html[html.index('id="upload-form"'):]
    m = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)">\s*<label', form)
    assert m, "the token must be the form's first field"
    return m.group(1)


def post_files(c: FlaskClient, files: Sequence[Path | tuple[str, bytes]], token: str | None = None) -> TestResponse:
    """POST the upload form with ``files`` (paths, or (name, bytes)) as the browser does: the token first."""
    parts = [(io.BytesIO(p.read_bytes()), p.name) if isinstance(p, Path) else (io.BytesIO(p[1]), p[0])
             for p in files]
    data: dict[str, object] = {}
    if token is not None:
        data["csrf_token"] = token
    data["files"] = parts
    return c.post("/province/upload", data=data, content_type="multipart/form-data")


def folder_files(folder: Path) -> list[Path]:
    """Every file of a delivery folder, check file first."""
    return sorted(folder.iterdir(), key=lambda p: (not p.name.endswith(".chk"), p.name))


def deliveries(rt: Runtime) -> int:
    """How many deliveries the runtime has recorded."""
    with rt.db.session() as s:
        return len(list(s.scalars(select(Delivery.id))))


def message(html: str) -> tuple[str, str]:
    """The upload page's error: (code, text)."""
    m = re.search(r'<div class="alert" id="upload-error" role="alert" data-code="([a-z_]+)">(.*?)</div>', html, re.S)
    assert m, html[:2000]
    return m.group(1), re.sub(r"<[^>]+>", "", m.group(2))


def judged(rt: Runtime, delivery_id: int) -> dict[str, object]:
    """What the server decided of a delivery: verdict, counts per code, findings, the receipt without id and time."""
    with rt.db.session() as s:
        d = s.get(Delivery, delivery_id)
        assert d is not None
        _, receipt = DeliveryService(s, rt.archive).feedback(d, "receipt")
        findings = sorted((f.code, f.file or "", f.line or 0, f.field or "", f.value or "") for f in
                          s.scalars(select(Finding).where(Finding.delivery_id == d.id)))
        text = receipt.decode()
        text = re.sub(r"<(\w+:)?DeliveryId>[^<]*<", "<DID><", re.sub(r"\d{4}-?\d{2}-?\d{2}[T ]?[\d:]{6,8}", "T", text))
        return {"status": d.status, "errors": d.errors, "warnings": d.warnings, "late": d.late,
                "counts": sorted((c.code, c.count) for c in d.counts), "findings": findings,
                "files": [(f.name, f.size, f.sha256, f.unit, f.rows) for f in d.files], "receipt": text,
                "check": d.check_name, "party": d.party, "resend": d.resend}


def test_the_page_gives_the_same_receipt_and_verdict_as_the_api(env: Env, app: Flask,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    c = sign_in(app, "prov42")
    files = folder_files(env.sample)
    assert len(files) == 7 and files[0].name == "P_42_202610_00.chk"
    r = post_files(c, files, upload_token(c))
    assert r.status_code == 303, r.get_data(as_text=True)[:2000]
    m = re.fullmatch(r"/province/deliveries/(\d+)\?received=1", r.headers["Location"])
    assert m
    page_id = int(m.group(1))
    # At once: the receipt, and "validating" with a reload until the verdict.
    r = c.get(r.headers["Location"])
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="received-notice"' in html and 'id="validating"' in html
    assert r.headers["Refresh"] == "3" and "P_42_202610_00.chk" in html and "&lt;?xml" in html
    with env.rt.db.session() as s:
        d = s.get(Delivery, page_id)
        assert d is not None and d.channel == "web" and d.status == "queued" and len(d.files) == 7
    assert IngestionWorker(env.rt, "test").drain() == 1

    # The same files through the API, on an identical server: the same receipt, verdict and findings.
    api = upload_runtime(tmp_path_factory.mktemp("api-twin"))
    try:
        client = create_app(runtime=api.rt).test_client()
        r = client.post("/api/v1/deliveries", headers={"Authorization": f"Bearer {api.token}"},
                        data={"files": [(io.BytesIO(p.read_bytes()), p.name) for p in files]},
                        content_type="multipart/form-data")
        assert r.status_code == 202, r.get_json()
        api_id = r.get_json()["delivery_id"]
        assert IngestionWorker(api.rt, "test").drain() == 1
        assert judged(env.rt, page_id) == judged(api.rt, api_id)
    finally:
        api.rt.db.dispose()

    # The judged page: no reload, the verdict, the files by unit name.
    r = c.get(f"/province/deliveries/{page_id}")
    html = r.get_data(as_text=True)
    status = judged(env.rt, page_id)["status"]
    assert "Refresh" not in r.headers and 'id="validating"' not in html
    assert status in ("accepted", "accepted_with_warnings")
    assert f'data-status="{status}"' in html and "VIP_CUST_INFO (31201)" in html

    # The same bytes again (page or API): the first delivery, said so; nothing recorded twice.
    before = deliveries(env.rt)
    r = post_files(c, files, upload_token(c))
    assert r.status_code == 303 and r.headers["Location"] == f"/province/deliveries/{page_id}?duplicate=1"
    assert 'id="duplicate-notice"' in c.get(r.headers["Location"]).get_data(as_text=True)
    r = create_app(runtime=env.rt).test_client().post(
        "/api/v1/deliveries", headers={"Authorization": f"Bearer {env.token}"},
        data={"files": [(io.BytesIO(p.read_bytes()), p.name) for p in files]}, content_type="multipart/form-data")
    assert r.status_code == 200 and r.get_json()["delivery_id"] == page_id and r.get_json()["duplicate"] is True
    assert deliveries(env.rt) == before


def test_only_the_accounts_own_party_is_received(env: Env, app: Flask) -> None:
    before = deliveries(env.rt)
    for who, allowed in (("prov11", "11"), ("net0714", "0714")):
        c = sign_in(app, who)
        r = post_files(c, folder_files(env.sample), upload_token(c))
        assert r.status_code == 422
        code, text = message(r.get_data(as_text=True))
        assert code == "not_your_party" and "E606" in text and "42" in text and allowed in text
    # In English too.
    c = sign_in(app, "prov11")
    c.get("/lang/en")
    code, text = message(post_files(c, folder_files(env.sample), upload_token(c)).get_data(as_text=True))
    assert code == "not_your_party" and "this account may deliver as 010, 11 only" in text
    assert deliveries(env.rt) == before  # nothing recorded for any of them


def test_a_network_delivers_as_itself(env: Env, app: Flask, tmp_path: Path) -> None:
    rows = valid_rows(env.rt.spec, party="42", cycle="202610")
    rows.party = "0714"
    folder = rows.write(tmp_path / "net", units=["VIP_CUST_INFO"])
    c = sign_in(app, "net0714")
    r = post_files(c, folder_files(folder), upload_token(c))
    assert r.status_code == 303, message(r.get_data(as_text=True))
    delivery_id = int(r.headers["Location"].split("/")[-1].split("?")[0])
    with env.rt.db.session() as s:
        d = s.get(Delivery, delivery_id)
        assert d is not None and d.party == "0714" and d.entitled and d.channel == "web"
    assert c.get(r.headers["Location"]).status_code == 200
    assert sign_in(app, "prov42").get(f"/province/deliveries/{delivery_id}").status_code == 200  # its province


def test_missing_or_misnamed_check_file_is_said_plainly(env: Env, app: Flask) -> None:
    before = deliveries(env.rt)
    data_files = [p for p in folder_files(env.sample) if not p.name.endswith(".chk")]
    c = sign_in(app, "prov42")
    code, text = message(post_files(c, data_files, upload_token(c)).get_data(as_text=True))
    assert code == "no_check_file" and "没有校验文件" in text and "{MODE}_{PARTY}_{PERIOD}_{RESEND}.chk" in text
    chk = env.sample / "P_42_202610_00.chk"
    upper = [("P_42_202610_00.CHK", chk.read_bytes()), *[(p.name, p.read_bytes()) for p in data_files]]
    code, text = message(post_files(c, upper, upload_token(c)).get_data(as_text=True))
    assert code == "no_check_file" and "P_42_202610_00.CHK" in text and "P_42_202610_00.chk" in text
    code, text = message(post_files(c, [("P_42_2026_10_00.chk", chk.read_bytes())], upload_token(c))
                         .get_data(as_text=True))
    assert code == "bad_check_name" and "E101" in text
    code, text = message(post_files(c, [chk, ("P_42_202610_01.chk", chk.read_bytes())], upload_token(c))
                         .get_data(as_text=True))
    assert code == "several_check_files"
    code, text = message(post_files(c, [("../P_42_202610_00.chk", b"x")], upload_token(c)).get_data(as_text=True))
    assert code == "bad_file_name"
    # Nothing chosen: the browser sends one empty file part.
    code, text = message(post_files(c, [("", b"")], upload_token(c)).get_data(as_text=True))
    assert code == "no_files" and "请先选择" in text
    c.get("/lang/en")
    code, text = message(post_files(c, data_files, upload_token(c)).get_data(as_text=True))
    assert code == "no_check_file" and "no check file among the 6 file(s)" in text
    assert deliveries(env.rt) == before


def test_unknown_and_closed_cycles_and_an_exception(env: Env, app: Flask, tmp_path: Path) -> None:
    c = sign_in(app, "prov42")
    folder = valid_rows(env.rt.spec, party="42", cycle="202511").write(tmp_path / "unknown")
    code, text = message(post_files(c, folder_files(folder), upload_token(c)).get_data(as_text=True))
    assert code == "cycle_unknown" and "E602" in text
    with env.rt.db.session() as s:
        cycles = CycleService(s, env.rt.spec, "test")
        cycles.create("202609", deadline=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1), state="open")
        cycles.close("202609")
    folder = valid_rows(env.rt.spec, party="42", cycle="202609").write(tmp_path / "closed")
    before = deliveries(env.rt)
    r = post_files(c, folder_files(folder), upload_token(c))
    code, text = message(r.get_data(as_text=True))
    assert r.status_code == 422 and code == "cycle_closed" and "E601" in text and "已关闭" in text
    assert deliveries(env.rt) == before
    # HQ grants Hubei an exception: now the same files are received (and judged by the validator).
    with env.rt.db.session() as s:
        CycleExceptionService(s, "test").grant("202609", "42", dt.datetime.now(dt.timezone.utc)
                                               + dt.timedelta(days=2), "系统割接")
    r = post_files(c, folder_files(folder), upload_token(c))
    assert r.status_code == 303 and deliveries(env.rt) == before + 1
    IngestionWorker(env.rt, "test").drain()


def test_csrf_caps_and_roles(env: Env, app: Flask) -> None:
    before = deliveries(env.rt)
    c = sign_in(app, "prov42")
    files = folder_files(env.sample)
    # No token, a wrong one, or the token after the files: refused before anything is read.
    for token in (None, "forged"):
        r = post_files(c, files, token)
        assert r.status_code == 400 and "csrf_failed" in r.get_data(as_text=True)
    good = upload_token(c)
    body = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + files[0].name.encode() + b"\"\r\n\r\n"
            + files[0].read_bytes() + b"\r\n--B\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n"
            + good.encode() + b"\r\n--B--\r\n")
    r = c.post("/province/upload", data=body, content_type="multipart/form-data; boundary=B")
    assert r.status_code == 400 and "csrf_failed" in r.get_data(as_text=True)
    assert deliveries(env.rt) == before
    # The page runs its own script, and only this page may.
    r = c.get("/province/upload")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert '<script src="/static/pages/upload.js" defer></script>' in r.get_data(as_text=True)
    assert "script-src" not in c.get("/province/").headers["Content-Security-Policy"]
    assert c.get("/static/pages/upload.js").status_code == 200
    # The caps are the API's: a smaller one here, on the same database.
    small = Runtime(dataclasses.replace(env.rt.settings, max_delivery_size=2000, max_file_size=1500), env.rt.db,
                    env.rt.archive, env.rt.spec)
    capped = create_app(runtime=small)
    c2 = capped.test_client()
    login = re.search(r'name="csrf_token" value="([^"]+)"', c2.get("/login").get_data(as_text=True))
    assert login
    c2.post("/login", data={"username": "prov42", "password": PASSWORDS["prov42"], "csrf_token": login.group(1)})
    r = post_files(c2, files, upload_token(c2))
    code, text = message(r.get_data(as_text=True))
    assert r.status_code == 413 and code == "delivery_too_large" and "2000" in text
    assert "1.5 KiB" in c2.get("/province/upload").get_data(as_text=True)  # the caps are on the page
    assert deliveries(env.rt) == before
    # HQ roles and anonymous readers.
    assert sign_in(app, "ana").get("/province/upload").status_code == 403
    r = app.test_client().post("/province/upload", data={"files": [(io.BytesIO(b"x"), "a.chk")]},
                               content_type="multipart/form-data")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    assert deliveries(env.rt) == before


def test_the_upload_page_in_both_languages(env: Env, app: Flask) -> None:
    c = sign_in(app, "prov42")
    html = c.get("/province/upload").get_data(as_text=True)
    assert "上传报送" in html and 'enctype="multipart/form-data"' in html and "multiple required" in html
    assert 'data-cycle="202610"' in html and 'data-section="upload"' in html
    assert "湖北" in html  # the parties it may deliver as, by name
    c.get("/lang/en")
    html = c.get("/province/upload").get_data(as_text=True)
    assert "Upload a delivery" in html and "Cycles open to you" in html and "上传报送" not in html
    assert "Hubei" in html
