"""The analyst dashboard: a cycle's group totals, charts, completeness and downloads."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import (
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from ..accounts.models import ADMIN, ANALYST
from ..clock import parse_iso
from ..db import get_session
from ..runtime.flask import runtime
from ..submissions.models import DeliveryApproval
from .auth import login_required
from .files import attachment
from .blueprints import page_blueprint
from .services import BAR_ORDERS, STATES, DashboardService, area_label

bp = page_blueprint("analyst", __name__, url_prefix="/analyst")


@bp.app_template_global()
def has_endpoint(name: str) -> bool:
    """Whether the app has a view called ``name``: links to pages that may not be installed render only if they are."""
    return name in current_app.view_functions


# The analyst's pages beyond the dashboard: endpoint, its arguments besides the cycle, link id, Chinese, English.
# They are built by separate modules; a link shows only once its page exists.
ANALYST_PAGES: tuple[tuple[str, dict[str, str], str, str, str], ...] = (
    ("analyst.compare", {"by": "product"}, "nav-compare", "同比环比", "Comparisons"),
    ("analyst.pivot", {}, "nav-pivot", "透视表", "Pivot"),
    ("analyst.timeliness", {}, "nav-timeliness", "迟报缺报", "Late and missing"),
    ("analyst.coverage", {}, "nav-coverage", "500强覆盖", "Top-500 coverage"),
)


@bp.app_template_global()
def analyst_links(cycle: str | None = None) -> list[dict[str, str]]:
    """The links to the analyst's pages that exist, for ``cycle`` (default: the page's cycle, else the newest with data).

    Each is ``{"id", "href", "zh", "en", "current"}``; a page whose URL cannot be built is left out
    rather than breaking the page that links to it.
    """
    present = [p for p in ANALYST_PAGES if p[0] in current_app.view_functions]
    if not present:
        return []
    if cycle is None:
        cycle = (request.view_args or {}).get("cycle")
    if cycle is None:
        if "analyst_default_cycle" not in g:
            g.analyst_default_cycle = _service().default_cycle()
        cycle = g.analyst_default_cycle
    links = []
    for endpoint, args, link_id, zh, en in present:
        values: dict[str, Any] = {**args, **({"cycle": cycle} if cycle else {})}
        try:
            href = url_for(endpoint, **values)
        except BuildError:
            continue
        links.append({"id": link_id, "href": href, "zh": zh, "en": en,
                      "current": "yes" if request.endpoint == endpoint else ""})
    return links


# A province's name as a column header or label in the page's language (湖北 / Hubei).
bp.add_app_template_global(area_label, "area_label")


def _service() -> DashboardService:
    return DashboardService(get_session(), runtime().spec)


@bp.get("/")
@login_required(ANALYST, ADMIN)
def index() -> Any:
    """The picked cycle (``?cycle=``, the picker's form) or the newest cycle with data."""
    picked = request.args.get("cycle", "").strip() or _service().default_cycle()
    if picked is None:
        return render_template("analyst/empty.html")
    sort = request.args.get("sort", "")
    return redirect(url_for("analyst.dashboard", cycle=picked, sort=sort if sort in BAR_ORDERS and sort != "value"
                            else None))


@bp.get("/<cycle>")
@login_required(ANALYST, ADMIN)
def dashboard(cycle: str) -> str:
    """One cycle's dashboard; ``?sort=value|code|name`` orders the bars (by value, largest first, by default)."""
    d = _service().dashboard(cycle, request.args.get("sort", "value"))
    return render_template("analyst/dashboard.html", d=d, states=STATES, orders=BAR_ORDERS,
                           approvals=province_approvals(get_session(), d.rollup.completeness))


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
                networks[str(n.get("latn_id") or "")] = (str(n.get("by") or ""), parse_iso(n.get("at")))
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
    return attachment(export.data, export.mimetype, export.filename)


@bp.get("/<path:rest>")
@login_required(ANALYST, ADMIN)
def not_found(rest: str) -> Response:
    """Any other path under /analyst/: the HTML 404 page rather than the API's JSON one."""
    abort(404)


from . import analyst_compare, analyst_late  # noqa: E402,F401  (they register their routes on bp)
