"""The province pages (``/province/``, province and local-network accounts only): their own data, and an upload.

A province sees the deliveries its own and its networks' accounts sent; a network account
sees its own. Who may see what is decided by
:class:`~exchange_server.submissions.services.DeliveryService` alone; another province's
delivery is a 404, exactly like one that does not exist. The one action is uploading a
delivery (:mod:`.province_upload`, the API's receiving path); otherwise provinces deliver
through the agent, the API or SFTP. HQ roles are refused (403): they have the analyst and
admin pages.
"""
from __future__ import annotations

import io
from typing import Any

from flask import abort, make_response, render_template, request, send_file, url_for
from markupsafe import Markup, escape
from werkzeug.wrappers import Response

from ..accounts.models import PROVINCE, Account
from ..admin.reminders import ReminderService
from ..db import get_session
from ..errors_http import DELIVERY_FAILED
from ..review.services import STATE_NAMES, ReviewService, comment_file_name
from ..routing import int_arg
from ..runtime.flask import runtime
from ..submissions.services import FEEDBACK
from .auth import current_account, login_required
from .blueprints import page_blueprint
from .province_services import (COUNT_MARKS, CYCLE_STATE_NAMES, FEEDBACK_NAMES, STATUS_NAMES, UNIT_STATE_NAMES,
                                ListFilter, ProvinceService)

bp = page_blueprint("province", __name__, url_prefix="/province")

#: The province navigation: (section, endpoint, Chinese, English).
NAV: list[tuple[str, str, str, str]] = [
    ("deliveries", "province.index", "我的报送", "My deliveries"),
    ("upload", "province.upload", "上传报送", "Upload a delivery"),
    ("cycles", "province.cycles", "报告日历", "Reporting calendar"),
]
#: Seconds between reloads of a delivery's page while it waits for its verdict.
REFRESH_SECONDS = 3


def _service() -> ProvinceService:
    rt = runtime()
    return ProvinceService(get_session(), rt.archive, rt.spec)


def _review() -> ReviewService:
    rt = runtime()
    return ReviewService(get_session(), rt.archive, rt.spec)


def _account() -> Account:
    account = current_account()
    assert account is not None  # login_required ran first
    return account


def _common(section: str) -> dict[str, Any]:
    """What every province page's layout needs: the navigation and the account's area."""
    account = _account()
    names = _service().area_names({account.party} if account.party else set())
    return {"province_nav": [(s, url_for(e), zh, en) for s, e, zh, en in NAV], "province_section": section,
            "party": account.party, "party_name": names.get(account.party or "", ("", ""))}


@bp.get("/")
@login_required(PROVINCE)
def index() -> str:
    """The account's deliveries, newest first, paged, filtered by cycle and status."""
    f = ListFilter.from_args(request.args)
    service = _service()
    return render_template("province/deliveries.html", q=service.page(_account(), f), f=f,
                           statuses=STATUS_NAMES, state_names=STATE_NAMES, count_marks=COUNT_MARKS,
                           units=service.unit_labels(), **_common("deliveries"))


@bp.get("/deliveries/<id:delivery_id>")
@login_required(PROVINCE)
def delivery(delivery_id: int) -> Response:
    """One delivery: receipt, summary by code, findings (paged), the raw lines around one, HQ's comments, versions.

    Until it is judged the page says so and reloads itself every few seconds (a ``Refresh``
    header: the pages run no script).
    """
    service = _service()
    account = _account()
    d = service.delivery(account, delivery_id)  # NotFound for another province's: never reveal it exists
    svc = _review()
    code = request.args.get("code", "").strip()[:16]
    page = int_arg(request.args, "page", 1)  # a number out of range is a 422, never a database overflow
    findings, total, pages = svc.findings(d, code, page)
    feedback = [(kind, pair) for kind, pair in FEEDBACK_NAMES.items() if getattr(d, FEEDBACK[kind][0])]
    marks = service.unit_marks(account, [d.id]).get(d.id, [])
    response = make_response(render_template(
        "province/delivery.html", d=d, sender=svc.sender(d), state=svc.state(d), state_names=STATE_NAMES,
        summary=svc.summary(d), findings=findings, findings_total=total, pages=pages,
        page=min(page, pages), code=code, context=svc.context(d, int_arg(request.args, "finding")),
        versions=service.visible_versions(account, svc.versions(d)), comments=svc.comments(d),
        comment_file=comment_file_name(d), receipt=svc.receipt_text(d), feedback=feedback,
        hq_answers=service.hq_answers(d), failure=DELIVERY_FAILED, unit_marks=marks, count_marks=COUNT_MARKS,
        resend_answer=service.resend_answer(account, d), units=service.unit_labels(),
        just_received=request.args.get("received") == "1", duplicate=request.args.get("duplicate") == "1",
        refresh_seconds=REFRESH_SECONDS, **_common("deliveries")))
    if not d.is_final:
        response.headers["Refresh"] = str(REFRESH_SECONDS)  # until the verdict: then the page stays put
    return response


@bp.get("/deliveries/<id:delivery_id>/feedback/<kind>")
@login_required(PROVINCE)
def feedback(delivery_id: int, kind: str) -> Response:
    """Download a feedback file (receipt, file-level, record-level) of one of the account's deliveries."""
    name, data = _service().feedback(_account(), delivery_id, kind)
    return send_file(io.BytesIO(data), mimetype="application/xml", as_attachment=True, download_name=name, max_age=0)


@bp.get("/cycles")
@login_required(PROVINCE)
def cycles() -> str:
    """The reporting calendar as this province sees it: states, deadlines, its exceptions, its units accepted."""
    return render_template("province/cycles.html", rows=_service().calendar(_account()),
                           cycle_states=CYCLE_STATE_NAMES, unit_states=UNIT_STATE_NAMES, **_common("cycles"))


@bp.get("/<path:rest>")
@login_required(PROVINCE)
def not_found(rest: str) -> Response:
    """Any other path under /province/: the HTML 404 page rather than the API's JSON one."""
    abort(404)


def province_args(**changes: Any) -> dict[str, Any]:
    """The current query arguments with ``changes``, empty ones dropped (for pager and finding links)."""
    args: dict[str, Any] = dict(request.args.items())
    args.update(changes)
    return {k: v for k, v in args.items() if v not in (None, "")}


def breakable(name: str | None) -> Markup:
    """A file name that may wrap after its underscores (``P_<wbr>42_<wbr>...``), escaped."""
    return Markup("_<wbr>").join(escape(part) for part in (name or "").split("_"))


def province_reminders() -> list[Any]:
    """For the province pages' banner: the signed-in province account's reminders in force (none for others)."""
    account = current_account()
    if account is None or account.role != PROVINCE or not account.party:
        return []
    rt = runtime()
    return ReminderService(get_session(), rt.spec, rt.settings.reminder_leads).for_party(account.party)


bp.add_app_template_global(province_args)
bp.add_app_template_global(province_reminders)  # the reminder banner (province/_reminders.html)
bp.add_app_template_filter(breakable)

from . import province_upload  # noqa: E402,F401  (registers the upload views on this blueprint)
