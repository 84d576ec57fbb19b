"""Backtest core: simulation = the cycle, hand-computed scores (crediting, precision, chance
baselines), sweeps, calibration aimed at the labels without look-ahead, and property tests of
the invariants against a literal implementation of the definitions."""

from __future__ import annotations

import datetime as dt
import math
import time
import tomllib
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.alerting import expr, lifecycle, rules
from monitor.alerting.advance import advance
from monitor.analysis import backtest as bt
from monitor.config import Config
from signals.episodes import DrawdownEpisode, drawdown_episodes
from tests.conftest import CLASSIC_CONFIG, config_from

# --------------------------------------------------------------------------- helpers

TWO_RULES = """
[[rules]]
name = "volatility_spike"
when = "microcap.vol_spike >= 1.5"
explain = "x"

[[rules]]
name = "market_stress"
severity = "critical"
when = "market.return_20d <= -0.08"
for_days = 2
explain = "y"
"""

N = 150
IDX = pd.bdate_range("2024-01-01", periods=N)
SPIKES = [0, 10, 30, 31, 47, 57, 59, 70, 105, 135]  # days with vol_spike >= 1.5
STRESS = [44, 45, 46]  # days with return_20d <= -0.08


def hand_values() -> pd.DataFrame:
    vol = np.ones(N)
    vol[SPIKES] = 2.0
    ret = np.zeros(N)
    ret[:20] = np.nan  # no data for the first 20 days
    ret[STRESS] = -0.10
    return pd.DataFrame({"microcap.vol_spike": vol, "market.return_20d": ret}, index=IDX)


def hand_close() -> pd.Series:
    """Flat 100; E1: peak day 40 -> trough 80 on day 50 -> back at 100 on day 60;
    E2: peak day 100 -> trough 88 on day 106 -> back at 100 on day 112."""
    c = np.full(N, 100.0)
    c[41:51] = [97, 95, 93, 91, 88, 86, 85, 84, 82, 80]  # half of -20% (<= 90) first on day 45
    c[51:60] = [82, 84, 86, 88, 90, 92, 94, 96, 98]
    c[101:107] = [98, 95, 92, 90, 89, 88]  # half of -12% (<= 94) first on day 103
    c[107:112] = [90, 93, 95, 97, 99]
    return pd.Series(c, index=IDX)


def day(i: int) -> str:
    return IDX[i].date().isoformat()


def reference_simulation(config: Config, values: pd.DataFrame) -> tuple[list[dict], dict[str, list[bool]]]:
    """The cycle's path: rules.evaluate on each day's dict, then advance (as monitor.cycle)."""
    states = {r.name: lifecycle.AlertState() for r in config.rules}
    events, firing = [], {r.name: [] for r in config.rules}
    for ts, row in values.iterrows():
        d = pd.Timestamp(ts).date().isoformat()
        today = {k: (None if v is None or v != v else float(v)) for k, v in row.items()}
        for rule in config.rules:
            ev = rules.evaluate(rule, today)
            prev = states[rule.name]
            new, event, _ = advance(rule, ev, prev, d)
            if event:
                events.append({k: event[k] for k in ("rule", "date", "event", "from_state",
                                                     "to_state", "severity")})
            states[rule.name] = new
            firing[rule.name].append(new.state == lifecycle.FIRING)
    return events, firing


# --------------------------------------------------------------------------- simulation


def test_simulate_hand_events():
    config = config_from(TWO_RULES)
    sim = bt.simulate_full(config, hand_values())
    vs = [(e["date"], e["event"]) for e in sim.events if e["rule"] == "volatility_spike"]
    expected = []
    for start in (0, 10, 30, 47, 57, 59, 70, 105, 135):
        end = start + 2 if start == 30 else start + 1  # 30 and 31 are both spike days
        expected += [(day(start), "firing"), (day(end), "resolved")]
    assert vs == expected
    ms = [(e["date"], e["event"], e["from_state"], e["to_state"], e["severity"])
          for e in sim.events if e["rule"] == "market_stress"]
    assert ms == [(day(0), "no_data", "inactive", "no_data", "critical"),
                  (day(20), "data_back", "no_data", "inactive", "critical"),
                  (day(44), "pending", "inactive", "pending", "critical"),
                  (day(45), "firing", "pending", "firing", "critical"),
                  (day(47), "resolved", "firing", "resolved", "critical")]
    # per day, rules in config order
    keys = [(e["date"], [r.name for r in config.rules].index(e["rule"])) for e in sim.events]
    assert keys == sorted(keys)
    assert sim.events[:2] == [
        {"rule": "volatility_spike", "date": day(0), "event": "firing", "from_state": "inactive",
         "to_state": "firing", "severity": "warning"},
        {"rule": "market_stress", "date": day(0), "event": "no_data", "from_state": "inactive",
         "to_state": "no_data", "severity": "critical"}]
    assert sim.firing_days("market_stress") == {IDX[45].date(), IDX[46].date()}
    assert sim.firing["volatility_spike"].sum() == len(SPIKES)
    assert list(np.flatnonzero(sim.fired["volatility_spike"])) == [0, 10, 30, 47, 57, 59, 70, 105, 135]
    assert bt.simulate(config, hand_values()) == sim.events


def test_simulate_equals_the_per_day_path_on_the_default_rules():
    config = Config.model_validate(tomllib.loads(CLASSIC_CONFIG.read_text()))
    rng = np.random.default_rng(7)
    names = sorted(set().union(*(r.names for r in config.rules)))
    n = 400
    base = {"microcap.drawdown": (-0.2, 0.0), "microcap.vol_spike": (0.8, 2.0),
            "regime.stress_prob": (0, 1), "credit.spread_chg_20d": (-20, 20)}
    data = {}
    for name in names:
        lo, hi = base.get(name, (-0.3, 1.0))
        # persistent regimes so that pending/firing/repeat/resolved all occur
        col = np.repeat(rng.uniform(lo, hi, n), rng.integers(1, 9, n))[:n]
        col[rng.random(n) < 0.05] = np.nan
        data[name] = col
    values = pd.DataFrame(data, index=pd.bdate_range("2019-01-01", periods=n))
    sim = bt.simulate_full(config, values)
    events, firing = reference_simulation(config, values)
    assert sim.events == events
    assert {e["event"] for e in events} >= {"pending", "firing", "repeat", "resolved", "cancelled",
                                            "no_data", "data_back"}
    for rule in config.rules:
        assert sim.firing[rule.name].tolist() == firing[rule.name]


def test_missing_column_is_no_data_and_index_must_ascend():
    config = config_from(TWO_RULES)
    values = hand_values().drop(columns=["market.return_20d"])
    events = bt.simulate(config, values)
    assert [e["event"] for e in events if e["rule"] == "market_stress"] == ["no_data"]
    with pytest.raises(ValueError, match="ascending"):
        bt.simulate(config, hand_values().iloc[::-1])


def test_simulate_is_fast_enough():
    config = Config.model_validate(tomllib.loads(CLASSIC_CONFIG.read_text()))
    names = sorted(set().union(*(r.names for r in config.rules)))
    rng = np.random.default_rng(1)
    values = pd.DataFrame(rng.normal(0, 1, (2600, len(names))), columns=names,
                          index=pd.bdate_range("2014-01-01", periods=2600))
    started = time.perf_counter()
    bt.simulate_full(config, values)
    assert time.perf_counter() - started < 3.0  # typically ~0.15 s; guards against O(n^2)


# --------------------------------------------------------------------------- the cycle itself

CYCLE_FIRST = dt.date(2018, 1, 2)
CYCLE_LAST = dt.date(2018, 5, 15)  # 87 trading days of the demo scenario


