"""Micro-cap volatility, the trading-alpha regime (SIGNALS.md section 4).

A spike in micro-cap volatility relative to its own recent history and to large caps accompanies
micro-cap sell-offs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import annualised_vol, rolling_median, where_present
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import MICROCAP_CLOSE

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("volatility", vol_days=20, median_days=120, periods_per_year=252)
MICROCAP = MICROCAP_CLOSE
CSI300 = "index.csi300.close"


def _vol_window(p) -> int:
    return p["vol_days"] + 1


def _register_index_vol(signal: str, series: str, label: str) -> None:
    def index_vol(frame: pd.DataFrame, vol_days: int, periods_per_year: int) -> pd.Series:
        return annualised_vol(frame[series], vol_days, periods_per_year)

    index_vol.__doc__ = (
        f"{label}: std of the last ``vol_days`` (default 20) daily returns x sqrt(252) "
        "(annualised fraction, 0.25 = 25%). Look-back: vol_days + 1 closes."
    )
    register(signal, family=FAMILY, inputs=(series,), window=_vol_window, unit="fraction/year",
             params=("vol_days", "periods_per_year"), arrays=True)(index_vol)


_register_index_vol("microcap.vol_20d", MICROCAP, "Micro-cap index volatility")
for _code in ("csi300", "csi500", "csi1000", "csi2000"):
    _register_index_vol(f"{_code}.vol_20d", f"index.{_code}.close", f"{_code.upper()} volatility")


@register("microcap.vol_ratio_csi300", family=FAMILY, inputs=(MICROCAP, CSI300),
          window=_vol_window, unit="ratio", params=("vol_days", "periods_per_year"), arrays=True)
def vol_ratio_csi300(frame: pd.DataFrame, vol_days: int, periods_per_year: int) -> pd.Series:
    """Micro-cap 20-day volatility / CSI 300 20-day volatility (ratio). Look-back: vol_days + 1."""
    return annualised_vol(frame[MICROCAP], vol_days, periods_per_year) / annualised_vol(
        frame[CSI300], vol_days, periods_per_year
    )


@register("microcap.vol_spike", family=FAMILY, inputs=(MICROCAP,),
          window=lambda p: p["vol_days"] + p["median_days"], unit="ratio",
          params=("vol_days", "median_days", "periods_per_year"), arrays=True)
def vol_spike(frame: pd.DataFrame, vol_days: int, median_days: int, periods_per_year: int) -> pd.Series:
    """Micro-cap 20-day volatility / its trailing ``median_days`` (default 120) median (ratio).

    Spike when >= 1.5. Look-back: vol_days + median_days closes.
    """
    vol = annualised_vol(frame[MICROCAP], vol_days, periods_per_year)
    return where_present(vol / rolling_median(vol, median_days), vol)
