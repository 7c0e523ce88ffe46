"""``exchange-server list ...``: load, diff, publish and follow the top-500 list."""
from __future__ import annotations

from pathlib import Path

import click

from ..runtime import Runtime


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    return runtime


@click.group("list")
def list_group() -> None:
    """The national top-500 list: load a version, diff, publish, see who fetched it."""


@list_group.command("load")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--version", default=None, help="List version, e.g. 2026V02 (spec files carry it; CSV/XLSX may need it).")
@click.option("--publish", "publish_now", is_flag=True, help="Publish it at once.")
def list_load(source: Path, version: str | None, publish_now: bool) -> None:
    """Load a list version: spec files (a D_00_<version>_00.chk or its folder), CSV or XLSX."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "cli")
        v = svc.load(source, version)
        entries = v.added + v.changed + v.removed + v.unchanged  # counted, not loaded: the rows can be many
        click.echo(f"loaded list {v.version}: {entries} entries (+{v.added} new, ~{v.changed} changed, "
                   f"-{v.removed} removed, {v.unchanged} unchanged)")
        if publish_now:
            slices = svc.publish(v)
            click.echo(f"published {v.version} to {len(slices)} province(s)")
    if publish_now:
        _to_outboxes(rt, v.version)


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
def list_publish(version: str) -> None:
    """Publish a loaded version: each province gets its slice."""
    from .services import ListService

    rt = _runtime()
    with rt.db.session() as s:
        svc = ListService(s, rt.archive, rt.spec, "cli")
        slices = svc.publish(svc.get(version))
        click.echo(f"published {version} to {len(slices)} province(s)")
    _to_outboxes(rt, version)


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
