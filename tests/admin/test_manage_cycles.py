"""The cycles page in-process: the calendar's actions, deadlines and province exceptions (down to validation)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.admin.models import CycleException
from exchange_server.audit.models import AuditEvent
from exchange_server.clock import BEIJING
from exchange_server.cycles.models import ReportingCycle
from exchange_server.runtime import Runtime
from exchange_server.sftp.outbox import trees
from schemas import Spec
from tests.admin.conftest import Accounts, sign_in, upload
from tests.support.deliveries import valid_rows


def local(moment: dt.datetime) -> str:
    """A datetime-local form value in Beijing time."""
    return moment.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


def codes(verdict: dict[str, Any]) -> set[str]:
    """The finding codes of a delivery's verdict."""
    return {c["code"] for c in verdict["counts"]}


def events(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def state_of(rt: Runtime, cycle_id: str) -> str:
    with rt.db.session() as s:
        cycle = s.get(ReportingCycle, cycle_id)
        assert cycle is not None
        return cycle.state


def test_calendar_lists_cycles_and_moves_them(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    page = client.get("/admin/cycles")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-cycle="202610"' in html and "报告周期" in html
    r = client.post("/admin/cycles", data={"csrf_token": csrf, "cycle_id": "202612", "open": "1"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin/cycles")
    assert state_of(admin_runtime, "202612") == "open"
    assert "已创建周期 202612" in client.get("/admin/cycles").get_data(as_text=True)
    # Closing first shows whom it hits and does nothing; unticked it says so (409); ticked it closes.
    first = client.post("/admin/cycles/202612/close", data={"csrf_token": csrf})
    assert first.status_code == 200 and 'id="impact-gaps"' in first.get_data(as_text=True)
    assert state_of(admin_runtime, "202612") == "open"
    unticked = client.post("/admin/cycles/202612/close", data={"csrf_token": csrf, "confirm": "no"})
    assert unticked.status_code == 409 and 'id="confirm-needed"' in unticked.get_data(as_text=True)
    assert state_of(admin_runtime, "202612") == "open"
    assert client.post("/admin/cycles/202612/close",
                       data={"csrf_token": csrf, "confirm": ["no", "yes"]}).status_code == 303
    assert state_of(admin_runtime, "202612") == "closed"
    assert client.post("/admin/cycles/202612/reopen", data={"csrf_token": csrf}).status_code == 303
    assert state_of(admin_runtime, "202612") == "open"
    # Refused moves show the page again with the reason and the status.
    r = client.post("/admin/cycles/202612/open", data={"csrf_token": csrf})
    assert r.status_code == 409 and "cycle_not_planned" in r.get_data(as_text=True)
    r = client.post("/admin/cycles", data={"csrf_token": csrf, "cycle_id": "2026-13"})
    assert r.status_code == 400 and "bad_cycle_id" in r.get_data(as_text=True)
    moves = [(e.actor, e.action, e.target) for e in events(admin_runtime, "cycle.close")]
    assert (admin.name, "cycle.close", "cycle:202612") in moves
    # Every calendar change is placed in the province outboxes (when province accounts exist).
    accounts.province("45")
    client.post("/admin/cycles/202612/close", data={"csrf_token": csrf, "confirm": "yes"})
    outbox = trees(admin_runtime)[0].outbox("45")
    assert any(p.name.startswith("D_00_2026_") for p in outbox.iterdir())


def test_deadline_is_entered_in_beijing_time(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime) -> None:
    csrf = sign_in(client, accounts.admin())
    r = client.post("/admin/cycles/202611/deadline", data={"csrf_token": csrf, "deadline": "2026-12-10T18:00"})
    assert r.status_code == 303
    with admin_runtime.db.session() as s:
        cycle = s.get(ReportingCycle, "202611")
        assert cycle is not None and cycle.deadline == dt.datetime(2026, 12, 10, 10, 0, tzinfo=dt.timezone.utc)
    r = client.post("/admin/cycles/202611/deadline", data={"csrf_token": csrf, "deadline": "tomorrow"})
    assert r.status_code == 400 and "bad_datetime" in r.get_data(as_text=True)
    assert events(admin_runtime, "cycle.deadline")[-1].detail["after"].startswith("2026-12-10T10:00")


def test_exception_lets_one_province_deliver_to_a_closed_cycle(client: FlaskClient, accounts: Accounts,
                                                              admin_runtime: Runtime, admin_url: str, spec: Spec,
                                                              tmp_path: Path) -> None:
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    hubei, hunan = accounts.province("42"), accounts.province("43")
    assert client.post("/admin/cycles/202609/close", data={"csrf_token": csrf, "confirm": "yes"}).status_code == 303
    closed = upload(admin_url, hubei, valid_rows(spec, party="42", cycle="202609"), tmp_path / "a")
    assert closed["status"] == "rejected" and "E601" in codes(closed)

    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    r = client.post("/admin/cycles/exceptions", data={"csrf_token": csrf, "cycle_id": "202609", "province": "42",
                                                      "until": local(until), "reason": "系统割接 CRM cut-over"})
    assert r.status_code == 303
    html = client.get("/admin/cycles").get_data(as_text=True)
    assert 'data-province="42" data-state="valid"' in html and "系统割接 CRM cut-over" in html
    grant = events(admin_runtime, "cycle.exception.grant")[-1]
    assert grant.actor == admin.name and grant.target == "cycle:202609" and grant.detail["province"] == "42"

    # Hubei is neither rejected for the closed cycle nor late; Hunan, without an exception, still is rejected.
    allowed = upload(admin_url, hubei, valid_rows(spec, party="42", cycle="202609"), tmp_path / "b", resend=1)
    assert allowed["status"] == "accepted", allowed["counts"]
    other = upload(admin_url, hunan, valid_rows(spec, party="43", cycle="202609"), tmp_path / "c")
    assert other["status"] == "rejected" and "E601" in codes(other)

    # Revoked: the cycle is closed for Hubei again.
    with admin_runtime.db.session() as s:
        exc_id = s.scalars(select(CycleException.id).where(CycleException.province == "42")).one()
    # Revoking first shows its impact (the cycle is closed: E601 again; Hubei's units are accepted) and does nothing.
    shown = client.post(f"/admin/cycles/exceptions/{exc_id}/revoke", data={"csrf_token": csrf})
    text = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "E601" in text and 'id="confirm-needed"' not in text
    assert 'data-province="42" data-state="valid"' in client.get("/admin/cycles").get_data(as_text=True)
    assert client.post(f"/admin/cycles/exceptions/{exc_id}/revoke",
                       data={"csrf_token": csrf, "confirm": "yes"}).status_code == 303
    again = upload(admin_url, hubei, valid_rows(spec, party="42", cycle="202609"), tmp_path / "d", resend=2)
    assert again["status"] == "rejected" and "E601" in codes(again)
    assert events(admin_runtime, "cycle.exception.revoke")[-1].detail["exception_id"] == exc_id


def test_exception_past_the_deadline_is_not_late(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime,
                                                 admin_url: str, spec: Spec, tmp_path: Path) -> None:
    csrf = sign_in(client, accounts.admin())
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    client.post("/admin/cycles/202610/deadline", data={"csrf_token": csrf, "deadline": local(past)})
    gansu = accounts.province("62")
    late = upload(admin_url, gansu, valid_rows(spec, party="62", cycle="202610"), tmp_path / "a")
    assert "W603" in codes(late)
    client.post("/admin/cycles/exceptions", data={"csrf_token": csrf, "cycle_id": "202610", "province": "62",
                                                  "until": local(past + dt.timedelta(days=3)), "reason": "late data"})
    on_time = upload(admin_url, gansu, valid_rows(spec, party="62", cycle="202610"), tmp_path / "b", resend=1)
    assert on_time["status"] == "accepted" and "W603" not in codes(on_time)


def test_exception_form_refuses_bad_input(client: FlaskClient, accounts: Accounts) -> None:
    csrf = sign_in(client, accounts.admin())
    base = {"csrf_token": csrf, "cycle_id": "202611", "province": "42", "reason": "x",
            "until": local(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))}
    for change, code in (({"province": "4201"}, "bad_province"), ({"cycle_id": "209901"}, "cycle_not_found"),
                         ({"reason": " "}, "reason_missing"), ({"until": "2020-01-01T00:00"}, "bad_until")):
        r = client.post("/admin/cycles/exceptions", data={**base, **change})
        assert code in r.get_data(as_text=True) and r.status_code in (400, 404), (change, r.status_code)
