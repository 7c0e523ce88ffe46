"""``exchange-server list ...``: load, diff, publish (or close a draft) and follow the top-500 list."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..runtime import Runtime

if TYPE_CHECKING:
    from .models import ListVersion
    from .services import ListService


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    return runtime


@click.group("list")
def list_group() -> None:
    """The national top-500 list: load a version, diff, publish, see who fetched it."""


YES = click.option("--yes", is_flag=True,
                   help="Publish even when accepted data of open cycles would then fail the list checks "
                        "(the impact is shown first and kept in the audit log).")


def _confirmed(svc: "ListService", v: "ListVersion", yes: bool) -> bool:
    """Show the draft's impact on the open cycles; True when publishing may go ahead."""
    from .impact import ListImpactService

    impact = ListImpactService(svc.session, svc.spec).impact(v)
    click.echo(impact.summary())
    if not impact.failing or yes:
        return True
    if sys.stdin.isatty():
        return click.confirm(f"publish {v.version} anyway?", default=False)
    click.echo("not published: run again with --yes to publish knowingly", err=True)
    return False


@list_group.command("load")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--version", default=None, help="List version, e.g. 2026V02 (spec files carry it; CSV/XLSX may need it).")
@click.option("--publish", "publish_now", is_flag=True, help="Publish it at once (after showing its impact).")
@YES
def list_load(source: Path, version: str | None, publish_now: bool, yes: bool) -> None:
    """Load a list version: spec files (a D_00_<version>_00.chk or its folder), CSV or XLSX."""
    from .services import ListService

    rt = _runtime()
    published = False
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "cli")
        v = svc.load(source, version)
        entries = v.added + v.changed + v.removed + v.unchanged  # counted, not loaded: the rows can be many
        click.echo(f"loaded list {v.version}: {entries} entries (+{v.added} new, ~{v.changed} changed, "
                   f"-{v.removed} removed, {v.unchanged} unchanged)")
        if publish_now and _confirmed(svc, v, yes):
            slices = svc.publish(v, confirm_impact=True)
            click.echo(f"published {v.version} to {len(slices)} province(s)")
            published = True
    if published:
        _to_outboxes(rt, v.version)
    elif publish_now:
        raise SystemExit(1)


@list_group.command("diff")
@click.argument("version")
def list_diff(version: str) -> None:
    """Show what a version changes against the version it is based on."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec)
        d = svc.diff(svc.get(version))
        for kind, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
            for e in d.get(kind, []):
                extra = ""
                if e.get("changes"):
                    extra = "  " + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in e["changes"].items())
                click.echo(f"{sign} {e['national_cust_id']} {e['lead_prov_id']} {e['cust_name']}{extra}")
        click.echo(f"{len(d.get('added', []))} added, {len(d.get('changed', []))} changed, "
                   f"{len(d.get('removed', []))} removed")


@list_group.command("publish")
@click.argument("version")
@YES
def list_publish(version: str, yes: bool) -> None:
    """Publish a loaded version: its impact on open cycles first, then each province gets its slice."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "cli")
        v = svc.get(version)
        if not _confirmed(svc, v, yes):
            raise SystemExit(1)
        slices = svc.publish(v, confirm_impact=True)
        click.echo(f"published {version} to {len(slices)} province(s)")
    _to_outboxes(rt, version)


@list_group.command("close")
@click.argument("version")
@click.option("--yes", is_flag=True, help="Close without asking (the draft's counts are shown first).")
def list_close(version: str, yes: bool) -> None:
    """Close a draft without publishing it: never in force, never sent; its name stays taken (audited)."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "cli")
        v = svc.get(version)
        click.echo(f"{v.version} ({v.state}): {v.added} added, {v.changed} changed, {v.removed} removed, "
                   f"{v.unchanged} unchanged; closing it reaches no province")
        if not yes and not (sys.stdin.isatty() and click.confirm(f"close {v.version}?", default=False)):
            click.echo("not closed: run again with --yes to close it", err=True)
            raise SystemExit(1)
        svc.close(v)
        click.echo(f"closed {version}")


@list_group.command("impact")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="The whole impact as JSON.")
def list_impact(version: str, as_json: bool) -> None:
    """What publishing a draft would do to the accepted data of open cycles (nothing is changed)."""
    import json

    from .impact import ListImpactService
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "cli")
        impact = ListImpactService(s, svc.spec).impact(svc.get(version))
        click.echo(json.dumps(impact.as_dict(), ensure_ascii=False, indent=2) if as_json else impact.summary())


def _to_outboxes(rt: Runtime, version: str) -> None:
    """After the publication is committed: each slice into its province's outbox (and push queue)."""
    from ..sftp.outbox import place_list_slices

    n = place_list_slices(rt, version)
    click.echo(f"placed {n} slice(s) in the provinces' SFTP outboxes")


@list_group.command("show")
def list_show() -> None:
    """List versions and their state."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        for v in ListService(s, rt.archive, rt.spec).versions():
            click.echo(f"{v.version:<9} {v.state:<10} +{v.added} ~{v.changed} -{v.removed} ={v.unchanged}  "
                       f"loaded {v.loaded_at:%Y-%m-%d %H:%M} by {v.loaded_by}"
                       + (f", published {v.published_at:%Y-%m-%d %H:%M}" if v.published_at else ""))


@list_group.command("downloads")
@click.argument("version")
def list_downloads(version: str) -> None:
    """Who fetched a version's slices, and when (the acknowledgements)."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec)
        for d in svc.downloads(svc.get(version)):
            click.echo(f"{d.at:%Y-%m-%d %H:%M:%S}  account {d.account_id}  {d.channel:<6} {d.file_name}")
