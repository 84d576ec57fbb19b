"""A small, safe expression language for alert rules.

Rules in the TOML config carry a ``when`` condition such as::

    when = "rotation.hot_theme_excess >= 0.10 and rotation.microcap_excess_10d <= -0.03"

This module tokenises and parses that text by hand (a recursive-descent parser
over a fixed grammar). It never calls ``eval``/``exec``/``compile`` and never
builds a Python AST, so a config file cannot run code.

Grammar (keywords are lowercase)::

    expr       := or_expr
    or_expr    := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | '(' expr ')' | comparison
    comparison := operand OP operand          OP in  <  <=  >  >=  ==  !=
    operand    := NAME | '-'? NUMBER

* ``NAME`` is a dotted identifier (``theme.930713.excess_20d``): the first
  segment starts with a letter or ``_``, later segments are ``[A-Za-z0-9_]+``.
  Segments starting with ``__`` are rejected, and so are names whose first
  segment is a keyword or a reserved literal (``true``, ``none``, ``nan``, ...).
* ``NUMBER`` is a finite decimal such as ``15``, ``0.10``, ``.5``, ``1e-3``.
* A bare name or number is not a condition; chained comparisons
  (``a < b < c``) are rejected.

``parse`` returns an immutable tree (frozen dataclasses) that evaluates with
three-valued (Kleene) logic, on one day's values (``Expr.evaluate``) or on every row of a
table at once (:func:`evaluate_columns`, :func:`evaluate_frame`: vectorised, equal row by
row): a comparison involving a missing name, ``None`` or
NaN is unknown (``None``), ``False and None`` is ``False``, ``True or None`` is
``True``, and otherwise unknown propagates.

Every problem with the text is reported as :class:`ExprError`, whose message is
a single line naming the problem and the 1-based column and quoting the
expression, e.g. ``unexpected '(' at column 4 in "a.b() > 1"; function calls
are not supported``.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from signals.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")


__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "FLIPPED",
    "OPERATORS",
    "And",
    "Comparison",
    "Expr",
    "ExprError",
    "Name",
    "Not",
    "Number",
    "Operand",
    "Or",
    "comparisons",
    "evaluate_columns",
    "evaluate_frame",
    "frame_columns",
    "oriented",
    "parse",
]

MAX_LENGTH: Final = 2000
"""Longest accepted expression text, in characters."""

MAX_DEPTH: Final = 50
"""Deepest accepted nesting of ``(`` and ``not``."""

_EXCERPT_WIDTH: Final = 80
OPERATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
"""The comparison operators: the one table, for scalars and (elementwise) numpy arrays alike."""
FLIPPED: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
"""Each operator with its operands swapped (``1 < a`` is ``a > 1``)."""
_KEYWORDS: Final = frozenset({"and", "or", "not"})
_RESERVED: Final = frozenset({"true", "false", "none", "null", "nan", "inf", "infinity"})

_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_NUMBER_RE: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD_TAIL_RE: Final = re.compile(r"[A-Za-z0-9_.]*")
_DIGITS: Final = frozenset("0123456789")
_WORD_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CHAR_HINTS: Final = {
    "+": "arithmetic is not supported",
    "*": "arithmetic is not supported",
    "/": "arithmetic is not supported",
    "%": "arithmetic is not supported",
    "'": "string literals are not supported",
    '"': "string literals are not supported",
    "[": "indexing is not supported",
    "]": "indexing is not supported",
    "&": "use 'and'",
    "|": "use 'or'",
    "~": "use 'not'",
    ",": "lists and function arguments are not supported",
}


# --------------------------------------------------------------------------- errors


def _escape(text: str) -> str:
    """Render ``text`` on one line: escape backslashes, quotes and unprintables."""
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])  # '\n', '\x00', '\u2028', ...
    return "".join(out)


def _excerpt(text: str, column: int) -> str:
    """The quoted expression, shortened to a window around ``column`` if long."""
    if len(text) <= _EXCERPT_WIDTH:
        return f'"{_escape(text)}"'
    start = max(0, min(column - 1 - _EXCERPT_WIDTH // 2, len(text) - _EXCERPT_WIDTH))
    end = start + _EXCERPT_WIDTH
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(text) else ""
    return f'"{prefix}{_escape(text[start:end])}{suffix}"'


class ExprError(ValueError):
    """An alert-rule expression is malformed or uses something unsupported.

    Attributes: ``reason`` (what is wrong), ``expression`` (the full text),
    ``column`` (1-based position of the problem) and ``hint`` (may be empty).
    ``str(error)`` is a single line combining all of them.
    """

    def __init__(self, reason: str, expression: str, column: int, hint: str = "") -> None:
        self.reason = reason
        self.expression = expression
        self.column = column
        self.hint = hint
        message = f"{reason} at column {column} in {_excerpt(expression, column)}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[ExprError], tuple[str, str, int, str]]:
        return (type(self), (self.reason, self.expression, self.column, self.hint))


# --------------------------------------------------------------------------- tree


def _name_problem(name: str) -> tuple[str, str] | None:
    """Why ``name`` is not an acceptable signal name, as (reason, hint), or None."""
    if _NAME_RE.fullmatch(name) is None:
        return (
            f"invalid name {name!r}",
            "names are dotted identifiers such as 'market.return_20d'",
        )
    segments = name.split(".")
    first = segments[0]
    if first in _KEYWORDS:
        return (f"keyword {first!r} cannot be used as a name", "")
    if first.lower() in _KEYWORDS:
        return (f"unexpected {first!r}", f"keywords are lowercase: use {first.lower()!r}")
    if first.lower() in _RESERVED:
        return (
            f"{first!r} is not supported",
            "boolean, null and non-finite literals are not part of the rule language",
        )
    for segment in segments:
        if segment.startswith("__"):
            return (f"invalid name {name!r}", "name segments starting with '__' are not allowed")
    return None


def _format_number(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (``15``, ``0.1``, ``1e-05``)."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


class Expr:
    """Base class of boolean expression nodes (Comparison, Not, And, Or).

    Every node has ``names`` (frozenset of the signal names it references),
    ``evaluate(values)`` (Kleene three-valued: True, False or None for unknown)
    and a canonical ``str()`` such that ``parse(str(e)) == e``.
    """

    __slots__ = ()
    names: frozenset[str]
    _precedence: int = 0

    def evaluate(self, values: Mapping[str, float | None]) -> bool | None:
        raise NotImplementedError

    def _wrapped(self, min_precedence: int) -> str:
        text = str(self)
        return f"({text})" if self._precedence < min_precedence else text


@dataclass(frozen=True)
class Name:
    """A signal reference such as ``market.return_20d``."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Name expects a str, got {type(self.name).__name__}")
        problem = _name_problem(self.name)
        if problem is not None:
            raise ValueError("; ".join(part for part in problem if part))

    def resolve(self, values: Mapping[str, float | None]) -> float | None:
        """The signal's value, or None when it is absent, None or NaN."""
        value = values.get(self.name)
        if value is None:
            return None
        if not isinstance(value, numbers.Real):
            raise TypeError(
                f"signal {self.name!r} has non-numeric value {value!r} "
                f"({type(value).__name__}); expected a real number or None"
            )
        if value != value:  # NaN, for float and numpy scalars alike
            return None
        return value  # type: ignore[return-value]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Number:
    """A finite numeric literal (stored as float; ``-0.03`` is ``Number(-0.03)``)."""

    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise TypeError(f"Number expects a real number, got {type(self.value).__name__}")
        value = float(self.value)
        if not math.isfinite(value):
            raise ValueError(f"Number must be finite, got {value!r}")
        object.__setattr__(self, "value", value)

    def resolve(self, values: Mapping[str, float | None]) -> float | None:
        """The literal value (``values`` is ignored)."""
        return self.value

    def __str__(self) -> str:
        return _format_number(self.value)


