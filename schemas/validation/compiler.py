"""Compile a unit's field checks and record rules into one Python function per run.

Validation speed decides whether a province waits seconds or minutes for its verdict, so
the checks are not interpreted row by row from the spec. For each unit, once per delivery,
this module writes the source of a function ``check_row(vals, line, rowno)`` that checks
every field and record rule of one row inline (set look-ups for codes and dates, one
precompiled regular expression where a pattern is needed), and feeds the per-row facts
the file-level and cross-unit checks need. The source comes only from the loaded spec and
expressions parsed against a whitelist (see ``schemas.spec.expressions``).

A row whose text holds a forbidden character (``schemas.conventions.FORBIDDEN_RANGES``:
a control character other than TAB, U+FFFE, ...) takes a second compiled path,
``check_guarded``: E310 for each such value, and the same checks for the others, each field's
guarded so that a bad value gets E310 alone. The test for it is one ``str.isprintable()`` per
line (C speed); the regular expression runs only when that says something is unusual.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field as dc_field
from decimal import Decimal
from typing import Any, Callable

from ..conventions import DELIMITERS, FORBIDDEN_TEXT, find_forbidden, forbidden_pattern, shown
from ..spec import expressions
from ..spec.model import Field, Spec, Unit
from .store import KeyRow

_WS = " \t\u3000"


def _all_dates() -> frozenset[str]:
    d = dt.date(1900, 1, 1)
    end = dt.date(2099, 12, 31)
    out = []
    step = dt.timedelta(days=1)
    while d <= end:
        out.append(d.strftime("%Y%m%d"))
        d += step
    return frozenset(out)


_DATES: frozenset[str] | None = None
_TIMES = frozenset(f"{h:02d}{m:02d}{s:02d}" for h in range(24) for m in range(60) for s in range(60))


def valid_dates() -> frozenset[str]:
    """Every valid ``YYYYMMDD`` from 1900 to 2099 (built once; membership is the check)."""
    global _DATES
    if _DATES is None:
        _DATES = _all_dates()
    return _DATES


@dataclass(frozen=True)
class Projection:
    """Key values of one unit's rows (optionally filtered) kept for later set checks."""

    unit: str
    key: tuple[str, ...]
    value: str | None = None
    where: str | None = None

    @property
    def name(self) -> str:
        """A stable table name."""
        raw = f"{self.unit}_{'_'.join(self.key)}_{self.value or ''}_{self.where or ''}"
        return "p_" + re.sub(r"[^A-Za-z0-9]+", "_", raw).strip("_").lower()[:120] + f"_{abs(_crc(raw))}"


def _crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class SumSpec:
    """A per-key sum (of one unit's field) a cross-unit rule compares."""

    rule: str
    side: str  # left | right
    unit: str
    field: str
    by: tuple[str, ...]


@dataclass
class RunContext:
    """What a compiled unit check needs to know about this delivery."""

    spec: Spec
    day: dt.date  # picks the code-list versions in force
    period: str
    party: str
    party_province: str | None  # the province of the sender (itself, or a network's parent)
    party_network: str | None  # set when the sender is a local network
    list_ids: frozenset[str] | None = None  # the customers in force for the cycle (context)
    list_version: str | None = None
    list_explain: Callable[[str], str] | None = None  # why a customer is not on the cycle's list
    # unit name -> key (primary key without CYCLE_ID, joined by \x1f) -> field id -> value
    previous: dict[str, dict[str, dict[str, str]]] | None = None
    outlier_ratio: Decimal = Decimal("0.5")


@dataclass
class Sinks:
    """Where compiled checks put facts for file-level and cross-unit checks."""

    projections: dict[str, list[KeyRow]] = dc_field(default_factory=dict)
    sums: dict[tuple[str, str], dict[tuple[str, ...], Decimal]] = dc_field(default_factory=dict)
    first_line: dict[tuple[str, str], dict[tuple[str, ...], tuple[int, int]]] = dc_field(default_factory=dict)
    networks_seen: dict[str, set[str]] = dc_field(default_factory=dict)
    # unit name -> the local networks its rows cover (what a unit of a delivery replaces)
    networks_by_unit: dict[str, set[str]] = dc_field(default_factory=dict)


