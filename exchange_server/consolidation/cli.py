"""``exchange-server report``: a cycle's roll-up written to files, for scripted exports."""
from __future__ import annotations

from pathlib import Path

import click

from ..runtime import Runtime
from .exports import CSV_BREAKDOWNS, rollup_csv, rollup_json, rollup_xlsx, rollup_xml
from .rollups import Rollup

FORMATS = ("xlsx", "csv", "json", "xml")


def _runtime() -> Runtime:
    from ..cli import _runtime as rt

    runtime: Runtime = rt(click.get_current_context())
    return runtime


def _load(rt: Runtime, cycle: str) -> Rollup:
    """The roll-up of a cycle in the calendar (an unknown cycle is the usual cycle_not_found error)."""
    from ..cycles.services import CycleService
    from .rollups import RollupService

    with rt.db.session() as s:
        CycleService(s, rt.spec).get(cycle)
        return RollupService(s, rt.spec).rollup(cycle)


def write_report(rollup: Rollup, fmt: str, out: Path, namespace: str, breakdown: str | None = None) -> list[Path]:
    """Write the roll-up in ``fmt`` to ``out`` (a folder of CSV files for CSV without a breakdown); the paths."""
    if fmt == "csv" and breakdown is None:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for b in CSV_BREAKDOWNS:
            path = out / f"kam-rollup-{rollup.cycle}-{b}.csv"
            path.write_bytes(rollup_csv(rollup, b))
            written.append(path)
        return written
    if fmt == "csv":
        data = rollup_csv(rollup, breakdown or "by_province")
    elif fmt == "xlsx":
        data = rollup_xlsx(rollup)
    elif fmt == "json":
        data = rollup_json(rollup)
    else:
        data = rollup_xml(rollup, namespace)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return [out]


@click.command("report")
@click.option("--cycle", required=True, help="Reporting cycle, e.g. 202610.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="xlsx", show_default=True,
              help="xlsx: formatted workbook; csv: UTF-8 with BOM; json; xml in the standard's namespace.")
@click.option("--breakdown", type=click.Choice(CSV_BREAKDOWNS), default=None,
              help="CSV only: the one breakdown to write (default: every breakdown, one file each, into a folder).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output file (folder for CSV without --breakdown). Default: kam-rollup-<cycle>.<ext> here.")
def report(cycle: str, fmt: str, breakdown: str | None, out: Path | None) -> None:
    """Export a cycle's roll-up: totals, breakdowns, completeness and lineage."""
    if breakdown is not None and fmt != "csv":
        raise click.UsageError("--breakdown applies to --format csv only (the other formats carry everything)")
    if out is None:
        if fmt == "csv":
            out = Path(f"kam-rollup-{cycle}-{breakdown}.csv" if breakdown else f"kam-rollup-{cycle}")
        else:
            out = Path(f"kam-rollup-{cycle}.{fmt}")
    rt = _runtime()
    rollup = _load(rt, cycle)
    for path in write_report(rollup, fmt, out, rt.spec.namespace, breakdown):
        click.echo(f"wrote {path}")
    comp = rollup.completeness
    click.echo(f"cycle {cycle}: revenue {rollup.totals.get('income_amt')} yuan from {len(rollup.lineage)} unit "
               f"version(s); {comp.get('accepted')}/{comp.get('expected')} units accepted "
               f"({comp.get('reporting_rate_pct')}%)")
