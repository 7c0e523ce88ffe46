"""The review queue in-process: filters, the raw-file context (GB18030 and UTF-8), actions, roles, CSRF."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.review.models import DeliveryReview, ReviewComment
from exchange_server.review.services import read_context
from exchange_server.runtime import Runtime
from exchange_server.sftp.outbox import trees
from schemas import Spec
from tests.admin.conftest import Accounts, Login, sign_in, upload
from tests.support.deliveries import valid_rows


def rejected(spec: Spec, url: str, login: Login, folder: Path, cycle: str = "202610", **write: Any) -> dict[str, Any]:
    """A delivery with one broken code (an error) from ``login``'s party: rejected."""
    rows = valid_rows(spec, party=login.party or "42", cycle=cycle)
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"
    d = upload(url, login, rows, folder, **write)
    assert d["status"] == "rejected", d["counts"]
    return d


def warned(spec: Spec, url: str, login: Login, folder: Path, cycle: str = "202610") -> dict[str, Any]:
    """A delivery with one warning (R32001-05): accepted with warnings."""
    rows = valid_rows(spec, party=login.party or "42", cycle=cycle)
    rows.rows["VIP_SUMMARY"][0]["MANAGER_CNT"] = 0
    d = upload(url, login, rows, folder)
    assert d["status"] == "accepted_with_warnings", d["counts"]
    return d


def queue_ids(client: FlaskClient, **args: str) -> set[int]:
    """The delivery ids the queue page lists for a filter."""
    r = client.get("/admin/review/", query_string=args)
    assert r.status_code == 200, r.get_data(as_text=True)[:400]
    import re

    return {int(x) for x in re.findall(r'<tr data-delivery="(\d+)"', r.get_data(as_text=True))}