def key_fields(key: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A key without CYCLE_ID: every row of a delivery has the same cycle (E402 otherwise),
    so leaving it out lets keys that differ only by it share one table, and keeps them short."""
    stripped = tuple(k for k in key if k != "CYCLE_ID")
    return stripped or tuple(key)


def network_field(unit: Unit) -> str | None:
    """The field naming the local network a row counts for (LATN_ID), or None."""
    for f in unit.fields:
        if f.domain == "Domain_area_id" and f.area_level == "local_network":
            return f.id
    return None


def parent_link(spec: Spec, unit: Unit) -> tuple[Unit, tuple[str, ...]] | None:
    """For a unit without a network of its own (contacts): its parent unit and the key joining them."""
    if network_field(unit) is not None or not unit.parent:
        return None
    parent = spec.unit(str(unit.parent["unit"]))
    if network_field(parent) is None:
        return None
    return parent, key_fields(tuple(unit.parent["key"]))


def child_projection(spec: Spec, unit: Unit) -> Projection | None:
    """The parent keys of a network-less unit's rows (which customers a contacts file covers)."""
    link = parent_link(spec, unit)
    return Projection(unit.name, link[1]) if link else None


def network_projection(spec: Spec, unit: Unit) -> Projection | None:
    """Key -> local network of a unit that network-less units hang off (31201: customer -> home network)."""
    net = network_field(unit)
    if net is None:
        return None
    for child in spec.units:
        link = parent_link(spec, child)
        if link is not None and link[0].name == unit.name:
            return Projection(unit.name, link[1], value=net)
    return None


def needed_projections(spec: Spec, unit: Unit) -> list[Projection]:
    """Projections of ``unit`` that key, uniqueness and cross-unit checks need (primary key first)."""
    out: list[Projection] = [Projection(unit.name, key_fields(unit.primary_key))]
    for extra in (child_projection(spec, unit), network_projection(spec, unit)):
        if extra is not None:
            out.append(extra)
    for r in unit.rules:
        if r.scope == "file" and r.check == "unique":
            out.append(Projection(unit.name, key_fields(r.fields)))
    for r in spec.cross_rules:
        if r.check in ("exists", "exactly_one", "list_covered"):
            for side in (r.left, r.right):
                assert side is not None
                if side["unit"] == unit.name:
                    out.append(Projection(unit.name, key_fields(side["key"]), where=side.get("where")))
        elif r.check == "count_distinct_equals":
            assert r.right is not None
            if r.right["unit"] == unit.name:
                out.append(Projection(unit.name, key_fields(r.by), value=r.right["field"]))
    seen: dict[str, Projection] = {}
    for p in out:
        seen.setdefault(p.name, p)
    return list(seen.values())


def needed_sums(spec: Spec, unit: Unit) -> list[SumSpec]:
    """Per-key sums of ``unit`` that cross-unit sum rules need."""
    out = []
    for r in spec.cross_rules:
        if r.check in ("sum_equals", "sum_at_most", "count_distinct_equals"):
            for side_name, side in (("left", r.left), ("right", r.right)):
                assert side is not None
                if side["unit"] == unit.name and not (r.check == "count_distinct_equals" and side_name == "right"):
                    out.append(SumSpec(r.id, side_name, unit.name, side["field"], r.by))
    return out


class _Gen:
    """Accumulates the generated source and the constants it refers to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self._n = 0

    def const(self, value: Any, hint: str = "K") -> str:
        self._n += 1
        name = f"{hint}{self._n}"
        self.consts[name] = value
        return name

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)


def _decimal_re(f: Field) -> str:
    assert f.precision is not None and f.scale is not None
    whole = f.precision - f.scale
    if f.scale:
        return rf"-?[0-9]{{1,{whole}}}(?:\.[0-9]{{1,{f.scale}}})?"
    return rf"-?[0-9]{{1,{whole}}}"


def _range_conditions(f: Field, typed: str) -> list[str]:
    """Python conditions that are true when the typed value ``typed`` is out of the field's range."""
    conds = []
    if f.min is not None:
        conds.append(f"{typed} < {f.min}")
    if f.max is not None:
        conds.append(f"{typed} > {f.max}")
    return conds


def expected_text(spec: Spec, f: Field, day: dt.date) -> dict[str, str]:
    """Human-readable 'expected' texts per check, for the report."""
    out = {"length": f"at most {f.length} characters / 不超过{f.length}个字符"}
    if f.type == "integer":
        out["type"] = f"an integer of at most {f.length} digits / 不超过{f.length}位的整数"
        out["int_length"] = f"at most {f.length} digits / 不超过{f.length}位数字"
    if f.type == "decimal":
        out["type"] = f"decimal({f.precision},{f.scale}), e.g. 12345.67, no separators / 数值，如12345.67，不带分隔符"
        whole = (f.precision or 0) - (f.scale or 0)
        out["whole_length"] = f"at most {whole} digits before the point / 整数部分不超过{whole}位"
    if f.type == "date":
        out["type"] = "a real date YYYYMMDD / 有效日期YYYYMMDD"
    if f.type == "datetime":
        out["type"] = "a real date and time YYYYMMDDHHMMSS / 有效日期时间YYYYMMDDHHMMSS"
    if f.pattern:
        out["pattern"] = f.pattern
    if f.domain:
        dom = spec.domain(f.domain)
        if dom.kind == "pattern":
            out["code"] = f"{f.domain} (pattern {dom.pattern})"
        else:
            out["code"] = f"{f.domain} v{dom.version_on(day).version}"
    lo = "" if f.min is None else f">= {f.min}"
    hi = "" if f.max is None else f"<= {f.max}"
    out["range"] = " and ".join(x for x in (lo, hi) if x)
    return out


def compile_unit(ctx: RunContext, unit: Unit, sinks: Sinks) -> tuple[str, dict[str, Any], list[Projection]]:
    """Source and globals of ``check_row`` for one unit, plus the projections it fills."""
    spec = ctx.spec
    g = _Gen()
    fields = unit.fields
    idx = {f.id: i for i, f in enumerate(fields)}
    area = spec.domain("Domain_area_id").version_on(ctx.day)
    area_parent = {c.code: c.parent for c in area.codes.values()}
    rules = [r for r in unit.rules if r.scope == "record"]
    used_typed: set[str] = set()
    parsed: dict[str, tuple[expressions.Expression | None, expressions.Expression | None]] = {}
    for r in rules:
        a = expressions.parse(r.assert_expr, unit.has_field) if r.assert_expr else None
        w = expressions.parse(r.when_expr, unit.has_field) if r.when_expr else None
        parsed[r.id] = (a, w)
        for e in (a, w):
            if e:
                used_typed |= e.names
    projections = needed_projections(spec, unit)
    sums = needed_sums(spec, unit)
    for p in projections:
        if p.where:
            used_typed |= expressions.parse(p.where, unit.has_field).names
    for s in sums:
        used_typed.add(s.field)

    g.emit(1, "bad = 0")
    g.emit(1, ", ".join(f"v{i}" for i in range(len(fields))) + ", = vals")
    # Where each field's checks start in g.lines: the row path for values with a forbidden
    # character (E310) runs the same checks, each guarded so that such a value gets E310 alone.
    blocks: list[tuple[int, bool]] = []
    for i, f in enumerate(fields):
        blocks.append((len(g.lines), f.id in used_typed))
        exp = expected_text(spec, f, ctx.day)
        bit = 1 << i
        v, t = f"v{i}", f"t{i}"
        need_t = f.id in used_typed
        g.emit(1, f"if {v} == '':")
        if f.required:
            g.emit(2, f"bad |= {bit}")
            g.emit(2, f"E('E301', line, rowno, {f.id!r}, '', None)")
        if need_t:
            g.emit(2, f"{t} = None")
        if not f.required and not need_t:
            g.emit(2, "pass")
        g.emit(1, "else:")
        if f.type == "string":
            # Stray spaces only matter in free text: in any other type they already
            # make the value invalid and are reported with that field's own code.
            g.emit(2, f"if {v}[0] in WS or {v}[-1] in WS:")
            g.emit(3, f"E('W301', line, rowno, {f.id!r}, {v}, None)")
        if f.type in ("string", "code"):
            chain = "if"
            if f.type == "string" or (f.domain and spec.domain(f.domain).kind == "pattern"):
                g.emit(2, f"{chain} len({v}) > {f.length}:")
                g.emit(3, f"bad |= {bit}; E('E305', line, rowno, {f.id!r}, {v}, {exp['length']!r})")
                chain = "elif"
            if f.pattern:
                pat = g.const(re.compile(f.pattern).fullmatch, "PAT")
                g.emit(2, f"{chain} not {pat}({v}):")
                g.emit(3, f"bad |= {bit}; E('E306', line, rowno, {f.id!r}, {v}, {exp['pattern']!r})")
                chain = "elif"
            if f.type == "code":
                assert f.domain is not None
                dom = spec.domain(f.domain)
                if dom.kind == "pattern":
                    pat = g.const(re.compile(dom.pattern or "").fullmatch, "PAT")
                    g.emit(2, f"{chain} not {pat}({v}):")
                else:
                    ver = dom.version_on(ctx.day)
                    codes = ver.field_codes(f.area_level)
                    cs = g.const(codes, "CODES")
                    g.emit(2, f"{chain} {v} not in {cs}:")
                    if f.area_level:
                        allc = g.const(frozenset(ver.codes), "ALL")
                        level = ("省份 / province" if f.area_level == "province" else "本地网 / local network")
                        g.emit(3, f"bad |= {bit}; E('E309', line, rowno, {f.id!r}, {v}, {level!r}) if {v} in {allc} "
                                  f"else E('E307', line, rowno, {f.id!r}, {v}, {exp['code']!r})")
                        if need_t:
                            g.emit(2, f"{t} = {v}")
                        continue
                g.emit(3, f"bad |= {bit}; E('E307', line, rowno, {f.id!r}, {v}, {exp['code']!r})")
            if need_t:
                g.emit(2, f"{t} = {v}")
        elif f.type == "integer":
            pat = g.const(re.compile(rf"-?[0-9]{{1,{f.length}}}").fullmatch, "INT")
            ranged = f.max is not None or (f.min is not None and f.min > 0)
            # Fast path: plain non-negative digits (nearly every value) skip the regex.
            g.emit(2, f"if {v}.isdigit() and {v}.isascii() and len({v}) <= {f.length}:")
            if need_t or ranged:
                g.emit(3, f"{t} = int({v})")
            else:
                g.emit(3, "pass")
            g.emit(2, f"elif {pat}({v}):")
            g.emit(3, f"{t} = int({v})")
            g.emit(2, f"elif DIGITS({v}):")  # an integer, but longer than the field allows
            g.emit(3, f"bad |= {bit}; E('E305', line, rowno, {f.id!r}, {v}, {exp['int_length']!r})")
            g.emit(2, "else:")
            g.emit(3, f"bad |= {bit}; E('E302', line, rowno, {f.id!r}, {v}, {exp['type']!r})")
            if need_t:
                g.emit(3, f"{t} = None")
            conds = _range_conditions(f, t)
            if conds:
                guard = "" if ranged else f"{v}[0] == '-' and "
                g.emit(2, f"if not bad & {bit} and {guard}({' or '.join(conds)}):")
                g.emit(3, f"bad |= {bit}; E('E308', line, rowno, {f.id!r}, {v}, {exp['range']!r})")
        elif f.type == "decimal":
            pat = g.const(re.compile(_decimal_re(f)).fullmatch, "DEC")
            g.emit(2, f"if not {pat}({v}):")
            # A well-formed number with more whole digits than the field has is too long (E305);
            # anything else (separators, exponents, too many decimals) is not a valid decimal.
            g.emit(3, f"bad |= {bit}; E('E305', line, rowno, {f.id!r}, {v}, {exp['whole_length']!r}) "
                      f"if WHOLE({v}, {(f.precision or 0) - (f.scale or 0)}, {f.scale or 0}) "
                      f"else E('E303', line, rowno, {f.id!r}, {v}, {exp['type']!r})")
            if need_t:
                g.emit(3, f"{t} = None")
            if need_t or f.min is not None or f.max is not None:
                g.emit(2, "else:")
                g.emit(3, f"{t} = Decimal({v})")
                conds = _range_conditions(f, t)
                if conds:
                    g.emit(3, f"if {' or '.join(conds)}:")
                    g.emit(4, f"bad |= {bit}; E('E308', line, rowno, {f.id!r}, {v}, {exp['range']!r})")
        elif f.type == "date":
            g.emit(2, f"if {v} not in DATES:")
            g.emit(3, f"bad |= {bit}; E('E304', line, rowno, {f.id!r}, {v}, {exp['type']!r})")
            if need_t:
                g.emit(2, f"{t} = {v}")
        elif f.type == "datetime":
            g.emit(2, f"if len({v}) != 14 or {v}[:8] not in DATES or {v}[8:] not in TIMES:")
            g.emit(3, f"bad |= {bit}; E('E304', line, rowno, {f.id!r}, {v}, {exp['type']!r})")
            if need_t:
                g.emit(2, f"{t} = {v}")

    fields_end = len(g.lines)

    # -- tier 4 and 6 checks that need only this row ---------------------------------
    if unit.direction == "up":
        if unit.has_field("CYCLE_ID"):
            i = idx["CYCLE_ID"]
            g.emit(1, f"if not bad & {1 << i} and v{i} != PERIOD:")
            g.emit(2, f"E('E402', line, rowno, 'CYCLE_ID', v{i}, PERIOD)")
        for f in fields:
            i = idx[f.id]
            if f.domain == "Domain_area_id" and f.area_level == "province" and ctx.party_province:
                g.emit(1, f"if not bad & {1 << i} and v{i} != {ctx.party_province!r}:")
                g.emit(2, f"E('E403', line, rowno, {f.id!r}, v{i}, {ctx.party_province!r})")
            if f.domain == "Domain_area_id" and f.area_level == "local_network" and ctx.party_network:
                g.emit(1, f"if not bad & {1 << i} and v{i} != {ctx.party_network!r}:")
                g.emit(2, f"E('E603', line, rowno, {f.id!r}, v{i}, {ctx.party_network!r})")
        if ctx.list_ids is not None and unit.parent is None:
            for f in fields:
                if f.domain == "Domain_cust_id" and f.id in unit.primary_key:
                    i = idx[f.id]
                    ids = g.const(ctx.list_ids, "LIST")
                    g.emit(1, f"if not bad & {1 << i} and v{i} not in {ids}:")
                    if ctx.list_explain is not None:
                        why = g.const(ctx.list_explain, "EXPLAIN")
                        g.emit(2, f"E('E604', line, rowno, {f.id!r}, v{i}, {why}(v{i}))")
                    else:
                        g.emit(2, f"E('E604', line, rowno, {f.id!r}, v{i}, {ctx.list_version or ''!r})")

    prev_map = (ctx.previous or {}).get(unit.name)
    watched = [f for f in fields if f.opening_of or f.watch]
    if prev_map and watched:
        key_fields = [k for k in unit.primary_key if k != "CYCLE_ID"]
        pm = g.const(prev_map, "PREV")
        keyexpr = " + '\\x1f' + ".join(f"v{idx[k]}" for k in key_fields)
        g.emit(1, f"p = {pm}.get({keyexpr})")
        g.emit(1, "if p is not None:")
        for f in watched:
            i = idx[f.id]
            if f.opening_of:
                g.emit(2, f"pv = p.get({f.opening_of!r})")
                g.emit(2, f"if pv is not None and not bad & {1 << i} and v{i} != pv:")
                g.emit(3, f"E('W602', line, rowno, {f.id!r}, v{i}, pv)")
            if f.watch:
                ratio = g.const(ctx.outlier_ratio, "RATIO")
                g.emit(2, f"pv = p.get({f.id!r})")
                g.emit(2, f"if pv and not bad & {1 << i} and OUTLIER(v{i}, pv, {ratio}):")
                g.emit(3, f"E('W601', line, rowno, {f.id!r}, v{i}, pv + ' ±' + str({ratio} * 100) + '%')")

    # -- record rules ----------------------------------------------------------------
    numeric = {f.id for f in fields if f.type in ("integer", "decimal")}
    for r in rules:
        a, w = parsed[r.id]
        names: set[str] = set()
        for e in (a, w):
            if e:
                names |= e.names
        if r.check == "network_in_province":
            names |= set(r.fields)
        mask = sum(1 << idx[n] for n in names)
        fi = idx[r.field] if r.field else None
        fval = f"v{fi}" if fi is not None else "None"
        g.emit(1, f"if not bad & {mask}:")
        if r.check == "network_in_province":
            prov, latn = r.fields
            ap = g.const(area_parent, "PARENT")
            cond = f"{ap}.get(v{idx[latn]}) != v{idx[prov]}"
        else:
            assert a is not None
            cond = "not " + a.to_python(lambda n: f"t{idx[n]}", numeric.__contains__)
            if w is not None:
                cond = w.to_python(lambda n: f"t{idx[n]}", numeric.__contains__) + " and " + cond
        g.emit(2, f"if {cond}:")
        g.emit(3, f"R({r.id!r}, line, rowno, {r.field!r}, {fval}, vals)")

    # -- facts for file-level and cross-unit checks ----------------------------------
    for p in projections:
        names = set(p.key) | ({p.value} if p.value else set())
        wexpr = expressions.parse(p.where, unit.has_field) if p.where else None
        if wexpr:
            names |= wexpr.names
        mask = sum(1 << idx[n] for n in names)
        sink = sinks.projections.setdefault(p.name, [])
        sk = g.const(sink, "PROJ")
        key = " + '\\x1f' + ".join(f"v{idx[k]}" for k in p.key)
        val = f"v{idx[p.value]}" if p.value else "''"
        cond = f"not bad & {mask}"
        if wexpr:
            cond += " and " + wexpr.to_python(lambda n: f"t{idx[n]}", numeric.__contains__)
        g.emit(1, f"if {cond}:")
        g.emit(2, f"{sk}.append(({key}, {val}, line, FILE))")
    for s in sums:
        mask = sum(1 << idx[n] for n in (s.field, *s.by))
        table = sinks.sums.setdefault((s.rule, s.side), {})
        first = sinks.first_line.setdefault((s.rule, s.side), {})
        tk, fk = g.const(table, "SUM"), g.const(first, "FIRST")
        key = "(" + "".join(f"v{idx[k]}, " for k in s.by) + ")"
        g.emit(1, f"if not bad & {mask}:")
        g.emit(2, f"k = {key}")
        g.emit(2, f"{tk}[k] = {tk}.get(k, 0) + (t{idx[s.field]} or 0)")
        g.emit(2, f"if k not in {fk}: {fk}[k] = (line, FILE)")
    net = network_field(unit)
    if net is not None:
        i = idx[net]
        nets = g.const(sinks.networks_by_unit.setdefault(unit.name, set()), "NETS")
        g.emit(1, f"if not bad & {1 << i}: {nets}.add(v{i})")
    for r in unit.rules:
        if r.scope == "file" and r.check == "covers_sender_networks":
            assert r.field is not None
            i = idx[r.field]
            seen = sinks.networks_seen.setdefault(r.id, set())
            sn = g.const(seen, "SEEN")
            g.emit(1, f"if not bad & {1 << i}: {sn}.add(v{i})")
    body = "\n".join("        " + line for line in g.lines)
    # g.lines are indented for a function body: the guarded row function takes them as they
    # are, each field's block one level deeper under its guard.
    guarded = ["    bad = FORBIDDEN_FIELDS(vals, line, rowno, E)", g.lines[1]]
    bounds = [start for start, _ in blocks] + [fields_end]
    for i, (start, need_t) in enumerate(blocks):
        guarded.append(f"    if not bad & {1 << i}:")
        guarded.extend("    " + line for line in g.lines[start:bounds[i + 1]])
        if need_t:
            guarded.append("    else:")
            guarded.append(f"        t{i} = None")
    guarded.extend(g.lines[fields_end:])
    source = _LOOPS.format(body=body, guarded="\n".join(guarded), nf=len(fields))
    field_ids = tuple(f.id for f in fields)
    env: dict[str, Any] = {"__builtins__": {"len": len, "int": int, "abs": abs, "str": str}, "Decimal": Decimal,
                           "OUTLIER": _outlier, "DIGITS": _DIGITS, "WHOLE": _too_many_whole_digits,
                           "WS": _WS, "DATES": valid_dates(), "TIMES": _TIMES, "PERIOD": ctx.period,
                           "LINE_FORBIDDEN": _LINE_FORBIDDEN, "ANY_FORBIDDEN": find_forbidden,
                           "FORBIDDEN_FIELDS": functools.partial(_forbidden_fields, field_ids),
                           **expressions.RUNTIME, **g.consts}
    return source, env, projections


_LOOPS = """
def run_text(lines, delim, line=0):
    first = line
    forbidden = LINE_FORBIDDEN.get(delim) or ANY_FORBIDDEN
    for raw in lines:
        line += 1
        rowno = line
        text = raw.rstrip('\\r')
        vals = text.split(delim)
        if len(vals) != {nf}:
            COLS(line, rowno, len(vals))
            continue
        if not text.isprintable() and forbidden(text) is not None:
            check_guarded(vals, line, rowno)
        else:
{body}
        if line % FLUSH_EVERY == 0:
            FLUSH()
    return line - first


def run_rows(source):
    n = 0
    for vals, line, rowno in source:
        n += 1
        if len(vals) != {nf}:
            COLS(line, rowno, len(vals))
            continue
        text = ''.join(vals)
        if not text.isprintable() and ANY_FORBIDDEN(text) is not None:
            check_guarded(vals, line, rowno)
        else:
{body}
        if n % FLUSH_EVERY == 0:
            FLUSH()
    return n


def check_guarded(vals, line, rowno):
{guarded}
"""

# Per delimiter: a forbidden character anywhere in a line (the delimiter itself is not one).
_LINE_FORBIDDEN = {d: forbidden_pattern(d).search for d in DELIMITERS.values()}


def _forbidden_fields(field_ids: tuple[str, ...], vals: list[str], line: int, rowno: int,
                      emit: Callable[..., None]) -> int:
    """E310 for each value holding a forbidden character; the bit mask of those fields."""
    mask = 0
    for i, value in enumerate(vals):
        m = find_forbidden(value)
        if m is not None:
            mask |= 1 << i
            at, char = m.start() + 1, shown(m.group())
            emit("E310", line, rowno, field_ids[i], value,
                 f"{FORBIDDEN_TEXT}; found {char} at character {at} / 第{at}个字符为 {char}")
    return mask


_DIGITS = re.compile(r"-?[0-9]+").fullmatch
_NUMBER = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?").fullmatch


def _too_many_whole_digits(value: str, whole: int, scale: int) -> bool:
    """Whether ``value`` is a plain decimal whose only fault is too many digits before the point."""
    m = _NUMBER(value)
    if m is None:
        return False
    return len(m.group(1)) > whole and len(m.group(2) or "") <= scale


def _outlier(value: str, previous: str, ratio: Decimal) -> bool:
    """Whether ``value`` moved more than ``ratio`` of ``previous`` (both decimal text)."""
    try:
        v, p = Decimal(value), Decimal(previous)
    except ArithmeticError:
        return False
    return p != 0 and abs(v - p) > abs(p) * ratio


@dataclass(frozen=True)
class CompiledUnit:
    """The compiled checks of one unit for one file: a text loop and a row loop."""

    run_text: Callable[..., int]
    run_rows: Callable[[Any], int]


def build_checker(ctx: RunContext, unit: Unit, sinks: Sinks, *, emit_field: Callable[..., None],
                  emit_rule: Callable[..., None], emit_columns: Callable[[int, int, int], None],
                  flush: Callable[[], None], file_id: int, flush_every: int) -> CompiledUnit:
    """Compile the checks of ``unit`` for one file of this run."""
    source, env, _ = compile_unit(ctx, unit, sinks)
    env.update(E=emit_field, R=emit_rule, COLS=emit_columns, FLUSH=flush, FILE=file_id, FLUSH_EVERY=flush_every)
    code = compile(source, f"<checks {unit.name}>", "exec")
    exec(code, env)  # noqa: S102 — source generated from the loaded spec and whitelisted expressions
    return CompiledUnit(env["run_text"], env["run_rows"])
