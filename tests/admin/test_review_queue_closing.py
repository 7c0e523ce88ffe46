"""The review queue empties itself: superseded items, late-only acceptances, bulk actions, the labelled failing line.

In-process (Flask's test client) against deliveries judged by the real server on loopback
(``upload``). Each test uses its own provinces so the module's shared database keeps them apart.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.app import create_app
from exchange_server.audit.models import AuditEvent
from exchange_server.cycles.services import CycleService
from exchange_server.review.models import DeliveryReview, ReviewComment
from exchange_server.review.services import QueueFilter, ReviewService, labelled_fields
from exchange_server.runtime import Runtime
from exchange_server.sftp.outbox import trees
from province_agent.transport import HttpTransport
from schemas import Spec
from tests.admin.conftest import Accounts, Login, sign_in, upload
from tests.support.deliveries import DeliveryRows, valid_rows


def queue_ids(client: FlaskClient, **args: str) -> set[int]:
    """The delivery ids the queue page lists for a filter."""
    r = client.get("/admin/review/", query_string=args)
    assert r.status_code == 200, r.get_data(as_text=True)[:400]
    return {int(x) for x in re.findall(r'<tr data-delivery="(\d+)"', r.get_data(as_text=True))}


def open_total(client: FlaskClient) -> int:
    """The open items the queue's badge counts."""
    m = re.search(r'id="open-total" data-open="(\d+)"', client.get("/admin/review/").get_data(as_text=True))
    assert m
    return int(m.group(1))


