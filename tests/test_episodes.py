"""Drawdown and rotation episodes: hand-computed fixtures, incremental = full, real Wind data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signals.episodes import drawdown_episodes, rotation_episodes

D = dt.date


def series(values, start="2024-01-01"):
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)), dtype=float)


def test_drawdown_episode_by_hand():
    #          peak=100 (d1)   trough 85 (d4)   back to 100 on d6 -> recovery
    s = series([90, 100, 95, 88, 85, 97, 100, 120, 110])
    [ep] = drawdown_episodes(s, 0.10)
    assert (ep.peak, ep.trough, ep.recovery) == (D(2024, 1, 2), D(2024, 1, 5), D(2024, 1, 9))
    assert ep.depth == pytest.approx(85 / 100 - 1)  # -15%
    assert ep.threshold_day == D(2024, 1, 4)  # 88/100 - 1 = -12% first reaches -10%
    # 120 -> 110 is only -8.3%: not an episode


def test_open_episode_and_threshold():
    s = series([100, 91, 89.9, 95])
    [ep] = drawdown_episodes(s, 0.10)
    assert ep.recovery is None and ep.trough == D(2024, 1, 3)
    assert ep.depth == pytest.approx(-0.101)
    assert drawdown_episodes(s, 0.20) == []


def test_nan_closes_are_skipped():
    s = series([100, np.nan, 80, np.nan, 101])
    [ep] = drawdown_episodes(s, 0.10)
    assert ep.trough == D(2024, 1, 3) and ep.recovery == D(2024, 1, 5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(50, 150), min_size=2, max_size=120), st.integers(1, 119))
def test_drawdown_episodes_are_point_in_time(values, cut):
    """Episodes computed on a prefix are the full result's, truncated (open ones still open)."""
    s = series(values)
    cut = min(cut, len(s) - 1)
    full = drawdown_episodes(s, 0.10)
    part = drawdown_episodes(s.iloc[: cut + 1], 0.10)
    last = s.index[cut].date()
    for p in part:
        f = next(e for e in full if e.peak == p.peak)
        if p.recovery is not None:
            assert p == f
        else:
            assert f.recovery is None or f.recovery > last
    for e in full:
        assert e.depth <= -0.10
        assert e.peak < e.trough and (e.recovery is None or e.trough < e.recovery)


def test_rotation_spells_by_hand():
    """Without merging and without a minimum length: every spell, as before issue 14."""
    cond = series([0, 1, 1, 0, 1], "2024-01-01").astype(bool)
    excess = series([0.05, 0.12, 0.15, 0.02, 0.11])
    theme = pd.Series(["a", "b", "c", "a", "d"], index=cond.index)
    close = series([100, 98, 95, 97, 96])
    first, second = rotation_episodes(cond, excess, theme, close, merge_gap=0, min_days=1)
    assert (first.start, first.end, first.theme) == (D(2024, 1, 2), D(2024, 1, 3), "c")
    assert first.theme_excess_peak == pytest.approx(0.15)
    assert first.microcap_drawdown == pytest.approx(95 / 100 - 1)  # from the day before the spell
    assert second.end is None and second.last_day == D(2024, 1, 5)  # still holds on the last day
    assert second.microcap_drawdown == pytest.approx(96 / 97 - 1)
    # with the defaults (merge gaps of up to 2 days): one spell, open (within 2 days of the end)
    [merged] = rotation_episodes(cond, excess, theme, close)
    assert (merged.start, merged.end, merged.last_day) == (D(2024, 1, 2), None, D(2024, 1, 5))


def test_rotation_defaults_are_documented_constants():
    from signals import episodes

    assert (episodes.ROTATION_MERGE_GAP_DAYS, episodes.ROTATION_MIN_DAYS,
            episodes.ROTATION_THEME_MIN_EXCESS) == (2, 5, 0.05)


# flags of the rotation condition -> (first, last) positions of each episode, last None = open
# (defaults: merge gaps of up to 2 days, finished episodes of at least 5 days)
@pytest.mark.parametrize("name,flags,expected", [
    ("a one-day rotation is no episode", "0100000", []),
    ("a two-day lapse is merged", "1110110000", [(0, 5)]),
    ("a three-day lapse splits", "1111100011111000", [(0, 4), (8, 12)]),
    ("short spells with long lapses are dropped", "1100011000", []),
    ("exactly five days is an episode", "11111000", [(0, 4)]),
    ("four days is not", "11110000", []),
    ("an open spell is kept whatever its length", "00001", [(4, None)]),
    ("a lapse of two days at the end: still open", "01100", [(1, None)]),
    ("a lapse of three days at the end: finished, short", "011000", []),
    ("three one-day blips a day apart make one episode", "1010100000", [(0, 4)]),
])
def test_rotation_merge_and_minimum_length(name, flags, expected):
    cond = series([int(c) for c in flags]).astype(bool)
    nan = series([float("nan")] * len(flags))
    got = rotation_episodes(cond, nan, pd.Series(None, index=cond.index, dtype=object),
                            series([100.0] * len(flags)))
    days = list(cond.index.date)
    assert [(e.start, e.end) for e in got] == [
        (days[a], None if b is None else days[b]) for a, b in expected], name


