"""Manager exposure analytics (signals/exposure.py, issue 16): hand-computed fixtures for every
formula, hypothesis invariants, point-in-time, bad input."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals import exposure as ex
from signals.exposure import Product

D = pd.Timestamp


def s(values, dates) -> pd.Series:
    return pd.Series([float(v) for v in values], index=pd.DatetimeIndex([D(d) for d in dates]))


# --- excess per NAV interval ---------------------------------------------------------------------

def test_excess_returns_hand_computed_with_holiday_and_extra_closes():
    # NAV Fridays; 2024-01-12 has no close (holiday): the benchmark is read on Thu 01-11.
    nav = s([1.00, 1.03, 1.0197, 1.040094], ["2024-01-05", "2024-01-12", "2024-01-19", "2024-01-26"])
    bench = s([99.0, 100.0, 555.0, 101.0, 98.98, 777.0, 100.9596],
              ["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-11", "2024-01-19", "2024-01-24",
               "2024-01-26"])
    got = ex.excess_returns(nav, bench)
    # NAV: +3%, -1%, +2%; benchmark: 101/100 = +1%, 98.98/101 = -2%, 100.9596/98.98 = +2%
    assert list(got.index) == [D("2024-01-12"), D("2024-01-19"), D("2024-01-26")]
    assert got.to_numpy() == pytest.approx([0.02, 0.01, 0.0], abs=1e-12)


def test_excess_returns_drops_a_nav_date_whose_close_is_stale():
    nav = s([1.0, 1.1, 1.21], ["2024-01-05", "2024-01-12", "2024-02-16"])
    bench = s([100.0, 105.0], ["2024-01-05", "2024-01-12"])  # nothing within 14 days of 02-16
    got = ex.excess_returns(nav, bench)
    assert list(got.index) == [D("2024-01-12")]
    assert got.iloc[0] == pytest.approx(0.10 - 0.05)


def test_excess_returns_daily_product():
    days = pd.bdate_range("2024-03-04", periods=6)
    nav = pd.Series([1.0, 1.01, 1.0, 1.02, 1.02, 1.03], index=days)
    bench = pd.Series([10.0, 10.0, 10.1, 10.1, 10.0, 10.0], index=days)
    got = ex.excess_returns(nav, bench)
    want = [0.01 - 0.0, 1.0 / 1.01 - 1 - 0.01, 0.02 - 0.0, 0.0 - (10.0 / 10.1 - 1), 1.03 / 1.02 - 1 - 0.0]
    assert got.to_numpy() == pytest.approx(want, abs=1e-12)


def test_index_excess_on_given_dates():
    dates = pd.DatetimeIndex([D("2024-01-05"), D("2024-01-12"), D("2024-01-19")])
    micro = s([50.0, 55.0, 44.0], dates)
    bench = s([100.0, 102.0, 96.9], dates)
    got = ex.index_excess(micro, bench, dates)
    assert got.to_numpy() == pytest.approx([0.10 - 0.02, -0.20 - (-0.05)])


# --- a 16-week product whose statistics are known by construction --------------------------------
# Per 4 weeks, with the Walsh patterns a = (1,-1,1,-1), e = (1,1,-1,-1), c = (1,-1,-1,1) (mutually
# orthogonal, mean 0): benchmark return 0.02c, micro-cap excess x = 0.01a, CSI 2000 excess z = 0.01e,
# product excess y = 0.001 + 0.5x + 0.002e. Hence over any whole number of 4-week blocks:
#   beta_microcap = 0.5, corr_microcap = 0.005 / sqrt(0.005^2 + 0.002^2) = 0.5 / sqrt(0.29)
#   beta_csi2000 = cov(0.002e, 0.01e) / var(0.01e) = 0.2,
#   corr_csi2000 = 0.002 / sqrt(0.29e-4) = 0.2 / sqrt(0.29)
#   tracking corr = corr(b + y, b) = sqrt(var b / (var b + var y)) = sqrt(4 / 4.29)
# excess y per block: 0.008, -0.002, 0.004, -0.006; the curve's deepest fall is the -0.006 week
# (each block ends above its previous peak: 1.004 * 0.994 * 1.008 > 1, 1.008 * 0.998 * 1.004 > 1).

A = np.array([1, -1, 1, -1] * 4, dtype=float)
E = np.array([1, 1, -1, -1] * 4, dtype=float)
C = np.array([1, -1, -1, 1] * 4, dtype=float)
FRIDAYS = pd.date_range("2023-09-01", periods=17, freq="7D")  # 17 NAVs, 16 weekly intervals


def _levels(rets, start=1.0):
    return start * np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(rets))])


def fixture_closes(noise_seed: int = 0):
    b = 0.02 * C
    x = 0.01 * A
    z = 0.01 * E
    y = 0.001 + 0.5 * x + 0.002 * E
    weekly = {"csi1000": _levels(b, 5000.0), "microcap": _levels(b + x, 100.0),
              "csi2000": _levels(b + z, 2000.0)}
    nav = pd.Series(_levels(b + y, 1.0), index=FRIDAYS)
    # daily closes: the Friday levels, other weekdays noise that must not matter
    days = pd.bdate_range(FRIDAYS[0] - pd.Timedelta(days=4), FRIDAYS[-1])
    rng = np.random.default_rng(noise_seed)
    closes = {}
    for k, lv in weekly.items():
        daily = pd.Series(rng.uniform(0.5, 2.0, len(days)) * lv[0], index=days)
        daily.loc[FRIDAYS] = lv
        closes[k] = daily
    return nav, closes


def test_fixture_statistics_hand_computed():
    nav, closes = fixture_closes()
    frame = ex.interval_frame(nav, "csi1000", closes)
    assert len(frame) == 16 and (frame["days"] == 7).all()
    stats = ex.window_stats(frame, windows=(8, 16), rank_window=16)
    assert stats["beta_microcap_16w"] == pytest.approx(0.5, abs=1e-9)
    assert stats["corr_microcap_16w"] == pytest.approx(0.5 / math.sqrt(0.29), abs=1e-9)
    assert stats["beta_csi2000_16w"] == pytest.approx(0.2, abs=1e-9)
    assert stats["corr_csi2000_16w"] == pytest.approx(0.2 / math.sqrt(0.29), abs=1e-9)
    assert stats["tracking_corr"] == pytest.approx(math.sqrt(4 / 4.29), abs=1e-9)
    # 8 intervals < MIN_INTERVALS (13): no correlation / beta
    assert math.isnan(stats["corr_microcap_8w"]) and math.isnan(stats["beta_csi2000_8w"])
    assert stats["excess_max_drawdown"] == pytest.approx(-0.006, abs=1e-12)
    growth = (1.008 * 0.998 * 1.004 * 0.994) ** 4
    ann = growth ** (365.25 / 112) - 1
    assert stats["excess_ann_return"] == pytest.approx(ann, rel=1e-12)
    assert stats["excess_calmar"] == pytest.approx(ann / 0.006, rel=1e-12)


def test_exposure_table_fixture_row_and_quadrant():
    nav, closes = fixture_closes()
    prods = [Product("P", "csi1000", "index_enhanced", 0.1)]
    t = ex.exposure_table({"P": nav}, prods, closes, dt.date(2023, 12, 31), windows=(8, 16), rank_window=16)
    assert list(t.columns) == ex.table_columns((8, 16))
    row = t.iloc[0]
    assert row["product"] == "P" and row["benchmark"] == "csi1000" and row["weight"] == 0.1
    assert row["first"] == FRIDAYS[0].date() and row["last"] == FRIDAYS[-1].date()
    assert row["intervals"] == 16
    assert row["beta_microcap_16w"] == pytest.approx(0.5, abs=1e-9)
    # tracking 0.9656 >= 0.96 (default): tight; micro-cap corr 0.93 >= 0.45: high
    assert row["quadrant"] == ex.QUADRANT_TIGHT_HIGH and not row["large_exposure"]
    t2 = ex.exposure_table({"P": nav}, prods, closes, dt.date(2023, 12, 31), windows=(8, 16),
                           rank_window=16, loose_tracking_corr=0.97)
    assert t2.iloc[0]["quadrant"] == ex.QUADRANT_LARGE and bool(t2.iloc[0]["large_exposure"]) is True
    t3 = ex.exposure_table({"P": nav}, prods, closes, dt.date(2023, 12, 31), windows=(8, 16),
                           rank_window=16, large_microcap_corr=0.95, loose_tracking_corr=0.97)
    assert t3.iloc[0]["quadrant"] == ex.QUADRANT_LOOSE_LOW and not t3.iloc[0]["large_exposure"]


def test_noise_on_non_nav_days_changes_nothing():
    nav, c1 = fixture_closes(1)
    _, c2 = fixture_closes(2)
    p = [Product("P", "csi1000")]
    t1 = ex.exposure_table({"P": nav}, p, c1, dt.date(2024, 1, 1), windows=(16,), rank_window=16)
    t2 = ex.exposure_table({"P": nav}, p, c2, dt.date(2024, 1, 1), windows=(16,), rank_window=16)
    pd.testing.assert_frame_equal(t1, t2)


def test_daily_product_is_thinned_to_weekly():
    nav, closes = fixture_closes()
    days = pd.bdate_range(FRIDAYS[0], FRIDAYS[-1])
    daily = pd.Series(np.interp(days.asi8, FRIDAYS.asi8, nav.to_numpy()), index=days)
    thin = ex.weekly_navs(daily)
    pd.testing.assert_series_equal(thin, nav.astype(float), check_freq=False)
    p = [Product("D", "csi1000")]
    td = ex.exposure_table({"D": daily}, p, closes, dt.date(2024, 1, 1), windows=(16,), rank_window=16)
    tw = ex.exposure_table({"D": nav}, p, closes, dt.date(2024, 1, 1), windows=(16,), rank_window=16)
    pd.testing.assert_frame_equal(td, tw)


def test_long_interval_left_out_of_correlations_kept_in_excess_curve():
    nav, closes = fixture_closes()
    gapped = nav.drop(FRIDAYS[[5, 6, 7]])  # interval FRIDAYS[4] -> [8] is 28 days
    frame = ex.interval_frame(gapped, "csi1000", closes)
    assert frame["days"].max() == 28 and len(frame) == 13
    stats = ex.window_stats(frame, windows=(13,), rank_window=13)
    assert math.isnan(stats["beta_microcap_13w"])  # 12 usable intervals < 13
    _, _, n = ex.corr_beta(frame["excess"], frame["microcap_excess"], min_intervals=3)
    assert n == 13
    usable = frame[frame["days"] <= 21]
    assert len(usable) == 12
    # the curve compounds across the gap: its end equals NAV/bench over the whole span product-wise
    y = 0.001 + 0.005 * A + 0.002 * E
    b = 0.02 * C
    gap_excess = np.prod(1 + b[4:8] + y[4:8]) - np.prod(1 + b[4:8])
    assert frame.loc[FRIDAYS[8], "excess"] == pytest.approx(gap_excess, abs=1e-12)
    perf = ex.excess_performance(frame)
    assert perf["excess_ann_return"] == pytest.approx(
        float(np.prod(1 + frame["excess"])) ** (365.25 / 112) - 1, rel=1e-12)


def test_rolling_exposure_matches_window_statistics():
    nav, closes = fixture_closes()
    frame = ex.interval_frame(nav, "csi1000", closes)
    roll = ex.rolling_exposure(frame, 16)
    assert roll["beta"].iloc[-1] == pytest.approx(0.5, abs=1e-9)
    assert roll["corr"].iloc[-1] == pytest.approx(0.5 / math.sqrt(0.29), abs=1e-9)
    assert roll["beta"].iloc[:12].isna().all() and roll["beta"].iloc[12:].notna().all()
    roll2 = ex.rolling_exposure(frame, 16, factor="csi2000", min_intervals=4)
    assert roll2["beta"].iloc[3] == pytest.approx(0.2, abs=1e-9)  # first whole 4-week block


def test_max_drawdown_and_calmar_hand_computed():
    exc = pd.Series([0.10, -0.10, -0.10, 0.05])
    # curve 1.1, 0.99, 0.891, 0.93555: peak 1.1, trough 0.891 -> 0.891 / 1.1 - 1 = -0.19
    assert ex.excess_max_drawdown(exc) == pytest.approx(-0.19)
    # the start counts as a peak: a first-interval loss is a drawdown
    assert ex.excess_max_drawdown(pd.Series([-0.05, 0.01])) == pytest.approx(-0.05)
    assert ex.excess_max_drawdown(pd.Series([0.01, 0.0])) == 0.0
    frame = pd.DataFrame({"days": [7.0] * 4, "excess": exc.to_numpy()})
    perf = ex.excess_performance(frame)
    ann = 0.93555 ** (365.25 / 28) - 1
    assert perf["excess_ann_return"] == pytest.approx(ann)
    assert perf["excess_calmar"] == pytest.approx(ann / 0.19)
    up = ex.excess_performance(pd.DataFrame({"days": [7.0], "excess": [0.01]}))
    assert up["excess_max_drawdown"] == 0.0 and math.isnan(up["excess_calmar"])


def test_corr_beta_hand_computed():
    x = pd.Series([0.01, -0.01, 0.00, 0.02])
    y = pd.Series([0.02, 0.00, 0.02, 0.04])
    # dx = (.005,-.015,-.005,.015), dy = (0,-.02,0,.02): sxy = .0006, sxx = .0005, syy = .0008
    corr, beta, n = ex.corr_beta(y, x, min_intervals=3)
    assert (corr, beta, n) == (pytest.approx(3 / math.sqrt(10)), pytest.approx(1.2), 4)
    assert math.isnan(ex.corr_beta(y, x)[0])  # default needs 13
    assert math.isnan(ex.corr_beta(y, pd.Series([0.01] * 4), min_intervals=3)[1])  # constant factor


def test_window_excess_hand_computed():
    nav = s([1.0, 0.95, 0.90, 0.85], ["2023-12-29", "2024-01-05", "2024-02-02", "2024-02-08"])
    bench = s([100.0, 96.0, 88.0, 80.0], ["2023-12-29", "2024-01-05", "2024-02-02", "2024-02-08"])
    # from 12-29 (last NAV before 01-02) to 02-08: NAV -15%, benchmark -20%
    assert ex.window_excess(nav, bench, dt.date(2024, 1, 2), dt.date(2024, 2, 8)) == pytest.approx(0.05)
    # to 02-07: last NAV on or before is 02-02: -10% vs -12%
    assert ex.window_excess(nav, bench, dt.date(2024, 1, 2), dt.date(2024, 2, 7)) == pytest.approx(0.02)
    # not covered: no NAV before the start; NAVs stop more than 21 days before the end
    assert ex.window_excess(nav, bench, dt.date(2023, 12, 29), dt.date(2024, 2, 8)) is None
    assert ex.window_excess(nav, bench, dt.date(2024, 1, 2), dt.date(2024, 3, 29)) is None
    with pytest.raises(ValueError, match="before start"):
        ex.window_excess(nav, bench, dt.date(2024, 2, 8), dt.date(2024, 1, 2))


def test_rank_evidence_hand_computed():
    e = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, 9.0], index=list("abcdef"))
    o = pd.Series([2.0, 1.0, 4.0, 3.0, 5.0, math.nan], index=list("abcdeg"))
    ev = ex.rank_evidence(e, o)
    # d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8; t = 0.8 sqrt(3 / 0.36) = 2.3094, df 3
    assert ev["n"] == 5 and ev["rho"] == pytest.approx(0.8)
    assert ev["p"] == pytest.approx(0.1041, abs=5e-4)
    assert ex.rank_evidence(e.iloc[:2], o.iloc[:2]) == {"rho": pytest.approx(math.nan, nan_ok=True),
                                                         "p": pytest.approx(math.nan, nan_ok=True), "n": 2}
    assert math.isnan(ex.rank_evidence(pd.Series([1.0] * 4), pd.Series([1.0, 2, 3, 4]))["rho"])


def test_estimated_excess_loss():
    assert ex.estimated_excess_loss(0.5, -0.2) == pytest.approx(-0.1)
    assert math.isnan(ex.estimated_excess_loss(math.nan, -0.2))
    with pytest.raises(ValueError, match="finite"):
        ex.estimated_excess_loss(math.inf, -0.2)


def test_table_order_products_without_navs_and_insufficient_data():
    nav, closes = fixture_closes()
    low = pd.Series(_levels(0.02 * C + 0.001 + 0.1 * 0.01 * A + 0.002 * E), index=FRIDAYS)  # beta 0.1
    short = nav.iloc[:3]
    prods = [Product("low", "csi1000"), Product("short", "csi1000"), Product("none", "csi500"),
             Product("high", "csi1000")]
    t = ex.exposure_table({"low": low, "short": short, "high": nav}, prods, closes, dt.date(2024, 1, 1),
                          windows=(16,), rank_window=16)
    assert list(t["product"]) == ["high", "low", "short"]  # most exposed first, NaN last, no NAV: absent
    assert t.iloc[1]["beta_microcap_16w"] == pytest.approx(0.1, abs=1e-9)
    assert t.iloc[2]["quadrant"] == ex.QUADRANT_UNKNOWN and not t.iloc[2]["large_exposure"]
    assert t.iloc[2]["intervals"] == 2 and math.isnan(t.iloc[2]["excess_ann_return"])  # < 13 intervals
    assert math.isnan(t.iloc[2]["excess_max_drawdown"]) and math.isnan(t.iloc[2]["tracking_corr"])
    assert t["large_exposure"].dtype == bool
    empty = ex.exposure_table({}, prods, closes, dt.date(2024, 1, 1))
    assert empty.empty and list(empty.columns) == ex.table_columns()


# --- hypothesis invariants -----------------------------------------------------------------------

def _walk(rng, n, vol=0.02, start=1.0):
    return start * np.cumprod(1 + rng.normal(0.0, vol, n))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), scale=st.floats(0.01, 1000.0), n=st.integers(3, 60))
def test_product_equal_to_benchmark_has_zero_excess(seed, scale, n):
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2022-01-03", periods=5 * n)
    close = pd.Series(_walk(rng, len(days), start=3000.0), index=days)
    nav_days = days[np.sort(rng.choice(len(days), n, replace=False))]
    nav = close.loc[nav_days] * scale
    got = ex.excess_returns(nav, close)
    assert len(got) == n - 1
    assert np.abs(got.to_numpy()).max() < 1e-12
    assert ex.excess_max_drawdown(got) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), k=st.floats(-3.0, 3.0).filter(lambda v: abs(v) > 1e-3),
       n=st.integers(14, 80))
def test_beta_of_k_times_microcap_excess_is_k(seed, k, n):
    rng = np.random.default_rng(seed)
    fridays = pd.date_range("2021-01-08", periods=n + 1, freq="7D")
    b = rng.normal(0, 0.03, n)
    m = b + rng.normal(0, 0.02, n)
    c2 = b + rng.normal(0, 0.02, n)
    closes = {"csi500": pd.Series(_levels(b, 5000.0), index=fridays),
              "microcap": pd.Series(_levels(m, 100.0), index=fridays),
              "csi2000": pd.Series(_levels(c2, 2000.0), index=fridays)}
    nav = pd.Series(_levels(b + k * (m - b)), index=fridays)
    t = ex.exposure_table({"P": nav}, [Product("P", "csi500")], closes, fridays[-1].date(),
                          windows=(13, 52), rank_window=52)
    row = t.iloc[0]
    assert row["beta_microcap_52w"] == pytest.approx(k, rel=1e-6, abs=1e-9)
    assert row["beta_microcap_13w"] == pytest.approx(k, rel=1e-6, abs=1e-9)
    assert row["corr_microcap_52w"] == pytest.approx(math.copysign(1.0, k), abs=1e-6)
    assert row["intervals"] == n
    assert row["excess_max_drawdown"] <= 0.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), cut=st.integers(1, 150))
def test_point_in_time_future_data_changes_nothing(seed, cut):
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2022-01-03", periods=1000)
    closes = {k: pd.Series(_walk(rng, len(days), start=1000.0), index=days)
              for k in ("csi500", "csi1000", "microcap", "csi2000")}
    fridays = days[days.day_of_week == 4]
    navs = {"A": pd.Series(_walk(rng, len(fridays)), index=fridays),
            "B": pd.Series(_walk(rng, len(days)), index=days)}  # a daily product
    prods = [Product("A", "csi500"), Product("B", "csi1000")]
    as_of = days[min(cut * 5, len(days) - 1)].date()
    full = ex.exposure_table(navs, prods, closes, as_of, windows=(13, 26), rank_window=26)
    cut_ts = pd.Timestamp(as_of)
    past = ex.exposure_table({k: v.loc[:cut_ts] for k, v in navs.items()}, prods,
                             {k: v.loc[:cut_ts] for k, v in closes.items()}, as_of, windows=(13, 26),
                             rank_window=26)
    pd.testing.assert_frame_equal(full, past)
    if not full.empty:
        assert (pd.to_datetime(full["last"]) <= cut_ts).all()


@settings(max_examples=40, deadline=None)
@given(xs=st.lists(st.integers(-50, 50), min_size=3, max_size=30), seed=st.integers(0, 2**31))
def test_rank_evidence_is_rank_invariant_and_bounded(xs, seed):
    rng = np.random.default_rng(seed)
    e = pd.Series(xs, dtype=float)
    o = pd.Series(rng.normal(size=len(xs)))
    ev = ex.rank_evidence(e, o)
    ev2 = ex.rank_evidence(np.exp(e / 10), o * 7 + 1)  # strictly monotone transforms
    if math.isnan(ev["rho"]):
        assert math.isnan(ev2["rho"])
    else:
        assert -1.0 - 1e-12 <= ev["rho"] <= 1.0 + 1e-12 and 0.0 <= ev["p"] <= 1.0
        assert ev2["rho"] == pytest.approx(ev["rho"], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(exc=st.lists(st.floats(-0.5, 0.5), min_size=1, max_size=50))
def test_max_drawdown_bounds(exc):
    series = pd.Series(exc)
    mdd = ex.excess_max_drawdown(series)
    assert -1.0 <= mdd <= 0.0
    if min(exc) >= 0:
        assert mdd == 0.0
    else:
        assert mdd <= min(exc) + 1e-12  # the worst single interval is a drawdown at least that deep


# --- bad input -----------------------------------------------------------------------------------

def test_bad_input_errors_name_the_problem():
    nav, closes = fixture_closes()
    p = [Product("P", "csi1000")]
    on = dt.date(2024, 1, 1)
    with pytest.raises(ValueError, match=r"product 'X': benchmark 'csi9'"):
        ex.exposure_table({"X": nav}, [Product("X", "csi9")], closes, on)
    with pytest.raises(ValueError, match=r"closes: no 'microcap' series"):
        ex.exposure_table({"P": nav}, p, {k: v for k, v in closes.items() if k != "microcap"}, on)
    with pytest.raises(ValueError, match=r"rank_window 26 must be one of windows \[52\]"):
        ex.exposure_table({"P": nav}, p, closes, on, windows=(52,), rank_window=26)
    with pytest.raises(ValueError, match=r"window must be an integer >= 2"):
        ex.exposure_table({"P": nav}, p, closes, on, windows=(1, 52))
    with pytest.raises(ValueError, match=r"large_microcap_corr must be a correlation"):
        ex.exposure_table({"P": nav}, p, closes, on, large_microcap_corr=1.5)
    with pytest.raises(ValueError, match=r"products: 'P' declared twice"):
        ex.exposure_table({"P": nav}, p + p, closes, on)
    dup = pd.concat([nav, nav.iloc[:1]])
    with pytest.raises(ValueError, match=r"NAV of product 'P': duplicate date 2023-09-01"):
        ex.exposure_table({"P": dup}, p, closes, on)
    neg = nav.copy()
    neg.iloc[3] = -1.0
    with pytest.raises(ValueError, match=r"NAV of product 'P': non-positive .* on 2023-09-22"):
        ex.exposure_table({"P": neg}, p, closes, on)
    with pytest.raises(ValueError, match=r"NAV: index must be dates"):
        ex.excess_returns(nav.reset_index(drop=True), closes["csi1000"])
    with pytest.raises(ValueError, match=r"NAV: non-numeric value"):
        ex.excess_returns(pd.Series(["1.0", "x"], index=FRIDAYS[:2]), closes["csi1000"])
    bad_close = closes["csi1000"].copy()
    bad_close.iloc[0] = 0.0
    with pytest.raises(ValueError, match=r"close of 'csi1000': non-positive"):
        ex.exposure_table({"P": nav}, p, {**closes, "csi1000": bad_close}, on)
    with pytest.raises(ValueError, match=r"factor 'csi300' is not one of"):
        ex.rolling_exposure(ex.interval_frame(nav, "csi1000", closes), 16, factor="csi300")


def test_import_is_light():
    """The config imports the default thresholds from here: no pandas / numpy / scipy on import."""
    code = ("import sys, signals.exposure as e; e.LARGE_MICROCAP_CORR; e.Product('a', 'csi500');"
            "print(sorted(m for m in ('pandas', 'numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
