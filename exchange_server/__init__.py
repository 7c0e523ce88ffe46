"""The HQ side of the exchange: HTTP and SFTP channels, ingestion, consolidation, pages."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: Any = None) -> "Flask":
    """Build the WSGI app (see exchange_server.app.create_app)."""
    from .app import create_app as factory

    return factory(test_config)
