"""Three cycles of judged sample data for the comparison and pivot page tests (no conftest: imported by them).

202510 (the same month a year before 202610): Beijing (11) and Hubei (42) in full, and two of
Guangdong's (44) local networks sending their own deliveries, so that Guangdong is partly
reported there; 202609 from 11 and 42; 202610 from 11, 42 and 44 — the pages' own pattern
(tests/pages/conftest.py), with a year-earlier cycle.
"""
from __future__ import annotations

from pathlib import Path

from exchange_server.accounts.services import AccountService
from exchange_server.ingestion.worker import IngestionWorker
from exchange_server.lists.services import ListService
from exchange_server.runtime import Runtime
from exchange_server.sample_data.generator import (
    SampleModel,
    generate,
    generate_networks,
)
from schemas.conventions import Cycle
from tests.pages.conftest import ANALYST, PROVINCE
from tests.support.receiving import receive_folder
from tests.support.runtimes import runtime_with_open_cycles

CYCLES = {"202510": ["11", "42"], "202609": ["11", "42"], "202610": ["11", "42", "44"]}
PARTIAL = ("202510", "44", 2)  # cycle, province, how many of its networks report (their own deliveries)


def partial_networks(rt: Runtime) -> list[str]:
    """The local networks of the partly reported province that send in the year-earlier cycle."""
    cycle, province, count = PARTIAL
    return [n.code for n in SampleModel(rt.spec, seed=7).networks(province, Cycle.parse(cycle).begin)][:count]


def build(root: Path) -> Runtime:
    """A runtime with the three cycles accepted, an analyst and the province logins."""
    rt = runtime_with_open_cycles(root, CYCLES)
    nets = partial_networks(rt)
    with rt.db.session() as s:
        accounts = AccountService(s, "test")
        accounts.create(ANALYST[0], "analyst", display_name="测试分析员 Test analyst", password=ANALYST[1])
        accounts.create(PROVINCE[0], "province", "42", password=PROVINCE[1])
        for p in ("11", "44"):
            accounts.create(f"prov{p}", "province", p)
        for n in nets:
            accounts.create(f"latn{n}", "province", n)
    for cycle_id, provinces in CYCLES.items():
        # Same seed for every cycle: the same customers, on each year's national list.
        generate(rt.spec, cycle_id, root / cycle_id, provinces=provinces, scale=1, fmt="txt", seed=7)
    cycle, province, _ = PARTIAL
    generate_networks(rt.spec, cycle, root / "networks", province, scale=1, fmt="txt", seed=7, networks=nets)
    for cycle_id, version in (("202510", "2025V01"), ("202610", "2026V01")):  # each year's national list
        with rt.db.session() as s:
            lists = ListService(s, rt.archive, rt.spec)
            lists.publish(lists.load(next((root / cycle_id / "00").glob(f"D_00_{version}_00.chk"))))
    for cycle_id, provinces in CYCLES.items():
        for p in provinces:
            receive_folder(rt, f"prov{p}", root / cycle_id / p)
        IngestionWorker(rt, "test").drain()
    for n in nets:
        receive_folder(rt, f"latn{n}", root / "networks" / n)
    IngestionWorker(rt, "test").drain()
    return rt
