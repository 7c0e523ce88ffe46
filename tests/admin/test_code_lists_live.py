"""Publishing a code-list version: in force for validation without a restart, and sent to the provinces.

An admin proposes a new version of the customer credit-grade list (a new grade ``D``)
effective from 2026-10-01 and publishes it on the page. The running server's worker then
accepts ``D`` in a 202610 delivery and still rejects it in a 202609 one (E307: the cycle
began before the version took effect). The same version is served by ``/api/v1/code-lists``
and placed in each province's SFTP outbox as ``code_lists.json``, and it is audited.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.code_lists.services import live_spec
from exchange_server.runtime import Runtime
from exchange_server.sftp.tree import PartyTree
from province_agent.transport import HttpTransport
from schemas import Spec, SpecError, with_code_versions
from tests.admin.conftest import Accounts, sign_in, upload
from tests.support.deliveries import valid_rows

DOMAIN = "Domain_credit_grade"
NEW_GRADE = "D"


def _propose(client: FlaskClient, csrf: str, version: str, effective_from: str, based_on: str,
             add: str = f"{NEW_GRADE} | 很差 | Very poor") -> str:
    """Propose through the form; return the new record's id as the page shows it."""
    r = client.post(f"/admin/code-lists/{DOMAIN}/drafts", data={
        "csrf_token": csrf, "version": version, "effective_from": effective_from, "based_on": based_on,
        "add": add, "update": "", "remove": "", "note_zh": "新增信用等级", "note_en": "a new credit grade"})
    assert r.status_code == 303, r.get_data(as_text=True)[:1500]
    page = client.get(f"/admin/code-lists/{DOMAIN}").get_data(as_text=True)
    marker = f'data-version="{version}" data-state="proposed"'
    assert marker in page
    return page.split(marker)[0].rsplit('data-draft="', 1)[1].split('"')[0]