@pytest.fixture(scope="module")
def cycle_db(demo_history):
    """The demo scenario run day by day by the daemon's cycle (``run_cycle``, through replay:
    conftest's ``demo_history``), with thresholds loosened so that every kind of event happens."""
    from monitor.config import load_config
    from storage.db import open_db

    config = bt.apply(load_config(CLASSIC_CONFIG), {
        "microcap_drawdown.microcap.drawdown": -0.05, "microcap_drawdown.for_days": 2,
        "microcap_drawdown.clear_days": 2,
        "hot_theme_rotation.rotation.largecap_minus_microcap_20d": 0.03,
        "turnover_exodus.turnover.csi2000_share_drop_60d": -0.008, "turnover_exodus.for_days": 1,
        "credit_low_base.credit.spread_pctile_10y": 0.18, "credit_low_base.for_days": 2,
    })
    db = open_db(demo_history(config, CYCLE_FIRST, CYCLE_LAST))
    rows = db.execute("SELECT signal, date, value FROM signal_values").fetchall()
    events = db.execute("SELECT rule, date, event, from_state, to_state, severity "
                        "FROM alert_events ORDER BY date, id").fetchall()
    db.close()
    frame = pd.DataFrame(rows, columns=["signal", "date", "value"]).pivot(
        index="date", columns="signal", values="value")
    return config, frame, events


def test_simulate_reproduces_the_cycle_events(cycle_db):
    config, frame, stored = cycle_db
    assert len(frame) == 87
    mine = [tuple(e[k] for k in ("rule", "date", "event", "from_state", "to_state", "severity"))
            for e in bt.simulate(config, frame)]
    assert mine == [tuple(r) for r in stored]
    kinds = {r[2] for r in stored}
    assert kinds >= {"pending", "cancelled", "firing", "repeat", "resolved", "no_data", "data_back"}


# --------------------------------------------------------------------------- scoring


def hand_episodes() -> list[DrawdownEpisode]:
    eps = drawdown_episodes(hand_close(), 0.10)
    assert [(e.peak, e.trough, e.recovery) for e in eps] == [
        (IDX[40].date(), IDX[50].date(), IDX[60].date()),
        (IDX[100].date(), IDX[106].date(), IDX[112].date())]
    assert [round(e.depth, 6) for e in eps] == [-0.2, -0.12]
    return eps


def rows_by_rule(rows):
    return {r.rule: r for r in rows}


def per_year(count: float, days: int) -> float:
    return count / (days / 252)


def test_score_by_hand():
    config = config_from(TWO_RULES)
    rows = rows_by_rule(bt.score(config, hand_values(), hand_episodes(), hand_close()))
    assert list(rows) == ["volatility_spike", "market_stress", bt.ANY]
    assert [r.kind for r in rows.values()] == ["warning", "warning", "union"]  # critical = warning

    vs = rows["volatility_spike"]
    # E1: peak 40, half-depth 45, trough 50; window [20, 50]: firings 30 and 47 -> earliest 30:
    #     lead_half 45 - 30 = 15 >= 3 (caught), lead_trough 20.
    # E2: peak 100, half-depth 103, trough 106; window [80, 106]: firing 105 -> lead_half -2 (warned
    #     but late, not caught), lead_trough 1.
    assert (vs.episodes, vs.caught, vs.warned, vs.recall) == (2, 1, 2, 0.5)
    assert [(d.warning, d.lead_trough, d.lead_half, d.caught, d.already_firing)
            for d in vs.episodes_detail] == [(day(30), 20, 15, True, False),
                                             (day(105), 1, -2, False, False)]
    assert [(d.peak, d.half_depth, d.trough) for d in vs.episodes_detail] == [
        (day(40), day(45), day(50)), (day(100), day(103), day(106))]
    # lead_half over warned episodes: [-2, 15] -> quartiles (linear) 2.25, 6.5, 10.75
    assert (vs.lead_q25, vs.lead_median, vs.lead_q75) == (2.25, 6.5, 10.75)
    assert vs.median_lead_trough == 10.5
    # firings 0, 10, 30, 47, 57, 59, 70, 105, 135; half-depth days 45 and 103, H = 40:
    #   hits (f <= h <= f + 40): 10, 30 (-> 45), 70 (-> 103)
    #   late (no hit, inside an episode [p, t]): 47 (E1), 105 (E2)
    #   false: 0 (45 is 45 days away), 57 and 59 (103 is 46 and 44 days away)
    #   unjudged: 135 (135 + 40 > 149)
    assert (vs.firings, vs.hits, vs.late, vs.false_alarms, vs.unjudged) == (9, 3, 2, 3, 1)
    assert vs.precision == pytest.approx(3 / 8)
    assert vs.days == 150
    assert vs.false_alarms_per_year == pytest.approx(per_year(3, 150))
    assert vs.share_in_alert == pytest.approx(10 / 150)
    # notified days: each firing and its resolution the next day (30/31 resolve on 32): 18 days
    assert vs.notifications_per_year == pytest.approx(per_year(18, 150))

    ms = rows["market_stress"]
    # fires on 45 (two stress days 44, 45), resolves on 47: E1 warned on its half-depth day
    assert (ms.episodes, ms.caught, ms.warned, ms.firings) == (2, 0, 1, 1)
    assert [(d.warning, d.lead_trough, d.lead_half, d.caught) for d in ms.episodes_detail] == [
        (day(45), 5, 0, False), (None, None, None, False)]
    assert (ms.hits, ms.late, ms.false_alarms, ms.unjudged, ms.precision) == (1, 0, 0, 0, 1.0)
    assert ms.share_in_alert == pytest.approx(2 / 150)
    assert ms.notifications_per_year == pytest.approx(per_year(2, 150))

    anyr = rows[bt.ANY]
    assert (anyr.episodes, anyr.caught, anyr.warned) == (2, 1, 2)
    assert [d.warning for d in anyr.episodes_detail] == [day(30), day(105)]
    # union firings: vs's nine and 45 -> a hit
    assert (anyr.firings, anyr.hits, anyr.late, anyr.false_alarms, anyr.unjudged) == (10, 4, 2, 3, 1)
    assert anyr.share_in_alert == pytest.approx(12 / 150)
    # notified days: vs's 18 and 45 (ms's resolution on 47 coincides with vs's firing)
    assert anyr.notifications_per_year == pytest.approx(per_year(19, 150))


def test_score_period_edges_and_min_depth():
    config = config_from(TWO_RULES)
    values, eps, close = hand_values(), hand_episodes(), hand_close()
    # start on day 25: E1's window [20, 50] starts before the period -> not counted; its
    # half-depth day still makes 30 a hit
    vs = rows_by_rule(bt.score(config, values, eps, close, start=IDX[25].date()))["volatility_spike"]
    assert (vs.days, vs.episodes, vs.caught, vs.warned) == (125, 1, 0, 1)
    assert (vs.firings, vs.hits, vs.late, vs.false_alarms, vs.unjudged) == (7, 2, 2, 2, 1)
    assert vs.share_in_alert == pytest.approx(8 / 125)
    # end on day 104: E2's trough (106) is after the period -> not counted; 70 still a hit (E2's
    # half-depth day 103), 0, 57, 59 false
    vs = rows_by_rule(bt.score(config, values, eps, close, end=IDX[104].date()))["volatility_spike"]
    assert (vs.days, vs.episodes, vs.caught, vs.firings) == (105, 1, 1, 7)
    assert (vs.hits, vs.late, vs.false_alarms, vs.unjudged) == (3, 1, 3, 0)
    # only declines of at least 15%: E2 is no label, so 70 and 105 become false alarms
    vs = rows_by_rule(bt.score(config, values, eps, close, min_depth=0.15))["volatility_spike"]
    assert (vs.episodes, vs.caught, vs.hits, vs.late, vs.false_alarms, vs.unjudged) == (1, 1, 2, 1, 5, 1)
    # default min_depth comes from the config
    deep = config.model_copy(update={"episodes": config.episodes.model_copy(
        update={"drawdown_min_depth": 0.15})})
    assert bt.score(deep, values, eps, close) == bt.score(config, values, eps, close, min_depth=0.15)
    # shorter look-back: E1 window [35, 50] -> warned by 47 only, after its half-depth day
    vs = rows_by_rule(bt.score(config, values, eps, close, lookback_days=5))["volatility_spike"]
    assert [(d.warning, d.lead_trough, d.lead_half) for d in vs.episodes_detail] == [
        (day(47), 3, -2), (day(105), 1, -2)]
    assert vs.caught == 0
    # a larger MIN_LEAD: E1's 15 days no longer suffice
    assert rows_by_rule(bt.score(config, values, eps, close, min_lead_days=16))[
        "volatility_spike"].caught == 0
    with pytest.raises(ValueError, match="no trading day"):
        bt.score(config, values, eps, close, start=dt.date(2030, 1, 1))
    with pytest.raises(ValueError, match="draws"):
        bt.score(config, values, eps, close, draws=-1)
    with pytest.raises(ValueError, match="seed"):
        bt.score(config, values, eps, close, seed=-5)


