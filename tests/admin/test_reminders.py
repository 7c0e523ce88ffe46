"""Reminders before deadlines: who is due one (exceptions and closed cycles included), sending once per
party x cycle x lead, e-mail over a real SMTP server on loopback, the outbox files, the command, the admin page,
the province pages' banner, the API and the agent's ``status``."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import json
import re
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from flask import render_template
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.admin.models import Reminder
from exchange_server.admin.reminders import (
    JSON_NAME,
    ReminderService,
    refresh_party_files,
    send_reminders,
)
from exchange_server.admin.services import CycleExceptionService
from exchange_server.app import create_app
from exchange_server.clock import BEIJING, utcnow
from exchange_server.cycles.services import CycleService
from exchange_server.runtime import Runtime
from exchange_server.sftp.outbox import trees
from exchange_server.submissions.models import DataScope, UnitVersion
from schemas import Spec
from schemas.conventions import Cycle
from tests.admin.conftest import Accounts, Login, sign_in
from tests.admin.test_monitor import make_delivery
from tests.support.deliveries import networks
from tests.support.ports import free_port as _free_port

UNITS = ["31201", "31202", "31203", "32001", "32002", "32003"]


# -- a real SMTP server on loopback -------------------------------------------------------------


class Inbox:
    """aiosmtpd's handler: keeps every message it is given (envelope recipients and the raw bytes)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        self.arrived.set()
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server (aiosmtpd) on 127.0.0.1, in its own thread: (what it received, its port)."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, loop=asyncio.new_event_loop())
    controller.start()
    yield inbox, port
    controller.stop()


# -- the scene ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Scene:
    """Who sends what in the module's runtime, and the moment the deadlines are set from."""

    t0: dt.datetime
    network: str
    hubei: Login
    hubei2: Login
    beijing: Login
    net: Login


def accept(rt: Runtime, sender: str, party: str, cycle: str, units: list[str]) -> None:
    """Make ``units`` of ``party``'s ``cycle`` count as accepted (a current version in its scope)."""
    did = make_delivery(rt, sender, "http", "accepted", utcnow(), took=1, party=party)
    with rt.db.session() as s:
        for unit in units:
            scope = s.scalar(select(DataScope).where(DataScope.party == party, DataScope.unit == unit,
                                                     DataScope.cycle == cycle))
            if scope is None:
                scope = DataScope(party=party, unit=unit, cycle=cycle)
                s.add(scope)
                s.flush()
            v = UnitVersion(scope_id=scope.id, number=scope.versions_count + 1, delivery_id=did, resend=0, rows=1)
            s.add(v)
            s.flush()
            scope.current_version_id, scope.versions_count = v.id, scope.versions_count + 1


@pytest.fixture(scope="module")
def scene(admin_runtime: Runtime, accounts: Accounts, spec: Spec) -> Scene:
    """Deadlines: 202611 in 12 h, 202610 in 2.5 days, 202609 closed. Hubei (two accounts, both with e-mail)
    has delivered all of 202611 and one unit of 202610; Beijing (no e-mail) nothing, with exceptions to
    202610 (5 days) and closed 202609 (1 day); a Hubei network account nothing; an inactive account is ignored."""
    rt = admin_runtime
    t0 = utcnow()
    network = networks(spec, "42", Cycle.parse("202610").begin)[0]
    hubei, hubei2 = accounts.province("42"), accounts.province("42")
    beijing, net = accounts.province("11"), accounts.province(network)
    gone = accounts.province("13")
    with rt.db.session() as s:
        svc = AccountService(s, "test")
        svc.get(hubei.name).email = "hubei-crm@example.com"
        svc.get(hubei2.name).email = "zhangsan@example.com"
        svc.get(gone.name).active = False
        svc.get(gone.name).email = "gone@example.com"
        cycles = CycleService(s, rt.spec, "test")
        cycles.set_deadline("202611", t0 + dt.timedelta(hours=12))
        cycles.set_deadline("202610", t0 + dt.timedelta(days=2, hours=12))
        cycles.close("202609")
        exceptions = CycleExceptionService(s, "test")
        exceptions.grant("202610", "11", t0 + dt.timedelta(days=5), "系统割接 cut-over")
        exceptions.grant("202609", "11", t0 + dt.timedelta(days=1), "迟报 late")
    accept(rt, hubei.name, "42", "202611", UNITS)
    accept(rt, hubei.name, "42", "202610", ["31201"])
    return Scene(t0, network, hubei, hubei2, beijing, net)


