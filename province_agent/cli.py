"""``province-agent``: what province IT runs, by hand or on a schedule.

Exit codes (for cron and monitoring): 0 accepted (warnings allowed), 1 something was
rejected, 2 usage or configuration error, 3 transport failure after retries.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from schemas import SchemasError, load_spec
from schemas.validation import (
    REJECTED, ValidationOptions, file_feedback_xml, record_feedback_xml, render_text, validate_paths,
)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_TRANSPORT = 0, 1, 2, 3


@click.group()
@click.version_option(package_name="kam-exchange")
def main() -> None:
    """Province agent for the key-account exchange with Group HQ."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "xml"]), default="text", show_default=True,
              help="text for people, json for programs, xml for the standard's feedback files.")
@click.option("--max-per-code", type=click.IntRange(min=1), default=1000, show_default=True,
              help="List at most this many occurrences of each error code (totals are always exact).")
@click.option("--max-file-size", type=click.IntRange(min=1), default=None,
              help="Largest data file accepted, in bytes (default 2 GiB).")
def validate(paths: tuple[Path, ...], fmt: str, max_per_code: int, max_file_size: int | None) -> None:
    """Validate deliveries offline: a check file with its data files, several, or a directory.

    Exit status 0 when every delivery would be accepted (warnings allowed), 1 when any
    would be rejected, 2 on usage errors.
    """
    options = ValidationOptions(cap=max_per_code)
    if max_file_size:
        options.max_file_size = max_file_size
    try:
        spec = load_spec()
        reports = validate_paths(list(paths), spec, None, options)
    except SchemasError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if not reports:
        click.echo("error: no files to validate / 没有可校验的文件", err=True)
        sys.exit(EXIT_USAGE)
    if fmt == "json":
        doc = [r.as_dict() for r in reports]
        click.echo(json.dumps(doc[0] if len(doc) == 1 else doc, ensure_ascii=False, indent=2, default=str))
    elif fmt == "xml":
        for r in reports:
            click.echo(file_feedback_xml(r).decode("utf-8"))
            click.echo(record_feedback_xml(r).decode("utf-8"))
    else:
        for r in reports:
            click.echo(render_text(r))
    sys.exit(EXIT_REJECTED if any(r.status == REJECTED for r in reports) else EXIT_OK)


if __name__ == "__main__":
    main()
