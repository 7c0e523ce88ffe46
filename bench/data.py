"""Large single-unit deliveries for the benchmarks, streamed to disk.

The rows come from the sample-data generator's customer model (realistic Chinese names,
codes from the code lists in force, every record rule satisfied), repeated with fresh ids
until the file has the rows asked for. Memory stays flat: rows are written as they are made.
"""
from __future__ import annotations

from pathlib import Path

from schemas.conventions import Cycle
from schemas.spec import load_spec
from schemas.writer import DeliveryWriter

PROVINCE = "44"  # Guangdong: the most local networks and key accounts


def unit_delivery(unit_code: str, rows: int, fmt: str, out: Path, cycle: str = "202610",
                  encoding: str = "GB18030", delimiter: str = "PIPE") -> Path:
    """Write a delivery of one ``unit_code`` file with ``rows`` rows plus its check file; return its folder."""
    from exchange_server.sample_data.generator import customer_rows

    spec = load_spec()
    unit = spec.unit(unit_code)
    w = DeliveryWriter(spec, out, "P", PROVINCE, cycle, encoding=encoding, delimiter=delimiter)
    with w.unit(unit.name, fmt=fmt) as u:
        for row in customer_rows(spec, cycle, PROVINCE, rows, seed=2002):
            u.write(row)
    w.close()
    assert Cycle.parse(cycle)  # a typo in the cycle fails here, not deep in the writer
    return out
