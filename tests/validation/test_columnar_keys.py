"""Repeated keys found by the columnar core's sorted runs (issue 18) against SQLite's, in memory and spilled."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Spec
from schemas.validation import ValidationOptions, validate_delivery
from schemas.validation.columnar import keys as keys_mod
from schemas.validation.columnar import reader as col_reader
from schemas.validation.columnar.keys import SortedRuns
from schemas.validation.columnar.plan import duplicate_tables
from schemas.validation.store import KeyStore
from tests.support.deliveries import valid_rows
from tests.validation.test_columnar_differential import both

# Keys whose code-point and UTF-8 byte orders are tested against SQLite's: ASCII, CJK, astral, the separator.
KEY = st.text(st.sampled_from(["a", "b", "Z", "0", "湖", "北", "𠀀", "\x1f", "é", "\uffff"]), max_size=4)
ROWS = st.lists(st.tuples(KEY, st.integers(0, 2)), max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, budget=st.sampled_from([0, 200, 1 << 30]), chunk=st.integers(1, 9),
       batch=st.integers(1, 40), frames=st.booleans())
def test_sorted_runs_find_what_sqlite_finds(tmp_path: Path, rows: list[tuple[str, int]], budget: int, chunk: int,
                                            batch: int, frames: bool) -> None:
    import polars as pl

    with KeyStore(tmp_path) as reference, KeyStore(tmp_path) as tracked:
        for s in (reference, tracked):
            for f in range(3):
                s.file_id(f"file{f}.txt")
        runs = SortedRuns(tmp_path, budget=budget, chunk=chunk)
        tracked.track("t", runs)
        lines = [0, 0, 0]
        keyed = []
        for k, f in rows:  # each file's lines rise, as the readers give them
            lines[f] += 1
            keyed.append((k, "", lines[f], f))
        for start in range(0, len(keyed), batch):
            part = keyed[start:start + batch]
            reference.flush("t", list(part))
            if frames:  # as the screen gives clean rows: a frame, not written to SQLite
                runs.add(pl.DataFrame({"k": [r[0] for r in part], "file": [r[3] for r in part],
                                       "line": [r[2] for r in part]}))
            else:  # as the row path flushes suspect rows
                tracked.flush("t", list(part))
        spilled = bool(runs.runs)
        assert list(tracked.duplicates("t")) == list(reference.duplicates("t"))
        if budget == 0 and rows:
            assert spilled
    assert not list(tmp_path.glob("kam-run-*")), "spilled runs are removed with the store"


def test_only_repeated_key_tables_leave_sqlite(spec: Spec) -> None:
    sorted_keys, runs_only = duplicate_tables(spec, spec.unit("31201"))
    # primary key (also read by cross-unit rules X-004..X-007) and R31201-04's PROV_CUST_ID
    assert len(sorted_keys) == 2 and len(runs_only) == 1
    assert next(iter(runs_only)).startswith("p_vip_cust_info_prov_cust_id")


@pytest.mark.parametrize("cap", [1000, 3])
@pytest.mark.parametrize("enc", ["UTF-8", "GB18030"])
def test_duplicate_keys_across_batches_and_spills(spec: Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  cap: int, enc: str) -> None:
    rows = valid_rows(spec, customers=30)
    info: list[dict[str, Any]] = rows.rows["VIP_CUST_INFO"]
    for i, r in enumerate(info):
        if i % 3 == 0:  # the primary key of a row far back in the file
            r["NATIONAL_CUST_ID"] = info[(i * 7) % len(info)]["NATIONAL_CUST_ID"]
        if i % 4 == 1:  # R31201-04: the province's customer id again
            r["PROV_CUST_ID"] = info[0]["PROV_CUST_ID"]
    info.extend(dict(r) for r in info[::5])  # whole rows again, at the end of the file
    folder = rows.write(tmp_path / "d", encoding=enc)
    monkeypatch.setattr(col_reader, "BLOCK", 512)  # a few lines per batch
    monkeypatch.setattr(keys_mod, "BUDGET", 1)  # every batch's keys spilled as a run
    monkeypatch.setattr(keys_mod, "CHUNK", 2)  # and merged two rows per run at a time
    spills: list[int] = []
    spill = SortedRuns._spill

    def counted(self: SortedRuns) -> None:
        spills.append(len(self.frames))
        spill(self)

    monkeypatch.setattr(SortedRuns, "_spill", counted)
    reference, columnar = both(folder, spec, None, cap)
    assert reference["counts"]["E401"] >= 10 and reference["counts"]["R31201-04"] >= 10
    assert columnar == reference
    assert len([n for n in spills if n]) > 10  # the columnar run did write runs to disk
    files = sorted(folder.iterdir())
    report = validate_delivery(files, spec, None, ValidationOptions(core="columnar", cap=cap, workers=1))
    assert report.counts == reference["counts"]


@pytest.mark.parametrize("budget", [1, 1 << 30])
def test_deferred_rows_come_back_in_the_order_given_spilled_or_not(tmp_path: Path, budget: int) -> None:
    from schemas.validation.columnar.keys import ROW_SCHEMA, DeferredRows

    held = DeferredRows(tmp_path, budget=budget)
    want = []
    for batch in range(5):
        frame = [(f"k{batch}-{n}", "", batch * 10 + n, 0) for n in range(3)]
        held.add(pl.DataFrame(frame, schema=ROW_SCHEMA, orient="row"))
        suspect = [(f"s{batch}", "v", batch * 10 + 9, 1)]
        held.add_rows(suspect)
        want += frame + suspect
    assert list(held.rows()) == want
    assert bool(list(tmp_path.glob("kam-rows-*"))) == (budget == 1)
    held.close()
    assert not list(tmp_path.glob("kam-rows-*"))
