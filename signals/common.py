"""Small window helpers shared by the signal families. All windows count trading-day rows."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from signals.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")


MIN_COVERAGE = 0.8  # a rolling statistic needs at least 80% of its window present


def min_obs(days: int) -> int:
    """Return the least number of present values a ``days``-long rolling statistic needs."""
    return max(1, math.ceil(MIN_COVERAGE * days))


# Every helper below takes a pandas Series (the full computation: replay, backtest, tests) or a
# 1-D float numpy array (the daily cycle's last value on the trimmed window, ``Signal.last_value``)
# and returns the same kind. A signal's formula is written once with these helpers and plain
# arithmetic. On arrays, the rolling statistics run pandas' own window kernels with the bounds and
# input preparation of ``Series.rolling(days, min_periods=min_obs(days))``, so a value is the very
# number pandas gives on the same rows (tests/test_incremental.py), without a Series per step.


def _is_array(s) -> bool:
    return isinstance(s, np.ndarray)


def _rolling(s, days: int, stat: str, **kwargs):
    """``s.rolling(days, min_periods=min_obs(days)).<stat>(**kwargs)`` for a Series, the same as
    an array for an array (``_rolled``): the one home of the trailing window's coverage rule."""
    if _is_array(s):
        return _rolled(s, days, stat, **kwargs)
    return getattr(s.rolling(days, min_periods=min_obs(days)), stat)(**kwargs)


def _rolled(x: np.ndarray, days: int, stat: str, **kwargs) -> np.ndarray:
    """``Series(x).rolling(days, min_periods=min_obs(days)).<stat>(**kwargs)`` as an array."""
    try:
        from pandas._libs.window import aggregations
    except ImportError:  # a pandas without the kernels' module: the public API, same numbers
        return _rolling(pd.Series(x, dtype=float), days, stat, **kwargs).to_numpy()
    values = np.asarray(x, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    inf = np.isinf(values)
    if inf.any():  # as pandas prepares values for its kernels
        values = np.where(inf, np.nan, values)
    n = len(values)
    end = np.arange(1, n + 1, dtype=np.int64)
    start = np.clip(end - days, 0, n)
    minp = min_obs(days)
    with np.errstate(all="ignore"):
        if stat == "mean":
            return aggregations.roll_mean(values, start, end, minp)
        if stat == "median":
            return aggregations.roll_median_c(values, start, end, minp)
        if stat == "max":
            return aggregations.roll_max(values, start, end, minp)
        if stat == "std":
            var = aggregations.roll_var(values, start, end, minp, ddof=kwargs.get("ddof", 1))
            return np.where(var < 0, 0.0, np.sqrt(var))  # pandas' zsqrt
        if stat == "rank":
            return aggregations.roll_rank(values, start, end, minp, percentile=kwargs["pct"],
                                          method=kwargs["method"], ascending=True)
    raise ValueError(f"no kernel for rolling {stat}")


def shift(s, days: int):
    """Return ``s`` moved ``days`` rows later (NaN in the first ``days`` rows), as ``Series.shift``."""
    if not _is_array(s):
        return s.shift(days)
    out = np.full(len(s), np.nan)
    if days < len(s):
        out[days:] = s[:len(s) - days]
    return out


def where_present(values, like):
    """Return ``values`` where ``like`` is present (not NaN), NaN elsewhere."""
    if not _is_array(values):
        return values.where(like.notna())
    return np.where(np.isnan(like), np.nan, values)


def simple_returns(close):
    """Return close-to-close returns (fraction); NaN where either close is missing."""
    return close / shift(close, 1) - 1.0


def period_return(close, days: int):
    """Return the ``days``-trading-day return close[t] / close[t-days] - 1 (fraction)."""
    return close / shift(close, days) - 1.0


def rolling_mean(s, days: int):
    """Return the trailing ``days`` mean (NaN until ``min_obs(days)`` values are present)."""
    return _rolling(s, days, "mean")


def rolling_median(s, days: int):
    """Return the trailing ``days`` median."""
    return _rolling(s, days, "median")


def rolling_max(s, days: int):
    """Return the trailing ``days`` maximum."""
    return _rolling(s, days, "max")


def pct_rank(s, days: int):
    """Return the share of the trailing ``days`` values (today included) that are <= today's.

    In [0, 1]; NaN when today's value is missing or fewer than ``min_obs(days)`` are present.
    """
    return where_present(_rolling(s, days, "rank", method="max", pct=True), s)


def annualised_vol(close, days: int, periods_per_year: int = 252):
    """Return the ``days`` std of daily returns x sqrt(periods_per_year) (fraction per year)."""
    r = simple_returns(close)
    return _rolling(r, days, "std", ddof=1) * np.sqrt(periods_per_year)


def drawdown(close):
    """Return close / running maximum - 1 (fraction, <= 0); NaN where close is missing."""
    peak = close.cummax() if not _is_array(close) else np.fmax.accumulate(close)
    return where_present(close / peak - 1.0, close)


def refit_due(valid_from: dt.date | None, as_of: dt.date) -> bool:
    """True when a model fitted for ``valid_from`` (None: no fit yet) must be refitted on ``as_of``:
    there is no fit, or it was made for an earlier calendar month (refits at most monthly)."""
    if valid_from is None:
        return True
    return (valid_from.year, valid_from.month) < (as_of.year, as_of.month)
