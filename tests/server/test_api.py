"""The API's surface: authentication, roles, one error shape, the OpenAPI document."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from exchange_server.accounts.services import AccountService
from tests.server.conftest import Setup
from tests.support.deliveries import valid_rows


def assert_error_shape(body: dict[str, Any], status: int, code: str) -> None:
    """Every error has the same keys, a stable code and text in both languages."""
    assert body["status"] == status and body["code"] == code
    assert body["message"] and body["message_zh"]
    assert "Traceback" not in str(body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(client: FlaskClient, token: str, folder: Path) -> Any:
    files = [(p.open("rb"), p.name) for p in sorted(folder.iterdir())]
    try:
        return client.post("/api/v1/deliveries", headers=bearer(token), data={"files": files},
                           content_type="multipart/form-data")
    finally:
        for fh, _ in files:
            fh.close()


def uploaded(client: FlaskClient, token: str, folder: Path) -> int:
    """Upload a delivery that must be received; its id (the answer is shown in full when it is not)."""
    resp = upload(client, token, folder)
    assert resp.status_code in (200, 202) and resp.json and "delivery_id" in resp.json, \
        (resp.status_code, resp.get_data(as_text=True))
    return int(resp.json["delivery_id"])


def test_health_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").json["status"] == "ok"
    doc = client.get("/api/v1/openapi.json").json
    assert doc["info"]["version"] == "v1"
    assert "multipart/form-data" in doc["paths"]["/api/v1/deliveries"]["post"]["requestBody"]["content"]
    assert {"202", "200", "413"} <= set(doc["paths"]["/api/v1/deliveries"]["post"]["responses"])
    assert "ErrorSchema" in str(doc["components"]) or "Error" in str(doc["components"])


def test_missing_unknown_revoked_and_expired_tokens_are_401(client: FlaskClient, setup: Setup, runtime: Any) -> None:
    assert_error_shape(client.get("/api/v1/deliveries").json, 401, "token_missing")
    assert_error_shape(client.get("/api/v1/deliveries", headers=bearer("kam_nope")).json, 401, "bad_token")
    token = setup.province("42")
    assert client.get("/api/v1/deliveries", headers=bearer(token)).status_code == 200
    with runtime.db.session() as s:
        svc = AccountService(s)
        acct = svc.get("prov42")
        svc.revoke_token(acct.tokens[0].id)
        expired, tok = svc.create_token(acct, "old")
        tok.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    assert client.get("/api/v1/deliveries", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/deliveries", headers=bearer(expired)).status_code == 401


def test_tokens_are_stored_only_as_hashes(setup: Setup, runtime: Any) -> None:
    from sqlalchemy import text

    token = setup.province("42")
    with runtime.db.engine.connect() as conn:
        dump = str(conn.execute(text("SELECT * FROM api_token")).all())
    assert token not in dump and token[12:] not in dump


def test_only_province_accounts_upload(client: FlaskClient, setup: Setup, tmp_path: Path, spec: Any) -> None:
    analyst = setup.role("ana", "analyst")
    r = upload(client, analyst, valid_rows(spec).write(tmp_path / "d"))
    assert_error_shape(r.json, 403, "wrong_role")


def test_bad_query_arguments_use_the_error_shape(client: FlaskClient, setup: Setup) -> None:
    r = client.get("/api/v1/deliveries?status=lost&per_page=0", headers=bearer(setup.province("42")))
    assert_error_shape(r.json, 422, "invalid_arguments")
    assert "status" in str(r.json["errors"]) and "per_page" in str(r.json["errors"])


def test_report_is_409_until_validated_then_available(client: FlaskClient, setup: Setup, tmp_path: Path,
                                                      spec: Any) -> None:
    setup.cycle("202610")
    token = setup.province("42")
    r = upload(client, token, valid_rows(spec).write(tmp_path / "d"))
    assert r.status_code == 202 and r.json["status"] == "queued"
    rid = r.json["delivery_id"]
    assert_error_shape(client.get(f"/api/v1/deliveries/{rid}/report", headers=bearer(token)).json, 409,
                       "report_not_ready")
    assert setup.drain() == 1
    assert client.get(f"/api/v1/deliveries/{rid}/report", headers=bearer(token)).json["status"] == "accepted"
    r = client.get(f"/api/v1/deliveries/{rid}/feedback.fbr.xml", headers=bearer(token))
    assert_error_shape(r.json, 404, "feedback_not_available")  # nothing was found: no record-level feedback
    assert client.get(f"/api/v1/deliveries/{rid}/receipt.xml", headers=bearer(token)).headers[
        "Content-Disposition"] == "attachment; filename=P_42_202610_00.rct.xml"


def test_cycles_endpoint(client: FlaskClient, setup: Setup) -> None:
    setup.cycle("202610")
    setup.cycle("202611", state="planned")
    token = setup.province("42")
    cycles = client.get("/api/v1/cycles", headers=bearer(token)).json
    assert [c["id"] for c in cycles] == ["202611", "202610"]
    c = client.get("/api/v1/cycles/202610", headers=bearer(token)).json
    assert c["state"] == "open" and c["units_due"] == ["31201", "31202", "31203", "32001", "32002", "32003"]
    assert len(c["deadline_beijing"]) == 14 and c["begin_date"] == "2026-10-01"
    assert [c["id"] for c in client.get("/api/v1/cycles?state=planned", headers=bearer(token)).json] == ["202611"]
    assert_error_shape(client.get("/api/v1/cycles/209913", headers=bearer(token)).json, 404, "cycle_not_found")
    assert c["exception_until"] is None and c["exception_until_beijing"] is None


def test_cycles_show_a_province_its_own_exception(client: FlaskClient, setup: Setup, runtime: Any) -> None:
    from exchange_server.admin.services import CycleExceptionService

    setup.cycle("202610", state="closed")
    hubei, network, shanghai, analyst = (setup.province("42"), setup.province("0710", "net0710"),
                                         setup.province("31"), setup.role("ana", "analyst"))
    with runtime.db.session() as s:
        CycleExceptionService(s, "admin").grant("202610", "42", dt.datetime(2031, 1, 1, 10, tzinfo=dt.timezone.utc),
                                                "系统割接")
    for token in (hubei, network):  # a local network of Hubei is covered by its province's exception
        c = client.get("/api/v1/cycles/202610", headers=bearer(token)).json
        assert c["state"] == "closed" and c["exception_until_beijing"] == "20310101180000"
        assert c["exception_until"].startswith("2031-01-01T10:00:00")
    for token in (shanghai, analyst):
        assert client.get("/api/v1/cycles/202610", headers=bearer(token)).json["exception_until"] is None


def test_an_unexpected_failure_is_a_json_500_without_trace(app: Any, client: FlaskClient) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    r = client.get("/boom")
    assert r.status_code == 500
    assert_error_shape(r.json, 500, "internal_error")
    assert "secret internals" not in r.get_data(as_text=True)


def test_method_not_allowed_is_json(client: FlaskClient) -> None:
    r = client.delete("/api/v1/cycles")
    assert_error_shape(r.json, 405, "method_not_allowed")
