"""The admin console's list pages: versions, upload, a version's entries, downloads, publication and closing.

A version's page lists its entries a page at a time (searched by customer id or name, filtered
by lead province and change), with counts; every version downloads as the standard's files
(zipped), CSV and XLSX (``lists.downloads``). Publishing and closing a draft are shown with
what they change first — the customers added, changed and removed, the provinces whose slice
changes, and (publishing) the open cycles whose accepted data would then fail the list checks
(``lists.impact``) — and act only with the confirmation ticked: without it the page comes back
with the reason and nothing is done.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from flask import abort, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from ...accounts.models import ADMIN, Account
from ...db import get_session
from ...errors import BadRequest, Conflict, ExchangeError
from ...lists.downloads import FORMATS, list_file
from ...lists.impact import ListImpactService
from ...lists.importers import NATIONAL
from ...lists.models import DRAFT, ListVersion
from ...lists.services import ADDED, CHANGED, REMOVED, UNCHANGED, ListService
from ...org.services import OrgService
from ...routing import int_arg
from ...runtime.flask import runtime
from ...sftp import outbox
from ..auth import login_required
from ..files import attachment
from ..i18n import current_language
from . import bp
from .actions import actor, after_commit, done, refused

LIST_SUFFIXES = (".csv", ".xlsx")
PER_PAGE = 100  # entries per page of a version
CHANGES = (ADDED, CHANGED, REMOVED, UNCHANGED)
_PROVINCE = re.compile(r"^[0-9A-Za-z]{1,4}$")


def _list_service(who: str = "system") -> ListService:
    rt = runtime()
    return ListService(get_session(), rt.archive, rt.spec, who)


def _lists(error: ExchangeError | None = None, form: dict[str, str] | None = None) -> str:
    svc = _list_service()
    return render_template("admin/lists.html", versions=svc.versions(), current=svc.current(), error=error,
                           form=form or {})


@bp.get("/lists")
@login_required(ADMIN)
def lists() -> str:
    """Every version of the national list, and the upload form."""
    return _lists()


@bp.post("/lists")
@login_required(ADMIN)
def list_upload() -> Any:
    """Load a CSV or XLSX upload as a draft version (archived first, validated like the spec's files)."""
    upload = request.files.get("file")
    version = request.form.get("version", "").strip() or None
    name = Path((upload.filename or "") if upload else "").name
    try:
        if upload is None or not name:
            raise BadRequest("choose a CSV or XLSX file to upload", "请选择要上传的 CSV 或 XLSX 文件", code="no_file")
        if not name.lower().endswith(LIST_SUFFIXES) or name.startswith(".") or any(ord(c) < 32 for c in name):
            raise BadRequest(f"{name}: only .csv or .xlsx files can be uploaded here",
                             f"{name}：此处只能上传 .csv 或 .xlsx 文件", code="bad_file_name")
        with tempfile.TemporaryDirectory(prefix="admin-list-") as tmp:
            path = Path(tmp) / ("upload" + Path(name).suffix.lower())
            upload.save(path)
            who = actor()
            # End the transaction the sign-in check opened (on SQLite it holds the single writer):
            # load reads and validates outside any write transaction and writes in one short one.
            get_session().commit()
            loaded = _list_service(who).load(path, version, source_name=name)
    except ExchangeError as exc:
        return refused(exc, _lists, form={"version": version or ""})
    return done(f"已导入名单 {loaded.version}（草稿），请核对差异后发布",
                 f"list {loaded.version} loaded as a draft; check the differences, then publish",
                 "admin.list_version", version=loaded.version)


def _filters() -> dict[str, Any]:
    """The entry search in the query string: text, lead province, change, page (a bad page is a 422)."""
    args = request.args
    province = args.get("province", "").strip()
    change = args.get("change", "").strip().upper()
    return {"q": args.get("q", "").strip()[:100], "province": province if _PROVINCE.match(province) else "",
            "change": change if change in CHANGES else "", "page": int_arg(args, "page", 1)}


def _list_version(version: str, error: ExchangeError | None = None, confirm: str = "") -> str:
    svc = _list_service()
    listv = svc.get(version)
    session = get_session()
    downloads = svc.downloads(listv)
    ids = {d.account_id for d in downloads}
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))} if ids else {}
    draft = listv.state == DRAFT
    # A draft's page shows what publishing it would do to the open cycles' accepted data.
    impact = ListImpactService(session, svc.spec).impact(listv) if draft else None
    f = _filters()
    found = svc.entries(listv, search=f["q"], province=f["province"] or None, change=f["change"] or None,
                        page=f["page"], per_page=PER_PAGE)
    provinces = {a.code: a for a in OrgService(session).provinces()}
    base = session.get(ListVersion, listv.based_on_id) if listv.based_on_id else None
    return render_template("admin/lists_version.html", v=listv, base=base, downloads=downloads,
                           accounts=accounts, slices=sorted(listv.slices, key=lambda s: s.province),
                           fetched={accounts[d.account_id].party for d in downloads if d.account_id in accounts},
                           draft=draft, impact=impact, error=error, found=found, filters=f,
                           provinces=provinces, by_province=svc.changes_by_province(listv) if draft else [],
                           current=svc.current(), confirm=confirm or request.args.get("confirm", ""))