def test_table_and_json():
    config = config_from(TWO_RULES)
    rows = bt.score(config, hand_values(), hand_episodes(), hand_close())
    text = bt.table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["rule", "caught", "≥3d", "chance"]
    assert len({len(line) for line in lines[:2]}) == 1
    assert "volatility_spike" in lines[2] and "1/2" in lines[2] and "5.04" in lines[2]
    assert "38% (3/8)" in lines[2] and "2.2/6.5/10.8" in lines[2]
    assert lines[4].startswith("any warning")
    # neither rule beats chance on two episodes: one sentence each, then the legend
    for name in ("volatility_spike", "market_stress", "any warning"):
        assert f"{name}: not shown to beat chance (p = " in text
    assert any(line.startswith("chance (p): mean caught") for line in lines)
    assert any(line.startswith("precision: ") for line in lines)
    assert "chance (p): mean" not in bt.table(rows, legend=False)
    import json

    data = json.loads(bt.to_json(rows))
    assert data[0]["rule"] == "volatility_spike" and data[0]["episodes_detail"][1]["lead_half"] == -2
    assert data[1]["episodes_detail"][1]["warning"] is None
    assert data[2]["rule"] == bt.ANY and data[2]["kind"] == "union"
    assert {"chance_mean", "p_value", "shift_mean", "shift_p", "precision", "hits", "late",
            "notifications_per_year", "lead_q25", "lead_median", "lead_q75"} <= set(data[0])
    records = bt.to_records(rows)
    assert records[0]["caught"] == 1 and "episodes_detail" not in records[0]
    assert [r["rule"] for r in records] == [r["rule"] for r in data]
    assert all(not isinstance(v, list | dict | tuple) for r in records for v in r.values())


def test_notifications_count_repeats():
    config = config_from("""
[[rules]]
name = "r"
when = "microcap.vol_spike >= 1.5"
repeat_every_days = 2
explain = "x"
""")
    vol = np.ones(N)
    vol[10:17] = 2.0  # fires on 10, repeats on 12, 14, 16, resolves on 17
    values = pd.DataFrame({"microcap.vol_spike": vol}, index=IDX)
    sim = bt.simulate_full(config, values)
    assert [(e["date"], e["event"]) for e in sim.events] == [
        (day(10), "firing"), (day(12), "repeat"), (day(14), "repeat"), (day(16), "repeat"),
        (day(17), "resolved")]
    assert list(np.flatnonzero(sim.notified["r"])) == [10, 12, 14, 16, 17]
    row = rows_by_rule(bt.score_simulation(sim, hand_episodes(), hand_close()))["r"]
    assert row.firings == 1  # repeats are no firings
    assert row.notifications_per_year == pytest.approx(per_year(5, 150))
    assert row.share_in_alert == pytest.approx(7 / 150)


# -- crediting: one firing per episode, alerts already firing at the peak

def crafted(closes: dict[int, float], n: int = N) -> pd.Series:
    """A flat close of 100 with the given days set."""
    c = np.full(n, 100.0)
    for i, v in closes.items():
        c[i] = v
    return pd.Series(c, index=IDX[:n])


def one_rule(spike_days: Sequence[int], n: int = N, **timing) -> tuple[Config, pd.DataFrame]:
    extra = "".join(f"\n{k} = {v}" for k, v in timing.items())
    config = config_from(f"""
[[rules]]
name = "r"
when = "microcap.vol_spike >= 1.5"{extra}
explain = "x"
""")
    vol = np.ones(n)
    vol[list(spike_days)] = 2.0
    return config, pd.DataFrame({"microcap.vol_spike": vol}, index=IDX[:n])


def overlapping_close() -> pd.Series:
    """E1: peak 40, slow fall to 80 on day 70 (half of -20%, <= 90, first on day 60), back at
    100 on 75; E2: peak 75, trough 85 on day 90 (half of -15%, <= 92.5, first on day 83), back
    at 100 on 95. E2's window [55, 90] overlaps E1's [20, 70] on [55, 70]."""
    days = {40 + i: 100 - 0.5 * i for i in range(1, 20)}  # 41..59: down to 90.5
    days.update({60 + i: 90.0 - i for i in range(11)})  # 60: 90, ..., 70: 80
    days.update({71: 84.0, 72: 88.0, 73: 92.0, 74: 96.0})
    days.update({75 + i: 100.0 - i for i in range(1, 16)})  # 76: 99, ..., 83: 92, ..., 90: 85
    days.update({91: 88.0, 92: 91.0, 93: 94.0, 94: 97.0})
    return crafted(days)


def test_one_firing_is_credited_to_one_episode_only():
    close = overlapping_close()
    eps = drawdown_episodes(close, 0.10)
    assert [(e.peak, e.trough) for e in eps] == [(IDX[40].date(), IDX[70].date()),
                                                 (IDX[75].date(), IDX[90].date())]
    assert [round(e.depth, 4) for e in eps] == [-0.2, -0.15]
    # one firing on day 57 lies in both windows: E1 (taken first) gets it, 60 - 57 = 3 days before
    # its half-depth day; E2 would have had 83 - 57 = 26 days but cannot reuse it
    config, values = one_rule([57])
    row = bt.score(config, values, eps, close)[0]
    assert [(d.half_depth, d.warning, d.lead_half, d.caught) for d in row.episodes_detail] == [
        (day(60), day(57), 3, True), (day(83), None, None, False)]
    assert (row.caught, row.warned) == (1, 1)
    # a second firing in the overlap is the next eligible one for E2
    config, values = one_rule([57, 62])
    row = bt.score(config, values, eps, close)[0]
    assert [(d.warning, d.lead_half) for d in row.episodes_detail] == [(day(57), 3), (day(62), 21)]
    assert (row.caught, row.warned) == (2, 2)


def test_an_alert_already_firing_at_the_peak_warns_from_its_firing_day():
    close = hand_close()
    # firing from day 5 until the clear condition holds on 48 (spikes 5..47): in state firing on
    # E1's peak (40), its spell started on day 5 - long before the window [20, 50]
    config, values = one_rule(range(5, 48))
    row = bt.score(config, values, hand_episodes(), close, draws=0)[0]
    first = row.episodes_detail[0]
    assert (first.warning, first.already_firing, first.lead_half, first.lead_trough, first.caught) == (
        day(5), True, 45 - 5, 50 - 5, True)
    assert row.episodes_detail[1].warning is None
    # one spell over both peaks: E2 cannot reuse its firing; a later firing in E2's window is taken
    config, values = one_rule([*range(5, 102), 104])
    row = bt.score(config, values, hand_episodes(), close, draws=0)[0]
    sim = bt.simulate_full(config, values)
    assert list(np.flatnonzero(sim.fired["r"])) == [5, 104]
    assert [(d.warning, d.already_firing) for d in row.episodes_detail] == [(day(5), True),
                                                                          (day(104), False)]
    # already firing at the peak takes precedence over an earlier firing in the window
    config, values = one_rule([22, 30, 31, 32, *range(35, 45)])
    row = bt.score(config, values, hand_episodes(), close, draws=0)[0]
    assert (row.episodes_detail[0].warning, row.episodes_detail[0].already_firing) == (day(35), True)


