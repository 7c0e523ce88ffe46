"""A list version's page in-process: pages of entries, search, downloads, and confirmations that guard every action.

The sample national list (500 customers led by the 31 provinces, plus the removals it
states) is version 2026V01, published; 2026V02 and 2026V03 are drafts loaded from a CSV that
renames the first customer (with Latin letters in the name), drops the last one and adds one.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from exchange_server.audit.models import AuditEvent
from exchange_server.lists.importers import import_list
from exchange_server.lists.models import ListEntry, ListVersion
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from exchange_server.sample_data.generator import generate
from schemas import Spec
from tests.admin.conftest import CYCLES, Accounts, sign_in
from tests.support.runtimes import runtime_with_open_cycles

NEW = "G420099999"  # the customer 2026V02 adds
RENAMED = "ACME Holdings 韶关分部"  # the first customer's name in 2026V02
COLUMNS = ["NATIONAL_CUST_ID", "CUST_RANK", "CUST_NAME", "GROUP_PARENT_NAME", "C_TYPE_ID", "LEVEL_ID",
           "LEAD_PROV_ID", "LEAD_LATN_ID", "HQ_MANAGER_NAME", "HQ_MANAGER_PHONE", "EFF_DATE", "EXP_DATE"]


@pytest.fixture(scope="module")
def lists(admin_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory, spec: Spec) -> dict[str, Any]:
    """2026V01 (the sample list, published) and two drafts 2026V02 and 2026V03 made from it."""
    out = tmp_path_factory.mktemp("sample-list")
    generate(spec, "202610", out, provinces=["42"], scale=1, fmt="txt", seed=2002)
    rows = import_list(out / "00" / "D_00_2026V01_00.chk", spec).rows
    active = [r for r in rows if r["CHANGE_TYPE"] != "D"]
    v2 = [dict(r) for r in active[:-1]]
    v2[0]["CUST_NAME"] = RENAMED
    hubei = next(r for r in active if r["LEAD_PROV_ID"] == "42")
    v2.append({**hubei, "NATIONAL_CUST_ID": NEW, "CUST_RANK": str(len(v2) + 1), "CUST_NAME": "新增测试客户",
               "EFF_DATE": "20261201"})
    sheet = out / "v2.csv"
    with sheet.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows([[r[c] for c in COLUMNS] for r in v2])
    with admin_runtime.db.session() as s:
        svc = ListService(s, admin_runtime.archive, admin_runtime.spec, "test")
        svc.publish(svc.load(out / "00" / "D_00_2026V01_00.chk"), confirm_impact=True)
    for version in ("2026V02", "2026V03"):
        with admin_runtime.db.session() as s:
            ListService(s, admin_runtime.archive, admin_runtime.spec, "test").load(sheet, version)
    return {"rows": rows, "active": active, "first": active[0], "dropped": active[-1]}


@pytest.fixture
def admin_client(client: FlaskClient, accounts: Accounts, lists: dict[str, Any]) -> tuple[FlaskClient, str]:
    """The test client signed in as a new admin, and its CSRF token."""
    return client, sign_in(client, accounts.admin())


def customers(html: str) -> list[str]:
    """The customer ids of the entries table, in order."""
    table = html.split('id="entries-table"', 1)[1].split("</table>", 1)[0] if 'id="entries-table"' in html else ""
    return re.findall(r'<tr data-customer="([^"]+)"', table)


def count_of(html: str, attr: str) -> int:
    m = re.search(r'id="entry-count" data-total="(\d+)" data-page="(\d+)" data-pages="(\d+)"', html)
    assert m, "no entry count on the page"
    return int(m.group({"total": 1, "page": 2, "pages": 3}[attr]))


def entries_in_db(rt: Runtime, version: str, **where: str) -> list[str]:
    """The version's customer ids by rank, straight from the database."""
    with rt.db.session() as s:
        q = (select(ListEntry.national_cust_id).join(ListVersion, ListVersion.id == ListEntry.list_version_id)
             .where(ListVersion.version == version).order_by(ListEntry.rank, ListEntry.id))
        for attr, value in where.items():
            q = q.where(getattr(ListEntry, attr) == value)
        return list(s.scalars(q))


