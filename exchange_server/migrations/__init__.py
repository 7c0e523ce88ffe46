"""Alembic migrations of the exchange database; run by ``exchange-server init``."""
from __future__ import annotations

import logging
from pathlib import Path

# Alembic logs every plugin it sets up (on import) and every step at INFO: noise for whoever starts a
# server or the demo. `exchange-server init` reports the revision itself; warnings still show.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402  (after the level: importing it logs)
from alembic.config import Config
from sqlalchemy import Engine

HERE = Path(__file__).parent


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at these migrations and at ``engine``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision these migrations define."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
