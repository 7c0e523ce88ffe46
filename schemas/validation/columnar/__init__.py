"""The columnar core for delimited text: a vectorised screen (polars) in front of the row path.

``check_text_file`` returns None when the unit has a check the screen cannot compile
exactly; the engine then reads the file with the row path, as the ``rows`` core always does.
See docs/validation.md, "The columnar core".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ...spec.model import Unit
from ..compiler import RunContext, Sinks
from ..store import KeyStore

CORE_ENV = "KAM_VALIDATION_CORE"
CORES = ("auto", "rows", "columnar")
# Below this size a file is read by the row path under ``auto``: polars' fixed cost per file
# (compiling the screen, starting its queries and the reader thread: 15-20 ms) is more than
# the row path takes for it. Measured crossing: about 0.6-0.9 MB of 31201 (docs/benchmarks.md).
COLUMNAR_MIN_BYTES = 512 * 1024


def selected_core(option: str | None = None) -> str:
    """The core a run uses: the option if set, else $KAM_VALIDATION_CORE, else ``auto``.

    ``auto`` (the default) is the columnar core for files of ``COLUMNAR_MIN_BYTES`` and
    more, the row path for smaller ones; ``columnar`` is the columnar core for every file;
    ``rows`` is the reference the columnar core is tested against (and what it hands the
    checks it cannot screen to). All three give the same reports.
    """
    core = (option or os.environ.get(CORE_ENV) or "auto").strip().lower()
    if core not in CORES:
        raise ValueError(f"unknown validation core {core!r}; one of {', '.join(CORES)}")
    return core


def core_for_file(option: str | None, size: int) -> str:
    """``rows`` or ``columnar``: the core that reads a file of ``size`` bytes in a run with ``option``."""
    core = selected_core(option)
    if core == "auto":
        return "columnar" if size >= COLUMNAR_MIN_BYTES else "rows"
    return core


def check_text_file(ctx: RunContext, unit: Unit, path: Path, encoding: str, delimiter: str,
                    run_rows: Callable[[Any], int], sinks: Sinks, store: KeyStore, file_id: int,
                    crlf: bool | None = None) -> int | None:
    """Check a delimited file with the columnar core; None when the unit must use the row path.

    ``crlf`` is what tier 1 found: every line ends in CRLF (True) or none does (False); None: not known.
    """
    from .core import check_text_file as run

    plan = _plan(ctx, unit, delimiter)
    return None if plan is None else run(plan, run_rows, path, encoding, delimiter, sinks, store, file_id, crlf)


def check_parsed_rows(ctx: RunContext, unit: Unit, rows: Iterable[tuple[list[str], int, int]],
                      run_rows: Callable[[Any], int], sinks: Sinks, store: KeyStore, file_id: int) -> bool:
    """Check an XML file's parsed rows with the columnar core; False (nothing read) when the unit must use the row path."""
    from .core import check_rows

    plan = _plan(ctx, unit, "")  # no delimiter: every forbidden character is one
    if plan is None:
        return False
    check_rows(plan, run_rows, rows, sinks, store, file_id)
    return True


def _plan(ctx: RunContext, unit: Unit, delimiter: str) -> Any:
    """The unit's compiled screen (``plan.UnitPlan``), or None when the row path must read it."""
    from .plan import Unsupported, compile_plan

    try:
        return compile_plan(ctx, unit, delimiter)
    except Unsupported:
        return None
