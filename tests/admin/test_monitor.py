"""The transmission monitor: one day's deliveries per channel and stage, what is still arriving, totals, the
page (both languages), the JSON API, and who may see them."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.accounts.services import AccountService
from exchange_server.admin.monitor import (
    MonitorService,
    human_duration,
    human_size,
    monitor_service,
    parse_day,
)
from exchange_server.clock import BEIJING, utcnow
from exchange_server.errors import BadRequest
from exchange_server.ingestion.models import IngestJob
from exchange_server.runtime import Runtime
from exchange_server.submissions.models import Delivery, DeliveryApproval, DeliveryFile
from tests.admin.conftest import Accounts, sign_in


@dataclass(frozen=True)
class Made:
    """A delivery put straight into the database, as the monitor will read it."""

    id: int
    channel: str
    stage: str
    size: int


def make_delivery(rt: Runtime, account: str, channel: str, status: str, received_at: dt.datetime,
                  took: float | None = None, sizes: tuple[int, ...] = (300, 1200), hub: str | None = None,
                  job: str | None = None, party: str = "42") -> int:
    """A delivery of ``account`` in ``status`` (no worker ever takes it: there is no queued job unless ``job``)."""
    with rt.db.session() as s:
        acc = s.scalar(select(Account).where(Account.name == account))
        assert acc is not None
        stem = f"P_{party}_202610_{secrets.randbelow(99):02d}"
        d = Delivery(account_id=acc.id, channel=channel, fingerprint=hashlib.sha256(secrets.token_bytes(8)).hexdigest(),
                     check_name=stem, mode="P", party=party, period="202610", resend=0, received_at=received_at,
                     total_size=sum(sizes), status=status,
                     validated_at=received_at + dt.timedelta(seconds=took) if took is not None else None,
                     errors=2 if status == "rejected" else 0, warnings=1 if status == "accepted_with_warnings" else 0)
        d.files = [DeliveryFile(name=f"{stem}_{i}.txt", size=n, sha256="0" * 64, unit="31201" if i else None)
                   for i, n in enumerate(sizes)]
        s.add(d)
        s.flush()
        if hub:
            s.add(DeliveryApproval(delivery_id=d.id, sha256="1" * 64, hub=hub, networks=[]))
        if job:
            s.add(IngestJob(delivery_id=d.id, state=job))
        return d.id


@pytest.fixture(scope="module")
def sender(admin_runtime: Runtime) -> str:
    """A province account the deliveries are credited to."""
    name = f"mon-{secrets.token_hex(3)}"
    with admin_runtime.db.session() as s:
        AccountService(s, "test").create(name, "province", "42", password="pw-monitor-123")
    return name


@pytest.fixture(scope="module")
def today_set(admin_runtime: Runtime, sender: str) -> dict[str, int]:
    """Today: one delivery per stage and channel the monitor tells apart, one from yesterday still queued,
    one judged yesterday (not on today's page), a file waiting in an SFTP inbox and one streaming into staging."""
    rt = admin_runtime
    now = utcnow() - dt.timedelta(minutes=5)
    start_of_day = dt.datetime.combine(now.astimezone(BEIJING).date(), dt.time(0), BEIJING).astimezone(dt.timezone.utc)
    at = max(now - dt.timedelta(minutes=30), start_of_day + dt.timedelta(seconds=1))
    made = {
        "http_accepted": make_delivery(rt, sender, "http", "accepted", at, took=2.5),
        "sftp_warned": make_delivery(rt, sender, "sftp", "accepted_with_warnings", at, took=95, sizes=(2048, 3 * 1024 * 1024)),
        "dropbox_rejected": make_delivery(rt, sender, "dropbox", "rejected", at, took=30),
        "hub_accepted": make_delivery(rt, sender, "http", "accepted", at, took=4000, hub="42"),
        "http_queued": make_delivery(rt, sender, "http", "queued", at),
        "sftp_validating": make_delivery(rt, sender, "sftp", "validating", at),
        "http_running_job": make_delivery(rt, sender, "http", "queued", at, job="running"),
        "http_failed": make_delivery(rt, sender, "http", "failed", at, took=7),
        "old_queued": make_delivery(rt, sender, "sftp", "queued", start_of_day - dt.timedelta(hours=3)),
        "old_judged": make_delivery(rt, sender, "http", "accepted", start_of_day - dt.timedelta(hours=3), took=1),
    }
    inbox = rt.settings.sftp_root / "42" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "P_42_202610_07_31201.txt").write_bytes(b"x" * 5000)
    (inbox / ".writers").mkdir(exist_ok=True)  # hidden: never listed
    staging = getattr(rt.archive, "staging")
    (staging / "kam-staging-test-upload").write_bytes(b"y" * 777)
    return made