Operand = Name | Number


@dataclass(frozen=True)
class Comparison(Expr):
    """``left op right``; unknown (None) if either side is missing, None or NaN."""

    left: Operand
    op: str
    right: Operand
    names: frozenset[str] = field(init=False, repr=False, compare=False)
    _precedence = 4

    def __post_init__(self) -> None:
        for side in (self.left, self.right):
            if not isinstance(side, Name | Number):
                raise TypeError(f"comparison operands must be Name or Number, got {side!r}")
        if self.op not in OPERATORS:
            raise ValueError(f"unknown comparison operator {self.op!r}")
        names = frozenset(s.name for s in (self.left, self.right) if isinstance(s, Name))
        object.__setattr__(self, "names", names)

    def evaluate(self, values: Mapping[str, float | None]) -> bool | None:
        left = self.left.resolve(values)
        right = self.right.resolve(values)
        if left is None or right is None:
            return None
        return bool(OPERATORS[self.op](left, right))

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


def _check_expr(node: object) -> Expr:
    if not isinstance(node, Expr):
        raise TypeError(f"expected a boolean expression node, got {node!r}")
    return node


@dataclass(frozen=True)
class Not(Expr):
    """Kleene negation: ``not None`` is None."""

    operand: Expr
    names: frozenset[str] = field(init=False, repr=False, compare=False)
    _precedence = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _check_expr(self.operand).names)

    def evaluate(self, values: Mapping[str, float | None]) -> bool | None:
        result = self.operand.evaluate(values)
        return None if result is None else not result

    def __str__(self) -> str:
        return f"not {self.operand._wrapped(3)}"


