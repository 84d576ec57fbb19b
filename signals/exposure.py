"""Manager exposure to micro-caps (issue 16): excess returns of the PM's quant products over their
benchmarks, and how closely that excess follows the micro-cap (and CSI 2000) excess.

Pure functions (pandas / numpy / scipy, no I/O). Inputs are already point-in-time filtered by the
caller (NAVs by ``available_at``, closes by date); ``exposure_table`` additionally cuts everything at
``as_of``, so appending later data never changes a table as of an earlier day.

Conventions and decisions
-------------------------
* ``navs``: product -> NAV Series (any positive scale; rebased NAVs fine) on a DatetimeIndex.
  ``closes``: index id (``csi300``, ``csi500``, ``csi1000``, ``csi2000``, ``microcap``) -> daily close.
* A *NAV interval* is the span between two consecutive NAV dates of a product. Every index is read at
  its last close on or before each NAV date, so the product and the indices are compared over exactly
  the same dates whatever the product's frequency (weekly, irregular vendor dates, daily). A close
  older than ``MAX_CLOSE_AGE_DAYS`` calendar days before a NAV date is not used (that NAV date is
  dropped, merging its two intervals): a stale close series must not pass for a flat benchmark.
* Excess return of an interval = simple NAV return - simple benchmark return over it (fraction), as
  in the source note. The *excess curve* is the cumulative product of (1 + excess) from 1.0; the
  *excess max drawdown* is the lowest value of curve / running peak - 1 (the start value 1.0 counts as
  a peak), a fraction <= 0. *Excess annualised return* = curve_end ** (365.25 / calendar days) - 1
  (fraction per year); *excess Calmar* = annualised excess / |excess max drawdown| (NaN when the curve
  never fell).
* ``exposure_table`` first keeps each product's last NAV of each calendar week (Monday..Sunday), so
  its windows (``windows``, ``rank_window``: counts of NAV intervals) are weeks for weekly products and
  daily products alike. A window is the product's last ``w`` intervals (dated <= ``as_of``).
* Intervals longer than ``MAX_INTERVAL_DAYS`` (21 calendar days: two or more weekly NAVs missing) are
  left out of correlations and betas - their returns are several weeks' moves and would dominate a
  weekly regression - but kept in the excess curve (annualised return, max drawdown, Calmar), whose
  compounding stays exact across a gap. A correlation/beta needs ``MIN_INTERVALS`` (13, a quarter of
  weekly NAVs) usable intervals, otherwise it is NaN; so do the table's excess annualised return, max
  drawdown and Calmar (an annualised figure from a few weeks is noise).
* Correlation: Pearson. Beta of the product's excess on a factor's excess (micro-cap or CSI 2000 over
  the product's benchmark, same intervals): cov / var of the factor (sample, ddof 1).
* The quadrant (the note's chart): tracking correlation (NAV return vs benchmark return over the rank
  window) against the micro-cap correlation of the excess over the rank window. ``large_exposure`` is
  the note's flag: the NAV tracks the benchmark loosely (tracking_corr < ``loose_tracking_corr``)
  while the excess follows micro-caps closely (corr_microcap >= ``large_microcap_corr``).

Default thresholds (chosen on data through 2023 only, never on 2024): the cross-sectional medians,
rounded to two decimals, of the 29 index-enhanced products of the real-data file (PROVENANCE.md
section 11) with a 52-week value as of 2023-12-29 (NAVs and closes dated <= 2023-12-29): median
micro-cap correlation of the excess 0.4505 -> 0.45, median tracking correlation 0.9575 -> 0.96
(benchmarks/exposure_study.py prints them; tests/test_realdata_exposure.py checks the constants
against them). A median split makes the note's quadrant chart four comparable groups; the flagged
corner is "follows micro-caps more than the typical product while tracking its benchmark less".
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
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
FACTORS = (MICROCAP, CSI2000)

# Quadrant thresholds: 2023 cross-sectional medians (module docstring). Config defaults import these.
LARGE_MICROCAP_CORR = 0.45
LOOSE_TRACKING_CORR = 0.96
DEFAULT_WINDOWS = (26, 52)
DEFAULT_RANK_WINDOW = 52

MAX_INTERVAL_DAYS = 21   # longer NAV intervals are left out of correlations/betas
MAX_CLOSE_AGE_DAYS = 14  # an index close older than this before a NAV date is not used
MIN_INTERVALS = 13       # usable intervals a correlation/beta needs
DAYS_PER_YEAR = 365.25

QUADRANT_LARGE = "loose tracking, high micro-cap"
QUADRANT_TIGHT_HIGH = "tight tracking, high micro-cap"
QUADRANT_LOOSE_LOW = "loose tracking, low micro-cap"
QUADRANT_TIGHT_LOW = "tight tracking, low micro-cap"
QUADRANT_UNKNOWN = "insufficient data"


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


# --- input checks --------------------------------------------------------------------------------

def _clean(series: pd.Series, what: str) -> pd.Series:
    """The series as float on a sorted DatetimeIndex, NaN dropped; ValueError naming ``what`` for a
    non-datetime index, duplicate dates, non-numeric or non-positive values."""
    if not isinstance(series, pd.Series):
        raise ValueError(f"{what}: expected a pandas Series, got {type(series).__name__}")
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError(f"{what}: index must be dates (DatetimeIndex), got {type(series.index).__name__}")
    try:
        values = pd.to_numeric(series, errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: non-numeric value ({exc})") from None
    values = values[values.notna()]
    if values.index.has_duplicates:
        dup = values.index[values.index.duplicated()][0]
        raise ValueError(f"{what}: duplicate date {dup.date()}")
    bad = values[~np.isfinite(values) | (values <= 0)]
    if len(bad):
        raise ValueError(f"{what}: non-positive or infinite value {bad.iloc[0]} on {bad.index[0].date()}")
    return values.sort_index()


def _check_window(w: int, what: str) -> int:
    if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 2:
        raise ValueError(f"{what}: window must be an integer >= 2 NAV intervals, got {w!r}")
    return int(w)


def _close_series(closes: Mapping[str, pd.Series], key: str, who: str) -> pd.Series:
    if key not in closes:
        raise ValueError(f"closes: no '{key}' series (needed for {who})")
    return _clean(closes[key], f"close of '{key}'")


# --- alignment -----------------------------------------------------------------------------------

def _close_at(close: pd.Series, dates: pd.DatetimeIndex) -> np.ndarray:
    """The last close on or before each date; NaN where there is none within MAX_CLOSE_AGE_DAYS."""
    out = np.full(len(dates), np.nan)
    if close.empty or len(dates) == 0:
        return out
    pos = close.index.searchsorted(dates, side="right") - 1
    ok = pos >= 0
    taken = np.where(ok, pos, 0)
    age = (dates - close.index[taken]).days
    ok &= np.asarray(age) <= MAX_CLOSE_AGE_DAYS
    out[ok] = close.to_numpy()[taken[ok]]
    return out


def _interval_returns(levels: pd.DataFrame) -> pd.DataFrame:
    """Simple returns between consecutive complete rows of ``levels`` (rows with a NaN dropped),
    indexed by the interval's end date, plus ``days`` (calendar days of the interval)."""
    levels = levels.dropna()
    rets = levels / levels.shift(1) - 1.0
    rets["days"] = np.asarray(levels.index.to_series().diff().dt.days, dtype=float)
    return rets.iloc[1:]