def test_today_lists_every_stage_and_channel_with_totals(admin_runtime: Runtime, today_set: dict[str, int]) -> None:
    with admin_runtime.db.session() as s:
        m = monitor_service(s, admin_runtime).day(parse_day(None))
    by_id = {r.delivery_id: r for r in m.rows}
    assert today_set["old_judged"] not in by_id  # judged on another day
    stage = {k: (by_id[v].channel, by_id[v].stage) for k, v in today_set.items() if v in by_id}
    assert stage == {
        "http_accepted": ("http", "accepted"), "sftp_warned": ("sftp", "accepted_with_warnings"),
        "dropbox_rejected": ("dropbox", "rejected"), "hub_accepted": ("hub", "accepted"),
        "http_queued": ("http", "queued"), "sftp_validating": ("sftp", "validating"),
        "http_running_job": ("http", "validating"), "http_failed": ("http", "failed"),
        "old_queued": ("sftp", "queued")}
    assert by_id[today_set["old_queued"]].carried_over and not by_id[today_set["http_queued"]].carried_over
    # Sizes and times from receipt to verdict.
    warned = by_id[today_set["sftp_warned"]]
    assert warned.size == 2048 + 3 * 1024 * 1024 and warned.files == 2
    assert warned.seconds_to_verdict == pytest.approx(95)
    assert by_id[today_set["http_queued"]].seconds_to_verdict is None
    assert by_id[today_set["hub_accepted"]].seconds_to_verdict == pytest.approx(4000)
    # Still arriving: the inbox file (not the hidden folder) and the staging upload.
    flight = {(f.channel, f.party, f.name): f.size for f in m.in_flight}
    assert flight[("sftp", "42", "P_42_202610_07_31201.txt")] == 5000
    assert flight[("http", None, "kam-staging-test-upload")] == 777
    assert not any(name.startswith(".") for _c, _p, name in flight)
    # Totals per channel and stage, and over all channels.
    assert m.totals["http"]["accepted"].count == 1
    assert m.totals["hub"]["accepted"].count == 1 and m.totals["hub"]["accepted"].size == 1500
    assert m.totals["sftp"]["queued"].count == 1 and m.totals["sftp"]["validating"].count == 1
    assert m.totals["http"]["validating"].count == 1 and m.totals["http"]["failed"].count == 1
    assert m.totals["sftp"]["receiving"].count == 1 and m.totals["http"]["receiving"].count == 1
    assert m.stage_totals["accepted"].count == 2
    assert sum(c.count for st, c in m.stage_totals.items() if st != "receiving") == len(m.rows)
    assert m.verdict_seconds["hub"] == {"median": 4000, "max": 4000}
    assert m.verdict_seconds["http"]["max"] == pytest.approx(7)


def test_another_day_shows_only_that_day(admin_runtime: Runtime, today_set: dict[str, int]) -> None:
    today = parse_day(None)
    with admin_runtime.db.session() as s:
        m = monitor_service(s, admin_runtime).day(today - dt.timedelta(days=1))
        empty = MonitorService(s).day(today - dt.timedelta(days=400))
    ids = {r.delivery_id for r in m.rows}
    assert {today_set["old_queued"], today_set["old_judged"]} <= ids
    assert today_set["http_accepted"] not in ids
    assert m.in_flight == []  # what is arriving now belongs to today
    assert m.next_day == today and m.previous_day == today - dt.timedelta(days=2)
    assert empty.rows == [] and empty.stage_totals["accepted"].count == 0


def test_day_argument_and_readable_numbers() -> None:
    assert parse_day("2026-11-03") == dt.date(2026, 11, 3)
    late_utc = dt.datetime(2026, 11, 3, 17, 30, tzinfo=dt.timezone.utc)  # 01:30 on the 4th in Beijing
    assert parse_day("", late_utc) == dt.date(2026, 11, 4)
    with pytest.raises(BadRequest):
        parse_day("3/11/2026")
    assert human_size(512) == "512 B"
    assert human_size(3 * 1024 * 1024 + 2048) == "3.0 MiB"
    assert human_size(5 * 1024 ** 3) == "5.0 GiB"
    assert human_duration(2.5) == "2.5 s" and human_duration(95) == "1 min 35 s"
    assert human_duration(4000) == "1 h 6 min" and human_duration(None) == ""


