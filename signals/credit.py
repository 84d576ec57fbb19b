"""Credit spread level: small-cap premium support (SIGNALS.md section 1).

Small caps do best while credit spreads fall. A spread near its ten-year floor has little room
left to fall; a turn upward from that low base is the style-switch risk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import pct_rank, shift
from signals.lazy import lazy
from signals.registry import family, register

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("credit", tenor="3y", pctile_days=2520, change_days=20, lag_days=60)


def _spread(frame: pd.DataFrame, tenor: str) -> pd.Series:
    return (frame[f"yield.credit.{tenor}"] - frame[f"yield.gov.{tenor}"]) * 100.0


_INPUTS = ("yield.credit.{tenor}", "yield.gov.{tenor}")


@register("credit.spread_bp", family=FAMILY, inputs=_INPUTS, window=lambda p: 1, unit="bp",
          params=("tenor",), arrays=True)
def spread_bp(frame: pd.DataFrame, tenor: str) -> pd.Series:
    """AAA MTN yield - treasury yield at ``tenor`` (default 3y), in basis points. Look-back: 1 day."""
    return _spread(frame, tenor)


@register("credit.spread_pctile_10y", family=FAMILY, inputs=_INPUTS,
          window=lambda p: p["pctile_days"], unit="fraction [0,1]",
          params=("tenor", "pctile_days"), arrays=True)
def spread_pctile_10y(frame: pd.DataFrame, tenor: str, pctile_days: int) -> pd.Series:
    """Percentile rank of today's spread in the trailing ``pctile_days`` (default 2,520 = 10y).

    In [0, 1]; computed once 80% of the window exists. Low base when <= 0.10.
    """
    return pct_rank(_spread(frame, tenor), pctile_days)


@register("credit.spread_chg_20d", family=FAMILY, inputs=_INPUTS,
          window=lambda p: p["change_days"] + 1, unit="bp", params=("tenor", "change_days"),
          arrays=True)
def spread_chg_20d(frame: pd.DataFrame, tenor: str, change_days: int) -> pd.Series:
    """Spread change over ``change_days`` (default 20) trading days, in bp. Look-back: 21 days."""
    s = _spread(frame, tenor)
    return s - shift(s, change_days)


@register("credit.spread_pctile_10y_lag60", family=FAMILY, inputs=_INPUTS,
          window=lambda p: p["pctile_days"] + p["lag_days"], unit="fraction [0,1]",
          params=("tenor", "pctile_days", "lag_days"), arrays=True)
def spread_pctile_10y_lag60(frame: pd.DataFrame, tenor: str, pctile_days: int, lag_days: int) -> pd.Series:
    """``credit.spread_pctile_10y`` as it stood ``lag_days`` (default 60) trading days earlier.

    Used by *widening from a low base*: chg_20d >= 15 bp and this <= 0.20.
    """
    return shift(pct_rank(_spread(frame, tenor), pctile_days), lag_days)