@pytest.fixture(scope="module")
def published(admin_runtime: Runtime, accounts: Accounts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Version 2026.10 of the credit grades (adds D, effective 2026-10-01), published on the page by an admin."""
    from exchange_server.app import create_app

    province = accounts.province("42")  # exists before publishing: the outbox placement reaches it
    client = create_app(runtime=admin_runtime).test_client()
    admin = accounts.admin()
    csrf = sign_in(client, admin)
    base = admin_runtime.spec.domain(DOMAIN).current.version
    draft_id = _propose(client, csrf, "2026.10", "2026-10-01", base)
    r = client.post(f"/admin/code-lists/{DOMAIN}/drafts/{draft_id}/publish", data={"csrf_token": csrf})
    assert r.status_code == 303, r.get_data(as_text=True)[:1500]
    return {"draft_id": draft_id, "admin": admin.name, "province": province.name, "token": province.token or ""}


def test_the_page_shows_the_published_version_in_force_for_later_cycles(
        client: FlaskClient, accounts: Accounts, published: dict[str, str]) -> None:
    sign_in(client, accounts.admin())
    page = client.get(f"/admin/code-lists/{DOMAIN}").get_data(as_text=True)
    assert 'data-version="2026.10" data-state="published"' in page
    assert 'data-version="2026.10" data-source="published"' in page  # now one of the domain's versions
    assert f'data-code="{NEW_GRADE}"' in page  # the newest version's codes are shown
    listing = client.get("/admin/code-lists").get_data(as_text=True)
    assert f'<tr data-domain="{DOMAIN}">' in listing and 'data-published="1"' in listing


def test_the_worker_validates_with_it_without_a_restart(admin_url: str, accounts: Accounts, spec: Spec,
                                                      published: dict[str, str], tmp_path: Path) -> None:
    login = accounts.province("42")
    after = valid_rows(spec, "42", "202610")
    after.rows["VIP_CUST_INFO"][0]["CREDIT_GRADE"] = NEW_GRADE
    verdict = upload(admin_url, login, after, tmp_path / "after")
    assert verdict["status"] == "accepted", verdict
    before = valid_rows(spec, "42", "202609")
    before.rows["VIP_CUST_INFO"][0]["CREDIT_GRADE"] = NEW_GRADE
    verdict = upload(admin_url, login, before, tmp_path / "before")
    assert verdict["status"] == "rejected"
    assert [c["code"] for c in verdict["counts"] if c["severity"] == "error"] == ["E307"]


def test_agents_get_it_over_http_and_in_their_sftp_outbox(admin_runtime: Runtime, admin_url: str, spec: Spec,
                                                           published: dict[str, str]) -> None:
    http = HttpTransport(admin_url, published["token"])
    try:
        doc = http.get_json("/api/v1/code-lists")
    finally:
        http.close()
    assert doc["spec_version"] == spec.version and len(doc["generation"]) == 16
    [addition] = doc["additions"]
    assert addition["domain"] == DOMAIN and addition["version"]["version"] == "2026.10"
    assert addition["version"]["add"] == [{"code": NEW_GRADE, "name_zh": "很差", "name_en": "Very poor"}]
    # What the agent does with it: the same standard as HQ's.
    theirs = with_code_versions(spec, doc["additions"]).domain(DOMAIN)
    assert theirs.accepts(NEW_GRADE, dt.date(2026, 10, 1))
    outbox = PartyTree(admin_runtime.settings.sftp_root).outbox("42") / "code_lists.json"
    assert json.loads(outbox.read_text("utf-8")) == doc


def test_publishing_is_audited_and_final(client: FlaskClient, accounts: Accounts, admin_runtime: Runtime,
                                          published: dict[str, str]) -> None:
    with admin_runtime.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "codes.publish")).one()
        assert event.actor == published["admin"] and event.target == f"domain:{DOMAIN}"
        assert event.detail["version"] == "2026.10" and event.detail["effective_from"] == "2026-10-01"
    csrf = sign_in(client, accounts.admin())
    draft_id = published["draft_id"]
    for action in ("publish", "withdraw"):  # a published version is never changed or taken back
        r = client.post(f"/admin/code-lists/{DOMAIN}/drafts/{draft_id}/{action}", data={"csrf_token": csrf})
        assert r.status_code == 409 and "draft_not_proposed" in r.get_data(as_text=True)


def test_a_later_version_must_follow_the_published_one(client: FlaskClient, accounts: Accounts,
                                                       published: dict[str, str]) -> None:
    csrf = sign_in(client, accounts.admin())
    # Effective before the published 2026.10: refused when proposed, with the reason.
    r = client.post(f"/admin/code-lists/{DOMAIN}/drafts", data={
        "csrf_token": csrf, "version": "2026.09", "effective_from": "2026-09-15", "based_on": "2026.10",
        "add": "E | 极差 | Worst", "update": "", "remove": ""})
    assert r.status_code == 400 and "code_version_invalid" in r.get_data(as_text=True)
    # Based on the published version and later: accepted as a proposal, and publishable.
    r = client.post(f"/admin/code-lists/{DOMAIN}/drafts", data={
        "csrf_token": csrf, "version": "2027.1", "effective_from": "2027-01-01", "based_on": "2026.10",
        "add": "", "update": "", "remove": NEW_GRADE})
    assert r.status_code == 303
    page = client.get(f"/admin/code-lists/{DOMAIN}").get_data(as_text=True)
    draft_id = page.split('data-version="2027.1" data-state="proposed"')[0].rsplit('data-draft="', 1)[1].split('"')[0]
    r = client.post(f"/admin/code-lists/{DOMAIN}/drafts/{draft_id}/withdraw", data={"csrf_token": csrf})
    assert r.status_code == 303


def test_the_organisation_tree_is_not_edited_here(client: FlaskClient, accounts: Accounts, spec: Spec) -> None:
    csrf = sign_in(client, accounts.admin())
    base = spec.domain("Domain_area_id").current.version
    r = client.post("/admin/code-lists/Domain_area_id/drafts", data={
        "csrf_token": csrf, "version": "9.9", "effective_from": "2031-01-01", "based_on": base,
        "add": "9999 | 测试网 | Test network | 42 | local_network", "update": "", "remove": ""})
    assert r.status_code == 400 and "domain_is_org_tree" in r.get_data(as_text=True)


def test_live_spec_follows_the_database(admin_runtime: Runtime, published: dict[str, str]) -> None:
    with admin_runtime.db.session() as s:
        live = live_spec(s, admin_runtime.spec)
    assert live.domain(DOMAIN).current.version == "2026.10"
    assert admin_runtime.spec.domain(DOMAIN).current.version != "2026.10"  # the YAML's Spec is untouched
    with pytest.raises(SpecError, match="must take effect after 2026.10"):
        with_code_versions(live, [{"domain": DOMAIN, "version": {
            "version": "x", "effective_from": "2026-09-01", "based_on": "2026.10", "remove": [NEW_GRADE]}}])

