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
    out = []
    for comp in expr.comparisons(e):
        shown = expr.oriented(comp)
        left, right = shown.left, shown.right
        out.append({
            "signal": left.name if isinstance(left, expr.Name) else None,
            "value": values.get(left.name) if isinstance(left, expr.Name) else left.value,
            "op": shown.op,
            "threshold": values.get(right.name) if isinstance(right, expr.Name) else right.value,
            "threshold_signal": right.name if isinstance(right, expr.Name) else None,
            "holds": comp.evaluate(values),
        })
    return out


def clear_condition(when: expr.Expr, clear_when: expr.Expr | None) -> expr.Expr:
    """Return the condition whose holding counts towards resolving a firing alert: the rule's
    ``clear_when``, or without one ``not when`` (unknown when ``when`` is unknown). The one home
    of the default clear rule: the cycle and the backtest both evaluate this expression."""
    return clear_when if clear_when is not None else expr.Not(when)


def evaluate(rule: RuleConfig, values: Mapping[str, float | None]) -> Evaluation:
    """Evaluate ``rule`` on ``values`` (signal name -> value, None = missing)."""
    when = rule.when_expr.evaluate(values)
    clear = clear_condition(rule.when_expr, rule.clear_expr).evaluate(values)
    read = {name: values.get(name) for name in sorted(rule.names)}
    return Evaluation(rule.name, when, clear, read, describe(rule.when_expr, values))


def composite(evaluations: list[Evaluation]) -> tuple[int, list[str]]:
    """Return how many rule conditions hold today and their names (sorted)."""
    names = sorted(e.rule for e in evaluations if e.when)
    return len(names), names


def condition_history(rule: RuleConfig, values: pd.DataFrame) -> pd.Series:
    """Return the rule's ``when`` on each row of ``values`` (index = days, columns = signals):
    True, False, or None where it cannot be evaluated (``expr.evaluate_frame``)."""
    return expr.evaluate_frame(rule.when_expr, values)
