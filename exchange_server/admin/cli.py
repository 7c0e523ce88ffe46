"""``exchange-server reminders ...``: send the reminders due before deadlines, list them, set e-mail addresses."""
from __future__ import annotations

import json

import click

from ..runtime import Runtime


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    return runtime


@click.group("reminders")
def reminders_group() -> None:
    """Reminders to parties that have not delivered a cycle before its deadline (docs/admin.md)."""


@reminders_group.command("send")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send and record nothing.")
@click.option("--as", "actor", default="cli", show_default=True, help="Who sends, for the record.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of lines.")
def reminders_send(dry_run: bool, actor: str, as_json: bool) -> None:
    """Send every reminder due now (each party x cycle x lead once): outbox, and e-mail when SMTP is set.

    Safe to run as often as you like (cron, e.g. hourly); ``serve`` also runs it every
    ``reminder_check_seconds``.
    """
    from ..clock import iso
    from .reminders import send_reminders

    rt = _runtime()
    sent = send_reminders(rt, actor, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "reminders": [
            {"party": r.party, "cycle": r.cycle, "lead_days": r.lead, "deadline": iso(r.deadline),
             "missing_units": r.missing, "emails": r.emails, "outbox_file": r.outbox_file, "emailed": r.emailed,
             "email_error": r.email_error, "skipped": r.skipped} for r in sent]}, ensure_ascii=False, indent=2))
        return
    if not sent:
        click.echo("no reminders due / 当前没有需要发送的提醒")
    for r in sent:
        click.echo(("would send: " if dry_run else "skipped (sent meanwhile): " if r.skipped else "sent: ") + r.line())


@reminders_group.command("list")
def reminders_list() -> None:
    """Upcoming deadlines: every party with units missing in an open cycle, and the reminders it got."""
    from .reminders import ReminderService, beijing_text

    rt = _runtime()
    with rt.db.session() as s:
        dues = ReminderService(s, rt.spec, rt.settings.reminder_leads).outstanding()
        for d in dues:
            sent = ",".join(f"{r.lead_days}d" for r in d.sent) or "-"
            click.echo(f"{d.cycle:<7} due {beijing_text(d.deadline)} Beijing  {d.party:<5} "
                       f"missing {','.join(m.code for m in d.missing)}  due now: {d.lead if d.pending else '-'}  "
                       f"sent: {sent}  e-mail: {','.join(d.emails) or '-'}")
    if not dues:
        click.echo("every party has delivered every open cycle / 所有报送方均已完成")


@reminders_group.command("email")
@click.argument("account_name")
@click.argument("address", default="")
@click.option("--as", "actor", default="cli", show_default=True, help="Who changes it, for the record.")
def reminders_email(account_name: str, address: str, actor: str) -> None:
    """Set the e-mail address an account's reminders go to (no ADDRESS: clear it)."""
    from .reminders import set_email

    rt = _runtime()
    with rt.db.session() as s:
        account = set_email(s, actor, account_name, address)
        click.echo(f"{account.name}: {account.email or '(no e-mail)'}")
