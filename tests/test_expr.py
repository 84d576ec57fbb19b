"""Tests for monitor.alerting.expr, the safe alert-rule expression language."""

from __future__ import annotations

import inspect
import math
import pickle
import re
import sys
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.alerting import expr
from monitor.alerting.expr import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Comparison,
    Expr,
    ExprError,
    Name,
    Not,
    Number,
    Or,
    comparisons,
    parse,
)

NAN = float("nan")

# --------------------------------------------------------------------------- valid input

RULE_1 = "rotation.hot_theme_excess >= 0.10 and rotation.microcap_excess_10d <= -0.03"
RULE_2 = (
    "(market.return_20d <= -0.08 and market.amount_ratio_20_120 <= 0.75)"
    " or not microcap.vol_spike < 1.5"
)

# (text, canonical str, names)
PARSE_CASES = [
    ("a > 1", "a > 1", {"a"}),
    ("a>1", "a > 1", {"a"}),
    ("  a\t>=\n1  ", "a >= 1", {"a"}),
    ("a < 1", "a < 1", {"a"}),
    ("a <= 1", "a <= 1", {"a"}),
    ("a == 1", "a == 1", {"a"}),
    ("a != 1", "a != 1", {"a"}),
    ("a > b", "a > b", {"a", "b"}),
    ("1 < a", "1 < a", {"a"}),
    ("1 < 2", "1 < 2", set()),
    ("a > -0.03", "a > -0.03", {"a"}),
    ("a > - 0.03", "a > -0.03", {"a"}),
    ("-1 < a", "-1 < a", {"a"}),
    ("a > 1e-3", "a > 0.001", {"a"}),
    ("a > 1E3", "a > 1000", {"a"}),
    ("a > 1.5e+20", "a > 1.5e+20", {"a"}),
    ("a > 2.5e-10", "a > 2.5e-10", {"a"}),
    ("a > .5", "a > 0.5", {"a"}),
    ("a > 5.", "a > 5", {"a"}),
    ("a > 15", "a > 15", {"a"}),
    ("a > 0.10", "a > 0.1", {"a"}),
    ("a > 007", "a > 7", {"a"}),
    ("theme.930713.excess_20d > 0", "theme.930713.excess_20d > 0", {"theme.930713.excess_20d"}),
    (
        "credit.spread_pctile_10y > 0.9",
        "credit.spread_pctile_10y > 0.9",
        {"credit.spread_pctile_10y"},
    ),
    ("_private.x1 > 0", "_private.x1 > 0", {"_private.x1"}),
    ("andy > 1", "andy > 1", {"andy"}),  # keyword prefix is fine
    ("notional > 1", "notional > 1", {"notional"}),
    ("order.or > 1", "order.or > 1", {"order.or"}),  # keywords only matter as first segment
    ("inflation > 1", "inflation > 1", {"inflation"}),
    (
        RULE_1,
        "rotation.hot_theme_excess >= 0.1 and rotation.microcap_excess_10d <= -0.03",
        {"rotation.hot_theme_excess", "rotation.microcap_excess_10d"},
    ),
    (
        RULE_2,
        "market.return_20d <= -0.08 and market.amount_ratio_20_120 <= 0.75"
        " or not microcap.vol_spike < 1.5",
        {"market.return_20d", "market.amount_ratio_20_120", "microcap.vol_spike"},
    ),
    ("not a > 1", "not a > 1", {"a"}),
    ("not not a > 1", "not not a > 1", {"a"}),
    ("not (a > 1 and b > 1)", "not (a > 1 and b > 1)", {"a", "b"}),
    ("(a > 1)", "a > 1", {"a"}),
    ("((((a > 1))))", "a > 1", {"a"}),
    ("(a > 1 or b > 1) and c > 1", "(a > 1 or b > 1) and c > 1", {"a", "b", "c"}),
    ("a > 1 and (b > 1 and c > 1)", "a > 1 and b > 1 and c > 1", {"a", "b", "c"}),
    ("a > 1 or (b > 1 or c > 1)", "a > 1 or b > 1 or c > 1", {"a", "b", "c"}),
    ("a > 1 or (b > 1 and c > 1)", "a > 1 or b > 1 and c > 1", {"a", "b", "c"}),
    ("a>1 and a<2", "a > 1 and a < 2", {"a"}),
    ("(a>1)and(b<2)", "a > 1 and b < 2", {"a", "b"}),
    ("not(a>1)", "not a > 1", {"a"}),
]


@pytest.mark.parametrize(("text", "canonical", "names"), PARSE_CASES)
def test_parse_valid(text: str, canonical: str, names: set[str]) -> None:
    expr = parse(text)
    assert isinstance(expr, Expr)
    assert str(expr) == canonical
    assert expr.names == frozenset(names)
    assert parse(str(expr)) == expr
    assert parse(canonical) == expr


