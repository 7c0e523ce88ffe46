"""The review queue: rejected and accepted-with-warnings deliveries, one page each, and HQ's actions on them."""
from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ...accounts.models import ADMIN, Account
from ...clock import BEIJING, parse_iso
from ...db import get_session
from ...errors import BadRequest, ExchangeError
from ...org.models import Area
from ...review.services import (AGES, MAX_COMMENT, MIN_JUSTIFICATION, STATE_NAMES, VIEWS, QueueFilter, ReviewService,
                                deliver_comments)
from ...routing import int_arg
from ...runtime.flask import runtime
from ...submissions.models import DeliveryApproval
from ..auth import current_account, login_required
from . import bp
from .actions import SEP, after_commit


def _service() -> ReviewService:
    rt = runtime()
    return ReviewService(get_session(), rt.archive, rt.spec, late_acceptances=rt.settings.review_late_acceptances)


def _actor() -> str:
    account: Account | None = current_account()
    assert account is not None  # login_required ran first
    return account.name


@bp.get("/")
@login_required(ADMIN)
def index() -> Response:
    """The admin area opens on the review queue."""
    return redirect(url_for("admin.review_queue"))


@bp.route("/<path:rest>", methods=["GET", "POST"])
@login_required(ADMIN)
def not_found(rest: str) -> Response:
    """Any other path under /admin/ (an id out of range too): the HTML 404 page rather than the API's JSON one."""
    abort(404)


@bp.get("/review/")
@login_required(ADMIN)
def review_queue() -> str:
    """The queue, filtered by cycle, province, unit, error code, age and review state."""
    f = QueueFilter.from_args(request.args)
    q = _service().queue(f)
    spec = runtime().spec
    unit_en = {code: spec.unit(code).name_en for code, _zh in q.units if spec.has_unit(code)}  # for English pages
    return render_template("admin/review_queue.html", q=q, f=f, ages=AGES, unit_en=unit_en, views=VIEWS,
                           state_names=STATE_NAMES, max_comment=MAX_COMMENT, admin_section="review",
                           late_acceptances=runtime().settings.review_late_acceptances)


def _ids(values: list[str]) -> list[int]:
    """The checked deliveries' ids (a value that is not an id is refused, not skipped)."""
    try:
        return [int(v) for v in values]
    except ValueError:
        raise BadRequest("a selected delivery is not a delivery id", "所选报送编号无效",
                         code="invalid_arguments") from None


@bp.post("/review/bulk")
@login_required(ADMIN)
def review_bulk() -> Response:
    """Mark the checked deliveries reviewed, or send each of their senders the same comment; back to the queue."""
    back = QueueFilter.from_args(request.form)  # the queue's filters ride along as hidden fields
    action = request.form.get("action", "")
    svc = _service()
    try:
        ids = _ids(request.form.getlist("delivery"))
        if action == "reviewed":
            done = svc.bulk_mark_reviewed(_actor(), ids)
            get_session().commit()
            flash(f"已将 {len(done)} 个报送标记为已审核{SEP}{len(done)} marked reviewed", "ok")
        elif action == "comment":
            done = svc.bulk_comment(_actor(), ids, request.form.get("body", ""))
            get_session().commit()
            parties = ", ".join(sorted({d.party or "?" for d in done}))
            for d in done:
                after_commit("意见投递", "placing the comment file", partial(deliver_comments, runtime(), d.id))
            flash(f"已向 {len(done)} 个报送的报送方（{parties}）发送意见{SEP}"
                  f"comment sent to the senders of {len(done)} deliveries ({parties})", "ok")
        else:
            raise BadRequest(f"unknown bulk action {action!r}", f"未知的批量操作 {action!r}", code="invalid_arguments")
    except ExchangeError as exc:
        get_session().rollback()
        if exc.status >= 500:
            raise
        flash(f"{exc.message_zh}{SEP}{exc.message}", "warn")
    return redirect(url_for("admin.review_queue", **back.args()), code=303)


