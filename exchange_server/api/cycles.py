"""The reporting calendar over HTTP."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from ..clock import beijing_stamp, iso
from ..cycles.models import ReportingCycle
from ..cycles.services import CycleService
from ..db import get_session
from ..runtime.flask import runtime
from .auth import authenticate
from .schemas import CycleQueryArgsSchema, CycleSchema, ErrorSchema

blp = Blueprint("cycles", __name__, url_prefix="/api/v1/cycles",
                description="Reporting cycles and deadlines / 报告周期与截止时间")


def cycle_dict(c: ReportingCycle) -> dict[str, Any]:
    """A cycle as the API returns it."""
    return {"id": c.id, "freq": c.freq, "name": c.name, "begin_date": c.begin_date, "end_date": c.end_date,
            "deadline": iso(c.deadline), "deadline_beijing": beijing_stamp(c.deadline), "units_due": c.units,
            "state": c.state, "remark": c.remark}


@blp.route("")
class CycleCollection(MethodView):
    """The calendar."""

    @blp.doc(security=[{"bearer": []}])
    @blp.arguments(CycleQueryArgsSchema, location="query")
    @blp.response(200, CycleSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Every cycle (or those in one state), newest first."""
        authenticate()
        return [cycle_dict(c) for c in CycleService(get_session(), runtime().spec).calendar(args.get("state"))]


@blp.route("/<cycle_id>")
class CycleItem(MethodView):
    """One cycle."""

    @blp.doc(security=[{"bearer": []}])
    @blp.response(200, CycleSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Not in the calendar.")
    def get(self, cycle_id: str) -> Any:
        """One cycle with its state, deadline and units due."""
        authenticate()
        return cycle_dict(CycleService(get_session(), runtime().spec).get(cycle_id))