def test_tree_shape_of_rule_2() -> None:
    expr = parse(RULE_2)
    assert expr == Or(
        (
            And(
                (
                    Comparison(Name("market.return_20d"), "<=", Number(-0.08)),
                    Comparison(Name("market.amount_ratio_20_120"), "<=", Number(0.75)),
                )
            ),
            Not(Comparison(Name("microcap.vol_spike"), "<", Number(1.5))),
        )
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a > -0.03", -0.03),
        ("a > 1e-3", 0.001),
        ("a > 1e3", 1000.0),
        ("a > 15", 15.0),
        ("a > -1.5E-2", -0.015),
        ("a > .25", 0.25),
        ("a > -0", 0.0),
    ],
)
def test_number_literals(text: str, value: float) -> None:
    expr = parse(text)
    assert isinstance(expr, Comparison)
    assert expr.right == Number(value)
    assert isinstance(expr.right.value, float)


# (text, values, expected)
EVAL_CASES: list[tuple[str, dict[str, float | None], bool | None]] = [
    ("a > 1", {"a": 2}, True),
    ("a > 1", {"a": 1}, False),
    ("a >= 1", {"a": 1}, True),
    ("a < 1", {"a": 0.5}, True),
    ("a <= 1", {"a": 1.0}, True),
    ("a == 1", {"a": 1.0}, True),
    ("a != 1", {"a": 1.0}, False),
    ("a > b", {"a": 2, "b": 1}, True),
    ("a > b", {"a": 2}, None),
    ("a > -0.03", {"a": -0.02}, True),
    ("a > -0.03", {"a": -0.04}, False),
    ("a >= 1e-3", {"a": 0.001}, True),
    ("1 < 2", {}, True),
    ("a > 1", {}, None),
    ("a > 1", {"a": None}, None),
    ("a > 1", {"a": NAN}, None),
    ("a != 1", {"a": NAN}, None),  # NaN is unknown, not "not equal"
    ("a > 1", {"a": math.inf}, True),
    ("a < 1", {"a": -math.inf}, True),
    ("a > 1", {"a": True}, False),  # bool is a real number (1)
    (RULE_1, {"rotation.hot_theme_excess": 0.12, "rotation.microcap_excess_10d": -0.05}, True),
    (RULE_1, {"rotation.hot_theme_excess": 0.12, "rotation.microcap_excess_10d": 0.0}, False),
    (RULE_1, {"rotation.hot_theme_excess": 0.05}, False),  # False and None
    (RULE_1, {"rotation.hot_theme_excess": 0.12}, None),  # True and None
    (RULE_2, {"market.return_20d": -0.1, "market.amount_ratio_20_120": 0.7}, True),  # True or None
    (RULE_2, {"microcap.vol_spike": 1.0}, None),  # None or False
    (RULE_2, {"microcap.vol_spike": 2.0}, True),  # None or True
    (
        RULE_2,
        {"market.return_20d": 0.0, "market.amount_ratio_20_120": 0.7, "microcap.vol_spike": 1.0},
        False,
    ),
]


@pytest.mark.parametrize(("text", "values", "expected"), EVAL_CASES)
def test_evaluate(text: str, values: dict[str, float | None], expected: bool | None) -> None:
    assert parse(text).evaluate(values) is expected


# --------------------------------------------------------------------------- precedence

T, F, U = "t > 0", "f > 0", "u > 0"  # true, false, unknown under PREC_VALUES
PREC_VALUES = {"t": 1.0, "f": -1.0}


@pytest.mark.parametrize(
    ("text", "expected_str", "expected"),
    [
        # not binds tighter than and
        (f"not {F} and {F}", "not f > 0 and f > 0", False),
        # and binds tighter than or
        (f"{T} or {F} and {F}", "t > 0 or f > 0 and f > 0", True),
        (f"({T} or {F}) and {F}", "(t > 0 or f > 0) and f > 0", False),
        (f"{F} and {F} or {T}", "f > 0 and f > 0 or t > 0", True),
        (f"{F} and ({F} or {T})", "f > 0 and (f > 0 or t > 0)", False),
        # not binds tighter than or
        (f"not {T} or {T}", "not t > 0 or t > 0", True),
        (f"not ({T} or {T})", "not (t > 0 or t > 0)", False),
        # not applies to the whole comparison
        ("not t > 0", "not t > 0", False),
        ("not not t > 0", "not not t > 0", True),
    ],
)
def test_precedence(text: str, expected_str: str, expected: bool | None) -> None:
    expr = parse(text)
    assert str(expr) == expected_str
    assert expr.evaluate(PREC_VALUES) is expected


