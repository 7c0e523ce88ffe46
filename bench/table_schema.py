"""Translate a unit of the standard into an equivalent frictionless Table Schema.

Used by the validation benchmark to run ``frictionless validate`` on the same file with the
same checks (types, lengths, patterns, code lists as enums, the primary key), so the two
are compared on equal terms.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from schemas.spec.model import Spec, Unit


def table_schema(spec: Spec, unit: Unit, day: dt.date) -> dict[str, Any]:
    """A Table Schema descriptor for ``unit`` with the code lists in force on ``day``."""
    fields = []
    for f in unit.fields:
        c: dict[str, Any] = {}
        if f.required:
            c["required"] = True
        d: dict[str, Any] = {"name": f.id}
        if f.type == "integer":
            d["type"] = "integer"
            if f.min is not None:
                c["minimum"] = f.min
            if f.max is not None:
                c["maximum"] = f.max
        elif f.type == "decimal":
            d["type"] = "number"
            d["bareNumber"] = True
        elif f.type == "date":
            d.update(type="date", format="%Y%m%d")
        elif f.type == "datetime":
            d.update(type="datetime", format="%Y%m%d%H%M%S")
        else:
            d["type"] = "string"
            if f.length:
                c["maxLength"] = f.length
            if f.pattern:
                c["pattern"] = f.pattern.strip("^$")
            if f.domain:
                dom = spec.domain(f.domain)
                if dom.kind == "pattern" and dom.pattern:
                    c["pattern"] = dom.pattern.strip("^$")
                else:
                    ver = dom.version_on(day)
                    codes = sorted(ver.field_codes(f.area_level))
                    c["enum"] = codes
        if c:
            d["constraints"] = c
        fields.append(d)
    return {"fields": fields, "primaryKey": list(unit.primary_key), "missingValues": [""]}
