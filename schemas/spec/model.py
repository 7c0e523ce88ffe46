"""The loaded standard: immutable objects built once from interface_specs/."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field as dc_field
from typing import Any, Iterator, Mapping

FIELD_TYPES = ("string", "integer", "decimal", "date", "datetime", "code")
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Field:
    """One field of a unit; its position is its column in delimited files (0-based)."""

    id: str
    name_zh: str
    name_en: str
    type: str
    position: int
    required: bool
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    domain: str | None = None
    area_level: str | None = None
    pattern: str | None = None
    min: int | None = None
    max: int | None = None
    opening_of: str | None = None
    watch: bool = False
    description_zh: str = ""
    description_en: str = ""

    @property
    def type_label(self) -> str:
        """The type as the spec document shows it, e.g. ``decimal(16,2)`` or ``string(30)``."""
        if self.type == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.length:
            return f"{self.type}({self.length})"
        return self.type

    @property
    def max_chars(self) -> int | None:
        """Longest lexical form allowed, counting sign and point for numbers."""
        if self.type == "decimal" and self.precision is not None:
            return self.precision + (1 if self.scale else 0) + 1
        if self.type == "integer" and self.length is not None:
            return self.length + 1
        return self.length


@dataclass(frozen=True)
class Rule:
    """A record, file or cross-unit rule with a stable id."""

    id: str
    scope: str  # record | file | cross_unit
    severity: str
    message_zh: str
    message_en: str
    unit: str | None = None  # unit name for record/file rules
    assert_expr: str | None = None
    when_expr: str | None = None
    check: str | None = None
    fields: tuple[str, ...] = ()
    field: str | None = None
    left: Mapping[str, Any] | None = None
    right: Mapping[str, Any] | None = None
    by: tuple[str, ...] = ()
    requires: str | None = None


@dataclass(frozen=True)
class Unit:
    """An interface unit of chapter 3: its layout, keys and rules."""

    code: str
    name: str
    name_zh: str
    name_en: str
    chapter: str
    direction: str
    sender: str
    granularity: str
    primary_key: tuple[str, ...]
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...]
    description_zh: str = ""
    description_en: str = ""
    parent: Mapping[str, Any] | None = None
    source: str = ""

    def field(self, field_id: str) -> Field:
        """The field with this id (KeyError if there is none)."""
        for f in self.fields:
            if f.id == field_id:
                return f
        raise KeyError(field_id)

    def has_field(self, field_id: str) -> bool:
        """Whether the unit has a field with this id."""
        return any(f.id == field_id for f in self.fields)

    @property
    def field_ids(self) -> tuple[str, ...]:
        """Field ids in column order."""
        return tuple(f.id for f in self.fields)

    @property
    def label(self) -> str:
        """``32001 VIP_SUMMARY`` — how people refer to a unit."""
        return f"{self.code} {self.name}"


@dataclass(frozen=True)
class CodeEntry:
    """One code of a code list version."""

    code: str
    name_zh: str
    name_en: str
    parent: str | None = None
    level: str | None = None
    description_zh: str = ""
    description_en: str = ""


@dataclass(frozen=True)
class CodeListVersion:
    """A code list as in force from its effective date."""

    version: str
    effective_from: dt.date
    codes: Mapping[str, CodeEntry]
    note_zh: str = ""
    note_en: str = ""
    based_on: str | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def children(self, parent: str | None) -> list[CodeEntry]:
        """Codes whose parent is ``parent`` (top level when None), in list order."""
        return [c for c in self.codes.values() if c.parent == parent]

    def at_level(self, level: str) -> list[CodeEntry]:
        """Codes carrying this ``level`` attribute, in list order."""
        return [c for c in self.codes.values() if c.level == level]

    def leaves(self) -> list[CodeEntry]:
        """Codes no other code names as parent (all codes of a flat list), in list order."""
        parents = {c.parent for c in self.codes.values() if c.parent}
        return [c for c in self.codes.values() if c.code not in parents]

    def field_codes(self, area_level: str | None = None) -> frozenset[str]:
        """The codes a data field may carry: the level it names, else the leaves.

        A hierarchical list's upper tiers (product families, billing-item classes) group
        codes for reporting; records always carry the most specific code.
        """
        if area_level:
            return frozenset(c.code for c in self.codes.values() if c.level == area_level)
        return frozenset(c.code for c in self.leaves())


@dataclass(frozen=True)
class CodeDomain:
    """A code domain of chapter 4 (or an extension) with all its versions."""

    domain: str
    number: int | None
    extension: bool
    name_zh: str
    name_en: str
    definition_zh: str
    definition_en: str
    kind: str  # enumerated | pattern
    max_length: int
    versions: tuple[CodeListVersion, ...]
    pattern: str | None = None
    core_model_fields: tuple[str, ...] = ()
    source: str = ""

    def version_on(self, day: dt.date) -> CodeListVersion:
        """The version in force on ``day``: the latest effective on or before it."""
        chosen = self.versions[0]
        for v in self.versions:
            if v.effective_from <= day:
                chosen = v
        return chosen

    @property
    def current(self) -> CodeListVersion:
        """The newest version."""
        return self.versions[-1]

    def get_version(self, version: str) -> CodeListVersion:
        """The version with this label (KeyError if there is none)."""
        for v in self.versions:
            if v.version == version:
                return v
        raise KeyError(version)

    def accepts(self, code: str, day: dt.date) -> bool:
        """Whether ``code`` is valid on ``day``."""
        if self.kind == "pattern":
            return bool(self.pattern and re.fullmatch(self.pattern, code))
        return code in self.version_on(day).codes


@dataclass(frozen=True)
class ErrorCode:
    """An entry of the error catalogue (errors.yaml)."""

    code: str
    tier: int
    severity: str
    title_zh: str
    title_en: str
    message_zh: str
    message_en: str
    retired: bool = False


@dataclass(frozen=True)
class CycleFormat:
    """How cycle ids of one reporting frequency are written."""

    freq: str
    pattern: str
    example: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Tier:
    """A tier of checks."""

    number: int
    name_zh: str
    name_en: str
    stops_delivery: bool


@dataclass(frozen=True)
class Spec:
    """The whole standard, as loaded from interface_specs/."""

    version: str
    title_zh: str
    title_en: str
    based_on_zh: str
    based_on_en: str
    published: dt.date
    namespace: str
    units: tuple[Unit, ...]
    domains: Mapping[str, CodeDomain]
    errors: Mapping[str, ErrorCode]
    tiers: Mapping[int, Tier]
    cross_rules: tuple[Rule, ...]
    cycle_formats: Mapping[str, CycleFormat]
    root: str = ""
    # Code-list versions added after the YAML was loaded (see loader.with_code_versions), as
    # canonical JSON: worker processes rebuild the same Spec from the root and this text.
    code_additions: str = ""
    _by_key: dict[str, Unit] = dc_field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for u in self.units:
            self._by_key[u.code] = u
            self._by_key[u.name] = u

    def unit(self, code_or_name: str) -> Unit:
        """The unit with this code (``32001``) or name (``VIP_SUMMARY``)."""
        try:
            return self._by_key[code_or_name]
        except KeyError:
            raise KeyError(f"no unit {code_or_name!r}") from None

    def has_unit(self, code_or_name: str) -> bool:
        """Whether a unit with this code or name exists."""
        return code_or_name in self._by_key

    def domain(self, name: str) -> CodeDomain:
        """The code domain with this id."""
        return self.domains[name]

    @property
    def upload_units(self) -> tuple[Unit, ...]:
        """Units provinces send up."""
        return tuple(u for u in self.units if u.direction == "up")

    @property
    def download_units(self) -> tuple[Unit, ...]:
        """Units HQ sends down."""
        return tuple(u for u in self.units if u.direction == "down")

    @property
    def standard_domains(self) -> list[CodeDomain]:
        """The 50 domains of chapter 4, by number."""
        return sorted((d for d in self.domains.values() if not d.extension), key=lambda d: d.number or 0)

    @property
    def extension_domains(self) -> list[CodeDomain]:
        """Domains this project adds, by name."""
        return sorted((d for d in self.domains.values() if d.extension), key=lambda d: d.domain)

    def all_rules(self) -> Iterator[Rule]:
        """Every unit rule, then every cross-unit rule."""
        for u in self.units:
            yield from u.rules
        yield from self.cross_rules

    def rule(self, rule_id: str) -> Rule:
        """The unit or cross-unit rule with this id."""
        for r in self.all_rules():
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def referencing_fields(self, domain: str) -> list[tuple[Unit, Field]]:
        """Every (unit, field) whose values come from ``domain``."""
        return [(u, f) for u in self.units for f in u.fields if f.domain == domain]

    def cycle_freq(self, cycle_id: str) -> str | None:
        """The reporting frequency a cycle id's form implies (``M``, ``Q``, ``H``, ``Y``)."""
        for cf in self.cycle_formats.values():
            if re.fullmatch(cf.pattern, cycle_id):
                return cf.freq
        return None
