"""Manager exposure to micro-caps (issue 16): excess returns of the PM's quant products over their
benchmarks, and how closely that excess follows the micro-cap (and CSI 2000) excess.

Pure functions (pandas / numpy / scipy, no I/O). Inputs are already point-in-time filtered by the
caller (NAVs by ``available_at``, closes by date); ``exposure_table`` additionally cuts everything at
``as_of``.

Conventions
-----------
* ``navs``: product -> NAV Series (any positive scale; rebased NAVs fine) on a DatetimeIndex.
* ``closes``: index id (``csi300``, ``csi500``, ``csi1000``, ``csi2000``, ``microcap``) -> daily close.
* A *NAV interval* is the span between two consecutive NAV dates of a product. Every index is read at
  its last close on or before each NAV date, so the product and the indices are compared over exactly
  the same dates, whatever the product's frequency (weekly, irregular, daily).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from signals.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")

BENCHMARKS = ("csi300", "csi500", "csi1000", "csi2000")
MICROCAP = "microcap"
CSI2000 = "csi2000"

# Quadrant thresholds (provisional in this skeleton commit; set from data through 2023, see below).
LARGE_MICROCAP_CORR = 0.5
LOOSE_TRACKING_CORR = 0.9
DEFAULT_WINDOWS = (26, 52)
DEFAULT_RANK_WINDOW = 52


@dataclass(frozen=True)
class Product:
    """A product of the PM's book, as declared in the config's ``[[products]]``.

    ``name`` as in the NAV file's product column; ``benchmark`` one of ``BENCHMARKS``; ``strategy`` a
    free label; ``weight`` the optional share of the PM's book (fraction).
    """

    name: str
    benchmark: str
    strategy: str = ""
    weight: float | None = None


def excess_returns(nav: pd.Series, bench_close: pd.Series) -> pd.Series:
    """Excess return per NAV interval (fraction): simple NAV return minus the benchmark's simple
    return between the same two dates, the benchmark taken at its last close on or before each NAV
    date. Indexed by the interval's end date."""
    raise NotImplementedError


def index_excess(index_close: pd.Series, bench_close: pd.Series, dates: pd.DatetimeIndex) -> pd.Series:
    """Excess return (fraction) of an index over the benchmark per interval between consecutive
    ``dates`` (both read at their last close on or before each date), indexed by the interval end."""
    raise NotImplementedError


def exposure_table(navs: Mapping[str, pd.Series], products: Sequence[Product],
                   closes: Mapping[str, pd.Series], as_of: dt.date, *,
                   windows: Sequence[int] = DEFAULT_WINDOWS, rank_window: int = DEFAULT_RANK_WINDOW,
                   large_microcap_corr: float = LARGE_MICROCAP_CORR,
                   loose_tracking_corr: float = LOOSE_TRACKING_CORR) -> pd.DataFrame:
    """One row per product with NAV history dated <= ``as_of``, most exposed first (by
    ``beta_microcap_<rank_window>w``). Columns: product, benchmark, strategy, weight, first, last,
    intervals, tracking_corr, corr_/beta_microcap_<w>w, corr_/beta_csi2000_<w>w (each w in windows),
    excess_ann_return (fraction/yr), excess_max_drawdown (fraction, <= 0), excess_calmar, quadrant,
    large_exposure."""
    raise NotImplementedError


def window_excess(nav: pd.Series, bench_close: pd.Series, start: dt.date, end: dt.date) -> float | None:
    """Excess return (fraction) over [start, end]: NAV return minus benchmark return between the last
    NAV on or before ``start`` and the last NAV on or before ``end``; None when not covered."""
    raise NotImplementedError


def rank_evidence(exposure: pd.Series, outcome: pd.Series) -> dict[str, Any]:
    """Spearman rank correlation of ``exposure`` with ``outcome`` over the products present in both:
    ``{"rho": float, "p": float, "n": int}`` (rho, p NaN when n < 3)."""
    raise NotImplementedError


def estimated_excess_loss(beta: float, move: float) -> float:
    """Estimated excess return of a product (fraction) if the micro-cap excess moved by ``move``
    (fraction): beta x move. An estimate, not a forecast."""
    raise NotImplementedError
