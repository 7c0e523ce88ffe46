"""Analyst pages: who is late or missing (by name, with contacts and a 12-cycle history), and top-500 coverage by name."""
from __future__ import annotations

from flask import render_template, request
from werkzeug.wrappers import Response

from ..accounts.models import ADMIN, ANALYST
from ..consolidation.coverage import (
    KIND_TITLES,
    KINDS,
    CoverageService,
    coverage_csv,
    coverage_xlsx,
)
from ..consolidation.timeliness import TIMELINESS_STATES, TimelinessService, late_csv
from ..cycles.services import CycleService
from ..db import get_session
from ..errors import BadRequest
from ..media_types import CSV_TYPE, XLSX_TYPE
from ..runtime.flask import runtime
from .analyst import bp  # noqa: F401  (routes are registered on the analyst blueprint)
from .auth import login_required
from .files import attachment


@bp.get("/<cycle>/late")
@login_required(ANALYST, ADMIN)
def timeliness(cycle: str) -> str:
    """The provinces (and networks) late or missing for a cycle, with days late, contacts and a 12-cycle history."""
    session = get_session()
    found = CycleService(session, runtime().spec).get(cycle)  # NotFound: the HTML 404 page
    report = TimelinessService(session, runtime().spec).report(found)
    return render_template("analyst/late.html", r=report, states=TIMELINESS_STATES)


@bp.get("/<cycle>/late.csv")
@login_required(ANALYST, ADMIN)
def timeliness_csv(cycle: str) -> Response:
    """The late and missing list of a cycle as CSV (UTF-8 with BOM)."""
    session = get_session()
    found = CycleService(session, runtime().spec).get(cycle)
    report = TimelinessService(session, runtime().spec).report(found)
    return attachment(late_csv(report), CSV_TYPE, f"kam-late-{cycle}.csv")


def _filters() -> tuple[str | None, str | None, int]:
    """``?province=&kind=&page=`` (empty means all; page 1 by default); BadRequest for a page that is not a number."""
    province = request.args.get("province", "").strip() or None
    kind = request.args.get("kind", "").strip() or None
    text = request.args.get("page", "").strip() or "1"
    if not text.isdigit() or len(text) > 6:
        raise BadRequest(f"page {text!r} is not a number", f"页码 {text!r} 不是数字", code="bad_page",
                         errors={"page": text})
    return province, kind, int(text)


@bp.get("/<cycle>/coverage")
@login_required(ANALYST, ADMIN)
def coverage(cycle: str) -> str:
    """The top-500 customers not covered for a cycle, by name and kind, filterable and paginated."""
    session = get_session()
    CycleService(session, runtime().spec).get(cycle)
    province, kind, page = _filters()
    listing = CoverageService(session, runtime().spec).listing(cycle, province, kind, page)
    return render_template("analyst/coverage.html", c=listing, kinds=KINDS, kind_titles=KIND_TITLES)


@bp.get("/<cycle>/coverage.<ext>")
@login_required(ANALYST, ADMIN)
def coverage_download(cycle: str, ext: str) -> Response:
    """Every customer not covered (the page's filters apply, not its pages) as CSV or XLSX."""
    if ext not in ("csv", "xlsx"):
        raise BadRequest(f"no {ext!r} download; csv or xlsx", f"没有 {ext!r} 格式的下载，可选 csv 或 xlsx",
                         code="bad_format", errors={"format": ext})
    session = get_session()
    CycleService(session, runtime().spec).get(cycle)
    province, kind, _page = _filters()
    listing = CoverageService(session, runtime().spec).listing(cycle, province, kind, per_page=None)
    suffix = "".join(f"-{v}" for v in (province, kind) if v)
    if ext == "csv":
        return attachment(coverage_csv(listing), CSV_TYPE, f"kam-coverage-{cycle}{suffix}.csv")
    return attachment(coverage_xlsx(listing), XLSX_TYPE, f"kam-coverage-{cycle}{suffix}.xlsx")
