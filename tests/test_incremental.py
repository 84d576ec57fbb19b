"""The daily cycle's last-value shortcuts equal the full computation (issue 15, goal 4).

``compute_day`` computes each signal on its declared window only, and signals registered with
``arrays=True`` on numpy arrays of that window (``Signal.last_value``: the same function, the
helpers of ``signals.common`` in their numpy branch, which run pandas' own rolling kernels). Each
such value must equal, exactly, the pandas computation on the same window (what the cycle stored
before), and the last value of the full computation (``Signal.compute`` on pandas over all
history, as replay and backtest do) within ``REL`` relative (pandas' running sums and variances
carry rounding from earlier rows).
"""

from __future__ import annotations

import datetime as dt
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import signals
from monitor.calendar import TradingCalendar
from monitor.compute import compute_day, history
from monitor.config import load_config
from signals.registry import resolved_params
from storage import observations
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG

REL = 1e-12
ABS = 1e-15  # values that are exactly 0 in one path may be 1e-17 in the other
ARRAY_SIGNALS = [s for s in signals.REGISTRY.values() if s.arrays and s.state is None]
MODELS = [s for s in signals.REGISTRY.values() if s.state is not None]  # take a cached fit


def _same(a: float | None, b: float | None) -> bool:
    """Bit for bit (both missing or NaN counts as equal)."""
    missing = [x is None or not math.isfinite(x) for x in (a, b)]
    return all(missing) or (not any(missing) and a == b)


def _last_fast(sig, frame: pd.DataFrame, inputs: list[str], window: int | None, p) -> float:
    return _last_fast_ctx(sig, frame, inputs, window, p)[0]


def _last_fast_ctx(sig, frame: pd.DataFrame, inputs: list[str], window: int | None, p):
    tail = frame[inputs].to_numpy()
    tail = tail if window is None else tail[-window:]
    return sig.last_value({c: tail[:, j] for j, c in enumerate(inputs)}, p)


def _ctx(c):
    return None if c is None or (isinstance(c, float) and math.isnan(c)) else c


def _close(fast: float | None, full: float | None) -> bool:
    if fast is None or full is None or not math.isfinite(full):
        return (fast is None or not math.isfinite(fast)) and (full is None or not math.isfinite(full))
    return math.isclose(fast, full, rel_tol=REL, abs_tol=ABS)


def _full_frame(db, calendar: TradingCalendar, as_of: dt.date) -> pd.DataFrame:
    """Every stored series from the first stored day to ``as_of``, as known on ``as_of``."""
    names = observations.series_names(db)
    first = observations.first_date(db, names)
    return observations.load_frame(db, names, calendar.days(first, as_of), as_of)


def _compare_array_signals(frame: pd.DataFrame, params, at_least: int) -> list[str]:
    """For every array signal whose inputs ``frame`` holds: last_value on its trimmed window vs
    compute over all of ``frame``; return the mismatches (and fail unless at least ``at_least``
    signals were compared: a frame missing every input must not pass)."""
    bad = []
    compared = 0
    available = list(frame.columns)
    for sig in ARRAY_SIGNALS:
        p = params[sig.family]
        inputs = sig.resolve_inputs(available, p)
        if not set(inputs) <= set(available):
            continue
        compared += 1
        full = float(sig.compute(frame, p)[0].iloc[-1])
        window = sig.window_days(p)
        fast = _last_fast(sig, frame, inputs, window, p)
        trimmed = float(sig.compute(frame if window is None else frame.iloc[-window:],
                                    p)[0].iloc[-1])
        if not _close(fast, full) or not _same(fast, trimmed):
            bad.append(f"{sig.name}: fast {fast!r} full {full!r} pandas on the window {trimmed!r}")
    assert compared >= at_least, (compared, at_least)
    return bad


# --- every registered signal, compute_day vs the full computation (demo data) -----------------


