"""Analyst pages: every breakdown compared with the previous period and the same period last year, and the pivot."""
from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from werkzeug.wrappers import Response

from ..accounts.models import ADMIN, ANALYST
from ..consolidation.comparisons import (
    BREAKDOWNS,
    FIGURE_TITLES,
    MEASURE_TITLES,
    PERIOD_TITLES,
    SORTABLE,
    ComparisonService,
    comparison_csv,
    comparison_xlsx,
    sort_rows,
)
from ..consolidation.pivot import (
    DIMENSIONS,
    MAX_CYCLES,
    MEASURES,
    PivotService,
    check,
    default_range,
    pivot_csv,
    pivot_xlsx,
)
from ..cycles.services import CycleService
from ..db import get_session
from ..errors import BadRequest
from ..media_types import CSV_TYPE, XLSX_TYPE
from ..runtime.flask import runtime
from .analyst import bp  # noqa: F401  (routes are registered on the analyst blueprint)
from .auth import login_required
from .files import attachment
from .i18n import current_language


def _comparison(cycle: str, by: str) -> Any:
    """The comparison of one calendar cycle's breakdown; 404 for an unknown breakdown or cycle."""
    if by not in BREAKDOWNS:
        abort(404)
    session = get_session()
    CycleService(session, runtime().spec).get(cycle)  # NotFound (an HTML 404) when not in the calendar
    return ComparisonService(session, runtime().spec).compare(cycle, by)


@bp.get("/<cycle>/compare")
@login_required(ANALYST, ADMIN)
def compare(cycle: str) -> str:
    """One breakdown of a cycle beside the previous period and the same period last year, sortable."""
    by = request.args.get("by", "province")
    if by not in BREAKDOWNS:
        raise BadRequest(f"unknown breakdown {by!r}", f"未知的分组 {by}", code="bad_breakdown")
    spec = BREAKDOWNS[by]
    measure = request.args.get("measure") or next(iter(spec.measures))
    if measure not in spec.measures:
        raise BadRequest(f"{by} has no measure {measure!r}", f"该分组没有指标 {measure}", code="bad_measure")
    sort = request.args.get("sort", "code")
    direction = request.args.get("dir", "asc")
    if sort not in SORTABLE or direction not in ("asc", "desc"):
        raise BadRequest("sort by one of the table's columns, asc or desc", "排序列或方向无效", code="bad_sort")
    comparison = _comparison(cycle, by)
    rows = sort_rows(comparison.rows, measure, sort, direction == "desc", current_language())
    return render_template("analyst/compare.html", c=comparison, rows=rows, by=by, measure=measure,
                           sort=sort, direction=direction, breakdowns=BREAKDOWNS, measure_titles=MEASURE_TITLES,
                           figure_titles=FIGURE_TITLES, period_titles=PERIOD_TITLES)


@bp.get("/<cycle>/compare/<by>.csv")
@login_required(ANALYST, ADMIN)
def compare_csv(cycle: str, by: str) -> Response:
    """The comparison of every measure of a breakdown as CSV (UTF-8 with BOM)."""
    return attachment(comparison_csv(_comparison(cycle, by)), CSV_TYPE, f"kam-compare-{cycle}-{by}.csv")


@bp.get("/<cycle>/compare/<by>.xlsx")
@login_required(ANALYST, ADMIN)
def compare_xlsx(cycle: str, by: str) -> Response:
    """The comparison of every measure of a breakdown as an XLSX workbook."""
    return attachment(comparison_xlsx(_comparison(cycle, by)), XLSX_TYPE, f"kam-compare-{cycle}-{by}.xlsx")


def _pivot_args() -> dict[str, str]:
    """The pivot's query string with its defaults: province × cycle revenue over the six cycles ending with
    ``cycle`` (the page linked from a cycle's pages) or the newest cycle with data."""
    service = PivotService(get_session(), runtime().spec)
    args = {"rows": request.args.get("rows", "province"), "cols": request.args.get("cols", "cycle"),
            "measure": request.args.get("measure", "income_amt"), "from": request.args.get("from", "").strip(),
            "to": request.args.get("to", "").strip() or request.args.get("cycle", "").strip()}
    if not args["to"]:
        args["to"] = service.newest_cycle() or ""
    if not args["from"] and args["to"]:
        try:
            args["from"] = default_range(args["to"])[0]
        except ValueError:
            args["from"] = args["to"]
    return args


@bp.get("/pivot")
@login_required(ANALYST, ADMIN)
def pivot() -> tuple[str, int]:
    """The pivot page: the form (GET) and, when the choice is valid, the table; a clear message when it is not."""
    args = _pivot_args()
    result, error = None, None
    if args["to"]:
        try:
            result = PivotService(get_session(), runtime().spec).pivot(args["rows"], args["cols"], args["measure"],
                                                                       args["from"], args["to"])
        except BadRequest as exc:
            error = exc
    measure = MEASURES.get(args["measure"])
    return render_template("analyst/pivot.html", p=result, error=error, args=args, dimensions=DIMENSIONS,
                           measures=MEASURES, valid=measure.dimensions if measure else tuple(DIMENSIONS),
                           max_cycles=MAX_CYCLES), (400 if error else 200)


def _pivot_file() -> Any:
    """The pivot the query string asks for; BadRequest (an HTML 400) when it cannot be built."""
    args = _pivot_args()
    if not args["to"]:
        raise BadRequest("there is no data to pivot yet", "尚无可透视的数据", code="no_data")
    check(args["rows"], args["cols"], args["measure"])
    return PivotService(get_session(), runtime().spec).pivot(args["rows"], args["cols"], args["measure"], args["from"],
                                                             args["to"])


@bp.get("/pivot.csv")
@login_required(ANALYST, ADMIN)
def pivot_csv_download() -> Response:
    """The pivot as CSV (UTF-8 with BOM), same query string as the page."""
    p = _pivot_file()
    return attachment(pivot_csv(p), CSV_TYPE, f"kam-pivot-{p.measure}-{p.rows_dim}-{p.cols_dim}.csv")


@bp.get("/pivot.xlsx")
@login_required(ANALYST, ADMIN)
def pivot_xlsx_download() -> Response:
    """The pivot as an XLSX workbook, same query string as the page."""
    p = _pivot_file()
    return attachment(pivot_xlsx(p), XLSX_TYPE, f"kam-pivot-{p.measure}-{p.rows_dim}-{p.cols_dim}.xlsx")