def test_precedence_tree() -> None:
    a, b, c = (Comparison(Name(n), ">", Number(0)) for n in "abc")
    assert parse("a > 0 or b > 0 and c > 0") == Or((a, And((b, c))))
    assert parse("not a > 0 and b > 0") == And((Not(a), b))
    assert parse("not a > 0 or b > 0") == Or((Not(a), b))
    assert parse("a > 0 and not b > 0 or c > 0") == Or((And((a, Not(b))), c))


# --------------------------------------------------------------------------- Kleene logic

KLEENE = {True: T, False: F, None: U}
TRUTH = [True, False, None]


def k_not(x: bool | None) -> bool | None:
    return None if x is None else not x


AND_TABLE = {
    (True, True): True,
    (True, False): False,
    (True, None): None,
    (False, True): False,
    (False, False): False,
    (False, None): False,
    (None, True): None,
    (None, False): False,
    (None, None): None,
}
OR_TABLE = {
    (True, True): True,
    (True, False): True,
    (True, None): True,
    (False, True): True,
    (False, False): False,
    (False, None): None,
    (None, True): True,
    (None, False): None,
    (None, None): None,
}


@pytest.mark.parametrize("x", TRUTH)
def test_kleene_not(x: bool | None) -> None:
    assert parse(f"not {KLEENE[x]}").evaluate(PREC_VALUES) is k_not(x)


@pytest.mark.parametrize(("x", "y"), list(AND_TABLE))
def test_kleene_and(x: bool | None, y: bool | None) -> None:
    assert parse(f"{KLEENE[x]} and {KLEENE[y]}").evaluate(PREC_VALUES) is AND_TABLE[(x, y)]


@pytest.mark.parametrize(("x", "y"), list(OR_TABLE))
def test_kleene_or(x: bool | None, y: bool | None) -> None:
    assert parse(f"{KLEENE[x]} or {KLEENE[y]}").evaluate(PREC_VALUES) is OR_TABLE[(x, y)]


def test_kleene_n_ary() -> None:
    assert parse(f"{T} and {U} and {F}").evaluate(PREC_VALUES) is False
    assert parse(f"{T} and {U} and {T}").evaluate(PREC_VALUES) is None
    assert parse(f"{F} or {U} or {T}").evaluate(PREC_VALUES) is True
    assert parse(f"{F} or {U} or {F}").evaluate(PREC_VALUES) is None


@pytest.mark.parametrize("missing", [{}, {"x": None}, {"x": NAN}])
@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_missing_none_nan_are_unknown_for_every_operator(missing: dict, op: str) -> None:
    assert parse(f"x {op} 0").evaluate(missing) is None
    assert parse(f"0 {op} x").evaluate(missing) is None
    assert parse(f"x {op} x").evaluate(missing) is None
    assert parse(f"not x {op} 0").evaluate(missing) is None


def test_nan_like_scalars_are_unknown() -> None:
    class FloatSub(float):
        pass

    assert parse("x > 0").evaluate({"x": FloatSub("nan")}) is None
    assert parse("x > 0").evaluate({"x": FloatSub(1.0)}) is True
    assert parse("x > 0").evaluate({"x": 10**400}) is True  # big ints compare exactly


def test_non_numeric_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="non-numeric"):
        parse("x > 0").evaluate({"x": "1.5"})  # type: ignore[dict-item]


def test_evaluate_accepts_any_mapping_and_ignores_extra_keys() -> None:
    class Signals(Mapping[str, float]):
        def __getitem__(self, key: str) -> float:
            if key == "a":
                return 2.0
            raise KeyError(key)

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(["a"])

        def __len__(self) -> int:
            return 1

    assert parse("a > 1 and b > 1 or a > 1").evaluate(Signals()) is True
    assert parse("a > 1").evaluate({"a": 2.0, "other": NAN}) is True


# --------------------------------------------------------------------------- comparisons()


def test_comparisons_in_order() -> None:
    leaves = comparisons(parse(RULE_2))
    assert [str(c) for c in leaves] == [
        "market.return_20d <= -0.08",
        "market.amount_ratio_20_120 <= 0.75",
        "microcap.vol_spike < 1.5",
    ]
    first = leaves[0]
    assert first.left == Name("market.return_20d")
    assert first.op == "<="
    assert first.right == Number(-0.08)
    values = {"market.return_20d": -0.1}
    assert first.left.resolve(values) == -0.1
    assert first.right.resolve(values) == -0.08
    assert first.evaluate(values) is True


