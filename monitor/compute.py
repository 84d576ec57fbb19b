"""Compute every registered signal for one trading day from the stored observations.

Each signal gets exactly the look-back it declares, loaded point-in-time (``available_at <=
as_of``), so the cost of a day does not grow with the length of the stored history (except for
the expanding running maximum of the drawdown signals, one series each).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlite_utils import Database

import signals
from monitor.calendar import TradingCalendar
from signals.common import refit_due
from signals.series import MICROCAP_CLOSE
from storage import observations, regime_fits


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
                params: Mapping[str, Mapping[str, Any]], keep: bool = False
                ) -> dict[str, SignalValue]:
    """Return every registered signal's value on trading day ``as_of``, point-in-time.

    Each input series is read only as far back as the longest window that uses it. Signals
    registered with ``arrays=True`` are computed by :meth:`signals.Signal.last_value` on numpy
    arrays of their window (the same function; equal to the pandas computation, tested in
    tests/test_incremental.py), the others by :meth:`signals.Signal.compute` on the window's frame.
    ``keep``: read through ``observations.load_frame_cached`` (the daemon's consecutive cycles on
    one connection: the previous day's values kept, extended by what became known since; the same
    frame as ``load_frame``, tested in tests/test_cycle_incremental.py).
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
    starts = {c: calendar.window_start(as_of, w) for c in cols if (w := need[c]) is not None}
    read = observations.load_frame_cached if keep else observations.load_frame
    frame = read(db, cols, days, as_of, starts)
    today = not frame.empty and frame.index[-1] == pd.Timestamp(as_of)
    matrix, column = frame.to_numpy(), {c: j for j, c in enumerate(frame.columns)}
    out: dict[str, SignalValue] = {}
    for sig, inputs, window, p in plan:
        if sig.state == RISK_STATE:
            continue  # derived from the other signals' values: below
        sub = frame if window is None else frame.iloc[-window:] if sig.state or not sig.arrays else None
        state = STATE_PROVIDERS[sig.state](db, sub, as_of, p) if sig.state else None
        if sig.arrays:  # the same formula on numpy arrays of the window: no pandas overhead
            rows = matrix if window is None else matrix[-window:]
            value, ctx = (sig.last_value({c: rows[:, column[c]] for c in inputs}, p, state)
                          if today else (None, None))
            out[sig.name] = _value(value, ctx)
            continue
        out[sig.name] = _last(sig, _columns(sig, sub, inputs), p, as_of, state)
    for sig, _, _, _ in plan:
        if sig.state == RISK_STATE:
            out[sig.name] = _risk_day(db, calendar, as_of, params, sig, out)
    return out


RISK_STATE = "risk_fit"


def _risk_day(db: Database, calendar: TradingCalendar, as_of: dt.date,
              params: Mapping[str, Mapping[str, Any]], sig: signals.Signal,
              today: Mapping[str, SignalValue]) -> SignalValue:
    """``risk.drawdown_prob`` on ``as_of`` from the day's feature values and the month's fit (refitted
    on the first cycle of a month from the features' point-in-time history through the day before)."""
    p = params[sig.family]
    features = list(p["features"])
    fit = _risk_fit(db, calendar, as_of, p, _known_on(db, calendar, params, features))
    # the day's feature values as one-row arrays (Signal.last_value: the frame's numbers, tested)
    row = {f: np.array([today[f].value if f in today and today[f].value is not None else np.nan])
           for f in features}
    raw, context = sig.last_value(row, p, fit)
    value = _risk_value(raw)
    return SignalValue(value, None if value is None or context is None else context)


MICROCAP = MICROCAP_CLOSE
RISK_DECIMALS = 9
"""risk.drawdown_prob is rounded to this many decimals, so the daily cycle and a replay (whose
feature windows start on different days and may differ in the last bit) store the same value."""


def _risk_value(value: float) -> float | None:
    return round(float(value), RISK_DECIMALS) if value == value and math.isfinite(value) else None


def _known_on(db: Database, calendar: TradingCalendar, params: Mapping[str, Mapping[str, Any]],
              features: list[str]):
    """Return ``upto(day)``: the feature values and the micro-cap close as known on ``day``
    (observations with ``available_at <= day``), computed from the first stored day."""
    def upto(through: dt.date) -> tuple[pd.DataFrame, pd.Series]:
        first = observations.first_date(db, _all_inputs(db, params))
        if first is None or first > through:
            empty = pd.DatetimeIndex([], name="date")
            return (pd.DataFrame(index=empty, columns=features, dtype=float),
                    pd.Series(index=empty, dtype=float))
        values = history(db, calendar, first, through, params, names=features)[0]
        close = observations.load_frame(db, [MICROCAP], calendar.days(first, through), through)[MICROCAP]
        return values[features], close

    return upto