def _keyed(dues: list[Any]) -> dict[tuple[str, str], Any]:
    return {(d.party, d.cycle): d for d in dues}


def test_who_is_due_and_which_lead(admin_runtime: Runtime, scene: Scene) -> None:
    with admin_runtime.db.session() as s:
        service = ReminderService(s, admin_runtime.spec, (3, 1))
        everything = _keyed(service.outstanding(scene.t0))
        due = _keyed(service.to_send(scene.t0))
        assert service.lead_for(dt.timedelta(hours=20)) == 1 and service.lead_for(dt.timedelta(days=4)) is None
    hubei = everything[("42", "202610")]
    assert [m.code for m in hubei.missing] == UNITS[1:] and hubei.lead == 3
    assert sorted(hubei.emails) == sorted(["hubei-crm@example.com", "zhangsan@example.com"])
    assert ("42", "202611") not in everything  # delivered everything
    assert everything[(scene.network, "202611")].lead == 1  # a network's own data: the province's does not count
    beijing = everything[("11", "202610")]
    assert beijing.exception and beijing.lead is None  # the exception moved the deadline 5 days out
    assert abs((beijing.deadline - scene.t0) - dt.timedelta(days=5)) < dt.timedelta(seconds=1)
    closed = everything[("11", "202609")]  # closed, but the exception lets Beijing deliver: reminded
    assert closed.exception and closed.lead == 1
    assert ("42", "202609") not in everything and ("13", "202610") not in everything  # closed; inactive
    assert set(due) == {("42", "202610"), (scene.network, "202610"), ("11", "202611"), (scene.network, "202611"),
                        ("11", "202609")}
    assert ("11", "202610") not in due