def test_comparisons_keeps_duplicates_and_single_leaf() -> None:
    expr = parse("a > 1 and not (a > 1 or b < 2)")
    assert [str(c) for c in comparisons(expr)] == ["a > 1", "a > 1", "b < 2"]
    leaf = parse("x == 3")
    assert comparisons(leaf) == [leaf]


# --------------------------------------------------------------------------- immutability / nodes


def test_nodes_are_frozen_and_hashable() -> None:
    expr = parse(RULE_2)
    with pytest.raises(AttributeError):
        expr.operands = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Name("a").name = "b"  # type: ignore[misc]
    assert hash(expr) == hash(parse(RULE_2))
    assert {expr, parse(RULE_2)} == {expr}


def test_constructors_normalise_and_validate() -> None:
    a, b, c = (Comparison(Name(n), ">", Number(0)) for n in "abc")
    assert And((a, And((b, c)))) == And((a, b, c))
    assert Or((Or((a, b)), c)) == Or((a, b, c))
    assert Number(1) == Number(1.0)
    assert isinstance(Number(1).value, float)
    for bad in [
        lambda: And((a,)),
        lambda: Or(()),
        lambda: Comparison(Name("a"), "=", Number(1)),
        lambda: Name("__class__"),
        lambda: Name("a.b()"),
        lambda: Name("and"),
        lambda: Name("True"),
        lambda: Number(math.nan),
        lambda: Number(math.inf),
    ]:
        with pytest.raises(ValueError):
            bad()
    for bad_type in [
        lambda: Number("1"),  # type: ignore[arg-type]
        lambda: Number(True),
        lambda: Not(Name("a")),  # type: ignore[arg-type]
        lambda: And((a, Number(1))),  # type: ignore[arg-type]
        lambda: Comparison(a, ">", Number(1)),  # type: ignore[arg-type]
        lambda: parse(b"a > 1"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(TypeError):
            bad_type()


def test_names_is_not_part_of_equality_or_repr() -> None:
    expr = parse("a > 1")
    assert "names" not in repr(expr)
    assert expr.names == frozenset({"a"})


# --------------------------------------------------------------------------- errors

# (text, column, fragment expected in the message)
ERROR_CASES = [
    # code-execution attempts
    ("__import__('os').system('rm -rf /')", 1, "'__'"),
    ("__import__ > 1", 1, "'__'"),
    ("a.__class__ > 1", 1, "'__'"),
    ("a.b() > 1", 4, "unexpected '('"),
    ("exec('1') > 0", 5, "unexpected '('"),
    ("eval(a) > 0", 5, "unexpected '('"),
    ("x[0] > 1", 2, "'['"),
    ("a > 'x'", 5, "string"),
    ('a > "x"', 5, "string"),
    ("a ** 2 > 1", 3, "'*'"),
    ("a * 2 > 1", 3, "arithmetic"),
    ("a + 1 > 2", 3, "arithmetic"),
    ("a / 2 > 1", 3, "arithmetic"),
    ("a % 2 > 1", 3, "arithmetic"),
    ("a - 1 > 0", 3, "arithmetic"),
    ("lambda: 1", 7, "':'"),
    ("lambda x: x > 1", 8, "unexpected name 'x'"),
    ("a > 1; import os", 6, "';'"),
    ("`a` > 1", 1, "'`'"),
    ("1.real > 0", 1, "invalid number"),
    ("1..real > 0", 1, "invalid number"),
    ("(1).real > 0", 3, "expected a comparison"),
    ("a > 1.5.3", 5, "invalid number"),
    ("a > 1e", 5, "invalid number"),
    ("a > 0x10", 5, "invalid number"),
    ("a > 1_000", 5, "invalid number"),
    ("a > 1j", 5, "invalid number"),
    ("a > 1e999", 5, "out of range"),
    ("a = 1", 3, "'=='"),
    ("a => 1", 3, "'='"),
    ("a =< 1", 3, "'='"),
    ("a === 1", 5, "'='"),
    ("!a", 1, "'!'"),
    ("a <> 1", 4, "unexpected '>'"),
    ("a >> 1", 4, "unexpected '>'"),
    ("a > 1 && b > 1", 7, "'&'"),
    ("a > 1 || b > 1", 7, "'|'"),
    ("~a > 1", 1, "'~'"),
    ("{a} > 1", 1, "'{'"),
    ("a > 1 if b else c", 7, "unexpected name 'if'"),
    ("a if b > 1 else c", 3, "unexpected name 'if'"),
    ("a > 1,", 6, "','"),
    ("a @ b", 3, "'@'"),
    ("a > $x", 5, "'$'"),
    ("a > 1 # comment", 7, "'#'"),
    ("a\\b > 1", 2, "'\\\\'"),
    ("a.b.c() > 1", 6, "unexpected '('"),
    ("a b > 1", 3, "unexpected name 'b'"),
    ("a > b c", 7, "unexpected name 'c'"),
    ("a > 1 2", 7, "unexpected number '2'"),
    # structure
    ("", 1, "empty expression"),
    ("   ", 4, "empty expression"),
    ("a", 2, "expected a comparison"),
    ("1", 2, "expected a comparison"),
    ("-1", 3, "expected a comparison"),
    ("a and b > 1", 3, "expected a comparison"),
    ("a > 1 and b", 12, "expected a comparison"),
    ("not a", 6, "expected a comparison"),
    ("(a)", 3, "expected a comparison"),
    ("(a) > 1", 3, "expected a comparison"),
    ("(a > 1) > 0", 9, "parenthesised condition"),
    ("(a > 1) == (b > 1)", 9, "parenthesised condition"),
    ("a < b < c", 7, "chained comparisons"),
    ("0 <= a <= 1", 8, "chained comparisons"),
    ("a > 1 == b", 7, "chained comparisons"),
    ("a >", 4, "expected a name or number"),
    ("> 1", 1, "unexpected '>'"),
    ("a > 1 and", 10, "unexpected end"),
    ("a > 1 or", 9, "unexpected end"),
    ("and a > 1", 1, "unexpected 'and'"),
    ("a > 1 and or b > 1", 11, "unexpected 'or'"),
    ("a > 1 not b > 1", 7, "unexpected 'not'"),
    ("a not > 1", 3, "unexpected 'not'"),
    ("a > not 1", 5, "unexpected 'not'"),
    ("not", 4, "unexpected end"),
    ("()", 2, "unexpected ')'"),
    ("(a > 1", 7, "missing ')'"),
    ("((a > 1)", 9, "missing ')'"),
    ("(a > 1 b", 8, "missing ')'"),
    ("a > 1)", 6, "unexpected ')'"),
    ("(a > 1))", 8, "unexpected ')'"),
    (")a > 1(", 1, "unexpected ')'"),
    ("-a > 1", 1, "unary minus"),
    ("a > --1", 5, "unary minus"),
    ("a > -", 5, "unary minus"),
    ("a > -(1)", 5, "unary minus"),
    # names and keywords
    ("a. > 1", 1, "invalid name 'a.'"),
    ("a..b > 1", 1, "invalid name 'a..b'"),
    ("a.b. > 1", 1, "invalid name"),
    (".a > 1", 1, "'.'"),
    ("and > 1", 1, "unexpected 'and'"),
    ("not.x > 1", 1, "keyword 'not'"),
    ("or.x > 1", 1, "keyword 'or'"),
    ("a > 1 AND b > 2", 7, "lowercase"),
    ("a > 1 Or b > 2", 7, "lowercase"),
    ("NOT a > 1", 1, "lowercase"),
    ("true", 1, "'true' is not supported"),
    ("a == True", 6, "'True' is not supported"),
    ("a == false", 6, "'false' is not supported"),
    ("a == None", 6, "'None' is not supported"),
    ("a == null", 6, "'null' is not supported"),
    ("a > inf", 5, "'inf' is not supported"),
    ("a > -inf", 6, "'inf' is not supported"),
    ("a != nan", 6, "'nan' is not supported"),
    ("a > Infinity", 5, "'Infinity' is not supported"),
    # non-ASCII and control characters
    ("市场 > 1", 1, "unexpected character"),
    ("a > ١", 5, "unexpected character"),  # Arabic-Indic digit
    ("a ＞ 1", 3, "unexpected character"),  # full-width >
    ("a > 1\x00", 6, "\\x00"),
    ("a > 1 \x1b[31m", 7, "\\x1b"),
    ("a > 1\u200bor b > 1", 6, "\\u200b"),  # zero-width space is not whitespace
]


def _check_one_line(message: str) -> None:
    assert message
    assert "\n" not in message and "\r" not in message
    assert all(ch.isprintable() for ch in message), message


@pytest.mark.parametrize(("text", "column", "fragment"), ERROR_CASES)
def test_rejected(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    err = info.value
    message = str(err)
    _check_one_line(message)
    assert fragment in message
    assert err.column == column
    assert f"at column {column} " in message
    assert err.expression == text
    assert message.startswith(err.reason)
    assert isinstance(err, ValueError)


def test_error_message_format_example() -> None:
    with pytest.raises(ExprError) as info:
        parse("a.b() > 1")
    assert str(info.value) == (
        "unexpected '(' at column 4 in \"a.b() > 1\"; function calls are not supported"
    )


def test_error_quotes_the_expression_with_escapes() -> None:
    with pytest.raises(ExprError) as info:
        parse('a > 1 and\nb = "x"')
    message = str(info.value)
    assert 'in "a > 1 and\\nb = \\"x\\""' in message
    _check_one_line(message)


def test_multiline_whitespace_is_allowed() -> None:
    expr = parse("a > 1\n  and b < 2\r\n\tor c == 3")
    assert str(expr) == "a > 1 and b < 2 or c == 3"


def test_error_pickles() -> None:
    with pytest.raises(ExprError) as info:
        parse("a >")
    clone = pickle.loads(pickle.dumps(info.value))
    assert isinstance(clone, ExprError)
    assert str(clone) == str(info.value)
    assert clone.column == info.value.column


# --------------------------------------------------------------------------- limits


def test_length_limit() -> None:
    ok = "a > 1" + " " * (MAX_LENGTH - 5)
    assert len(ok) == MAX_LENGTH
    assert parse(ok) == parse("a > 1")
    too_long = ok + " "
    with pytest.raises(ExprError, match="too long") as info:
        parse(too_long)
    message = str(info.value)
    _check_one_line(message)
    assert "column" in message
    assert len(message) < 300  # the quote is an excerpt, not the whole text


def test_long_expression_error_is_excerpted_around_the_column() -> None:
    text = " and ".join(f"s{i} > {i}" for i in range(100)) + " and )"
    assert len(text) < MAX_LENGTH
    with pytest.raises(ExprError) as info:
        parse(text)
    message = str(info.value)
    assert len(message) < 300
    assert '"...' in message
    assert 'and )"' in message


@pytest.mark.parametrize("depth", [1, 10, MAX_DEPTH])
def test_nesting_at_limit_is_fine(depth: int) -> None:
    assert parse("(" * depth + "a > 1" + ")" * depth) == parse("a > 1")
    expr = parse("not " * depth + "a > 1")
    assert expr.evaluate({"a": 2}) is (depth % 2 == 0)
    half = depth // 2
    mixed = "not (" * half + "a > 1" + ")" * half
    assert parse(mixed).names == {"a"}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 500, 1000, MAX_LENGTH // 2, 100_000])
def test_nesting_beyond_limit_is_an_expr_error(depth: int) -> None:
    for text in [
        "(" * depth + "a > 1" + ")" * depth,
        "(" * depth,
        "not " * depth + "a > 1",
        "not (" * depth + "a > 1" + ")" * depth,
    ]:
        with pytest.raises(ExprError) as info:
            parse(text)
        message = str(info.value)
        _check_one_line(message)
        assert "nested too deeply" in message or "too long" in message


def test_recursion_error_never_escapes_even_near_the_interpreter_limit() -> None:
    text = "(" * MAX_DEPTH + "a > 1" + ")" * MAX_DEPTH
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 40)
    try:
        with pytest.raises(ExprError, match="nested too deeply"):
            parse(text)
    finally:
        sys.setrecursionlimit(old_limit)
    assert parse(text) == parse("a > 1")


def test_many_flat_terms_are_fine() -> None:
    text = " or ".join(f"s{i} > {i}" for i in range(150))
    assert len(text) < MAX_LENGTH
    expr = parse(text)
    assert len(comparisons(expr)) == 150
    assert expr.evaluate({}) is None
    assert expr.evaluate({"s149": 1000}) is True  # True or unknown...
    assert expr.evaluate({f"s{i}": 0 for i in range(150)}) is False


# --------------------------------------------------------------------------- property tests

_SEGMENT = st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True).filter(
    lambda s: not s.startswith("__")
)
_FIRST = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: (
        not s.startswith("__")
        and s.lower()
        not in {"and", "or", "not", "true", "false", "none", "null", "nan", "inf", "infinity"}
    )
)
_DYNAMIC_NAMES = st.builds(
    lambda first, rest: ".".join([first, *rest]), _FIRST, st.lists(_SEGMENT, max_size=2)
)
# A small fixed pool makes names collide so that values actually matter.
_POOL = ["a", "b.c", "theme.930713.excess_20d", "_x"]
names_st = st.one_of(st.sampled_from(_POOL), _DYNAMIC_NAMES)
numbers_st = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.03, 0.1, 1e-3, 15.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(float),
)
operand_st = st.one_of(names_st.map(Name), numbers_st.map(Number))
comparison_st = st.builds(
    Comparison, operand_st, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), operand_st
)
expr_st = st.recursive(
    comparison_st,
    lambda children: st.one_of(
        children.map(Not),
        st.lists(children, min_size=2, max_size=4).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=4).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=12,
)
value_st = st.one_of(
    st.none(),
    st.just(NAN),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.03, 0.1]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def values_for(expr_names: frozenset[str]) -> st.SearchStrategy[dict[str, float | None]]:
    names = sorted(expr_names | set(_POOL))
    return st.fixed_dictionaries({}, optional={n: value_st for n in names})


