"""The micro-cap index reconstructed from a stock panel (signals/microcap.py, SIGNALS.md section 7).

Hand-computed tiny panels (n = 2) for each rule, a hypothesis property test against the per-day
loop, and the real stock panel (../shared/data/real, PROVENANCE.md section 7) against the Wind
micro-cap index 8841431.WI (section 1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals import microcap as mc

NAN = math.nan


def panel(close: dict, shares: dict, st_flags: dict | None = None):
    """Build (close, total_mv, is_st) frames from per-stock lists; total_mv = close x shares."""
    days = pd.Index([f"2024-01-{d:02d}" for d in range(2, 2 + len(next(iter(close.values()))))])
    c = pd.DataFrame(close, index=days, dtype=float)
    sh = pd.DataFrame(shares, index=days, dtype=float)
    m = c * sh
    flags = pd.DataFrame(st_flags or {}, index=days, columns=c.columns, dtype=float).fillna(0.0)
    return c, m, flags.where(c.notna())


def daily_values(close, mv, is_st, n, min_listed_days):
    """The daily update run for every day t >= 1 from rows t-1 and t only."""
    ld = mc.listed_days(close)
    out = [NAN]
    for t in range(1, len(close)):
        out.append(mc.daily_return(close.iloc[t - 1], close.iloc[t], mv.iloc[t - 1], mv.iloc[t],
                                   is_st.iloc[t - 1], ld.iloc[t - 1], n=n,
                                   min_listed_days=min_listed_days))
    return np.array(out)


def check(close, mv, is_st, expected, n=2, min_listed_days=1):
    """reconstruct, the per-day loop and the daily update all give the hand-computed returns."""
    got = mc.reconstruct(close, mv, is_st, n=n, min_listed_days=min_listed_days)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=0, atol=1e-12)
    loop = mc.reconstruct_loop(close, mv, is_st, n=n, min_listed_days=min_listed_days)
    np.testing.assert_allclose(loop.to_numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(daily_values(close, mv, is_st, n, min_listed_days), got.to_numpy())
    return got


# --- hand-computed panels -------------------------------------------------------------------------

SH = {"A": [10] * 3, "B": [10] * 3, "C": [10] * 3}


def test_members_are_the_n_smallest_by_the_previous_days_cap():
    # caps (close x 10): day0 A 10, B 20, C 30 -> day1 members A, B (C's +100% is not in the index);
    # day1 A 11, B 21, C 5 -> day2 members C, A (B's -50% is not in it)
    close, mv, is_st = panel({"A": [1.0, 1.1, 1.21], "B": [2.0, 2.1, 1.05], "C": [3.0, 0.5, 0.6]}, SH)
    got = check(close, mv, is_st, [NAN, (0.10 + 0.05) / 2, (0.20 + 0.10) / 2])
    assert got.name == "microcap_return"
    assert list(got.index) == list(close.index)


def test_st_on_the_previous_day_excludes_the_stock():
    close = {"A": [1.0, 1.1, 1.21], "B": [2.0, 2.1, 2.31], "C": [3.0, 3.6, 3.6]}
    # A is ST on day0 only: out on day1 (flag of t-1), back on day2
    got = check(*panel(close, SH, {"A": [1, 0, 0]}), [NAN, (0.05 + 0.20) / 2, (0.10 + 0.10) / 2])
    # A flagged on day1 only: day1 keeps A (its day0 flag is 0), day2 drops it
    check(*panel(close, SH, {"A": [0, 1, 0]}), [NAN, (0.10 + 0.05) / 2, (0.10 + 0.0) / 2])
    assert got.iloc[1] == pytest.approx(0.125)


def test_newly_listed_stock_waits_min_listed_days():
    # D lists on day1 with the smallest cap; min_listed_days=2: on day2 it has 1 listed day by t-1
    # (out), on day3 it has 2 (in)
    close = {"A": [1.0, 1.1, 1.21, 1.21], "B": [2.0, 2.2, 2.2, 2.2], "D": [NAN, 0.1, 0.2, 0.3]}
    shares = {"A": [10] * 4, "B": [10] * 4, "D": [10] * 4}
    c, m, s = panel(close, shares)
    # day1: min_listed_days=2 but every stock is new on day0 -> nobody eligible (warm-up)
    check(c, m, s, [NAN, NAN, (0.10 + 0.0) / 2, (0.5 + 0.0) / 2], min_listed_days=2)
    # min_listed_days=1: A, B on day1; D (listed on day1) joins on day2
    check(c, m, s, [NAN, (0.10 + 0.10) / 2, (1.0 + 0.10) / 2, (0.5 + 0.0) / 2], min_listed_days=1)
    ld = mc.listed_days(c)
    assert ld["D"].tolist() == [0, 1, 2, 3] and ld["A"].tolist() == [1, 2, 3, 4]


def test_suspended_stock_is_out_on_both_sides_of_the_gap():
    # B (smallest) has no trade on day1: out on day1 (not traded at t) and day2 (not traded at t-1)
    close = {"A": [1.0, 1.1, 1.21, 1.21], "B": [0.5, NAN, 0.6, 0.66], "C": [3.0, 3.3, 3.0, 3.0]}
    shares = {k: [10] * 4 for k in close}
    expected = [NAN, (0.10 + 0.10) / 2, (0.10 + (3.0 / 3.3 - 1)) / 2, (0.10 + 0.0) / 2]
    check(*panel(close, shares), expected)


def test_split_day_is_not_a_crash():
    # A: 2-for-1 split on day1 (shares 10 -> 20) and a true +5% move: close 1.0 -> 0.525 (-47.5%),
    # cap 10 -> 10.5: the cap ratio (+5%) is the smaller move and is used
    close = {"A": [1.0, 0.525, 0.55125], "B": [2.0, 2.0, 2.2], "C": [3.0, 3.0, 3.0]}
    shares = {"A": [10, 20, 20], "B": [10] * 3, "C": [10] * 3}
    got = check(*panel(close, shares), [NAN, (0.05 + 0.0) / 2, (0.05 + 0.10) / 2])
    assert got.min() > -0.01


def test_bonus_share_with_a_limit_down_day():
    # 10-for-10 bonus (shares double) on a -10% day: close 1.0 -> 0.45, cap 10 -> 9.0 => -10%
    close = {"A": [1.0, 0.45], "B": [2.0, 2.0], "C": [3.0, 3.0]}
    shares = {"A": [10, 20], "B": [10, 10], "C": [10, 10]}
    check(*panel(close, shares), [NAN, (-0.10 + 0.0) / 2])


def test_share_issuance_at_market_keeps_the_close_ratio():
    # A issues 50% new shares at market: cap 10 -> 15.3, close 1.0 -> 1.02: the close ratio (+2%)
    close = {"A": [1.0, 1.02], "B": [2.0, 2.0], "C": [3.0, 3.0]}
    shares = {"A": [10, 15], "B": [10, 10], "C": [10, 10]}
    check(*panel(close, shares), [NAN, (0.02 + 0.0) / 2])


def test_small_share_changes_use_the_close_ratio():
    # shares +0.5% (bond conversion) on a -0.5% day: under the 1% tolerance the close ratio (-0.5%)
    # is used although the cap ratio (-0.0025%) is the smaller move
    close = {"A": [1.0, 0.995], "B": [2.0, 2.0], "C": [3.0, 3.0]}
    shares = {"A": [10, 10.05], "B": [10, 10], "C": [10, 10]}
    check(*panel(close, shares), [NAN, (-0.005 + 0.0) / 2])


def test_missing_cap_today_uses_the_close_ratio_and_missing_cap_yesterday_excludes():
    close, mv, is_st = panel({"A": [1.0, 1.1, 1.21], "B": [2.0, 2.2, 2.2], "C": [3.0, 3.0, 3.3]}, SH)
    mv.loc[mv.index[1], "A"] = NAN  # A: no cap on day1 -> close ratio on day1, not rankable on day2
    check(close, mv, is_st, [NAN, (0.10 + 0.10) / 2, (0.0 + 0.10) / 2])


def test_fewer_than_n_eligible_and_none_eligible():
    close = {"A": [1.0, 1.1, NAN], "B": [2.0, NAN, NAN], "C": [3.0, 3.3, 3.3]}
    shares = {k: [10] * 3 for k in close}
    c, m, s = panel(close, shares)
    # n=3: day1 only A and C traded on both days; day2 only C, which is ST on day1
    s.loc[s.index[1], "C"] = 1.0
    check(c, m, s, [NAN, 0.10, NAN], n=3)


def test_ties_go_to_the_earlier_column():
    close = {"A": [3.0, 3.3], "B": [1.0, 1.2], "C": [1.0, 0.9], "D": [1.0, 1.5]}
    shares = {k: [10, 10] for k in close}
    # B, C, D tie at cap 10 for two places: B and C (earlier columns) are in, D (+50%) is out
    check(*panel(close, shares), [NAN, (0.20 - 0.10) / 2])


def test_min_listed_days_zero_and_one_are_the_same():
    close, mv, is_st = panel({"A": [1.0, 1.1, 1.21], "B": [2.0, 2.1, 1.05], "C": [3.0, 0.5, 0.6]}, SH)
    a = mc.reconstruct(close, mv, is_st, n=2, min_listed_days=0)
    pd.testing.assert_series_equal(a, mc.reconstruct(close, mv, is_st, n=2, min_listed_days=1))


def test_unsound_values_are_not_traded_or_not_rankable():
    # the smallest stocks carry values sound data never has: a +inf or zero close (not traded), a
    # negative, zero or +inf cap (not rankable); the fast path lets them through and must catch them
    close = {"A": [1.0, 1.1, 1.21], "B": [2.0, 2.2, 2.2], "C": [3.0, 3.3, 3.3],
             "D": [math.inf, 0.5, 0.55], "E": [0.0, 0.5, 0.6], "F": [0.5, 0.6, math.inf]}
    shares = {k: [10] * 3 for k in close}
    c, m, s = panel(close, shares)
    m.loc[m.index[0], "B"] = -5.0  # day1: B not rankable (negative cap)
    m.loc[m.index[1], "A"] = math.inf  # day2: A not rankable (+inf cap)
    # day1: D (+inf close) and E (zero close) were not traded on day0, B has a negative cap, F is
    # eligible (+20%), then A (+10%); day2: F has a +inf close on day2 (not traded), A a +inf cap;
    # eligible D (0.5 -> 0.55, +10%), E (0.5 -> 0.6, +20%): the two smallest (caps 5, 5)
    check(c, m, s, [NAN, (0.20 + 0.10) / 2, (0.10 + 0.20) / 2])


def test_a_first_close_of_inf_does_not_start_the_listing_clock():
    # D's first close is +inf (not a trade): it is listed from day1, so with min_listed_days=2 it
    # cannot be held on day2 (1 listed day by day1) although it has the smallest cap
    close = {"A": [1.0, 1.1, 1.21, 1.21], "B": [2.0, 2.2, 2.2, 2.2], "D": [math.inf, 0.1, 0.2, 0.3]}
    c, m, s = panel(close, {k: [10] * 4 for k in close})
    check(c, m, s, [NAN, NAN, (0.10 + 0.0) / 2, (0.5 + 0.0) / 2], min_listed_days=2)
    assert mc.listed_days(c)["D"].tolist() == [0, 1, 2, 3]


def test_absurd_cap_magnitudes_still_rank_exactly():
    # caps far outside float32 (the fast path's bounds are float32): tiny, huge and ordinary
    close = {"A": [1.0, 1.1], "B": [2.0, 2.2], "C": [3.0, 3.0], "D": [4.0, 4.4]}
    shares = {"A": [1e-50] * 2, "B": [1e300] * 2, "C": [1e-45] * 2, "D": [1.0] * 2}
    check(*panel(close, shares), [NAN, (0.10 + 0.0) / 2])  # A (1e-50) and C (3e-45)


def test_mismatched_frames_and_bad_parameters_are_refused():
    close, mv, is_st = panel({"A": [1.0, 1.1], "B": [2.0, 2.1]}, {"A": [1, 1], "B": [1, 1]})
    with pytest.raises(ValueError, match="same index and columns"):
        mc.reconstruct(close, mv[["B", "A"]], is_st)
    with pytest.raises(ValueError, match="ascending"):
        mc.reconstruct(close.iloc[::-1], mv.iloc[::-1], is_st.iloc[::-1])
    with pytest.raises(ValueError, match="n must be"):
        mc.reconstruct(close, mv, is_st, n=0)
    with pytest.raises(ValueError, match="min_listed_days"):
        mc.daily_return(close.iloc[0], close.iloc[1], mv.iloc[0], mv.iloc[1], is_st.iloc[0],
                        mc.listed_days(close).iloc[0], min_listed_days=-1)


def test_single_row_and_empty_panels():
    close, mv, is_st = panel({"A": [1.0], "B": [2.0]}, {"A": [1], "B": [1]})
    assert mc.reconstruct(close, mv, is_st).isna().all()
    empty = close.iloc[:0]
    assert mc.reconstruct(empty, empty, empty).empty
    no_stocks = pd.DataFrame(index=["2024-01-02", "2024-01-03"], columns=pd.Index([], dtype=str), dtype=float)
    assert mc.reconstruct(no_stocks, no_stocks, no_stocks).isna().all()


def test_index_level_compounds_from_base():
    r = pd.Series([NAN, 0.10, -0.50, NAN, 0.20])
    np.testing.assert_allclose(mc.index_level(r).to_numpy(), [1000, 1100, 550, 550, 660])
    assert mc.index_level(r, base=1.0).iloc[0] == 1.0


def test_update_listed_days_rolls_the_counts_forward():
    close = pd.DataFrame({"A": [1.0, NAN, 1.0, 1.0], "B": [NAN, NAN, 2.0, NAN], "C": [NAN] * 4},
                         index=list("abcd"))
    full = mc.listed_days(close)
    assert full.to_dict("list") == {"A": [1, 2, 3, 4], "B": [0, 0, 1, 2], "C": [0, 0, 0, 0]}
    rolled = full.iloc[0]
    for t in range(1, len(close)):
        rolled = mc.update_listed_days(rolled, close.iloc[t])
        pd.testing.assert_series_equal(rolled, full.iloc[t], check_names=False)
    # a stock new to the panel (not in yesterday's counts) starts from 0
    today = pd.Series({"A": 1.0, "E": 5.0})
    assert mc.update_listed_days(full.iloc[3], today).to_dict() == {"A": 5, "E": 1}


def test_daily_return_aligns_series_by_stock_code():
    close, mv, is_st = panel({"A": [1.0, 1.1, 1.21], "B": [2.0, 2.1, 1.05], "C": [3.0, 0.5, 0.6]}, SH)
    ld = mc.listed_days(close)
    shuffled = [s.iloc[t][["C", "A", "B"]] for s, t in ((close, 0), (mv, 0), (mv, 1), (is_st, 0), (ld, 0))]
    value = mc.daily_return(shuffled[0], close.iloc[1], shuffled[1], shuffled[2], shuffled[3],
                            shuffled[4], n=2, min_listed_days=1)
    assert value == pytest.approx(0.075, abs=1e-15)


# --- property test: random small panels -----------------------------------------------------------


@st.composite
def random_panels(draw):
    days = draw(st.integers(2, 20))  # up to three blocks of 8 days
    stocks = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = rng.choice([1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0], size=(days, stocks))  # ties on purpose
    close[rng.random((days, stocks)) < draw(st.sampled_from([0.0, 0.2, 0.5]))] = np.nan
    steps = rng.choice([1.0, 1.0, 1.0, 2.0, 0.5, 1.3, 1.004], size=(days, stocks))
    shares = 10.0 * np.cumprod(steps, axis=0)
    mv = close * shares
    mv[rng.random((days, stocks)) < 0.05] = np.nan
    if draw(st.booleans()):  # values sound data never has: +inf / zero / negative closes and caps
        bad = rng.random((days, stocks)) < 0.08
        close[bad] = rng.choice([np.inf, 0.0, -1.0], size=bad.sum())
        bad = rng.random((days, stocks)) < 0.08
        mv[bad] = rng.choice([np.inf, 0.0, -5.0, 1e-50], size=bad.sum())
    flags = (rng.random((days, stocks)) < 0.2).astype(float)
    flags[np.isnan(close)] = np.nan
    index = pd.Index([f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in range(days)])
    cols = [f"{600000 + j}" for j in range(stocks)]
    frames = [pd.DataFrame(a, index=index, columns=cols) for a in (close, mv, flags)]
    return frames, draw(st.integers(1, 5)), draw(st.integers(0, 3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_panels())
def test_random_panels_match_the_loop_and_never_look_ahead(case):
    (close, mv, is_st), n, min_listed = case
    got = mc.reconstruct(close, mv, is_st, n=n, min_listed_days=min_listed)
    values = got.to_numpy()
    assert len(values) == len(close) and np.isnan(values[0])
    assert np.all(np.isfinite(values) | np.isnan(values))
    loop = mc.reconstruct_loop(close, mv, is_st, n=n, min_listed_days=min_listed).to_numpy()
    np.testing.assert_allclose(values, loop, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(values, daily_values(close, mv, is_st, n, min_listed))
    for k in range(1, len(close)):  # dropping later rows never changes an earlier value
        part = mc.reconstruct(close.iloc[:k], mv.iloc[:k], is_st.iloc[:k], n=n, min_listed_days=min_listed)
        np.testing.assert_array_equal(part.to_numpy(), values[:k])


# --- real data ------------------------------------------------------------------------------------

PANEL = "ashare_stock_panel_liuruojiang"
WIND = "8841431.WI"
START, END = "2018-01-01", "2023-12-31"


def load_panel(folder):
    """(close, total_mv, is_st) from the real panel's gz CSVs, as consolidated float frames."""
    frames = []
    for name in ("close_raw_wide_2014_2024", "total_mv_yi_wide_2014_2024", "is_st_wide_2014_2024"):
        raw = pd.read_csv(folder / f"{name}.csv.gz", index_col="date", dtype={"date": str})
        # read_csv gives one block per column; one 2-D block makes the rows and views cheap
        frames.append(pd.DataFrame(raw.to_numpy(dtype=np.float64), index=raw.index, columns=raw.columns))
    return tuple(frames)


