"""The reporting calendar over HTTP."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from ..accounts.models import Account
from ..admin.services import CycleExceptionService
from ..clock import beijing_stamp, iso
from ..cycles.models import ReportingCycle
from ..cycles.services import CycleService
from ..db import get_session
from ..org.services import OrgService
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


def _exceptions(account: Account) -> dict[str, dt.datetime]:
    """The valid exceptions of the account's province, per cycle (HQ accounts have none)."""
    session = get_session()
    province = OrgService(session).province_of(account.party) if account.party else None
    if province is None:
        return {}
    return {cycle: until for (prov, cycle), until in CycleExceptionService(session).in_force().items()
            if prov == province}


def _with_exception(c: ReportingCycle, exceptions: dict[str, dt.datetime]) -> dict[str, Any]:
    out = cycle_dict(c)
    until = exceptions.get(c.id)
    out["exception_until"] = iso(until) if until else None
    out["exception_until_beijing"] = beijing_stamp(until) if until else None
    return out


@blp.route("")
class CycleCollection(MethodView):
    """The calendar."""

    @blp.doc(security=[{"bearer": []}])
    @blp.arguments(CycleQueryArgsSchema, location="query")
    @blp.response(200, CycleSchema(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Every cycle (or those in one state), newest first."""
        exceptions = _exceptions(authenticate())
        return [_with_exception(c, exceptions)
                for c in CycleService(get_session(), runtime().spec).calendar(args.get("state"))]


@blp.route("/<cycle_id>")
class CycleItem(MethodView):
    """One cycle."""

    @blp.doc(security=[{"bearer": []}])
    @blp.response(200, CycleSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Not in the calendar.")
    def get(self, cycle_id: str) -> Any:
        """One cycle with its state, deadline and units due."""
        exceptions = _exceptions(authenticate())
        return _with_exception(CycleService(get_session(), runtime().spec).get(cycle_id), exceptions)