def excess_returns(nav: pd.Series, bench_close: pd.Series) -> pd.Series:
    """Excess return per NAV interval (fraction): simple NAV return minus the benchmark's simple
    return between the same two dates, the benchmark taken at its last close on or before each NAV
    date (within MAX_CLOSE_AGE_DAYS; a NAV date without such a close is dropped). Indexed by the
    interval's end date; empty when fewer than two usable NAV dates."""
    nav = _clean(nav, "NAV")
    bench = _clean(bench_close, "benchmark close")
    levels = pd.DataFrame({"nav": nav, "bench": _close_at(bench, nav.index)}, index=nav.index)
    rets = _interval_returns(levels)
    return (rets["nav"] - rets["bench"]).rename("excess")


def index_excess(index_close: pd.Series, bench_close: pd.Series, dates: pd.DatetimeIndex) -> pd.Series:
    """Excess return (fraction) of an index over the benchmark per interval between consecutive
    ``dates`` (both read at their last close on or before each date, within MAX_CLOSE_AGE_DAYS),
    indexed by the interval end."""
    dates = pd.DatetimeIndex(dates).unique().sort_values()
    index_close = _clean(index_close, "index close")
    bench = _clean(bench_close, "benchmark close")
    levels = pd.DataFrame({"index": _close_at(index_close, dates), "bench": _close_at(bench, dates)},
                          index=dates)
    rets = _interval_returns(levels)
    return (rets["index"] - rets["bench"]).rename("excess")


