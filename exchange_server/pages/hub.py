"""The province hub's pages (``/hub/``, a hub's admins and analysts): approve networks, forward to HQ, read HQ's answers.

Registered only when the server runs as a province hub (``settings.is_hub``, docs/tiers.md).
Thin views over the hub's services (``exchange_server/hub/``):

- the approval board of a cycle (``ApprovalService.board``): each local network × unit due,
  what counts there (check file, version, rows, the network's own delivery or the
  province's central one) and its state; per network who decided when, with what comment,
  and how many deliveries arrived since its last approval; approve or return (with a
  comment, which reaches the prefecture's deliveries after the commit);
- the province's internal deadline beside HQ's (``sync.set_internal_deadline``);
- forwarding all networks, or an explicit set of approved ones (``ForwardService.build``;
  the forwarder is woken after the commit); a refusal shows why, and a forward HQ would
  reject names the prefecture delivery, file and line of each finding;
- the forwards with HQ's verdicts, and one forward's files, sources, HQ's comments and
  findings (mapped to the prefecture's own file and line) and its reconciliation.

Admins act, analysts read; province and local-network accounts are refused (403), as on
every page of HQ's side. Every POST carries the session's CSRF token (checked by the
blueprint); a refused action shows the page again with the reason and the error's status.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import Decimal
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from templates import TEMPLATE_DIR

from ..accounts.models import ADMIN, ANALYST
from ..clock import as_utc, parse_iso, utcnow
from ..cycles.models import OPEN, ReportingCycle
from ..cycles.services import CycleService
from ..db import get_session
from ..errors import BadRequest, ExchangeError, Unprocessable
from ..hub.approval import CHANGED, EMPTY, PENDING, ApprovalService
from ..hub.forward import ForwardService, record_refused
from ..hub.forwarder import WAKE, upstream_resend_floor
from ..hub.models import (
    APPROVED,
    BUILT,
    JUDGED,
    RETURNED,
    SENT,
    Forward,
    ForwardSource,
    HqFinding,
    HubCycle,
)
from ..hub.reconcile import Reconciliation, reconcile
from ..hub.sync import set_internal_deadline
from ..review.services import STATE_NAMES as REVIEW_STATE_NAMES
from ..review.services import deliver_comments
from ..runtime.flask import runtime
from ..sftp.outbox import place_calendar
from ..submissions.models import Delivery, UnitVersion
from .admin import forms
from .admin.actions import actor, after_commit, done, refused
from .auth import current_account, login_required
from .blueprints import page_blueprint

log = logging.getLogger(__name__)

# A page blueprint (CSRF on every POST, HTML error pages, the security headers), with its own stylesheet.
bp = page_blueprint("hub", __name__, url_prefix="/hub", static_folder=str(TEMPLATE_DIR / "hub" / "static"),
                    static_url_path="/static")

#: The hub navigation: (section, endpoint, Chinese, English).
NAV: list[tuple[str, str, str, str]] = [
    ("board", "hub.index", "审批", "Approval"),
    ("forwards", "hub.forwards", "转报总部", "Forwards to HQ"),
]
#: A network's (and a cell's) approval state: (Chinese, English).
STATE_NAMES: dict[str, tuple[str, str]] = {
    EMPTY: ("无数据", "no data"), PENDING: ("待审批", "pending"), APPROVED: ("已审批", "approved"),
    CHANGED: ("审批后有更正", "changed since approval"), RETURNED: ("已退回", "returned"),
}
#: A forward's life at the hub: (Chinese, English).
FORWARD_STATES: dict[str, tuple[str, str]] = {
    BUILT: ("待发送", "queued to send"), SENT: ("已发送，待总部结论", "sent, awaiting HQ's verdict"),
    JUDGED: ("总部已出结论", "judged by HQ"),
}
#: A cycle's state at HQ: (Chinese, English).
CYCLE_STATES: dict[str, tuple[str, str]] = {
    "planned": ("计划中", "planned"), "open": ("开放", "open"), "closed": ("已关闭", "closed"),
}
MAX_FINDINGS_SHOWN = 500  # of HQ's findings on one forward; the total is always shown
_CYCLE_ARG = re.compile(r"[0-9A-Za-z]{4,7}")


# -- shared -------------------------------------------------------------------------------------


def hub_link() -> str | None:
    """The header's link to the hub pages: at a hub, for its admins and analysts; otherwise None."""
    if "hub" not in current_app.blueprints:
        return None
    account = current_account()
    if account is None or account.role not in (ADMIN, ANALYST):
        return None
    return url_for("hub.index")


def _approvals() -> ApprovalService:
    rt = runtime()
    return ApprovalService(get_session(), rt.settings.hub_party, rt.archive)


def _forwards() -> ForwardService:
    return ForwardService(runtime(), get_session())


