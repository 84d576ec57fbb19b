"""Backtest core: simulation = the cycle, hand-computed scores, sweeps, calibration without
look-ahead, and property tests of the invariants."""

from __future__ import annotations

import datetime as dt
import time
import tomllib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import backtest as bt
from monitor import expr, lifecycle, rules
from monitor.config import Config
from signals.episodes import DrawdownEpisode, drawdown_episodes
from tests.conftest import DEFAULT_CONFIG, RecordingNotifier, config_from

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
    """The straightforward path: rules.evaluate on each day's dict, then lifecycle.step."""
    states = {r.name: lifecycle.AlertState() for r in config.rules}
    events, firing = [], {r.name: [] for r in config.rules}
    for ts, row in values.iterrows():
        d = pd.Timestamp(ts).date().isoformat()
        today = {k: (None if v is None or v != v else float(v)) for k, v in row.items()}
        for rule in config.rules:
            ev = rules.evaluate(rule, today)
            prev = states[rule.name]
            timing = lifecycle.Timing(rule.for_days, rule.clear_days, rule.repeat_every_days)
            res = lifecycle.step(prev, ev.when, ev.clear, d, timing)
            if res.event:
                events.append({"rule": rule.name, "date": d, "event": res.event,
                               "from_state": prev.state, "to_state": res.state.state,
                               "severity": rule.severity})
            states[rule.name] = res.state
            firing[rule.name].append(res.state.state == lifecycle.FIRING)
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
    config = Config.model_validate(tomllib.loads(DEFAULT_CONFIG.read_text()))
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
    config = Config.model_validate(tomllib.loads(DEFAULT_CONFIG.read_text()))
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
def cycle_db(tmp_path_factory):
    """The demo scenario run day by day by the daemon's cycle, with thresholds loosened so that
    every kind of event happens."""
    from monitor.config import load_config
    from monitor.daemon import Service

    config = bt.apply(load_config(DEFAULT_CONFIG), {
        "microcap_drawdown.microcap.drawdown": -0.05, "microcap_drawdown.for_days": 2,
        "microcap_drawdown.clear_days": 2,
        "hot_theme_rotation.rotation.largecap_minus_microcap_20d": 0.03,
        "turnover_exodus.turnover.csi2000_share_drop_60d": -0.008, "turnover_exodus.for_days": 1,
        "credit_low_base.credit.spread_pctile_10y": 0.18, "credit_low_base.for_days": 2,
    })
    path = tmp_path_factory.mktemp("backtest") / "cycle.db"
    service = Service(config, path, notifier=RecordingNotifier())
    for d in service.calendar.days(CYCLE_FIRST, CYCLE_LAST):
        service.run_day(d)
    rows = service.db.execute("SELECT signal, date, value FROM signal_values").fetchall()
    events = service.db.execute("SELECT rule, date, event, from_state, to_state, severity "
                                "FROM alert_events ORDER BY date, id").fetchall()
    service.close()
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