def broken(rows: DeliveryRows) -> str:
    """Break one customer's level code (an error in VIP_CUST_INFO, line 2); returns the good value."""
    good = str(rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"])
    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"
    return good


@pytest.fixture
def admin(client: FlaskClient, accounts: Accounts) -> tuple[FlaskClient, str, Login]:
    """The test client signed in as a fresh admin: (client, CSRF token, login)."""
    login = accounts.admin()
    return client, sign_in(client, login), login


def test_accepted_resend_supersedes_the_rejected_delivery(admin: tuple[FlaskClient, str, Login], admin_url: str,
                                                         accounts: Accounts, spec: Spec, tmp_path: Path) -> None:
    client, csrf, _login = admin
    hunan = accounts.province("43")
    rows = valid_rows(spec, party="43", cycle="202610")
    good = broken(rows)
    first = upload(admin_url, hunan, rows, tmp_path / "r0")
    assert first["status"] == "rejected"
    did = first["delivery_id"]
    assert did in queue_ids(client)
    # A resend request keeps the item open: it waits for the resend.
    assert client.post(f"/admin/review/{did}/resend", data={"csrf_token": csrf}).status_code == 302
    assert did in queue_ids(client) and did not in queue_ids(client, state="closed")
    before = open_total(client)

    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = good
    second = upload(admin_url, hunan, rows, tmp_path / "r1", resend=1)
    assert second["status"] == "accepted", second["counts"]
    sid = second["delivery_id"]

    assert did not in queue_ids(client) and did not in queue_ids(client, state="open")
    assert open_total(client) == before - 1
    for view in ("closed", "all", "superseded"):
        html = client.get("/admin/review/", query_string={"state": view}).get_data(as_text=True)
        assert f'<tr data-delivery="{did}" data-state="resend_requested" data-superseded-by="{sid}"' in html, view
        assert f"已被 #{sid} 取代" in html
    assert did not in queue_ids(client, state="reviewed")

    page = client.get(f"/admin/review/{did}").get_data(as_text=True)
    assert f'id="superseded" data-superseded-by="{sid}"' in page and f"已被 #{sid} 取代" in page
    assert f'href="/admin/review/{sid}"' in page
    client.get("/lang/en")
    page = client.get(f"/admin/review/{did}").get_data(as_text=True)
    assert f"superseded by #{sid}" in page and "A later accepted resend" in page
    assert f"superseded by #{sid}" in client.get("/admin/review/?state=all").get_data(as_text=True)


def test_a_partial_resend_supersedes_only_when_it_carries_the_failing_unit(
        admin: tuple[FlaskClient, str, Login], admin_url: str, accounts: Accounts, spec: Spec,
        admin_runtime: Runtime, tmp_path: Path) -> None:
    client, _csrf, _login = admin
    guangxi = accounts.province("45")
    rows = valid_rows(spec, party="45", cycle="202610")
    assert upload(admin_url, guangxi, rows, tmp_path / "r0")["status"] == "accepted"
    good = broken(rows)
    bad = upload(admin_url, guangxi, rows, tmp_path / "r1", resend=1)
    assert bad["status"] == "rejected"
    did = bad["delivery_id"]

    others = [u for u in rows.rows if u != "VIP_CUST_INFO"]
    partial = upload(admin_url, guangxi, rows, tmp_path / "r2", resend=2, units=others[:1])
    assert partial["status"] in ("accepted", "accepted_with_warnings"), partial["counts"]
    assert did in queue_ids(client), "a resend without the failing unit does not close the item"

    rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = good
    fixed = upload(admin_url, guangxi, rows, tmp_path / "r3", resend=3, units=["VIP_CUST_INFO"])
    assert fixed["status"] in ("accepted", "accepted_with_warnings"), fixed["counts"]
    assert did not in queue_ids(client)
    with admin_runtime.db.session() as s:
        svc = ReviewService(s, admin_runtime.archive, admin_runtime.spec)
        later = svc.superseded_by(svc.delivery(did))
        assert later is not None and later.id == fixed["delivery_id"]
        assert not svc.is_open(svc.delivery(did))


def test_late_only_acceptances_stay_out_of_the_open_queue_unless_hq_wants_them(
        admin: tuple[FlaskClient, str, Login], admin_url: str, accounts: Accounts, spec: Spec,
        admin_runtime: Runtime, tmp_path: Path) -> None:
    client, csrf, _login = admin
    with admin_runtime.db.session() as s:  # 202611 is this test's: its deadline has passed
        CycleService(s, admin_runtime.spec, "test").set_deadline(
            "202611", dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    guizhou = accounts.province("52")
    late = upload(admin_url, guizhou, valid_rows(spec, party="52", cycle="202611"), tmp_path / "a")
    assert late["status"] == "accepted_with_warnings" and {c["code"] for c in late["counts"]} == {"W603"}
    did = late["delivery_id"]

    assert did not in queue_ids(client)
    html = client.get("/admin/review/", query_string={"state": "all"}).get_data(as_text=True)
    assert f'data-delivery="{did}"' in html and 'data-late-only="1"' in html
    assert did in queue_ids(client, state="closed")
    assert 'id="late-only"' in client.get(f"/admin/review/{did}").get_data(as_text=True)

    # With the setting on, the same delivery is an open item.
    wants = dataclasses.replace(admin_runtime, settings=dataclasses.replace(admin_runtime.settings,
                                                                            review_late_acceptances=True))
    other = create_app(runtime=wants).test_client()
    sign_in(other, accounts.admin())
    assert did in queue_ids(other) and did not in queue_ids(other, state="closed")
    with admin_runtime.db.session() as s:
        assert did in {r.delivery.id for r in ReviewService(s, admin_runtime.archive, admin_runtime.spec,
                                                            late_acceptances=True).queue(QueueFilter()).rows}
        assert did not in {r.delivery.id for r in ReviewService(s, admin_runtime.archive,
                                                                admin_runtime.spec).queue(QueueFilter()).rows}


@pytest.fixture(scope="module")
def two_rejected(admin_url: str, accounts: Accounts, spec: Spec,
                 tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Login, dict[str, Any]]]:
    """Two rejected deliveries of two provinces (Chongqing, Sichuan) in 202609."""
    tmp = tmp_path_factory.mktemp("bulk")
    out = []
    for party in ("50", "51"):
        login = accounts.province(party)
        rows = valid_rows(spec, party=party, cycle="202609")
        broken(rows)
        d = upload(admin_url, login, rows, tmp / party)
        assert d["status"] == "rejected"
        out.append((login, d))
    return out


def test_bulk_mark_reviewed(admin: tuple[FlaskClient, str, Login], two_rejected: list[tuple[Login, dict[str, Any]]],
                            admin_runtime: Runtime) -> None:
    client, csrf, login = admin
    ids = [d["delivery_id"] for _l, d in two_rejected]
    assert set(ids) <= queue_ids(client, cycle="202609")
    html = client.get("/admin/review/", query_string={"cycle": "202609"}).get_data(as_text=True)
    assert 'id="bulk-form"' in html and all(f'name="delivery" value="{i}"' in html for i in ids)
    # Without the CSRF token nothing happens.
    assert client.post("/admin/review/bulk", data={"action": "reviewed", "delivery": ids}).status_code in (400, 403)
    assert set(ids) <= queue_ids(client, cycle="202609")

    client.get("/lang/en")
    r = client.post("/admin/review/bulk", data={"csrf_token": csrf, "action": "reviewed", "delivery": ids,
                                                "cycle": "202609"}, follow_redirects=True)
    assert r.status_code == 200 and r.request.args.get("cycle") == "202609"
    assert '2 marked reviewed' in r.get_data(as_text=True)
    assert not set(ids) & queue_ids(client, cycle="202609")
    assert set(ids) <= queue_ids(client, state="reviewed")
    with admin_runtime.db.session() as s:
        assert {r.delivery_id: r.state for r in s.scalars(select(DeliveryReview).where(
            DeliveryReview.delivery_id.in_(ids)))} == {i: "reviewed" for i in ids}
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "review.reviewed",
                                                    AuditEvent.actor == login.name)).all()
        assert sorted(e.target for e in events) == sorted(f"delivery:{i}" for i in ids)

    # Nothing selected, or an unknown action: refused with a message, nothing changes.
    r = client.post("/admin/review/bulk", data={"csrf_token": csrf, "action": "reviewed"}, follow_redirects=True)
    assert "select at least one delivery" in r.get_data(as_text=True)
    r = client.post("/admin/review/bulk", data={"csrf_token": csrf, "action": "delete", "delivery": ids},
                    follow_redirects=True)
    assert "unknown bulk action" in r.get_data(as_text=True)


