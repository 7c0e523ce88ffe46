"""The province pages in process: own deliveries only, a rejected delivery's findings and raw line, HQ's
comments, feedback downloads, the calendar with exceptions, roles, errors and the language choice.

The data is the pages' module runtime (sample deliveries of 11, 42 and 44, accepted) plus what
:func:`seed_province_data` adds: a rejected resend from Hubei (42) with HQ's comment and resend
request, a rejected resend from Beijing (11), a delivery from a Hubei local network's own account
(0714), 202609 closed with an exception for Hubei, an exception for Beijing on 202610, and a
revoked one for Hubei, and a delivery Beijing's account sent claiming to be Hubei (refused, E606).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.accounts.services import AccountService
from exchange_server.admin.services import CycleExceptionService
from exchange_server.cycles.services import CycleService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.pages.province_services import ListFilter, ProvinceService
from exchange_server.review.services import ReviewService, deliver_comments
from exchange_server.runtime import Runtime
from exchange_server.submissions.models import Delivery, Finding
from exchange_server.submissions.services import DeliveryService
from schemas import Spec
from tests.pages.conftest import ANALYST, PROVINCE, receive_folder
from tests.support.deliveries import valid_rows

NETWORK = "0714"  # a local network of Hubei (42)
COMMENT = "请核对第2行客户的客户级别（LEVEL_ID），修正后重报。"
EXCEPTION_42 = "湖北系统割接，202609 延期报送"
EXCEPTION_11 = "北京机房搬迁，202610 延期报送"
REVOKED_42 = "已撤销的例外（不应显示）"


@dataclass(frozen=True)
class Seed:
    """What the province tests added to the pages' runtime: logins and delivery ids."""

    passwords: dict[str, str]  # account name -> password
    rejected42: int
    rejected11: int
    network: int
    spoof: int  # Beijing's account sending as Hubei (refused with E606): still never Hubei's to see
    spoof_next: int  # the same in 202611, where neither province sent anything of its own
    admin: str


def _account(rt: Runtime, name: str) -> Account:
    with rt.db.session() as s:
        found = s.scalar(select(Account).where(Account.name == name))
        assert found is not None
        s.expunge(found)
        return found


def seed_province_data(rt: Runtime, spec: Spec, root: Path) -> Seed:
    """Add the province tests' accounts, deliveries, HQ review and exceptions to a pages runtime (once per module)."""
    passwords = {PROVINCE[0]: PROVINCE[1], "prov11": "province-11-pages", "prov44": "province-44-pages",
                 "net0714": "network-0714-pages", "hq-admin": "admin-pages-2026", ANALYST[0]: ANALYST[1]}
    with rt.db.session() as s:
        accounts = AccountService(s, "test")
        for name in ("prov11", "prov44"):
            accounts.set_password(accounts.get(name), passwords[name])
        accounts.create("net0714", "province", NETWORK, display_name="黄石本地网", password=passwords["net0714"])
        accounts.create("hq-admin", "admin", password=passwords["hq-admin"])

    def broken(party: str, folder: Path) -> Path:
        rows = valid_rows(spec, party=party, cycle="202610")
        rows.rows["VIP_CUST_INFO"][1]["LEVEL_ID"] = "X"  # not a code of Domain_level_id: an error on line 2
        return rows.write(folder, resend=1)  # resend 01: the sample delivery was 00

    rejected42 = receive_folder(rt, "prov42", broken("42", root / "rej42"))
    rejected11 = receive_folder(rt, "prov11", broken("11", root / "rej11"))
    net_rows = valid_rows(spec, party="42", cycle="202610")
    net_rows.party = NETWORK  # the network sends as itself (whatever the verdict, it is its own delivery)
    network = receive_folder(rt, "net0714", net_rows.write(root / "net", units=["VIP_CUST_INFO"]))
    spoof_rows = valid_rows(spec, party="42", cycle="202610")
    spoof = receive_folder(rt, "prov11", spoof_rows.write(root / "spoof", resend=2))
    with rt.db.session() as s:
        CycleService(s, rt.spec, "test").create("202611", deadline=dt.datetime.now(dt.timezone.utc)
                                                + dt.timedelta(days=30), state="open")
    spoof_next = receive_folder(rt, "prov11", valid_rows(spec, party="42", cycle="202611").write(root / "spoof2"))
    IngestionWorker(rt, "test").drain()

    with rt.db.session() as s:
        review = ReviewService(s, rt.archive, rt.spec)
        d = review.delivery(rejected42)
        assert d.status == "rejected"
        review.comment("hq-admin", d, COMMENT)
        review.request_resend("hq-admin", d, "")
        assert s.get(Delivery, rejected11).status == "rejected"  # type: ignore[union-attr]
    deliver_comments(rt, rejected42)

    now = dt.datetime.now(dt.timezone.utc)
    with rt.db.session() as s:
        CycleService(s, rt.spec, "test").close("202609")
        exceptions = CycleExceptionService(s, "test")
        exceptions.grant("202609", "42", now + dt.timedelta(days=3), EXCEPTION_42)
        exceptions.grant("202610", "11", now + dt.timedelta(days=2), EXCEPTION_11)
        revoked = exceptions.grant("202610", "42", now + dt.timedelta(days=5), REVOKED_42)
        exceptions.revoke(revoked.id)
    return Seed(passwords, rejected42, rejected11, network, spoof, spoof_next, "hq-admin")


