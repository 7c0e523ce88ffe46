"""Loading a big list does not keep other writers out: SQLite's one writer lock is taken to store the rows only.

Behaviour, not timing: the other writer is a small transaction (an audit event, as the HQ
pusher or an ingestion worker writes) on a connection that gives up after 2 s of waiting
for the lock (``PRAGMA busy_timeout``) instead of the server's 60 s.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from exchange_server.audit.models import AuditEvent
from exchange_server.audit.services import record
from exchange_server.db import make_engine
from exchange_server.lists import services
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from tests.server.test_list_api import write_list
from tests.support.deliveries import valid_rows

ROWS = 20_000
BUSY_MS = 2000
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def customers(spec: Any, n: int, start: int = 0) -> list[tuple[str, str, str]]:
    """n Hubei customers: (id, province, local network)."""
    net = min({r["LATN_ID"] for r in valid_rows(spec).rows["VIP_SUMMARY"]})
    return [(f"G42{i + 1:07d}", "42", net) for i in range(start, start + n)]


def impatient(runtime: Runtime) -> Engine:
    """An engine on the same database whose connections wait at most BUSY_MS for the writer lock."""
    engine = make_engine(runtime.db.url)

    @event.listens_for(engine, "connect")
    def _short_wait(dbapi_conn: Any, _record: Any) -> None:  # after make_engine's pragmas (60 s)
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")

    return engine


def small_write(engine: Engine, n: int) -> BaseException | None:
    """One small write transaction; the error it ended with ("database is locked"), or None."""
    try:
        with Session(engine) as s:
            record(s, "pusher", "test.ping", f"ping:{n}")
            s.commit()
    except Exception as exc:  # noqa: BLE001 - reported to the test's assertion
        return exc
    return None


@sqlite_only
def test_other_writers_get_the_lock_while_a_list_is_read_and_validated(
        runtime: Runtime, spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_list(tmp_path / "list.csv", spec, customers(spec, ROWS))
    other = impatient(runtime)
    outcome: list[BaseException | None] = []
    real = services.import_list

    def import_list_while_another_writes(*args: Any, **kwargs: Any) -> Any:
        # In the middle of the load: the file is archived and about to be validated.
        writer = threading.Thread(target=lambda: outcome.append(small_write(other, 0)))
        writer.start()
        writer.join(timeout=30)
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "import_list", import_list_while_another_writes)
    with runtime.db.session() as s:  # as `exchange-server list load` opens it
        v = ListService(s, runtime.archive, runtime.spec, "cli").load(source, "2026V01")
        assert (v.added, v.changed, v.removed, v.unchanged) == (ROWS, 0, 0, 0)
    other.dispose()
    assert outcome == [None]
    with runtime.db.session() as s:
        assert s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()[-2:] == ["test.ping", "list.load"]


@sqlite_only
def test_small_writes_keep_succeeding_during_a_big_load(runtime: Runtime, spec: Any, tmp_path: Path) -> None:
    first = write_list(tmp_path / "v1.csv", spec, customers(spec, ROWS))
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "cli")
        lists.publish(lists.load(first, "2026V01"))
    # The second version is compared with the first: 1,000 dropped, 1,000 new.
    second = write_list(tmp_path / "v2.csv", spec, customers(spec, ROWS, start=1000))
    other = impatient(runtime)
    done = threading.Event()
    loaded: list[Any] = []

    def load() -> None:
        try:
            with runtime.db.session() as s:
                v = ListService(s, runtime.archive, runtime.spec, "cli").load(second, "2026V02")
                loaded.append((v.added, v.changed, v.removed, v.unchanged))
        except BaseException as exc:  # noqa: BLE001
            loaded.append(exc)
        finally:
            done.set()

    loader = threading.Thread(target=load)
    loader.start()
    errors: list[BaseException] = []
    writes = 0
    while not done.is_set():
        error = small_write(other, writes)
        writes += 1
        if error is not None:
            errors.append(error)
        time.sleep(0.01)
    loader.join()
    other.dispose()
    # Ranks moved up by 1,000 for the rest: every kept customer is "changed".
    assert loaded == [(1000, ROWS - 1000, 1000, 0)]
    assert errors == []
    assert writes >= 3  # the writes really ran alongside the load


def test_a_version_published_meanwhile_is_the_one_compared_with(
        runtime: Runtime, spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026V01 published, 2026V02 a draft with one more customer; 2026V03 adds another.
    listed = customers(spec, 5)
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "hq")
        lists.publish(lists.load(write_list(tmp_path / "v1.csv", spec, listed[:3]), "2026V01"))
        lists.load(write_list(tmp_path / "v2.csv", spec, listed[:4]), "2026V02")
    real = ListService._plan
    plans: list[int | None] = []

    def plan_then_publish(*args: Any) -> Any:
        plan = real(*args)
        plans.append(plan.base_id)
        if len(plans) == 1:
            # Someone publishes 2026V02 after the load compared with 2026V01, before it stores.
            with runtime.db.session() as s:
                other = ListService(s, runtime.archive, runtime.spec, "hq")
                other.publish(other.get("2026V02"))
        return plan

    monkeypatch.setattr(ListService, "_plan", staticmethod(plan_then_publish))
    with runtime.db.session() as s:
        lists = ListService(s, runtime.archive, runtime.spec, "hq")
        v3 = lists.load(write_list(tmp_path / "v3.csv", spec, listed), "2026V03")
        v2 = lists.get("2026V02")
        assert v3.based_on_id == v2.id
        assert (v3.added, v3.changed, v3.removed, v3.unchanged) == (1, 0, 0, 4)
        assert {e.national_cust_id: e.change_type for e in v3.entries} == {
            **{c[0]: "U" for c in listed[:4]}, listed[4][0]: "A"}
    v1_id = v2.based_on_id
    assert plans == [v1_id, v2.id]  # compared again, in the write transaction