def _all_inputs(db: Database, params: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every input series of every registered signal (the first date a replay starts from)."""
    return sorted({c for _, inputs, _, _ in _plan(observations.series_names(db), params) for c in inputs})


def _risk_fit(db: Database, calendar: TradingCalendar, as_of: dt.date, params: Mapping[str, Any],
              upto) -> Any:
    """Return the drawdown-risk fit for ``as_of``: the cached one, or a refit (cached) on the first
    cycle of a month or when the configured model changed. ``upto(day)`` returns (feature values,
    micro-cap close) known on ``day``; a refit uses the data through the previous trading day."""
    from signals import risk

    cached = regime_fits.latest(db, as_of, "risk")
    state = json.loads(cached) if cached else None
    model = risk.model_key(params)
    if state is not None and state.get("no_fit"):
        # no fit could be made this month (too little labelled data): not retried until the next
        if state["model"] == model and not refit_due(dt.date.fromisoformat(state["valid_from"]), as_of):
            return None
        last = None
    else:
        last = risk.RiskFit.from_json(cached) if cached else None
    if last is not None and not last.matches(params):
        last = None  # the config asks for another model: refit now
    if last is not None and not refit_due(last.valid_from, as_of):
        return last
    try:
        previous = calendar.previous(as_of)
    except ValueError:  # the calendar's first day: no data before it to fit on
        return last
    features, close = upto(previous)
    new = risk.current_fit(features, close, as_of, last, previous, params)
    if new is not None:
        regime_fits.save(db, new.valid_from, new.fit_through, new.to_json(), "risk")
    else:
        marker = {"no_fit": True, "valid_from": as_of.isoformat(), "model": model}
        regime_fits.save(db, as_of, previous, json.dumps(marker, sort_keys=True), "risk")
    return new


def _regime_fit(db: Database, frame: pd.DataFrame, as_of: dt.date, params: Mapping[str, Any],
                fit_cache=None, excess_upto=None):
    """Return the regime model's fit for ``as_of``: the cached one, refitted (and cached) when the
    month changed. A refit uses only data before ``as_of``. ``fit_cache``: a
    ``storage.fit_cache.FitCache`` consulted before estimating (``signals.regime.fit``);
    ``excess_upto``: a callable returning the excess returns of ``frame`` (called only when a
    refit is due; a replay passes a slice of the series computed once: returns are causal)."""
    from signals import regime

    cached = regime_fits.latest(db, as_of)
    last = _parsed_fit(cached) if cached else None
    if not regime.refit_due(last, as_of):
        return last
    excess = excess_upto() if excess_upto is not None else regime.microcap_excess_returns(frame)
    new = regime.current_fit(excess, as_of, last, params["min_obs"], cache=fit_cache)
    if new is not None:
        regime_fits.save(db, new.first_day, new.fit_through, new.to_json())
    return new


@functools.lru_cache(maxsize=64)
def _parsed_fit(text: str):
    """``RegimeFit.from_json(text)``, parsed once per distinct stored fit (a fit is immutable)."""
    from signals import regime

    return regime.RegimeFit.from_json(text)


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
    return _value(values.iloc[-1], None if context is None else context.iloc[-1])


def _value(value, context) -> SignalValue:
    """The stored form of a day's value (None when missing or not finite) and context (text;
    None when missing, or when the value is)."""
    value = None if value is None or not math.isfinite(float(value)) else float(value)
    ctx = None
    if context is not None and value is not None:
        c = context
        ctx = None if c is None or (isinstance(c, float) and math.isnan(c)) else str(c)
    return SignalValue(value, ctx)


def compute_history(db: Database, calendar: TradingCalendar, start: dt.date, end: dt.date,
                    params: Mapping[str, Mapping[str, Any]],
                    names: list[str] | None = None) -> pd.DataFrame:
    """Return signal values for every trading day in [start, end] (index = days, column per
    signal), each exactly as the daily cycle of that day computes it (see ``history``)."""
    return history(db, calendar, start, end, params, names)[0]


def history(db: Database, calendar: TradingCalendar, start: dt.date, end: dt.date,
            params: Mapping[str, Mapping[str, Any]], names: list[str] | None = None,
            fit_cache=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (values, contexts) for every trading day in [start, end], point-in-time.

    - Signals whose inputs are available on their own date are computed in one vectorised pass:
      signal functions are causal and their windows sufficient (tested), so each day's value
      equals the daily cycle's.
    - Signals with a late or revised input (quarterly fund data, a value revised by an import)
      are computed once per run of days between the days on which such a value dated earlier
      becomes known (``_stretches``), each run as known on its last day.
    - The regime probability follows the daily cycle's fitting schedule (``_regime_fit``): fits
      are made (and cached in ``regime_fits``) on the same days with the same data, and each day
      is filtered under the fit of its day (per run of days as above when an input is late or
      revised). ``fit_cache`` (``storage.fit_cache.FitCache``, e.g. beside the history database
      when ``db`` is a scratch copy) keeps the estimated fits across runs, keyed by their data.
    """
    wanted = {n for n in (names or list(signals.REGISTRY))}
    full_plan = _plan(observations.series_names(db), params)
    risk_plan = [(s, i, w, p) for s, i, w, p in full_plan if s.state == RISK_STATE and s.name in wanted]
    features = {f for s, _, _, p in risk_plan for f in p["features"]}
    plan = [(s, i, w, p) for s, i, w, p in full_plan
            if s.state != RISK_STATE and (s.name in wanted or s.name in features)]
    cols = sorted({c for _, inputs, _, _ in plan for c in inputs})
    lagged = set(observations.lagged_series(db, cols))
    days = calendar.days(start, end)
    index = pd.DatetimeIndex(pd.to_datetime(days), name="date")
    first = observations.first_date(db, _all_inputs(db, params) if risk_plan else cols) or start
    all_days = calendar.days(min(first, start), end)
    frame = observations.load_frame(db, cols, all_days, end)
    values: dict[str, pd.Series] = {}
    contexts: dict[str, pd.Series] = {}
    full: dict[str, pd.Series] = {}  # feature values over all days (risk model fits)
    for sig, inputs, _, p in plan:
        sub = _columns(sig, frame, inputs)
        late = sorted(lagged.intersection(inputs))
        if sig.state == "regime_fit":
            if not late:
                values[sig.name] = _regime_history(db, sub, days, p, fit_cache)
            else:  # fits and filter read each run of days as known on its last day
                values[sig.name] = pd.concat([
                    _regime_history(db, _as_known(db, sub, late, all_days, run[-1]), run, p, fit_cache)
                    for run in _stretches(db, late, days)])
            continue
        if not late:
            vals, ctx = sig.compute(sub, p)
        else:
            vals, ctx = _knowledge_states(db, sig, sub, late, all_days, days, p)
        if sig.name in features:
            full[sig.name] = vals
        values[sig.name] = vals.reindex(index)
        if ctx is not None:
            contexts[sig.name] = ctx.reindex(index)
    for sig, _, _, p in risk_plan:
        close = observations.load_frame(db, [MICROCAP], all_days, end)[MICROCAP]
        feats = pd.DataFrame({f: full[f] for f in p["features"]}, index=frame.index)
        inputs = {c for s, i, _, _ in plan if s.name in p["features"] for c in i}
        # A fit may only use what was known the day before it: with a revised or late input, the
        # values computed above (as known at ``end``) are not that, so each refit recomputes them.
        revised = bool(observations.lagged_series(db, sorted(inputs | {MICROCAP})))
        values[sig.name], contexts[sig.name] = _risk_history(
            db, calendar, sig, feats, close, days, p,
            _known_on(db, calendar, params, list(p["features"])) if revised else None)
    order = [s.name for s, *_ in full_plan if s.name in wanted]
    out = pd.DataFrame(values, index=index)[order].astype(float)
    ctx_frame = pd.DataFrame(contexts, index=index, dtype=object)
    return out, ctx_frame


