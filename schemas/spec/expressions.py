"""The rule expression language: parsed against a whitelist, compiled to Python source.

Rule expressions are data written by the people who maintain the standard, but they still
never reach ``eval`` as written: each is parsed with :mod:`ast`, every node is checked
against a whitelist, and only then is Python source regenerated from the checked tree, with
field ids mapped to variables the caller chooses. The validator embeds that source in the
per-unit check function it generates, so rules cost no interpretation at run time.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Mapping

from .._exceptions import ExpressionError

FUNCTIONS = ("empty", "present", "len", "abs", "day")

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMPOPS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in",
}


@dataclass(frozen=True)
class Expression:
    """A checked expression: its text, the fields it reads and a source generator."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def to_python(self, var: Callable[[str], str], numeric: Callable[[str], bool]) -> str:
        """Python source for this expression.

        ``var(name)`` gives the variable holding a field's typed value (None when empty);
        ``numeric(name)`` says whether the field is a number, so that an empty number counts
        as 0 in arithmetic and comparisons, as the standard says.
        """
        return _Emitter(var, numeric).emit(self.tree.body)

    def evaluate(self, row: Mapping[str, object], numeric: Callable[[str], bool]) -> bool:
        """Evaluate on a mapping of field id to typed value (for tests and one-off use)."""
        names = sorted(self.names)
        env = {f"v{i}": row.get(n) for i, n in enumerate(names)}
        index = {n: f"v{i}" for i, n in enumerate(names)}
        src = self.to_python(lambda n: index[n], numeric)
        code = compile(src, "<rule>", "eval")
        return bool(eval(code, {"__builtins__": {}, "Decimal": Decimal, **RUNTIME}, env))  # noqa: S307 — source generated from a whitelisted tree


def parse(text: str, known: Callable[[str], bool]) -> Expression:
    """Parse and check ``text``; ``known(name)`` says whether a field id exists."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in {text!r}: {exc.msg}") from None
    names: set[str] = set()
    _check(tree.body, text, known, names)
    return Expression(text=text, tree=tree, names=frozenset(names))


def _check(node: ast.AST, text: str, known: Callable[[str], bool], names: set[str]) -> None:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
        for v in node.values:
            _check(v, text, known, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        _check(node.operand, text, known, names)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left, text, known, names)
        _check(node.right, text, known, names)
    elif isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
        _check(node.left, text, known, names)
        for c in node.comparators:
            _check(c, text, known, names)
    elif isinstance(node, ast.Name):
        if not known(node.id):
            raise ExpressionError(f"unknown field {node.id!r} in {text!r}")
        names.add(node.id)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)) and not isinstance(node.value, bool):
        pass
    elif isinstance(node, ast.Tuple):
        for e in node.elts:
            if not (isinstance(e, ast.Constant) and isinstance(e.value, (str, int))):
                raise ExpressionError(f"only literals may appear in a tuple in {text!r}")
    elif isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise ExpressionError(f"only the functions {', '.join(FUNCTIONS)} are allowed in {text!r}")
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Name):
            raise ExpressionError(f"{node.func.id}() takes exactly one field id in {text!r}")
        _check(node.args[0], text, known, names)
    else:
        raise ExpressionError(f"{type(node).__name__} is not allowed in {text!r}")


def _empty(v: object) -> bool:
    return v is None or v == ""


RUNTIME: dict[str, object] = {"_empty": _empty}


class _Emitter:
    def __init__(self, var: Callable[[str], str], numeric: Callable[[str], bool]) -> None:
        self.var = var
        self.numeric = numeric

    def emit(self, node: ast.AST) -> str:
        if isinstance(node, ast.BoolOp):
            op = " and " if isinstance(node.op, ast.And) else " or "
            return "(" + op.join(self.emit(v) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp):
            return f"(not {self.emit(node.operand)})" if isinstance(node.op, ast.Not) else f"(-{self.value(node.operand)})"
        if isinstance(node, ast.BinOp):
            return f"({self.value(node.left)} {_BINOPS[type(node.op)]} {self.value(node.right)})"
        if isinstance(node, ast.Compare):
            parts = [self.value(node.left)]
            for cmp, c in zip(node.ops, node.comparators):
                parts.append(_CMPOPS[type(cmp)])
                parts.append(self.value(c))
            return "(" + " ".join(parts) + ")"
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and isinstance(node.args[0], ast.Name)
            name = node.args[0].id
            v = self.var(name)
            fn = node.func.id
            if fn == "empty":
                return f"_empty({v})"
            if fn == "present":
                return f"(not _empty({v}))"
            if fn == "len":
                return f"len({v} or '')"
            if fn == "day":  # the YYYYMMDD of a date or datetime: compares a datetime with a date by day
                return f"({v} or '')[:8]"
            return f"abs({v} or 0)"
        return self.value(node)

    def value(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            v = self.var(node.id)
            return f"({v} or 0)" if self.numeric(node.id) else v
        if isinstance(node, ast.Constant):
            if isinstance(node.value, float):
                return f"Decimal({repr(str(node.value))})"
            return repr(node.value)
        if isinstance(node, ast.Tuple):
            return "(" + ", ".join(repr(e.value) for e in node.elts if isinstance(e, ast.Constant)) + ",)"
        return self.emit(node)


def as_decimal(text: str) -> Decimal | None:
    """A decimal literal, or None if ``text`` is not one."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return None
