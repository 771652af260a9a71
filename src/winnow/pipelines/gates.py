"""Gates: the tiny, safe expression language of a pipeline step's ``gates:``.

A gate is one boolean expression over a step's outputs, e.g. ``count(split_leakage) == 0``,
``rate(label_error) <= 1%``, ``map50 >= 0.6 and min_slice(map50) >= 0.4``. It is parsed by the
recursive-descent parser below into a small tree and evaluated by walking that tree: there is no
``eval``, no attribute access, no indexing, no calls but the step kind's own functions, and names
starting with ``_`` are refused, so a YAML file cannot run code.

Grammar (``docs/pipelines.md``)::

    gate       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (CMP sum)*             CMP: < <= > >= == != (also the signs ≤ ≥ ≠)
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER ["%"] | "true" | "false" | NAME | NAME "(" [arg ("," arg)*] ")" | "(" or_expr ")"
    arg        := NAME | STRING                  STRING: '...' or "..."

``1%`` is ``0.01``. Comparisons chain as in Python (``0.2 <= x < 0.5``). A gate must be boolean
(a comparison, ``true``/``false`` or ``and``/``or``/``not`` of those); ``map50`` alone is refused.
A comparison with an undefined value (a metric with no data, a division by zero) is false and is
reported as ``undefined``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from winnow.errors import InvalidInputError

MAX_LENGTH = 500

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'[^'\\]*'|"[^"\\]*")
  | (?P<op><=|>=|==|!=|≤|≥|≠|[<>()+\-*/%,])
    """,
    re.VERBOSE,
)
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!=", "≤": "<=", "≥": ">=", "≠": "!="}
_KEYWORDS = {"and", "or", "not", "true", "false"}


class GateSyntaxError(InvalidInputError):
    """A gate that does not parse, or uses a name or function its step does not have."""


@dataclass(frozen=True)
class _Token:
    kind: str  # number | name | string | op | end
    text: str
    pos: int