@pytest.fixture(scope="module")
def demo_db(demo_observations, tmp_path_factory):
    """A writable copy of the demo observations with a gap and a late value near the end: the
    CSI 2000 amount missing for 3 days and a micro-cap close published 3 days late."""
    path = tmp_path_factory.mktemp("incremental") / "demo.db"
    shutil.copy(demo_observations, path)
    db = open_db(path)
    end = observations.date_range(db, "index.microcap.close")[1]
    cal = TradingCalendar()
    end = dt.date.fromisoformat(end)
    days = cal.days(end - dt.timedelta(days=40), end)
    with db.atomic():
        for d in days[-12:-9]:
            db.execute("DELETE FROM observations WHERE series = 'index.csi2000.amount' AND date = ?",
                       [d.isoformat()])
        late = days[-6]
        db.execute("UPDATE observations SET available_at = ? WHERE series = 'index.microcap.close' "
                   "AND date = ?", [days[-3].isoformat(), late.isoformat()])
    return db, days


def test_compute_day_equals_history_for_every_signal(demo_db):
    """compute_day (the cycle's shortcuts) on several days, with a gap and a late value among
    them, vs history (one vectorised pass over all history, point-in-time per day): every
    signal of the registry, including the models and the late quarterly fund series."""
    db, days = demo_db
    cal = TradingCalendar()
    params = load_config(DEFAULT_CONFIG).signal_params()
    check = [days[-15], days[-11], days[-6], days[-5], days[-4], days[-3], days[-1]]
    full, _ = history(db, cal, check[0], check[-1], params)
    compared = 0
    bad = []
    for day in check:
        fast = compute_day(db, cal, day, params)
        assert set(fast) == set(signals.REGISTRY)
        for name, sv in fast.items():
            want = full.loc[pd.Timestamp(day), name]
            want = None if pd.isna(want) else float(want)
            compared += want is not None
            if not _close(sv.value, want):
                bad.append(f"{day} {name}: cycle {sv.value!r} history {want!r}")
    assert not bad, bad
    assert compared > 20 * len(check)  # most signals have a value on these days


def test_array_signals_equal_the_full_computation_on_the_demo_data(demo_db):
    db, days = demo_db
    cal = TradingCalendar()
    params = load_config(DEFAULT_CONFIG).signal_params()
    for day in (days[-11], days[-6], days[-3], days[-1]):
        assert not _compare_array_signals(_full_frame(db, cal, day), params,
                                          at_least=len(ARRAY_SIGNALS)), day


def test_array_signals_equal_the_full_computation_on_the_real_data(real_data, tmp_path):
    """Real indices, themes and yields (2008/2014 to 2024), several days incl. ones after a
    holiday; each day as known on that day."""
    from monitor.sources.csv_import import import_files
    from tests import realdata

    end = "2024-06-28"
    frame = pd.concat([realdata.indices(real_data, "2014-01-01", end),
                       realdata.yields(real_data, "2012-01-01", end)])
    db = open_db(tmp_path / "real.db")
    import_files(db, [realdata.write_csv(frame, tmp_path / "real.csv")])
    cal = TradingCalendar()
    params = load_config(DEFAULT_CONFIG).signal_params()
    for day in (dt.date(2016, 1, 7), dt.date(2020, 2, 3), dt.date(2024, 2, 19), dt.date(2024, 6, 28)):
        # the 23 array signals whose inputs the real data holds (of 25)
        assert not _compare_array_signals(_full_frame(db, cal, day), params, at_least=23), day


# --- the window-trimming rule on random series --------------------------------------------------


def _random_frame(draw, inputs: list[str], rows: int) -> pd.DataFrame:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    missing = draw(st.sampled_from([0.0, 0.05, 0.3]))
    data = {}
    for c in inputs:
        if c.startswith("funds."):  # quarterly reports about 60 rows apart, some missed
            x = np.full(rows, np.nan)
            at = np.cumsum(rng.integers(40, 160, rows // 40 + 2))
            at = at[at < rows]
            x[at] = rng.normal(0.3, 0.05, len(at)) if "share" in c else rng.lognormal(20, 0.3, len(at))
            data[c] = x
            continue
        if c.startswith("yield."):
            x = 2.0 + np.cumsum(rng.normal(0, 0.02, rows))
        else:
            x = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, rows)))
            if draw(st.booleans()):
                x = np.round(x, 0)  # ties and flat stretches
            if c.endswith(".amount") and draw(st.booleans()):
                # zero amounts: infinite ratios (a zero close is refused at import; after one,
                # pandas' online rolling std over the full series drifts by ~1e-12 relative)
                x[rng.random(rows) < 0.02] = 0.0
        x[rng.random(rows) < missing] = np.nan
        data[c] = x
    index = pd.bdate_range("2010-01-04", periods=rows, name="date")
    return pd.DataFrame(data, index=index)