def weekly_navs(nav: pd.Series) -> pd.Series:
    """The last NAV of each calendar week (Monday..Sunday), on its own date: daily or irregular NAVs
    thinned to at most one per week; weekly NAVs unchanged."""
    return _weekly(_clean(nav, "NAV"))


def _weekly(nav: pd.Series) -> pd.Series:
    """``weekly_navs`` of a NAV series already ``_clean``."""
    if nav.empty:
        return nav
    week = nav.index.to_period("W-SUN")
    last = ~pd.Series(week, index=nav.index).duplicated(keep="last").to_numpy()
    return nav[last]


def interval_frame(nav: pd.Series, benchmark: str, closes: Mapping[str, pd.Series],
                   product: str = "NAV") -> pd.DataFrame:
    """Per NAV interval of ``nav`` (on its own dates; thin it first with ``weekly_navs`` for weekly
    windows): ``days`` (calendar days), ``nav_ret``, ``bench_ret``, ``excess`` (NAV - benchmark),
    ``microcap_excess``, ``csi2000_excess`` (each index's return - the benchmark's), all fractions,
    indexed by the interval's end date. NAV dates without all four closes are dropped."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"product '{product}': benchmark '{benchmark}' is not one of {'|'.join(BENCHMARKS)}")
    nav = _clean(nav, f"NAV of product '{product}'")
    who = f"product '{product}'"
    return _interval_frame(nav, benchmark,
                           {k: _close_series(closes, k, who) for k in (benchmark, *FACTORS)})


def _interval_frame(nav: pd.Series, benchmark: str, closes: Mapping[str, pd.Series]) -> pd.DataFrame:
    """``interval_frame`` of a NAV series and closes already ``_clean`` (``closes`` holds the
    benchmark and both factors)."""
    series = {"nav": nav.to_numpy(), "bench": _close_at(closes[benchmark], nav.index)}
    for f in FACTORS:
        series[f] = _close_at(closes[f], nav.index)
    rets = _interval_returns(pd.DataFrame(series, index=nav.index))
    return pd.DataFrame({"days": rets["days"], "nav_ret": rets["nav"], "bench_ret": rets["bench"],
                         "excess": rets["nav"] - rets["bench"],
                         "microcap_excess": rets[MICROCAP] - rets["bench"],
                         "csi2000_excess": rets[CSI2000] - rets["bench"]}, index=rets.index)


# --- statistics ----------------------------------------------------------------------------------

def corr_beta(y: pd.Series, x: pd.Series, min_intervals: int = MIN_INTERVALS) -> tuple[float, float, int]:
    """(Pearson correlation, beta of ``y`` on ``x`` = cov / var(x), n) over the dates where both are
    present; (NaN, NaN, n) when n < ``min_intervals`` or either is constant."""
    pair = pd.concat([y, x], axis=1, join="inner").dropna()
    n = len(pair)
    if n < max(min_intervals, 3):
        return math.nan, math.nan, n
    a = pair.iloc[:, 0].to_numpy()
    b = pair.iloc[:, 1].to_numpy()
    da, db = a - a.mean(), b - b.mean()
    saa, sbb, sab = float(da @ da), float(db @ db), float(da @ db)
    if sbb <= 0 or saa <= 0:
        return math.nan, math.nan, n
    return sab / math.sqrt(saa * sbb), sab / sbb, n


def _usable(frame: pd.DataFrame) -> pd.DataFrame:
    """Intervals fit for correlations/betas: not longer than MAX_INTERVAL_DAYS."""
    return frame[frame["days"] <= MAX_INTERVAL_DAYS]


def rolling_exposure(frame: pd.DataFrame, window: int, factor: str = MICROCAP,
                     min_intervals: int = MIN_INTERVALS) -> pd.DataFrame:
    """Rolling ``corr`` and ``beta`` of the product's excess on ``factor``'s excess (``microcap`` or
    ``csi2000``) over the last ``window`` intervals of an ``interval_frame`` ending at each interval;
    intervals longer than MAX_INTERVAL_DAYS left out; NaN with fewer than ``min_intervals`` usable."""
    window = _check_window(window, "rolling_exposure")
    if factor not in FACTORS:
        raise ValueError(f"rolling_exposure: factor '{factor}' is not one of {'|'.join(FACTORS)}")
    ok = frame["days"] <= MAX_INTERVAL_DAYS
    y = frame["excess"].where(ok)
    x = frame[f"{factor}_excess"].where(ok)
    minp = max(min_intervals, 3)
    cov = y.rolling(window, min_periods=minp).cov(x)
    var = x.rolling(window, min_periods=minp).var()
    corr = y.rolling(window, min_periods=minp).corr(x)
    beta = (cov / var).where(var > 0)
    return pd.DataFrame({"corr": corr, "beta": beta}, index=frame.index)


def excess_curve(excess: pd.Series) -> pd.Series:
    """Cumulative product of (1 + excess) (a level, 1.0 before the first interval)."""
    return (1.0 + excess.astype(float)).cumprod()


def excess_max_drawdown(excess: pd.Series) -> float:
    """Lowest excess curve / running peak - 1 (fraction, <= 0), the start value 1.0 counting as a
    peak; NaN for no intervals."""
    if len(excess) == 0:
        return math.nan
    curve = np.concatenate([[1.0], excess_curve(excess).to_numpy()])
    return float(min(0.0, np.min(curve / np.maximum.accumulate(curve) - 1.0)))


def excess_performance(frame: pd.DataFrame) -> dict[str, float]:
    """``excess_ann_return`` (fraction/yr), ``excess_max_drawdown`` (fraction, <= 0) and
    ``excess_calmar`` (ratio; NaN when the max drawdown is 0) of an ``interval_frame``'s excess, over
    all its intervals (gaps included); NaN for an empty frame."""
    nan = {"excess_ann_return": math.nan, "excess_max_drawdown": math.nan, "excess_calmar": math.nan}
    if frame.empty:
        return nan
    days = float(frame["days"].sum())
    growth = float(excess_curve(frame["excess"]).iloc[-1])
    ann = growth ** (DAYS_PER_YEAR / days) - 1.0 if growth > 0 and days > 0 else math.nan
    mdd = excess_max_drawdown(frame["excess"])
    calmar = ann / -mdd if mdd < 0 and not math.isnan(ann) else math.nan
    return {"excess_ann_return": ann, "excess_max_drawdown": mdd, "excess_calmar": calmar}


def quadrant(tracking_corr: float, corr_microcap: float, *,
             large_microcap_corr: float = LARGE_MICROCAP_CORR,
             loose_tracking_corr: float = LOOSE_TRACKING_CORR) -> tuple[str, bool]:
    """(quadrant label, large_exposure): large exposure = tracking_corr < loose_tracking_corr and
    corr_microcap >= large_microcap_corr; (QUADRANT_UNKNOWN, False) when either is NaN."""
    if any(v is None or math.isnan(v) for v in (tracking_corr, corr_microcap)):
        return QUADRANT_UNKNOWN, False
    loose = tracking_corr < loose_tracking_corr
    high = corr_microcap >= large_microcap_corr
    if loose and high:
        return QUADRANT_LARGE, True
    if high:
        return QUADRANT_TIGHT_HIGH, False
    return (QUADRANT_LOOSE_LOW if loose else QUADRANT_TIGHT_LOW), False


def window_stats(frame: pd.DataFrame, windows: Sequence[int] = DEFAULT_WINDOWS,
                 rank_window: int = DEFAULT_RANK_WINDOW) -> dict[str, float]:
    """The exposure metrics of an ``interval_frame`` as of its last interval: for each w in
    ``windows`` the correlation and beta of the excess with micro-cap and CSI 2000 excess over the last
    w intervals (``corr_microcap_<w>w`` ...); over the last ``rank_window`` intervals the tracking
    correlation (NAV return vs benchmark return) and ``excess_performance`` (NaN with fewer than
    MIN_INTERVALS intervals)."""
    out: dict[str, float] = {}
    for w in windows:
        tail = _usable(frame.iloc[-w:])
        for f in FACTORS:
            corr, beta, _ = corr_beta(tail["excess"], tail[f"{f}_excess"])
            out[f"corr_{f}_{w}w"] = corr
            out[f"beta_{f}_{w}w"] = beta
    rank = frame.iloc[-rank_window:]
    usable = _usable(rank)
    out["tracking_corr"] = corr_beta(usable["nav_ret"], usable["bench_ret"])[0]
    # an annualised figure from a few weeks would be noise: NaN under MIN_INTERVALS intervals
    out.update(excess_performance(rank if len(rank) >= MIN_INTERVALS else rank.iloc[:0]))
    return out


def table_columns(windows: Sequence[int] = DEFAULT_WINDOWS) -> list[str]:
    """The columns of ``exposure_table``, in order."""
    cols = ["product", "benchmark", "strategy", "weight", "first", "last", "intervals", "tracking_corr"]
    for w in windows:
        cols += [f"corr_microcap_{w}w", f"beta_microcap_{w}w", f"corr_csi2000_{w}w", f"beta_csi2000_{w}w"]
    return cols + ["excess_ann_return", "excess_max_drawdown", "excess_calmar", "quadrant", "large_exposure"]


def needed_indices(products: Sequence[Product], navs: Mapping[str, pd.Series]) -> list[str]:
    """Return the index ids (sorted) whose closes ``exposure_table`` reads for ``products``: the
    benchmarks of those with a NAV in ``navs``, CSI 2000 and micro-cap."""
    return sorted({p.benchmark for p in products if p.name in navs} | set(FACTORS))


def exposure_table(navs: Mapping[str, pd.Series], products: Sequence[Product],
                   closes: Mapping[str, pd.Series], as_of: dt.date, *,
                   windows: Sequence[int] = DEFAULT_WINDOWS, rank_window: int = DEFAULT_RANK_WINDOW,
                   large_microcap_corr: float = LARGE_MICROCAP_CORR,
                   loose_tracking_corr: float = LOOSE_TRACKING_CORR) -> pd.DataFrame:
    """One row per product with at least one NAV dated <= ``as_of``, most exposed first (by
    ``beta_microcap_<rank_window>w``, descending, NaN last, then by name). Only NAVs and closes dated
    <= ``as_of`` are used; each product's NAVs are first thinned to one per calendar week
    (``weekly_navs``), so windows count weeks. Columns (``table_columns``): product, benchmark,
    strategy, weight, first, last (``datetime.date`` of the first/last weekly NAV used), intervals
    (count), tracking_corr, corr_/beta_microcap_<w>w and corr_/beta_csi2000_<w>w for each w in windows
    (correlation; beta, fraction per fraction), excess_ann_return (fraction/yr), excess_max_drawdown
    (fraction, <= 0), excess_calmar, quadrant (str), large_exposure (bool) - the last five and
    tracking_corr over the last ``rank_window`` intervals."""
    windows = tuple(_check_window(w, "exposure windows") for w in windows)
    rank_window = _check_window(rank_window, "exposure rank_window")
    if rank_window not in windows:
        raise ValueError(f"exposure rank_window {rank_window} must be one of windows {list(windows)}")
    for name, value in (("large_microcap_corr", large_microcap_corr),
                        ("loose_tracking_corr", loose_tracking_corr)):
        if not (isinstance(value, int | float) and -1.0 <= value <= 1.0):
            raise ValueError(f"exposure {name} must be a correlation in [-1, 1], got {value!r}")
    names = [p.name for p in products]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"products: '{dup}' declared twice")
    cut = pd.Timestamp(as_of)
    for p in products:
        if p.benchmark not in BENCHMARKS:
            raise ValueError(f"product '{p.name}': benchmark '{p.benchmark}' is not one of "
                             f"{'|'.join(BENCHMARKS)}")
    cut_closes = {k: _close_series(closes, k, "exposure_table").loc[:cut]
                  for k in needed_indices(products, navs)}
    rows = []
    for p in products:
        if p.name not in navs:
            continue
        nav = _clean(navs[p.name], f"NAV of product '{p.name}'").loc[:cut]
        if nav.empty:
            continue
        nav = _weekly(nav)  # nav and cut_closes are clean: not checked again per product
        frame = _interval_frame(nav, p.benchmark, cut_closes)
        stats = window_stats(frame, windows, rank_window)
        label, large = quadrant(stats["tracking_corr"], stats[f"corr_microcap_{rank_window}w"],
                                large_microcap_corr=large_microcap_corr,
                                loose_tracking_corr=loose_tracking_corr)
        rows.append({"product": p.name, "benchmark": p.benchmark, "strategy": p.strategy,
                     "weight": p.weight, "first": nav.index[0].date(), "last": nav.index[-1].date(),
                     "intervals": len(frame), **stats, "quadrant": label, "large_exposure": large})
    cols = table_columns(windows)
    table = pd.DataFrame(rows, columns=cols)
    if table.empty:
        return table
    key = f"beta_microcap_{rank_window}w"
    table = table.sort_values([key, "product"], ascending=[False, True], na_position="last",
                              kind="mergesort")
    table["large_exposure"] = table["large_exposure"].astype(bool)
    return table.reset_index(drop=True)


def window_excess(nav: pd.Series, bench_close: pd.Series, start: dt.date, end: dt.date) -> float | None:
    """Excess return (fraction) over [start, end]: NAV return minus benchmark return from the last
    NAV dated before ``start`` (the level the window opens from) to the last NAV on or before ``end``,
    the benchmark read at its last close on or before each of those two dates. None when the product
    does not cover the window: no NAV before ``start`` within MAX_INTERVAL_DAYS, no NAV in
    [start, end] within MAX_INTERVAL_DAYS of ``end``, or no benchmark close for either date."""
    if end < start:
        raise ValueError(f"window_excess: end {end} is before start {start}")
    nav = _clean(nav, "NAV")
    bench = _clean(bench_close, "benchmark close")
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    before = nav.loc[: s - pd.Timedelta(days=1)]
    inside = nav.loc[s:e]
    if before.empty or inside.empty:
        return None
    d0, d1 = before.index[-1], inside.index[-1]
    if (s - d0).days > MAX_INTERVAL_DAYS or (e - d1).days > MAX_INTERVAL_DAYS:
        return None
    b = _close_at(bench, pd.DatetimeIndex([d0, d1]))
    if np.isnan(b).any():
        return None
    return float(inside.iloc[-1] / before.iloc[-1] - b[1] / b[0])


def rank_evidence(exposure: pd.Series, outcome: pd.Series) -> dict[str, Any]:
    """Spearman rank correlation (scipy) of ``exposure`` with ``outcome`` over the labels present
    (non-NaN) in both: ``{"rho": float, "p": float (two-sided), "n": int}``; rho and p NaN when
    n < 3 or either side is constant."""
    from scipy.stats import spearmanr

    pair = pd.concat([pd.Series(exposure, dtype=float), pd.Series(outcome, dtype=float)], axis=1,
                     join="inner").dropna()
    n = len(pair)
    if n < 3 or pair.iloc[:, 0].nunique() < 2 or pair.iloc[:, 1].nunique() < 2:
        return {"rho": math.nan, "p": math.nan, "n": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(pair.iloc[:, 0], pair.iloc[:, 1])
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": n}


def estimated_excess_loss(beta: float, move: float) -> float:
    """Estimated excess return of a product (fraction) if the micro-cap excess over its benchmark
    moved by ``move`` (fraction) again: beta x move. An estimate, not a forecast; NaN when beta or
    move is NaN (no beta measured); ValueError for an infinite input."""
    beta, move = float(beta), float(move)
    if math.isinf(beta) or math.isinf(move):
        raise ValueError(f"estimated_excess_loss: beta {beta} and move {move} must be finite")
    return beta * move