# -- chance baselines

GAPS = [150, 97, 180, 121, 163, 88, 140, 205, 110, 133, 170]
PEAKS = list(np.cumsum([60, *GAPS]))  # 12 irregularly spaced peaks


def synthetic_close(n: int = 2000, peaks: Sequence[int] = PEAKS) -> pd.Series:
    """Flat 100; each episode falls 1 point a day for 20 days (half-depth day p + 10, trough
    p + 20 at 80) and climbs back to 100 on p + 40."""
    c = np.full(n, 100.0)
    for p in peaks:
        c[p + 1:p + 21] = 100 - np.arange(1, 21)
        c[p + 21:p + 41] = 80 + np.arange(1, 21)
    return pd.Series(c, index=pd.bdate_range("2012-01-02", periods=n))


def spike_values(index: pd.Index, days: Iterable[int]) -> pd.DataFrame:
    vol = np.ones(len(index))
    vol[list(days)] = 2.0
    return pd.DataFrame({"microcap.vol_spike": vol}, index=index)


SPIKE = config_from("""
[[rules]]
name = "spike"
when = "microcap.vol_spike >= 1.5"
explain = "x"
""")


def test_firings_just_before_every_episode_beat_chance():
    # 6,000 days, the 12 episodes three times further apart
    peaks = list(np.cumsum([60, *(3 * g for g in GAPS)]))
    close = synthetic_close(6000, peaks)
    eps = drawdown_episodes(close, 0.10)
    assert len(eps) == 12 and [e.peak for e in eps] == [close.index[p].date() for p in peaks]
    values = spike_values(close.index, [p + 5 for p in peaks])  # 5 days before each half-depth
    row = bt.score(SPIKE, values, eps, close)[0]
    assert (row.episodes, row.caught, row.firings, row.hits) == (12, 12, 12, 12)
    assert (row.lead_q25, row.lead_median, row.lead_q75) == (5, 5, 5)
    assert row.p_value < 0.01 and row.shift_p < 0.01
    assert row.p_value == pytest.approx(1 / 1001)  # no draw of 1000 catches all 12
    assert row.chance_mean < 2 and row.shift_mean < 2
    assert "spike: " not in bt.table([row])  # beats chance: no sentence
    # The shift baseline has a floor: shifting the alerts by 1..2 days later or 1..25 days
    # earlier keeps each in its episode's catch window at least 3 days before the half-depth day,
    # so 27 of the n - 1 offsets catch all 12: shift_p ~ 27/(n - 1) at best (0.0045 here; 0.0135
    # on 2,000 days, where the random placement still gives p = 1/1001).
    close = synthetic_close(2000)
    row = bt.score(SPIKE, spike_values(close.index, [p + 5 for p in PEAKS]),
                   drawdown_episodes(close, 0.10), close)[0]
    assert row.caught == 12 and row.p_value < 0.01 and 0.005 < row.shift_p < 0.05


def test_firings_on_random_days_do_not_beat_chance():
    close = synthetic_close()
    eps = drawdown_episodes(close, 0.10)
    ps, shift_ps = [], []
    for seed in range(8):
        days = np.random.default_rng(seed).choice(2000, size=12, replace=False)
        row = bt.score(SPIKE, spike_values(close.index, days), eps, close, draws=500)[0]
        ps.append(row.p_value)
        shift_ps.append(row.shift_p)
        assert 0 <= row.caught <= 12
    # p-values of a series without skill are spread over (0, 1]: none is convincing
    assert min(ps) > 0.05 and min(shift_ps) > 0.05
    assert np.mean(ps) > 0.3 and np.mean(shift_ps) > 0.3
    assert ps[0] > 0.1 and shift_ps[0] > 0.1  # the first seed, checked by hand: 0.31, 0.39


def test_baselines_are_deterministic_for_a_seed():
    config = config_from(TWO_RULES)
    args = (config, hand_values(), hand_episodes(), hand_close())
    assert bt.score(*args) == bt.score(*args) == bt.score(*args, seed=bt.SEED)
    other = bt.score(*args, seed=7)
    assert [r.chance_mean for r in other] != [r.chance_mean for r in bt.score(*args)]
    # a row's baseline does not depend on which other rows are scored
    sim = bt.simulate_full(config, hand_values())
    alone = bt.score_simulation(sim, hand_episodes(), hand_close(), rules=["volatility_spike"])
    assert alone[0] == bt.score(*args)[0]
    # no firings: chance 0, p 1
    quiet = bt.apply(config, {"volatility_spike.microcap.vol_spike": 9})
    row = rows_by_rule(bt.score(quiet, *args[1:]))["volatility_spike"]
    assert (row.firings, row.chance_mean, row.p_value, row.shift_mean, row.shift_p) == (0, 0, 1, 0, 1)
    # draws=0: no baselines
    row = bt.score(*args, draws=0)[0]
    assert (row.chance_mean, row.p_value, row.shift_mean, row.shift_p) == (None, None, None, None)


def test_baseline_draws_are_scored_like_the_real_series():
    """Replays the draws of both baselines with the same generators and scores each drawn series
    with the literal crediting rule (reference_credit)."""
    config = config_from(TWO_RULES)
    values, eps, close = hand_values(), hand_episodes(), hand_close()
    sim = bt.simulate_full(config, values)
    draws, seed = 300, 11
    for start in (None, IDX[10].date()):
        rows = rows_by_rule(bt.score_simulation(sim, eps, close, draws=draws, seed=seed,
                                                start=start))
        for name in ("volatility_spike", bt.ANY):
            fired, firing = series_of(sim, name)
            want = reference_baselines(name, fired, firing, close, eps, start, draws, seed)
            got = rows[name]
            assert (got.chance_mean, got.p_value, got.shift_mean, got.shift_p) == pytest.approx(want)


def test_kinds_state_and_info_rules_are_apart_from_any_warning():
    config = config_from(TWO_RULES + """
[[rules]]
name = "crowded"
severity = "info"
when = "microcap.vol_spike >= 1.5"
explain = "i"

[[rules]]
name = "drawdown"
severity = "critical"
when = "microcap.drawdown <= -0.1"
explain = "s"
""")
    assert [bt.rule_kind(r) for r in config.rules] == ["warning", "warning", "info", "state"]
    values = hand_values()
    values["microcap.drawdown"] = (hand_close() / hand_close().cummax() - 1).to_numpy()
    values.loc[IDX[120]:IDX[125], "microcap.drawdown"] = -0.5  # state firings outside any episode
    sim = bt.simulate_full(config, values)
    assert sim.kinds == {"volatility_spike": "warning", "market_stress": "warning",
                         "crowded": "info", "drawdown": "state"}
    rows = bt.score_simulation(sim, hand_episodes(), hand_close())
    assert [(r.rule, r.kind) for r in rows] == [
        ("volatility_spike", "warning"), ("market_stress", "warning"), (bt.ANY, "union"),
        ("drawdown", "state"), ("crowded", "info")]
    by = rows_by_rule(rows)
    assert by["drawdown"].firings == 3  # 45 (E1 at -12%), 104 (E2), 120
    # "any warning" is the union of the two warning rules only: the same as without the others
    only_warnings = rows_by_rule(bt.score(config_from(TWO_RULES), hand_values(), hand_episodes(),
                                          hand_close()))
    assert by[bt.ANY] == only_warnings[bt.ANY]
    text = bt.table(rows).splitlines()
    heading = text.index("state alerts (restate a drawdown under way; not warnings)")
    assert text[heading - 1].startswith("any warning") and text[heading + 1].startswith("drawdown")
    info = text.index('info rules (not part of "any warning")')
    assert text[info + 1].startswith("crowded") and info > heading


