"""``exchange-server review ...``: HQ's review actions from the command line (the admin pages' twins)."""
from __future__ import annotations

from typing import Any, Callable

import click

from ..runtime import Runtime


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    return runtime


@click.group("review")
def review_group() -> None:
    """Review deliveries: list the open queue, comment to the sender, request a resend, mark reviewed."""


AS = click.option("--as", "actor", default="cli", show_default=True, help="The reviewer's name, for the record.")


def _act(delivery_id: int, action: Callable[[Any, Any], Any], done: str) -> None:
    """One review action on a delivery, committed, then the comment files placed in the sender's outbox."""
    from .services import ReviewService, deliver_comments

    rt = _runtime()
    with rt.db.session() as s:
        svc = ReviewService(s, rt.archive)
        action(svc, svc.delivery(delivery_id))
    click.echo(f"{done}: {deliver_comments(rt, delivery_id) or '-'}")


@review_group.command("comment")
@click.argument("delivery_id", type=int)
@click.argument("body")
@AS
def review_comment(delivery_id: int, body: str, actor: str) -> None:
    """Send the delivery's sender a comment (its outbox, API and agent show it)."""
    _act(delivery_id, lambda svc, d: svc.comment(actor, d, body), "comment sent")


@review_group.command("resend")
@click.argument("delivery_id", type=int)
@click.option("--note", default="", help="What to correct.")
@AS
def review_resend(delivery_id: int, note: str, actor: str) -> None:
    """Ask the sender to send the cycle again (a rejected or accepted-with-warnings delivery)."""
    _act(delivery_id, lambda svc, d: svc.request_resend(actor, d, note), "resend requested")


@review_group.command("reviewed")
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@AS
def review_reviewed(delivery_ids: tuple[int, ...], actor: str) -> None:
    """Mark one or more deliveries reviewed (all or none; each audited)."""
    from .services import ReviewService

    rt = _runtime()
    with rt.db.session() as s:
        done = ReviewService(s, rt.archive).bulk_mark_reviewed(actor, list(delivery_ids))
    click.echo(f"{len(done)} marked reviewed")


@review_group.command("open")
@click.option("--cycle", default="", help="Only this cycle (YYYYMM).")
@click.option("--province", default="", help="Only this province (with its local networks).")
def review_open(cycle: str, province: str) -> None:
    """List the open queue: what still needs HQ (superseded and, unless configured, late-only items left out)."""
    from .services import QueueFilter, ReviewService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ReviewService(s, rt.archive, rt.spec, late_acceptances=rt.settings.review_late_acceptances)
        page = 1
        while True:
            q = svc.queue(QueueFilter(cycle=cycle, province=province, page=page))
            for row in q.rows:
                d = row.delivery
                click.echo(f"{d.id}\t{d.check_name or '-'}\t{d.party or '-'}\t{d.status}\t{' '.join(row.codes)}")
            if page >= q.pages:
                break
            page += 1
        click.echo(f"{q.total} open", err=True)
