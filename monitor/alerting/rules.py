"""Evaluating the configured rules against one day's signal values (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from monitor.alerting import expr
from monitor.config import RuleConfig


@dataclass(frozen=True)
class Evaluation:
    """One rule on one day: its condition, its clear condition, and the values read."""

    rule: str
    when: bool | None  # None = cannot be evaluated (missing data)
    clear: bool | None
    values: dict[str, float | None]
    comparisons: list[dict]


def describe(e: expr.Expr, values: Mapping[str, float | None]) -> list[dict]:
    """Return each comparison of ``e`` as {signal, value, op, threshold, threshold_signal, holds}
    for messages, the signal on the left (``expr.oriented``).

    ``threshold`` is the other side's number (or that signal's value when both sides are names,
    then named by ``threshold_signal``); ``holds`` is True, False or None (unknown).
    """
    return _describe([(comp, expr.oriented(comp)) for comp in expr.comparisons(e)], values)


def _describe(leaves, values: Mapping[str, float | None]) -> list[dict]:
    """``describe`` from the comparison leaves and their oriented forms."""
    out = []
    for comp, shown in leaves:
        left, right = shown.left, shown.right
        left_name, right_name = isinstance(left, expr.Name), isinstance(right, expr.Name)
        out.append({
            "signal": left.name if left_name else None,
            "value": values.get(left.name) if left_name else left.value,
            "op": shown.op,
            "threshold": values.get(right.name) if right_name else right.value,
            "threshold_signal": right.name if right_name else None,
            "holds": comp.evaluate(values),
        })
    return out


def clear_condition(when: expr.Expr, clear_when: expr.Expr | None) -> expr.Expr:
    """Return the condition whose holding counts towards resolving a firing alert: the rule's
    ``clear_when``, or without one ``not when`` (unknown when ``when`` is unknown). The one home
    of the default clear rule: the cycle and the backtest both evaluate this expression."""
    return clear_when if clear_when is not None else expr.Not(when)


@dataclass(frozen=True)
class ParsedRule:
    """What evaluating ``rule`` reads of it, taken out once (a replay evaluates every rule on
    thousands of days; reading a pydantic model's private attributes costs more than the
    evaluation): its condition, its clear condition (``clear_condition``), the signal names it
    reads (sorted) and its comparison leaves (each with its oriented form, ``describe``)."""

    rule: RuleConfig
    when: expr.Expr
    clear: expr.Expr
    names: tuple[str, ...]
    leaves: tuple[tuple[expr.Comparison, expr.Comparison], ...]


def parse(rule: RuleConfig) -> ParsedRule:
    """Return ``rule`` as a :class:`ParsedRule` (pure; equal rules give equal results)."""
    when = rule.when_expr
    return ParsedRule(rule, when, clear_condition(when, rule.clear_expr), tuple(sorted(rule.names)),
                      tuple((c, expr.oriented(c)) for c in expr.comparisons(when)))


def evaluate(rule: RuleConfig, values: Mapping[str, float | None]) -> Evaluation:
    """Evaluate ``rule`` on ``values`` (signal name -> value, None = missing)."""
    return evaluate_parsed(parse(rule), values)


def evaluate_parsed(parsed: ParsedRule, values: Mapping[str, float | None]) -> Evaluation:
    """Evaluate the rule ``parsed`` (``parse``) on ``values``: the same as ``evaluate``."""
    return Evaluation(parsed.rule.name, parsed.when.evaluate(values), parsed.clear.evaluate(values),
                      {name: values.get(name) for name in parsed.names},
                      _describe(parsed.leaves, values))


def composite(evaluations: list[Evaluation]) -> tuple[int, list[str]]:
    """Return how many rule conditions hold today and their names (sorted)."""
    names = sorted(e.rule for e in evaluations if e.when)
    return len(names), names


def condition_history(rule: RuleConfig, values: pd.DataFrame) -> pd.Series:
    """Return the rule's ``when`` on each row of ``values`` (index = days, columns = signals):
    True, False, or None where it cannot be evaluated (``expr.evaluate_frame``)."""
    return expr.evaluate_frame(rule.when_expr, values)