def _risk_history(db: Database, calendar: TradingCalendar, sig: signals.Signal, features: pd.DataFrame,
                  close: pd.Series, days: list[dt.date], params: Mapping[str, Any],
                  known_on=None) -> tuple[pd.Series, pd.Series]:
    """``risk.drawdown_prob`` and its context for ``days``, fitted on the daily cycle's schedule
    (``_risk_fit``: the same fits, cached in ``risk_fits``), each day under the fit of its day.
    Fits read ``features`` and ``close`` cut at the fit's data day, or ``known_on(day)`` when given
    (inputs with late or revised observations)."""
    index = pd.DatetimeIndex(pd.to_datetime(days))
    out = pd.Series(np.nan, index=index, dtype=float)
    ctx = pd.Series(None, index=index, dtype=object)

    def cut_at(through: dt.date) -> tuple[pd.DataFrame, pd.Series]:
        cut = pd.Timestamp(through)
        return features[features.index <= cut], close[close.index <= cut]

    upto = known_on or cut_at

    for fit, group in _runs_of_fits(days, lambda day: _risk_fit(db, calendar, day, params, upto)):
        if fit is None:
            continue
        stamps = pd.DatetimeIndex(pd.to_datetime(group))
        vals, context = sig.compute(features.reindex(stamps), params, fit)
        out[stamps] = [_risk_value(v) if _risk_value(v) is not None else np.nan for v in vals.to_numpy()]
        if context is not None:
            ctx[stamps] = context.to_numpy()
    return out, ctx