def reference_eval(expr: Expr, values: Mapping[str, float | None]) -> bool | None:
    """Independent Kleene evaluation via the {0, 1/2, 1} encoding with min/max."""

    def side(operand: Name | Number) -> float | None:
        if isinstance(operand, Number):
            return operand.value
        v = values.get(operand.name)
        return None if v is None or math.isnan(v) else v

    def score(node: Expr) -> float:
        if isinstance(node, Comparison):
            lhs, rhs = side(node.left), side(node.right)
            if lhs is None or rhs is None:
                return 0.5
            result = {
                "<": lhs < rhs,
                "<=": lhs <= rhs,
                ">": lhs > rhs,
                ">=": lhs >= rhs,
                "==": lhs == rhs,
                "!=": lhs != rhs,
            }[node.op]
            return 1.0 if result else 0.0
        if isinstance(node, Not):
            return 1.0 - score(node.operand)
        if isinstance(node, And):
            return min(score(n) for n in node.operands)
        if isinstance(node, Or):
            return max(score(n) for n in node.operands)
        raise AssertionError(node)

    return {0.0: False, 0.5: None, 1.0: True}[score(expr)]


def noisy_render(expr: Expr, draw, top: bool = True) -> str:  # type: ignore[no-untyped-def]
    """Render with random redundant parentheses, whitespace and number spellings."""

    def ws() -> str:
        return draw(st.sampled_from(["", " ", "  ", "\t", "\n"]))

    def must_ws() -> str:
        return draw(st.sampled_from([" ", "  ", "\t", "\n "]))

    def num(value: float) -> str:
        spellings = {repr(value), str(value), f"{value:.17g}", f"{value:.17e}"}
        text = draw(st.sampled_from(sorted(spellings)))
        if text.startswith("-"):
            text = "-" + ws() + text[1:]
        return text

    def operand(o: Name | Number) -> str:
        return o.name if isinstance(o, Name) else num(o.value)

    if isinstance(expr, Comparison):
        text = f"{operand(expr.left)}{ws()}{expr.op}{ws()}{operand(expr.right)}"
        prec = 4
    elif isinstance(expr, Not):
        inner = noisy_render(expr.operand, draw, top=False)
        if not isinstance(expr.operand, Comparison | Not) or draw(st.booleans()):
            inner = f"({ws()}{inner}{ws()})"
            text = f"not{ws()}{inner}"
        else:
            text = f"not{must_ws()}{inner}"
        prec = 3
    else:
        keyword = "and" if isinstance(expr, And) else "or"
        parts = []
        for child in expr.operands:
            inner = noisy_render(child, draw, top=False)
            needs = isinstance(expr, And) and isinstance(child, Or)
            if needs or draw(st.booleans()):
                inner = f"({ws()}{inner}{ws()})"
            parts.append(inner)
        text = f"{must_ws()}{keyword}{must_ws()}".join(parts)
        prec = 2 if isinstance(expr, And) else 1
    if not top and prec < 4 and draw(st.integers(0, 3)) == 0:
        text = f"({text})"
    return f"{ws()}{text}{ws()}" if top else text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_round_trip_and_evaluation(data: st.DataObject) -> None:
    expr = data.draw(expr_st)
    canonical = str(expr)
    reparsed = parse(canonical)
    assert reparsed == expr
    assert str(reparsed) == canonical
    assert reparsed.names == expr.names
    assert [str(c) for c in comparisons(reparsed)] == [str(c) for c in comparisons(expr)]

    noisy = noisy_render(expr, data.draw)
    if len(noisy) <= MAX_LENGTH:
        assert parse(noisy) == expr

    for _ in range(3):
        values = data.draw(values_for(expr.names))
        expected = reference_eval(expr, values)
        assert expr.evaluate(values) is expected
        assert reparsed.evaluate(values) is expected


