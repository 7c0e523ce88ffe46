"""Compile a unit's checks from the spec to polars expressions that screen a batch of rows.

The screen does not produce findings. It proves, for each row, that the reference row
path (``schemas.validation.compiler``) would report nothing for it; a row it cannot prove
clean is *suspect* and goes to the row path, which reports it exactly as it always has.
So every expression here is conservative: a False must mean "certainly no finding", a True
(or a null, which the caller turns into True) only "look closer". Anything whose exact
semantics would need care the screen does not take (a rule with multiplication, the
previous cycle's values, a pattern with classes whose meaning differs between Python's
``re`` and Rust's ``regex``) makes the whole unit :class:`Unsupported`: the engine then
uses the row path for that file.

The field metadata comes from the same places the row compiler reads it (the spec's
fields, ``expected_text`` is not needed, ``needed_projections``, ``needed_sums``,
``network_field``; the code lists in force for the cycle via ``version_on``).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal

import polars as pl

from ...conventions import FORBIDDEN_RANGES, find_forbidden
from ...spec import expressions
from ...spec.model import Field, Spec, Unit
from ..compiler import (
    Projection,
    RunContext,
    SumSpec,
    child_projection,
    key_fields,
    needed_projections,
    needed_sums,
    network_field,
    network_projection,
)

WS_CLASS = "[ \\t\\x{3000}]"  # compiler._WS: space, TAB, ideographic space
# Every operand of rule arithmetic stays below 10**17 once scaled, so a few of them added stay in Int64.
_MAX_SCALED_DIGITS = 17


class Unsupported(Exception):
    """The unit has a check the screen does not compile exactly: use the row path for it."""


@dataclass
class UnitPlan:
    """The compiled screen of one unit for one run."""

    unit: Unit
    nf: int
    # One expression per field and per record check: True (or null) where the row path must look
    # at the row. Evaluated as columns of their own, so polars runs them in parallel.
    parts: list[pl.Expr]
    projections: list[tuple[Projection, pl.Expr | None]]  # with their ``where`` as a screen expression
    sums: list[SumSpec]
    typed: dict[str, str]  # field id -> type, for the sums
    scales: dict[str, int]  # decimal field id -> its scale, for the sums
    network: str | None
    seen: list[tuple[str, str]]  # (rule id, field) of covers_sender_networks rules
    columns: list[str] = dc_field(default_factory=list)  # field ids in file order
    # Key tables whose repeated keys sorted runs find (keys.SortedRuns), and of those the ones no
    # other check reads, whose clean rows therefore never go to SQLite.
    sorted_keys: frozenset[str] = frozenset()
    runs_only: frozenset[str] = frozenset()
    # What the clean rows' facts read: the row index, ``suspect``, the projections' ``where``s, the columns.
    fact_columns: tuple[str, ...] = ()
    # The most bytes a line the field checks pass can hold (its fields at their longest, the delimiters).
    clean_line_bytes: int = 0


def col(i: int) -> str:
    """The column name of the ``i``-th field in a batch."""
    return f"c{i}"


def forbidden_class(delimiter: str) -> str:
    """A Rust regex class matching one forbidden character, the delimiter excepted (as conventions.forbidden_pattern)."""
    spans: list[tuple[int, int]] = []
    for lo, hi in FORBIDDEN_RANGES:
        if lo >= 0xD800 and hi <= 0xDFFF:
            continue  # a surrogate cannot be held in a UTF-8 string at all
        for c in sorted(ord(ch) for ch in delimiter if lo <= ord(ch) <= hi):
            if lo < c:
                spans.append((lo, c - 1))
            lo = c + 1
        if lo <= hi:
            spans.append((lo, hi))
    return "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in spans) + "]"


# Python's str.isspace() counts U+001C..U+001F as white space, Rust's \s does not.
_PY_SPACE = "\\s\\x{1c}-\\x{1f}"
_UNSAFE = re.compile(r"\\[dDwWbBSAZ]|\(\?[^:]|\\[0-9]|\\[pPN]")


def rust_pattern(pattern: str) -> str:
    """A Rust regex that fully matches exactly what ``re.compile(pattern).fullmatch`` matches."""
    if _UNSAFE.search(pattern):
        raise Unsupported(f"pattern {pattern!r}")
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            pair = pattern[i:i + 2]
            if pair == "\\s":
                out.append(_PY_SPACE if in_class else f"[{_PY_SPACE}]")
            else:
                out.append(pair)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "^(?:" + "".join(out) + ")$"


def _not_match(v: pl.Expr, pattern: str) -> pl.Expr:
    return ~v.str.contains(rust_pattern(pattern))


def scaled(v: pl.Expr, scale: int) -> pl.Expr:
    """A plain decimal or integer text as an Int64 counting units of 10**-scale (null when not a number)."""
    neg = v.str.starts_with("-")
    body = v.str.strip_prefix("-")
    parts = body.str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64, strict=False)
    value = whole * (10 ** scale)
    if scale:
        frac = parts.struct.field("field_1").fill_null("")
        # Digits past the scale would be cut: a value that has them is not clean (the field check says so).
        frac_val = pl.when(frac.str.len_bytes() > scale).then(None).otherwise(
            frac.str.pad_end(scale, "0").cast(pl.Int64, strict=False))
        value = value + frac_val
    return pl.when(neg).then(-value).otherwise(value)


def _field_suspect(ctx: RunContext, f: Field, v: pl.Expr, forbidden: str | None = None) -> pl.Expr:
    """True where the row path would report something about this field's value (or might).

    ``forbidden`` (a regex class) is also looked for, in the same scan as the white space
    of a text field: the fast screen relies on it for fields whose own check would pass one.
    """
    spec = ctx.spec
    empty = v.str.len_bytes() == 0
    checks: list[pl.Expr] = []
    if f.type == "string":
        checks.append(v.str.contains(f"^{WS_CLASS}|{WS_CLASS}$" + (f"|{forbidden}" if forbidden else "")))
    elif forbidden:
        checks.append(v.str.contains(forbidden))
    if f.type in ("string", "code"):
        pattern_domain = bool(f.domain and spec.domain(f.domain).kind == "pattern")
        if f.type == "string" or pattern_domain:
            checks.append(v.str.len_chars() > int(f.length or 0))
        if f.pattern:
            checks.append(_not_match(v, f.pattern))
        if f.type == "code":
            if f.domain is None:
                raise Unsupported(f"code field {f.id} without a domain")
            codes = _code_list(ctx, f)
            if codes is None:
                checks.append(_not_match(v, spec.domain(f.domain).pattern or ""))
            else:
                checks.append(~v.is_in(pl.Series(codes, dtype=pl.String).implode()))
    elif f.type == "integer":
        length = int(f.length or 0)
        if length > 18:
            raise Unsupported(f"integer {f.id} of {length} digits")
        checks.append(_not_match(v, f"-?[0-9]{{1,{length}}}"))
        checks.extend(_range(f, v.cast(pl.Int64, strict=False), 0))
    elif f.type == "decimal":
        if f.precision is None or f.scale is None or f.precision > 18:
            raise Unsupported(f"decimal {f.id}")
        whole = f.precision - f.scale
        pat = rf"-?[0-9]{{1,{whole}}}(?:\.[0-9]{{1,{f.scale}}})?" if f.scale else rf"-?[0-9]{{1,{whole}}}"
        checks.append(_not_match(v, pat))
        checks.extend(_range(f, scaled(v, f.scale), f.scale))
    elif f.type == "date":
        checks.append(~valid_date(v))
    elif f.type == "datetime":
        checks.append(~valid_datetime(v))
    else:
        raise Unsupported(f"type {f.type}")
    nonempty = pl.any_horizontal(checks) if checks else pl.lit(False)
    return pl.when(empty).then(pl.lit(bool(f.required))).otherwise(nonempty)


def _range(f: Field, typed: pl.Expr, scale: int) -> list[pl.Expr]:
    out = []
    for bound, op in ((f.min, "lt"), (f.max, "gt")):
        if bound is None:
            continue
        exact = Decimal(str(bound)) * (10 ** scale)
        if exact != exact.to_integral_value() or isinstance(bound, float) and Decimal(bound) != Decimal(str(bound)):
            raise Unsupported(f"range bound {bound} of {f.id}")
        b = int(exact)
        out.append(typed < b if op == "lt" else typed > b)
    return out


# -- record rules and ``where`` expressions ---------------------------------------------------
@dataclass
class _Val:
    kind: str  # num | str
    expr: pl.Expr
    none: pl.Expr  # str: the typed value is None (an empty field)
    unc: pl.Expr  # the row path would do something the screen does not follow (an error): suspect


class _Rule:
    """Translates a checked rule expression to (value, uncertain) polars expressions."""

    def __init__(self, unit: Unit, names: dict[str, int], scale: int) -> None:
        self.unit = unit
        self.idx = names
        self.scale = scale
        self.fields = {f.id: f for f in unit.fields}

    def v(self, name: str) -> pl.Expr:
        return pl.col(col(self.idx[name]))

    def boolean(self, node: ast.AST) -> tuple[pl.Expr, pl.Expr]:
        if isinstance(node, ast.BoolOp):
            val, unc = self.boolean(node.values[0])
            for nxt in node.values[1:]:
                nval, nunc = self.boolean(nxt)
                if isinstance(node.op, ast.And):
                    unc = unc | (val & nunc)  # the right side runs only when the left is true
                    val = val & nval
                else:
                    unc = unc | (~val & nunc)
                    val = val | nval
            return val, unc
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            val, unc = self.boolean(node.operand)
            return ~val, unc
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("empty", "present"):
            arg = node.args[0]
            assert isinstance(arg, ast.Name)
            e = self.v(arg.id).str.len_bytes() == 0
            return (e if node.func.id == "empty" else ~e), pl.lit(False)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise Unsupported("chained comparison")
            return self.compare(node.left, node.ops[0], node.comparators[0])
        raise Unsupported(f"{type(node).__name__} as a condition")

    def compare(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> tuple[pl.Expr, pl.Expr]:
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, ast.Tuple):
                raise Unsupported("in without a tuple")
            a = self.value(left)
            items = [e.value for e in right.elts if isinstance(e, ast.Constant)]
            if a.kind == "str" and all(isinstance(x, str) for x in items):
                hit = a.expr.is_in(pl.Series(items, dtype=pl.String).implode())
                unc = a.unc | (a.none if "" in items else pl.lit(False))
            elif a.kind == "num" and all(isinstance(x, int) for x in items):
                hit = a.expr.is_in(pl.Series([x * 10 ** self.scale for x in items], dtype=pl.Int64).implode())
                unc = a.unc
            else:
                raise Unsupported("mixed in")
            return (hit if isinstance(op, ast.In) else ~hit), unc
        a, b = self.value(left), self.value(right)
        if a.kind != b.kind:
            raise Unsupported("number compared with text")
        unc = a.unc | b.unc
        if a.kind == "str":
            if isinstance(op, (ast.Eq, ast.NotEq)):
                # None equals only None; a non-empty literal never equals None nor "".
                lit_a = isinstance(left, ast.Constant) and left.value != ""
                lit_b = isinstance(right, ast.Constant) and right.value != ""
                if not (lit_a or lit_b):
                    unc = unc | a.none | b.none
            else:
                unc = unc | a.none | b.none  # None < 'x' raises in the row path
        ops = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
        name = ops.get(type(op))
        if name is None:
            raise Unsupported("comparison")
        return getattr(a.expr, name)(b.expr), unc

    def value(self, node: ast.AST) -> _Val:
        no = pl.lit(False)
        if isinstance(node, ast.Name):
            f = self.fields[node.id]
            v = self.v(node.id)
            if f.type in ("integer", "decimal"):
                # (t or 0): an empty number is 0
                return _Val("num", pl.when(v.str.len_bytes() == 0).then(0).otherwise(scaled(v, self.scale)), no, no)
            return _Val("str", v, v.str.len_bytes() == 0, no)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return _Val("str", pl.lit(node.value, dtype=pl.String), no, no)
            exact = Decimal(str(node.value)) * (10 ** self.scale)
            if exact != exact.to_integral_value():
                raise Unsupported(f"literal {node.value!r}")
            return _Val("num", pl.lit(int(exact), dtype=pl.Int64), no, no)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            a, b = self.value(node.left), self.value(node.right)
            if a.kind != "num" or b.kind != "num":
                raise Unsupported("arithmetic on text")
            e = a.expr + b.expr if isinstance(node.op, ast.Add) else a.expr - b.expr
            return _Val("num", e, no, a.unc | b.unc)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            a = self.value(node.operand)
            if a.kind != "num":
                raise Unsupported("minus text")
            return _Val("num", -a.expr, no, a.unc)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            arg = node.args[0]
            assert isinstance(arg, ast.Name)
            f = self.fields[arg.id]
            v = self.v(arg.id)
            numeric = f.type in ("integer", "decimal")
            if node.func.id == "len" and not numeric:
                return _Val("num", v.str.len_chars().cast(pl.Int64) * (10 ** self.scale), no, no)
            if node.func.id == "day" and not numeric:
                return _Val("str", v.str.slice(0, 8), no, no)
            if node.func.id == "abs" and numeric:
                return _Val("num", self.value(arg).expr.abs(), no, no)
        raise Unsupported(f"{ast.dump(node)} as a value")


def _rule_scale(unit: Unit, exprs: list[expressions.Expression]) -> int:
    """The decimal scale rule arithmetic runs at: the largest of the decimal fields and literals it reads."""
    fields = {f.id: f for f in unit.fields}
    scale = 0
    digits = 0
    for e in exprs:
        for n in e.names:
            f = fields[n]
            if f.type == "decimal":
                scale = max(scale, f.scale or 0)
        for node in ast.walk(e.tree):
            if isinstance(node, (ast.Mult, ast.Div)):
                raise Unsupported("multiplication or division in a rule")
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                scale = max(scale, -Decimal(str(node.value)).as_tuple().exponent)  # type: ignore[operator]
    for e in exprs:
        for n in e.names:
            f = fields[n]
            if f.type == "decimal":
                digits = max(digits, (f.precision or 0) - (f.scale or 0) + scale)
            elif f.type == "integer":
                digits = max(digits, int(f.length or 0) + scale)
    if digits > _MAX_SCALED_DIGITS:
        raise Unsupported("rule arithmetic past Int64")
    return scale


def _condition(unit: Unit, idx: dict[str, int], texts: list[str | None]) -> tuple[pl.Expr, pl.Expr]:
    """(value, uncertain) of ``when and not assert`` (texts: [when, assert]); only ``when`` when assert is None."""
    when_text, assert_text = texts
    parsed = [expressions.parse(t, unit.has_field) for t in (when_text, assert_text) if t]
    rule = _Rule(unit, idx, _rule_scale(unit, parsed))
    val: pl.Expr | None = None
    unc: pl.Expr = pl.lit(False)
    if when_text:
        val, unc = rule.boolean(expressions.parse(when_text, unit.has_field).tree.body)
    if assert_text:
        aval, aunc = rule.boolean(expressions.parse(assert_text, unit.has_field).tree.body)
        if val is None:
            val, unc = ~aval, aunc
        else:
            unc = unc | (val & aunc)
            val = val & ~aval
    assert val is not None
    return val, unc


def _digits(v: pl.Expr, start: int, n: int) -> pl.Expr:
    return v.str.slice(start, n).cast(pl.Int32, strict=False)


def valid_date(v: pl.Expr) -> pl.Expr:
    """True where ``v`` is a real YYYYMMDD from 1900 to 2099 (compiler.valid_dates).

    Eight ASCII digits that polars' date parser accepts (it refuses a 30th of February)
    with a year in range; cheaper than ``is_in`` over the 73,000 dates, whose hash set
    polars would build again for every batch. A test holds it to the row path's set.
    """
    parsed = v.str.strptime(pl.Date, "%Y%m%d", strict=False)
    return (v.str.contains("^[0-9]{8}$") & parsed.dt.year().is_between(1900, 2099)).fill_null(False)


def valid_datetime(v: pl.Expr) -> pl.Expr:
    """True where ``v`` is YYYYMMDDHHMMSS with a valid date (as ``valid_date``) and time of day."""
    h, mi, sec = _digits(v, 8, 2), _digits(v, 10, 2), _digits(v, 12, 2)
    return (v.str.contains("^[0-9]{14}$") & valid_date(v.str.slice(0, 8))
            & (h <= 23) & (mi <= 59) & (sec <= 59)).fill_null(False)


def compile_plan(ctx: RunContext, unit: Unit, delimiter: str) -> UnitPlan:
    """The screen of ``unit`` for this run; raises Unsupported when it cannot be exact."""
    spec = ctx.spec
    fields = unit.fields
    idx = {f.id: i for i, f in enumerate(fields)}
    prev_map = (ctx.previous or {}).get(unit.name)
    if prev_map and any(f.opening_of or f.watch for f in fields):
        raise Unsupported("comparison with the previous cycle")  # W601/W602 stay on the row path
    parts: list[pl.Expr] = []
    forbidden = forbidden_class(delimiter)
    for i, f in enumerate(fields):
        parts.append(_field_suspect(ctx, f, pl.col(col(i)), None if _holds_no_forbidden(ctx, f) else forbidden))
    if unit.direction == "up":
        if unit.has_field("CYCLE_ID"):
            parts.append(pl.col(col(idx["CYCLE_ID"])) != ctx.period)
        for f in fields:
            v = pl.col(col(idx[f.id]))
            if f.domain == "Domain_area_id" and f.area_level == "province" and ctx.party_province:
                parts.append(v != ctx.party_province)
            if f.domain == "Domain_area_id" and f.area_level == "local_network" and ctx.party_network:
                parts.append(v != ctx.party_network)
        if ctx.list_ids is not None and unit.parent is None:
            for f in fields:
                if f.domain == "Domain_cust_id" and f.id in unit.primary_key:
                    parts.append(~pl.col(col(idx[f.id])).is_in(pl.Series(sorted(ctx.list_ids), dtype=pl.String).implode()))
    area = spec.domain("Domain_area_id").version_on(ctx.day)
    for r in unit.rules:
        if r.scope != "record":
            continue
        if r.check == "network_in_province":
            prov, latn = r.fields
            keys = sorted(area.codes)
            parent = pl.col(col(idx[latn])).replace_strict(
                keys, [area.codes[k].parent for k in keys], default=None, return_dtype=pl.String)
            parts.append(parent.is_null() | (parent != pl.col(col(idx[prov]))))
        elif r.check and r.check not in ("expression",) and not r.assert_expr:
            raise Unsupported(f"record rule check {r.check}")
        else:
            val, unc = _condition(unit, idx, [r.when_expr, r.assert_expr])
            parts.append(val | unc)
    projections: list[tuple[Projection, pl.Expr | None]] = []
    for p in needed_projections(spec, unit):
        if p.where:
            val, unc = _condition(unit, idx, [p.where, None])
            parts.append(unc | val.is_null())  # a clean row's projection must be decided exactly
            projections.append((p, val))
        else:
            projections.append((p, None))
    seen = [(r.id, r.field) for r in unit.rules
            if r.scope == "file" and r.check == "covers_sender_networks" and r.field is not None]
    sorted_keys, runs_only = duplicate_tables(spec, unit)
    sums = needed_sums(spec, unit)
    facts = {f for p, _ in projections for f in (*p.key, *([p.value] if p.value else []))}
    for s in sums:
        facts.update((s.field, *s.by))
    facts.update(f for f in (network_field(unit), *(f for _, f in seen)) if f)
    fact_columns = ("i", "suspect", *[f"w{k}" for k, (_, w) in enumerate(projections) if w is not None],
                    *[col(i) for i, f in enumerate(fields) if f.id in facts])
    return UnitPlan(unit=unit, nf=len(fields), parts=parts, projections=projections,
                    sums=sums, typed={f.id: f.type for f in fields},
                    scales={f.id: f.scale or 0 for f in fields if f.type == "decimal"},
                    network=network_field(unit), seen=seen, columns=[f.id for f in fields],
                    sorted_keys=sorted_keys, runs_only=runs_only,
                    fact_columns=fact_columns,
                    clean_line_bytes=sum(_max_bytes(ctx, f) for f in fields) + len(fields) - 1)


def _max_bytes(ctx: RunContext, f: Field) -> int:
    """The most UTF-8 bytes a value of ``f`` can hold and pass its own check (``_field_suspect``)."""
    if f.type == "integer":
        return int(f.length or 0) + 1
    if f.type == "decimal":
        return (f.precision or 0) + 2
    if f.type == "date":
        return 8
    if f.type == "datetime":
        return 14
    codes = _code_list(ctx, f)
    if codes is not None:
        return max((len(c.encode()) for c in codes), default=0)
    return 4 * int(f.length or 0)  # a string, or a code of a pattern domain: at most ``length`` characters


def _holds_no_forbidden(ctx: RunContext, f: Field) -> bool:
    """Whether the field's own check fails on any value with a forbidden character (so the screen need not look)."""
    if f.type in ("integer", "decimal", "date", "datetime"):
        return True  # digits, a sign and a point only
    codes = _code_list(ctx, f)
    return codes is not None and not any(find_forbidden(c) for c in codes)


