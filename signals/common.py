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


def simple_returns(close: pd.Series) -> pd.Series:
    """Return close-to-close returns (fraction); NaN where either close is missing."""
    return close / close.shift(1) - 1.0


def period_return(close: pd.Series, days: int) -> pd.Series:
    """Return the ``days``-trading-day return close[t] / close[t-days] - 1 (fraction)."""
    return close / close.shift(days) - 1.0


def rolling_mean(s: pd.Series, days: int) -> pd.Series:
    """Return the trailing ``days`` mean (NaN until ``min_obs(days)`` values are present)."""
    return s.rolling(days, min_periods=min_obs(days)).mean()


def rolling_median(s: pd.Series, days: int) -> pd.Series:
    """Return the trailing ``days`` median."""
    return s.rolling(days, min_periods=min_obs(days)).median()


def rolling_max(s: pd.Series, days: int) -> pd.Series:
    """Return the trailing ``days`` maximum."""
    return s.rolling(days, min_periods=min_obs(days)).max()


def pct_rank(s: pd.Series, days: int) -> pd.Series:
    """Return the share of the trailing ``days`` values (today included) that are <= today's.

    In [0, 1]; NaN when today's value is missing or fewer than ``min_obs(days)`` are present.
    """
    ranked = s.rolling(days, min_periods=min_obs(days)).rank(method="max", pct=True)
    return ranked.where(s.notna())


def annualised_vol(close: pd.Series, days: int, periods_per_year: int = 252) -> pd.Series:
    """Return the ``days`` std of daily returns x sqrt(periods_per_year) (fraction per year)."""
    r = simple_returns(close)
    return r.rolling(days, min_periods=min_obs(days)).std() * np.sqrt(periods_per_year)


def drawdown(close: pd.Series) -> pd.Series:
    """Return close / running maximum - 1 (fraction, <= 0); NaN where close is missing."""
    peak = close.cummax()
    return (close / peak - 1.0).where(close.notna())


def refit_due(valid_from: dt.date | None, as_of: dt.date) -> bool:
    """True when a model fitted for ``valid_from`` (None: no fit yet) must be refitted on ``as_of``:
    there is no fit, or it was made for an earlier calendar month (refits at most monthly)."""
    if valid_from is None:
        return True
    return (valid_from.year, valid_from.month) < (as_of.year, as_of.month)