def test_bulk_comment_reaches_each_province(admin: tuple[FlaskClient, str, Login], admin_url: str,
                                           two_rejected: list[tuple[Login, dict[str, Any]]],
                                           admin_runtime: Runtime) -> None:
    client, csrf, login = admin
    ids = [d["delivery_id"] for _l, d in two_rejected]
    body = "请核对客户级别代码后重报。Please check the level codes and resend."
    r = client.post("/admin/review/bulk", data={"csrf_token": csrf, "action": "comment", "delivery": ids, "body": ""},
                    follow_redirects=True)
    assert "意见内容不能为空" in r.get_data(as_text=True)
    r = client.post("/admin/review/bulk", data={"csrf_token": csrf, "action": "comment", "delivery": ids,
                                                "body": body}, follow_redirects=True)
    text = r.get_data(as_text=True)
    assert "已向 2 个报送的报送方（50, 51）发送意见" in text
    for province, d in two_rejected:
        http = HttpTransport(admin_url, province.token)
        try:
            api = http.get_json(f"/api/v1/deliveries/{d['delivery_id']}")
        finally:
            http.close()
        assert [c["body"] for c in api["comments"]] == [body]
        assert api["comments"][0]["delivered_at"], "placed in the outbox"
        outbox = trees(admin_runtime)[0].outbox(province.party or "") / f"{d['check_file'][:-4]}.comment.txt"
        assert body in outbox.read_text("utf-8")
    with admin_runtime.db.session() as s:
        assert len(s.scalars(select(ReviewComment).where(ReviewComment.delivery_id.in_(ids))).all()) == 2
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "review.comment",
                                                    AuditEvent.actor == login.name)).all()
        assert sorted(e.target for e in events) == sorted(f"delivery:{i}" for i in ids)