def _common(section: str) -> dict[str, Any]:
    """What every hub page's layout needs: the navigation, the province, whether the reader may act."""
    account = current_account()
    return {"hub_nav": [(s, url_for(e), zh, en) for s, e, zh, en in NAV], "hub_section": section,
            "province": runtime().settings.hub_party, "can_act": account is not None and account.role == ADMIN,
            "state_names": STATE_NAMES, "forward_states": FORWARD_STATES, "review_states": REVIEW_STATE_NAMES,
            "cycle_states": CYCLE_STATES}


def _cycle_arg(value: str) -> str:
    """A cycle id from a query argument (400 for anything that cannot be one)."""
    value = value.strip()
    if value and not _CYCLE_ARG.fullmatch(value):
        raise BadRequest(f"{value!r} is not a cycle id (202610, 2026Q3, 2026H2, 2026)",
                         f"{value!r} 不是周期标识（如 202610、2026Q3、2026H2、2026）", code="invalid_arguments",
                         errors={"cycle": value})
    return value


def _chosen() -> list[str]:
    """The networks ticked on the board (in the board's order, each once)."""
    return list(dict.fromkeys(n.strip() for n in request.form.getlist("network") if n.strip()))


def _yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else Decimal(fen).scaleb(-2)


def _delivery_names(ids: set[int]) -> dict[int, str]:
    """Check-file names of deliveries (for the links to them)."""
    if not ids:
        return {}
    return {i: name or f"#{i}" for i, name in get_session().execute(
        select(Delivery.id, Delivery.check_name).where(Delivery.id.in_(sorted(ids))))}


# -- the approval board -------------------------------------------------------------------------


@bp.get("/")
@login_required(ADMIN, ANALYST)
def index() -> Any:
    """The picked cycle (``?cycle=``, the picker's form), else the newest open cycle, else the newest one."""
    picked = _cycle_arg(request.args.get("cycle", ""))
    if not picked:
        calendar = CycleService(get_session(), runtime().spec).calendar()
        newest_open = next((c for c in calendar if c.state == OPEN), None)
        chosen = newest_open or (calendar[0] if calendar else None)
        if chosen is None:
            return render_template("hub/empty.html", **_common("board"))
        picked = chosen.id
    return redirect(url_for("hub.board", cycle_id=picked))


def _board(cycle_id: str, error: ExchangeError | None = None, form: dict[str, Any] | None = None) -> str:
    session = get_session()
    rt = runtime()
    board = _approvals().board(cycle_id)  # NotFound for a cycle not in the calendar: a 404 page
    cycle = session.get(ReportingCycle, cycle_id)
    assert cycle is not None  # board() found it
    spec = rt.spec
    units = [(u, (spec.unit(u).name_zh, spec.unit(u).name_en) if spec.has_unit(u) else (u, u)) for u in cycle.units]
    counts = {state: sum(1 for n in board if n.state == state) for state in STATE_NAMES}
    hub_cycle = session.get(HubCycle, cycle_id)
    now = utcnow()
    hq_deadline = as_utc(hub_cycle.hq_deadline) if hub_cycle is not None else None
    return render_template(
        "hub/board.html", cycle=cycle, calendar=CycleService(session, spec).calendar(), board=board, units=units,
        counts=counts, hub_cycle=hub_cycle, hq_deadline=hq_deadline,
        hq_deadline_passed=hq_deadline is not None and hq_deadline < now,
        forwards=_forwards().forwards(cycle_id, limit=10),
        local=forms.beijing_local, error=error, form=form or {}, **_common("board"))


@bp.get("/cycles/<cycle_id>")
@login_required(ADMIN, ANALYST)
def board(cycle_id: str) -> str:
    """One cycle's approval board: every local network × unit due, its state, and the actions."""
    return _board(cycle_id)


@bp.post("/cycles/<cycle_id>/approve")
@login_required(ADMIN)
def approve(cycle_id: str) -> Any:
    """Approve what counts now for the ticked networks (already-approved ones stay as they are)."""
    chosen, comment = _chosen(), request.form.get("comment", "")
    try:
        made = _approvals().approve(cycle_id, chosen, actor(), comment)
    except ExchangeError as exc:
        return refused(exc, _board, cycle_id=cycle_id, form={"networks": chosen, "comment": comment})
    if not made:
        return done(f"所选本地网均已审批，未作更改：{'、'.join(chosen)}",
                    f"every chosen network was approved already; nothing changed: {', '.join(chosen)}",
                    "hub.board", cycle_id=cycle_id)
    nets = [a.latn_id for a in made]
    return done(f"已审批 {cycle_id} 期本地网：{'、'.join(nets)}",
                f"approved for {cycle_id}: {', '.join(nets)}", "hub.board", cycle_id=cycle_id)


