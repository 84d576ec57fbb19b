"""Market liquidity and stress: a falling market whose liquidity dries up (SIGNALS.md section 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import period_return, rolling_mean
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import ALL_A_AMOUNT, ALL_A_CLOSE

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("market", return_days=20, short_days=20, long_days=120)
CLOSE = ALL_A_CLOSE
AMOUNT = ALL_A_AMOUNT
@register("market.amount_ratio_20_120", family=FAMILY, inputs=(AMOUNT,),
          window=lambda p: p["long_days"], unit="ratio", params=("short_days", "long_days"),
          arrays=True)
def amount_ratio_20_120(frame: pd.DataFrame, short_days: int, long_days: int) -> pd.Series:
    """Whole-market amount: trailing ``short_days`` mean / trailing ``long_days`` mean (ratio).

    Defaults 20 / 120 trading days; < 1 means liquidity is drying up. Look-back: long_days.
    """
    amount = frame[AMOUNT]
    return rolling_mean(amount, short_days) / rolling_mean(amount, long_days)


@register("market.return_20d", family=FAMILY, inputs=(CLOSE,),
          window=lambda p: p["return_days"] + 1, unit="fraction", params=("return_days",),
          arrays=True)
def return_20d(frame: pd.DataFrame, return_days: int) -> pd.Series:
    """CSI All Share ``return_days`` (default 20) trading-day return (fraction, -0.08 = -8%).

    Look-back: return_days + 1 closes.
    """
    return period_return(frame[CLOSE], return_days)
