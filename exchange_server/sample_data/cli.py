"""``exchange-server sample-data``: write a national cycle of sample deliveries."""
from __future__ import annotations

import time
from pathlib import Path

import click

from schemas.conventions import Cycle


def _provinces(value: str) -> list[str] | None:
    if value.strip().lower() == "all":
        return None
    return [p.strip() for p in value.split(",") if p.strip()]


@click.command("sample-data")
@click.option("--cycle", "cycle_id", required=True, help="Reporting cycle: 202610, 2026Q3, 2026H2 or 2026.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into: 00/ for HQ's files, <province>/ per province.")
@click.option("--provinces", default="all", show_default=True,
              help="'all' or GB/T 2260 codes separated by commas, e.g. 42,44.")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="Multiplies customers and counts (the list holds 500 x scale customers).")
@click.option("--format", "fmt", type=click.Choice(["mixed", "txt", "xml"]), default="mixed", show_default=True,
              help="Data file format; mixed varies format, encoding and delimiter by province.")
@click.option("--seed", type=int, default=2002, show_default=True, help="Same seed, same data.")
@click.option("--list-version", default=None, help="Top-500 list version, e.g. 2026V01 (default: the cycle's year V01).")
@click.option("--by-network", "by_network", default=None, metavar="PROVINCE",
              help="Write this province's local networks' own deliveries (as prefectures send them to a hub) "
                   "instead of one delivery per province.")
def sample_data(cycle_id: str, out_dir: Path, provinces: str, scale: int, fmt: str, seed: int,
                list_version: str | None, by_network: str | None) -> None:
    """Write realistic sample deliveries (data files and check files) for one cycle."""
    from schemas.spec import load_spec

    from .generator import generate

    try:
        Cycle.parse(cycle_id)
    except ValueError:
        raise click.BadParameter(f"{cycle_id!r} is not a cycle id (e.g. 202610, 2026Q3, 2026H2, 2026)",
                                 param_hint="--cycle") from None
    if list_version is not None and not (len(list_version) == 7 and list_version[:4].isdigit()
                                         and list_version[4] == "V" and list_version[5:].isdigit()):
        raise click.BadParameter(f"{list_version!r} is not a list version (e.g. 2026V01)", param_hint="--list-version")
    started = time.perf_counter()
    try:
        if by_network:
            from .generator import generate_networks

            result = generate_networks(load_spec(), cycle_id, out_dir, by_network, scale=scale, fmt=fmt, seed=seed,
                                       list_version=list_version)
        else:
            result = generate(load_spec(), cycle_id, out_dir, provinces=_provinces(provinces), scale=scale, fmt=fmt,
                              seed=seed, list_version=list_version)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--by-network" if by_network else "--provinces") from None
    seconds = time.perf_counter() - started
    click.echo(f"wrote {len(result.deliveries)} deliveries, {result.files} files to {out_dir} in {seconds:.1f} s")
    for unit, n in sorted(result.rows.items()):
        click.echo(f"  {unit:<18} {n:>10,} rows")
