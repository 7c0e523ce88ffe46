"""``exchange-server``: the HQ server's command line."""
from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="kam-exchange")
def main() -> None:
    """The key-account exchange server (Group HQ side)."""


def _register() -> None:
    from .sample_data.cli import sample_data

    main.add_command(sample_data)


_register()
