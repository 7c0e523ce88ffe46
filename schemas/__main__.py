"""``python -m schemas``: regenerate the checked-in artefacts from interface_specs/."""
from __future__ import annotations

from pathlib import Path

import click

from .spec import load_spec

REPO = Path(__file__).resolve().parent.parent


@click.group()
def main() -> None:
    """Tools for the maintainers of the standard."""


@main.command()
@click.option("--check", is_flag=True, help="Fail if a checked-in file is out of date instead of writing it.")
def generate(check: bool) -> None:
    """Regenerate the XSDs (schemas/xsd/), JSON Schemas (schemas/jsonschema/) and the rendered standard."""
    from .codegen import write_json_schemas, write_xsds
    from .render import write_documents

    spec = load_spec()
    stale = write_xsds(spec, REPO / "schemas" / "xsd", check=check)
    stale += write_json_schemas(spec, REPO / "schemas" / "jsonschema", check=check)
    stale += write_documents(spec, REPO / "docs" / "standard", check=check)
    if check and stale:
        raise click.ClickException("out of date: " + ", ".join(str(p) for p in stale))
    click.echo("up to date" if check else "written")


if __name__ == "__main__":
    main()
