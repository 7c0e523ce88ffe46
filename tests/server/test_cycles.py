"""The reporting calendar: states move only the allowed ways, and every move is audited."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from exchange_server.audit.models import AuditEvent
from exchange_server.cycles.services import CycleService
from exchange_server.errors import BadRequest, Conflict, NotFound


def test_create_open_close_reopen_with_audit(runtime: Any) -> None:
    with runtime.db.session() as s:
        svc = CycleService(s, runtime.spec, "alice")
        c = svc.create("2026Q3", units_due="32001,32002,32003")
        assert (c.freq, c.name, c.begin_date, c.end_date) == ("Q", "2026年第3季度", dt.date(2026, 7, 1),
                                                               dt.date(2026, 9, 30))
        assert c.state == "planned" and c.units == ["32001", "32002", "32003"]
        assert svc.open("2026Q3").state == "open"
        with pytest.raises(Conflict):
            svc.open("2026Q3")
        assert svc.close("2026Q3").state == "closed"
        with pytest.raises(Conflict):
            svc.close("2026Q3")
        assert svc.reopen("2026Q3").state == "open"
        later = dt.datetime(2026, 10, 31, 10, tzinfo=dt.timezone.utc)
        assert svc.set_deadline("2026Q3", later).deadline == later
    with runtime.db.session() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.target == "cycle:2026Q3")
                            .order_by(AuditEvent.id)).all()
        assert actions == ["cycle.create", "cycle.open", "cycle.close", "cycle.reopen", "cycle.deadline"]
        assert set(s.scalars(select(AuditEvent.actor).where(AuditEvent.target == "cycle:2026Q3"))) == {"alice"}


def test_bad_cycles_are_refused_clearly(runtime: Any) -> None:
    with runtime.db.session() as s:
        svc = CycleService(s, runtime.spec)
        with pytest.raises(BadRequest) as err:
            svc.create("2026M13")
        assert err.value.code == "bad_cycle_id"
        with pytest.raises(BadRequest) as err:
            svc.create("202610", units_due="31101")  # the list goes down, never up
        assert err.value.code == "bad_units"
        svc.create("202610")
        with pytest.raises(Conflict):
            svc.create("202610")
        with pytest.raises(NotFound):
            svc.open("202612")


def test_calendar_import_from_hqs_rep_cycle_delivery(runtime: Any, tmp_path: Path) -> None:
    from exchange_server.sample_data.generator import generate

    generate(runtime.spec, "202610", tmp_path / "s", provinces=["42"], scale=1, fmt="txt", seed=1)
    check = next((tmp_path / "s" / "00").glob("D_00_2026_*.chk"))
    with runtime.db.session() as s:
        made = CycleService(s, runtime.spec).import_calendar(check)
        assert [c.id for c in made] == [f"2026{m:02d}" for m in range(1, 13)]
        oct_ = CycleService(s, runtime.spec).get("202610")
        assert oct_.deadline > dt.datetime(2026, 10, 31, tzinfo=dt.timezone.utc) and oct_.state == "planned"
        assert CycleService(s, runtime.spec).import_calendar(check) == []  # already there: nothing new