@pytest.fixture(scope="module")
def real(real_data):
    close, mv, is_st = load_panel(real_data / PANEL)
    returns = mc.reconstruct(close, mv, is_st)
    wind = pd.read_csv(real_data / "wind_index_ohlc_turtle" / "index_ohlc_daily.csv", dtype={"code": str})
    wind = wind[wind["code"] == WIND].set_index("date")["close"].sort_index()
    return close, mv, is_st, returns, wind.pct_change()


def per_year(rec: pd.Series, wind: pd.Series) -> pd.DataFrame:
    both = pd.DataFrame({"reconstruction": rec, "wind": wind}).dropna()
    table = (1 + both).groupby(both.index.str[:4]).prod() - 1
    table["difference"] = table["reconstruction"] - table["wind"]
    return table


@pytest.mark.realdata
def test_real_panel_tracks_the_wind_microcap_index(real):
    close, _, _, returns, wind = real
    assert close.shape == (2676, 4911)
    assert returns.index[0] == "2014-01-02" and returns.index[-1] == "2024-12-31"
    assert returns.loc["2014-03-01":].notna().all()  # every day after the warm-up has a value
    both = pd.DataFrame({"rec": returns, "wind": wind}).loc[START:END].dropna()
    assert len(both) >= 1450  # six years of trading days
    corr = both["rec"].corr(both["wind"])
    print(f"\ncorrelation with {WIND} daily returns {START}..{END}: {corr:.4f} over {len(both)} days")
    assert corr >= 0.99
    # no split/bonus-share crash: the worst single-day gap to Wind stays small
    assert (both["rec"] - both["wind"]).abs().max() < 0.02


