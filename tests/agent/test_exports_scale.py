"""The source map and the problem list stay small and flat for exports of any size."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from province_agent.config import AgentConfig
from province_agent.mapping import MAX_PROBLEMS, ExportDataError, build_delivery
from province_agent.provenance import SourceMap, sources_path
from schemas import Spec
from tests.agent.test_mapping import CYCLE, agent_config
from tests.support.deliveries import valid_rows


def write_prod(spec: Spec, path: Path, n: int, every: int = 0, bad: int = 0) -> None:
    """A VIP_CUST_PROD export of ``n`` rows; with ``every``, a 小计 row after each ``every`` rows;
    with ``bad``, the first ``bad`` rows carry a word in the count column."""
    prod = spec.unit("VIP_CUST_PROD")
    base = valid_rows(spec).rows["VIP_CUST_PROD"][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="gb18030", newline="") as fh:
        fh.write(",".join(f.name_zh for f in prod.fields) + "\r\n")
        for i in range(n):
            count = "三" if i < bad else f"{i % 997 + 1}"
            fh.write(f"{CYCLE},G42{i:08d},42,武汉,{base['PROD_ID']},{count},,{base['SERV_STS_ID']},"
                     f"\"{i * 1.01:,.2f}\"\r\n")
            if every and (i + 1) % every == 0:
                fh.write(f"{CYCLE},小计,,,,,,,\r\n")


def config(spec: Spec, tmp_path: Path) -> AgentConfig:
    prod = spec.unit("VIP_CUST_PROD")
    return agent_config(tmp_path, {"VIP_CUST_PROD": {
        "source": "prod.csv", "encoding": "GB18030", "columns": {f.id: f.name_zh for f in prod.fields}}})


def test_a_map_of_many_runs_is_written_as_the_build_streams(spec: Spec, tmp_path: Path) -> None:
    n = 100_000
    write_prod(spec, tmp_path / "exports" / "prod.csv", n, every=2)  # a 小计 row after every two: 50,000 runs
    out = tmp_path / "out" / "d"
    tracemalloc.start()
    try:
        build_delivery(config(spec, tmp_path), spec, CYCLE, 0, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20, f"peak {peak / 2 ** 20:.1f} MiB"
    runs = sum(1 for ln in sources_path(out).open(encoding="utf-8") if '"t":"run"' in ln)
    assert runs == n // 2
    smap = SourceMap.for_delivery(out)
    assert smap is not None
    [name] = smap.files()
    # data line k: export line 2 + (k - 1) + the 小计 rows before it
    for k in (1, 2, 3, 4, 77_777, n):
        cell = smap.locate(name, k, "LATN_ID")
        assert cell is not None and cell.row == 2 + (k - 1) + (k - 1) // 2 and cell.cell == f"D{cell.row}"
    assert smap.locate(name, n + 1) is None and smap.locate(name, 0) is None


def test_a_straight_export_is_one_run(spec: Spec, tmp_path: Path) -> None:
    write_prod(spec, tmp_path / "exports" / "prod.csv", 20_000)
    out = tmp_path / "out" / "d"
    build_delivery(config(spec, tmp_path), spec, CYCLE, 0, out)
    assert sources_path(out).stat().st_size < 1000


def test_problems_are_kept_up_to_a_limit_and_the_rest_counted(spec: Spec, tmp_path: Path) -> None:
    write_prod(spec, tmp_path / "exports" / "prod.csv", 3000, bad=MAX_PROBLEMS + 500)
    with pytest.raises(ExportDataError) as err:
        build_delivery(config(spec, tmp_path), spec, CYCLE, 0, tmp_path / "out" / "d")
    assert len(err.value.problems) == MAX_PROBLEMS and err.value.more == 500
    assert err.value.report().splitlines()[0].startswith("导出文件中有 1500 个值无法转换 / 1500 value(s)")
    assert str(err.value).endswith("... and 500 more")
    assert not sources_path(tmp_path / "out" / "d").exists()