def _stretches(db: Database, late: list[str], days: list[dt.date]) -> list[list[dt.date]]:
    """Return ``days`` cut into runs of consecutive days between the days on which a value of a
    ``late`` series dated earlier becomes known (a late publication or a revision:
    ``observations.change_days``). Every other value appears on its own date, so the data known
    on a run's last day, read up to any day of the run, is exactly what was known on that day."""
    changes = observations.change_days(db, late, days[0], days[-1])
    runs: list[tuple[int, list[dt.date]]] = []
    for day in days:
        k = bisect.bisect_right(changes, day)
        if runs and runs[-1][0] == k:
            runs[-1][1].append(day)
        else:
            runs.append((k, [day]))
    return [run for _, run in runs]


def _as_known(db: Database, frame: pd.DataFrame, late: list[str], all_days: list[dt.date],
              day: dt.date) -> pd.DataFrame:
    """Return ``frame`` (read as known at the end of the period) with its ``late`` columns as
    known on ``day``."""
    visible = frame.copy()
    visible[late] = observations.load_frame(db, late, all_days, day)[late].to_numpy()
    return visible


def _knowledge_states(db: Database, sig: signals.Signal, frame: pd.DataFrame, late: list[str],
                      all_days: list[dt.date], days: list[dt.date], params: Mapping[str, Any]
                      ) -> tuple[pd.Series, pd.Series | None]:
    """Return (values, contexts) of a signal with late or revised inputs on ``days``, each as the
    daily cycle of that day computes it (values in the signal's unit, NaN: not computable).

    One causal pass per run of ``_stretches`` over the data known on the run's last day: a daily
    series revised once costs two passes, not one per day.
    """
    index = pd.DatetimeIndex(pd.to_datetime(days))
    vals = pd.Series(np.nan, index=index, dtype=float)
    ctx: pd.Series | None = None
    for run in _stretches(db, late, days):
        stamps = pd.DatetimeIndex(pd.to_datetime(run))
        v, c = sig.compute(_as_known(db, frame, late, all_days, run[-1]), params)
        vals[stamps] = v.reindex(stamps).to_numpy()
        if c is not None:
            if ctx is None:
                ctx = pd.Series(None, index=index, dtype=object)
            ctx[stamps] = c.reindex(stamps).to_numpy()
    return vals, ctx


def _regime_history(db: Database, frame: pd.DataFrame, days: list[dt.date],
                    params: Mapping[str, Any], fit_cache=None) -> pd.Series:
    """``regime.stress_prob`` for ``days``, fitted on the daily cycle's schedule (``_regime_fit``,
    each day's fit from the data through that day), each run of days under its fit filtered from
    the series start, all runs in one pass (``regime.filtered_stress_prob_runs``: equal to one
    ``filtered_stress_prob`` per run, tested)."""
    from signals import regime

    excess = regime.microcap_excess_returns(frame)
    index = pd.DatetimeIndex(pd.to_datetime(days))
    out = pd.Series(np.nan, index=index, dtype=float)

    def fit_of(day: dt.date):
        return _regime_fit(db, frame, day, params, fit_cache,
                           excess_upto=lambda: excess.loc[:pd.Timestamp(day)])

    runs = [(fit, group) for fit, group in _runs_of_fits(days, fit_of) if fit is not None]
    for (_, group), probs in zip(runs, regime.filtered_stress_prob_runs(excess, runs), strict=True):
        out[pd.DatetimeIndex(pd.to_datetime(group))] = probs
    return out


def _runs_of_fits(days: list[dt.date], fit_of) -> list[tuple[Any, list[dt.date]]]:
    """Return ``days`` cut into runs of consecutive days that use the same model fit
    (``fit_of(day)``, called once per day in order, as the daily cycle would), with that fit."""
    runs: list[tuple[Any, list[dt.date]]] = []
    for day in days:
        fit = fit_of(day)
        if runs and runs[-1][0] == fit:
            runs[-1][1].append(day)
        else:
            runs.append((fit, [day]))
    return runs