@bp.get("/lists/<version>")
@login_required(ADMIN)
def list_version(version: str) -> str:
    """A version: its entries (searched, a page at a time), downloads, slices, who fetched them; a draft's actions."""
    return _list_version(version)


@bp.get("/lists/<version>/files/<fmt>")
@login_required(ADMIN)
def list_files(version: str, fmt: str) -> Response:
    """The version as the standard's files (a zip), CSV or XLSX; headers in the reader's language."""
    if fmt not in FORMATS:
        abort(404)
    svc = _list_service()
    # HQ's versions are the national list; a province hub's are its province's slice from HQ.
    party = runtime().settings.hub_party or NATIONAL
    out = list_file(svc, svc.get(version), fmt, english=current_language() == "en", party=party)
    return attachment(out.data, out.mimetype, out.filename)


def _unconfirmed(version: str, action: str, zh: str, en: str) -> Conflict:
    return Conflict(f"{en} {version}: tick the confirmation after checking what it changes; nothing was done",
                    f"{zh}名单 {version}：请核对变化后勾选确认；未执行任何操作", code=f"list_{action}_unconfirmed",
                    errors={"version": version, "action": action})


@bp.post("/lists/<version>/publish")
@login_required(ADMIN)
def list_publish(version: str) -> Any:
    """Publish a draft once confirmed on its page, which shows what changes: slices cut, archived, put in outboxes."""
    svc = _list_service(actor())
    # The one tick on the page confirms the publication and, when there is one, its impact.
    confirmed = request.form.get("confirm_impact") == "yes"
    try:
        listv = svc.get(version)
        if not confirmed and listv.state == DRAFT:
            impact = ListImpactService(get_session(), svc.spec).impact(listv)
            if impact.failing:
                # The refusal the service gives, with the impact (as the command line gets it).
                raise Conflict(f"publishing {version} makes accepted data of open cycles fail the list checks; "
                               f"confirm to publish anyway",
                               f"发布名单 {version} 将使开放周期中已采纳的数据不再通过名单校验；确认后方可发布",
                               code="list_publish_impact", errors=impact.as_dict())
            raise _unconfirmed(version, "publish", "发布", "publish")
        slices = svc.publish(listv, confirm_impact=confirmed)
    except ExchangeError as exc:
        return refused(exc, _list_version, version=version, confirm="publish")
    response = done(f"已发布名单 {version}，共 {len(slices)} 个省份切片",
                     f"list {version} published: {len(slices)} province slice(s)", "admin.list_version",
                     version=version)
    after_commit("名单切片放入SFTP发件箱", "placing the list slices in the SFTP outboxes",
                  lambda: outbox.place_list_slices(runtime(), version))
    return response


@bp.post("/lists/<version>/close")
@login_required(ADMIN)
def list_close(version: str) -> Any:
    """Close a draft without publishing it, once confirmed: nothing reaches the provinces."""
    svc = _list_service(actor())
    try:
        listv = svc.get(version)
        if request.form.get("confirm_close") != "yes":
            raise _unconfirmed(version, "close", "关闭", "close")
        svc.close(listv)
    except ExchangeError as exc:
        return refused(exc, _list_version, version=version, confirm="close")
    return done(f"已关闭名单草稿 {version}，不会发布", f"draft {version} closed; it will not be published",
                "admin.list_version", version=version)