@pytest.mark.realdata
def test_real_panel_survivorship_bias_is_upward_and_bounded(real):
    _, _, _, returns, wind = real
    both = pd.DataFrame({"rec": returns, "wind": wind}).loc[START:END].dropna()
    table = per_year(both["rec"], both["wind"])
    years = len(both) / 252
    cum_rec, cum_wind = (1 + both).prod() - 1
    ann_rec, ann_wind = (1 + cum_rec) ** (1 / years) - 1, (1 + cum_wind) ** (1 / years) - 1
    bias_bp = (both["rec"] - both["wind"]).mean() * 1e4
    print("\nyear  reconstruction    wind   difference")
    for year, row in table.iterrows():
        print(f"{year}  {row['reconstruction']:+13.2%}  {row['wind']:+7.2%}  {row['difference']:+10.2%}")
    print(f"cumulative {START[:4]}-{END[:4]}: reconstruction {cum_rec:+.2%}, wind {cum_wind:+.2%}")
    print(f"annualised: reconstruction {ann_rec:+.2%}, wind {ann_wind:+.2%}, "
          f"difference {ann_rec - ann_wind:+.2%}")
    print(f"mean daily return difference (survivorship bias): {bias_bp:+.2f} bp/day")
    # the panel lacks delisted stocks: the reconstruction is biased upward, but not by much
    assert 0.0 < bias_bp < 10.0
    assert 0.0 < ann_rec - ann_wind < 0.10
    assert (table["difference"] > -0.05).all() and (table["difference"] < 0.20).all()
    assert table["difference"].idxmax() == "2020"  # PROVENANCE: most visible in 2020