@pytest.fixture(scope="module")
def seed(page_runtime: Runtime, spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """The province tests' data, added once per module."""
    return seed_province_data(page_runtime, spec, tmp_path_factory.mktemp("province"))


def sign_in(client: FlaskClient, name: str, password: str) -> str:
    """Sign in through the form; returns where the sign-in sent the browser."""
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token.group(1)})
    assert r.status_code == 302, r.get_data(as_text=True)[:400]
    return r.headers["Location"]


def as_(app: Flask, seed: Seed, name: str) -> FlaskClient:
    """A fresh client signed in as ``name``."""
    c = app.test_client()
    sign_in(c, name, seed.passwords[name])
    return c


def listed(client: FlaskClient, **args: str) -> set[int]:
    """The delivery ids /province/ lists (every page of them)."""
    r = client.get("/province/", query_string=args)
    assert r.status_code == 200, r.get_data(as_text=True)[:400]
    return {int(x) for x in re.findall(r'<tr data-delivery="(\d+)"', r.get_data(as_text=True))}


def sent_by(rt: Runtime, *names: str) -> set[int]:
    """Ids of every delivery the named accounts sent."""
    with rt.db.session() as s:
        return set(s.scalars(select(Delivery.id).join(Account, Account.id == Delivery.account_id)
                             .where(Account.name.in_(names))))