@bp.post("/cycles/<cycle_id>/return")
@login_required(ADMIN)
def return_(cycle_id: str) -> Any:
    """Return the ticked networks' data to their prefectures; the comment reaches each delivery that counts."""
    chosen, comment = _chosen(), request.form.get("comment", "")
    service = _approvals()
    try:
        made = service.return_(cycle_id, chosen, actor(), comment)
    except ExchangeError as exc:
        return refused(exc, _board, cycle_id=cycle_id, form={"networks": chosen, "comment": comment})
    commented = sorted(service.commented)
    nets = [a.latn_id for a in made]
    response = done(f"已退回 {cycle_id} 期本地网：{'、'.join(nets)}（意见已发给 {len(commented)} 个报送）",
                    f"returned for {cycle_id}: {', '.join(nets)} (the comment went to {len(commented)} "
                    "delivery(ies))", "hub.board", cycle_id=cycle_id)
    rt = runtime()

    def place() -> None:
        for delivery_id in commented:
            deliver_comments(rt, delivery_id)

    # After the commit, as HQ's own comments are: the comment files into the prefectures' outboxes.
    after_commit("退回意见放入地市SFTP发件箱", "placing the return comments in the prefectures' SFTP outboxes", place)
    return response


@bp.post("/cycles/<cycle_id>/deadline")
@login_required(ADMIN)
def deadline(cycle_id: str) -> Any:
    """Set (or clear) the province's internal deadline for its prefectures; never after HQ's."""
    f = request.form
    clear = bool(f.get("clear"))
    try:
        when = None if clear else forms.beijing_datetime(f.get("deadline", ""), "deadline 内部截止时间")
        hub_cycle = set_internal_deadline(get_session(), cycle_id, when, actor())
    except ExchangeError as exc:
        return refused(exc, _board, cycle_id=cycle_id, form={"deadline": f.get("deadline", "")})
    if hub_cycle.internal_deadline is None:
        response = done(f"{cycle_id} 期已取消内部截止时间：地市按总部截止时间报送",
                        f"internal deadline for {cycle_id} cleared: prefectures deliver by HQ's deadline",
                        "hub.board", cycle_id=cycle_id)
    else:
        stamp = forms.beijing_local(hub_cycle.internal_deadline).replace("T", " ")
        response = done(f"{cycle_id} 期内部截止时间设为 {stamp}（北京时间）",
                        f"internal deadline for {cycle_id} set to {stamp} Beijing time", "hub.board",
                        cycle_id=cycle_id)
    rt = runtime()
    # After the commit: the prefectures' SFTP outboxes get the calendar with the new deadline.
    after_commit("日历放入地市SFTP发件箱", "placing the calendar in the prefectures' SFTP outboxes",
                 lambda: place_calendar(rt))
    return response


@bp.post("/cycles/<cycle_id>/forward")
@login_required(ADMIN)
def forward(cycle_id: str) -> Any:
    """Assemble, check and queue the forward: every network (``mode=all``) or the ticked approved ones."""
    every = request.form.get("mode") == "all"
    chosen = None if every else _chosen()
    form = {"networks": chosen or []}
    rt = runtime()
    try:
        if chosen is not None and not chosen:
            raise BadRequest("tick the approved networks to forward", "请勾选要转报的已审批本地网",
                             code="no_networks")
        floor = upstream_resend_floor(rt, cycle_id)  # HQ's highest resend for us; None when HQ does not answer
        made = _forwards().build(cycle_id, actor(), chosen, upstream_max=floor)
        checks = [f.check_name for f in made]
    except ExchangeError as exc:
        if isinstance(exc, Unprocessable):  # the build is rolled back, the refusal goes on record
            session = get_session()
            session.rollback()
            record_refused(session, cycle_id, actor(), exc)
            session.commit()
        return refused(exc, _board, cycle_id=cycle_id, form=form)
    response = done(f"已生成转报 {'、'.join(checks)}，正在发送总部",
                    f"forward {', '.join(checks)} built and queued for HQ", "hub.board", cycle_id=cycle_id)
    WAKE.set()  # the forwarder sends it now rather than at its next poll
    return response


@bp.get("/cycles/<cycle_id>/networks/<latn_id>")
@login_required(ADMIN, ANALYST)
def network(cycle_id: str, latn_id: str) -> str:
    """One network's state for a cycle and every decision on it, newest first."""
    service = _approvals()
    n = service.network(cycle_id, latn_id)  # NotFound for a network not of this province
    cycle = get_session().get(ReportingCycle, cycle_id)
    history = service.history(cycle_id, latn_id)
    version_ids = {v.version_id for a in history for v in a.versions}
    versions: dict[int, tuple[int, int, str]] = {}
    if version_ids:
        versions = {vid: (num, did, name or f"#{did}") for vid, num, did, name in get_session().execute(
            select(UnitVersion.id, UnitVersion.number, Delivery.id, Delivery.check_name)
            .join(Delivery, Delivery.id == UnitVersion.delivery_id).where(UnitVersion.id.in_(sorted(version_ids))))}
    return render_template("hub/network.html", cycle=cycle, n=n, history=history, versions=versions,
                           forwards=_containing(n.deliveries), **_common("board"))