def test_failing_line_as_fields_with_the_failing_field_marked(
        admin: tuple[FlaskClient, str, Login], two_rejected: list[tuple[Login, dict[str, Any]]], spec: Spec) -> None:
    client, _csrf, _login = admin
    did = two_rejected[0][1]["delivery_id"]
    html = client.get(f"/admin/review/{did}").get_data(as_text=True)
    table = html[html.index('id="line-fields"'):html.index("</table>", html.index('id="line-fields"'))]
    unit = spec.unit("VIP_CUST_INFO")
    failing = re.findall(r'<tr data-field="([^"]*)" data-position="\d+" class="failing"', table)
    assert failing == ["LEVEL_ID"]
    row = table[table.index('class="failing"'):]
    row = row[:row.index("</tr>")]
    assert ">X<" in row and "←" in row and "出错的字段" in row
    assert "CUST_NAME" in table and "湖北省测试客户2有限公司" in table
    assert unit.field("LEVEL_ID").name_zh in row
    client.get("/lang/en")
    html = client.get(f"/admin/review/{did}").get_data(as_text=True)
    assert "failing field" in html and "The failing line, field by field" in html


def test_every_code_in_the_queue_has_its_title(admin: tuple[FlaskClient, str, Login],
                                               two_rejected: list[tuple[Login, dict[str, Any]]]) -> None:
    client, _csrf, _login = admin
    html = client.get("/admin/review/", query_string={"state": "all"}).get_data(as_text=True)
    spans = re.findall(r'<span class="code-title" data-code="([^"]+)"><b translate="no">[^<]+</b>([^<]*)</span>', html)
    assert spans
    assert all(title.strip() for _code, title in spans), [c for c, t in spans if not t.strip()]
    options = re.findall(r'<option value="([A-Z][^"]*)"[^>]*>([^<]*)</option>', html)
    assert all(label.strip() != code for code, label in options if re.match(r"^[EWRX]", code))


def test_labelled_fields_splits_pipe_and_us_lines(spec: Spec) -> None:
    code = spec.unit("VIP_CUST_INFO").code
    fields = sorted(spec.unit(code).fields, key=lambda f: f.position)
    values = [f"v{i}" for i in range(len(fields))]
    for delimiter in ("|", "\x1f"):
        out = labelled_fields(spec, code, delimiter.join(values), delimiter, fields[1].id)
        assert out is not None and len(out) == len(fields)
        assert [x.field_id for x in out] == [f.id for f in fields]
        assert [x.value for x in out] == values
        assert [x.failing for x in out] == [i == 1 for i in range(len(fields))]
        assert out[0].name_zh == fields[0].name_zh and out[0].name_en == fields[0].name_en
    short = labelled_fields(spec, code, "a|b", "|")
    assert short is not None and short[2].value is None and not any(x.failing for x in short)
    long = labelled_fields(spec, code, "|".join(values + ["extra"]), "|")
    assert long is not None and long[-1].field_id == "" and long[-1].value == "extra"
    assert labelled_fields(spec, "99999", "a|b", "|") is None
    assert labelled_fields(None, code, "a|b", "|") is None


def test_cli_lists_the_open_queue_and_marks_reviewed(admin_url: str, accounts: Accounts, spec: Spec,
                                                     admin_runtime: Runtime, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from exchange_server.cli import main

    qinghai = accounts.province("63")
    rows = valid_rows(spec, party="63", cycle="202609")
    broken(rows)
    did = upload(admin_url, qinghai, rows, tmp_path / "a")["delivery_id"]
    where = ["--data-dir", str(admin_runtime.settings.data_dir),
             "--database-url", admin_runtime.settings.effective_database_url]
    runner = CliRunner()
    listed = runner.invoke(main, [*where, "review", "open", "--province", "63"])
    assert listed.exit_code == 0, listed.output
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [str(did)]
    assert "E307" in listed.stdout
    done = runner.invoke(main, [*where, "review", "reviewed", str(did), "--as", "cli.reviewer"])
    assert done.exit_code == 0 and "1 marked reviewed" in done.stdout, done.output
    assert runner.invoke(main, [*where, "review", "open", "--province", "63"]).stdout.strip() == ""
    refused = runner.invoke(main, [*where, "review", "reviewed", "999999"])
    assert refused.exit_code != 0
    with admin_runtime.db.session() as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.target == f"delivery:{did}",
                                                  AuditEvent.action == "review.reviewed")).one().actor == "cli.reviewer"