def test_score_by_hand():
    config = config_from(TWO_RULES)
    rows = rows_by_rule(bt.score(config, hand_values(), hand_episodes(), hand_close()))
    assert list(rows) == ["volatility_spike", "market_stress", bt.ANY]

    vs = rows["volatility_spike"]
    # E1 window [20, 50]: firings 30 and 47 -> earliest 30: trough 50-30 = 20, half-depth 45-30 = 15
    # E2 window [80, 106]: firing 105 -> 106-105 = 1, half-depth day 103: 103-105 = -2
    assert (vs.episodes, vs.caught) == (2, 2)
    assert [(h.first_firing, h.lead_trough, h.lead_half) for h in vs.hits] == [
        (day(30), 20, 15), (day(105), 1, -2)]
    assert [h.half_depth for h in vs.hits] == [day(45), day(103)]
    assert (vs.median_lead_trough, vs.median_lead_half) == (10.5, 6.5)
    # firings 0, 10 (E1 peak 40 within 40 days; 0 is the inclusive boundary), 30, 47 (E1 window),
    # 70 (E2 peak 100 within 40), 105 (E2 window): fine. 57 and 59: next peak 100 is 43 and 41 days
    # away -> false. 135: no episode and 135 + 40 > 149 -> unjudged.
    assert (vs.firings, vs.false_alarms, vs.unjudged) == (9, 2, 1)
    assert vs.days == 150
    assert vs.false_alarms_per_year == pytest.approx(2 / (150 / 252))
    assert vs.share_in_alert == pytest.approx(10 / 150)

    ms = rows["market_stress"]
    assert (ms.episodes, ms.caught, ms.firings, ms.false_alarms, ms.unjudged) == (2, 1, 1, 0, 0)
    assert [(h.first_firing, h.lead_trough, h.lead_half) for h in ms.hits] == [
        (day(45), 5, 0), (None, None, None)]
    assert ms.share_in_alert == pytest.approx(2 / 150)

    anyr = rows[bt.ANY]
    assert (anyr.episodes, anyr.caught) == (2, 2)
    assert [h.first_firing for h in anyr.hits] == [day(30), day(105)]
    assert (anyr.firings, anyr.false_alarms, anyr.unjudged) == (10, 2, 1)
    assert anyr.share_in_alert == pytest.approx(12 / 150)


def test_score_period_edges_and_min_depth():
    config = config_from(TWO_RULES)
    values, eps, close = hand_values(), hand_episodes(), hand_close()
    # start on day 25: E1's window [20, 50] starts before the period -> not counted
    vs = rows_by_rule(bt.score(config, values, eps, close, start=IDX[25].date()))["volatility_spike"]
    assert (vs.days, vs.episodes, vs.caught) == (125, 1, 1)
    assert (vs.firings, vs.false_alarms, vs.unjudged) == (7, 2, 1)
    assert vs.share_in_alert == pytest.approx(8 / 125)
    # end on day 104: E2's trough (106) is after the period -> not counted; 70 still precedes E2
    vs = rows_by_rule(bt.score(config, values, eps, close, end=IDX[104].date()))["volatility_spike"]
    assert (vs.days, vs.episodes, vs.caught, vs.firings, vs.false_alarms) == (105, 1, 1, 7, 2)
    # only declines of at least 15%: E2 is no label, so 70 and 105 become false alarms
    vs = rows_by_rule(bt.score(config, values, eps, close, min_depth=0.15))["volatility_spike"]
    assert (vs.episodes, vs.caught, vs.false_alarms, vs.unjudged) == (1, 1, 4, 1)
    # default min_depth comes from the config
    deep = config.model_copy(update={"episodes": config.episodes.model_copy(
        update={"drawdown_min_depth": 0.15})})
    assert bt.score(deep, values, eps, close) == bt.score(config, values, eps, close, min_depth=0.15)
    # shorter look-back: E1 window [35, 50] -> caught by 47 only
    vs = rows_by_rule(bt.score(config, values, eps, close, lookback_days=5))["volatility_spike"]
    assert [(h.first_firing, h.lead_trough, h.lead_half) for h in vs.hits] == [
        (day(47), 3, -2), (day(105), 1, -2)]
    with pytest.raises(ValueError, match="no trading day"):
        bt.score(config, values, eps, close, start=dt.date(2030, 1, 1))