@pytest.mark.parametrize("name,peak_excess,theme", [
    ("a theme well ahead of the market is named", 0.12, "930713"),
    ("at the minimum it is named", 0.05, "930713"),
    ("small excess (large-cap branch): no leading theme", 0.03, None),
    ("negative excess: no leading theme", -0.04, None),
])
def test_rotation_theme_named_only_when_well_ahead(name, peak_excess, theme):
    cond = series([1, 1, 1, 1, 1, 0, 0, 0]).astype(bool)
    excess = series([peak_excess - d for d in (0.01, 0, 0.02, 0.03, 0.04)] + [0, 0, 0])
    themes = pd.Series(["930713"] * 8, index=cond.index, dtype=object)
    [ep] = rotation_episodes(cond, excess, themes, series([100.0] * 8))
    assert ep.theme == theme, name
    assert ep.theme_excess_peak == pytest.approx(peak_excess)


def test_cycle_episodes_incremental_equal_full_recompute(tmp_path, default_config):
    """The daily cycle updates episodes incrementally; the result equals a full recompute."""
    from monitor.daemon import Service
    from storage import episodes, observations
    from tests.conftest import RecordingNotifier

    service = Service(default_config, tmp_path / "ep.db", notifier=RecordingNotifier())
    days = service.calendar.days(D(2020, 11, 2), D(2021, 3, 31))
    for day in [D(2018, 1, 2), *days]:  # the first day loads all history up to it
        service.run_day(day)
    db = service.db
    stored = episodes.list_episodes(db, "drawdown")
    cal = service.calendar
    close = observations.load_frame(db, ["index.microcap.close"],
                                    cal.days(D(2018, 1, 2), days[-1]), days[-1])
    full = drawdown_episodes(close["index.microcap.close"], 0.10)
    assert [(e["peak"], e["trough"], e["end"]) for e in stored] == [
        (e.peak.isoformat(), e.trough.isoformat(), e.recovery.isoformat() if e.recovery else None)
        for e in full]
    rotation = episodes.list_episodes(db, "rotation")
    assert rotation, "the demo's Dec 2020 - Feb 2021 rotation must be stored"
    # full recompute of the rotation spells from the stored daily conditions
    import json

    rows = db.execute("SELECT date, context FROM signal_values WHERE signal = "
                      "'composite.conditions_active' ORDER BY date").fetchall()
    idx = pd.to_datetime([d for d, _ in rows])
    cond = pd.Series(["hot_theme_rotation" in json.loads(c) for _, c in rows], index=idx)
    hot = {d: (v, c) for d, v, c in db.execute(
        "SELECT date, value, context FROM signal_values WHERE signal = 'rotation.hot_theme_excess'")}
    excess = pd.Series([hot[d][0] for d, _ in rows], index=idx, dtype=float)
    theme = pd.Series([json.loads(hot[d][1]) if hot[d][1] else None for d, _ in rows], index=idx)
    full_rot = rotation_episodes(cond, excess, theme, close["index.microcap.close"])
    assert [(e["start"], e["end"]) for e in rotation] == [
        (e.start.isoformat(), e.end.isoformat() if e.end else None) for e in full_rot]
    service.close()


# -- real data: the Wind micro-cap index 8841431.WI, 2014-2023 ------------------------------------

# Computed by hand from the raw closes of wind_index_ohlc_turtle/index_ohlc_daily.csv:
# (peak day, peak close, trough day, trough close, recovery day)
HAND = [
    ("2015-06-12", 70063.7833, "2015-07-08", 36314.2109, "2015-11-20"),  # 36314.2109/70063.7833-1 = -48.17%
    ("2020-09-08", 132623.2273, "2021-02-08", 99413.4383, "2021-06-21"),  # -25.04% ('core assets' rotation)
    ("2022-03-03", 178389.9595, "2022-04-28", 137278.7909, "2022-07-19"),  # -23.05% (war, lockdowns)
    ("2023-03-22", 229035.5469, "2023-04-25", 202340.3594, "2023-06-13"),  # -11.66% (AI rally)
]


def test_wind_microcap_drawdown_episodes(real_data):
    raw = pd.read_csv(real_data / "wind_index_ohlc_turtle" / "index_ohlc_daily.csv")
    raw = raw[(raw["code"] == "8841431.WI") & (raw["date"] >= "2014-01-01") & (raw["date"] <= "2023-12-31")]
    close = pd.Series(raw["close"].to_numpy(), index=pd.to_datetime(raw["date"]))
    eps = drawdown_episodes(close, 0.10)
    print("\nWind micro-cap 8841431.WI drawdown episodes >= 10%, 2014-2023:")
    for e in eps:
        print(f"  peak {e.peak} trough {e.trough} recovery {e.recovery} depth {e.depth:.2%}")
    assert len(eps) == 11
    found = {e.peak.isoformat(): e for e in eps}
    for peak, peak_close, trough, trough_close, recovery in HAND:
        e = found[peak]
        assert (e.trough.isoformat(), e.recovery.isoformat()) == (trough, recovery)
        assert (e.peak_close, e.trough_close) == (peak_close, trough_close)
        assert e.depth == pytest.approx(trough_close / peak_close - 1, abs=1e-12)
    assert min(e.depth for e in eps) == pytest.approx(-0.4817, abs=1e-4)