def _flatten(cls: type[Expr], operands: tuple[Expr, ...]) -> tuple[Expr, ...]:
    flat: list[Expr] = []
    for node in operands:
        if isinstance(node, cls):
            flat.extend(node.operands)  # type: ignore[attr-defined]
        else:
            flat.append(_check_expr(node))
    if len(flat) < 2:
        raise ValueError(f"{cls.__name__} needs at least two operands")
    return tuple(flat)


@dataclass(frozen=True)
class And(Expr):
    """Kleene conjunction of two or more operands (nested Ands are flattened)."""

    operands: tuple[Expr, ...]
    names: frozenset[str] = field(init=False, repr=False, compare=False)
    _precedence = 2

    def __post_init__(self) -> None:
        operands = _flatten(And, tuple(self.operands))
        object.__setattr__(self, "operands", operands)
        object.__setattr__(self, "names", frozenset().union(*(o.names for o in operands)))

    def evaluate(self, values: Mapping[str, float | None]) -> bool | None:
        result: bool | None = True
        for node in self.operands:
            value = node.evaluate(values)
            if value is False:
                return False
            if value is None:
                result = None
        return result

    def __str__(self) -> str:
        return " and ".join(node._wrapped(3) for node in self.operands)


@dataclass(frozen=True)
class Or(Expr):
    """Kleene disjunction of two or more operands (nested Ors are flattened)."""

    operands: tuple[Expr, ...]
    names: frozenset[str] = field(init=False, repr=False, compare=False)
    _precedence = 1

    def __post_init__(self) -> None:
        operands = _flatten(Or, tuple(self.operands))
        object.__setattr__(self, "operands", operands)
        object.__setattr__(self, "names", frozenset().union(*(o.names for o in operands)))

    def evaluate(self, values: Mapping[str, float | None]) -> bool | None:
        result: bool | None = False
        for node in self.operands:
            value = node.evaluate(values)
            if value is True:
                return True
            if value is None:
                result = None
        return result

    def __str__(self) -> str:
        return " or ".join(node._wrapped(2) for node in self.operands)


def comparisons(expr: Expr) -> list[Comparison]:
    """Every comparison leaf of ``expr``, left to right (duplicates kept)."""
    found: list[Comparison] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Comparison):
            found.append(node)
        elif isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, And | Or):
            stack.extend(reversed(node.operands))
        else:
            raise TypeError(f"expected an expression node, got {node!r}")
    return found


def oriented(comp: Comparison) -> Comparison:
    """``comp`` with the signal on the left: unchanged when its left side is a name, else its
    sides swapped and its operator flipped (``0.1 < a.x`` -> ``a.x > 0.1``; two numbers are
    swapped too). Messages, calibration and charts read a comparison this way."""
    if isinstance(comp.left, Name):
        return comp
    return Comparison(comp.right, FLIPPED[comp.op], comp.left)


# --------------------------------------------------------------------------- vectorised


