"""Compute every registered signal for one trading day from the stored observations.

Each signal gets exactly the look-back it declares, loaded point-in-time (``available_at <=
as_of``), so the cost of a day does not grow with the length of the stored history (except for
the expanding running maximum of the drawdown signals, one series each).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlite_utils import Database

import signals
from monitor.calendar import TradingCalendar
from storage import observations


@dataclass(frozen=True)
class SignalValue:
    """One signal on one day: value in the signal's unit (None = not computable), context."""

    value: float | None
    context: str | None = None


def _plan(available: list[str], params: Mapping[str, Mapping[str, Any]]):
    plan = []
    for sig in signals.REGISTRY.values():
        p = params[sig.family]
        plan.append((sig, sig.resolve_inputs(available, p), sig.window_days(p), p))
    return plan


def compute_day(db: Database, calendar: TradingCalendar, as_of: dt.date,
                params: Mapping[str, Mapping[str, Any]]) -> dict[str, SignalValue]:
    """Return every registered signal's value on trading day ``as_of``, point-in-time."""
    plan = _plan(observations.series_names(db), params)
    finite = [(s, i, w, p) for s, i, w, p in plan if w is not None]
    expanding = [(s, i, w, p) for s, i, w, p in plan if w is None]

    out: dict[str, SignalValue] = {}
    if finite:
        longest = max(w for _, _, w, _ in finite)
        days = calendar.days(calendar.window_start(as_of, longest), as_of)
        cols = sorted({c for _, inputs, _, _ in finite for c in inputs})
        frame = observations.load_frame(db, cols, days, as_of)
        for sig, inputs, window, p in finite:
            out[sig.name] = _last(sig, frame[inputs].iloc[-window:], p, as_of)
    if expanding:
        cols = sorted({c for _, inputs, _, _ in expanding for c in inputs})
        start = observations.first_date(db, cols) or as_of
        frame = observations.load_frame(db, cols, calendar.days(start, as_of), as_of)
        for sig, inputs, _, p in expanding:
            out[sig.name] = _last(sig, frame[inputs], p, as_of)
    return out


def _last(sig: signals.Signal, frame: pd.DataFrame, params: Mapping[str, Any],
          as_of: dt.date) -> SignalValue:
    if frame.empty or frame.index[-1] != pd.Timestamp(as_of):
        return SignalValue(None)
    values, context = sig.compute(frame, params)
    value = values.iloc[-1]
    value = None if value is None or not math.isfinite(float(value)) else float(value)
    ctx = None
    if context is not None and value is not None:
        c = context.iloc[-1]
        ctx = None if c is None or (isinstance(c, float) and math.isnan(c)) else str(c)
    return SignalValue(value, ctx)
