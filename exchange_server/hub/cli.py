"""``exchange-server hub ...``: a province hub's work from the command line (docs/tiers.md)."""
from __future__ import annotations

import json
from typing import Any

import click

from ..errors import ConfigError
from ..runtime import Runtime


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    if not runtime.settings.is_hub:
        raise ConfigError("this server is not a province hub: set hub_party and the upstream_* settings "
                          "(docs/tiers.md)", "本服务器不是省级枢纽：请设置 hub_party 及 upstream_* 配置（见 docs/tiers.md）")
    return runtime


@click.group("hub")
def hub_group() -> None:
    """A province hub: sync with HQ, approve networks, forward to HQ, follow HQ's answers."""


AS = click.option("--as", "actor", default="cli", show_default=True, help="Who decides (an account name, for the record).")


@hub_group.command("sync")
def hub_sync() -> None:
    """Fetch HQ's calendar, list versions and code lists now."""
    from .forwarder import Forwarder

    rt = _runtime()
    from .sync import HubSync

    f = Forwarder(rt)
    try:
        result = HubSync(rt, f.transport).run()
    finally:
        f.close()
    click.echo(json.dumps(result.as_dict(), ensure_ascii=False))


@hub_group.command("status")
@click.argument("cycle_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def hub_status(cycle_id: str, as_json: bool) -> None:
    """Each local network's approval state for a cycle, with what counts for it now."""
    from .approval import ApprovalService

    rt = _runtime()
    with rt.db.session() as s:
        board = ApprovalService(s, rt.settings.hub_party).board(cycle_id)
        rows: list[dict[str, Any]] = [{"network": n.latn_id, "name": n.name_zh, "state": n.state, "changes_since_approval": n.changes_since,
                 "missing": n.missing,
                 "units": {u: {"check": c.check_name, "version": c.version_number, "rows": c.rows,
                               "state": n.unit_state(u)} for u, c in sorted(n.counted.items())},
                 "decided_by": n.decision.by if n.decision else None,
                 "decided_at": n.decision.at.isoformat() if n.decision else None} for n in board]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for r in rows:
        units = " ".join(f"{u}:{v['check']}v{v['version']}" for u, v in r["units"].items()) or "-"
        by = f"  by {r['decided_by']} {r['decided_at']}" if r["decided_by"] else ""
        click.echo(f"{r['network']:<5} {r['state']:<9} changes {r['changes_since_approval']:<3} {units}{by}")


@hub_group.command("approve")
@click.argument("cycle_id")
@click.argument("networks", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every network with data that is not approved yet.")
@click.option("--comment", default="")
@AS
def hub_approve(cycle_id: str, networks: tuple[str, ...], every: bool, comment: str, actor: str) -> None:
    """Approve what counts now for the given local networks (or --all)."""
    from .approval import APPROVED, EMPTY, ApprovalService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ApprovalService(s, rt.settings.hub_party, rt.archive)
        chosen = list(networks)
        if every:
            chosen = [n.latn_id for n in svc.board(cycle_id) if n.state not in (EMPTY, APPROVED)]
        if not chosen:
            click.echo("nothing to approve")
            return
        made = svc.approve(cycle_id, chosen, actor, comment)
        click.echo(f"approved {len(made)} network(s): {', '.join(a.latn_id for a in made) or '-'}")


@hub_group.command("return")
@click.argument("cycle_id")
@click.argument("networks", nargs=-1, required=True)
@click.option("--comment", required=True, help="Why: it reaches the prefectures with their deliveries.")
@AS
def hub_return(cycle_id: str, networks: tuple[str, ...], comment: str, actor: str) -> None:
    """Return local networks' data to their prefectures with a comment."""
    from ..review.services import deliver_comments
    from .approval import ApprovalService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ApprovalService(s, rt.settings.hub_party, rt.archive)
        made = svc.return_(cycle_id, list(networks), actor, comment)
        commented = sorted(svc.commented)
    for delivery_id in commented:
        deliver_comments(rt, delivery_id)
    click.echo(f"returned {len(made)} network(s); {len(commented)} delivery comment(s) sent")


@hub_group.command("deadline")
@click.argument("cycle_id")
@click.argument("stamp", required=False)
@click.option("--clear", is_flag=True, help="Back to HQ's deadline.")
@AS
def hub_deadline(cycle_id: str, stamp: str | None, clear: bool, actor: str) -> None:
    """Set the province's internal deadline for its prefectures (YYYYMMDDHHMMSS Beijing), not after HQ's."""
    from ..cli import _deadline
    from .sync import set_internal_deadline

    from ..sftp.outbox import place_calendar

    rt = _runtime()
    if not clear and not stamp:
        raise click.UsageError("give a deadline (YYYYMMDDHHMMSS, Beijing time) or --clear")
    with rt.db.session() as s:
        hub = set_internal_deadline(s, cycle_id, None if clear else _deadline(stamp), actor)
        text = (f"cycle {cycle_id}: internal deadline "
                f"{hub.internal_deadline.isoformat() if hub.internal_deadline else '-'}, HQ's {hub.hq_deadline.isoformat()}")
    place_calendar(rt)  # the prefectures' SFTP outboxes get the calendar with the new deadline
    click.echo(text)


@hub_group.command("forward")
@click.argument("cycle_id")
@click.option("--networks", default=None, help="Forward only these approved networks (comma-separated): "
                                                "one delivery each. Default: all, which must all be approved.")
@AS
def hub_forward(cycle_id: str, networks: str | None, actor: str) -> None:
    """Assemble the approved data into the delivery for HQ, check it, and queue it to be sent."""
    from ..errors import Unprocessable
    from .forward import ForwardService, record_refused
    from .forwarder import WAKE, upstream_resend_floor

    rt = _runtime()
    chosen = [n.strip() for n in networks.split(",") if n.strip()] if networks else None
    floor = upstream_resend_floor(rt, cycle_id)
    try:
        with rt.db.session() as s:
            made = ForwardService(rt, s).build(cycle_id, actor, chosen, upstream_max=floor)
            out = [(f.id, f.check_name, f.hub_warnings, len(f.files)) for f in made]
    except Unprocessable as exc:
        with rt.db.session() as s:  # the build rolled back; the refusal goes on record
            record_refused(s, cycle_id, actor, exc)
        raise
    WAKE.set()
    for fid, check, warnings, files in out:
        click.echo(f"forward {fid}: {check} ({files - 1} data file(s), {warnings} warning(s)) queued for HQ")


@hub_group.command("forwards")
@click.option("--cycle", "cycle_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def hub_forwards(cycle_id: str | None, as_json: bool) -> None:
    """The forwards and where each stands (built, sent, judged by HQ)."""
    from ..clock import iso
    from .forward import ForwardService

    rt = _runtime()
    with rt.db.session() as s:
        rows = [{"id": f.id, "check": f.check_name, "cycle": f.cycle, "party": f.party, "state": f.state,
                 "networks": f.networks, "attempts": f.attempts, "last_error": f.last_error,
                 "hq_delivery_id": f.hq_delivery_id, "hq_status": f.hq_status, "hq_errors": f.hq_errors,
                 "hq_warnings": f.hq_warnings, "hq_review_state": f.hq_review_state, "created_at": iso(f.created_at),
                 "sent_at": iso(f.sent_at), "judged_at": iso(f.judged_at)}
                for f in ForwardService(rt, s).forwards(cycle_id)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for r in rows:
        hq = f"HQ #{r['hq_delivery_id']} {r['hq_status'] or ''}" if r["hq_delivery_id"] else ""
        err = f"  last error: {r['last_error']}" if r["last_error"] and r["state"] == "built" else ""
        click.echo(f"{r['id']:>4} {r['check']:<20} {r['state']:<7} {hq}{err}")


@hub_group.command("reconcile")
@click.argument("forward_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def hub_reconcile(forward_id: int, as_json: bool) -> None:
    """A forward's rows and money per network and unit: approved at the hub against forwarded to HQ."""
    from .forward import ForwardService
    from .reconcile import reconcile

    rt = _runtime()
    with rt.db.session() as s:
        result = reconcile(s, rt.archive, rt.spec, ForwardService(rt, s).get(forward_id))
        doc = result.as_dict()
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=1))
        return
    for line in doc["lines"]:
        click.echo(f"{line['latn_id']:<5} {line['unit']} rows {line['approved_rows']}/{line['forwarded_rows']} "
                   f"amount {line['approved_amount']}/{line['forwarded_amount']} {'=' if line['equal'] else 'DIFFERS'}")
    click.echo("all equal" if doc["equal"] else "DIFFERENCES FOUND")


@hub_group.command("run")
@click.option("--once", is_flag=True, help="One pass (sync, send, collect), then exit.")
def hub_run(once: bool) -> None:
    """Run the forwarder (``serve`` runs it too): sync, send queued forwards, bring HQ's answers down."""
    import threading

    from .forwarder import Forwarder

    rt = _runtime()
    f = Forwarder(rt)
    if once:
        try:
            click.echo(json.dumps(f.run_once(sync=True)))
        finally:
            f.close()
        return
    stop = threading.Event()
    try:
        f.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