# -- pages and search -------------------------------------------------------------------------
def test_a_version_is_paged_a_hundred_at_a_time(admin_client: tuple[FlaskClient, str], admin_runtime: Runtime,
                                                 lists: dict[str, Any]) -> None:
    client, _ = admin_client
    every = entries_in_db(admin_runtime, "2026V01")
    # The first load keeps the 500 customers (the removals a first list states remove nobody).
    assert len(every) == len(lists["active"]) == 500
    html = client.get("/admin/lists/2026V01").get_data(as_text=True)
    assert count_of(html, "total") == 500 and count_of(html, "pages") == 5
    assert customers(html) == every[:100]
    assert 'rel="next"' in html and 'rel="prev"' not in html
    page2 = client.get("/admin/lists/2026V01?page=2").get_data(as_text=True)
    assert customers(page2) == every[100:200] and count_of(page2, "page") == 2
    last = client.get("/admin/lists/2026V01?page=999").get_data(as_text=True)  # past the end: the last page
    assert customers(last) == every[400:] and count_of(last, "page") == 5
    assert client.get("/admin/lists/2026V01?page=abc").status_code == 422
    assert client.get("/admin/lists/2026V01?page=99999999999999999999999").status_code == 422


def test_search_by_id_name_province_and_change_with_counts(admin_client: tuple[FlaskClient, str],
                                                           admin_runtime: Runtime, lists: dict[str, Any]) -> None:
    client, _ = admin_client
    first = lists["first"]
    html = client.get(f"/admin/lists/2026V01?q={first['NATIONAL_CUST_ID']}").get_data(as_text=True)
    assert customers(html) == [first["NATIONAL_CUST_ID"]] and count_of(html, "total") == 1
    # A part of a Chinese name finds every customer whose name holds it.
    part = first["CUST_NAME"][1:4]
    html = client.get("/admin/lists/2026V01", query_string={"q": part}).get_data(as_text=True)
    expected = [r["NATIONAL_CUST_ID"] for r in sorted(lists["active"], key=lambda r: int(r["CUST_RANK"]))
                if part in r["CUST_NAME"] or part in r["GROUP_PARENT_NAME"]]
    assert customers(html) == expected[:100] and count_of(html, "total") == len(expected)
    # The province filter, with each province's count in its option.
    hubei = entries_in_db(admin_runtime, "2026V01", lead_prov_id="42")
    html = client.get("/admin/lists/2026V01?province=42").get_data(as_text=True)
    assert customers(html) == hubei and count_of(html, "total") == len(hubei)
    assert f'<option value="42" selected>42 湖北省 ({len(hubei)})</option>' in html
    assert len(re.findall(r'<option value="\d\d"', html)) == 31
    # Search and filters together; nothing found says so.
    html = client.get(f"/admin/lists/2026V01?province=42&q={hubei[0]}&change=").get_data(as_text=True)
    assert customers(html) == [hubei[0]]
    html = client.get("/admin/lists/2026V01?q=no-such-customer").get_data(as_text=True)
    assert 'id="no-entries"' in html and count_of(html, "total") == 0
    removed = entries_in_db(admin_runtime, "2026V02", change_type="D")
    html = client.get("/admin/lists/2026V02?change=D").get_data(as_text=True)
    assert customers(html) == removed == [lists["dropped"]["NATIONAL_CUST_ID"]] and "删除 (1)" in html


def test_page_links_keep_the_search(admin_client: tuple[FlaskClient, str], admin_runtime: Runtime) -> None:
    client, _ = admin_client
    added = entries_in_db(admin_runtime, "2026V01", change_type="A")  # a first version adds everyone
    assert len(added) == 500
    html = client.get("/admin/lists/2026V01?change=A&q=G").get_data(as_text=True)
    nxt = re.search(r'<a href="([^"]+)" rel="next"', html)
    assert nxt, "no next page link"
    link = nxt.group(1).replace("&amp;", "&")
    assert "change=A" in link and "q=G" in link and "page=2" in link
    page2 = client.get(link).get_data(as_text=True)
    assert customers(page2) == added[100:200] and count_of(page2, "page") == 2


def test_the_english_page_finds_latin_names_in_any_case(admin_client: tuple[FlaskClient, str],
                                                        lists: dict[str, Any]) -> None:
    client, _ = admin_client
    client.get("/lang/en")
    html = client.get("/admin/lists/2026V02?q=acme%20holdings").get_data(as_text=True)
    assert '<html lang="en">' in html and customers(html) == [lists["first"]["NATIONAL_CUST_ID"]]
    assert "1 customer(s) match" in html and "CUST_NAME" in html and RENAMED in html  # what changed, shown
    assert '42 Hubei (' in html and "Lead province" in html and "湖北省" not in html
    # The Chinese page finds the same customer by the Chinese part of its new name.
    client.get("/lang/zh")
    html = client.get("/admin/lists/2026V02", query_string={"q": "韶关分部"}).get_data(as_text=True)
    assert customers(html) == [lists["first"]["NATIONAL_CUST_ID"]] and "共 1 个客户符合条件" in html


