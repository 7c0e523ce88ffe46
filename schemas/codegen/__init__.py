"""Artefacts generated from the spec: XSDs, JSON Schemas and marshmallow schemas per unit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..spec.model import Spec, Unit
from .jsonschema import unit_json_schema
from .marshmallow_schemas import unit_marshmallow_schema, unit_schemas
from .xsd import unit_xsd, xsd_file_name

__all__ = ["unit_xsd", "unit_json_schema", "unit_marshmallow_schema", "unit_schemas", "write_xsds",
           "write_json_schemas"]


def _sync(out_dir: Path, suffix: str, files: dict[str, bytes], check: bool) -> list[Path]:
    """Write ``files`` into ``out_dir`` (or, with ``check``, list what is missing, stale or extra)."""
    stale = []
    for name, data in files.items():
        path = out_dir / name
        if check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(path)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
    for path in sorted(out_dir.glob(f"*{suffix}")) if out_dir.is_dir() else []:
        if path.name not in files:
            if check:
                stale.append(path)
            else:
                path.unlink()
    return stale


def _render_all(spec: Spec, render: Callable[[Spec, Unit], bytes], name: Callable[[Unit], str]) -> dict[str, bytes]:
    return {name(u): render(spec, u) for u in spec.units}


def write_xsds(spec: Spec, out_dir: Path, check: bool = False) -> list[Path]:
    """Write one XSD per unit into ``out_dir``; with ``check``, write nothing and return stale paths."""
    return _sync(out_dir, ".xsd", _render_all(spec, unit_xsd, xsd_file_name), check)


def _json_bytes(spec: Spec, unit: Unit) -> bytes:
    return (json.dumps(unit_json_schema(spec, unit), ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def write_json_schemas(spec: Spec, out_dir: Path, check: bool = False) -> list[Path]:
    """Write one JSON Schema per unit into ``out_dir``; with ``check``, return stale paths instead."""
    return _sync(out_dir, ".schema.json", _render_all(spec, _json_bytes, lambda u: f"{u.code}_{u.name}.schema.json"),
                 check)
