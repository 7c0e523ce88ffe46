"""The analyst dashboard: a cycle's group totals, charts, completeness and downloads."""
from __future__ import annotations

import io
from typing import Any

from flask import abort, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response

from ..accounts.models import ADMIN, ANALYST
from ..db import get_session
from ..runtime.flask import runtime
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
    return render_template("analyst/dashboard.html", d=_service().dashboard(cycle), states=STATES)


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
