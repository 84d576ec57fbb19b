"""The built-in demo scenario: shape, units, point-in-time dating, and the scripted episodes.

The conditions are recomputed here with plain pandas, straight from SIGNALS.md (default
parameters), so that the scenario is checked independently of the ``signals`` package; one test
checks that the credit percentile computed here equals the app's ``credit.spread_pctile_10y``.

Shape: the yield curves run from ``demo.YIELD_HISTORY_START`` (2010), every other daily series
from ``demo.DEMO_START`` (2018). The conditions are judged over the 2018-2024 days only; the
yield pre-history just fills the ten-year percentile window.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

import signals.credit
from monitor.calendar import TradingCalendar
from monitor.sources import demo
from signals.registry import FAMILY_PARAMS

THEMES = ("930713", "H30184", "931151", "600519")
INDICES = ("all_a", "csi300", "csi500", "csi1000", "csi2000")
DAILY_SERIES = (
    [f"index.{i}.{field}" for i in INDICES for field in ("close", "amount")]
    + ["index.microcap.close"]
    + [f"theme.{t}.{field}" for t in THEMES for field in ("close", "amount")]
)
YIELD_SERIES = [
    f"yield.{curve}.{tenor}" for curve in ("gov", "credit") for tenor in ("1y", "3y", "5y")
]
FUND_SERIES = ("funds.smallcap_count", "funds.smallcap_share_mean", "funds.smallcap_value_total")

# Plausible ranges in canonical units: points, yuan, percent, fraction, count.
RANGES = {
    "index.all_a.close": (2500, 9000),
    "index.csi300.close": (2000, 7000),
    "index.csi500.close": (3000, 11000),
    "index.csi1000.close": (3000, 12000),
    "index.csi2000.close": (1000, 5000),
    "index.microcap.close": (2500, 40000),
    "index.all_a.amount": (3e11, 3e12),
    "index.csi300.amount": (5e10, 8e11),
    "index.csi500.amount": (5e10, 5e11),
    "index.csi1000.amount": (5e10, 5e11),
    "index.csi2000.amount": (4e10, 4e11),
    "theme.600519.close": (500, 3500),
    "theme.600519.amount": (1e9, 5e10),
    "funds.smallcap_count": (50, 2000),
    "funds.smallcap_share_mean": (0.30, 0.70),
    "funds.smallcap_value_total": (5e10, 1e12),
}


# ---------------------------------------------------------------------------------------------
# Helpers: the SIGNALS.md conditions in plain pandas
# ---------------------------------------------------------------------------------------------
def pct_rank(s: pd.Series, window: int | None, min_periods: int) -> pd.Series:
    """Fraction of the trailing values (today included) that are <= today's value."""
    roll = s.rolling(window, min_periods=min_periods) if window else s.expanding(min_periods)
    return roll.apply(lambda a: (a <= a[-1]).mean(), raw=True)


# The credit percentile: 2,520 trading days (ten years), computed once 80% of them exist.
PCTILE_DAYS = 2520
PCTILE_MIN_DAYS = 2016


def wide_daily(frame: pd.DataFrame, since: dt.date = demo.DEMO_START) -> pd.DataFrame:
    """Daily series, one column each, on the trading days from ``since`` (default: the 2018-2024
    scenario; pass ``demo.YIELD_HISTORY_START`` for the yields' pre-history too)."""
    daily = frame[~frame["series"].str.startswith("funds.") & (frame["date"] >= since)]
    return daily.pivot(index="date", columns="series", values="value").sort_index()


def credit_spread(frame: pd.DataFrame) -> pd.Series:
    """AAA MTN 3y - treasury 3y in bp, over the whole yield history (2010-2024)."""
    w = wide_daily(frame, demo.YIELD_HISTORY_START)
    return (w["yield.credit.3y"] - w["yield.gov.3y"]) * 100