def _code_list(ctx: RunContext, f: Field) -> list[str] | None:
    """The codes a code field takes on the run's day (sorted); None for any other field, or a pattern domain."""
    if f.type != "code" or f.domain is None:
        return None
    dom = ctx.spec.domain(f.domain)
    return None if dom.kind == "pattern" else sorted(dom.version_on(ctx.day).field_codes(f.area_level))


def duplicate_tables(spec: Spec, unit: Unit) -> tuple[frozenset[str], frozenset[str]]:
    """(the key tables the file-level checks read for repeated keys, those of them nothing else reads).

    The same tables ``DeliveryValidator.file_level`` asks ``KeyStore.duplicates`` about: the
    primary key's, and for each unique rule the first projection with its fields as key. The
    others (a network-less unit's parent keys, key -> network, cross-unit sides) are joined in
    SQLite by the cross-unit checks, so a table that is also one of them stays there in full.
    """
    projections = needed_projections(spec, unit)
    dup = {projections[0].name}
    for r in unit.rules:
        if r.scope == "file" and r.check == "unique":
            fields = key_fields(r.fields)
            dup.add(next(p.name for p in projections if p.key == fields))
    other = {p.name for p in (child_projection(spec, unit), network_projection(spec, unit)) if p is not None}
    for r in spec.cross_rules:
        if r.check in ("exists", "exactly_one", "list_covered"):
            for side in (r.left, r.right):
                if side is not None and side["unit"] == unit.name:
                    other.add(Projection(unit.name, key_fields(side["key"]), where=side.get("where")).name)
        elif r.check == "count_distinct_equals" and r.right is not None and r.right["unit"] == unit.name:
            other.add(Projection(unit.name, key_fields(r.by), value=r.right["field"]).name)
    return frozenset(dup), frozenset(dup - other)
