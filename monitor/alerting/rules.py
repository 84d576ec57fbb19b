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


def _side(node, values: Mapping[str, float | None]) -> tuple[str | None, float | None]:
    if isinstance(node, expr.Name):
        return node.name, values.get(node.name)
    return None, node.value


def describe(e: expr.Expr, values: Mapping[str, float | None]) -> list[dict]:
    """Return each comparison of ``e`` as {signal, value, op, threshold, holds} for messages.

    ``threshold`` is the other side's number (or that signal's value when both sides are names).
    """
    out = []
    for comp in expr.comparisons(e):
        left_name, left = _side(comp.left, values)
        right_name, right = _side(comp.right, values)
        out.append({
            "signal": left_name or right_name,
            "value": left if left_name else right,
            "op": comp.op if left_name else _FLIP[comp.op],
            "threshold": right if left_name else left,
            "threshold_signal": right_name if left_name else None,
            "holds": comp.evaluate(values),
        })
    return out


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def evaluate(rule: RuleConfig, values: Mapping[str, float | None]) -> Evaluation:
    """Evaluate ``rule`` on ``values`` (signal name -> value, None = missing)."""
    when = rule.when_expr.evaluate(values)
    if rule.clear_expr is not None:
        clear = rule.clear_expr.evaluate(values)
    else:
        clear = None if when is None else not when
    read = {name: values.get(name) for name in sorted(rule.names)}
    return Evaluation(rule.name, when, clear, read, describe(rule.when_expr, values))


def composite(evaluations: list[Evaluation]) -> tuple[int, list[str]]:
    """Return how many rule conditions hold today and their names (sorted)."""
    names = sorted(e.rule for e in evaluations if e.when)
    return len(names), names


def condition_history(rule: RuleConfig, values: pd.DataFrame) -> pd.Series:
    """Return the rule's ``when`` on each row of ``values`` (index = days, columns = signals):
    True, False, or None where it cannot be evaluated."""
    cols = [c for c in values.columns if c in rule.names]
    records = values[cols].to_dict("records")
    out = []
    for rec in records:
        clean = {k: (None if v is None or v != v else float(v)) for k, v in rec.items()}
        out.append(rule.when_expr.evaluate(clean))
    return pd.Series(out, index=values.index, dtype=object)