@st.composite
def cases(draw, pool=tuple(ARRAY_SIGNALS)):
    sig = draw(st.sampled_from(pool))
    params = resolved_params()[sig.family]
    small = {"mean_days": (2, 30), "pctile_days": (2, 300), "high_days": (2, 80),
             "change_days": (1, 30), "lag_days": (0, 70), "vol_days": (2, 30),
             "median_days": (2, 150), "return_days": (1, 30), "short_days": (2, 30),
             "long_days": (2, 150), "microcap_days": (1, 20), "largecap_days": (1, 30)}
    p = dict(params)
    for k in sig.params:
        if k in small:
            p[k] = draw(st.integers(*small[k]))
    if "short_days" in sig.params:  # the window is the longer mean's (short <= long by design)
        p["short_days"] = min(p["short_days"], p["long_days"])
    themes = ["theme.a.close", "theme.b.close", "theme.c.close"][:draw(st.integers(0, 3))]
    if "themes" in sig.params:
        p["themes"] = draw(st.sampled_from([[], ["b"], ["a", "c"]]))
    inputs = sig.resolve_inputs(themes, p)
    window = sig.window_days(p)
    extra = draw(st.integers(0, 300 if sig.family == "funds" else 60))
    rows = (window or draw(st.integers(1, 200))) + extra
    return sig, p, inputs, window, _random_frame(draw, inputs, rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_last_value_on_the_declared_window_equals_the_full_series(case):
    """The declared window is enough: the numpy last value on exactly ``window`` trailing rows
    equals the pandas computation over the longer series, whatever the data and parameters."""
    sig, p, inputs, window, frame = case
    values, context = sig.compute(frame, p)
    full = float(values.iloc[-1])
    fast, fast_ctx = _last_fast_ctx(sig, frame, inputs, window, p)
    assert _close(fast, full), (sig.name, p, fast, full)
    # bit for bit the pandas formula on the trimmed window (the value the cycle stored before)
    trimmed = frame if window is None else frame.iloc[-window:]
    values, trimmed_ctx = sig.compute(trimmed, p)
    assert _same(fast, float(values.iloc[-1])), (sig.name, p)
    if context is not None:
        assert _ctx(fast_ctx) == _ctx(context.iloc[-1]) == _ctx(trimmed_ctx.iloc[-1])


def _latest_change_before(s: pd.Series, carry_days: int, relative: bool) -> pd.Series:
    """signals.funds._latest_change as it was before issue 15 (pandas), the reference."""
    pos = pd.Series(range(len(s)), index=s.index)
    present = s.notna()
    reports, at = s[present], pos[present]
    change = reports / reports.shift(1) - 1.0 if relative else reports.diff()
    change = change.where(at.diff() <= carry_days)
    return change.reindex(s.index).ffill(limit=carry_days)


def _hot_theme_before(frame: pd.DataFrame, theme_days: int, themes: list[str]):
    """signals.rotation.hot_theme_excess as it was before issue 15 (pandas), the reference."""
    excess = signals.rotation.theme_excess(frame, theme_days, themes)
    if excess.empty:
        nan = pd.Series(float("nan"), index=frame.index)
        return nan, pd.Series(None, index=frame.index, dtype=object)
    best = excess.max(axis=1, skipna=True)
    valid = excess.notna().any(axis=1)
    return best, excess.fillna(float("-inf")).idxmax(axis=1).where(valid)


REWRITTEN = tuple(signals.REGISTRY[n] for n in ("funds.smallcap_share_mean_chg",
                                               "funds.smallcap_value_total_chg",
                                               "rotation.hot_theme_excess"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(REWRITTEN))
def test_funds_and_hot_theme_equal_their_pandas_formulas_before(case):
    """The two functions rewritten on numpy give, on every day, what their pandas versions gave."""
    sig, p, inputs, window, frame = case
    values, context = sig.compute(frame, p)
    if sig.family == "funds":
        col = inputs[0]
        want = _latest_change_before(frame[col], p["carry_days"], "value" in col)
        pd.testing.assert_series_equal(values, want, check_names=False)
    elif sig.name == "rotation.hot_theme_excess":
        best, name = _hot_theme_before(frame, p["theme_days"], p["themes"])
        pd.testing.assert_series_equal(values, best, check_names=False)
        assert [_ctx(c) for c in context] == [_ctx(c) for c in name]


def test_every_signal_is_array_capable():
    """Every registered signal has the numpy path the daily cycle uses, the two models too."""
    assert [s.name for s in signals.REGISTRY.values() if not s.arrays] == []
    assert sorted(s.name for s in MODELS) == ["regime.stress_prob", "risk.drawdown_prob"]


@st.composite
def regime_cases(draw):
    from signals import regime

    rows = draw(st.integers(1, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frame = pd.DataFrame({c: 100.0 * np.exp(np.cumsum(rng.normal(0, s, rows)))
                          for c, s in ((regime.MICROCAP, 0.02), (regime.ALL_A, 0.012))},
                         index=pd.bdate_range("2015-01-05", periods=rows, name="date"))
    frame[rng.random(frame.shape) < draw(st.sampled_from([0.0, 0.05, 0.3]))] = np.nan
    p00, p10 = draw(st.floats(0.5, 0.999)), draw(st.floats(0.001, 0.5))
    s0 = draw(st.floats(0.05, 2.0))
    fit = regime.RegimeFit(dt.date(2014, 12, 31), (p00, p10, draw(st.floats(-0.5, 0.5)),
                                                   draw(st.floats(-1.0, 1.0)), s0,
                                                   s0 * draw(st.floats(1.5, 20.0))), 300, -400.0)
    return frame, draw(st.sampled_from([fit, None]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(regime_cases())
def test_regime_probability_on_arrays_equals_the_frame_computation(case):
    """regime.stress_prob on the cycle's arrays equals the frame computation on every day, bit
    for bit, under any fit (or none), gaps included."""
    frame, fit = case
    sig = signals.REGISTRY["regime.stress_prob"]
    p = resolved_params()[sig.family]
    want = sig.compute(frame, p, fit)[0].to_numpy()
    got = sig.func({c: frame[c].to_numpy() for c in frame.columns}, **{"min_obs": p["min_obs"]},
                   fit=fit)
    assert np.array_equal(got, want, equal_nan=True)
    last, _ = sig.last_value({c: frame[c].to_numpy() for c in frame.columns}, p, fit)
    assert _same(last, float(want[-1]))


@st.composite
def risk_cases(draw):
    from signals import risk

    k, rows = draw(st.integers(1, 10)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = [f"f.{i}" for i in range(k)]
    values = rng.normal(0, 1, (rows, k)) * 10.0 ** rng.uniform(-3, 3, (rows, k))
    values[rng.random((rows, k)) < draw(st.sampled_from([0.0, 0.1]))] = np.nan
    fit = risk.RiskFit(valid_from=dt.date(2024, 1, 2), fit_through=dt.date(2023, 12, 29),
                       features=tuple(names), mean=tuple(rng.normal(0, 1, k)),
                       std=tuple(rng.uniform(0.1, 5, k)), coef=tuple(rng.normal(0, 1, k + 1)),
                       n_obs=500, positives=60, l2=1.0, horizon_days=20, drawdown=0.1)
    frame = pd.DataFrame(values, columns=names, index=pd.bdate_range("2024-01-02", periods=rows))
    return frame, names, draw(st.sampled_from([fit, None]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(risk_cases())
def test_risk_probability_on_arrays_equals_the_frame_computation(case):
    """risk.drawdown_prob on arrays (the cycle's one-day row) equals the frame computation bit
    for bit, contexts included, for any fit, number of features (the log-odds summed in pandas'
    order) and missing features."""
    frame, names, fit = case
    sig = signals.REGISTRY["risk.drawdown_prob"]
    p = {"features": names}
    with np.errstate(over="ignore"):  # exp of extreme log-odds: 0 or 1, in both
        want, want_ctx = sig.compute(frame, p, fit)
        got, got_ctx = sig.func({c: frame[c].to_numpy() for c in names}, names, fit=fit)
        one, one_ctx = sig.compute(frame.iloc[-1:], p, fit)
    assert np.array_equal(got, want.to_numpy(), equal_nan=True)
    assert [_ctx(c) for c in got_ctx] == [_ctx(c) for c in want_ctx]
    # the cycle's day alone (a one-row frame before: with 8+ features numpy's pairwise sum
    # depends on the number of rows, which is why the stored value is rounded, RISK_DECIMALS)
    last, ctx = sig.last_value({c: frame[c].to_numpy()[-1:] for c in names}, p, fit)
    assert _same(last, float(one.iloc[-1])) and _ctx(ctx) == _ctx(one_ctx.iloc[-1])


def _load_frame_before(db, series, days, as_of, starts=None) -> pd.DataFrame:
    """storage.observations.load_frame's matching as it was before issue 15 (ISO strings)."""
    index = pd.DatetimeIndex(pd.to_datetime(list(days)), name="date")
    values = np.full((len(days), len(series)), np.nan)
    iso = np.array([d.isoformat() for d in days])
    for j, name in enumerate(series):
        lo = max(days[0], (starts or {}).get(name, days[0]))
        rows = [(d, v) for d, v in observations.values_between(db, name, lo.isoformat(),
                                                                 days[-1].isoformat())
                if observations.current_value(db, name, d, as_of.isoformat()) is not None]
        if not rows:
            continue
        dates, vals = zip(*rows, strict=True)
        row_days = np.array(dates)
        pos = np.searchsorted(iso, row_days)
        ok = (pos < len(iso)) & (iso[np.minimum(pos, len(iso) - 1)] == row_days)
        values[pos[ok], j] = np.asarray(vals, dtype=float)[ok]
    return pd.DataFrame(values, index=index, columns=list(series))


def test_load_frame_places_rows_as_before(demo_db):
    """The cycle's read (rows placed by a datetime64 search) equals the ISO-string matching, with
    days left out of ``days`` (their rows dropped), a late value and per-series starts."""
    db, days = demo_db
    names = ["index.microcap.close", "index.csi2000.amount", "funds.smallcap_share_mean"]
    some = [d for i, d in enumerate(days) if i % 4 != 1]
    for as_of in (days[-6], days[-3], days[-1]):
        picked = [d for d in some if d <= as_of]
        starts = {"index.csi2000.amount": picked[5]}
        got = observations.load_frame(db, names, picked, as_of, starts)
        pd.testing.assert_frame_equal(got, _load_frame_before(db, names, picked, as_of, starts))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 600), st.data())
def test_the_filter_continued_from_the_previous_day_equals_the_filter_from_the_start(seed, n, data):
    """The regime filter keeps its last run per fit and continues it when the next call's returns
    start with the same ones (the next day); every value equals the filter run from the first
    return, bit for bit; a changed earlier return (a revision) is filtered from the start."""
    from signals import regime

    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1.5, n) * rng.choice([1.0, 3.0], n)
    params = (0.97, 0.08, 0.05, -0.2, 0.8, 4.5)
    regime._CONTINUED.clear()
    fresh = regime._filtered_high_prob(y, params)
    regime._CONTINUED.clear()
    k = data.draw(st.integers(0, n))
    regime._filtered_high_prob(y[:k], params)  # the day before (k returns)
    assert np.array_equal(regime._filtered_high_prob(y, params), fresh)
    assert len(regime._CONTINUED[tuple(params)][0]) == n  # kept: the next day continues from n
    if k:
        revised = y.copy()
        revised[data.draw(st.integers(0, k - 1))] += 0.5
        got = regime._filtered_high_prob(revised, params)
        regime._CONTINUED.clear()
        assert np.array_equal(got, regime._filtered_high_prob(revised, params))


def test_a_signal_without_arrays_is_computed_on_its_frame(demo_db, monkeypatch):
    """The documented path of a signal registered without ``arrays=True`` (pandas only): the
    cycle computes it on its window's frame (``Signal.compute``), the value the array path gives,
    themes (a variable set of inputs) included."""
    import dataclasses

    db, days = demo_db
    cal = TradingCalendar()
    params = load_config(DEFAULT_CONFIG).signal_params()
    names = ["microcap.vol_spike", "rotation.hot_theme_excess", "credit.spread_pctile_10y_lag60"]
    want = compute_day(db, cal, days[-1], params)
    for name in names:
        monkeypatch.setitem(signals.REGISTRY, name,
                            dataclasses.replace(signals.REGISTRY[name], arrays=False))
    got = compute_day(db, cal, days[-1], params)
    assert [n for n in names if got[n].value is None] == []
    assert {n: got[n] for n in names} == {n: want[n] for n in names}