def test_table_and_json():
    config = config_from(TWO_RULES)
    rows = bt.score(config, hand_values(), hand_episodes(), hand_close())
    text = bt.table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["rule", "caught"]
    assert len({len(line) for line in lines[:2]}) == 1
    assert "volatility_spike" in lines[2] and "2/2" in lines[2] and "3.36" in lines[2]
    import json

    data = json.loads(bt.to_json(rows))
    assert data[0]["rule"] == "volatility_spike" and data[0]["hits"][1]["lead_half"] == -2
    assert data[1]["hits"][1]["first_firing"] is None
    assert data[2]["rule"] == bt.ANY
    records = bt.to_records(rows)
    assert records[0]["caught"] == 2 and "hits" not in records[0]
    assert [r["rule"] for r in records] == [r["rule"] for r in data]


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
    config = Config.model_validate(tomllib.loads(DEFAULT_CONFIG.read_text()))
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
                      on_point=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 8) for i in range(1, 9)]
    assert [p["params"] for p in points[:2]] == [
        {"volatility_spike.microcap.vol_spike": 1.5, "market_stress.for_days": 1},
        {"volatility_spike.microcap.vol_spike": 1.5, "market_stress.for_days": 2}]
    first = points[1]["rules"]
    assert list(first) == ["volatility_spike", "market_stress", bt.ANY]
    assert first["volatility_spike"]["caught"] == 2 and first["market_stress"]["caught"] == 1
    assert first["volatility_spike"]["false_alarms_per_year"] == pytest.approx(2 / (150 / 252))
    # each point equals scoring its applied config directly
    for p in points:
        direct = bt.score(bt.apply(config, p["params"]), values, eps, close)
        for row in direct:
            assert p["rules"][row.rule] == {k: getattr(row, k) for k in p["rules"][row.rule]}
    # vol_spike >= 2.5 never holds: nothing caught, no alert, no false alarm
    never = points[4]["rules"]["volatility_spike"]
    assert (never["caught"], never["firings"], never["share_in_alert"]) == (0, 0, 0.0)
    # market_stress needs 4 days: its 3 stress days never fire it
    assert points[3]["rules"]["market_stress"]["firings"] == 0
    text = bt.sweep_table(points)
    assert len(text.splitlines()) == 10 and "volatility_spike caught" in text.splitlines()[0]


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


def calib_values(n: int, seed: int, start="2015-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "microcap.vol_spike": rng.lognormal(0, 0.3, n),
        "market.return_20d": rng.normal(0, 0.05, n),
    }, index=pd.bdate_range(start, periods=n))


def test_calibrate_quantiles_and_toml():
    config = config_from(TWO_RULES)
    values = calib_values(600, 3)
    until = values.index[499].date()
    text = bt.calibrate(config, values, until)
    data = tomllib.loads(text)
    [vs, ms] = data["rules"]
    sample = values.iloc[:500]
    hi = float(f"{np.quantile(sample['microcap.vol_spike'], 0.95):.4g}")
    lo = float(f"{np.quantile(sample['market.return_20d'], 0.05):.4g}")
    assert vs["when"] == f"microcap.vol_spike >= {expr.Number(hi)}"
    assert ms["when"] == f"market.return_20d <= {expr.Number(lo)}"
    assert ms["for_days"] == 2 and ms["severity"] == "critical" and ms["explain"] == "y"
    # the tables replace the config's rules and validate
    replaced = Config.model_validate({**config.model_dump(), "rules": data["rules"]})
    assert replaced.rule("volatility_spike").when == vs["when"]
    assert "0.95 quantile of 500 values" in text and "(was 1.5)" in text
    assert "0.05 quantile of 500 values" in text and "(was -0.08)" in text
    assert "of 500 in-sample days" in text
    assert f"data up to {until.isoformat()} only" in text
    # restricting the rules; too little data keeps the threshold
    only = tomllib.loads(bt.calibrate(config, values, until, rules=["market_stress"]))["rules"]
    assert [r["name"] for r in only] == ["market_stress"]
    short = bt.calibrate(config, values, values.index[99].date())
    assert tomllib.loads(short)["rules"][0]["when"] == "microcap.vol_spike >= 1.5"
    assert "kept: only 100 in-sample values of microcap.vol_spike (fewer than 250)" in short
    with pytest.raises(ValueError, match="quantile"):
        bt.calibrate(config, values, until, quantile=1.2)