@pytest.mark.realdata
def test_real_split_and_bonus_days_are_not_crashes(real):
    # every day in the panel on which a stock's raw close fell by more than 30% (bonus shares,
    # splits, and a few unlimited first days after an IPO): the split rule brings nearly all of them
    # back within the largest daily price limit (20%)
    close, mv, _, _, _ = real
    c, m = close.to_numpy(), mv.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        crash = (c[1:] / c[:-1] < 0.7) & np.isfinite(m[1:]) & np.isfinite(m[:-1])
    rets = mc.stock_returns(c[:-1][crash], c[1:][crash], m[:-1][crash], m[1:][crash])
    within = np.abs(rets) <= 0.21
    print(f"\nraw close falls > 30%: {crash.sum()}, within +-21% after the split rule: {within.sum()}")
    assert crash.sum() > 2000
    assert within.mean() > 0.99


@pytest.mark.realdata
def test_real_daily_update_equals_reconstruct_exactly(real):
    close, mv, is_st, returns, _ = real
    ld = mc.listed_days(close)
    days = list(range(1, len(close), 7)) + list(range(len(close) - 30, len(close)))
    for t in days:
        value = mc.daily_return(close.iloc[t - 1], close.iloc[t], mv.iloc[t - 1], mv.iloc[t],
                                is_st.iloc[t - 1], ld.iloc[t - 1])
        expected = returns.iloc[t]
        assert value == expected or (math.isnan(value) and math.isnan(expected)), close.index[t]
    # the listed-day counts rolled forward day by day equal the ones computed from the history
    rolled = ld.iloc[len(close) - 61]
    for t in range(len(close) - 60, len(close)):
        rolled = mc.update_listed_days(rolled, close.iloc[t])
    pd.testing.assert_series_equal(rolled, ld.iloc[-1], check_names=False)


