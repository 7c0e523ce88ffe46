"""The long-lived parts of one server process, built once from the settings.

Commands, the HTTP app and the ingestion workers all start from a ``Runtime``: the loaded
standard (parsed once), the database and the archive the configuration names.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from schemas import Spec, load_spec
from schemas.validation import ValidationOptions

from ..config import Settings, ensure_secret_key, load_settings
from ..db import Database
from ..storage import Archive, open_archive


@lru_cache(maxsize=1)
def standard() -> Spec:
    """The interface standard, loaded once per process."""
    return load_spec()


@dataclass
class Runtime:
    """Settings, database, archive and the standard of one process."""

    settings: Settings
    db: Database
    archive: Archive
    spec: Spec

    def validation_options(self, tmp_dir: Path) -> ValidationOptions:
        """How this server validates a delivery: its findings cap and worker processes, scratch in ``tmp_dir``."""
        s = self.settings
        return ValidationOptions(cap=s.findings_cap, tmp_dir=str(tmp_dir), workers=s.validation_workers,
                                 parallel_min_bytes=s.validation_parallel_min_bytes)


def open_runtime(overrides: Mapping[str, Any] | None = None, settings: Settings | None = None) -> Runtime:
    """Build a runtime from the configuration (plus ``overrides``)."""
    settings = ensure_secret_key(settings or load_settings(overrides))
    return Runtime(settings, Database(settings), open_archive(settings), standard())
