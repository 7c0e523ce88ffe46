"""The transmission monitor and the reminders page (``/admin/monitor``, ``/admin/reminders``), admin accounts only.

Both are read from services in :mod:`exchange_server.admin`: the monitor never changes
anything; the reminders page's one action, "send now", sends what is due exactly as the
``exchange-server reminders send`` command does (each party x cycle x lead once), and
"e-mail" sets the address a province account's reminders go to.
"""
from __future__ import annotations

from typing import Any

from flask import render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from ...accounts.models import ADMIN, PROVINCE, Account
from ...admin.monitor import (
    CHANNELS,
    STAGES,
    human_duration,
    human_size,
    monitor_service,
    parse_day,
)
from ...admin.reminders import ReminderService, send_reminders, set_email
from ...clock import utcnow
from ...db import get_session
from ...errors import ExchangeError
from ...runtime.flask import runtime
from ..auth import login_required
from . import bp
from .actions import actor, done, refused


@bp.get("/monitor")
@login_required(ADMIN)
def monitor() -> str:
    """One day's arrivals on every channel: receiving, waiting, validating, judged; sizes and times to verdict."""
    day = parse_day(request.args.get("day"))
    m = monitor_service(get_session(), runtime()).day(day)
    return render_template("admin/monitor.html", m=m, channels=list(CHANNELS), stages=list(STAGES))


def _reminders(error: ExchangeError | None = None, form: dict[str, str] | None = None) -> str:
    rt = runtime()
    session = get_session()
    service = ReminderService(session, rt.spec, rt.settings.reminder_leads)
    now = utcnow()
    dues = service.outstanding(now)
    accounts = list(session.scalars(select(Account).where(Account.role == PROVINCE)
                                    .order_by(Account.party, Account.name)))
    return render_template("admin/reminders.html", dues=dues, now=now, history=service.history(),
                           leads=service.leads, smtp=rt.settings.smtp_host, accounts=accounts,
                           check_seconds=rt.settings.reminder_check_seconds, error=error, form=form or {})


@bp.get("/reminders")
@login_required(ADMIN)
def reminders() -> str:
    """Upcoming deadlines, who would be reminded, what was sent and when."""
    return _reminders()


@bp.post("/reminders/send")
@login_required(ADMIN)
def reminders_send() -> Response:
    """Send the reminders due now (those not sent yet); recorded per party x cycle x lead."""
    name = actor()
    # Sending opens its own transactions; ours must not hold SQLite's write lock meanwhile (nor touch the
    # expired account again before it is done).
    get_session().rollback()
    sent = [r for r in send_reminders(runtime(), name) if not r.skipped]
    return done(f"已发送 {len(sent)} 条提醒", f"{len(sent)} reminder(s) sent", "admin.reminders")


@bp.post("/reminders/email")
@login_required(ADMIN)
def reminders_email() -> Any:
    """Set (or clear) the e-mail address of a province account."""
    f = request.form
    try:
        account = set_email(get_session(), actor(), f.get("account", "").strip(), f.get("email", ""))
    except ExchangeError as exc:
        return refused(exc, _reminders, form=dict(f))
    return done(f"{account.name} 的邮箱已更新", f"e-mail of {account.name} updated", "admin.reminders")


bp.add_app_template_filter(human_size)
bp.add_app_template_filter(human_duration)
