"""The province hub's pages: approve, return, forward and follow HQ's answers, in headless Chromium and in process.

Each test runs a real HQ (live, with an ingestion worker) and a hub of Hubei (42) synced from
it, whose 14 local networks have each delivered their own data for 202611 (the hub tests'
``delivered`` fixture), on SQLite and on PostgreSQL. The browser test also runs the hub as a
live server, whose forwarder thread sends what the admin forwards to HQ and brings the
verdict back. ``KAM_SCREENSHOTS=1`` writes the screenshots to docs/screenshots/.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.services import AccountService
from exchange_server.app import create_app
from exchange_server.errors import Unprocessable
from exchange_server.hub.answers import Answers, HqAnswer
from exchange_server.hub.approval import ApprovalService
from exchange_server.hub.forward import ForwardService
from exchange_server.hub.models import JUDGED, Forward, HqFinding, HubCycle
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.pages.admin.forms import beijing_local
from exchange_server.review.models import ReviewComment
from exchange_server.runtime import Runtime
from exchange_server.runtime.serve import Server
from exchange_server.submissions.models import Delivery, DeliveryApproval
from schemas.validation.readers import text_lines
from tests.hub import conftest as hub_fixtures
from tests.hub.conftest import Delivered
from tests.pages.test_language import CJK, ENGLISH_UI, ui_text
from tests.support.browser import VIEWPORT, screenshot_path
from tests.support.receiving import receive_folder
from tests.support.tiers import PROVINCE, rewrite_delivery

# HQ (live, SQLite and PostgreSQL) and a hub of 42 whose networks have delivered: the hub tests' fixtures.
postgres, database_url, runtime, live_server = (hub_fixtures.postgres, hub_fixtures.database_url, hub_fixtures.runtime,
                                                hub_fixtures.live_server)
hub, hub_database_url, delivered = hub_fixtures.hub, hub_fixtures.hub_database_url, hub_fixtures.delivered

CYCLE = "202611"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Login:
    """An account with a password, made for a test."""

    name: str
    password: str


def make_login(rt: Runtime, role: str, party: str | None = None, name: str | None = None) -> Login:
    """A new account of ``role`` with a password (a prefecture account when ``party`` is a network)."""
    login = Login(name or f"{role}-{secrets.token_hex(3)}", f"pw-{secrets.token_urlsafe(9)}")
    with rt.db.session() as s:
        AccountService(s, "test").create(login.name, role, party, display_name=f"测试 {role}",
                                          password=login.password)
    return login


def set_password(rt: Runtime, name: str) -> Login:
    """A password for an existing account (the fixture's prefecture accounts have tokens only)."""
    password = f"pw-{secrets.token_urlsafe(9)}"
    with rt.db.session() as s:
        svc = AccountService(s, "test")
        svc.set_password(svc.get(name), password)
    return Login(name, password)


def sign_in(client: FlaskClient, login: Login) -> str:
    """Sign the test client in through the form; the session's CSRF token."""
    html = client.get("/login").get_data(as_text=True)
    token = _CSRF.search(html)
    assert token
    r = client.post("/login", data={"username": login.name, "password": login.password,
                                    "csrf_token": token.group(1)})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def sign_in_page(page: Any, base: str, login: Login) -> None:
    """In the browser: the sign-in form, then the account's start page."""
    page.goto(base + "/login")
    page.fill("#username", login.name)
    page.fill("#password", login.password)
    with page.expect_navigation():
        page.click("button.primary")


def states(page: Any) -> dict[str, str]:
    """The board's networks and their states, as the page shows them."""
    rows = page.locator("#board tbody tr")
    return {rows.nth(i).get_attribute("data-network"): rows.nth(i).get_attribute("data-state")
            for i in range(rows.count())}


def correct(d: Delivered, network: str, folder: Path) -> int:
    """The network resends its data (resend 01) and the hub accepts it; the new delivery's id."""
    rewrite_delivery(d.hub.spec, d.folder(network), folder, 1)
    delivery_id = receive_folder(d.hub, f"latn{network}", folder)
    IngestionWorker(d.hub, "t").drain()
    with d.hub.db.session() as s:
        delivery = s.get(Delivery, delivery_id)
        assert delivery is not None and delivery.status in ("accepted", "accepted_with_warnings"), delivery.status
    return delivery_id


def wait_judged(rt: Runtime, count: int, timeout: float = 90) -> list[Forward]:
    """The hub's forwards once ``count`` of them are judged by HQ (the live hub's forwarder sends them)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with rt.db.session() as s:
            made = list(s.scalars(select(Forward).order_by(Forward.id)))
            if sum(1 for f in made if f.state == JUDGED) >= count:
                for f in made:
                    s.expunge(f)
                return made
        time.sleep(0.2)
    raise AssertionError("HQ did not judge the forwards in time")


def english_ui_clean(html: str) -> list[str]:
    """UI text with Chinese in it on an English page (should be none)."""
    return [part for part in ui_text(html) if CJK.search(part)]


def chinese_ui_clean(html: str) -> list[str]:
    """English UI phrases left on a Chinese page (should be none)."""
    text = " ".join(ui_text(html))
    return [w for w in ENGLISH_UI if re.search(rf"(?<![A-Za-z]){re.escape(w)}(?![A-Za-z])", text)]


@pytest.fixture
def hub_server(hub: Runtime, delivered: Delivered) -> Iterator[Server]:
    """The hub as a live server (HTTP and its forwarder; the test drains the ingestion queue itself)."""
    server = Server(hub, "127.0.0.1", 0, sftp_port=0).start(workers=0, sftp=False)
    yield server
    server.shutdown()


# -- in the browser: the admin's day at the hub, and HQ's view of it ----------------------------------


@pytest.mark.slow
def test_hub_admin_approves_returns_and_forwards(page: Any, context: Any, delivered: Delivered, hub_server: Server,
                                                 tmp_path: Path) -> None:
    d, base = delivered, hub_server.url
    a, b, c, e = d.networks[:4]
    admin = make_login(d.hub, "admin", name="alice")

    # The hub link in the header leads to the board of the newest open cycle: every network pending.
    sign_in_page(page, base, admin)
    with page.expect_navigation():
        page.click("#hub-link")
    assert page.url == f"{base}/hub/cycles/{CYCLE}"
    assert set(states(page).values()) == {"pending"} and len(states(page)) == len(d.networks) == 14
    cell = page.locator(f'#board tr[data-network="{a}"] td.hub-cell[data-unit="31201"]')
    assert cell.get_attribute("data-origin") == "own" and cell.get_attribute("data-version") == "1"
    assert f"P_{a}_{CYCLE}_00" in cell.inner_text()

    # Approve two networks.
    page.check(f"#pick-{a}")
    page.check(f"#pick-{b}")
    with page.expect_navigation():
        page.click("#approve")
    assert page.locator(".flash").get_attribute("data-category") == "ok"
    got = states(page)
    assert got[a] == got[b] == "approved" and got[c] == "pending"
    assert "alice" in page.locator(f'#board tr[data-network="{a}"] td.decision').inner_text()
    assert page.locator('#counts [data-state="approved"]').get_attribute("data-count") == "2"

    # Returning needs a comment: refused without one (400), the ticks kept; then returned with one.
    page.check(f"#pick-{c}")
    with page.expect_navigation() as refused:
        page.click("#return")
    assert refused.value.status == 400 and page.locator("#error").get_attribute("data-code") == "comment_empty"
    assert page.is_checked(f"#pick-{c}") and states(page)[c] == "pending"
    comment = "31201 客户名称与省公司台账不符，请核对后重报。"
    page.fill("#comment", comment)
    with page.expect_navigation():
        page.click("#return")
    assert states(page)[c] == "returned"
    assert comment in page.locator(f'#board tr[data-network="{c}"] td.decision').inner_text()
    # The comment reached the prefecture's delivery (its comments, its page, its outbox).
    with d.hub.db.session() as s:
        c_delivery, c_check = s.execute(select(Delivery.id, Delivery.check_name).where(Delivery.party == c)).one()
        bodies = [x.body for x in s.scalars(select(ReviewComment).where(ReviewComment.delivery_id == c_delivery))]
    assert any(comment in body for body in bodies), bodies
    assert comment in (d.hub.settings.sftp_root / c / "outbox" / f"{c_check}.comment.txt").read_text("utf-8")
    prefecture = set_password(d.hub, f"latn{c}")
    other = context.browser.new_context(viewport=VIEWPORT)
    mine = other.new_page()
    sign_in_page(mine, base, prefecture)
    mine.goto(f"{base}/province/deliveries/{c_delivery}")
    assert comment in mine.locator("#comments").inner_text()
    assert mine.locator("#hq-answers").count() == 0  # nothing forwarded yet: no HQ section
    response = mine.goto(f"{base}/hub/")
    assert response is not None and response.status == 403  # a prefecture account never sees the hub pages
    assert mine.locator("#hub-link").count() == 0
    other.close()

    # A correction after approval reopens only that network.
    correct(d, a, tmp_path / "fix")
    page.reload()
    got = states(page)
    assert got[a] == "changed" and got[b] == "approved" and got[c] == "returned" and got[e] == "pending"
    row = page.locator(f'#board tr[data-network="{a}"]')
    assert row.get_attribute("data-changes") == "1"
    assert row.locator('td.hub-cell[data-unit="31201"]').get_attribute("data-version") == "2"
    assert page.locator(f'#board tr[data-network="{b}"]').get_attribute("data-changes") == "0"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    assert chinese_ui_clean(page.content()) == []
    page.screenshot(path=str(screenshot_path("hub-approval-board.png", tmp_path)), full_page=True)

    # Forwarding all is refused while a network is not approved (409), naming the networks.
    with page.expect_navigation() as refused:
        page.click("#forward-all")
    assert refused.value.status == 409
    assert page.locator("#error").get_attribute("data-code") == "forward_not_approved"
    assert page.locator(f'#error-networks li[data-network="{a}"]').get_attribute("data-state") == "changed"
    assert page.locator(f'#error-networks li[data-network="{b}"]').count() == 0

    # Approve the corrected network again, then forward the two approved networks explicitly.
    page.check(f"#pick-{a}")
    with page.expect_navigation():
        page.click("#approve")
    assert states(page)[a] == "approved"
    page.check(f"#pick-{a}")
    page.check(f"#pick-{b}")
    with page.expect_navigation():
        page.click("#forward-selected")
    assert page.locator(".flash").get_attribute("data-category") == "ok", page.locator("#error").all_inner_texts()
    assert page.locator("#cycle-forwards tbody tr").count() == 2

    # The hub's forwarder sends both; HQ judges them; the forward's page shows the verdict and the reconciliation.
    made = wait_judged(d.hub, 2)
    assert [f.check_name for f in made] == [f"P_{a}_{CYCLE}_00", f"P_{b}_{CYCLE}_01"]
    assert all(f.hq_status == "accepted" for f in made), [(f.hq_status, f.last_error) for f in made]
    with page.expect_navigation():
        page.click("a[data-section=forwards]")
    row = page.locator(f'#forwards tr[data-forward="{made[0].id}"]')
    assert row.get_attribute("data-state") == "judged" and row.get_attribute("data-hq-status") == "accepted"
    with page.expect_navigation():
        row.locator("a").first.click()
    assert page.locator("#hq-verdict").get_attribute("data-status") == "accepted"
    assert page.locator("#hq-delivery").inner_text().strip() == str(made[0].hq_delivery_id)
    assert page.locator("#reconciliation").get_attribute("data-equal") == "yes"
    assert page.locator("#reconcile tbody tr[data-equal=no]").count() == 0
    assert page.locator("#reconcile tr.total").count() == 0  # one network: its lines are the totals
    assert chinese_ui_clean(page.content()) == []
    source = page.locator(f'#sources tr[data-network="{a}"][data-unit="31201"]')
    assert f"P_{a}_{CYCLE}_01" in source.inner_text()  # the corrected version was forwarded
    assert page.locator(f'#approvals tr[data-network="{a}"]').inner_text().count("alice") == 1
    page.screenshot(path=str(screenshot_path("hub-forward.png", tmp_path)), full_page=True)

    # The same page in English has no Chinese UI text.
    with page.expect_navigation():
        page.click("#lang-en")
    assert page.locator("#h-reconciliation").inner_text().startswith("Reconciliation")
    assert english_ui_clean(page.content()) == []
    page.goto(f"{base}/hub/cycles/{CYCLE}")
    assert english_ui_clean(page.content()) == []

    # Forwarding the same approved versions again is refused.
    page.check(f"#pick-{a}")
    with page.expect_navigation() as refused:
        page.click("#forward-selected")
    assert refused.value.status == 409 and page.locator("#error").get_attribute("data-code") == "forward_unchanged"

    # At HQ: the forwarded delivery's review page and the dashboard say who approved it at the province.
    hq_admin = make_login(d.hq, "admin", name="hq-admin")
    hq_context = context.browser.new_context(viewport=VIEWPORT)
    hq = hq_context.new_page()
    hq_url = d.hub.settings.upstream_url.rstrip("/")  # HQ's live server, the hub's upstream
    sign_in_page(hq, hq_url, hq_admin)
    assert hq.locator("#hub-link").count() == 0  # HQ is no hub
    hq.goto(f"{hq_url}/admin/review/{made[0].hq_delivery_id}")
    panel = hq.locator("#province-approval")
    assert panel.get_attribute("data-hub") == PROVINCE
    assert hq.locator(f'#approval-networks tr[data-network="{a}"]').get_attribute("data-by") == "alice"
    hq.goto(f"{hq_url}/analyst/{CYCLE}")
    approved = hq.locator(f'#comp-approvals li[data-prov="{PROVINCE}"]')
    assert "alice" in approved.inner_text() and approved.get_attribute("data-all") == "yes"
    hq_context.close()


# -- in process: who may do what, deadlines, refusals, HQ's answers on the prefecture's page ---------------


def test_analysts_read_only_and_prefectures_and_hq_have_no_hub_pages(delivered: Delivered) -> None:
    d = delivered
    client = create_app(runtime=d.hub).test_client()
    assert client.get("/hub/").status_code == 302 and "/login" in client.get("/hub/").headers["Location"]

    analyst = make_login(d.hub, "analyst")
    token = sign_in(client, analyst)
    r = client.get("/hub/")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/hub/cycles/{CYCLE}")
    html = client.get(f"/hub/cycles/{CYCLE}").get_data(as_text=True)
    assert 'id="board"' in html and 'id="decide"' not in html and 'id="forward-all"' not in html
    assert 'id="read-only"' in html and 'id="hub-link"' in html
    for action in ("approve", "return", "forward", "deadline"):
        r = client.post(f"/hub/cycles/{CYCLE}/{action}", data={"csrf_token": token, "network": d.networks[0],
                                                               "comment": "x", "mode": "all"})
        assert r.status_code == 403, action
    with d.hub.db.session() as s:
        assert ApprovalService(s, PROVINCE).history(CYCLE) == []
        assert s.scalars(select(Forward)).all() == []
    assert client.get("/hub/forwards").status_code == 200
    assert client.get("/hub/forwards/999").status_code == 404
    assert client.get(f"/hub/cycles/{CYCLE}/networks/{d.networks[0]}").status_code == 200
    assert client.get(f"/hub/cycles/{CYCLE}/networks/0100").status_code == 404  # not a network of 42
    assert client.get("/hub/cycles/209912").status_code == 404
    assert client.get("/hub/nothing/here").status_code == 404
    assert client.get("/hub/forwards?cycle=../x").status_code == 400
    assert client.get("/hub/static/hub.css").status_code == 200
    # Every hub page in one language at a time (data values aside).
    pages = [f"/hub/cycles/{CYCLE}", "/hub/forwards", f"/hub/cycles/{CYCLE}/networks/{d.networks[0]}"]
    for path in pages:
        assert chinese_ui_clean(client.get(path).get_data(as_text=True)) == [], path
    client.set_cookie("kam_lang", "en")
    for path in pages:
        assert english_ui_clean(client.get(path).get_data(as_text=True)) == [], path
    client.set_cookie("kam_lang", "zh")

    prefecture = set_password(d.hub, f"latn{d.networks[0]}")
    other = create_app(runtime=d.hub).test_client()
    sign_in(other, prefecture)
    for path in ("/hub/", f"/hub/cycles/{CYCLE}", "/hub/forwards"):
        r = other.get(path)
        assert r.status_code == 403 and "wrong_role" in r.get_data(as_text=True), path
    assert 'id="hub-link"' not in other.get("/province/").get_data(as_text=True)

    # HQ is no hub: no hub pages, no link.
    hq = create_app(runtime=d.hq).test_client()
    sign_in(hq, make_login(d.hq, "admin"))
    assert hq.get("/hub/").status_code == 404
    assert 'id="hub-link"' not in hq.get("/admin/review/").get_data(as_text=True)


def test_internal_deadline_and_forward_refusals(delivered: Delivered, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    d = delivered
    client = create_app(runtime=d.hub).test_client()
    token = sign_in(client, make_login(d.hub, "admin"))
    board = f"/hub/cycles/{CYCLE}"
    with d.hub.db.session() as s:
        hq_deadline = s.get(HubCycle, CYCLE).hq_deadline
    # Later than HQ's: refused with the service's bilingual message, nothing changed.
    r = client.post(f"{board}/deadline", data={"csrf_token": token,
                                               "deadline": beijing_local(hq_deadline + dt.timedelta(days=1))})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and 'data-code="internal_deadline_after_hq"' in html
    assert "内部截止时间不能晚于总部截止时间" in html
    en = create_app(runtime=d.hub).test_client()
    en.set_cookie("kam_lang", "en")
    en_token = sign_in(en, make_login(d.hub, "admin"))
    r = en.post(f"{board}/deadline", data={"csrf_token": en_token,
                                          "deadline": beijing_local(hq_deadline + dt.timedelta(days=1))})
    assert r.status_code == 400 and "must not be after HQ&#39;s" in r.get_data(as_text=True)
    # Earlier: set, shown beside HQ's, and cleared again.
    earlier = beijing_local(hq_deadline - dt.timedelta(days=2))
    r = client.post(f"{board}/deadline", data={"csrf_token": token, "deadline": earlier})
    assert r.status_code == 303
    html = client.get(board).get_data(as_text=True)
    assert 'data-set="yes"' in html and earlier.replace("T", " ") in html
    with d.hub.db.session() as s:
        assert s.get(HubCycle, CYCLE).internal_deadline is not None
    assert client.post(f"{board}/deadline", data={"csrf_token": token, "clear": "1"}).status_code == 303
    assert 'data-set="no"' in client.get(board).get_data(as_text=True)
    assert client.post(f"{board}/deadline", data={"csrf_token": token, "deadline": "tomorrow"}).status_code == 400

    # Forward selected with nothing ticked, or a pending network: refused.
    r = client.post(f"{board}/forward", data={"csrf_token": token})
    assert r.status_code == 400 and 'data-code="no_networks"' in r.get_data(as_text=True)
    r = client.post(f"{board}/forward", data={"csrf_token": token, "network": d.networks[0]})
    assert r.status_code == 409 and 'data-code="forward_not_approved"' in r.get_data(as_text=True)
    r = client.post(f"{board}/approve", data={"csrf_token": token, "network": "0100"})
    assert r.status_code == 404 and 'data-code="network_not_found"' in r.get_data(as_text=True)

    # A forward HQ would reject: every finding names the prefecture delivery, file and line it is about.
    with d.hub.db.session() as s:
        source = s.scalar(select(Delivery).where(Delivery.party == d.networks[1]))
        assert source is not None
        source_id, source_check = source.id, source.check_name
    finding = {"code": "E304", "severity": "error", "file": f"P_{PROVINCE}_{CYCLE}_31201_00_001.txt", "line": 3,
               "field": "LEVEL_ID", "value": "X", "message_zh": "代码不在代码表中", "message_en": "not in the code list",
               "source_delivery": source_id, "source_check": source_check,
               "source_file": f"P_{d.networks[1]}_{CYCLE}_31201_00_001.txt", "source_line": 2}

    def invalid(*_args: Any, **_kw: Any) -> Any:
        raise Unprocessable("P_42_202611_00 would be rejected by HQ (1 error(s)); nothing was sent",
                            "P_42_202611_00 会被总部拒收（1 个错误），未发送", code="forward_invalid", errors=[finding])

    monkeypatch.setattr(ForwardService, "build", invalid)
    r = client.post(f"{board}/forward", data={"csrf_token": token, "mode": "all"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and 'data-code="forward_invalid"' in html
    assert f'data-source-delivery="{source_id}"' in html and 'data-source-line="2"' in html
    assert f'href="/admin/review/{source_id}"' in html and "会被总部拒收" in html
    assert chinese_ui_clean(html) == []


def test_hq_findings_reach_the_prefecture_delivery_page(delivered: Delivered) -> None:
    d = delivered
    with d.hub.db.session() as s:
        ApprovalService(s, PROVINCE, d.hub.archive).approve(CYCLE, d.networks, "alice")
    with d.hub.db.session() as s:
        [fwd] = ForwardService(d.hub, s).build(CYCLE, "alice")
        fid = fwd.id
        customers = next(f for f in fwd.files if "_31201_" in f["name"])
        path = d.hub.archive.path(customers["sha256"])
    # HQ's answer, as the forwarder takes it: a warning on the forwarded file's last customer line.
    line = len(list(text_lines(path, "UTF-8")))
    finding = {"code": "W501", "severity": "warning", "file": customers["name"], "line": line,
               "field": "CUST_NAME", "value": "某客户", "message_zh": "客户名称可疑", "message_en": "a doubtful name"}
    with d.hub.db.session() as s:
        fwd = s.get(Forward, fid)
        fwd.state, fwd.hq_delivery_id = "sent", 4242
        answers = Answers(d.hub, s)
        answers.take(fwd, HqAnswer("accepted_with_warnings", 0, 1, [finding], ["请核对 / please check"], None))
    answers.deliver()
    with d.hub.db.session() as s:
        mapped = s.scalars(select(HqFinding).where(HqFinding.code == "W501")).one()
        source = s.get(Delivery, mapped.source_delivery_id)
        assert source is not None
        source_id, party, own = source.id, source.party, (mapped.source_file, mapped.source_line)
        quiet = s.scalar(select(Delivery.id).where(Delivery.party != party, Delivery.party.is_not(None)))

    client = create_app(runtime=d.hub).test_client()
    sign_in(client, set_password(d.hub, f"latn{party}"))
    html = client.get(f"/province/deliveries/{source_id}").get_data(as_text=True)
    assert 'id="hq-answers"' in html and f'data-forward="P_{PROVINCE}_{CYCLE}_00"' in html
    assert 'data-hq-status="accepted_with_warnings"' in html
    assert f'data-file="{own[0]}" data-line="{own[1]}"' in html and f"{own[0]}:{own[1]}" in html
    assert own[0] == f"P_{party}_{CYCLE}_31201_00_001.txt"  # the prefecture's own file, not the forwarded one
    assert "客户名称可疑" in html
    # Another network's delivery carried by the same forward: the verdict, none of these findings.
    other = client.get(f"/province/deliveries/{quiet}")
    assert other.status_code == 404  # and not even visible to this prefecture
    prefecture = create_app(runtime=d.hub).test_client()
    with d.hub.db.session() as s:
        quiet_party = s.get(Delivery, quiet).party
    sign_in(prefecture, set_password(d.hub, f"latn{quiet_party}"))
    html = prefecture.get(f"/province/deliveries/{quiet}").get_data(as_text=True)
    assert 'id="hq-answers"' in html and "W501" not in html
    # The hub's forward page shows the same finding traced to the prefecture's file and line.
    admin = create_app(runtime=d.hub).test_client()
    sign_in(admin, make_login(d.hub, "admin"))
    html = admin.get(f"/hub/forwards/{fid}").get_data(as_text=True)
    assert f'data-source-delivery="{source_id}" data-source-file="{own[0]}" data-source-line="{own[1]}"' in html
    assert "请核对 / please check" in html and 'data-equal="yes"' in html
    assert 'data-total="32001" data-equal="yes"' in html  # the province's totals over its 14 networks
    assert chinese_ui_clean(html) == []
    # HQ heard nothing of it: the forward never went up (HQ's answer above was the test's).
    with d.hq.db.session() as s:
        assert s.scalars(select(DeliveryApproval)).all() == []
