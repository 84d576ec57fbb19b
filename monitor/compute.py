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
    """Return every registered signal's value on trading day ``as_of``, point-in-time.

    Each input series is read only as far back as the longest window that uses it.
    """
    plan = _plan(observations.series_names(db), params)
    need: dict[str, int | None] = {}  # series -> trading days needed (None = all history)
    for _, inputs, window, _ in plan:
        for name in inputs:
            if name in need and (need[name] is None or window is None):
                need[name] = None
            else:
                need[name] = max(window, need.get(name) or 0) if window is not None else None
    cols = sorted(need)
    expanding = [c for c in cols if need[c] is None]
    first = observations.first_date(db, expanding) if expanding else None
    longest = max((w for w in need.values() if w is not None), default=1)
    start = calendar.window_start(as_of, longest)
    if first is not None and first < start:
        start = first
    days = calendar.days(start, as_of)
    starts = {c: calendar.window_start(as_of, need[c]) for c in cols if need[c] is not None}
    frame = observations.load_frame(db, cols, days, as_of, starts)
    out: dict[str, SignalValue] = {}
    for sig, inputs, window, p in plan:
        sub = frame if window is None else frame.iloc[-window:]
        state = STATE_PROVIDERS[sig.state](db, sub, as_of, p) if sig.state else None
        out[sig.name] = _last(sig, _columns(sig, sub, inputs), p, as_of, state)
    return out


def _regime_fit(db: Database, frame: pd.DataFrame, as_of: dt.date, params: Mapping[str, Any]):
    """Return the regime model's fit for ``as_of``: the cached one, refitted (and cached) when the
    month changed. A refit uses only data before ``as_of``."""
    from signals import regime
    from storage import regime_fits

    cached = regime_fits.latest(db, as_of)
    last = regime.RegimeFit.from_json(cached) if cached else None
    if not regime.refit_due(last, as_of):
        return last
    excess = regime.microcap_excess_returns(frame)
    new = regime.current_fit(excess, as_of, last, params["min_obs"])
    if new is not None:
        regime_fits.save(db, new.valid_from, new.fit_through, new.to_json())
    return new


STATE_PROVIDERS = {"regime_fit": _regime_fit}


def _columns(sig: signals.Signal, frame: pd.DataFrame, inputs: list[str]) -> pd.DataFrame:
    """Restrict ``frame`` to the signal's inputs when it takes a variable set of series (themes);
    fixed-input functions read their own columns, so they get the frame as is (no copy)."""
    if any(any(ch in pattern for ch in "*?[") for pattern in sig.inputs):
        return frame[inputs]
    return frame


def _last(sig: signals.Signal, frame: pd.DataFrame, params: Mapping[str, Any],
          as_of: dt.date, state=None) -> SignalValue:
    if frame.empty or frame.index[-1] != pd.Timestamp(as_of):
        return SignalValue(None)
    values, context = sig.compute(frame, params, state)
    value = values.iloc[-1]
    value = None if value is None or not math.isfinite(float(value)) else float(value)
    ctx = None
    if context is not None and value is not None:
        c = context.iloc[-1]
        ctx = None if c is None or (isinstance(c, float) and math.isnan(c)) else str(c)
    return SignalValue(value, ctx)


def compute_history(db: Database, calendar: TradingCalendar, start: dt.date, end: dt.date,
                    params: Mapping[str, Mapping[str, Any]],
                    names: list[str] | None = None) -> pd.DataFrame:
    """Return signal values for every trading day in [start, end] (index = days, column per
    signal), each as the daily cycle of that day would compute it.

    Signals whose inputs were all available on their own date are computed in one vectorised
    pass (the result equals the day-by-day one); signals with a publication lag on an input are
    computed day by day, so no day sees data before its ``available_at``.
    """
    wanted = [signals.REGISTRY[n] for n in (names or list(signals.REGISTRY))]
    plan = [(s, i, w, p) for s, i, w, p in _plan(observations.series_names(db), params)
            if s in wanted]
    cols = sorted({c for _, inputs, _, _ in plan for c in inputs})
    lagged = set(observations.lagged_series(db, cols))
    days = calendar.days(start, end)
    first = observations.first_date(db, cols) or start
    all_days = calendar.days(min(first, start), end)
    frame = observations.load_frame(db, cols, all_days, end)
    out = {}
    for sig, inputs, _, p in plan:
        if lagged.intersection(inputs):
            continue
        if sig.state == "regime_fit":  # monthly expanding refits, each day under its month's fit
            from signals import regime

            values = regime.stress_prob_history(regime.microcap_excess_returns(frame), start, end,
                                                p["min_obs"])
        else:
            values, _ = sig.compute(_columns(sig, frame, inputs), p)
        out[sig.name] = values.reindex(pd.DatetimeIndex(pd.to_datetime(days)))
    result = pd.DataFrame(out, index=pd.DatetimeIndex(pd.to_datetime(days), name="date"))
    slow = [s for s, inputs, _, _ in plan if lagged.intersection(inputs)]
    if slow:
        for day in days:
            computed = compute_day(db, calendar, day, params)
            for sig in slow:
                result.loc[pd.Timestamp(day), sig.name] = computed[sig.name].value
    return result[[s.name for s, *_ in plan]].astype(float)