def _signed_in_admin(client: FlaskClient, accounts: Accounts) -> None:
    sign_in(client, accounts.admin())


def test_page_in_both_languages_links_every_delivery_to_review(client: FlaskClient, accounts: Accounts,
                                                               today_set: dict[str, int]) -> None:
    _signed_in_admin(client, accounts)
    r = client.get("/admin/monitor")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "传输监控" in html and "等待校验" in html and "省级枢纽转发" in html and "接收中" in html
    assert 'data-section="monitor"' in html and 'class="current"' in html
    for key in ("http_accepted", "hub_accepted", "http_queued", "sftp_validating", "old_queued"):
        assert f'href="/admin/review/{today_set[key]}"' in html
    assert f'data-delivery="{today_set["old_judged"]}"' not in html
    assert "3.0 MiB" in html and "1 min 35 s" in html and "P_42_202610_07_31201.txt" in html
    assert 'data-channel="hub"' in html and 'data-stage="accepted" data-count="2"' in html
    client.get("/lang/en")
    en = client.get("/admin/monitor").get_data(as_text=True)
    assert "Transmission monitor" in en and "waiting for validation" in en and "Hub forward" in en
    assert "being validated" in en and "Still arriving" in en and "传输监控" not in en


def test_page_for_another_day_and_a_bad_day(client: FlaskClient, accounts: Accounts,
                                            today_set: dict[str, int]) -> None:
    _signed_in_admin(client, accounts)
    html = client.get("/admin/monitor?day=2001-01-01").get_data(as_text=True)
    assert 'id="no-deliveries"' in html and 'id="next-day"' in html
    r = client.get("/admin/monitor?day=yesterday")
    assert r.status_code == 400 and "YYYY-MM-DD" in r.get_data(as_text=True)


@pytest.mark.parametrize("role", ["analyst", "province"])
def test_other_roles_are_refused(role: str, client: FlaskClient, accounts: Accounts) -> None:
    login = accounts.make(role, "42" if role == "province" else None)
    sign_in(client, login)
    assert client.get("/admin/monitor").status_code == 403


def test_signed_out_goes_to_login(client: FlaskClient) -> None:
    r = client.get("/admin/monitor")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def _token(rt: Runtime, role: str) -> str:
    with rt.db.session() as s:
        svc = AccountService(s, "test")
        account = svc.create(f"tok-{role}-{secrets.token_hex(3)}", role, "42" if role == "province" else None,
                             password="pw-token-12345")
        return svc.create_token(account, "test")[0]


def test_json_api_for_admins_only(client: FlaskClient, admin_runtime: Runtime, today_set: dict[str, int]) -> None:
    r = client.get("/api/v1/admin/monitor", headers={"Authorization": f"Bearer {_token(admin_runtime, 'admin')}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    doc: dict[str, Any] = r.get_json()
    assert doc["day"] == parse_day(None).isoformat()
    rows = {d["delivery_id"]: d for d in doc["deliveries"]}
    hub = rows[today_set["hub_accepted"]]
    assert hub["channel"] == "hub" and hub["stage"] == "accepted" and hub["seconds_to_verdict"] == pytest.approx(4000)
    assert hub["size"] == 1500 and hub["size_human"] == "1.5 KiB" and hub["received_at"].endswith("Z")
    assert doc["totals"]["sftp"]["receiving"]["count"] == 1
    assert any(f["name"] == "P_42_202610_07_31201.txt" for f in doc["in_flight"])
    assert client.get("/api/v1/admin/monitor?day=2001-01-01",
                      headers={"Authorization": f"Bearer {_token(admin_runtime, 'admin')}"}).get_json()["deliveries"] == []
    refused = client.get("/api/v1/admin/monitor", headers={"Authorization": f"Bearer {_token(admin_runtime, 'province')}"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "wrong_role"
    assert client.get("/api/v1/admin/monitor").status_code == 401
    bad = client.get("/api/v1/admin/monitor?day=x", headers={"Authorization": f"Bearer {_token(admin_runtime, 'admin')}"})
    assert bad.status_code == 422 and bad.get_json()["code"]


def test_missing_inbox_root_is_not_an_error(tmp_path: Path, admin_runtime: Runtime) -> None:
    with admin_runtime.db.session() as s:
        m = MonitorService(s, [("dropbox", tmp_path / "absent")], tmp_path / "absent-staging").day(parse_day(None))
    assert all(f.channel != "dropbox" for f in m.in_flight)