def test_send_once_per_lead_with_mail_and_outbox(admin_runtime: Runtime, scene: Scene,
                                                 smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    rt = admin_runtime
    rt.settings = dataclasses.replace(rt.settings, smtp_host="127.0.0.1", smtp_port=port,
                                      smtp_from="kam-exchange@hq.example", reminder_days_before="3,1")
    dry = send_reminders(rt, "tester", dry_run=True, now=scene.t0)
    assert {(r.party, r.cycle, r.lead) for r in dry} >= {("42", "202610", 3)}
    with rt.db.session() as s:
        assert s.scalars(select(Reminder)).all() == []  # a dry run records nothing
    assert inbox.messages == []

    sent = send_reminders(rt, "tester", now=scene.t0)
    assert {(r.party, r.cycle, r.lead) for r in sent} == {
        ("42", "202610", 3), (scene.network, "202610", 3), ("11", "202611", 1), (scene.network, "202611", 1),
        ("11", "202609", 1)}
    hubei = next(r for r in sent if r.party == "42")
    assert hubei.outbox_file == "202610.reminder.txt" and hubei.email_error is None
    assert sorted(hubei.emailed) == sorted(["hubei-crm@example.com", "zhangsan@example.com"])
    assert all(not r.emailed for r in sent if r.party != "42")  # no addresses: outbox only

    # Exactly one message, to both of Hubei's addresses, UTF-8 encoded, naming cycle, deadline and units.
    assert inbox.arrived.wait(5) and len(inbox.messages) == 1
    rcpt, raw = inbox.messages[0]
    assert sorted(rcpt) == sorted(["hubei-crm@example.com", "zhangsan@example.com"])
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    assert b"=?utf-8?" in head.lower()  # the Chinese subject is RFC 2047 encoded, the headers stay ASCII
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg["Subject"])
    deadline = (scene.t0 + dt.timedelta(days=2, hours=12)).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    assert "催报" in subject and "2026年10月" in subject and "Reminder: cycle 202610" in subject and deadline in subject
    assert msg.get_content_charset() == "utf-8" and msg["From"] == "kam-exchange@hq.example"
    body = msg.get_content()
    assert "报告周期 2026年10月（202610）" in body and f"{deadline}（北京时间）" in body
    assert "Cycle 202610 is due" in body and "湖北" in body and "Hubei" in body
    for unit in UNITS[1:]:
        assert f"  - {unit} " in body
    assert "  - 31201 " not in body  # accepted: not missing
    assert admin_runtime.spec.unit("31202").name_zh in body and admin_runtime.spec.unit("31202").name_en in body

    # The outbox: the text and the machine-readable list, in every tree HQ writes.
    outbox = trees(rt)[0].outbox("42")
    text = (outbox / "202610.reminder.txt").read_text("utf-8")
    assert text.startswith(subject) and "32003" in text
    doc = json.loads((outbox / JSON_NAME).read_text("utf-8"))
    assert [r["cycle"] for r in doc["reminders"]] == ["202610"]
    assert [u["code"] for u in doc["reminders"][0]["missing_units"]] == UNITS[1:]
    assert (trees(rt)[0].outbox("11") / "202609.reminder.txt").is_file()

    # Once per party x cycle x lead: nothing again at the same moment ...
    assert send_reminders(rt, "tester", now=scene.t0) == []
    assert len(inbox.messages) == 1
    # ... and two days later the 1-day leads of 202610 are due, and Beijing's moved deadline reaches 3 days.
    later = send_reminders(rt, "tester", now=scene.t0 + dt.timedelta(days=2))
    assert {(r.party, r.cycle, r.lead) for r in later} == {("42", "202610", 1), (scene.network, "202610", 1),
                                                          ("11", "202610", 3)}
    assert inbox.arrived.wait(5) and len(inbox.messages) == 2
    with rt.db.session() as s:
        rows = s.scalars(select(Reminder)).all()
        assert len(rows) == 8 and len({(r.party, r.cycle, r.lead_days) for r in rows}) == 8
        mine = next(r for r in rows if (r.party, r.cycle, r.lead_days) == ("42", "202610", 3))
        assert mine.sent_by == "tester" and mine.outbox_file == "202610.reminder.txt"
        assert sorted(mine.emailed_to) == sorted(["hubei-crm@example.com", "zhangsan@example.com"])


def test_a_delivery_clears_the_reminder_in_the_outbox(admin_runtime: Runtime, scene: Scene,
                                                      smtp: tuple[Inbox, int]) -> None:
    rt = admin_runtime
    outbox = trees(rt)[0].outbox(scene.network)
    # The last send ran two days on: 202611's deadline had passed, so the file no longer listed it.
    assert [r["cycle"] for r in json.loads((outbox / JSON_NAME).read_text("utf-8"))["reminders"]] == ["202610"]
    assert scene.network in refresh_party_files(rt, scene.t0)  # back at t0 both stand
    assert [r["cycle"] for r in json.loads((outbox / JSON_NAME).read_text("utf-8"))["reminders"]] == ["202611", "202610"]  # by deadline
    accept(rt, scene.net.name, scene.network, "202611", UNITS)
    assert scene.network in refresh_party_files(rt, scene.t0)
    assert [r["cycle"] for r in json.loads((outbox / JSON_NAME).read_text("utf-8"))["reminders"]] == ["202610"]
    assert scene.network not in refresh_party_files(rt, scene.t0)  # unchanged: not written again


def test_a_failing_smtp_server_is_recorded_and_the_outbox_still_gets_it(admin_runtime: Runtime, scene: Scene,
                                                                        accounts: Accounts) -> None:
    rt = admin_runtime
    rt.settings = dataclasses.replace(rt.settings, smtp_host="127.0.0.1", smtp_port=_free_port(),
                                      smtp_from="kam@hq.example", smtp_timeout=3)
    fresh = accounts.province("14")
    with rt.db.session() as s:
        AccountService(s, "test").get(fresh.name).email = "shanxi@example.com"
    sent = [r for r in send_reminders(rt, "tester", now=scene.t0 + dt.timedelta(days=2)) if r.party == "14"]
    assert {r.cycle for r in sent} == {"202610"}
    assert sent[0].emailed == [] and "ConnectionRefused" in (sent[0].email_error or "")
    assert (trees(rt)[0].outbox("14") / "202610.reminder.txt").is_file()
    with rt.db.session() as s:
        r = s.scalar(select(Reminder).where(Reminder.party == "14"))
        assert r is not None and "ConnectionRefused" in (r.email_error or "")