def test_scoring_with_baselines_is_fast():
    """12 rules x 1000 draws x 2 baselines over 2,500 days: well under 2 s (about 0.5 s)."""
    n = 2500
    rng = np.random.default_rng(3)
    idx = pd.bdate_range("2014-01-01", periods=n)
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.015, n))), index=idx)
    eps = drawdown_episodes(close, 0.10)
    config = config_from("".join(f"""
[[rules]]
name = "r{i}"
when = "microcap.vol_spike >= {1 + 0.1 * i}"
clear_when = "microcap.vol_spike < 1"
clear_days = 3
explain = "x"
""" for i in range(12)))
    values = pd.DataFrame({"microcap.vol_spike": np.repeat(rng.lognormal(0, 0.4, n // 5), 5)},
                          index=idx)
    sim = bt.simulate_full(config, values)
    assert len(eps) >= 6 and sim.fired.to_numpy().sum() > 500
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        rows = bt.score_simulation(sim, eps, close, draws=1000)
        best = min(best, time.perf_counter() - started)
    assert len(rows) == 13 and all(r.p_value is not None for r in rows)
    assert best < 2.0, best


# --------------------------------------------------------------------------- sweeps


def test_parse_sweep():
    s = bt.parse_sweep("volatility_spike.microcap.vol_spike=1.2:2.0:0.1")
    assert (s.rule, s.param, s.key) == ("volatility_spike", "microcap.vol_spike",
                                        "volatility_spike.microcap.vol_spike")
    assert s.values == (1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0)  # exact, HI included
    assert bt.parse_sweep("r.for_days=1:5:2").values == (1, 3, 5)
    assert bt.parse_sweep("r.repeat_every_days=0:1:1").values == (0, 1)
    assert bt.parse_sweep("r.x.y=-0.15:-0.05:0.05").values == (-0.15, -0.1, -0.05)
    assert bt.parse_sweep("r.x.y=1:1.05:0.1").values == (1.0,)
    assert len(bt.parse_sweep("r.x.y=0:0.995:0.005").values) == 200  # the most allowed


@pytest.mark.parametrize("text, fragment", [
    ("volatility_spike.for_days", "expected RULE.PARAM=LO:HI:STEP"),
    ("Volatility.for_days=1:2:1", "is not RULE.PARAM"),
    ("volatility_spike=1:2:1", "is not RULE.PARAM"),
    ("r.bad name=1:2:1", "PARAM 'bad name' is neither"),
    ("r.for_days=1:2", "range '1:2' must be LO:HI:STEP"),
    ("r.for_days=a:2:1", "LO 'a' is not a number"),
    ("r.x.y=1:nan:1", "HI 'nan' is not a number"),
    ("r.x.y=1:2:0", "STEP '0' must be positive"),
    ("r.x.y=1:2:-1", "STEP '-1' must be positive"),
    ("r.x.y=2:1:0.1", "HI '1' is below LO '2'"),
    ("r.x.y=0:1000:1", "1001 values; at most 200"),
    ("r.for_days=1:2:0.5", "for_days takes whole trading days"),
    ("r.clear_days=0:2:1", "clear_days must be at least 1"),
])
def test_parse_sweep_errors(text, fragment):
    with pytest.raises(ValueError) as info:
        bt.parse_sweep(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message and message.startswith("sweep ")


def test_replace_threshold():
    e = expr.parse("a.b >= 1.5 and (c.d <= -0.03 or not a.b > 1.5) or 1.5 <= a.b")
    out = bt.replace_threshold(e, "a.b", 1.7)
    assert str(out) == "a.b >= 1.7 and (c.d <= -0.03 or not a.b > 1.7) or 1.7 <= a.b"
    assert expr.parse(str(out)) == out
    assert str(bt.replace_threshold(e, "c.d", -0.2)).count("c.d <= -0.2") == 1
    assert bt.replace_threshold(e, "a.b", 1.5) == e
    with pytest.raises(ValueError, match="does not occur"):
        bt.replace_threshold(e, "x.y", 1)
    with pytest.raises(ValueError, match="compared with a signal"):
        bt.replace_threshold(expr.parse("a.b > c.d"), "a.b", 1)


def test_apply():
    config = Config.model_validate(tomllib.loads(CLASSIC_CONFIG.read_text()))
    new = bt.apply(config, {"volatility_spike.microcap.vol_spike": 1.8, "volatility_spike.for_days": 2,
                            "hot_theme_rotation.rotation.microcap_excess_10d": -0.05})
    assert new.rule("volatility_spike").when == "microcap.vol_spike >= 1.8"
    assert new.rule("volatility_spike").for_days == 2
    assert new.rule("volatility_spike").clear_when == "microcap.vol_spike < 1.2"  # untouched
    assert new.rule("hot_theme_rotation").when == (
        "rotation.hot_theme_excess >= 0.1 and rotation.microcap_excess_10d <= -0.05 or "
        "rotation.largecap_minus_microcap_20d >= 0.1")
    assert new.rule("volatility_spike").when_expr.evaluate({"microcap.vol_spike": 1.85}) is True
    assert config.rule("volatility_spike").when == "microcap.vol_spike >= 1.5"  # original unchanged
    with pytest.raises(ValueError, match="no rule named 'nope'"):
        bt.apply(config, {"nope.for_days": 1})
    with pytest.raises(ValueError, match="'market.return_20d' does not occur"):
        bt.apply(config, {"volatility_spike.market.return_20d": 1})
    with pytest.raises(ValueError, match="for_days"):
        bt.apply(config, {"volatility_spike.for_days": 0})


def test_sweep_grid():
    config = config_from(TWO_RULES)
    values, eps, close = hand_values(), hand_episodes(), hand_close()
    calls = []
    points = bt.sweep(config, values, eps, close,
                      [bt.parse_sweep("volatility_spike.microcap.vol_spike=1.5:2.5:1"),
                       bt.parse_sweep("market_stress.for_days=1:4:1")],
                      draws=200, on_point=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 8) for i in range(1, 9)]
    assert [p["params"] for p in points[:2]] == [
        {"volatility_spike.microcap.vol_spike": 1.5, "market_stress.for_days": 1},
        {"volatility_spike.microcap.vol_spike": 1.5, "market_stress.for_days": 2}]
    first = points[1]["rules"]
    assert list(first) == ["volatility_spike", "market_stress", bt.ANY]
    assert first["volatility_spike"]["caught"] == 1 and first["market_stress"]["warned"] == 1
    assert first["volatility_spike"]["false_alarms_per_year"] == pytest.approx(per_year(3, 150))
    assert {"chance_mean", "p_value", "shift_mean", "shift_p", "kind"} <= set(first[bt.ANY])
    # each point equals scoring its applied config directly (same draws and seed)
    for p in points:
        direct = bt.score(bt.apply(config, p["params"]), values, eps, close, draws=200)
        for row in direct:
            assert p["rules"][row.rule] == {k: getattr(row, k) for k in p["rules"][row.rule]}
    # vol_spike >= 2.5 never holds: nothing caught, no alert, no false alarm, chance 0, p 1
    never = points[4]["rules"]["volatility_spike"]
    assert (never["caught"], never["firings"], never["share_in_alert"]) == (0, 0, 0.0)
    assert (never["chance_mean"], never["p_value"]) == (0.0, 1.0)
    # market_stress needs 4 days: its 3 stress days never fire it
    assert points[3]["rules"]["market_stress"]["firings"] == 0
    text = bt.sweep_table(points)
    head = text.splitlines()[0]
    assert len(text.splitlines()) == 10
    for column in ("volatility_spike caught", "volatility_spike chance", "volatility_spike p",
                   "volatility_spike false/yr", "volatility_spike in alert", "any warning caught"):
        assert column in head


def test_sweep_checks_rule_and_signal():
    config = config_from(TWO_RULES)
    args = (config, hand_values(), hand_episodes(), hand_close())
    with pytest.raises(ValueError, match="no rule named 'other'"):
        bt.sweep(*args, [bt.parse_sweep("other.for_days=1:2:1")])
    with pytest.raises(ValueError, match="does not occur"):
        bt.sweep(*args, [bt.parse_sweep("volatility_spike.microcap.drawdown=-0.2:-0.1:0.1")])
    with pytest.raises(ValueError, match="grid points"):
        bt.sweep(*args, [bt.parse_sweep("volatility_spike.microcap.vol_spike=0:199:1"),
                         bt.parse_sweep("market_stress.market.return_20d=0:199:1")])


# --------------------------------------------------------------------------- calibrate


def calib_data(n: int = 1500, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    """Twelve irregular episodes in ``n`` days; ``microcap.vol_spike`` is noise in [0, 1] with
    2.0 five days before each half-depth day; ``market.return_20d`` is noise."""
    close = synthetic_close(n, [p for p in PEAKS if p + 40 < n])
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0, 1, n)
    vol[[p + 5 for p in PEAKS if p + 5 < n]] = 2.0
    values = pd.DataFrame({"microcap.vol_spike": vol, "market.return_20d": rng.normal(0, 0.05, n)},
                          index=close.index)
    return values, close


CALIB = """
[[rules]]
name = "volatility_spike"
when = "microcap.vol_spike >= 0.3"
clear_when = "microcap.vol_spike < 0.2"
explain = "Micro-cap volatility is 0.3 times its norm."

[[rules]]
name = "market_stress"
severity = "critical"
when = "market.return_20d <= -0.1"
for_days = 2
explain = "The market fell 10% in 20 days."

[[rules]]
name = "quiet"
when = "market.return_20d >= 0.05 and microcap.vol_spike > 0.9"
explain = "Calm and rising."
"""


def calibrated(text: str) -> dict[str, dict]:
    return {r["name"]: r for r in tomllib.loads(text)["rules"]}


def number(rule: dict) -> float:
    return expr.comparisons(expr.parse(rule["when"]))[0].right.value


def test_calibrate_maximises_caught_minus_false_alarms():
    config = config_from(CALIB)
    values, close = calib_data()
    until = values.index[1399].date()
    text = bt.calibrate(config, values, close, until, draws=200)
    rules = calibrated(text)
    # the tables replace the config's rules and validate
    replaced = Config.model_validate({**config.model_dump(), "rules": list(rules.values())})
    assert [r.name for r in replaced.rules] == ["volatility_spike", "market_stress", "quiet"]
    vs = rules["volatility_spike"]
    assert (vs["clear_when"], vs["for_days"], vs["severity"]) == ("microcap.vol_spike < 0.2", 1,
                                                                  "warning")
    # brute force over the same grid, scored on the same in-sample data: the chosen threshold
    # has the best caught - false alarms/yr (ties: fewer days in alert)
    sample, past = values.loc[:pd.Timestamp(until)], close.loc[:pd.Timestamp(until)]
    eps = drawdown_episodes(past, 0.10)
    data = sample["microcap.vol_spike"].to_numpy()
    grid = sorted({0.3} | {float(f"{q:.4g}") for q in np.quantile(data, np.arange(50, 100) / 100)})

    def key(v: float):
        row = bt.score(bt.apply(config, {"volatility_spike.microcap.vol_spike": v}), sample, eps,
                       past, draws=0)[0]
        return (row.caught - row.false_alarms_per_year, -row.share_in_alert), row

    scored = {v: key(v) for v in grid}
    best = max(scored.values(), key=lambda kr: kr[0])[0]
    chosen = number(vs)
    assert chosen in grid and scored[chosen][0] == best
    # 11 of the 12 peaks lie in the 1,500 days; 10 of them have their trough by `until`
    assert (scored[chosen][1].caught, scored[chosen][1].episodes) == (10, 10)
    assert "in sample, new: caught 10/10 (chance " in text
    assert chosen != 0.3 and scored[chosen][0] > scored[0.3][0]
    assert "(was 0.3): in-sample" in text and "quantile of 1400 values of microcap.vol_spike" in text
    assert vs["explain"] == f"Micro-cap volatility is {bt._plain(chosen)} times its norm."
    assert f"data up to {until.isoformat()} only (1400 trading days" in text
    assert "in sample, old: caught " in text and "false alarms/yr, in alert" in text
    # restricting the rules; a rule with too little data keeps its threshold
    only = calibrated(bt.calibrate(config, values, close, until, draws=10, rules=["market_stress"]))
    assert list(only) == ["market_stress"]
    short = bt.calibrate(config, values, close, values.index[199].date(), draws=10)
    assert calibrated(short)["volatility_spike"]["when"] == "microcap.vol_spike >= 0.3"
    assert "kept: only 200 in-sample values of microcap.vol_spike (fewer than 250)" in short
    # the current number is a candidate too: a threshold no quantile beats is kept (1.5 fires on
    # the ten pre-episode spikes only; every quantile is below 1 and adds noise firings)
    good = bt.apply(config, {"volatility_spike.microcap.vol_spike": 1.5})
    kept = bt.calibrate(good, values, close, until, draws=10, rules=["volatility_spike"])
    assert calibrated(kept)["volatility_spike"]["when"] == "microcap.vol_spike >= 1.5"
    assert "microcap.vol_spike >= 1.5 kept: no in-sample quantile of microcap.vol_spike scores " \
           "better" in kept
    with pytest.raises(ValueError, match="penalty"):
        bt.calibrate(config, values, close, until, penalty=-1)
    with pytest.raises(ValueError, match="no row"):
        bt.calibrate(config, values, close, dt.date(2000, 1, 3))
    with pytest.raises(KeyError):
        bt.calibrate(config, values, close, until, rules=["nope"])


def test_calibrate_penalty_trades_catches_for_false_alarms():
    config = config_from(CALIB)
    values, close = calib_data()
    until = values.index[-1].date()
    strict = calibrated(bt.calibrate(config, values, close, until, draws=10, penalty=100,
                                     rules=["volatility_spike"]))["volatility_spike"]
    lax = calibrated(bt.calibrate(config, values, close, until, draws=10, penalty=0,
                                  rules=["volatility_spike"]))["volatility_spike"]
    # with no penalty any threshold that catches everything ties: fewest days in alert wins,
    # i.e. the highest such threshold; a heavy penalty can only move it up
    assert number(strict) >= number(lax)


def test_calibrate_never_looks_after_until():
    config = config_from(CALIB)
    values, close = calib_data()
    until = values.index[1199].date()
    before = bt.calibrate(config, values, close, until, draws=100)
    # everything after `until` replaced by extreme values: a crash and wild signals
    wild_values = values.copy()
    wild_values.iloc[1200:] = wild_values.iloc[1200:] * 1000
    wild_values.iloc[1200::3] = np.nan
    wild_close = close.copy()
    wild_close.iloc[1200:] = 1.0
    assert bt.calibrate(config, wild_values, wild_close, until, draws=100) == before
    # and more rows appended after the end change nothing either
    extra_idx = pd.bdate_range(values.index[-1] + pd.Timedelta(days=1), periods=300)
    more_values = pd.concat([values, pd.DataFrame(
        {"microcap.vol_spike": 1e6, "market.return_20d": -5.0}, index=extra_idx)])
    more_close = pd.concat([close, pd.Series(0.5, index=extra_idx)])
    assert bt.calibrate(config, more_values, more_close, until, draws=100) == before
    # while a later `until` sees (and reports) the new data
    assert bt.calibrate(config, wild_values, wild_close, values.index[-1].date(), draws=100) != before


def test_restate_explain():
    cases = [
        # a fraction: stated as a percent, magnitude matched, same form kept
        ("The index is 10% below its peak.", ("microcap.drawdown", -0.10, -0.12),
         "The index is 12% below its peak.", []),
        ("The index is 10.0 % below its peak.", ("microcap.drawdown", -0.10, -0.3771),
         "The index is 37.71 % below its peak.", []),
        # a plain number (a ratio)
        ("Volatility is at least 1.5 times its norm, 1.5 x.", ("microcap.vol_spike", 1.5, 1.62),
         "Volatility is at least 1.62 times its norm, 1.62 x.", []),
        # numbers that are not the threshold stay; "Q1" and "2022" are no thresholds
        ("In Q1 2022 turnover fell 15% (in 60 days).", ("turnover.csi2000_share_drop_60d", -0.15,
                                                         -0.2),
         "In Q1 2022 turnover fell 20% (in 60 days).", []),
        # the text does not state the threshold
        ("Spreads sit in the bottom decile.", ("credit.spread_pctile_10y", 0.10, 0.04345),
         "Spreads sit in the bottom decile.", [0]),
        # 10 as a plain number is not "10%" of a fraction-unit signal... unless no percent is there
        ("Down 0.1 from the peak.", ("microcap.drawdown", -0.10, -0.12),
         "Down 0.12 from the peak.", []),
        # a change of sign cannot be restated
        ("Returns below 5%.", ("market.return_20d", -0.05, 0.01), "Returns below 5%.", [0]),
    ]
    for text, change, want, unstated in cases:
        assert bt.restate_explain(text, [change]) == (want, unstated), text
    # two thresholds, one stated
    assert bt.restate_explain("Falls 8% while turnover dries up.", [
        ("market.return_20d", -0.08, -0.1), ("market.amount_ratio_20_120", 0.75, 0.7)]) == (
        "Falls 10% while turnover dries up.", [1])
    # two changes claiming the same number with different new values: neither is rewritten
    assert bt.restate_explain("Both above 10%.", [
        ("rotation.hot_theme_excess", 0.1, 0.12), ("rotation.largecap_minus_microcap_20d", 0.1, 0.15)]
    ) == ("Both above 10%.", [0, 1])


def test_calibrate_rewrites_explain_to_the_new_threshold():
    config = config_from("""
[[rules]]
name = "deep"
severity = "critical"
when = "microcap.drawdown <= -0.10"
explain = "The micro-cap index is 10% or more below its peak."

[[rules]]
name = "vol"
when = "microcap.vol_spike >= 0.3"
explain = "Volatility is high."
""")
    values, close = calib_data()
    values["microcap.drawdown"] = (close / close.cummax() - 1).to_numpy()
    text = bt.calibrate(config, values, close, values.index[-1].date(), draws=10)
    rules = calibrated(text)
    deep = number(rules["deep"])
    assert deep != -0.10
    assert rules["deep"]["explain"] == (f"The micro-cap index is {bt._plain(abs(deep) * 100)}% or "
                                        "more below its peak.")
    assert "10%" not in rules["deep"]["explain"]
    assert "a state rule (reads microcap.drawdown)" in text
    # the vol rule's explain does not state its threshold: unchanged, with a comment before it
    assert number(rules["vol"]) != 0.3
    assert rules["vol"]["explain"] == "Volatility is high."
    lines = text.splitlines()
    at = lines.index('explain = "Volatility is high."')
    assert lines[at - 1].startswith("# review explain: it does not state the threshold "
                                    "(microcap.vol_spike >= 0.3 -> ")
    assert sum(line.startswith("# review explain") for line in lines) == 1


def test_calibrate_warns_when_the_new_zone_meets_clear_when():
    config = config_from("""
[[rules]]
name = "vol"
when = "microcap.vol_spike >= 3"
clear_when = "microcap.vol_spike < 1.2"
explain = "x"
""")
    values, close = calib_data()  # noise in [0, 1] and 2.0: every candidate is below 1.2
    text = bt.calibrate(config, values, close, values.index[-1].date(), draws=10)
    assert number(calibrated(text)["vol"]) < 1.2
    assert "overlaps the new alert zone" in text


# --------------------------------------------------------------------------- properties

_RULES = config_from("""
[[rules]]
name = "a"
when = "microcap.vol_spike >= 1.2 and market.return_20d <= 0"
for_days = 2
clear_days = 2
repeat_every_days = 3
explain = "x"

[[rules]]
name = "b"
when = "market.return_20d >= 0.3"
clear_when = "market.return_20d < 0.1"
clear_days = 3
explain = "y"

[[rules]]
name = "c"
severity = "critical"
when = "microcap.drawdown <= -0.05"
clear_when = "microcap.drawdown > -0.02"
clear_days = 3
explain = "z"

[[rules]]
name = "d"
severity = "info"
when = "microcap.vol_spike >= 0.5"
explain = "w"
""")


# -- the definitions, literally (slow, obviously right), to check the vectorised scoring against

def series_of(sim: bt.Simulation, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(fired, firing) of a rule, or of "any warning" (the warning rules only)."""
    if name != bt.ANY:
        return sim.fired[name].to_numpy(bool), sim.firing[name].to_numpy(bool)
    members = [n for n, kind in sim.kinds.items() if kind == "warning"]
    n = len(sim.fired)
    return (sim.fired[members].to_numpy(bool).any(axis=1) if members else np.zeros(n, bool),
            sim.firing[members].to_numpy(bool).any(axis=1) if members else np.zeros(n, bool))


def reference_episodes(index: pd.Index, eps: Sequence[DrawdownEpisode], close: pd.Series,
                       a: int = 0, lookback: int = bt.LOOKBACK_DAYS):
    """(all, counted): (peak, half-depth, trough) positions of every label, and of the counted
    ones in time order; ``close`` is indexed like ``index``."""
    pos = {d.date(): i for i, d in enumerate(index)}
    out = []
    for e in eps:
        p, t = pos[e.peak], pos[e.trough]
        h = next(i for i in range(p, t + 1) if close.iloc[i] / e.peak_close - 1 <= e.depth / 2)
        out.append((p, h, t))
    counted = sorted((p, h, t) for p, h, t in out if p - lookback >= a and t <= len(index) - 1)
    return out, counted


def reference_credit(fired, firing, counted, lookback=bt.LOOKBACK_DAYS):
    """[(warning position or None, already firing)] per counted episode (spec, item 3)."""
    credited, out = set(), []
    for p, _h, t in counted:
        f, already = None, False
        if firing[p]:
            s = p
            while s > 0 and firing[s - 1]:
                s -= 1
            if fired[s] and s not in credited:
                f, already = s, True
        if f is None:
            f = next((x for x in range(p - lookback, t + 1) if fired[x] and x not in credited), None)
        if f is not None:
            credited.add(f)
        out.append((f, already))
    return out


def reference_caught(fired, firing, counted, min_lead=bt.MIN_LEAD_DAYS) -> int:
    return sum(f is not None and h - f >= min_lead
               for (f, _), (_p, h, _t) in zip(reference_credit(fired, firing, counted), counted,
                                              strict=True))


def reference_classes(fired, labels, n, horizon=bt.HORIZON_DAYS) -> tuple[int, int, int, int]:
    hits = late = false = unjudged = 0
    for f in np.flatnonzero(fired):
        if any(f <= h <= f + horizon for _p, h, _t in labels):
            hits += 1
        elif any(p <= f <= t for p, _h, t in labels):
            late += 1
        elif f + horizon <= n - 1:
            false += 1
        else:
            unjudged += 1
    return hits, late, false, unjudged


def reference_baselines(name, fired, firing, close, eps, start, draws, seed):
    """Both baselines, drawn with the module's generators, each draw scored by reference_caught
    on the period's days."""
    index = close.index
    a = 0 if start is None else int(index.searchsorted(pd.Timestamp(start)))
    _, counted = reference_episodes(index, eps, close, a)
    fp, sp = fired[a:], firing[a:]
    m = len(fp)
    local = [(p - a, h - a, t - a) for p, h, t in counted]
    real = reference_caught(fired, firing, counted)
    starts = np.flatnonzero(fp)
    if not starts.size or not counted:
        return 0.0, 1.0, 0.0, 1.0
    lengths = []
    for s in starts:
        e = s
        while e < m and sp[e]:
            e += 1
        lengths.append(max(e - s, 1))
    tag = zlib.crc32(name.encode())
    rng = np.random.default_rng([seed, tag, 0])
    chance = []
    for row in rng.integers(0, m, size=(draws, starts.size)):
        g, f = np.zeros(m, bool), np.zeros(m, bool)
        for s, length in zip(row, lengths, strict=True):
            g[s] = True
            f[s:s + length] = True
        chance.append(reference_caught(g, f, local))
    rng = np.random.default_rng([seed, tag, 1])
    shift = [reference_caught(np.roll(fp, o), np.roll(sp, o), local)
             for o in rng.integers(1, m, size=draws)]
    return (np.mean(chance), (1 + sum(c >= real for c in chance)) / (1 + draws),
            np.mean(shift), (1 + sum(c >= real for c in shift)) / (1 + draws))


@st.composite
def _scenario(draw):
    n = draw(st.integers(30, 120))
    cell = st.one_of(st.none(), st.floats(-0.5, 2.0, allow_nan=False))
    cols = {name: [np.nan if v is None else v for v in draw(st.lists(cell, min_size=n, max_size=n))]
            for name in ("microcap.vol_spike", "market.return_20d", "microcap.drawdown")}
    idx = pd.bdate_range("2020-01-01", periods=n)
    steps = draw(st.lists(st.floats(-0.08, 0.08, allow_nan=False), min_size=n, max_size=n))
    close = pd.Series(100 * np.exp(np.cumsum(steps)), index=idx)
    lookback = draw(st.integers(0, 25))
    horizon = draw(st.integers(0, 50))
    return pd.DataFrame(cols, index=idx), close, lookback, horizon


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=_scenario(), seed=st.integers(0, 2**32))
def test_score_invariants_and_simulation_equal_the_per_day_path(scenario, seed):
    values, close, lookback, horizon = scenario
    sim = bt.simulate_full(_RULES, values)
    events, firing = reference_simulation(_RULES, values)
    assert sim.events == events
    assert {k: sim.firing[k].tolist() for k in firing} == firing
    eps = drawdown_episodes(close, 0.05)
    rows = bt.score_simulation(sim, eps, close, min_depth=0.05, lookback_days=lookback,
                               horizon_days=horizon, draws=30, seed=seed)
    assert [r.rule for r in rows] == ["a", "b", bt.ANY, "c", "d"]
    by = rows_by_rule(rows)
    labels, counted = reference_episodes(values.index, eps, close, lookback=lookback)
    for r in rows:
        assert 0 <= r.caught <= r.warned <= r.episodes <= len(eps)
        assert r.episodes == len(counted) == len(r.episodes_detail)
        assert 0.0 <= r.share_in_alert <= 1.0
        assert r.hits + r.late + r.false_alarms + r.unjudged == r.firings
        assert r.false_alarms_per_year >= 0 and r.notifications_per_year >= 0
        assert r.precision is None or 0 <= r.precision <= 1
        for p in (r.p_value, r.shift_p):
            assert 1 / 31 <= p <= 1
        assert 0 <= r.chance_mean <= r.episodes and 0 <= r.shift_mean <= r.episodes
        if not r.firings:
            assert (r.chance_mean, r.p_value) == (0, 1)
        for d in r.episodes_detail:
            assert (d.warning is None) == (d.lead_trough is None) == (d.lead_half is None)
            if d.lead_trough is not None:
                assert d.lead_half <= d.lead_trough
                assert d.caught == (d.lead_half >= bt.MIN_LEAD_DAYS)
            assert not (d.already_firing and d.warning is None)
        # the definitions, literally
        fired, firing_ = series_of(sim, r.rule)
        want = reference_credit(fired, firing_, counted, lookback)
        got = [(None if d.warning is None else values.index.get_loc(pd.Timestamp(d.warning)),
                d.already_firing) for d in r.episodes_detail]
        assert got == want
        assert (r.hits, r.late, r.false_alarms, r.unjudged) == reference_classes(
            fired, labels, len(values), horizon)
        warnings = [d.warning for d in r.episodes_detail if d.warning is not None]
        assert len(warnings) == len(set(warnings))  # one firing, one episode
    anyr = by[bt.ANY]
    assert anyr.share_in_alert >= max(by["a"].share_in_alert, by["b"].share_in_alert)
    assert anyr.firings <= by["a"].firings + by["b"].firings
    assert anyr.notifications_per_year <= by["a"].notifications_per_year + by[
        "b"].notifications_per_year + 1e-9


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=_scenario(), seed=st.integers(0, 2**32))
def test_baselines_equal_the_literal_draws(scenario, seed):
    values, close, _, _ = scenario
    sim = bt.simulate_full(_RULES, values)
    eps = drawdown_episodes(close, 0.05)
    rows = rows_by_rule(bt.score_simulation(sim, eps, close, min_depth=0.05, draws=25, seed=seed))
    for name in ("a", "c", bt.ANY):
        fired, firing = series_of(sim, name)
        want = reference_baselines(name, fired, firing, close, eps, None, 25, seed)
        got = rows[name]
        assert (got.chance_mean, got.p_value, got.shift_mean, got.shift_p) == pytest.approx(want)


def test_digest_days_follow_the_daemons_decision():
    """Table: which simulated days send a digest (monitor.delivery.digest.should_send decides)."""
    from monitor.analysis.backtest import Simulation, digest_days, digests_per_year

    def ev(day, rule, severity, event):
        return {"rule": rule, "date": day, "event": event, "severity": severity,
                "from_state": "", "to_state": ""}

    events = [
        ev("2021-01-04", "w", "warning", "firing"),      # new warning: sent
        ev("2021-01-05", "w", "warning", "repeat"),      # reminder only: not sent
        ev("2021-01-06", "i", "info", "firing"),         # info only: not sent
        ev("2021-01-07", "w", "warning", "resolved"),    # resolved warning: sent
        ev("2021-01-07", "i", "info", "repeat"),
        ev("2021-01-08", "w", "warning", "pending"),     # not a notification
    ]
    sim = Simulation(events, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {})
    assert digest_days(sim) == ["2021-01-04", "2021-01-07"]
    assert digest_days(sim, ["2021-01-08"]) == ["2021-01-04", "2021-01-07", "2021-01-08"]
    index = pd.bdate_range("2021-01-04", periods=252)
    assert digests_per_year(digest_days(sim), index) == 2.0
    assert digests_per_year(digest_days(sim), index, start=dt.date(2021, 1, 5)) == pytest.approx(
        1 / (251 / 252))


def test_average_ranks_equal_scipy_rankdata():
    """The forecast's AUC ranks without scipy.stats: equal to ``rankdata`` (ties averaged)."""
    import numpy as np
    from scipy.stats import rankdata

    from monitor.analysis.forecast import average_ranks

    rng = np.random.default_rng(15)
    for n in (0, 1, 2, 7, 500):
        for x in (rng.random(n), np.round(rng.random(n), 1), np.zeros(n), np.arange(n)[::-1]):
            assert np.array_equal(average_ranks(x), rankdata(x))