def test_calibrate_never_looks_after_until():
    config = config_from(TWO_RULES)
    values = calib_values(500, 4)
    until = values.index[-1].date()
    before = bt.calibrate(config, values, until)
    wild = calib_values(300, 5, start=(values.index[-1] + pd.Timedelta(days=1)).isoformat()) * 1000
    wild.iloc[::3] = np.nan
    after = pd.concat([values, wild])
    assert bt.calibrate(config, after, until) == before
    assert bt.calibrate(config, after, after.index[-1].date()) != before


def test_calibrate_warns_when_the_new_zone_meets_clear_when():
    config = config_from("""
[[rules]]
name = "vol"
when = "microcap.vol_spike >= 3"
clear_when = "microcap.vol_spike < 1.2"
explain = "x"
""")
    values = calib_values(400, 6)  # lognormal around 1: its 0.6 quantile is below 1.2
    text = bt.calibrate(config, values, values.index[-1].date(), quantile=0.6)
    q = float(f"{np.quantile(values['microcap.vol_spike'], 0.6):.4g}")
    assert q < 1.2
    assert "overlaps the new alert zone" in text


# --------------------------------------------------------------------------- properties

_EXPRS = [expr.parse(t) for t in (
    "a.x >= 0.2",
    "a.x >= 0.2 and a.y < 0",
    "a.x >= 0.2 or a.y < 0",
    "not (a.x > 0.5 or a.y <= -0.1) and a.z != 0",
    "0.1 < a.x and (a.y == 0 or not a.z >= 0.3) or a.x < a.z",
)]
_CELL = st.one_of(st.none(), st.sampled_from([0.0, -0.1, 0.2, 0.3, 0.5, 1.0]),
                  st.floats(-1, 1, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_CELL, _CELL, _CELL), min_size=1, max_size=30),
       drop_z=st.booleans())
def test_vectorised_conditions_match_expr_evaluate(rows, drop_z):
    frame = pd.DataFrame([[np.nan if v is None else v for v in r] for r in rows],
                         columns=["a.x", "a.y", "a.z"])
    if drop_z:
        frame = frame.drop(columns=["a.z"])
    for e in _EXPRS:
        got = bt.condition(e, frame).tolist()
        want = [e.evaluate({k: (None if v != v else v) for k, v in rec.items()})
                for rec in frame.to_dict("records")]
        assert got == want, str(e)


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
when = "microcap.drawdown <= -0.05"
clear_when = "microcap.drawdown > -0.02"
clear_days = 3
explain = "y"
""")


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
@given(scenario=_scenario())
def test_score_invariants_and_simulation_equal_the_per_day_path(scenario):
    values, close, lookback, horizon = scenario
    sim = bt.simulate_full(_RULES, values)
    events, firing = reference_simulation(_RULES, values)
    assert sim.events == events
    assert {k: sim.firing[k].tolist() for k in firing} == firing
    eps = drawdown_episodes(close, 0.05)
    rows = bt.score_simulation(sim, eps, close, min_depth=0.05, lookback_days=lookback,
                               horizon_days=horizon)
    by = rows_by_rule(rows)
    for r in rows:
        assert 0 <= r.caught <= r.episodes <= len(eps)
        assert 0.0 <= r.share_in_alert <= 1.0
        assert r.false_alarms >= 0 and r.unjudged >= 0
        assert r.false_alarms + r.unjudged <= r.firings
        assert r.false_alarms_per_year >= 0
        for h in r.hits:
            assert (h.first_firing is None) == (h.lead_trough is None) == (h.lead_half is None)
            if h.lead_trough is not None:
                assert 0 <= h.lead_trough and h.lead_half <= h.lead_trough
    anyr = by[bt.ANY]
    assert anyr.caught >= max(by["a"].caught, by["b"].caught)
    assert anyr.share_in_alert >= max(by["a"].share_in_alert, by["b"].share_in_alert)
    assert anyr.firings <= by["a"].firings + by["b"].firings
