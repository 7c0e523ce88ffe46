"""The completeness matrix shows the calendar as it stands: the cycle's state and deadline, and province exceptions.

None of these changes a fact, so none moves the roll-up cache; they are read fresh on every
roll-up, cached or not, and reach the JSON, the CSV and the workbook.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from exchange_server.admin.services import CycleExceptionService
from exchange_server.consolidation import exports
from exchange_server.consolidation.exports import rollup_csv, rollup_xlsx
from exchange_server.consolidation.rollups import RollupService
from exchange_server.cycles.services import CycleService
from tests.server.test_rollups import national  # noqa: F401  (the fixture)


def _rollup(runtime: Any) -> Any:
    with runtime.db.session() as s:
        return RollupService(s, runtime.spec).rollup("202610")


def test_cycle_state_and_exceptions_reach_the_cached_matrix(national: dict[str, Path], runtime: Any) -> None:
    first = _rollup(runtime)  # computed and cached
    comp = first.completeness
    assert comp["cycle_state"] == "open" and comp["deadline_beijing"] and comp["exceptions"] == 0
    assert all(row["exception"] is None for row in comp["matrix"])
    with runtime.db.session() as s:
        built = RollupService(s, runtime.spec).inputs_key("202610")
        before = RollupService(s, runtime.spec).key("202610")
        CycleService(s, runtime.spec, "admin").close("202610")
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
        granted = CycleExceptionService(s, "admin").grant("202610", "11", until, "系统迁移 migration")
        granted_id = granted.id
    comp = _rollup(runtime).completeness  # no fact changed; the calendar is read fresh
    with runtime.db.session() as s:
        assert RollupService(s, runtime.spec).inputs_key("202610") == built  # the figures' inputs did not move
        assert RollupService(s, runtime.spec).key("202610") != before  # but no download of before is served
    assert comp["cycle_state"] == "closed" and comp["exceptions"] == 1
    rows = {row["prov_id"]: row for row in comp["matrix"]}
    assert rows["11"]["exception"]["valid"] and rows["11"]["exception"]["reason"] == "系统迁移 migration"
    assert all(rows[p]["exception"] is None for p in rows if p != "11")
    # The downloads carry it: the CSV's exception column, the workbook's state row and column.
    cols, table = exports.table(_rollup(runtime), "completeness")
    assert "exception_until" in cols
    assert {r["exception_until"] for r in table if r["prov_id"] == "11"} == {rows["11"]["exception"]["until_beijing"]}
    assert {r["exception_until"] for r in table if r["prov_id"] != "11"} == {None}
    header = rollup_csv(_rollup(runtime), "completeness").decode("utf-8-sig").splitlines()[0]
    assert header.endswith("例外截止（北京） Exception until (Beijing)")
    wb = load_workbook(io.BytesIO(rollup_xlsx(_rollup(runtime))))
    ws = wb[exports._sheet_name("completeness")]
    values = [str(c.value) for row in ws.iter_rows() for c in row if c.value is not None]
    assert "closed" in values and any(v.startswith(rows["11"]["exception"]["until_beijing"]) for v in values)
    # Revoked: gone at once.
    with runtime.db.session() as s:
        CycleExceptionService(s, "admin").revoke(granted_id)
    comp = _rollup(runtime).completeness
    assert comp["exceptions"] == 0 and all(row["exception"] is None for row in comp["matrix"])
