"""Load interface_specs/ into a :class:`Spec`, checking every file against its format.

A wrong spec must never half-load: any problem raises :class:`SpecError` naming the file
and the key, so the person editing the standard sees at once what to fix.
"""
from __future__ import annotations

import builtins  # _Ctx has a method named str; annotations after it need the type
import dataclasses
import datetime as dt
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .._exceptions import ExpressionError, SpecError
from . import expressions
from .model import (
    FIELD_TYPES, SEVERITIES, CodeDomain, CodeEntry, CodeListVersion, CycleFormat, ErrorCode, Field,
    Rule, Spec, Tier, Unit,
)

UNIT_KEYS = {"code", "name", "name_zh", "name_en", "chapter", "direction", "sender", "granularity",
             "primary_key", "parent", "description_zh", "description_en", "fields", "rules"}
FIELD_KEYS = {"id", "name_zh", "name_en", "type", "length", "precision", "scale", "required", "domain",
              "area_level", "pattern", "min", "max", "opening_of", "watch", "description_zh", "description_en"}
RULE_KEYS = {"id", "scope", "severity", "assert", "when", "check", "fields", "field", "message_zh", "message_en"}
CROSS_KEYS = {"id", "check", "severity", "left", "right", "by", "requires", "message_zh", "message_en"}
DOMAIN_KEYS = {"domain", "number", "extension", "name_zh", "name_en", "definition_zh", "definition_en", "kind",
               "pattern", "max_length", "core_model_fields", "versions"}
VERSION_KEYS = {"version", "effective_from", "note_zh", "note_en", "codes", "based_on", "add", "update", "remove"}
CODE_KEYS = {"code", "name_zh", "name_en", "parent", "level", "description_zh", "description_en"}
ERROR_KEYS = {"code", "tier", "severity", "title_zh", "title_en", "message_zh", "message_en", "retired"}

RECORD_CHECKS = {"network_in_province"}
FILE_CHECKS = {"unique", "covers_sender_networks"}
CROSS_CHECKS = {"sum_equals", "sum_at_most", "exists", "exactly_one", "list_covered", "count_distinct_equals"}
STANDARD_DOMAIN_COUNT = 50


def default_spec_dir() -> Path:
    """Where the standard lives: ``$KAM_SPEC_DIR`` if set, else the installed interface_specs."""
    override = os.environ.get("KAM_SPEC_DIR")
    if override:
        return Path(override)
    import interface_specs

    return interface_specs.SPEC_DIR


@functools.lru_cache(maxsize=4)
def _load_cached(root: str) -> Spec:
    return SpecLoader(Path(root)).load()


def load_spec(root: str | os.PathLike[str] | None = None, code_additions: str = "") -> Spec:
    """Load and check the standard (cached per directory: load once at start-up).

    ``code_additions`` is a Spec's :attr:`~.model.Spec.code_additions` text: the same
    code-list versions are laid over the files again (how worker processes rebuild a Spec).
    """
    path = Path(root) if root is not None else default_spec_dir()
    root_key = str(path.resolve())
    return _with_additions_cached(root_key, code_additions) if code_additions else _load_cached(root_key)


@functools.lru_cache(maxsize=8)
def _with_additions_cached(root: str, code_additions: str) -> Spec:
    return with_code_versions(_load_cached(root), json.loads(code_additions))