_GRAMMAR_ALPHABET = list("ab.c_019e-+*<>=!() \t\n\"'[];,") + [
    "and",
    "or",
    "not",
    " and ",
    " or ",
    " not ",
    "x.y",
    "1e-3",
    "(",
    ")",
    "<=",
    "==",
    "!=",
    "__",
    "\x00",
    "市",
]


@settings(max_examples=500, deadline=1000)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(_GRAMMAR_ALPHABET), max_size=80).map("".join),
        st.text(alphabet="()not ab<>=1", max_size=MAX_LENGTH + 50),
    )
)
def test_property_arbitrary_text_only_raises_expr_error(text: str) -> None:
    try:
        expr = parse(text)
    except ExprError as err:
        message = str(err)
        _check_one_line(message)
        assert re.search(r"at column \d+ ", message)
        assert 1 <= err.column <= max(len(text), MAX_LENGTH) + 1
        return
    # Anything accepted must also round-trip and evaluate on empty input.
    assert parse(str(expr)) == expr
    assert expr.evaluate({}) in (True, False, None)


@settings(max_examples=100, deadline=2000)
@given(
    depth=st.integers(MAX_DEPTH + 1, MAX_LENGTH),
    pieces=st.lists(st.sampled_from(["(", "not ", "not(", "( "]), min_size=1, max_size=4),
    close=st.booleans(),
)
def test_property_deep_nesting_is_expr_error(depth: int, pieces: list[str], close: bool) -> None:
    opener = "".join(pieces[i % len(pieces)] for i in range(depth))
    text = opener + "a > 1" + (")" * opener.count("(") if close else "")
    with pytest.raises(ExprError) as info:
        parse(text)
    message = str(info.value)
    _check_one_line(message)
    assert "nested too deeply" in message or "too long" in message