@pytest.fixture(scope="module")
def seeded(admin_url: str, accounts: Accounts, spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three queue deliveries: Hubei rejected in 202610 (UTF-8), Hubei warned in 202609, Beijing rejected (GB18030)."""
    tmp = tmp_path_factory.mktemp("seed")
    hubei, beijing = accounts.province("42"), accounts.province("11")
    return {"hubei": hubei, "beijing": beijing,
            "rejected": rejected(spec, admin_url, hubei, tmp / "a"),
            "warned": warned(spec, admin_url, hubei, tmp / "b", cycle="202609"),
            "gb": rejected(spec, admin_url, beijing, tmp / "c", encoding="GB18030")}


@pytest.fixture
def admin(client: FlaskClient, accounts: Accounts) -> tuple[FlaskClient, str, Login]:
    """The test client signed in as a fresh admin: (client, CSRF token, login)."""
    login = accounts.admin()
    return client, sign_in(client, login), login


def test_filters_narrow_the_queue(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any]) -> None:
    client, _csrf, _login = admin
    rej, warn, gb = seeded["rejected"]["delivery_id"], seeded["warned"]["delivery_id"], seeded["gb"]["delivery_id"]
    assert {rej, warn, gb} <= queue_ids(client)
    assert queue_ids(client, cycle="202609") == {warn}
    assert {rej, warn} <= queue_ids(client, province="42") and gb not in queue_ids(client, province="42")
    assert gb in queue_ids(client, province="11") and rej not in queue_ids(client, province="11")
    error_code = next(c["code"] for c in seeded["rejected"]["counts"] if c["severity"] == "error")
    by_code = queue_ids(client, code=error_code)
    assert {rej, gb} <= by_code and warn not in by_code
    assert warn in queue_ids(client, code="R32001-05")
    assert {rej, warn, gb} <= queue_ids(client, unit="31201")
    assert not queue_ids(client, unit="99999")
    assert {rej, warn, gb} <= queue_ids(client, age="1d")
    assert not ({rej, warn, gb} & queue_ids(client, age="over7d"))
    assert {rej, warn, gb} <= queue_ids(client, state="open")
    assert not ({rej, warn, gb} & queue_ids(client, state="reviewed"))
    assert client.get("/admin/review/", query_string={"state": "bogus"}).status_code == 400


def test_review_state_filter_follows_actions(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any],
                                             admin_runtime: Runtime) -> None:
    client, csrf, login = admin
    warn = seeded["warned"]["delivery_id"]
    r = client.post(f"/admin/review/{warn}/reviewed", data={"csrf_token": csrf})
    assert r.status_code == 302
    assert warn in queue_ids(client, state="reviewed") and warn not in queue_ids(client, state="open")
    with admin_runtime.db.session() as s:
        ev = s.scalars(select(AuditEvent).where(AuditEvent.target == f"delivery:{warn}",
                                                AuditEvent.action == "review.reviewed")).all()
        assert ev and ev[-1].actor == login.name


def test_gb18030_file_context_decodes(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any]) -> None:
    client, _csrf, _login = admin
    html = client.get(f"/admin/review/{seeded['gb']['delivery_id']}").get_data(as_text=True)
    assert 'data-encoding="GB18030"' in html
    assert "湖北省测试客户2有限公司" in html  # the failing row, decoded from GB18030
    assert '<span class="line failing" data-line="2">' in html
    assert "\ufffd" not in html


def test_utf8_context_and_streamed_reading(tmp_path: Path) -> None:
    lines = [f"{n}|第{n}行|值" for n in range(1, 40)]
    p = tmp_path / "f.txt"
    p.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    ctx = read_context(p, 20, "UTF-8")
    assert [c.number for c in ctx] == list(range(15, 26))
    assert [c.text for c in ctx if c.failing] == ["20|第20行|值"]
    assert read_context(p, 1, "UTF-8")[0].text == "1|第1行|值"  # BOM dropped
    g = tmp_path / "g.txt"
    g.write_bytes("\n".join(lines).encode("gb18030"))
    assert read_context(g, 3, "GB18030")[2].text == "3|第3行|值"
    huge = tmp_path / "h.txt"
    huge.write_bytes(b"a" * 200_000 + b"\nsecond\n")
    ctx = read_context(huge, 2, "UTF-8")
    assert ctx[0].cut and len(ctx[0].text) == 64 * 1024 and ctx[1].text == "second"


def test_delivery_page_shows_receipt_summary_findings_and_versions(admin: tuple[FlaskClient, str, Login],
                                                                   seeded: dict[str, Any]) -> None:
    client, _csrf, _login = admin
    d = seeded["rejected"]
    html = client.get(f"/admin/review/{d['delivery_id']}").get_data(as_text=True)
    for c in d["counts"]:
        assert f'data-code="{c["code"]}"' in html
    assert d["check_file"] in html
    assert 'id="receipt"' in html and "rct.xml" in html
    assert 'data-relation="this"' in html
    assert 'id="no-override"' in html and 'id="accept-warnings-form"' not in html
    code = d["counts"][0]["code"]
    assert client.get(f"/admin/review/{d['delivery_id']}", query_string={"code": code, "page": "2"}).status_code == 200
    # Every code has its title, a rule's too (R32001-05: its id and unit), not a blank cell.
    w = seeded["warned"]
    html = client.get(f"/admin/review/{w['delivery_id']}").get_data(as_text=True)
    row = re.search(r'<tr data-code="R32001-05"[^>]*>(.*?)</tr>', html, re.S)
    assert row is not None, html
    assert "规则 R32001-05（32001 大客户总体情况）" in row.group(1), row.group(1)


def test_rejected_cannot_be_accepted(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any],
                                     admin_runtime: Runtime) -> None:
    client, csrf, _login = admin
    rej = seeded["rejected"]["delivery_id"]
    r = client.post(f"/admin/review/{rej}/accept-warnings",
                    data={"csrf_token": csrf, "justification": "The province says the codes are fine, trust them."})
    assert r.status_code == 409
    assert "errors_cannot_be_overridden" in r.get_data(as_text=True)
    with admin_runtime.db.session() as s:
        review = s.scalar(select(DeliveryReview).where(DeliveryReview.delivery_id == rej))
        assert review is None or review.state != "warnings_accepted"
    html = client.get(f"/admin/review/{rej}").get_data(as_text=True)
    assert 'data-status="rejected"' in html


def test_accept_warnings_needs_a_justification(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any],
                                               admin_runtime: Runtime) -> None:
    client, csrf, login = admin
    warn = seeded["warned"]["delivery_id"]
    for short in ("", "   ", "too short"):
        r = client.post(f"/admin/review/{warn}/accept-warnings", data={"csrf_token": csrf, "justification": short})
        assert r.status_code == 400 and "justification_required" in r.get_data(as_text=True)
    reason = "经核实：该本地网本月客户经理离职，人数为零属实。"
    r = client.post(f"/admin/review/{warn}/accept-warnings", data={"csrf_token": csrf, "justification": reason})
    assert r.status_code == 302
    with admin_runtime.db.session() as s:
        review = s.scalar(select(DeliveryReview).where(DeliveryReview.delivery_id == warn))
        assert review is not None and review.state == "warnings_accepted" and review.justification == reason
        ev = s.scalars(select(AuditEvent).where(AuditEvent.action == "review.warnings_accepted",
                                                AuditEvent.target == f"delivery:{warn}")).all()
        assert ev[-1].actor == login.name and ev[-1].detail["justification"] == reason


def test_comment_reaches_outbox_and_api(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any],
                                        admin_runtime: Runtime, admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client, csrf, login = admin
    d = seeded["gb"]
    r = client.post(f"/admin/review/{d['delivery_id']}/comment", data={"csrf_token": csrf, "body": "  "})
    assert r.status_code == 400
    r = client.post(f"/admin/review/{d['delivery_id']}/comment",
                    data={"csrf_token": csrf, "body": "客户级别代码 X 无效，请改正。"})
    assert r.status_code == 302
    stem = d["check_file"][:-4]
    out = trees(admin_runtime)[0].outbox("11") / f"{stem}.comment.txt"
    text = out.read_text("utf-8")
    assert "客户级别代码 X 无效，请改正。" in text and login.name in text
    with admin_runtime.db.session() as s:
        c = s.scalars(select(ReviewComment).where(ReviewComment.delivery_id == d["delivery_id"])).all()
        assert c[-1].delivered_at is not None
    from province_agent.transport import HttpTransport
    from province_agent.transport.base import Receipt
    from province_agent.transport.sftp import SftpTransport

    http = HttpTransport(admin_url, seeded["beijing"].token or "")
    api = http.get_json(f"/api/v1/deliveries/{d['delivery_id']}")
    receipt = Receipt(d["delivery_id"], stem)
    verdict, comments = http.verdict(receipt), http.comments(receipt)
    http.close()
    assert api["comments"][-1]["body"] == "客户级别代码 X 无效，请改正。"
    assert api["review_state"] == "open"
    assert verdict is not None and verdict.comments == comments
    assert comments[-1].endswith(f"{login.name}: 客户级别代码 X 无效，请改正。")
    # The SFTP agent reads the same comment file from its outbox.
    sftp = SftpTransport.__new__(SftpTransport)
    monkeypatch.setattr(sftp, "_read", lambda path: out.read_bytes() if path == f"outbox/{stem}.comment.txt" else None)
    assert "客户级别代码 X 无效，请改正。" in sftp.comments(receipt)[0]


ROUTES = [("get", "/admin/"), ("get", "/admin/review/"), ("get", "/admin/review/{id}"),
          ("post", "/admin/review/{id}/reviewed"), ("post", "/admin/review/{id}/comment"),
          ("post", "/admin/review/{id}/resend"), ("post", "/admin/review/{id}/accept-warnings")]


@pytest.mark.parametrize("role", ["analyst", "province"])
def test_other_roles_get_403_on_every_review_route(role: str, client: FlaskClient, accounts: Accounts,
                                                   seeded: dict[str, Any]) -> None:
    login = accounts.make(role, "42" if role == "province" else None)
    csrf = sign_in(client, login)
    did = seeded["warned"]["delivery_id"]
    for method, path in ROUTES:
        url = path.format(id=did)
        r = getattr(client, method)(url, data={"csrf_token": csrf, "body": "x" * 20, "justification": "x" * 20}
                                    if method == "post" else None)
        assert r.status_code == 403, (url, r.status_code)
        assert "wrong_role" in r.get_data(as_text=True)


def test_signed_out_goes_to_login(client: FlaskClient) -> None:
    r = client.get("/admin/review/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_post_without_csrf_is_refused(admin: tuple[FlaskClient, str, Login], seeded: dict[str, Any],
                                      admin_runtime: Runtime) -> None:
    client, _csrf, _login = admin
    did = seeded["rejected"]["delivery_id"]
    for action, data in (("reviewed", {}), ("comment", {"body": "no token here"}), ("resend", {}),
                         ("accept-warnings", {"justification": "a long enough reason"})):
        for form in (data, {**data, "csrf_token": "forged"}):
            r = client.post(f"/admin/review/{did}/{action}", data=form)
            assert r.status_code == 400 and "csrf_failed" in r.get_data(as_text=True), action
    with admin_runtime.db.session() as s:
        assert not s.scalars(select(ReviewComment).where(ReviewComment.body == "no token here")).all()
