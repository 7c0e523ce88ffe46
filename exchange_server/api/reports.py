"""HQ's roll-ups over HTTP: the JSON picture of a cycle and its downloads (XLSX, CSV, JSON, XML).

Stable URLs for analysts and their scripts; provinces get 403 (they see only their own
deliveries, never the national figures).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from flask import Response
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from ..consolidation.exports import (
    CSV_BREAKDOWNS,
    RENDERED,
    json_bytes,
    rollup_csv,
    rollup_json,
    rollup_xlsx,
    rollup_xml,
)
from ..consolidation.rollups import Rollup, RollupService
from ..cycles.services import CycleService
from ..db import get_session
from ..errors import NotFound
from ..media_types import XLSX_TYPE
from ..org.models import PROVINCE, Area
from ..runtime.flask import runtime
from .auth import authenticate
from .schemas import ErrorSchema

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports",
                description="HQ roll-ups of a cycle and their downloads / 集团汇总报表及下载")

ROLES = ("analyst", "admin")
#: The bodies of these answers, for the OpenAPI document (they are built, not dumped by a schema).
JSON = {"type": "object"}
FILE = {"type": "string", "format": "binary"}


def _rendered(cycle_id: str, kind: str, render: Callable[[Rollup], bytes]) -> bytes:
    """The caller must be an analyst or admin and the cycle in the calendar; then the download's bytes.

    Kept per roll-up key in this process: a repeated download is neither computed nor rendered again.
    """
    authenticate(*ROLES)
    session: Session = get_session()
    CycleService(session, runtime().spec).get(cycle_id)  # 404 cycle_not_found before any work
    service = RollupService(session, runtime().spec)
    key = service.key(cycle_id)

    def make() -> bytes:
        roll = service.compute(cycle_id)
        roll.key = key
        return render(roll)

    return RENDERED.get(str(session.get_bind().engine.url), cycle_id, key, kind, make)


def _download(data: bytes, mimetype: str, filename: str) -> Response:
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": f"attachment; filename={filename}"})


def _errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """The error responses every report route shares, for the OpenAPI document."""
    f = blp.alt_response(401, schema=ErrorSchema, description="No valid token.")(f)
    f = blp.alt_response(403, schema=ErrorSchema, description="Not an analyst or admin token (code wrong_role).")(f)
    f = blp.alt_response(404, schema=ErrorSchema, description="The cycle is not in the calendar (cycle_not_found), "
                                                              "or no such breakdown or province.")(f)
    return blp.doc(security=[{"bearer": []}])(f)


@blp.route("/<cycle_id>")
@blp.response(200, JSON, content_type="application/json",
              description="The cycle's roll-up: totals, every breakdown, completeness and lineage. "
                          "Money is exact yuan as strings (\"12345.67\").")
@_errors
def report(cycle_id: str) -> Response:
    """The roll-up of a cycle as JSON."""
    return Response(_rendered(cycle_id, "json", rollup_json), mimetype="application/json")


@blp.route("/<cycle_id>/rollup.json")
@blp.response(200, JSON, content_type="application/json",
              description="The roll-up as a JSON download (kam-rollup-<cycle>.json).")
@_errors
def report_json(cycle_id: str) -> Response:
    """The roll-up as a JSON file."""
    return _download(_rendered(cycle_id, "json", rollup_json), "application/json", f"kam-rollup-{cycle_id}.json")


@blp.route("/<cycle_id>/rollup.xlsx")
@blp.response(200, FILE, content_type=XLSX_TYPE,
              description="The roll-up as a formatted workbook (kam-rollup-<cycle>.xlsx): totals, one sheet per "
                          "breakdown with Chinese and English headers, completeness and lineage sheets.")
@_errors
def report_xlsx(cycle_id: str) -> Response:
    """The roll-up as an XLSX workbook."""
    return _download(_rendered(cycle_id, "xlsx", rollup_xlsx), XLSX_TYPE, f"kam-rollup-{cycle_id}.xlsx")


@blp.route("/<cycle_id>/rollup.xml")
@blp.response(200, FILE, content_type="application/xml",
              description="The roll-up as XML in the standard's namespace (kam-rollup-<cycle>.xml).")
@_errors
def report_xml(cycle_id: str) -> Response:
    """The roll-up as XML."""
    data = _rendered(cycle_id, "xml", lambda roll: rollup_xml(roll, runtime().spec.namespace))
    return _download(data, "application/xml", f"kam-rollup-{cycle_id}.xml")


@blp.route("/<cycle_id>/<breakdown>.csv")
@blp.response(200, FILE, content_type="text/csv",
              description="One breakdown as CSV, UTF-8 with BOM and CRLF, bilingual header "
                          f"(kam-rollup-<cycle>-<breakdown>.csv). Breakdowns: {', '.join(CSV_BREAKDOWNS)}.")
@_errors
def report_csv(cycle_id: str, breakdown: str) -> Response:
    """One breakdown of the roll-up as CSV."""
    if breakdown not in CSV_BREAKDOWNS:
        authenticate(*ROLES)  # an unknown name must not tell a province anything either
        raise NotFound(f"no breakdown {breakdown}; one of {', '.join(CSV_BREAKDOWNS)}",
                       f"没有汇总维度 {breakdown}；可选：{', '.join(CSV_BREAKDOWNS)}", code="breakdown_not_found")
    data = _rendered(cycle_id, f"csv:{breakdown}", lambda roll: rollup_csv(roll, breakdown))
    # Plain text/csv: the response adds the one "charset=utf-8" (naming it here too would say it twice).
    return _download(data, "text/csv", f"kam-rollup-{cycle_id}-{breakdown}.csv")


@blp.route("/<cycle_id>/trace/<breakdown>/<key>")
@blp.response(200, JSON, content_type="application/json",
              description="The fact rows behind one cell of a breakdown (e.g. by_product/2001), with the "
                          "delivery, files and version each row came from.")
@_errors
def report_trace_cell(cycle_id: str, breakdown: str, key: str) -> Response:
    """The rows behind any cell of a breakdown."""
    from ..consolidation.rollups import TRACEABLE, trace_cell

    authenticate(*ROLES)
    session = get_session()
    CycleService(session, runtime().spec).get(cycle_id)
    if breakdown not in TRACEABLE:
        raise NotFound(f"cells of {breakdown} cannot be traced; one of {', '.join(TRACEABLE)}",
                       f"{breakdown} 的单元格不能追溯；可选：{', '.join(TRACEABLE)}", code="breakdown_not_found")
    return Response(json_bytes(trace_cell(session, cycle_id, breakdown, key)), mimetype="application/json")


@blp.route("/<cycle_id>/trace/<prov_id>")
@blp.response(200, JSON, content_type="application/json",
              description="The current summary rows (32001) behind a province's figures, per local network, "
                          "with the delivery and version each came from.")
@_errors
def report_trace(cycle_id: str, prov_id: str) -> Response:
    """The rows behind one province's figures."""
    authenticate(*ROLES)
    session = get_session()
    CycleService(session, runtime().spec).get(cycle_id)
    area = session.get(Area, prov_id)
    if area is None or area.level != PROVINCE:
        raise NotFound(f"no province {prov_id}", f"没有省份 {prov_id}", code="province_not_found")
    rows = RollupService(session, runtime().spec).trace(cycle_id, prov_id)
    body = {"cycle": cycle_id, "prov_id": prov_id, "name_zh": area.name_zh, "name_en": area.name_en,
            "income_amt": sum((r["income_amt"] for r in rows), Decimal("0.00")),
            "cust_cnt": sum(int(r["cust_cnt"] or 0) for r in rows), "rows": rows}
    return Response(json_bytes(body), mimetype="application/json")
