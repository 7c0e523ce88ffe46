"""Removing what killed processes left behind: upload staging files, validation scratch folders.

A ``kill -9`` mid-upload leaves a partly written staging file in the archive; one during
validation (or while a hub assembles or sends a forward) leaves its scratch folder (links to archived files, the key store) in the
system's temp folder. Both are named with the host and process id that own them
(``storage/scratch.py``). The sweep runs when a server or worker process starts and then
every ``SWEEP_SECONDS`` while it runs; it removes only what belongs to processes of this
host that no longer exist.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..storage.scratch import sweep as sweep_folder
from .services import Runtime

log = logging.getLogger(__name__)
SWEEP_SECONDS = 600
VALIDATION_KIND = "kam-validate"


def sweep(rt: Runtime) -> dict[str, list[str]]:
    """One sweep of the archive's staging and the temp folder; returns what was removed, by place."""
    from ..hub.forward import FORWARD_KIND  # a hub's forwards are assembled in scratch folders too

    temp = Path(tempfile.gettempdir())
    removed = {"staging": rt.archive.sweep_staging(),
               "scratch": sweep_folder(temp, VALIDATION_KIND, legacy_prefix=f"{VALIDATION_KIND}-")
               + sweep_folder(temp, FORWARD_KIND)}
    for place, names in removed.items():
        if names:
            log.info("removed %d %s item(s) left by processes that are gone: %s", len(names), place,
                     ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
    return removed
