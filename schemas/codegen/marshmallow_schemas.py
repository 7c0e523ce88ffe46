"""marshmallow schemas per unit, built from the spec, for JSON records in the HTTP API.

Loading a record gives typed Python values: ``int``, ``Decimal`` (never float), ``str``
for codes and text, and dates as ``datetime.date``/``datetime.datetime``. Dumping gives
back the lexical forms the JSON Schema describes.
"""
from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ..spec.model import Field, Spec, Unit
from .jsonschema import decimal_pattern
from .xsd import field_codes


class ExactDecimal(fields.Decimal):
    """A decimal(p,s) given as a string; refuses floats so money never passes through binary."""

    def __init__(self, precision: int, scale: int, **kw: Any) -> None:
        super().__init__(places=scale, as_string=True, **kw)
        self.lexical = re.compile(decimal_pattern(Field(id="", name_zh="", name_en="", type="decimal", position=0,
                                                        required=True, precision=precision, scale=scale)))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Decimal:
        if not isinstance(value, str) or not self.lexical.fullmatch(value):
            raise ValidationError(f"expected a decimal string matching {self.lexical.pattern}, got {value!r}")
        return super()._deserialize(value, attr, data, **kw)


def _field(spec: Spec, f: Field) -> fields.Field:
    common: dict[str, Any] = {"required": f.required, "allow_none": not f.required,
                              "metadata": {"name_zh": f.name_zh, "name_en": f.name_en}}
    if f.type == "integer":
        lo = f.min if f.min is not None else -(10 ** (f.length or 18) - 1)
        hi = f.max if f.max is not None else 10 ** (f.length or 18) - 1
        return fields.Integer(strict=True, validate=validate.Range(lo, hi), **common)
    if f.type == "decimal":
        return ExactDecimal(f.precision or 18, f.scale or 0, **common)
    if f.type == "date":
        return fields.Date(format="%Y%m%d", **common)
    if f.type == "datetime":
        return fields.DateTime(format="%Y%m%d%H%M%S", **common)
    if f.type == "code":
        dom = spec.domain(f.domain or "")
        if dom.kind == "pattern":
            return fields.String(validate=validate.Regexp(dom.pattern or ""), **common)
        return fields.String(validate=validate.OneOf(field_codes(spec, f)), **common)
    checks: list[Any] = [validate.Length(min=1 if f.required else 0, max=f.length)]
    if f.pattern:
        checks.append(validate.Regexp(f.pattern))
    return fields.String(validate=checks, **common)


@functools.lru_cache(maxsize=64)
def _build(spec_root: str, unit_code: str) -> type[Schema]:
    from ..spec import load_spec

    spec = load_spec(spec_root)
    return build_unit_schema(spec, spec.unit(unit_code))


def build_unit_schema(spec: Spec, unit: Unit) -> type[Schema]:
    """A new marshmallow Schema class for one record of ``unit``; unknown keys are refused."""
    attrs: dict[str, Any] = {f.id: _field(spec, f) for f in unit.fields}
    attrs["Meta"] = type("Meta", (), {"unknown": RAISE, "ordered": True})
    return type(f"{unit.name}Schema", (Schema,), attrs)


def unit_marshmallow_schema(spec: Spec, unit: Unit) -> type[Schema]:
    """The (cached) marshmallow Schema class of ``unit``."""
    if spec.root:
        return _build(spec.root, unit.code)
    return build_unit_schema(spec, unit)


def unit_schemas(spec: Spec) -> dict[str, type[Schema]]:
    """Schema classes of every unit, by unit name."""
    return {u.name: unit_marshmallow_schema(spec, u) for u in spec.units}