def test_a_province_signs_in_to_its_own_deliveries(app: Flask, seed: Seed, page_runtime: Runtime) -> None:
    c = app.test_client()
    assert sign_in(c, *PROVINCE) == "/province/"
    assert c.get("/").headers["Location"] == "/province/"  # the front door too
    r = c.get("/province/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "<script" not in html and r.headers["Cache-Control"] == "no-store"
    assert 'id="read-only"' in html and "province-agent" in html  # read-only, with a hint where to act
    ids = listed(c)
    # A province sees what its own and its networks' accounts sent: prov42's, net0714's; never prov11's or prov44's.
    assert ids == sent_by(page_runtime, "prov42", "net0714")
    assert seed.rejected42 in ids and seed.network in ids
    assert not ids & sent_by(page_runtime, "prov11", "prov44")
    assert seed.spoof not in ids  # party 42 in its name, but sent by Beijing's account
    row = re.search(rf'<tr data-delivery="{seed.rejected42}"[^>]*>', html)
    assert row and 'data-status="rejected"' in row.group(0) and 'data-state="resend_requested"' in row.group(0)
    assert 'data-comments="2"' in row.group(0)  # the comment and the resend request
    assert "P_42_202610_01.chk" in html and "要求重报" in html


def in_cycle_with_status(rt: Runtime, ids: set[int], cycle: str | None = None, status: str | None = None) -> set[int]:
    """Of ``ids``, the deliveries of ``cycle`` and/or with ``status`` (what a filter must list)."""
    with rt.db.session() as s:
        return {d.id for d in s.scalars(select(Delivery).where(Delivery.id.in_(ids)))
                if (cycle is None or d.period == cycle) and (status is None or d.status == status)}


def test_filters_and_paging(app: Flask, seed: Seed, page_runtime: Runtime) -> None:
    c = as_(app, seed, "prov42")
    mine = sent_by(page_runtime, "prov42", "net0714")
    rejected = listed(c, status="rejected")
    assert seed.rejected42 in rejected and rejected == in_cycle_with_status(page_runtime, mine, status="rejected")
    assert seed.rejected42 not in listed(c, status="accepted")
    in_202609 = listed(c, cycle="202609")
    assert in_202609 and in_202609 == in_cycle_with_status(page_runtime, mine, cycle="202609")
    assert listed(c, cycle="202609", status="rejected") == set()
    for bad in ({"status": "bogus"}, {"cycle": "../etc"}):
        r = c.get("/province/", query_string=bad)
        assert r.status_code == 400 and r.mimetype == "text/html" and "invalid_arguments" in r.get_data(as_text=True)
    everything = listed(c)
    assert listed(c, page="999") == everything  # past the end: the last page
    # No request inside the session: SQLite transactions begin IMMEDIATE, so a page would wait for this one.
    with page_runtime.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == "prov42"))
        assert account is not None
        svc = ProvinceService(s, page_runtime.archive, page_runtime.spec)
        first, second = svc.page(account, ListFilter(), per_page=2), svc.page(account, ListFilter(page=2), per_page=2)
        last = svc.page(account, ListFilter(page=99), per_page=2)
        newest_first = [r.delivery.id for r in first.rows] + [r.delivery.id for r in second.rows]
        total, pages, last_page = first.total, first.pages, last.page
    assert total == len(everything) and pages == -(-total // 2) and last_page == pages
    assert newest_first == sorted(newest_first, reverse=True) and len(set(newest_first)) == 4


def test_rejected_delivery_shows_findings_the_failing_line_and_hq_comment(app: Flask, seed: Seed,
                                                                          page_runtime: Runtime) -> None:
    c = as_(app, seed, "prov42")
    r = c.get(f"/province/deliveries/{seed.rejected42}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "<script" not in html
    assert "P_42_202610_01.chk" in html and 'data-status="rejected"' in html
    assert 'id="resend-requested"' in html and COMMENT in html  # HQ's comment, on the province's page
    assert "hq-admin" in html and "P_42_202610_01.comment.txt" in html  # delivered to the outbox
    with page_runtime.db.session() as s:
        level = s.scalars(select(Finding).where(Finding.delivery_id == seed.rejected42,
                                                Finding.field == "LEVEL_ID")).first()
        assert level is not None and level.line == 2
        finding_id, message_zh, message_en = level.id, level.message_zh, level.message_en
    assert f'data-finding="{finding_id}"' in html and message_zh in html and message_en not in html
    assert 'data-code="' in html and "class=\"line failing\"" in html  # a failing line is shown by default
    r = c.get(f"/province/deliveries/{seed.rejected42}", query_string={"finding": finding_id})
    html = r.get_data(as_text=True)
    failing = re.search(r'<span class="line failing" data-line="(\d+)"><span class="no">\d+</span>'
                        r'<mark>(.*?)</mark>', html)
    assert failing and failing.group(1) == "2" and "湖北省测试客户2有限公司" in failing.group(2)
    # The summary by code and the versions of the cycle (sample 00 accepted, this 01 rejected).
    assert re.search(r'<td class="num count">\d+</td>', html)
    assert 'data-relation="this"' in html and 'data-relation="earlier"' in html
    # The same party, cycle and mode, but Beijing's account sent it: not one of Hubei's versions.
    with page_runtime.db.session() as s:
        spoof = s.get(Delivery, seed.spoof)
        assert spoof is not None and spoof.party == "42" and spoof.period == "202610" and spoof.status == "rejected"
    assert f'data-delivery="{seed.spoof}"' not in html and "P_42_202610_02" not in html
    assert c.get(f"/province/deliveries/{seed.spoof}").status_code == 404
    # A finding id of another delivery does not show another delivery's file.
    with page_runtime.db.session() as s:
        other = s.scalars(select(Finding.id).where(Finding.delivery_id == seed.rejected11,
                                                   Finding.line.is_not(None))).first()
    html = c.get(f"/province/deliveries/{seed.rejected42}", query_string={"finding": other}).get_data(as_text=True)
    assert other is not None and 'class="line failing"' not in html and "P_11_" not in html


def test_another_provinces_delivery_is_a_404_like_a_missing_one(app: Flask, seed: Seed) -> None:
    c = as_(app, seed, "prov42")
    theirs = c.get(f"/province/deliveries/{seed.rejected11}")
    missing = c.get("/province/deliveries/987654")
    assert theirs.status_code == missing.status_code == 404 and theirs.mimetype == "text/html"
    body = theirs.get_data(as_text=True)
    assert "delivery_not_found" in body and "P_11_" not in body and "Traceback" not in body
    def neutral(html: str, delivery_id: int) -> str:
        html = re.sub(r'name="csrf_token" value="[^"]*"', "", html)
        return re.sub(rf"\b{delivery_id}\b", "N", html)

    assert neutral(body, seed.rejected11) == neutral(missing.get_data(as_text=True), 987654)  # nothing tells them apart
    for kind in ("receipt", "file", "record", "bogus"):
        assert c.get(f"/province/deliveries/{seed.rejected11}/feedback/{kind}").status_code == 404
    assert c.get("/province/nothing/here").status_code == 404
    assert c.get("/province/deliveries/abc").status_code == 404


def test_a_network_account_sees_only_its_own(app: Flask, seed: Seed, page_runtime: Runtime) -> None:
    c = as_(app, seed, "net0714")
    assert listed(c) == {seed.network} == sent_by(page_runtime, "net0714")
    assert c.get(f"/province/deliveries/{seed.network}").status_code == 200
    for other in (seed.rejected42, seed.rejected11):
        assert c.get(f"/province/deliveries/{other}").status_code == 404
        assert c.get(f"/province/deliveries/{other}/feedback/receipt").status_code == 404
    # Its province sees it too (a province sees its networks' accounts' deliveries).
    assert as_(app, seed, "prov42").get(f"/province/deliveries/{seed.network}").status_code == 200


def test_feedback_downloads_are_the_delivery_files(app: Flask, seed: Seed, page_runtime: Runtime) -> None:
    c = as_(app, seed, "prov42")
    html = c.get(f"/province/deliveries/{seed.rejected42}").get_data(as_text=True)
    with page_runtime.db.session() as s:
        d = s.get(Delivery, seed.rejected42)
        assert d is not None
        files = {k: DeliveryService(s, page_runtime.archive).feedback(d, k) for k in ("receipt", "file", "record")
                 if getattr(d, {"receipt": "receipt_key", "file": "fbf_key", "record": "fbr_key"}[k])}
    assert {"receipt", "file"} <= set(files)
    for kind, (name, data) in files.items():
        assert f'id="dl-{kind}"' in html
        r = c.get(f"/province/deliveries/{seed.rejected42}/feedback/{kind}")
        assert r.status_code == 200 and r.data == data
        assert r.headers["Content-Disposition"].startswith("attachment") and name in r.headers["Content-Disposition"]
    assert c.get(f"/province/deliveries/{seed.rejected42}/feedback/report").status_code == 404


def test_hq_roles_are_refused_and_anonymous_readers_asked_to_sign_in(app: Flask, seed: Seed) -> None:
    urls = ["/province/", "/province/cycles", f"/province/deliveries/{seed.rejected42}",
            f"/province/deliveries/{seed.rejected42}/feedback/receipt", "/province/anything"]
    for name in (ANALYST[0], seed.admin):
        c = as_(app, seed, name)
        for url in urls:
            r = c.get(url)
            assert r.status_code == 403 and r.mimetype == "text/html", (name, url)
            assert "wrong_role" in r.get_data(as_text=True)
    anonymous = app.test_client()
    for url in urls:
        r = anonymous.get(url)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/province/"), url
    # Province accounts are still refused on the analyst and admin pages.
    c = as_(app, seed, "prov42")
    for url in ("/analyst/202610", "/admin/review/", f"/admin/review/{seed.rejected42}", "/admin/cycles"):
        assert c.get(url).status_code == 403, url


def test_calendar_shows_this_provinces_exception_and_units(app: Flask, seed: Seed) -> None:
    html = as_(app, seed, "prov42").get("/province/cycles").get_data(as_text=True)
    assert EXCEPTION_42 in html and EXCEPTION_11 not in html and REVOKED_42 not in html
    row = re.search(r'<tr data-cycle="202609"[^>]*>.*?</tr>', html, re.S)
    assert row and 'data-state="closed"' in row.group(0) and 'data-open="yes"' in row.group(0)
    assert 'data-exception="' in row.group(0) and 'data-open-by="exception"' in row.group(0)
    units = dict(re.findall(r'data-unit="(\d+)" data-state="(\w+)"', row.group(0)))
    assert len(units) == 6 and set(units.values()) == {"accepted"}  # the sample delivery of 202609
    row = re.search(r'<tr data-cycle="202610"[^>]*>.*?</tr>', html, re.S)
    assert row and 'data-exception="' not in row.group(0)  # the revoked one is not valid
    assert set(dict(re.findall(r'data-unit="(\d+)" data-state="(\w+)"', row.group(0))).values()) == {"accepted"}

    html = as_(app, seed, "prov11").get("/province/cycles").get_data(as_text=True)
    assert EXCEPTION_11 in html and EXCEPTION_42 not in html
    row = re.search(r'<tr data-cycle="202609"[^>]*>.*?</tr>', html, re.S)
    assert row and 'data-open="no"' in row.group(0)  # closed, and Beijing has no exception for it

    html = as_(app, seed, "prov44").get("/province/cycles").get_data(as_text=True)
    row = re.search(r'<tr data-cycle="202609"[^>]*>.*?</tr>', html, re.S)
    assert row and set(dict(re.findall(r'data-unit="(\d+)" data-state="(\w+)"', row.group(0))).values()) == \
        {"missing"}  # Guangdong sent nothing for 202609

    # A delivery Beijing's account sent as Hubei is neither Beijing's data nor Hubei's.
    for who in ("prov11", "prov42"):
        html = as_(app, seed, who).get("/province/cycles").get_data(as_text=True)
        row = re.search(r'<tr data-cycle="202611"[^>]*>.*?</tr>', html, re.S)
        assert row and set(dict(re.findall(r'data-unit="(\d+)" data-state="(\w+)"', row.group(0))).values()) == \
            {"missing"}, who

    # A local network's account is covered by its province's exception (as the validator treats it).
    html = as_(app, seed, "net0714").get("/province/cycles").get_data(as_text=True)
    assert EXCEPTION_42 in html and EXCEPTION_11 not in html


def test_pages_follow_the_language_choice(app: Flask, seed: Seed, page_runtime: Runtime) -> None:
    c = as_(app, seed, "prov42")
    assert "我的报送" in c.get("/province/").get_data(as_text=True)
    r = c.get("/lang/en", query_string={"next": f"/province/deliveries/{seed.rejected42}"})
    assert r.status_code == 303 and r.headers["Location"] == f"/province/deliveries/{seed.rejected42}"
    html = c.get(r.headers["Location"]).get_data(as_text=True)
    with page_runtime.db.session() as s:
        level = s.scalars(select(Finding).where(Finding.delivery_id == seed.rejected42,
                                                Finding.field == "LEVEL_ID")).first()
        assert level is not None
        message_zh, message_en = level.message_zh, level.message_en
    assert "HQ&#39;s comments" in html and "Summary by error code" in html and "My deliveries" in html
    assert message_en.replace("'", "&#39;") in html or message_en in html
    assert message_zh not in html and "按错误代码汇总" not in html
    assert COMMENT in html  # HQ's own words are shown as written
    assert "Reporting calendar" in c.get("/province/cycles").get_data(as_text=True)
