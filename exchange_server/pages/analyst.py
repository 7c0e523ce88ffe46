"""The analyst dashboard: a cycle's group totals, charts, completeness and downloads."""
from __future__ import annotations

import datetime as dt
import io
from typing import Any

from flask import abort, redirect, render_template, request, send_file, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ..accounts.models import ADMIN, ANALYST
from ..clock import as_utc
from ..db import get_session
from ..runtime.flask import runtime
from ..submissions.models import DeliveryApproval
from .auth import login_required
from .blueprints import page_blueprint
from .services import STATES, DashboardService

bp = page_blueprint("analyst", __name__, url_prefix="/analyst")


def _service() -> DashboardService:
    return DashboardService(get_session(), runtime().spec)


@bp.get("/")
@login_required(ANALYST, ADMIN)
def index() -> Any:
    """The picked cycle (``?cycle=``, the picker's form) or the newest cycle with data."""
    picked = request.args.get("cycle", "").strip() or _service().default_cycle()
    if picked is None:
        return render_template("analyst/empty.html")
    return redirect(url_for("analyst.dashboard", cycle=picked))


@bp.get("/<cycle>")
@login_required(ANALYST, ADMIN)
def dashboard(cycle: str) -> str:
    """One cycle's dashboard."""
    d = _service().dashboard(cycle)
    return render_template("analyst/dashboard.html", d=d, states=STATES,
                           approvals=province_approvals(get_session(), d.rollup.completeness))


def _manifest_time(text: Any) -> dt.datetime | None:
    """A time from a hub's approval manifest (ISO 8601); None when absent or unreadable (it is the hub's text)."""
    try:
        return as_utc(dt.datetime.fromisoformat(str(text))) if text else None
    except ValueError:
        return None


def province_approvals(session: Session, completeness: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per province: whether what HQ counts for it was approved at its province hub, when and by whom.

    Read from the approval manifests (``DeliveryApproval``) of the deliveries the completeness
    matrix counts; provinces none of whose counted deliveries came through a hub are left out.
    """
    counted: dict[str, set[int]] = {}
    for row in completeness.get("matrix", []):
        for cell in row["units"].values():
            for source in cell.get("sources") or []:
                counted.setdefault(row["prov_id"], set()).add(int(source["delivery_id"]))
    ids = sorted(set().union(*counted.values())) if counted else []
    manifests = {a.delivery_id: a for a in session.scalars(
        select(DeliveryApproval).where(DeliveryApproval.delivery_id.in_(ids)))} if ids else {}
    out: dict[str, dict[str, Any]] = {}
    for prov, deliveries in sorted(counted.items()):
        approved = [manifests[d] for d in sorted(deliveries) if d in manifests]
        if not approved:
            continue
        networks: dict[str, tuple[str, dt.datetime | None]] = {}
        for a in approved:
            for n in a.networks:
                networks[str(n.get("latn_id") or "")] = (str(n.get("by") or ""), _manifest_time(n.get("at")))
        times = [at for _by, at in networks.values() if at is not None]
        out[prov] = {"hubs": sorted({a.hub for a in approved}), "deliveries": len(approved),
                     "counted": len(deliveries), "networks": len(networks),
                     "by": sorted({by for by, _at in networks.values() if by}),
                     "first": min(times) if times else None, "last": max(times) if times else None}
    return out


@bp.get("/<cycle>/download/<name>")
@login_required(ANALYST, ADMIN)
def download(cycle: str, name: str) -> Response:
    """The roll-up files of a cycle (the same bytes as the API's /reports routes), for signed-in analysts."""
    export = _service().export(cycle, name)
    if export is None:
        abort(404)
    return send_file(io.BytesIO(export.data), mimetype=export.mimetype, as_attachment=True,
                     download_name=export.filename, max_age=0)


@bp.get("/<path:rest>")
@login_required(ANALYST, ADMIN)
def not_found(rest: str) -> Response:
    """Any other path under /analyst/: the HTML 404 page rather than the API's JSON one."""
    abort(404)
