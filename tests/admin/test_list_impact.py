"""Publishing a list version that changes an open cycle's verdicts: shown first, confirmed knowingly (Chromium).

Hubei's 202610 is accepted under 2026V01; the admin uploads 2026V02, which takes one of
Hubei's customers off the list from 20261001. The draft's page shows the impact (202610,
Hubei, one reported customer no longer listed) and the publish form requires a
confirmation; without it the server refuses (409 ``list_publish_impact``), with it the
version is published and the audit log keeps the impact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from tests.admin.conftest import Accounts, sign_in, sign_in_page, upload
from tests.support.browser import screenshot_path
from tests.support.deliveries import valid_rows
from tests.support.lists import Entry, write_list_csv


@pytest.fixture(scope="module")
def draft(admin_runtime: Runtime, admin_url: str, accounts: Accounts, tmp_path_factory: pytest.TempPathFactory,
          spec: Any) -> str:
    """2026V01 published, Hubei's 202610 accepted, 2026V02 loaded as a draft that drops one of its customers."""
    tmp = tmp_path_factory.mktemp("impact")
    rows = valid_rows(spec)
    nets = sorted({r["LATN_ID"] for r in rows.rows["VIP_SUMMARY"]})
    with admin_runtime.db.session() as s:
        lists = ListService(s, admin_runtime.archive, admin_runtime.spec, "admin")
        lists.publish(lists.load(write_list_csv(tmp / "v1.csv", spec, [Entry(c, "42", nets[0]) for c in rows.list_ids]),
                                 "2026V01"))
    verdict = upload(admin_url, accounts.province("42"), rows, tmp / "d")
    assert verdict["status"] == "accepted", verdict
    leaving = rows.list_ids[0]
    v2 = write_list_csv(tmp / "v2.csv", spec, [Entry(leaving, "42", nets[0], exp="20260930", change="D")]
                        + [Entry(c, "42", nets[0]) for c in rows.list_ids[1:]])
    with admin_runtime.db.session() as s:
        ListService(s, admin_runtime.archive, admin_runtime.spec, "admin").load(v2, "2026V02")
    return leaving


def test_publishing_without_the_confirmation_is_refused(client: FlaskClient, accounts: Accounts, draft: str) -> None:
    csrf = sign_in(client, accounts.admin())
    page = client.get("/admin/lists/2026V02").get_data(as_text=True)
    assert 'data-cycle="202610" data-province="42" data-failing="yes"' in page
    assert draft in page and 'id="confirm-impact"' in page
    r = client.post("/admin/lists/2026V02/publish", data={"csrf_token": csrf})
    assert r.status_code == 409 and "list_publish_impact" in r.get_data(as_text=True)


@pytest.mark.slow
def test_the_admin_sees_the_impact_and_publishes_knowingly(page: Any, admin_url: str, admin_runtime: Runtime,
                                                          accounts: Accounts, draft: str, tmp_path: Path) -> None:
    sign_in_page(page, admin_url, accounts.admin(), start="/admin/lists/2026V02")
    row = page.locator('#impact-table tr[data-cycle="202610"][data-province="42"]')
    assert row.get_attribute("data-failing") == "yes"
    assert draft in row.inner_text() and "20260930" in row.inner_text()
    page.screenshot(path=str(screenshot_path("admin-list-impact.png", tmp_path)), full_page=True)
    page.click('#publish button[type="submit"]')  # the browser will not submit without the box ticked
    assert page.url.endswith("/admin/lists/2026V02")
    assert page.evaluate("document.querySelector('#confirm-impact').validity.valueMissing")
    page.check("#confirm-impact")
    with page.expect_navigation():
        page.click('#publish button[type="submit"]')
    assert page.locator('[data-state="published"]').count() == 1
    with admin_runtime.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "list.publish",
                                                   AuditEvent.target == "list:2026V02")).one()
        assert event.detail["confirmed_impact"] is True
        assert event.detail["impact"] == [{"cycle": "202610", "prov_id": "42", "x007": 0, "e604": 1}]
