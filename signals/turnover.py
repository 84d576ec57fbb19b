"""CSI 2000 turnover share: where the market's liquidity sits (SIGNALS.md section 2).

In 2023 trading migrated down the size ladder; a very high CSI 2000 share of whole-market amount
means crowding into small caps, a sharp fall means active money leaving them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import pct_rank, rolling_max, rolling_mean, where_present
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import ALL_A_AMOUNT

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("turnover", mean_days=20, pctile_days=250, high_days=60)
CSI2000 = "index.csi2000.amount"
ALL_A = ALL_A_AMOUNT
CSI300 = "index.csi300.amount"


def _share(frame: pd.DataFrame) -> pd.Series:
    return frame[CSI2000] / frame[ALL_A]


@register("turnover.csi2000_share", family=FAMILY, inputs=(CSI2000, ALL_A), window=lambda p: 1,
          unit="fraction", arrays=True)
def csi2000_share(frame: pd.DataFrame) -> pd.Series:
    """CSI 2000 amount / CSI All Share amount on the day (fraction of whole-market amount).

    Look-back: 1 trading day.
    """
    return _share(frame)


@register("turnover.csi2000_share_20d", family=FAMILY, inputs=(CSI2000, ALL_A),
          window=lambda p: p["mean_days"], unit="fraction", params=("mean_days",), arrays=True)
def csi2000_share_20d(frame: pd.DataFrame, mean_days: int) -> pd.Series:
    """Trailing ``mean_days`` (default 20) mean of the daily CSI 2000 share (fraction).

    Look-back: ``mean_days`` trading days.
    """
    return rolling_mean(_share(frame), mean_days)


@register("turnover.csi2000_share_pctile_1y", family=FAMILY, inputs=(CSI2000, ALL_A),
          window=lambda p: p["mean_days"] + p["pctile_days"] - 1, unit="fraction [0,1]",
          params=("mean_days", "pctile_days"), arrays=True)
def csi2000_share_pctile_1y(frame: pd.DataFrame, mean_days: int, pctile_days: int) -> pd.Series:
    """Percentile rank of the 20-day mean share within its trailing ``pctile_days`` (default 250).

    In [0, 1]; the share of window values <= today's. Look-back: mean_days + pctile_days - 1.
    Crowded when >= 0.95.
    """
    return pct_rank(rolling_mean(_share(frame), mean_days), pctile_days)


@register("turnover.csi2000_vs_csi300", family=FAMILY, inputs=(CSI2000, CSI300),
          window=lambda p: p["mean_days"], unit="ratio", params=("mean_days",),
          arrays=True)
def csi2000_vs_csi300(frame: pd.DataFrame, mean_days: int) -> pd.Series:
    """Trailing ``mean_days`` mean of CSI 2000 amount / CSI 300 amount (ratio, 1 = equal).

    Look-back: ``mean_days`` trading days.
    """
    return rolling_mean(frame[CSI2000] / frame[CSI300], mean_days)


@register("turnover.csi2000_share_drop_60d", family=FAMILY, inputs=(CSI2000, ALL_A),
          window=lambda p: p["mean_days"] + p["high_days"] - 1, unit="fraction",
          params=("mean_days", "high_days"), arrays=True)
def csi2000_share_drop_60d(frame: pd.DataFrame, mean_days: int, high_days: int) -> pd.Series:
    """20-day mean share / its trailing ``high_days`` (default 60) high - 1 (fraction, <= 0).

    Exodus when <= -0.15 (the 20-day share has fallen 15% below its 60-day high).
    Look-back: mean_days + high_days - 1.
    """
    share_20d = rolling_mean(_share(frame), mean_days)
    return where_present(share_20d / rolling_max(share_20d, high_days) - 1.0, share_20d)