# --------------------------------------------------------------------------- vectorised (one home:
# the backtest and rules.condition_history use it; moved here from tests/test_backtest.py)

_EXPRS = [expr.parse(t) for t in (
    "a.x >= 0.2",
    "a.x >= 0.2 and a.y < 0",
    "a.x >= 0.2 or a.y < 0",
    "not (a.x > 0.5 or a.y <= -0.1) and a.z != 0",
    "0.1 < a.x and (a.y == 0 or not a.z >= 0.3) or a.x < a.z",
)]
_CELL = st.one_of(st.none(), st.sampled_from([0.0, -0.1, 0.2, 0.3, 0.5, 1.0]),
                  st.floats(-1, 1, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_CELL, _CELL, _CELL), min_size=1, max_size=30),
       drop_z=st.booleans())
def test_vectorised_evaluation_matches_expr_evaluate(rows, drop_z):
    frame = pd.DataFrame([[np.nan if v is None else v for v in r] for r in rows],
                         columns=["a.x", "a.y", "a.z"])
    if drop_z:
        frame = frame.drop(columns=["a.z"])
    for e in _EXPRS:
        got = expr.evaluate_frame(e, frame).tolist()
        want = [e.evaluate({k: (None if v != v else v) for k, v in rec.items()})
                for rec in frame.to_dict("records")]
        assert got == want, str(e)