def conditions(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one boolean column per scripted condition, indexed by trading day."""
    w = wide_daily(frame)
    ret = lambda name, n: w[f"{name}.close"] / w[f"{name}.close"].shift(n) - 1  # noqa: E731
    out = pd.DataFrame(index=w.index)

    # 1. Hot-theme rotation.
    hot = pd.concat([ret(f"theme.{t}", 20) - ret("index.all_a", 20) for t in THEMES], axis=1)
    microcap_excess_10d = ret("index.microcap", 10) - ret("index.all_a", 10)
    out["hot_theme_rotation"] = (hot.max(axis=1) >= 0.10) & (microcap_excess_10d <= -0.03)

    # 2. Market stress with liquidity drain.
    amount = w["index.all_a.amount"]
    amount_ratio = amount.rolling(20).mean() / amount.rolling(120).mean()
    out["market_stress"] = (ret("index.all_a", 20) <= -0.08) & (amount_ratio <= 0.75)

    # 3. Credit spread: low base, widening from a low base, on the ten-year percentile. The
    # spread, its change and its percentile run over the whole yield history (from 2010), then
    # are cut to the scenario's days.
    spread = credit_spread(frame)
    spread_pctile = pct_rank(spread, PCTILE_DAYS, PCTILE_MIN_DAYS)
    low_base = spread_pctile <= 0.10
    widening = (spread - spread.shift(20) >= 15) & (spread_pctile.shift(60) <= 0.20)
    out["credit_low_base"] = low_base.reindex(w.index)
    out["credit_widening"] = widening.reindex(w.index)

    # 4. CSI 2000 turnover share: crowded, exodus.
    share_20d = (w["index.csi2000.amount"] / amount).rolling(20).mean()
    out["turnover_crowding"] = pct_rank(share_20d, 250, 250) >= 0.95
    out["turnover_exodus"] = share_20d <= 0.85 * share_20d.rolling(60).max()

    # 5. Volatility spike.
    vol = w["index.microcap.close"].pct_change().rolling(20).std() * np.sqrt(252)
    out["volatility_spike"] = vol / vol.rolling(120).median() >= 1.5

    # 6. Fund allocation falling, known from each report's available_at until the next one's.
    out["allocation_falling"] = allocation_falling(frame).reindex(w.index).fillna(False)
    return out.fillna(False).astype(bool)


def allocation_falling(frame: pd.DataFrame) -> pd.Series:
    """Point-in-time *allocation falling* (share mean -3 points or value -10%), per trading day."""
    funds = frame[frame["series"].str.startswith("funds.")]
    reports = funds.pivot(index="date", columns="series", values="value").sort_index()
    available = funds.groupby("date")["available_at"].max().sort_index()
    falling = (reports["funds.smallcap_share_mean"].diff() <= -0.03) | (
        reports["funds.smallcap_value_total"].pct_change() <= -0.10
    )
    known = pd.Series(falling.to_numpy(), index=available.to_numpy())
    days = pd.Index(sorted(frame.loc[~frame["series"].str.startswith("funds."), "date"].unique()))
    return known.reindex(days.union(known.index)).ffill().reindex(days).fillna(False).astype(bool)


def runs(flags: pd.Series) -> list[tuple[dt.date, dt.date, int]]:
    """Return the runs of consecutive True values as (first day, last day, length)."""
    group = (flags != flags.shift()).cumsum()
    out = []
    for _, run in flags[flags].groupby(group[flags]):
        out.append((run.index[0], run.index[-1], len(run)))
    return out


def drawdown_episodes(close: pd.Series, depth: float = 0.10) -> list[dict]:
    """Peak -> trough -> recovery (close back above the peak) for every decline >= ``depth``."""
    episodes, peak_day, peak, trough = [], close.index[0], close.iloc[0], close.iloc[0]
    for day, value in close.items():
        if value > peak:
            if peak and trough <= peak * (1 - depth):
                episodes.append({"peak": peak_day, "depth": trough / peak - 1, "recovered": day})
            peak_day, peak, trough = day, value, value
        trough = min(trough, value)
    if trough <= peak * (1 - depth):
        episodes.append({"peak": peak_day, "depth": trough / peak - 1, "recovered": None})
    return episodes


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return demo.generate()


@pytest.fixture(scope="module")
def flags(frame) -> pd.DataFrame:
    return conditions(frame)


def test_deterministic_for_a_seed(frame):
    pd.testing.assert_frame_equal(demo.generate(), frame)
    assert not demo.generate(seed=1).equals(frame)


def test_columns_and_types(frame):
    assert list(frame.columns) == ["date", "series", "value", "available_at"]
    assert all(type(d) is dt.date for d in frame["date"])
    assert all(type(d) is dt.date for d in frame["available_at"])
    assert frame["value"].dtype == np.float64
    assert frame["value"].notna().all()
    keys = list(zip(frame["series"], frame["date"], strict=True))
    assert keys == sorted(keys)


def test_all_series_present(frame):
    assert set(frame["series"]) == set(DAILY_SERIES) | set(YIELD_SERIES) | set(FUND_SERIES)


def test_daily_series_cover_every_trading_day_once(frame):
    calendar = TradingCalendar()
    days = calendar.days(demo.DEMO_START, demo.DEMO_END)
    yield_days = calendar.days(demo.YIELD_HISTORY_START, demo.DEMO_END)
    assert yield_days[0] == demo.YIELD_HISTORY_START == dt.date(2010, 1, 4)
    assert not frame.duplicated(["series", "date"]).any()
    for name in DAILY_SERIES + YIELD_SERIES:
        rows = frame[frame["series"] == name]
        expected = yield_days if name in YIELD_SERIES else days
        assert list(rows["date"]) == expected, name
        assert (rows["available_at"] == rows["date"]).all(), name


def test_yield_history_does_not_perturb_other_series(frame, monkeypatch):
    """The yields draw their noise last, so the length of their pre-history changes no other
    series (closes, amounts, fund reports)."""
    monkeypatch.setattr(demo, "YIELD_HISTORY_START", demo.DEMO_START)
    short = demo.generate()
    others = ~frame["series"].str.startswith("yield.")
    pd.testing.assert_frame_equal(
        short[~short["series"].str.startswith("yield.")].reset_index(drop=True),
        frame[others].reset_index(drop=True),
    )
    assert short.loc[short["series"].str.startswith("yield."), "date"].min() == demo.DEMO_START


def test_units_and_ranges(frame):
    by_series = frame.groupby("series")["value"]
    for name, (lo, hi) in RANGES.items():
        values = by_series.get_group(name)
        assert values.between(lo, hi).all(), (name, values.min(), values.max())
    closes = frame[frame["series"].str.endswith(".close")]
    assert (closes["value"] > 0).all()
    amounts = frame[frame["series"].str.endswith(".amount")]
    assert (amounts["value"] >= 1e9).all(), "amounts must be in yuan"
    w = wide_daily(frame)
    # Typical levels in yuan: whole market ~1e12, CSI 2000 around 10-15% of it in normal times.
    assert 7e11 <= w["index.all_a.amount"].median() <= 1.3e12
    share = w["index.csi2000.amount"] / w["index.all_a.amount"]
    assert 0.10 <= share.median() <= 0.15
    full = wide_daily(frame, demo.YIELD_HISTORY_START)
    for tenor in ("1y", "3y", "5y"):
        gov, credit = full[f"yield.gov.{tenor}"], full[f"yield.credit.{tenor}"]
        assert gov.between(1.0, 5.0).all(), "yields are in percent (CGB 5y ~4.6% at the 2013 peak)"
        assert gov.loc[demo.DEMO_START :].between(1.0, 4.5).all()
        spread = (credit - gov) * 100
        assert spread.between(20, 190).all(), "AAA MTN spread in bp"
        assert spread.loc[demo.DEMO_START :].between(20, 150).all()
    spread = credit_spread(frame)
    # ChinaBond AAA MTN 3y - CGB 3y: ~90-160 bp in 2010-2014, ~60-100 bp in 2016-2017.
    assert spread.between(40, 170).all()
    assert spread.loc[: dt.date(2014, 12, 31)].between(85, 170).all()
    assert spread.loc[demo.DEMO_START :].between(40, 130).all()


def test_point_in_time_dating(frame):
    assert (frame["available_at"] >= frame["date"]).all()
    calendar = TradingCalendar()
    funds = frame[frame["series"].isin(FUND_SERIES)]
    assert len(funds) == 3 * 28  # 2018-Q1 .. 2024-Q4
    for row in funds.itertuples():
        quarter_end = (pd.Timestamp(row.date) + pd.offsets.QuarterEnd(0)).date()
        assert row.date == calendar.last_on_or_before(quarter_end)
        assert calendar.is_trading_day(row.available_at)
        lag = (row.available_at - quarter_end).days
        assert 30 <= lag <= 40, (row.series, row.date, row.available_at)


def test_window_is_a_slice_of_the_full_scenario(frame):
    start, end = dt.date(2022, 1, 1), dt.date(2022, 12, 31)
    window = demo.generate(start=start, end=end)
    expected = frame[(frame["date"] >= start) & (frame["date"] <= end)].reset_index(drop=True)
    pd.testing.assert_frame_equal(window, expected)
    with pytest.raises(ValueError):
        demo.generate(start=dt.date(2017, 1, 3))


SCRIPTED = (
    "hot_theme_rotation",
    "market_stress",
    "credit_widening",
    "turnover_crowding",
    "turnover_exodus",
    "volatility_spike",
    "allocation_falling",
)


@pytest.mark.parametrize("kind", SCRIPTED)
def test_each_condition_fires_in_a_run_and_is_mostly_calm(flags, kind):
    longest = max((length for *_, length in runs(flags[kind])), default=0)
    assert longest >= 5, kind
    assert flags[kind].mean() <= 0.20, (kind, flags[kind].mean())


def test_episodes_are_described():
    for e in demo.EPISODES:
        assert set(e) == {"kind", "start", "end", "description"}
        assert e["kind"] in SCRIPTED
        assert demo.DEMO_START <= e["start"] <= e["end"] <= demo.DEMO_END
        assert e["description"]
    assert {e["kind"] for e in demo.EPISODES} == set(SCRIPTED)


@pytest.mark.parametrize("kind", SCRIPTED)
def test_condition_runs_belong_to_scripted_episodes(flags, kind):
    """Every run of two days or more (long enough to fire an alert) overlaps an episode of its
    kind, allowing 45 days for the trailing windows; every episode shows its condition."""
    slack = dt.timedelta(days=45)
    episodes = [e for e in demo.EPISODES if e["kind"] == kind]
    for first, last, length in runs(flags[kind]):
        if length < 2:
            continue  # a one-day blip of the random noise
        assert any(first <= e["end"] + slack and last >= e["start"] for e in episodes), (
            kind,
            first,
            last,
        )
    for e in episodes:
        inside = flags[kind][(flags.index >= e["start"]) & (flags.index <= e["end"] + slack)]
        assert inside.any(), (kind, e["start"])


def test_credit_percentile_matches_the_app(frame):
    """The percentile used here is the app's ``credit.spread_pctile_10y`` (and its 60-day lag)
    with the default parameters, over the same 2010-2024 history."""
    params = FAMILY_PARAMS["credit"]
    assert params["pctile_days"] == PCTILE_DAYS
    assert math.ceil(0.8 * PCTILE_DAYS) == PCTILE_MIN_DAYS
    w = wide_daily(frame, demo.YIELD_HISTORY_START)
    app = signals.credit.spread_pctile_10y(w, tenor="3y", pctile_days=params["pctile_days"])
    app_lag = signals.credit.spread_pctile_10y_lag60(
        w, tenor="3y", pctile_days=params["pctile_days"], lag_days=params["lag_days"]
    )
    ours = pct_rank(credit_spread(frame), PCTILE_DAYS, PCTILE_MIN_DAYS)
    pd.testing.assert_series_equal(ours, app, check_names=False, atol=1e-12)
    pd.testing.assert_series_equal(ours.shift(60), app_lag, check_names=False, atol=1e-12)
    # The 2010-2017 pre-history makes the percentile defined from spring 2018 on.
    assert app.first_valid_index() <= dt.date(2018, 4, 30)
    assert app.loc[app.first_valid_index() :].notna().all()


def test_credit_spread_low_base_in_late_2023_only(frame, flags):
    """Against ten years of history the late-2023 spread is the floor: a low base for weeks in
    late 2023 (and only then), rare over 2018-2024, then widening from it around January 2024."""
    spread = credit_spread(frame)
    assert dt.date(2023, 9, 1) <= spread.idxmin() <= dt.date(2023, 12, 31), spread.idxmin()
    late_2023 = (dt.date(2023, 9, 1), dt.date(2023, 12, 31))
    low = runs(flags["credit_low_base"])
    assert any(first <= late_2023[1] and last >= late_2023[0] and n >= 5 for first, last, n in low)
    assert flags["credit_low_base"].mean() <= 0.10
    for first, last, _ in low:
        assert dt.date(2023, 9, 1) <= first and last <= dt.date(2024, 1, 31), (first, last)
    wide = runs(flags["credit_widening"])
    assert any(
        first <= dt.date(2024, 1, 31) and last >= dt.date(2023, 12, 18) and n >= 5
        for first, last, n in wide
    )
    for first, last, _ in wide:
        assert dt.date(2023, 12, 18) <= first and last <= dt.date(2024, 2, 29), (first, last)


def test_fund_share_mean_falls_three_points_at_least_once(frame):
    share = frame[frame["series"] == "funds.smallcap_share_mean"].set_index("date")["value"]
    assert (share.diff() <= -0.03).any()


def test_microcap_drawdowns_recover(frame):
    close = wide_daily(frame)["index.microcap.close"]
    recovered = [e for e in drawdown_episodes(close) if e["recovered"] is not None]
    assert len(recovered) >= 2
    assert min(e["depth"] for e in drawdown_episodes(close)) <= -0.25, "the 2024 crash"


def test_microcap_outperforms_with_higher_volatility(frame):
    w = wide_daily(frame)
    r = np.log(w[["index.microcap.close", "index.all_a.close"]]).diff().dropna()
    vol = r.std() * np.sqrt(252)
    assert 0.15 <= vol["index.all_a.close"] <= 0.24
    assert vol["index.microcap.close"] >= vol["index.all_a.close"] * 1.2
    assert r["index.microcap.close"].sum() > r["index.all_a.close"].sum() + 0.3
