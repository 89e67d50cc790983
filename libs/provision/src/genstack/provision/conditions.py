"""The small, safe language of a manifest entry's ``when:`` condition.

A condition is a Python-like boolean expression over environment variables the manifest
declares, for example::

    ENABLE_CONTROLNET and 'canny' in CONTROLNET_MODELS
    ENABLE_VIBEVOICE and VIBEVOICE_MODEL == 'Large'
    WAN_720P or ENABLE_VACE

Allowed: variable names, string/number/bool literals, ``and``/``or``/``not``, ``==``/``!=``,
``in``/``not in`` (membership in a list variable) and parentheses. Nothing is ever passed to
``eval``: the expression is parsed with :mod:`ast` and walked by :func:`evaluate`, so a
manifest cannot run code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Condition", "ConditionError", "Value"]

Value = bool | str | int | float | tuple[str, ...]


class ConditionError(ValueError):
    """The condition text is not in the allowed language."""


@dataclass(frozen=True)
class Condition:
    """A parsed ``when:`` expression; :attr:`names` are the variables it reads."""

    text: str
    tree: ast.expr
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Condition:
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ConditionError(f"not a valid expression: {exc.msg}") from None
        names: set[str] = set()
        _check(tree, names)
        return cls(text=text, tree=tree, names=frozenset(names))

    def evaluate(self, values: Mapping[str, Value]) -> bool:
        return bool(_eval(self.tree, values))


def _check(node: ast.expr, names: set[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, names)
    elif isinstance(node, ast.Compare):
        allowed = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)
        if not all(isinstance(op, allowed) for op in node.ops):
            raise ConditionError("only ==, !=, in and not in compare values")
        _check(node.left, names)
        for comparator in node.comparators:
            _check(comparator, names)
    elif isinstance(node, ast.Name):
        if not node.id.isupper() or not node.id.replace("_", "").isalnum():
            raise ConditionError(f"{node.id!r} is not an environment variable name (UPPER_CASE)")
        names.add(node.id)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool):
            raise ConditionError(f"literal {node.value!r} is not a string, number or boolean")
    else:
        raise ConditionError(
            f"{type(node).__name__} is not allowed (use names, literals, and/or/not, "
            "==, !=, in, not in)"
        )


def _eval(node: ast.expr, values: Mapping[str, Value]) -> Value:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, values) for v in node.values)
        return any(_eval(v, values) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return not _eval(node.operand, values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, values)
            if not _compare(op, left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        return values[node.id]
    assert isinstance(node, ast.Constant)
    constant = node.value
    assert isinstance(constant, str | int | float | bool)  # checked at parse time
    return constant


def _compare(op: ast.cmpop, left: Value, right: Value) -> bool:
    if isinstance(op, ast.Eq):
        return _norm(left) == _norm(right)
    if isinstance(op, ast.NotEq):
        return _norm(left) != _norm(right)
    members = right if isinstance(right, tuple) else (str(right),)
    contained = _norm(left) in {_norm(m) for m in members}
    return contained if isinstance(op, ast.In) else not contained


def _norm(value: Value) -> Value:
    # Variant names are compared case-insensitively: VIBEVOICE_MODEL=large means Large.
    return value.lower() if isinstance(value, str) else value
