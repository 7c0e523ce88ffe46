"""A JSON Schema (draft 2020-12) per unit, for records exchanged as JSON over HTTP.

A record is a JSON object keyed by field id. Values keep the lexical forms of the data
files, as strings, with one exception: integers are JSON integers. Money stays a string
(``"12345.67"``) so that no JSON parser turns it into a binary float.
"""
from __future__ import annotations

from typing import Any

from ..spec.model import Field, Spec, Unit
from .xsd import field_codes

DATE = "^[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])$"
DATETIME = "^[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$"


def decimal_pattern(f: Field) -> str:
    """The lexical form of a decimal(p,s) value: at most p-s integer digits and s decimals."""
    whole = (f.precision or 18) - (f.scale or 0)
    if f.scale:
        return rf"^-?[0-9]{{1,{whole}}}(\.[0-9]{{1,{f.scale}}})?$"
    return rf"^-?[0-9]{{1,{whole}}}$"


def field_json_schema(spec: Spec, f: Field) -> dict[str, Any]:
    """The JSON Schema of one field's value (null allowed for optional fields)."""
    s: dict[str, Any] = {"title": f"{f.name_zh} / {f.name_en}"}
    if f.description_zh or f.description_en:
        s["description"] = " / ".join(x for x in (f.description_zh, f.description_en) if x)
    if f.type == "integer":
        s["type"] = "integer"
        if f.min is not None:
            s["minimum"] = f.min
        if f.max is not None:
            s["maximum"] = f.max
        if f.length:
            s.setdefault("maximum", 10 ** f.length - 1)
            s.setdefault("minimum", -(10 ** f.length - 1))
    else:
        s["type"] = "string"
        if f.type == "decimal":
            s["pattern"] = decimal_pattern(f)
        elif f.type == "date":
            s["pattern"] = DATE
        elif f.type == "datetime":
            s["pattern"] = DATETIME
        elif f.type == "code":
            dom = spec.domain(f.domain or "")
            if dom.kind == "pattern":
                s["pattern"] = dom.pattern
            else:
                s["enum"] = field_codes(spec, f)
        else:
            if f.length:
                s["maxLength"] = f.length
            if f.pattern:
                s["pattern"] = f.pattern
            if f.required:
                s["minLength"] = 1
    if not f.required:
        s["type"] = [s["type"], "null"]
        if "enum" in s:
            s["enum"] = [*s["enum"], None]
    return s


def unit_json_schema(spec: Spec, unit: Unit) -> dict[str, Any]:
    """The JSON Schema of one record of ``unit``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{spec.namespace}:{unit.code}_{unit.name}",
        "title": f"{unit.code} {unit.name} {unit.name_zh} / {unit.name_en}",
        "description": f"One record of {unit.name}, spec {spec.version}. Generated from interface_specs/; do not edit.",
        "type": "object",
        "properties": {f.id: field_json_schema(spec, f) for f in unit.fields},
        "required": [f.id for f in unit.fields if f.required],
        "additionalProperties": False,
    }
