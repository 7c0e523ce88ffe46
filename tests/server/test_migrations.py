"""The migrations create exactly the schema the models describe, on both databases."""
from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from exchange_server import migrations
from exchange_server.db import Base, import_models


def test_migrated_database_matches_the_models(runtime: Any) -> None:
    import_models()
    with runtime.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert migrations.current_revision(runtime.db.engine) == migrations.head_revision()


def test_init_is_safe_to_repeat(runtime: Any) -> None:
    from exchange_server.setup_service import initialise

    again = initialise(runtime)
    assert again["revision_before"] == again["revision"] == migrations.head_revision()
    assert again["areas_added"] == 0


def test_downgrade_to_empty_and_back(runtime: Any) -> None:
    from sqlalchemy import inspect

    migrations.upgrade(runtime.db.engine, "head")
    from alembic import command

    command.downgrade(migrations.alembic_config(runtime.db.engine), "base")
    assert set(inspect(runtime.db.engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(runtime.db.engine)
    assert "delivery" in inspect(runtime.db.engine).get_table_names()