@pytest.mark.realdata
def test_real_panel_no_look_ahead_and_loop_agreement(real):
    close, mv, is_st, returns, _ = real
    cut = close.index.get_loc("2020-06-30") + 1
    part = mc.reconstruct(close.iloc[:cut], mv.iloc[:cut], is_st.iloc[:cut])
    np.testing.assert_array_equal(part.to_numpy(), returns.iloc[:cut].to_numpy())
    window = slice(close.index.get_loc("2015-06-15"), close.index.get_loc("2015-08-14"))  # crash, halts
    loop = mc.reconstruct_loop(close.iloc[window], mv.iloc[window], is_st.iloc[window], min_listed_days=0)
    vec = mc.reconstruct(close.iloc[window], mv.iloc[window], is_st.iloc[window], min_listed_days=0)
    np.testing.assert_allclose(vec.to_numpy(), loop.to_numpy(), rtol=1e-12, atol=1e-15)
    assert vec.iloc[1:].notna().all()


# --- one day's continuation from two cross-sections (was in test_akshare_source.py) -----------

def test_continue_microcap_by_hand():
    prev = pd.DataFrame({"code": ["000001", "000002", "000003", "000004"],
                         "close": [10.0, 20.0, 5.0, 8.0], "total_mv": [1e9, 2e9, 3e9, 0.5e9],
                         "is_st": [0, 0, 0, 1]})
    today = pd.DataFrame({"code": ["000001", "000002", "000003", "000004", "000005"],
                          "close": [11.0, 19.0, 5.5, 9.0, 30.0],
                          "total_mv": [1.1e9, 1.9e9, 3.3e9, 0.6e9, 1e8],
                          "is_st": [0, 0, 0, 1, 0]})
    listed = pd.Series({"000001": 30, "000002": 30, "000003": 30, "000004": 30})
    ret, listed_today = mc.continue_microcap(prev, today, listed, n=2, min_listed_days=20)
    # members: the 2 smallest eligible at t-1 (000004 is ST, 000005 not listed yet): 000001, 000002
    assert ret == pytest.approx((0.10 + -0.05) / 2)
    assert listed_today.to_dict() == {"000001": 31, "000002": 31, "000003": 31, "000004": 31, "000005": 1}