# -- downloads --------------------------------------------------------------------------------
def test_csv_is_utf8_with_bom_one_charset_and_text_codes(admin_client: tuple[FlaskClient, str],
                                                         admin_runtime: Runtime, spec: Spec) -> None:
    client, _ = admin_client
    r = client.get("/admin/lists/2026V02/files/csv")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"  # exactly one charset
    assert r.headers["Content-Disposition"] == "attachment; filename=list-2026V02.csv"
    data = r.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))
    unit = spec.unit("TOP500_LIST")
    assert table[0] == [unit.field(f).name_zh for f in COLUMNS + ["CHANGE_TYPE"]]
    assert [row[0] for row in table[1:]] == entries_in_db(admin_runtime, "2026V02")
    assert any(row[7].startswith("0") for row in table[1:])  # local network codes keep their leading zero
    added = next(row for row in table[1:] if row[0] == NEW)
    assert added[10:] == ["20261201", "", "A"]
    client.get("/lang/en")
    english = client.get("/admin/lists/2026V02/files/csv").get_data()
    assert english[3:].decode("utf-8").split("\r\n", 1)[0].startswith("National customer id,Rank,")
    client.get("/lang/zh")


def test_xlsx_holds_every_value_as_text(admin_client: tuple[FlaskClient, str], admin_runtime: Runtime,
                                        tmp_path: Path) -> None:
    client, _ = admin_client
    r = client.get("/admin/lists/2026V01/files/xlsx")
    assert r.status_code == 200 and r.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    (tmp_path / "list.xlsx").write_bytes(r.get_data())
    ws = load_workbook(tmp_path / "list.xlsx").worksheets[0]
    rows = list(ws.iter_rows())
    assert rows[0][0].value == "全国大客户编码" and rows[0][0].font.b
    assert [row[0].value for row in rows[1:]] == entries_in_db(admin_runtime, "2026V01")
    for row in rows[1:]:
        assert all(c.data_type == "s" and isinstance(c.value, str) for c in row if c.value is not None)
    assert all(ws.column_dimensions[letter].number_format == "@" for letter in "ABCDEFGHIJKL")  # text columns
    assert any(str(row[7].value).startswith("0") for row in rows[1:])  # "0751" stays "0751"
    # The sheet is what the upload form takes: it loads as a version with the same customers.
    with admin_runtime.db.session() as s:
        rows_read = import_list(tmp_path / "list.xlsx", ListService(s, None, admin_runtime.spec).spec,
                                "2026V09").rows
    assert [x["NATIONAL_CUST_ID"] for x in rows_read] == entries_in_db(admin_runtime, "2026V01")


def test_the_standards_files_load_back_as_the_same_customers(admin_client: tuple[FlaskClient, str],
                                                             admin_runtime: Runtime, spec: Spec,
                                                             tmp_path: Path) -> None:
    client, _ = admin_client
    r = client.get("/admin/lists/2026V02/files/spec")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    assert r.headers["Content-Disposition"] == "attachment; filename=D_00_2026V02_00.zip"
    assert client.get("/admin/lists/2026V02/files/spec").get_data() == r.get_data()  # the same bytes each time
    folder = tmp_path / "files"
    with zipfile.ZipFile(io.BytesIO(r.get_data())) as zf:
        assert sorted(zf.namelist()) == ["D_00_2026V02_00.chk", "D_00_2026V02_31101_00_001.txt"]
        zf.extractall(folder)
    # Every entry as stored, removals included, in the standard's lexical forms.
    with admin_runtime.db.session() as s:
        svc = ListService(s, admin_runtime.archive, admin_runtime.spec)
        stored = svc.iter_entries(svc.get("2026V02"))
        from exchange_server.lists.services import entry_row
        expected = [entry_row(e, "2026V02") for e in stored]
    assert import_list(folder, spec).rows == expected
    # The loader takes them as they are: in a fresh exchange they are the same customers.
    fresh = runtime_with_open_cycles(tmp_path / "fresh", CYCLES)
    try:
        with fresh.db.session() as s:
            loaded = ListService(s, fresh.archive, fresh.spec, "test").load(folder / "D_00_2026V02_00.chk")
            assert loaded.version == "2026V02"
        listed = [r["NATIONAL_CUST_ID"] for r in expected if r["CHANGE_TYPE"] != "D"]
        assert entries_in_db(fresh, "2026V02") == listed and NEW in listed
    finally:
        fresh.db.dispose()
    assert client.get("/admin/lists/2026V02/files/pdf").status_code == 404
    assert client.get("/admin/lists/2099V01/files/csv").status_code == 404


