"""Alembic environment: the engine comes from the caller (exchange-server init, tests)."""
from __future__ import annotations

import logging

from alembic import context

from exchange_server.db import Base, import_models

import_models()
config = context.config
# Quiet however the migrations are run (the package sets this too, before alembic is imported).
logging.getLogger("alembic").setLevel(logging.WARNING)
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