def test_evaluate_columns_memo_evaluates_a_condition_and_its_negation_once():
    e = parse("a.x >= 0.2")
    cols = {"a.x": np.array([0.1, 0.3, np.nan])}
    memo: dict = {}
    t, f = expr.evaluate_columns(e, cols, 3, memo)
    nt, nf = expr.evaluate_columns(Not(e), cols, 3, memo)
    assert t.tolist() == [False, True, False] and f.tolist() == [True, False, False]
    assert nt.tolist() == f.tolist() and nf.tolist() == t.tolist()
    assert memo[e][0] is t  # the negation reused the condition's arrays


def test_evaluate_frame_reads_none_and_absent_columns_as_unknown():
    frame = pd.DataFrame({"a.x": [0.3, None, 0.1]}, index=["d1", "d2", "d3"])
    got = expr.evaluate_frame(parse("a.x >= 0.2 or b.y > 0"), frame)
    assert got.tolist() == [True, None, None] and list(got.index) == ["d1", "d2", "d3"]


@pytest.mark.parametrize(("text", "shown"), [
    ("a.x >= 0.2", "a.x >= 0.2"),
    ("0.2 <= a.x", "a.x >= 0.2"),
    ("1 < a.x", "a.x > 1"),
    ("-3 == a.x", "a.x == -3"),
    ("a.x < b.y", "a.x < b.y"),
    ("1 < 2", "2 > 1"),
])
def test_oriented_puts_the_signal_on_the_left(text, shown):
    comp = parse(text)
    assert isinstance(comp, Comparison)
    assert str(expr.oriented(comp)) == shown
    values = {"a.x": 0.5, "b.y": 1.0}
    assert expr.oriented(comp).evaluate(values) == comp.evaluate(values)


def test_one_operator_table_and_its_flips():
    assert set(expr.OPERATORS) == set(expr.FLIPPED) == {"<", "<=", ">", ">=", "==", "!="}
    for op, flipped in expr.FLIPPED.items():
        for a, b in ((1.0, 2.0), (2.0, 1.0), (1.0, 1.0)):
            assert expr.OPERATORS[op](a, b) == expr.OPERATORS[flipped](b, a)