def _json_default(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON: {value!r}")


def with_code_versions(spec: Spec, additions: Iterable[Mapping[str, Any]]) -> Spec:
    """The standard with more code-list versions, each checked as if it were in the YAML.

    Each addition is ``{"domain": "Domain_...", "version": {...}}`` where the version has the
    keys of a ``versions:`` entry (a full list of ``codes``, or ``based_on`` with ``add``,
    ``update``, ``remove``). Versions are appended in order after the domain's own; each must
    take effect after the one before it. A bad addition raises :class:`SpecError` naming
    ``domain`` and the key, and nothing is applied. The files are never changed.
    """
    items = [{"domain": str(a["domain"]), "version": dict(a["version"])} for a in additions]
    if not items:
        return spec
    loader = SpecLoader(Path(spec.root) if spec.root else default_spec_dir())
    domains = dict(spec.domains)
    for i, item in enumerate(items):
        name = item["domain"]
        where = f"additions[{i}] ({name})"
        if name not in domains:
            raise SpecError(f"there is no code domain {name!r}", where, "domain")
        dom = domains[name]
        raw = dict(item["version"])
        if isinstance(raw.get("effective_from"), str):
            try:
                raw["effective_from"] = dt.date.fromisoformat(raw["effective_from"])
            except ValueError:
                raise SpecError(f"effective_from {raw['effective_from']!r} is not a date (YYYY-MM-DD)", where,
                                "effective_from") from None
        version = loader._version(_Ctx(raw, where, "version"), list(dom.versions), dom.kind)
        last = dom.versions[-1]
        if version.effective_from <= last.effective_from:
            raise SpecError(f"version {version.version} must take effect after {last.version} "
                            f"({last.effective_from.isoformat()})", where, "version.effective_from")
        longest = max((len(code) for code in version.codes), default=0)
        if dom.kind == "enumerated" and longest > dom.max_length:
            raise SpecError(f"codes of {name} are at most {dom.max_length} characters; "
                            f"{version.version} has one of {longest}", where, "version")
        domains[name] = dataclasses.replace(dom, versions=dom.versions + (version,))
    earlier = json.loads(spec.code_additions) if spec.code_additions else []
    text = json.dumps(earlier + items, ensure_ascii=False, sort_keys=True, default=_json_default)
    return dataclasses.replace(spec, domains=domains, code_additions=text, _by_key={})


class _Ctx:
    """Reads a mapping with the file and key path at hand for error messages."""

    def __init__(self, data: Any, file: str, key: str = "") -> None:
        self.data = data
        self.file = file
        self.key = key

    def fail(self, message: str, key: str | None = None) -> SpecError:
        return SpecError(message, self.file, key if key is not None else self.key)

    def sub(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.key}[{key}]"
        return f"{self.key}.{key}" if self.key else key

    def mapping(self, allowed: set[str], required: Iterable[str]) -> Mapping[str, Any]:
        if not isinstance(self.data, Mapping):
            raise self.fail(f"expected a mapping, found {type(self.data).__name__}")
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})", self.sub(unknown[0]))
        for k in required:
            if k not in self.data or self.data[k] is None or self.data[k] == "":
                raise self.fail(f"required key {k!r} is missing", self.sub(k))
        return self.data

    def str(self, k: str, default: str | None = None) -> str:
        v = self.data.get(k, default) if isinstance(self.data, Mapping) else None
        if v is None:
            if default is not None:
                return default
            raise self.fail(f"required key {k!r} is missing", self.sub(k))
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise self.fail(f"expected text, found {type(v).__name__}", self.sub(k))
        return str(v).strip() if isinstance(v, str) else str(v)

    def opt_int(self, k: builtins.str) -> int | None:
        v = self.data.get(k)
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(f"expected an integer, found {v!r}", self.sub(k))
        return v

    def str_list(self, k: builtins.str, required: bool = False) -> tuple[builtins.str, ...]:
        v = self.data.get(k)
        if v is None:
            if required:
                raise self.fail(f"required key {k!r} is missing", self.sub(k))
            return ()
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail("expected a list of text", self.sub(k))
        return tuple(v)

    def date(self, k: builtins.str) -> dt.date:
        v = self.data.get(k)
        if isinstance(v, dt.date):
            return v
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v)
            except ValueError:
                pass
        raise self.fail(f"expected a date YYYY-MM-DD, found {v!r}", self.sub(k))


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise SpecError("file is missing", str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SpecError(f"not valid YAML: {where}{getattr(exc, 'problem', exc)}", str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8: {exc}", str(path)) from None


class SpecLoader:
    """Reads and cross-checks every file of one interface_specs directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def load(self) -> Spec:
        """Load everything; raise SpecError on the first problem."""
        if not self.root.is_dir():
            raise SpecError("spec directory does not exist", str(self.root))
        head_path = self.root / "spec.yaml"
        head = _Ctx(_read_yaml(head_path), self.rel(head_path))
        h = head.mapping({"spec_version", "title_zh", "title_en", "based_on_zh", "based_on_en", "published",
                          "xml_namespace", "units", "cycle_formats"},
                         ["spec_version", "title_zh", "title_en", "xml_namespace", "units", "cycle_formats"])
        version = head.str("spec_version")
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            raise head.fail(f"spec_version must be MAJOR.MINOR.PATCH, found {version!r}", "spec_version")
        cycle_formats = self._cycle_formats(head)
        domains = self._domains()
        errors, tiers = self._errors()
        unit_codes = head.str_list("units", required=True)
        units = tuple(self._unit(code, domains, errors) for code in unit_codes)
        self._no_stray_unit_files(unit_codes)
        names = [u.name for u in units]
        if len(set(names)) != len(names):
            raise head.fail("two units share a name", "units")
        cross = self._cross_rules(units, errors)
        published = head.date("published") if h.get("published") else dt.date.today()
        return Spec(
            version=version, title_zh=head.str("title_zh"), title_en=head.str("title_en"),
            based_on_zh=head.str("based_on_zh", ""), based_on_en=head.str("based_on_en", ""),
            published=published, namespace=head.str("xml_namespace"), units=units, domains=domains,
            errors=errors, tiers=tiers, cross_rules=cross, cycle_formats=cycle_formats, root=str(self.root),
        )

    # -- head -------------------------------------------------------------------------
    def _cycle_formats(self, head: _Ctx) -> dict[str, CycleFormat]:
        raw = head.data["cycle_formats"]
        if not isinstance(raw, Mapping) or not raw:
            raise head.fail("expected a mapping of frequency to format", "cycle_formats")
        out = {}
        for freq, body in raw.items():
            c = _Ctx(body, head.file, f"cycle_formats.{freq}")
            c.mapping({"pattern", "example", "name_zh", "name_en"}, ["pattern", "example", "name_zh", "name_en"])
            pattern = c.str("pattern")
            _check_regex(pattern, c, "pattern")
            if not re.fullmatch(pattern, c.str("example")):
                raise c.fail("the example does not match the pattern", c.sub("example"))
            out[str(freq)] = CycleFormat(str(freq), pattern, c.str("example"), c.str("name_zh"), c.str("name_en"))
        return out

    # -- units ------------------------------------------------------------------------
    def _no_stray_unit_files(self, codes: tuple[str, ...]) -> None:
        for p in sorted((self.root / "units").glob("*.yaml")):
            if p.name.split("_", 1)[0] not in codes:
                raise SpecError("unit file is not listed in spec.yaml units", self.rel(p))

    def _unit(self, code: str, domains: Mapping[str, CodeDomain], errors: Mapping[str, ErrorCode]) -> Unit:
        matches = sorted((self.root / "units").glob(f"{code}_*.yaml"))
        if len(matches) != 1:
            raise SpecError(f"expected exactly one file units/{code}_<NAME>.yaml, found {len(matches)}",
                            self.rel(self.root / "spec.yaml"), "units")
        path = matches[0]
        c = _Ctx(_read_yaml(path), self.rel(path))
        d = c.mapping(UNIT_KEYS, ["code", "name", "name_zh", "name_en", "chapter", "direction", "sender",
                                  "granularity", "primary_key", "fields"])
        if c.str("code") != code:
            raise c.fail(f"code {c.str('code')!r} differs from the file name's {code!r}", "code")
        if not re.fullmatch(r"\d{5}", code):
            raise c.fail("a unit code has five digits", "code")
        name = c.str("name")
        if path.stem != f"{code}_{name}":
            raise c.fail(f"file should be named {code}_{name}.yaml", "name")
        if c.str("direction") not in ("up", "down"):
            raise c.fail("direction must be 'up' or 'down'", "direction")
        if c.str("sender") not in ("group", "province"):
            raise c.fail("sender must be 'group' or 'province'", "sender")
        raw_fields = d["fields"]
        if not isinstance(raw_fields, list) or not raw_fields:
            raise c.fail("fields must be a non-empty list", "fields")
        fields = tuple(self._field(_Ctx(f, c.file, f"fields[{i}]"), i, domains) for i, f in enumerate(raw_fields))
        ids = [f.id for f in fields]
        dup = {x for x in ids if ids.count(x) > 1}
        if dup:
            raise c.fail(f"field {sorted(dup)[0]!r} is defined twice", "fields")
        pk = c.str_list("primary_key", required=True)
        for k in pk:
            if k not in ids:
                raise c.fail(f"primary key field {k!r} is not a field of the unit", "primary_key")
        parent = d.get("parent")
        if parent is not None:
            pc = _Ctx(parent, c.file, "parent")
            pc.mapping({"unit", "key"}, ["unit", "key"])
            for k in pc.str_list("key", required=True):
                if k not in ids:
                    raise pc.fail(f"parent key field {k!r} is not a field of the unit", "parent.key")
        rules = tuple(self._unit_rule(_Ctx(r, c.file, f"rules[{i}]"), name, code, fields, errors)
                      for i, r in enumerate(d.get("rules") or []))
        for f in fields:
            if f.opening_of and f.opening_of not in ids:
                raise c.fail(f"opening_of {f.opening_of!r} is not a field of the unit", f"fields[{f.position}].opening_of")
        rids = [r.id for r in rules]
        if len(set(rids)) != len(rids):
            raise c.fail("two rules share an id", "rules")
        return Unit(code=code, name=name, name_zh=c.str("name_zh"), name_en=c.str("name_en"),
                    chapter=c.str("chapter"), direction=c.str("direction"), sender=c.str("sender"),
                    granularity=c.str("granularity"), primary_key=pk, fields=fields, rules=rules,
                    description_zh=c.str("description_zh", ""), description_en=c.str("description_en", ""),
                    parent=parent, source=c.file)

    def _field(self, c: _Ctx, position: int, domains: Mapping[str, CodeDomain]) -> Field:
        d = c.mapping(FIELD_KEYS, ["id", "name_zh", "name_en", "type"])
        fid = c.str("id")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", fid):
            raise c.fail(f"field id {fid!r} must be upper case letters, digits and _", c.sub("id"))
        ftype = c.str("type")
        if ftype not in FIELD_TYPES:
            raise c.fail(f"type {ftype!r} is not one of {', '.join(FIELD_TYPES)}", c.sub("type"))
        if "required" not in d or not isinstance(d["required"], bool):
            raise c.fail("required must be true or false", c.sub("required"))
        length, precision, scale = c.opt_int("length"), c.opt_int("precision"), c.opt_int("scale")
        if ftype == "decimal":
            if precision is None or scale is None or not 0 <= scale < precision:
                raise c.fail("a decimal needs precision and scale with 0 <= scale < precision", c.sub("precision"))
        elif length is None or length <= 0:
            raise c.fail(f"a {ftype} field needs a positive length", c.sub("length"))
        domain = d.get("domain")
        if ftype == "code":
            if not domain:
                raise c.fail("a code field needs a domain", c.sub("domain"))
            if domain not in domains:
                raise c.fail(f"unknown code domain {domain!r}", c.sub("domain"))
        elif domain:
            raise c.fail("only code fields have a domain", c.sub("domain"))
        area_level = d.get("area_level")
        if domain == "Domain_area_id" and area_level not in ("province", "local_network"):
            raise c.fail("a Domain_area_id field needs area_level: province or local_network", c.sub("area_level"))
        pattern = d.get("pattern")
        if pattern is not None:
            _check_regex(pattern, c, c.sub("pattern"))
        return Field(id=fid, name_zh=c.str("name_zh"), name_en=c.str("name_en"), type=ftype, position=position,
                     required=d["required"], length=length, precision=precision, scale=scale, domain=domain,
                     area_level=area_level, pattern=pattern, min=c.opt_int("min"), max=c.opt_int("max"),
                     opening_of=d.get("opening_of"), watch=bool(d.get("watch")),
                     description_zh=c.str("description_zh", ""), description_en=c.str("description_en", ""))

    def _unit_rule(self, c: _Ctx, unit: str, code: str, fields: tuple[Field, ...],
                   errors: Mapping[str, ErrorCode]) -> Rule:
        d = c.mapping(RULE_KEYS, ["id", "scope", "severity", "message_zh", "message_en"])
        rid = c.str("id")
        if not re.fullmatch(rf"R{code}-\d\d", rid):
            raise c.fail(f"rule id {rid!r} must look like R{code}-01", c.sub("id"))
        if rid in errors:
            raise c.fail(f"rule id {rid!r} clashes with the error catalogue", c.sub("id"))
        ids = {f.id for f in fields}
        scope, severity = c.str("scope"), c.str("severity")
        if severity not in SEVERITIES:
            raise c.fail("severity must be error or warning", c.sub("severity"))
        check = d.get("check")
        assert_expr, when_expr = d.get("assert"), d.get("when")
        if scope == "record":
            if bool(check) == bool(assert_expr):
                raise c.fail("a record rule has either assert or check", c.sub("assert"))
            if check and check not in RECORD_CHECKS:
                raise c.fail(f"record check {check!r} is not one of {', '.join(sorted(RECORD_CHECKS))}", c.sub("check"))
            for k, text in (("assert", assert_expr), ("when", when_expr)):
                if text:
                    try:
                        expressions.parse(str(text), ids.__contains__)
                    except ExpressionError as exc:
                        raise c.fail(str(exc), c.sub(k)) from None
        elif scope == "file":
            if check not in FILE_CHECKS:
                raise c.fail(f"file check must be one of {', '.join(sorted(FILE_CHECKS))}", c.sub("check"))
            if assert_expr or when_expr:
                raise c.fail("file rules have no assert/when", c.sub("assert"))
        else:
            raise c.fail("scope must be record or file", c.sub("scope"))
        rfields = c.str_list("fields")
        field = d.get("field")
        for f in (*rfields, *([field] if field else [])):
            if f not in ids:
                raise c.fail(f"field {f!r} is not a field of the unit", c.sub("fields"))
        if check in ("unique",) and not rfields:
            raise c.fail("a unique check needs fields", c.sub("fields"))
        if check == "network_in_province" and len(rfields) != 2:
            raise c.fail("network_in_province needs fields: [province field, local network field]", c.sub("fields"))
        if check == "covers_sender_networks" and not field:
            raise c.fail("covers_sender_networks needs field", c.sub("field"))
        self._check_placeholders(c, ids | {"left", "right"})
        return Rule(id=rid, scope=scope, severity=severity, message_zh=c.str("message_zh"),
                    message_en=c.str("message_en"), unit=unit, assert_expr=assert_expr, when_expr=when_expr,
                    check=check, fields=rfields, field=field or (rfields[-1] if rfields else None))

    @staticmethod
    def _check_placeholders(c: _Ctx, allowed: set[str]) -> None:
        for k in ("message_zh", "message_en"):
            for ph in re.findall(r"\{([^}]*)\}", c.str(k)):
                if ph not in allowed:
                    raise c.fail(f"placeholder {{{ph}}} names no field", c.sub(k))

    # -- cross-unit rules -------------------------------------------------------------
    def _cross_rules(self, units: tuple[Unit, ...], errors: Mapping[str, ErrorCode]) -> tuple[Rule, ...]:
        path = self.root / "rules" / "cross_unit.yaml"
        top = _Ctx(_read_yaml(path), self.rel(path))
        top.mapping({"rules"}, ["rules"])
        by_name = {u.name: u for u in units}
        out: list[Rule] = []
        for i, raw in enumerate(top.data["rules"]):
            c = _Ctx(raw, top.file, f"rules[{i}]")
            d = c.mapping(CROSS_KEYS, ["id", "check", "severity", "left", "right", "message_zh", "message_en"])
            rid = c.str("id")
            if not re.fullmatch(r"X-\d{3}", rid):
                raise c.fail(f"cross-unit rule id {rid!r} must look like X-001", c.sub("id"))
            if rid in errors or any(r.id == rid for r in out):
                raise c.fail(f"rule id {rid!r} is used twice", c.sub("id"))
            check = c.str("check")
            if check not in CROSS_CHECKS:
                raise c.fail(f"check must be one of {', '.join(sorted(CROSS_CHECKS))}", c.sub("check"))
            if c.str("severity") not in SEVERITIES:
                raise c.fail("severity must be error or warning", c.sub("severity"))
            by = c.str_list("by")
            allowed_ph = {"left", "right", "expected", *by}
            for side in ("left", "right"):
                sc = _Ctx(d[side], c.file, c.sub(side))
                s = sc.mapping({"unit", "field", "key", "where"}, ["unit"])
                unit = by_name.get(sc.str("unit"))
                if unit is None:
                    raise sc.fail(f"unknown unit {sc.str('unit')!r}", sc.sub("unit"))
                names = [*(sc.str_list("key")), *([s["field"]] if s.get("field") else []), *by]
                for n in names:
                    if not unit.has_field(n):
                        raise sc.fail(f"{n!r} is not a field of {unit.name}", sc.sub("field"))
                allowed_ph.update(sc.str_list("key"))
                if s.get("where"):
                    try:
                        expressions.parse(str(s["where"]), unit.has_field)
                    except ExpressionError as exc:
                        raise sc.fail(str(exc), sc.sub("where")) from None
            if check in ("sum_equals", "sum_at_most", "count_distinct_equals"):
                if not by or not d["left"].get("field") or not d["right"].get("field"):
                    raise c.fail(f"{check} needs left.field, right.field and by", c.sub("by"))
            else:
                if not d["left"].get("key") or not d["right"].get("key"):
                    raise c.fail(f"{check} needs left.key and right.key", c.sub("left"))
                if len(d["left"]["key"]) != len(d["right"]["key"]):
                    raise c.fail("left.key and right.key must have the same length", c.sub("right"))
            requires = d.get("requires")
            if requires not in (None, "list"):
                raise c.fail("requires may only be 'list'", c.sub("requires"))
            self._check_placeholders(c, allowed_ph)
            out.append(Rule(id=rid, scope="cross_unit", severity=c.str("severity"), message_zh=c.str("message_zh"),
                            message_en=c.str("message_en"), check=check, left=d["left"], right=d["right"], by=by,
                            requires=requires))
        return tuple(out)

    # -- errors -----------------------------------------------------------------------
    def _errors(self) -> tuple[dict[str, ErrorCode], dict[int, Tier]]:
        path = self.root / "errors.yaml"
        top = _Ctx(_read_yaml(path), self.rel(path))
        top.mapping({"tiers", "codes"}, ["tiers", "codes"])
        tiers: dict[int, Tier] = {}
        for num, body in top.data["tiers"].items():
            tc = _Ctx(body, top.file, f"tiers.{num}")
            tc.mapping({"name_zh", "name_en", "stops_delivery"}, ["name_zh", "name_en"])
            tiers[int(num)] = Tier(int(num), tc.str("name_zh"), tc.str("name_en"), bool(body.get("stops_delivery")))
        codes: dict[str, ErrorCode] = {}
        placeholders = {"file", "line", "field", "value", "expected"}
        for i, raw in enumerate(top.data["codes"]):
            c = _Ctx(raw, top.file, f"codes[{i}]")
            d = c.mapping(ERROR_KEYS, ["code", "tier", "severity", "title_zh", "title_en", "message_zh", "message_en"])
            code = c.str("code")
            if not re.fullmatch(r"[EW]\d{3}", code):
                raise c.fail(f"error code {code!r} must look like E101 or W301", c.sub("code"))
            if code in codes:
                raise c.fail(f"error code {code!r} is defined twice", c.sub("code"))
            tier = c.opt_int("tier")
            if tier not in tiers or str(tier) != code[1]:
                raise c.fail(f"tier {tier} does not match the code {code}", c.sub("tier"))
            severity = c.str("severity")
            if severity != ("error" if code[0] == "E" else "warning"):
                raise c.fail("E codes are errors and W codes warnings", c.sub("severity"))
            self._check_placeholders(c, placeholders)
            codes[code] = ErrorCode(code, tier, severity, c.str("title_zh"), c.str("title_en"), c.str("message_zh"),
                                    c.str("message_en"), bool(d.get("retired")))
        return codes, tiers

    # -- code lists -------------------------------------------------------------------
    def _domains(self) -> dict[str, CodeDomain]:
        folder = self.root / "code_lists"
        domains: dict[str, CodeDomain] = {}
        numbers: dict[int, str] = {}
        for path in sorted(folder.glob("*.yaml")):
            dom = self._domain(path)
            domains[dom.domain] = dom
            if dom.number is not None:
                if dom.number in numbers:
                    raise SpecError(f"number {dom.number} is also used by {numbers[dom.number]}", self.rel(path), "number")
                numbers[dom.number] = dom.domain
        missing = sorted(set(range(1, STANDARD_DOMAIN_COUNT + 1)) - set(numbers))
        if missing:
            raise SpecError(f"code domains of chapter 4 missing: numbers {missing}", self.rel(folder))
        return domains

    def _domain(self, path: Path) -> CodeDomain:
        c = _Ctx(_read_yaml(path), self.rel(path))
        d = c.mapping(DOMAIN_KEYS, ["domain", "name_zh", "name_en", "definition_zh", "definition_en", "kind",
                                    "max_length", "versions"])
        name = c.str("domain")
        if path.stem != name:
            raise c.fail(f"file should be named {name}.yaml", "domain")
        extension = bool(d.get("extension"))
        number = c.opt_int("number")
        if extension:
            if number is not None or not name.startswith("Ext_"):
                raise c.fail("an extension domain is named Ext_... and has number: null", "number")
        elif number is None or not 1 <= number <= STANDARD_DOMAIN_COUNT or not name.startswith("Domain_"):
            raise c.fail(f"a standard domain is named Domain_... and has a number 1..{STANDARD_DOMAIN_COUNT}", "number")
        kind = c.str("kind")
        pattern = d.get("pattern")
        if kind == "pattern":
            if not pattern:
                raise c.fail("a pattern domain needs a pattern", "pattern")
            _check_regex(pattern, c, "pattern")
        elif kind != "enumerated":
            raise c.fail("kind must be enumerated or pattern", "kind")
        max_length = c.opt_int("max_length") or 0
        raw_versions = d["versions"]
        if not isinstance(raw_versions, list) or not raw_versions:
            raise c.fail("versions must be a non-empty list", "versions")
        versions: list[CodeListVersion] = []
        for i, rv in enumerate(raw_versions):
            versions.append(self._version(_Ctx(rv, c.file, f"versions[{i}]"), versions, kind))
        for a, b in zip(versions, versions[1:]):
            if b.effective_from <= a.effective_from:
                raise c.fail(f"version {b.version} is not effective after {a.version}", "versions")
        if kind == "enumerated":
            longest = max((len(code) for v in versions for code in v.codes), default=0)
            if longest != max_length:
                raise c.fail(f"max_length is {max_length} but the longest code has {longest} characters", "max_length")
        return CodeDomain(domain=name, number=number, extension=extension, name_zh=c.str("name_zh"),
                          name_en=c.str("name_en"), definition_zh=c.str("definition_zh"),
                          definition_en=c.str("definition_en"), kind=kind, max_length=max_length,
                          versions=tuple(versions), pattern=pattern,
                          core_model_fields=c.str_list("core_model_fields"), source=c.file)

    def _version(self, c: _Ctx, earlier: list[CodeListVersion], kind: str) -> CodeListVersion:
        d = c.mapping(VERSION_KEYS, ["version", "effective_from"])
        label = c.str("version")
        if any(v.version == label for v in earlier):
            raise c.fail(f"version {label!r} appears twice", c.sub("version"))
        based_on = d.get("based_on")
        added: list[str] = []
        removed: list[str] = []
        updated: list[str] = []
        if based_on is not None:
            base = next((v for v in earlier if v.version == str(based_on)), None)
            if base is None:
                raise c.fail(f"based_on {based_on!r} is not an earlier version", c.sub("based_on"))
            if d.get("codes"):
                raise c.fail("a delta version has add/update/remove, not codes", c.sub("codes"))
            codes = dict(base.codes)
            for code in c.str_list("remove"):
                if code not in codes:
                    raise c.fail(f"cannot remove {code!r}: not in version {based_on}", c.sub("remove"))
                del codes[code]
                removed.append(code)
            for i, raw in enumerate(d.get("update") or []):
                uc = _Ctx(raw, c.file, f"{c.sub('update')}[{i}]")
                u = uc.mapping(CODE_KEYS, ["code"])
                code = uc.str("code")
                if code not in codes:
                    raise uc.fail(f"cannot update {code!r}: not in version {based_on}", uc.sub("code"))
                old = codes[code]
                merged = {k: getattr(old, k) for k in ("name_zh", "name_en", "parent", "level", "description_zh",
                                                       "description_en")}
                merged.update({k: (str(v) if v is not None else None) for k, v in u.items() if k != "code"})
                codes[code] = CodeEntry(code=code, **merged)
                updated.append(code)
            for i, raw in enumerate(d.get("add") or []):
                entry = self._code(_Ctx(raw, c.file, f"{c.sub('add')}[{i}]"))
                if entry.code in codes:
                    raise c.fail(f"cannot add {entry.code!r}: already in version {based_on}", c.sub("add"))
                codes[entry.code] = entry
                added.append(entry.code)
        else:
            if d.get("add") or d.get("update") or d.get("remove"):
                raise c.fail("add/update/remove need based_on", c.sub("based_on"))
            raw_codes = d.get("codes")
            if raw_codes is None or (kind == "enumerated" and not raw_codes):
                raise c.fail("a full version lists its codes", c.sub("codes"))
            codes = {}
            for i, raw in enumerate(raw_codes):
                entry = self._code(_Ctx(raw, c.file, f"{c.sub('codes')}[{i}]"))
                if entry.code in codes:
                    raise c.fail(f"code {entry.code!r} appears twice", c.sub("codes"))
                codes[entry.code] = entry
        for entry in codes.values():
            if entry.parent is not None and entry.parent not in codes:
                raise c.fail(f"code {entry.code!r} has parent {entry.parent!r}, which is not in the version",
                             c.sub("codes"))
        return CodeListVersion(version=label, effective_from=c.date("effective_from"), codes=codes,
                               note_zh=c.str("note_zh", ""), note_en=c.str("note_en", ""),
                               based_on=str(based_on) if based_on is not None else None, added=tuple(added),
                               removed=tuple(removed), updated=tuple(updated))

    @staticmethod
    def _code(c: _Ctx) -> CodeEntry:
        d = c.mapping(CODE_KEYS, ["code", "name_zh", "name_en"])
        code = d["code"]
        if not isinstance(code, str):
            raise c.fail(f"code {code!r} must be quoted text", c.sub("code"))
        parent = d.get("parent")
        return CodeEntry(code=code, name_zh=c.str("name_zh"), name_en=c.str("name_en"),
                         parent=str(parent) if parent is not None else None, level=d.get("level"),
                         description_zh=c.str("description_zh", ""), description_en=c.str("description_en", ""))


def _check_regex(pattern: Any, c: _Ctx, key: str) -> None:
    if not isinstance(pattern, str):
        raise c.fail("a pattern is text", key)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise c.fail(f"invalid regular expression: {exc}", key) from None