def _column(node: Operand, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if isinstance(node, Name):
        col = columns.get(node.name)
        return np.full(n, np.nan) if col is None else col
    return np.full(n, node.value)


def evaluate_columns(e: Expr, columns: Mapping[str, np.ndarray], n: int,
                     memo: dict[Expr, tuple[np.ndarray, np.ndarray]] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``e`` on each of ``n`` rows, as two boolean arrays (is True, is False); neither = unknown.

    ``columns``: signal name -> float array of length ``n`` (NaN = missing; an absent name is
    missing on every row). Kleene logic exactly as :meth:`Expr.evaluate` on each row. ``memo``
    (optional) keeps results by node, so a condition and its negation are evaluated once.
    """
    if memo is not None and e in memo:
        return memo[e]
    if isinstance(e, Comparison):
        left, right = _column(e.left, columns, n), _column(e.right, columns, n)
        known = ~(np.isnan(left) | np.isnan(right))
        with np.errstate(invalid="ignore"):
            holds = np.asarray(OPERATORS[e.op](left, right), dtype=bool)
        out = (holds & known, ~holds & known)
    elif isinstance(e, Not):
        t, f = evaluate_columns(e.operand, columns, n, memo)
        out = (f, t)
    elif isinstance(e, And | Or):
        parts = [evaluate_columns(o, columns, n, memo) for o in e.operands]
        ts = np.vstack([p[0] for p in parts])
        fs = np.vstack([p[1] for p in parts])
        if isinstance(e, And):
            out = (ts.all(axis=0), fs.any(axis=0))
        else:
            out = (ts.any(axis=0), fs.all(axis=0))
    else:
        raise TypeError(f"expected an expression node, got {e!r}")
    if memo is not None:
        memo[e] = out
    return out


def frame_columns(values: pd.DataFrame, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Float arrays of the named columns present in ``values`` (None -> NaN)."""
    return {n: values[n].to_numpy(dtype=float, na_value=np.nan)
            for n in names if n in values.columns}


def evaluate_frame(e: Expr, values: pd.DataFrame) -> pd.Series:
    """``e`` on every row of ``values`` (index = days, columns = signals, NaN/None = missing):
    a Series of True, False or None (unknown), equal row by row to ``e.evaluate``."""
    n = len(values)
    t, f = evaluate_columns(e, frame_columns(values, e.names), n)
    out = np.full(n, None, dtype=object)
    out[t] = True
    out[f] = False
    return pd.Series(out, index=values.index, dtype=object)


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # name number op minus lparen rparen and or not end
    text: str
    pos: int  # 0-based offset into the expression
    value: float = 0.0

    def describe(self) -> str:
        if self.kind == "end":
            return "end of expression"
        if self.kind in ("name", "number"):
            return f"{self.kind} {self.text!r}"
        return repr(self.text)


def _tokenize(text: str) -> Iterator[_Token]:
    def fail(reason: str, pos: int, hint: str = "") -> ExprError:
        return ExprError(reason, text, pos + 1, hint)

    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            match = _NUMBER_RE.match(text, i)
            assert match is not None
            end = match.end()
            if end < n and (text[end] in _WORD_CHARS or text[end] == "."):
                tail = _WORD_TAIL_RE.match(text, end)
                assert tail is not None
                raise fail(
                    f"invalid number {text[i : tail.end()]!r}",
                    i,
                    "numbers look like 15, -0.03 or 1e-3 and cannot have attributes",
                )
            value = float(match.group())
            if not math.isfinite(value):
                raise fail(f"number {match.group()!r} is out of range", i)
            yield _Token("number", match.group(), i, value)
            i = end
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            match = _NAME_RE.match(text, i)
            assert match is not None
            end = match.end()
            word = match.group()
            if end < n and text[end] == ".":
                tail = _WORD_TAIL_RE.match(text, end)
                assert tail is not None
                raise fail(
                    f"invalid name {text[i : tail.end()]!r}",
                    i,
                    "names are dotted identifiers such as 'market.return_20d'",
                )
            if word in _KEYWORDS:
                yield _Token(word, word, i)
            else:
                problem = _name_problem(word)
                if problem is not None:
                    raise fail(problem[0], i, problem[1])
                yield _Token("name", word, i)
            i = end
        elif ch in "<>=!":
            pair = text[i : i + 2]
            if pair in OPERATORS:
                yield _Token("op", pair, i)
                i += 2
            elif ch in "<>":
                yield _Token("op", ch, i)
                i += 1
            elif ch == "=":
                raise fail("unexpected '='", i, "use '==' to test equality")
            else:
                raise fail("unexpected '!'", i, "use 'not' or '!='")
        elif ch == "(":
            yield _Token("lparen", ch, i)
            i += 1
        elif ch == ")":
            yield _Token("rparen", ch, i)
            i += 1
        elif ch == "-":
            yield _Token("minus", ch, i)
            i += 1
        else:
            raise fail(f"unexpected character {ch!r}", i, _CHAR_HINTS.get(ch, ""))
    yield _Token("end", "", n)


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        # Tokens are pulled lazily, so the leftmost problem is the one reported.
        self.tokens = _tokenize(text)
        self.current = next(self.tokens)
        self.depth = 0

    def error(self, reason: str, token: _Token, hint: str = "") -> ExprError:
        return ExprError(reason, self.text, token.pos + 1, hint)

    def unexpected(self, token: _Token, hint: str = "") -> ExprError:
        return self.error(f"unexpected {token.describe()}", token, hint)

    def peek(self) -> _Token:
        return self.current

    def advance(self) -> _Token:
        token = self.current
        if token.kind != "end":
            self.current = next(self.tokens)
        return token

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"expression is nested too deeply (more than {MAX_DEPTH} levels of "
                "parentheses and 'not')",
                token,
            )

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise self.error("empty expression", self.peek(), "expected a comparison")
        expr = self.or_expr()
        token = self.peek()
        if token.kind == "rparen":
            raise self.unexpected(token, "it has no matching '('")
        if token.kind != "end":
            raise self.unexpected(token, "expected 'and', 'or' or the end of the expression")
        return expr

    def or_expr(self) -> Expr:
        parts = [self.and_expr()]
        while self.peek().kind == "or":
            self.advance()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Expr:
        parts = [self.not_expr()]
        while self.peek().kind == "and":
            self.advance()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def not_expr(self) -> Expr:
        token = self.peek()
        if token.kind == "not":
            self.advance()
            self.enter(token)
            operand = self.not_expr()
            self.depth -= 1
            return Not(operand)
        if token.kind == "lparen":
            self.advance()
            self.enter(token)
            inner = self.or_expr()
            closing = self.peek()
            if closing.kind != "rparen":
                hint = f"missing ')' to close the '(' at column {token.pos + 1}"
                if closing.kind == "end":
                    raise self.error("unexpected end of expression", closing, hint)
                raise self.unexpected(closing, hint)
            self.advance()
            self.depth -= 1
            after = self.peek()
            if after.kind == "op":
                raise self.unexpected(
                    after, "a parenthesised condition cannot be compared with a value"
                )
            return inner
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand("expected a comparison")
        token = self.peek()
        if token.kind != "op":
            reason = f"expected a comparison operator (<, <=, >, >=, ==, !=) after {str(left)!r}"
            if token.kind in ("end", "and", "or", "rparen"):
                raise self.error(reason, token, "a bare name or number is not a condition")
            if token.kind == "lparen":
                raise self.unexpected(token, "function calls are not supported")
            if token.kind == "minus":
                raise self.unexpected(token, "arithmetic is not supported")
            raise self.unexpected(token, reason)
        self.advance()
        right = self.operand(f"expected a name or number after '{token.text}'")
        after = self.peek()
        if after.kind == "op":
            raise self.error(
                "chained comparisons are not supported",
                after,
                "write 'a < b and b < c' instead of 'a < b < c'",
            )
        return Comparison(left, token.text, right)

    def operand(self, expected: str) -> Operand:
        token = self.peek()
        if token.kind == "name":
            self.advance()
            return Name(token.text)
        if token.kind == "number":
            self.advance()
            return Number(token.value)
        if token.kind == "minus":
            self.advance()
            number = self.peek()
            if number.kind != "number":
                raise self.error(
                    "unary minus must be followed by a number",
                    token,
                    f"found {number.describe()}",
                )
            self.advance()
            return Number(-number.value)
        raise self.unexpected(token, expected)


def parse(text: str) -> Expr:
    """Parse an alert-rule condition into an immutable expression tree.

    Raises :class:`ExprError` (a ``ValueError``) for any malformed or
    unsupported text, and ``TypeError`` if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(
            f"expression is too long ({len(text)} characters, limit {MAX_LENGTH})",
            text,
            MAX_LENGTH + 1,
        )
    try:
        return _Parser(text).parse()
    except RecursionError:  # only if the caller is already close to the recursion limit
        raise ExprError(
            "expression is nested too deeply", text, 1, f"the limit is {MAX_DEPTH} levels"
        ) from None