def _containing(delivery_ids: list[int]) -> list[Forward]:
    """The forwards carrying any of the deliveries, newest first."""
    seen: dict[int, Forward] = {}
    service = _forwards()
    for delivery_id in delivery_ids:
        for f in service.containing(delivery_id):
            seen.setdefault(f.id, f)
    return sorted(seen.values(), key=lambda f: (as_utc(f.created_at), f.id), reverse=True)


# -- forwards -----------------------------------------------------------------------------------


@bp.get("/forwards")
@login_required(ADMIN, ANALYST)
def forwards() -> str:
    """Every forward (of one cycle, with ``?cycle=``), newest first, with where it stands and HQ's verdict."""
    cycle_id = _cycle_arg(request.args.get("cycle", ""))
    return render_template("hub/forwards.html", items=_forwards().forwards(cycle_id or None), cycle_id=cycle_id,
                           calendar=CycleService(get_session(), runtime().spec).calendar(), **_common("forwards"))


@bp.get("/forwards/<id:forward_id>")
@login_required(ADMIN, ANALYST)
def forward_detail(forward_id: int) -> str:
    """One forward: files, the prefecture versions it carries, HQ's verdict, comments, findings, the reconciliation."""
    session = get_session()
    rt = runtime()
    fwd = _forwards().get(forward_id)  # NotFound: a 404 page
    sources = [{"unit": s.unit, "latn_id": s.latn_id, "rows": s.rows, "version": number, "delivery_id": did,
                "check": name or f"#{did}", "party": party}
               for s, number, did, name, party in session.execute(
                   select(ForwardSource, UnitVersion.number, Delivery.id, Delivery.check_name, Delivery.party)
                   .join(UnitVersion, UnitVersion.id == ForwardSource.version_id)
                   .join(Delivery, Delivery.id == UnitVersion.delivery_id)
                   .where(ForwardSource.forward_id == fwd.id).order_by(ForwardSource.latn_id, ForwardSource.unit))]
    findings_total = session.scalar(select(func.count()).select_from(HqFinding)
                                    .where(HqFinding.forward_id == fwd.id)) or 0
    findings = list(session.scalars(select(HqFinding).where(HqFinding.forward_id == fwd.id)
                                    .order_by(HqFinding.id).limit(MAX_FINDINGS_SHOWN)))
    names = _delivery_names({f.source_delivery_id for f in findings if f.source_delivery_id is not None})
    reconciliation: Reconciliation | None = None
    try:
        reconciliation = reconcile(session, rt.archive, rt.spec, fwd)
    except (OSError, ExchangeError):
        # The archive could not be read back: say so on the page; the rest of it stands.
        log.exception("hub: reconciling forward %s failed", fwd.id)
    lines = totals = None
    if reconciliation is not None:
        lines = [{"latn_id": ln.latn_id, "unit": ln.unit, "approved_rows": ln.approved_rows,
                  "forwarded_rows": ln.forwarded_rows, "approved": _yuan(ln.approved_fen),
                  "forwarded": _yuan(ln.forwarded_fen), "equal": ln.equal} for ln in reconciliation.lines]
        totals = [{"unit": unit, "approved_rows": t["approved_rows"], "forwarded_rows": t["forwarded_rows"],
                   "approved": _yuan(t["approved_fen"]), "forwarded": _yuan(t["forwarded_fen"]),
                   "equal": t["approved_rows"] == t["forwarded_rows"] and t["approved_fen"] == t["forwarded_fen"]}
                  for unit, t in sorted(reconciliation.totals().items())]
    approvals = [{"latn_id": a.get("latn_id"), "by": a.get("by"), "at": parse_iso(a.get("at"))}
                 for a in fwd.approvals or []]
    return render_template("hub/forward.html", f=fwd, sources=sources, findings=findings, approvals=approvals,
                           findings_total=findings_total, names=names, reconciliation=reconciliation, lines=lines,
                           totals=totals, **_common("forwards"))


@bp.route("/<path:rest>", methods=["GET", "POST"])
@login_required(ADMIN, ANALYST)
def not_found(rest: str) -> Response:
    """Any other path under /hub/: the HTML 404 page rather than the API's JSON one."""
    abort(404)


def passed(moment: dt.datetime | None) -> bool:
    """Whether a moment is in the past (the "passed" mark beside a deadline)."""
    return moment is not None and as_utc(moment) < utcnow()


bp.add_app_template_global(passed, "hub_passed")
