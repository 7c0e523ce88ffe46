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
    """Review deliveries: comment to the sender, request a resend, mark reviewed."""


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