def test_command_dry_run_and_send(admin_runtime: Runtime, scene: Scene, accounts: Accounts) -> None:
    from exchange_server.cli import main

    rt = admin_runtime
    accounts.province("15")
    base = ["--data-dir", str(rt.settings.data_dir), "--database-url", rt.settings.database_url]
    env = {"KAM_REMINDER_DAYS_BEFORE": "40", "KAM_SFTP_PORT": "0"}  # 40 days: every open deadline is near
    runner = CliRunner()
    dry = runner.invoke(main, [*base, "reminders", "send", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert re.search(r"would send: 15 +202610 +40d .*missing 31201,31202,31203,32001,32002,32003", dry.output)
    with rt.db.session() as s:
        assert s.scalar(select(Reminder).where(Reminder.party == "15")) is None
    real = runner.invoke(main, [*base, "reminders", "send", "--json", "--as", "cron"], env=env)
    assert real.exit_code == 0, real.output
    doc = json.loads(real.output[real.output.index("{"):])
    mine = [r for r in doc["reminders"] if r["party"] == "15"]
    assert {r["cycle"] for r in mine} == {"202610", "202611"} and all(r["outbox_file"] for r in mine)
    again = runner.invoke(main, [*base, "reminders", "send", "--dry-run"], env=env)
    assert again.exit_code == 0 and not re.search(r"would send: 15 ", again.output)  # sent once: not again
    listing = runner.invoke(main, [*base, "reminders", "list"], env=env)
    assert listing.exit_code == 0 and "202610" in listing.output and "sent: 40d" in listing.output
    mail = runner.invoke(main, [*base, "reminders", "email", scene.beijing.name, "bj@example.com"], env=env)
    assert mail.exit_code == 0 and "bj@example.com" in mail.output
    bad = runner.invoke(main, [*base, "reminders", "email", scene.beijing.name, "not an address"], env=env)
    assert bad.exit_code == 1 and "bad_email" in bad.output


# -- pages, API, agent ----------------------------------------------------------------------------


def test_admin_page_lists_due_and_sent_in_both_languages(client: FlaskClient, accounts: Accounts, scene: Scene) -> None:
    token = sign_in(client, accounts.admin())
    html = client.get("/admin/reminders").get_data(as_text=True)
    assert "催报提醒" in html and 'data-section="reminders"' in html
    assert re.search(r'<tr data-party="42" data-cycle="202610"', html)
    assert re.search(r'<tr data-reminder="\d+" data-party="42" data-cycle="202610" data-lead="3"', html)
    assert "hubei-crm@example.com" in html and "湖北" in html
    client.get("/lang/en")
    en = client.get("/admin/reminders").get_data(as_text=True)
    assert "Upcoming deadlines, not delivered yet" in en and "Reminders sent" in en and "Hubei" in en
    assert "催报提醒" not in en
    # "send now" needs the CSRF token; with it, what is due is sent and the page says how many.
    assert client.post("/admin/reminders/send").status_code in (400, 403)
    fresh = accounts.province("21")
    r = client.post("/admin/reminders/send", data={"csrf_token": token})
    assert r.status_code == 303
    page = client.get("/admin/reminders").get_data(as_text=True)
    assert re.search(r"\d+ reminder\(s\) sent", page)
    assert re.search(r'<tr data-reminder="\d+" data-party="21" data-cycle="202611" data-lead="1"', page)
    # the e-mail form
    r = client.post("/admin/reminders/email", data={"csrf_token": token, "account": fresh.name, "email": "ln@example.com"})
    assert r.status_code == 303
    assert f"{fresh.name} (21) — ln@example.com" in client.get("/admin/reminders").get_data(as_text=True)
    r = client.post("/admin/reminders/email", data={"csrf_token": token, "account": fresh.name, "email": "x y"})
    assert r.status_code == 400 and 'data-code="bad_email"' in r.get_data(as_text=True)


@pytest.mark.parametrize("role", ["analyst", "province"])
def test_admin_page_refuses_other_roles(role: str, client: FlaskClient, accounts: Accounts) -> None:
    token = sign_in(client, accounts.make(role, "42" if role == "province" else None))
    assert client.get("/admin/reminders").status_code == 403
    assert client.post("/admin/reminders/send", data={"csrf_token": token}).status_code == 403


def test_banner_include_names_cycle_deadline_and_units(admin_runtime: Runtime, scene: Scene) -> None:
    """The include the province layout carries, rendered for a signed-in Hubei account, in both languages."""
    from flask import g

    from exchange_server.db import get_session

    app = create_app(runtime=admin_runtime)
    with app.test_request_context("/province/cycles"):
        g.page_account = AccountService(get_session(), "test").get(scene.hubei.name)
        html = render_template("province/_reminders.html")
        g.page_language = "en"
        en = render_template("province/_reminders.html")
    assert 'id="reminders"' in html and 'data-cycle="202610"' in html and "催报提醒" in html
    assert all(f'data-unit="{u}"' in html for u in UNITS[1:]) and 'data-unit="31201"' not in html
    assert "Reminder" in en and "cycle 202610 is due" in en and admin_runtime.spec.unit("31202").name_en in en
    assert 'data-cycle="202611"' not in html  # delivered in full
    with app.test_request_context("/province/cycles"):
        g.page_account = None  # signed out (or an HQ role): nothing
        assert render_template("province/_reminders.html").strip() == ""


def test_banner_on_the_province_page(app: Any, scene: Scene) -> None:
    """Signed in as Beijing: its pages carry the banner. Until the layout includes it (one line, added by the
    integrator), the test lays the line over the layout itself, so the page is tested either way."""
    from jinja2 import ChoiceLoader, DictLoader

    include = '{% include "province/_reminders.html" %}'
    layout = (Path(__file__).resolve().parents[2] / "templates" / "province" / "base_province.html").read_text("utf-8")
    if include not in layout:
        patched = layout.replace("{% block province_content %}", include + "\n{% block province_content %}", 1)
        assert include in patched
        app.jinja_env.loader = ChoiceLoader([DictLoader({"province/base_province.html": patched}),
                                             app.jinja_env.loader])
    client = app.test_client()
    sign_in(client, scene.beijing)
    html = client.get("/province/cycles").get_data(as_text=True)
    assert 'id="reminders"' in html and 'data-cycle="202611"' in html and "催报提醒" in html
    assert html.count('id="reminders"') == 1
    client.get("/lang/en")
    assert "cycle 202611 is due" in client.get("/province/").get_data(as_text=True)


def test_api_gives_the_party_its_reminders(client: FlaskClient, scene: Scene) -> None:
    r = client.get("/api/v1/reminders", headers={"Authorization": f"Bearer {scene.hubei.token}"})
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["party"] == "42" and [x["cycle"] for x in doc["reminders"]] == ["202610"]
    item = doc["reminders"][0]
    assert [u["code"] for u in item["missing_units"]] == UNITS[1:] and item["lead_days"] == 3
    assert item["deadline_beijing"] and "Reminder: cycle 202610" in item["subject"]
    assert {s["lead_days"] for s in item["sent"]} >= {3}
    assert client.get("/api/v1/reminders").status_code == 401


@pytest.mark.slow
def test_agent_status_shows_reminders_over_http_and_sftp(tmp_path: Path, spec: Spec) -> None:
    from exchange_server.runtime import open_runtime
    from exchange_server.runtime.serve import Server
    from exchange_server.setup_service import initialise
    from tests.agent.conftest import make_env

    rt = open_runtime({"data_dir": str(tmp_path / "hq"), "worker_poll_seconds": 0.05, "sftp_port": 0,
                       "sftp_scan_seconds": 0.2, "reminder_check_seconds": 0})
    initialise(rt)
    server = Server(rt, "127.0.0.1", 0, sftp_port=0).start(workers=1)
    try:
        env = make_env(rt, tmp_path, spec, "http", server)
        before = env.run("status")
        assert before.returncode == 0 and "REMINDER" not in before.stdout, before.stdout + before.stderr
        with rt.db.session() as s:
            CycleService(s, rt.spec, "test").set_deadline("202610", utcnow() + dt.timedelta(days=2))
        assert [r.party for r in send_reminders(rt, "test")] == ["42"]
        for transport in ("http", "sftp"):
            run_env = dataclasses.replace(env, transport=transport, config=env.home / f"kam-{transport}.toml")
            run_env.write_config()
            out = run_env.run("status")
            assert out.returncode == 0, out.stdout + out.stderr
            line = next((x for x in out.stdout.splitlines() if x.startswith("REMINDER")), "")
            assert "cycle 202610 is due" in line and "周期 202610" in line, (transport, out.stdout)
            assert all(u in line for u in UNITS), line
            js = run_env.run("--json", "status")
            assert [r["cycle"] for r in json.loads(js.stdout)["reminders"]] == ["202610"], js.stdout
    finally:
        server.shutdown()
        rt.db.dispose()


def test_settings_parse_and_refuse_bad_leads() -> None:
    from exchange_server.config import load_settings
    from exchange_server.errors import ConfigError

    assert load_settings({"reminder_days_before": "1, 3,3"}, environ={}).reminder_leads == (3, 1)
    assert load_settings({"reminder_days_before": [7, 2]}, environ={}).reminder_leads == (7, 2)
    assert load_settings({"reminder_days_before": ""}, environ={}).reminder_leads == ()
    with pytest.raises(ConfigError):
        load_settings({"reminder_days_before": "3,soon"}, environ={})
    with pytest.raises(ConfigError):
        load_settings({"smtp_host": "mail.example"}, environ={})  # no sender address


def test_the_server_loop_sends_what_is_due(admin_runtime: Runtime, scene: Scene, accounts: Accounts) -> None:
    from exchange_server.admin.reminders import reminders_forever

    rt = admin_runtime
    rt.settings = dataclasses.replace(rt.settings, smtp_host="", reminder_check_seconds=0.2)
    accounts.province("22")
    stop = threading.Event()
    loop = threading.Thread(target=reminders_forever, args=(rt, stop), daemon=True)
    loop.start()
    try:
        deadline = utcnow() + dt.timedelta(seconds=20)
        found: list[Reminder] = []
        while len(found) < 2 and utcnow() < deadline:
            stop.wait(0.2)
            with rt.db.session() as s:
                found = list(s.scalars(select(Reminder).where(Reminder.party == "22")))
        assert sorted((r.cycle, r.lead_days, r.sent_by) for r in found) == [("202610", 3, "system"),
                                                                            ("202611", 1, "system")]
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    rt.settings = dataclasses.replace(rt.settings, reminder_check_seconds=0)
    stop2 = threading.Event()
    reminders_forever(rt, stop2)  # 0: returns at once, never sends


def test_at_a_hub_the_local_networks_are_reminded_of_the_internal_deadline(tmp_path: Path, spec: Spec) -> None:
    """A province hub runs the same reminders for its prefectures, against the deadline its prefectures see."""
    from tests.support.tiers import network_accounts, networks_of, open_hub

    rt = open_hub(tmp_path / "hub", f"sqlite:///{tmp_path / 'hub.db'}", "http://127.0.0.1:9", "kam_unused")
    try:
        nets = networks_of(spec, "202610")[:2]
        network_accounts(rt, nets)
        internal = utcnow() + dt.timedelta(hours=30)
        with rt.db.session() as s:
            CycleService(s, rt.spec, "test").create("202610", deadline=internal, state="open")
        accept(rt, f"latn{nets[0]}", nets[0], "202610", UNITS)
        sent = send_reminders(rt, "system")
        assert [(r.party, r.cycle, r.lead) for r in sent] == [(nets[1], "202610", 3)]
        assert (trees(rt)[0].outbox(nets[1]) / "202610.reminder.txt").is_file()
        assert not (trees(rt)[0].outbox(nets[0]) / "202610.reminder.txt").exists()
    finally:
        rt.db.dispose()