@bp.get("/review/<id:delivery_id>")
@login_required(ADMIN)
def review_delivery(delivery_id: int) -> str:
    """One delivery: receipt, summary by code, findings (paged), the raw lines around a finding, versions."""
    svc = _service()
    d = svc.delivery(delivery_id)
    code = request.args.get("code", "").strip()
    page = int_arg(request.args, "page", 1)  # a number out of range is a 422, never a database overflow
    findings, total, pages = svc.findings(d, code, page)
    return render_template(
        "admin/review_delivery.html", d=d, svc=svc, sender=svc.sender(d), review=svc.review(d), state=svc.state(d),
        summary=svc.summary(d), findings=findings, findings_total=total, pages=pages,
        page=min(page, pages), code=code, context=svc.context(d, int_arg(request.args, "finding")),
        versions=svc.versions(d), comments=svc.comments(d), receipt=svc.receipt_text(d),
        superseded_by=svc.superseded_by(d), late_only=svc.late_only(d), late_acceptances=svc.late_acceptances,
        approval=hub_approval(delivery_id), state_names=STATE_NAMES, min_justification=MIN_JUSTIFICATION,
        admin_section="review")


def hub_approval(delivery_id: int) -> dict[str, Any] | None:
    """What the province hub that forwarded a delivery said of it: who approved which network, when (else None)."""
    session = get_session()
    approval = session.get(DeliveryApproval, delivery_id)
    if approval is None:
        return None
    codes = [str(n.get("latn_id") or "") for n in approval.networks]
    names = {a.code: a.name_zh for a in session.scalars(select(Area).where(Area.code.in_(codes)))} if codes else {}
    return {"hub": approval.hub, "forwarded_by": approval.forwarded_by, "recorded_at": approval.recorded_at,
            "networks": [{"latn_id": code, "name": names.get(code, ""), "by": n.get("by") or "",
                          "at": parse_iso(n.get("at")), "versions": n.get("versions") or []}
                         for code, n in zip(codes, approval.networks)]}


def _done(delivery_id: int) -> Response:
    return redirect(url_for("admin.review_delivery", delivery_id=delivery_id) + "#actions")


@bp.post("/review/<id:delivery_id>/reviewed")
@login_required(ADMIN)
def mark_reviewed(delivery_id: int) -> Response:
    """Mark the delivery reviewed."""
    svc = _service()
    svc.mark_reviewed(_actor(), svc.delivery(delivery_id))
    get_session().commit()
    return _done(delivery_id)


@bp.post("/review/<id:delivery_id>/comment")
@login_required(ADMIN)
def comment(delivery_id: int) -> Response:
    """Comment to the province: recorded, then placed in its outbox beside the feedback files."""
    svc = _service()
    svc.comment(_actor(), svc.delivery(delivery_id), request.form.get("body", ""))
    get_session().commit()
    deliver_comments(runtime(), delivery_id)
    return _done(delivery_id)


@bp.post("/review/<id:delivery_id>/resend")
@login_required(ADMIN)
def request_resend(delivery_id: int) -> Response:
    """Ask the province for a resend (it reaches the province as a comment)."""
    svc = _service()
    svc.request_resend(_actor(), svc.delivery(delivery_id), request.form.get("note", ""))
    get_session().commit()
    deliver_comments(runtime(), delivery_id)
    return _done(delivery_id)


@bp.post("/review/<id:delivery_id>/accept-warnings")
@login_required(ADMIN)
def accept_warnings(delivery_id: int) -> Response:
    """Accept the warnings of an accepted-with-warnings delivery, with a justification; never errors."""
    svc = _service()
    svc.accept_warnings(_actor(), svc.delivery(delivery_id), request.form.get("justification", ""))
    get_session().commit()
    return _done(delivery_id)


def page_args(**changes: Any) -> dict[str, Any]:
    """The current query arguments with ``changes`` (for pager and filter links)."""
    args = {k: v for k, v in request.args.items()}
    args.update({k: v for k, v in changes.items()})
    return {k: v for k, v in args.items() if v not in (None, "")}


bp.add_app_template_global(page_args, "admin_page_args")


def beijing_time(moment: dt.datetime | None) -> str:
    """A timestamp as Beijing wall-clock time, to the second (what provinces and HQ read)."""
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


bp.add_app_template_filter(beijing_time)
