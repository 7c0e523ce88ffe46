"""The province pages (``/province/``, province and local-network accounts only): read-only views of their own data.

A province sees the deliveries its own and its networks' accounts sent; a network account
sees its own. Who may see what is decided by
:class:`~exchange_server.submissions.services.DeliveryService` alone; another province's
delivery is a 404, exactly like one that does not exist. Provinces take no actions here:
they deliver through the agent, the API or SFTP. HQ roles are refused (403): they have the
analyst and admin pages.
"""
from __future__ import annotations

import io
from typing import Any

from flask import abort, render_template, request, send_file, url_for
from werkzeug.wrappers import Response

from ..accounts.models import PROVINCE, Account
from ..db import get_session
from ..errors_http import DELIVERY_FAILED
from ..review.services import STATE_NAMES, ReviewService, comment_file_name
from ..routing import int_arg
from ..runtime.flask import runtime
from ..submissions.services import FEEDBACK
from .auth import current_account, login_required
from .blueprints import page_blueprint
from .province_services import (CYCLE_STATE_NAMES, FEEDBACK_NAMES, STATUS_NAMES, UNIT_STATE_NAMES, ListFilter,
                                ProvinceService)

bp = page_blueprint("province", __name__, url_prefix="/province")

#: The province navigation: (section, endpoint, Chinese, English).
NAV: list[tuple[str, str, str, str]] = [
    ("deliveries", "province.index", "我的报送", "My deliveries"),
    ("cycles", "province.cycles", "报告日历", "Reporting calendar"),
]


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
    return render_template("province/deliveries.html", q=_service().page(_account(), f), f=f,
                           statuses=STATUS_NAMES, state_names=STATE_NAMES, **_common("deliveries"))


@bp.get("/deliveries/<id:delivery_id>")
@login_required(PROVINCE)
def delivery(delivery_id: int) -> str:
    """One delivery: receipt, summary by code, findings (paged), the raw lines around one, HQ's comments, versions."""
    service = _service()
    d = service.delivery(_account(), delivery_id)  # NotFound for another province's: never reveal it exists
    svc = _review()
    code = request.args.get("code", "").strip()[:16]
    page = int_arg(request.args, "page", 1)  # a number out of range is a 422, never a database overflow
    findings, total, pages = svc.findings(d, code, page)
    feedback = [(kind, pair) for kind, pair in FEEDBACK_NAMES.items() if getattr(d, FEEDBACK[kind][0])]
    return render_template(
        "province/delivery.html", d=d, sender=svc.sender(d), state=svc.state(d), state_names=STATE_NAMES,
        summary=svc.summary(d), findings=findings, findings_total=total, pages=pages,
        page=min(page, pages), code=code, context=svc.context(d, int_arg(request.args, "finding")),
        versions=service.visible_versions(_account(), svc.versions(d)), comments=svc.comments(d),
        comment_file=comment_file_name(d), receipt=svc.receipt_text(d), feedback=feedback,
        hq_answers=service.hq_answers(d), failure=DELIVERY_FAILED, **_common("deliveries"))


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


bp.add_app_template_global(province_args)
