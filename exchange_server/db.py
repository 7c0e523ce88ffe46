"""The database: declarative base, engine, one session per request, transactions.

SQLite (the embedded default) runs in WAL mode with every transaction begun ``IMMEDIATE``:
one writer at a time, readers never blocked, no "database is locked" surprises when a
read transaction later writes. PostgreSQL uses READ COMMITTED with row locks where two
writers could meet (the ingestion queue, version scopes).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable, Iterator, Sequence, Unpack, cast

from contextlib import contextmanager
from flask import Flask, current_app, g
from sqlalchemy import DateTime, Engine, MetaData, Select, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from .config import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; constraint names are stable for migrations."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def import_models() -> None:
    """Import every feature's models so the metadata is complete (migrations, create_all)."""
    from .accounts import models as _accounts  # noqa: F401
    from .admin import models as _admin  # noqa: F401
    from .audit import models as _audit  # noqa: F401
    from .code_lists import models as _code_lists  # noqa: F401
    from .consolidation import models as _consolidation  # noqa: F401
    from .cycles import models as _cycles  # noqa: F401
    from .hub import models as _hub  # noqa: F401
    from .ingestion import models as _ingestion  # noqa: F401
    from .lists import models as _lists  # noqa: F401
    from .org import models as _org  # noqa: F401
    from .push import models as _push  # noqa: F401
    from .review import models as _review  # noqa: F401
    from .submissions import models as _submissions  # noqa: F401


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the SQLite pragmas and transaction mode applied."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False,
                                                  "isolation_level": None}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # The driver is in autocommit mode; we open the transaction ourselves so that it
            # takes the write lock up front (single writer, no upgrade deadlocks).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """The engine and session factory of one app (or one worker process)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.effective_database_url
        if settings.is_sqlite:
            settings.data_path.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for work outside a request (workers, commands); commits on success."""
        s = self.sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


# Runs a query and gives its rows (see ``outside_reader``).
AnySelect = Select[Unpack[tuple[Any, ...]]]
Reader = Callable[[AnySelect], Iterable[Sequence[Any]]]


@contextmanager
def outside_reader(engine: Engine) -> Iterator[Reader]:
    """A function running reads outside any transaction that would hold SQLite's writer lock.

    Every SQLAlchemy transaction here begins ``IMMEDIATE`` on SQLite (one writer), so a long
    read in a session holds up every writer. On SQLite the reads run on a pooled driver
    connection in autocommit mode, which reads a snapshot per statement without the lock;
    elsewhere a short session of their own (READ COMMITTED takes no lock writers wait on).
    """
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            def run(query: AnySelect) -> Iterable[Sequence[Any]]:
                # Our own statements, with integer ids and code literals: safe to inline.
                sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
                cursor = raw.cursor()
                cursor.execute(sql)
                return cast(Iterable[Sequence[Any]], cursor)
            yield run
        finally:
            raw.close()
    else:
        with Session(engine) as own:
            yield own.execute


def get_db(app: Flask | None = None) -> Database:
    """The Database of the current (or given) app."""
    return (app or current_app).extensions["kam_db"]


def get_session() -> Session:
    """The request's session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    session: Session = g.db_session
    return session


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def init_app(app: Flask, db: Database) -> Database:
    """Attach the database to the app; the request's session closes at teardown."""
    app.extensions["kam_db"] = db
    app.teardown_appcontext(_close_session)
    return db
