"""The admin's transmission monitor and the province's reminders over HTTP (``/api/v1/admin/monitor``, ``/api/v1/reminders``)."""
from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from ..accounts.models import ADMIN, PROVINCE
from ..admin.monitor import monitor_service, parse_day
from ..admin.reminders import ReminderService
from ..clock import iso, utcnow
from ..db import get_session
from ..runtime.flask import runtime
from .auth import authenticate
from .schemas import ErrorSchema

blp = Blueprint("admin_monitor", __name__, url_prefix="/api/v1",
                description="The transmission monitor (admins) and reminders before deadlines (provinces) / "
                            "传输监控（管理员）与催报提醒（省公司）")
JSON = {"type": "object"}


class MonitorArgsSchema(Schema):
    """Which day the monitor shows."""

    day = fields.Date(metadata={"description": "YYYY-MM-DD, Beijing time; default today"})


@blp.route("/admin/monitor")
@blp.doc(security=[{"bearer": []}])
@blp.arguments(MonitorArgsSchema, location="query")
@blp.response(200, JSON, content_type="application/json",
              description="One day's deliveries per channel and stage, files still arriving, totals and times "
                          "from receipt to verdict.")
@blp.alt_response(401, schema=ErrorSchema, description="No valid token.")
@blp.alt_response(403, schema=ErrorSchema, description="Not an admin token (code wrong_role).")
def admin_monitor(args: dict[str, Any]) -> Response:
    """What arrived on a day (Beijing time) on every channel and where each delivery stands."""
    authenticate(ADMIN)
    day = args.get("day") or parse_day(None)
    return jsonify(monitor_service(get_session(), runtime()).day(day).as_dict())


@blp.route("/reminders")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, JSON, content_type="application/json",
              description="The calling party's reminders in force: cycles whose deadline is within the largest lead "
                          "and units still without an accepted delivery.")
@blp.alt_response(401, schema=ErrorSchema, description="No valid token.")
@blp.alt_response(403, schema=ErrorSchema, description="Not a province token (code wrong_role).")
def reminders() -> Any:
    """The caller's reminders: cycle, deadline (exceptions included), missing units, the text, what was sent."""
    account = authenticate(PROVINCE)
    rt = runtime()
    now = utcnow()
    dues = ReminderService(get_session(), rt.spec, rt.settings.reminder_leads).for_party(account.party or "", now) \
        if account.party else []
    return jsonify({"party": account.party, "generated": iso(now), "reminders": [d.as_dict(now) for d in dues]})
