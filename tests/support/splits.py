"""Watch a validation read big files in parts on worker processes (``schemas.validation.parallel``)."""
from __future__ import annotations

import pytest

from schemas.validation import parallel


def spy_on_xml_splits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets, for each split read from now on, the number of XML parts it ran on."""
    runs: list[int] = []
    real = parallel.run_ranges

    def spying(jobs: list[parallel.RangeJob]) -> list[parallel.RangeResult]:
        runs.append(sum(1 for j in jobs if j.xml is not None))
        return real(jobs)

    monkeypatch.setattr(parallel, "run_ranges", spying)
    return runs
