"""The drawdown-risk model (risk.drawdown_prob): label, ridge logit, fits, and point in time."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

import signals
from monitor.analysis.replay import replay
from monitor.calendar import TradingCalendar
from monitor.compute import compute_day, history
from monitor.sources.demo_source import DemoSource
from signals import risk
from storage import observations
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, config_from

N = math.nan


def series(values, start="2020-01-01"):
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)), dtype=float)


# ------------------------------------------------------------------------------------- the label


def test_forward_drawdown_label_by_hand():
    # horizon 2, depth 10%:
    # t0 [100,110,98]: 98/110-1 = -10.9% -> 1;  t1 [110,98,120]: -10.9% -> 1
    # t2 [98,120,110]: 110/120-1 = -8.3% -> 0;  t3 [120,110,130]: -8.3% -> 0
    # t4 [110,130,125]: -3.8% -> 0;  t5, t6: the path is not known yet -> NaN
    close = series([100, 110, 98, 120, 110, 130, 125])
    got = risk.forward_drawdown_label(close, 2, 0.10)
    np.testing.assert_array_equal(got.to_numpy(), [1, 1, 0, 0, 0, N, N])


def test_label_skips_missing_closes_and_is_unknown_on_a_missing_day():
    # t0 [100, NaN, 89]: -11% -> 1; t1's own close is missing -> NaN; t2, t3: not known yet
    got = risk.forward_drawdown_label(series([100, N, 89, 95]), 2, 0.10)
    np.testing.assert_array_equal(got.to_numpy(), [1, N, N, N])


def test_label_measures_from_the_running_peak_not_from_day_t():
    # t0 [100, 120, 107]: from day t only -7% (no), from the peak 120: -10.8% -> 1
    got = risk.forward_drawdown_label(series([100, 120, 107]), 2, 0.10)
    assert got.iloc[0] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(50, 200), min_size=2, max_size=60), st.integers(1, 10))
def test_label_of_day_t_depends_only_on_closes_t_to_t_plus_h(closes, h):
    close = series(closes)
    full = risk.forward_drawdown_label(close, h, 0.10)
    for t in range(len(closes) - h):
        part = risk.forward_drawdown_label(close.iloc[t:t + h + 1], h, 0.10)
        assert part.iloc[0] == full.iloc[t]
    assert full.iloc[len(closes) - h:].isna().all()


# ------------------------------------------------------------------------------------ the model


def _data(n=400, k=3, seed=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k))
    p = 1 / (1 + np.exp(-(-1.0 + x @ np.array([0.8, -0.5, 0.0][:k]))))
    return x, (rng.random(n) < p).astype(float)


def test_ridge_logit_without_penalty_is_statsmodels_logit():
    x, y = _data()
    ours = risk.ridge_logit(x, y, 0.0)
    theirs = sm.Logit(y, sm.add_constant(x)).fit(disp=0).params
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)


def test_ridge_logit_penalised_optimum_and_shrinkage():
    x, y = _data()
    w = risk.ridge_logit(x, y, 50.0)
    xb = np.column_stack([np.ones(len(y)), x])
    p = 1 / (1 + np.exp(-(xb @ w)))
    grad = xb.T @ (p - y) + 50.0 * np.r_[0.0, w[1:]]
    np.testing.assert_allclose(grad, 0.0, atol=1e-8)  # the penalised score is zero there
    slopes = [np.abs(risk.ridge_logit(x, y, lam)[1:]).sum() for lam in (0.0, 10.0, 100.0, 1e4)]
    assert slopes == sorted(slopes, reverse=True)


def test_probability_and_contributions_by_hand():
    # one feature, mean 1, std 2, intercept 0, slope 1: x = 1 -> z = 0 -> p = 0.5;
    # x = 1 + 2 ln 3 -> z = ln 3 -> p = 3 / 4
    fit = risk.RiskFit(valid_from=dt.date(2020, 2, 3), fit_through=dt.date(2020, 1, 31),
                       features=("a",), mean=(1.0,), std=(2.0,), coef=(0.0, 1.0), n_obs=100,
                       positives=20, l2=0.0)
    frame = pd.DataFrame({"a": [1.0, 1 + 2 * math.log(3), N]}, index=pd.bdate_range("2020-02-03", periods=3))
    prob, ctx = risk.drawdown_prob(frame, ["a"], fit)
    np.testing.assert_allclose(prob.to_numpy()[:2], [0.5, 0.75])
    assert math.isnan(prob.iloc[2]) and ctx.iloc[2] is None  # a missing feature: no value
    c = json.loads(ctx.iloc[1])
    assert c["base_rate"] == 0.2 and c["fit_through"] == "2020-01-31"
    assert c["contributions"][0]["signal"] == "a"
    assert c["contributions"][0]["logodds"] == pytest.approx(math.log(3), rel=1e-5)
    with pytest.raises(ValueError, match="features"):
        risk.drawdown_prob(frame, ["b"], fit)


def _feature_frame(n=300, seed=3):
    x, _ = _data(n, 2, seed)
    idx = pd.bdate_range("2019-01-01", periods=n)
    rng = np.random.default_rng(seed)
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.03, n))), index=idx)
    return pd.DataFrame(x, index=idx, columns=["a", "b"]), close


def test_fit_uses_only_labels_known_by_its_cutoff():
    feats, close = _feature_frame()
    through = feats.index[199].date()
    kw = {"horizon_days": 20, "drawdown": 0.10, "l2": 1.0, "min_train_days": 50}
    base = risk.fit(feats, close, through, through + dt.timedelta(days=1), **kw)
    assert base is not None
    # rows t with t + 20 <= 199 have a known label: 180 rows
    assert base.n_obs == 180
    # anything after the cut-off (closes, features) changes nothing
    later_close = close.copy()
    later_close.iloc[200:] = later_close.iloc[200:] * 0.5
    later_feats = feats.copy()
    later_feats.iloc[200:] = 99.0
    assert risk.fit(later_feats, later_close, through, through + dt.timedelta(days=1), **kw) == base
    # a close inside the horizon of the last rows changes their label, so the fit is not blind to it
    assert risk.fit(feats, close, through, through, **{**kw, "min_train_days": 500}) is None


def test_refit_at_most_monthly_and_a_failed_refit_keeps_the_last_fit():
    feats, close = _feature_frame()
    params = {"horizon_days": 20, "drawdown": 0.10, "l2": 1.0, "min_train_days": 50,
              "features": ["a", "b"]}
    mar = dt.date(2019, 10, 1)
    first = risk.current_fit(feats, close, mar, None, dt.date(2019, 9, 30), params)
    assert first is not None and first.valid_from == mar
    assert risk.current_fit(feats, close, dt.date(2019, 10, 15), first, dt.date(2019, 10, 14),
                            params) is first  # same month: no refit
    nov = risk.current_fit(feats, close, dt.date(2019, 11, 1), first, dt.date(2019, 10, 31), params)
    assert nov.valid_from == dt.date(2019, 11, 1) and nov.n_obs > first.n_obs
    impossible = {**params, "min_train_days": 10_000}
    kept = risk.current_fit(feats, close, dt.date(2019, 12, 2), nov, dt.date(2019, 11, 29), impossible)
    assert kept.coef == nov.coef and kept.valid_from == dt.date(2019, 12, 2)
    assert risk.RiskFit.from_json(nov.to_json()) == nov
    assert nov.matches(params) and not nov.matches({**params, "l2": 2.0})


# ------------------------------------------------------------------- the service, point in time

FEATURES = ["market.return_20d", "market.amount_ratio_20_120", "rotation.microcap_excess_10d"]
RISK = f"""
[signals.risk]
features = {json.dumps(FEATURES)}
min_train_days = 60
"""
RULE = """
[[rules]]
name = "drawdown_risk"
severity = "warning"
when = "risk.drawdown_prob >= 0.11"
clear_when = "risk.drawdown_prob < 0.10"
clear_days = 2
repeat_every_days = 5
explain = "test"
"""
D, END = dt.date(2019, 1, 31), dt.date(2019, 4, 30)


@pytest.fixture(scope="module")
def risk_config():
    return config_from(CLASSIC_CONFIG.read_text(encoding="utf-8") + RULE + RISK)


@pytest.fixture(scope="module")
def demo_rows(risk_config):
    return DemoSource(risk_config.source.demo_seed).fetch(END, None).rows


def _db(path, rows, upto: dt.date | None = None):
    db = open_db(path)
    with db.atomic():
        observations.upsert(db, [r for r in rows if upto is None or r[3] <= upto.isoformat()])
    return db


def test_history_equals_the_daily_cycle_with_its_own_fits(tmp_path, risk_config, demo_rows):
    """Day by day (fits made by compute_day on the first cycle of each month, as the daemon does)
    equals the vectorised history on a fresh copy (its own fits on the same schedule)."""
    cal = TradingCalendar()
    params = risk_config.signal_params()
    live = _db(tmp_path / "live.db", demo_rows)
    fresh = _db(tmp_path / "hist.db", demo_rows)
    days = cal.days(dt.date(2018, 12, 3), END)
    daily = {d: compute_day(live, cal, d, params)[risk.SIGNAL] for d in days}
    values, contexts = history(fresh, cal, days[0], days[-1], params)
    got = values[risk.SIGNAL]
    assert got.notna().sum() > 60  # the model is fitted and used on most days
    for d in days:
        sv = daily[d]
        v = got[pd.Timestamp(d)]
        assert (sv.value is None and math.isnan(v)) or sv.value == v, d
        assert sv.context == (contexts[risk.SIGNAL][pd.Timestamp(d)] if sv.value is not None else None)
    fits = lambda db: db.execute("SELECT valid_from, fit_json FROM risk_fits ORDER BY 1").fetchall()  # noqa: E731
    assert fits(live) == fits(fresh)
    assert len(fits(live)) == 5  # Dec, Jan, Feb, Mar, Apr


def test_values_and_alerts_up_to_d_do_not_change_when_later_data_is_added(tmp_path, risk_config,
                                                                         demo_rows):
    short = _db(tmp_path / "short.db", demo_rows, D)
    full = _db(tmp_path / "full.db", demo_rows)
    start = dt.date(2018, 11, 1)
    a = replay(short, risk_config, start, D, tmp_path / "a.db")
    b = replay(full, risk_config, start, END, tmp_path / "b.db")
    sql = "SELECT date, value, context FROM signal_values WHERE signal = ? AND date <= ? ORDER BY date"
    got = a.db.execute(sql, [risk.SIGNAL, D.isoformat()]).fetchall()
    want = b.db.execute(sql, [risk.SIGNAL, D.isoformat()]).fetchall()
    assert got == want and sum(r[1] is not None for r in got) > 20
    upto = [e for e in b.events if e["date"] <= D.isoformat() and e["rule"] == "drawdown_risk"]
    mine = [e for e in a.events if e["rule"] == "drawdown_risk"]
    assert upto == mine
    assert any(e["event"] == "firing" for e in b.events if e["rule"] == "drawdown_risk")


def test_a_config_change_of_the_model_refits_at_once(tmp_path, risk_config, demo_rows):
    cal = TradingCalendar()
    db = _db(tmp_path / "x.db", demo_rows)
    params = risk_config.signal_params()
    day = dt.date(2019, 3, 14)
    before = compute_day(db, cal, day, params)[risk.SIGNAL]
    other = {**params, "risk": {**params["risk"], "l2": 1e6}}
    after = compute_day(db, cal, day + dt.timedelta(days=1), other)[risk.SIGNAL]
    assert before.value is not None and after.value is not None
    stored = [risk.RiskFit.from_json(r[0]) for r in db.execute("SELECT fit_json FROM risk_fits")]
    assert sorted(f.l2 for f in stored) == [100.0 * 10, 1e6]


def test_the_signal_is_registered_with_its_family():
    sig = signals.REGISTRY[risk.SIGNAL]
    assert sig.family == "risk" and sig.state == "risk_fit" and sig.unit.startswith("fraction")
    assert signals.FAMILY_PARAMS["risk"]["features"] == risk.DEFAULT_FEATURES


@pytest.mark.parametrize("features,bad", [
    (["microcap.vol_spike", "no.such"], "features[1]: 'no.such'"),
    (["regime.stress_prob"], "features[0]: 'regime.stress_prob'"),
    (["funds.smallcap_share_mean_chg"], "features[0]"),
    (["risk.drawdown_prob"], "features[0]"),
])
def test_config_refuses_features_the_model_cannot_read(features, bad):
    from monitor.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(f"signals.risk.{bad}")):
        config_from(f"[signals.risk]\nfeatures = {json.dumps(features)}\n")


def test_no_history_yet_gives_no_value(tmp_path, risk_config):
    db = open_db(tmp_path / "empty.db")
    got = compute_day(db, TradingCalendar(), dt.date(2019, 3, 14), risk_config.signal_params())
    assert got[risk.SIGNAL].value is None and got[risk.SIGNAL].context is None


def test_the_calendars_first_day_has_no_fit_and_no_error(tmp_path, risk_config):
    cal = TradingCalendar()
    first = cal.days(dt.date(1990, 1, 1), dt.date(2030, 1, 1))[0]
    got = compute_day(open_db(tmp_path / "x.db"), cal, first, risk_config.signal_params())
    assert got[risk.SIGNAL].value is None


def test_a_month_without_enough_data_is_tried_once_not_every_day(tmp_path, risk_config, demo_rows,
                                                                 monkeypatch):
    from monitor import compute

    db = _db(tmp_path / "early.db", demo_rows)
    cal = TradingCalendar()
    params = risk_config.signal_params()
    calls = []
    real = risk.current_fit
    monkeypatch.setattr(risk, "current_fit", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    days = cal.days(dt.date(2018, 3, 1), dt.date(2018, 4, 30))
    values = [compute.compute_day(db, cal, d, params)[risk.SIGNAL].value for d in days]
    assert values == [None] * len(days)  # too little labelled history in the demo's first months
    assert calls == [dt.date(2018, 3, 1), dt.date(2018, 4, 2)]  # one attempt per month
    rows = db.execute("SELECT valid_from, fit_json FROM risk_fits ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == ["2018-03-01", "2018-04-02"]
    assert all(json.loads(r[1])["no_fit"] for r in rows)
    # another model is tried at once, whatever the month
    other = {**params, "risk": {**params["risk"], "min_train_days": 61}}
    compute.compute_day(db, cal, dt.date(2018, 4, 27), other)
    assert calls[-1] == dt.date(2018, 4, 27)


def test_a_revised_close_is_not_seen_by_fits_made_before_it_was_known(tmp_path, risk_config,
                                                                       demo_rows):
    """The vectorised history reads every value as known at its end; with a late observation
    (a revision published weeks later) its fits must still see only what the daily cycle saw."""
    revised = [r if not (r[0] == "index.microcap.close" and "2019-02-11" <= r[1] <= "2019-02-15")
               else (r[0], r[1], r[2] * 0.5, "2019-04-15", r[4]) for r in demo_rows]
    cal = TradingCalendar()
    params = risk_config.signal_params()
    live, fresh = _db(tmp_path / "live.db", revised), _db(tmp_path / "hist.db", revised)
    days = cal.days(dt.date(2018, 12, 3), END)
    daily = [compute_day(live, cal, d, params)[risk.SIGNAL].value for d in days]
    got = history(fresh, cal, days[0], days[-1], params)[0][risk.SIGNAL]
    fits = "SELECT valid_from, fit_json FROM risk_fits ORDER BY 1"
    assert live.execute(fits).fetchall() == fresh.execute(fits).fetchall()
    assert [None if math.isnan(v) else v for v in got] == daily
