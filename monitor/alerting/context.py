"""Regime context: market states shown on one line in every digest (pure).

A context entry (``[[context]]`` in the config) is a condition over signal values, like a rule's
``when``, with a short label. It is context, not an alert: it has no lifecycle, no events and never
causes a digest on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from monitor.alerting.rules import describe
from monitor.config import ContextConfig


def evaluate_context(entries: Iterable[ContextConfig],
                     values: Mapping[str, float | None]) -> list[dict]:
    """Return each entry evaluated on ``values`` (signal -> value, None = missing), in config
    order: ``{name, label, label_off, holds, comparisons}``; ``holds`` is True, False or None
    (cannot be evaluated), ``comparisons`` as :func:`monitor.alerting.rules.describe` gives them."""
    return [{"name": e.name, "label": e.label, "label_off": e.label_off,
             "holds": e.when_expr.evaluate(values),
             "comparisons": describe(e.when_expr, values)} for e in entries]