# A parsed gate is a tree of tuples: ("num", float) ("bool", bool) ("name", str)
# ("call", fname, (args...)) ("neg", node) ("arith", op, a, b) ("cmp", (nodes...), (ops...))
# ("not", node) ("and", (nodes...)) ("or", (nodes...))
Node = tuple


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            hint = " (use == to compare)" if text[pos] == "=" else ""
            raise GateSyntaxError(f"unexpected character {text[pos]!r} at position {pos + 1}{hint}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, match.group(), pos))
        pos = match.end()
    out.append(_Token("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def _fail(self, what: str) -> GateSyntaxError:
        t = self.tok
        found = "the end" if t.kind == "end" else repr(t.text)
        return GateSyntaxError(f"{what} at position {t.pos + 1}, found {found}")

    def _take(self, kind: str, text: str | None = None) -> _Token | None:
        t = self.tok
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return t
        return None

    def _keyword(self, word: str) -> bool:
        return self._take("name", word) is not None

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self._fail("expected an operator (and, or, <, <=, ==, ...)")
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self._keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else ("or", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.not_expr()]
        while self._keyword("and"):
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else ("and", tuple(parts))

    def not_expr(self) -> Node:
        if self._keyword("not"):
            return ("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        nodes = [self.sum()]
        ops: list[str] = []
        while self.tok.kind == "op" and self.tok.text in _CMP:
            ops.append(_CMP[self.tok.text])
            self.i += 1
            nodes.append(self.sum())
        return nodes[0] if not ops else ("cmp", tuple(nodes), tuple(ops))

    def sum(self) -> Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.tok.text
            self.i += 1
            node = ("arith", op, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = self.tok.text
            self.i += 1
            node = ("arith", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self._take("op", "-"):
            return ("neg", self.unary())
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if self._take("number"):
            value = float(t.text)
            if self._take("op", "%"):
                value /= 100.0
            return ("num", value)
        if self._take("op", "("):
            node = self.or_expr()
            if not self._take("op", ")"):
                raise self._fail("expected ')'")
            return node
        if t.kind == "name":
            if t.text in ("true", "false"):
                self.i += 1
                return ("bool", t.text == "true")
            if t.text in _KEYWORDS:
                raise self._fail("expected a value")
            if t.text.startswith("_"):
                raise GateSyntaxError(f"names may not start with '_': {t.text!r} at position {t.pos + 1}")
            self.i += 1
            if self._take("op", "("):
                args: list[str] = []
                if not self._take("op", ")"):
                    while True:
                        args.append(self.arg())
                        if self._take("op", ")"):
                            break
                        if not self._take("op", ","):
                            raise self._fail("expected ',' or ')' in the arguments")
                return ("call", t.text, tuple(args))
            return ("name", t.text)
        if t.kind == "string":
            raise self._fail("a quoted text can only be a function's argument")
        raise self._fail("expected a number, a name or '('")

    def arg(self) -> str:
        t = self.tok
        if self._take("string"):
            return t.text[1:-1]
        if t.kind == "name" and t.text not in _KEYWORDS:
            if t.text.startswith("_"):
                raise GateSyntaxError(f"names may not start with '_': {t.text!r} at position {t.pos + 1}")
            self.i += 1
            return t.text
        raise self._fail("a function's argument must be a name or a quoted text")


def _type(node: Node) -> str:
    """``bool`` or ``num``; raises on a mix (``map50 and 1``, ``(a < b) + 1``)."""
    kind = node[0]
    if kind in ("num", "name", "call"):
        return "num"
    if kind == "bool":
        return "bool"
    if kind in ("neg", "arith"):
        for child in (node[1],) if kind == "neg" else (node[2], node[3]):
            if _type(child) != "num":
                raise GateSyntaxError("arithmetic needs numbers, not a comparison")
        return "num"
    if kind == "cmp":
        for child in node[1]:
            if _type(child) != "num":
                raise GateSyntaxError("a comparison needs numbers on both sides (use 'and'/'or' to combine comparisons)")
        return "bool"
    children = (node[1],) if kind == "not" else node[1]
    for child in children:
        if _type(child) != "bool":
            raise GateSyntaxError(f"'{kind}' needs comparisons on both sides, e.g. 'map50 >= 0.5 {kind} map >= 0.3'")
    return "bool"


def _walk(node: Node):
    yield node
    kind = node[0]
    if kind in ("neg", "not"):
        yield from _walk(node[1])
    elif kind == "arith":
        yield from _walk(node[2])
        yield from _walk(node[3])
    elif kind == "cmp" or kind in ("and", "or"):
        for child in node[1]:
            yield from _walk(child)


def _text(node: Node) -> str:
    if node[0] == "name":
        return node[1]
    return f"{node[1]}({', '.join(node[2])})"


@dataclass(frozen=True)
class Gate:
    """A parsed gate: its text and tree. ``names``/``calls`` say what it reads."""

    text: str
    tree: Node = field(repr=False)

    @property
    def names(self) -> list[str]:
        return sorted({n[1] for n in _walk(self.tree) if n[0] == "name"})

    @property
    def calls(self) -> list[tuple[str, tuple[str, ...]]]:
        return sorted({(n[1], n[2]) for n in _walk(self.tree) if n[0] == "call"})


def parse_gate(text: Any) -> Gate:
    """Parse one gate; :class:`GateSyntaxError` says what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise GateSyntaxError(f"a gate must be a non-empty text like 'map50 >= 0.6', got {text!r}")
    if len(text) > MAX_LENGTH:
        raise GateSyntaxError(f"a gate is at most {MAX_LENGTH} characters")
    tree = _Parser(text).parse()
    if _type(tree) != "bool":
        raise GateSyntaxError(f"{text!r} is a number, not a condition: compare it, e.g. '{text.strip()} >= 0.5'")
    return Gate(text.strip(), tree)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class GateEnv:
    """What a gate can read: ``names`` (value or ``None`` for undefined) and ``functions``
    (``fn(*args) -> value or None``; they raise :class:`GateSyntaxError` for a bad argument)."""

    names: Mapping[str, float | int | bool | None]
    functions: Mapping[str, Callable[..., float | int | None]] = field(default_factory=dict)


@dataclass
class GateResult:
    """One gate's verdict and the values it read (``{"map50": 0.52}``), for the report."""

    gate: str
    passed: bool
    values: dict[str, float | None]

    @property
    def actual(self) -> str:
        return ", ".join(f"{k} = {_fmt(v)}" for k, v in self.values.items()) or "no values"

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "values": dict(self.values), "actual": self.actual}


def _fmt(value: float | None) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(int(value)) if isinstance(value, float) else str(value)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


_COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: math.isclose(a, b, rel_tol=0, abs_tol=1e-12),
    "!=": lambda a, b: not math.isclose(a, b, rel_tol=0, abs_tol=1e-12),
}


def evaluate_gate(gate: Gate, env: GateEnv) -> GateResult:
    """Evaluate ``gate`` over ``env``. An unknown name or function raises :class:`GateSyntaxError`
    naming what is available."""
    values: dict[str, float | None] = {}

    def num(node: Node) -> float | None:
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "name":
            if node[1] not in env.names:
                known = ", ".join(sorted(env.names)) or "none"
                raise GateSyntaxError(f"unknown name {node[1]!r} in gate {gate.text!r}; this step has: {known}")
            value = _number(env.names[node[1]])
            values[_text(node)] = value
            return value
        if kind == "call":
            fn = env.functions.get(node[1])
            if fn is None:
                known = ", ".join(f"{f}(...)" for f in sorted(env.functions)) or "none"
                raise GateSyntaxError(f"unknown function {node[1]!r} in gate {gate.text!r}; this step has: {known}")
            value = _number(fn(*node[2]))
            values[_text(node)] = value
            return value
        if kind == "neg":
            v = num(node[1])
            return None if v is None else -v
        a, b = num(node[2]), num(node[3])
        if a is None or b is None:
            return None
        op = node[1]
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        return None if b == 0 else a / b

    def truth(node: Node) -> bool:
        kind = node[0]
        if kind == "bool":
            return node[1]
        if kind == "not":
            return not truth(node[1])
        if kind == "and":
            return all([truth(c) for c in node[1]])  # noqa: C419 - every part evaluated: all values reported
        if kind == "or":
            return any([truth(c) for c in node[1]])  # noqa: C419 - as above
        operands = [num(c) for c in node[1]]
        ok = True
        for (a, b), op in zip(pairwise(operands), node[2], strict=True):
            ok = ok and a is not None and b is not None and _COMPARE[op](a, b)
        return ok

    passed = truth(gate.tree)
    return GateResult(gate.text, passed, values)
