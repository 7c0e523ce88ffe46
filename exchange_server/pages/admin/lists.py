"""The admin console's list pages: versions, upload, a version's differences, its impact, publication.

Publishing is shown with its impact first (``lists.impact``): which provinces' accepted data
of open cycles would fail the list checks once the version is in force. When any would, the
admin must tick a confirmation before the version is published.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flask import render_template, request
from sqlalchemy import select

from ...accounts.models import ADMIN, Account
from ...db import get_session
from ...errors import BadRequest, ExchangeError
from ...lists.impact import ListImpactService
from ...lists.models import DRAFT
from ...lists.services import ListService
from ...runtime.flask import runtime
from ...sftp import outbox
from ..auth import login_required
from . import bp
from .actions import actor, after_commit, done, refused

LIST_SUFFIXES = (".csv", ".xlsx")


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


def _list_version(version: str, error: ExchangeError | None = None) -> str:
    svc = _list_service()
    listv = svc.get(version)
    downloads = svc.downloads(listv)
    ids = {d.account_id for d in downloads}
    accounts = {a.id: a for a in get_session().scalars(select(Account).where(Account.id.in_(ids)))} if ids else {}
    # A draft's page shows what publishing it would do to the open cycles' accepted data.
    impact = ListImpactService(get_session(), svc.spec).impact(listv) if listv.state == DRAFT else None
    return render_template("admin/lists_version.html", v=listv, diff=svc.diff(listv), downloads=downloads,
                           accounts=accounts, slices=sorted(listv.slices, key=lambda s: s.province),
                           fetched={accounts[d.account_id].party for d in downloads if d.account_id in accounts},
                           draft=listv.state == DRAFT, impact=impact, error=error)


@bp.get("/lists/<version>")
@login_required(ADMIN)
def list_version(version: str) -> str:
    """A version: its differences from the version it is based on, its slices and who fetched them."""
    return _list_version(version)


@bp.post("/lists/<version>/publish")
@login_required(ADMIN)
def list_publish(version: str) -> Any:
    """Publish a draft (confirmed when it changes open cycles' verdicts): slices cut, archived, placed in outboxes."""
    svc = _list_service(actor())
    try:
        # The form carries the admin's confirmation when the page showed an impact.
        slices = svc.publish(svc.get(version), confirm_impact=request.form.get("confirm_impact") == "yes")
    except ExchangeError as exc:
        return refused(exc, _list_version, version=version)
    response = done(f"已发布名单 {version}，共 {len(slices)} 个省份切片",
                     f"list {version} published: {len(slices)} province slice(s)", "admin.list_version",
                     version=version)
    after_commit("名单切片放入SFTP发件箱", "placing the list slices in the SFTP outboxes",
                  lambda: outbox.place_list_slices(runtime(), version))
    return response