# -- confirmations ----------------------------------------------------------------------------
def test_the_draft_page_shows_what_publishing_and_closing_change(admin_client: tuple[FlaskClient, str],
                                                                 lists: dict[str, Any]) -> None:
    client, _ = admin_client
    html = client.get("/admin/lists/2026V02").get_data(as_text=True)
    assert 'id="confirm-publish"' in html and 'id="confirm-impact"' in html and 'id="confirm-close"' in html
    assert "新增 1 个客户、变更 1 个、删除 1 个" in html and "现行版本 2026V01 将被取代" in html
    affected = {lists["first"]["LEAD_PROV_ID"], lists["dropped"]["LEAD_PROV_ID"], "42"}
    assert f'id="provinces-affected" data-count="{len(affected)}"' in html
    for prov in affected:
        assert f'<tr data-province="{prov}"><td><a href="/admin/lists/2026V02?province={prov}#entries">' in html
    assert 'id="impact-none"' in html  # nothing accepted yet in the open cycles
    assert '<details id="close-draft">' in html  # closing: asked for on the same page, folded until wanted
    closing = client.get("/admin/lists/2026V02?confirm=close").get_data(as_text=True)
    assert '<details id="close-draft" open>' in closing
    assert f"以上 {len(affected)} 个省份的变化（新增 1、变更 1、删除 1）不会下发" in closing
    assert "现行版本仍为 2026V01" in closing
    published = client.get("/admin/lists/2026V01").get_data(as_text=True)
    assert 'id="confirm-publish"' not in published and 'id="close"' not in published


def test_actions_without_the_confirmation_do_nothing(admin_client: tuple[FlaskClient, str],
                                                     admin_runtime: Runtime) -> None:
    client, csrf = admin_client
    r = client.post("/admin/lists/2026V02/publish", data={"csrf_token": csrf})
    html = r.get_data(as_text=True)
    assert r.status_code == 409 and 'data-code="list_publish_unconfirmed"' in html
    assert 'id="confirm-publish"' in html and "请核对变化后勾选确认" in html  # back at the confirmation
    r = client.post("/admin/lists/2026V02/close", data={"csrf_token": csrf, "confirm_close": "no"})
    html = r.get_data(as_text=True)
    assert r.status_code == 409 and 'data-code="list_close_unconfirmed"' in html
    assert '<details id="close-draft" open>' in html
    client.get("/lang/en")
    r = client.post("/admin/lists/2026V02/publish", data={"csrf_token": csrf})
    assert "tick the confirmation after checking what it changes; nothing was done" in r.get_data(as_text=True)
    client.get("/lang/zh")
    with admin_runtime.db.session() as s:
        svc = ListService(s, None, admin_runtime.spec)
        assert svc.get("2026V02").state == "draft" and svc.current().version == "2026V01"  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action.in_(("list.publish", "list.close")), AuditEvent.actor != "test")) == 0


def test_closing_a_draft_once_confirmed(admin_client: tuple[FlaskClient, str], admin_runtime: Runtime) -> None:
    client, csrf = admin_client
    r = client.post("/admin/lists/2026V03/close", data={"csrf_token": csrf, "confirm_close": "yes"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin/lists/2026V03")
    html = client.get("/admin/lists/2026V03").get_data(as_text=True)
    assert 'data-state="closed"' in html and "已关闭名单草稿 2026V03" in html and 'id="publish"' not in html
    listing = client.get("/admin/lists").get_data(as_text=True)
    assert '<tr data-version="2026V03" data-state="closed">' in listing and "已关闭" in listing
    assert 'href="/admin/lists/2026V03/files/xlsx" data-format="xlsx"' in listing  # every version downloads
    # Never in force: no slice, not counted in what the checks use, not publishable, not closable again.
    with admin_runtime.db.session() as s:
        svc = ListService(s, None, admin_runtime.spec)
        closed = svc.get("2026V03")
        assert closed.slices == [] and closed.id not in svc.stamp()
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "list.close")).one()
        assert event.target == "list:2026V03" and event.detail["added"] == 1
    r = client.post("/admin/lists/2026V03/publish", data={"csrf_token": csrf, "confirm_impact": "yes"})
    assert r.status_code == 409 and 'data-code="list_not_draft"' in r.get_data(as_text=True)
    r = client.post("/admin/lists/2026V03/close", data={"csrf_token": csrf, "confirm_close": "yes"})
    assert r.status_code == 409 and 'data-code="list_not_draft"' in r.get_data(as_text=True)
