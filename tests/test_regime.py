"""Tests for ``signals.regime`` (SIGNALS.md section 8): the Markov switching stress probability.

Fits are the slow part (~0.1-0.3 s each on these samples), so the synthetic series are small and the
fits that several tests share are module-scoped fixtures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from signals import regime
from signals.regime import (
    PARAM_NAMES,
    SCALE,
    RegimeFit,
    current_fit,
    filtered_stress_prob,
    fit,
    order_by_variance,
    refit_due,
    stress_prob_history,
    swap_states,
)

D = dt.date
CALM1, STRESS, CALM2 = 300, 60, 300


def blocks(seed: int = 1) -> pd.Series:
    """300 calm days (sd 0.5%), 60 stress days (sd 3%), 300 calm days; business-day index, fraction."""
    rng = np.random.default_rng(seed)
    r = np.concatenate([rng.normal(0.0, 0.005, CALM1), rng.normal(-0.002, 0.03, STRESS),
                        rng.normal(0.0, 0.005, CALM2)])
    return pd.Series(r, index=pd.bdate_range("2021-01-04", periods=len(r)), name="excess")


@pytest.fixture(scope="module")
def series() -> pd.Series:
    return blocks()


@pytest.fixture(scope="module")
def fitted(series: pd.Series) -> RegimeFit:
    f = fit(series, series.index[-1].date())
    assert f is not None
    return f


def sm_filtered(x: pd.Series, params) -> np.ndarray:
    """statsmodels' own filtered P(state 1) for fraction returns ``x`` under ``params``."""
    model = sm.tsa.MarkovRegression(x.dropna().to_numpy() * SCALE, k_regimes=2, trend="c",
                                    switching_variance=True)
    return np.asarray(model.filter(np.asarray(params)).filtered_marginal_probabilities)[:, 1]


# --- the model finds the regimes -------------------------------------------------------------------


def test_stress_block_is_detected(series: pd.Series, fitted: RegimeFit) -> None:
    assert fitted.n_obs == len(series)
    assert fitted.fit_through == series.index[-1].date()
    assert fitted.valid_from == fitted.fit_through + dt.timedelta(days=1)
    s0, s1 = fitted.sigma2  # percent^2: true 0.25 and 9
    assert s0 < s1
    assert 0.15 < s0 < 0.4 and 4 < s1 < 16
    p = filtered_stress_prob(series, fitted)
    assert p.name == "regime.stress_prob" and p.index.equals(series.index)
    assert p.between(0, 1).all()
    stress = p.iloc[CALM1:CALM1 + STRESS]
    calm = pd.concat([p.iloc[:CALM1], p.iloc[CALM1 + STRESS + 5:]])  # 5 days for the filter to notice
    assert (stress.iloc[3:] > 0.8).mean() > 0.85  # a few days for the filter to notice the change
    assert (calm < 0.2).mean() > 0.97
    assert calm.median() < 0.05


def test_fit_uses_only_data_through(series: pd.Series) -> None:
    through = series.index[400].date()
    altered = series.copy()
    altered.iloc[401:] = altered.iloc[401:] * 5 + 0.01  # very different later data
    a, b = fit(series, through), fit(altered, through)
    assert a is not None and a == b
    assert a.n_obs == 401 and a.fit_through == through


def test_too_few_observations_or_no_variation_give_none(series: pd.Series) -> None:
    assert fit(series, series.index[99].date(), min_obs=250) is None
    flat = pd.Series(0.001, index=series.index)
    assert fit(flat, D(2030, 1, 1)) is None
    assert fit(pd.Series(np.nan, index=series.index), D(2030, 1, 1)) is None


def test_non_convergence_is_detected(series: pd.Series, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regime, "EM_ITER", 0)
    monkeypatch.setattr(regime, "MAXITER", 1)  # BFGS stops after one step: converged=False
    assert fit(series, series.index[-1].date()) is None


# --- state ordering ----------------------------------------------------------------------------------


def test_swap_is_an_involution_and_order_by_variance() -> None:
    params = (0.97, 0.2, 0.1, -0.3, 4.0, 0.3)  # state 0 is the high-variance one
    swapped = swap_states(params)
    assert swapped == pytest.approx((0.8, 0.03, -0.3, 0.1, 0.3, 4.0))
    assert swap_states(swapped) == pytest.approx(params)
    assert order_by_variance(params) == pytest.approx(swapped)
    assert order_by_variance(swapped) == swapped  # already ordered: unchanged
    # equal variances: the lower mean, then the more persistent state, is state 1 (whatever the labels)
    tie = (0.5, 0.25, 0.0, -0.1, 0.25, 0.25)
    assert order_by_variance(tie) == tie
    assert order_by_variance(swap_states(tie)) == pytest.approx(tie)
    tie2 = (0.5, 0.25, 0.0, 0.0, 0.25, 0.25)  # P(1->1) = 0.75 > P(0->0)
    assert order_by_variance(tie2) == tie2 and order_by_variance(swap_states(tie2)) == pytest.approx(tie2)


def test_fit_orders_states_when_statsmodels_labels_high_variance_zero(
    series: pd.Series, fitted: RegimeFit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start statsmodels from label-swapped points so that its optimum has sigma2[0] > sigma2[1]."""
    original = regime._start_candidates

    def swapped_starts(model, y):
        return [np.array(swap_states(s)) for s in original(model, y)]

    # precondition: statsmodels itself now returns the high-variance state as state 0
    y = series.to_numpy() * SCALE
    model = regime._model(y)
    raw = model.fit(start_params=swapped_starts(model, y)[0], cov_type="none", em_iter=regime.EM_ITER,
                    maxiter=regime.MAXITER)
    assert raw.params[4] > raw.params[5]

    monkeypatch.setattr(regime, "_start_candidates", swapped_starts)
    relabelled = fit(series, series.index[-1].date())
    assert relabelled is not None
    assert relabelled.sigma2[0] < relabelled.sigma2[1]
    assert relabelled.params == pytest.approx(fitted.params, rel=1e-3, abs=1e-4)
    assert relabelled.params == pytest.approx(swap_states(raw.params), rel=1e-3, abs=1e-4)
    # the stress probability is 1 - statsmodels' unpermuted P(state 1)
    ours = filtered_stress_prob(series, relabelled).to_numpy()
    unpermuted = sm_filtered(series, raw.params)
    np.testing.assert_allclose(ours, 1 - unpermuted, atol=1e-9)
    np.testing.assert_allclose(ours, filtered_stress_prob(series, fitted).to_numpy(), atol=1e-3)


params_strategy = st.tuples(
    st.floats(0.05, 0.995), st.floats(0.005, 0.95),  # p[0->0], p[1->0]
    st.floats(-1, 1), st.floats(-1, 1),  # const
    st.floats(0.05, 20), st.floats(0.05, 20),  # sigma2 (percent^2)
)


@settings(max_examples=40, deadline=None)
@given(params=params_strategy)
def test_stress_prob_does_not_depend_on_labels(params) -> None:
    """Property: a fit and its label-swapped twin give the same stress probability once ordered."""
    x = blocks(seed=7).iloc[250:420]
    a = RegimeFit(D(2022, 1, 1), order_by_variance(params), 100, -1.0)
    b = RegimeFit(D(2022, 1, 1), order_by_variance(swap_states(params)), 100, -1.0)
    assert a.sigma2[0] <= a.sigma2[1]
    np.testing.assert_allclose(filtered_stress_prob(x, a), filtered_stress_prob(x, b), atol=1e-9)
    # and the probability of the high-variance state is 1 - that of the other labelling's state 1
    if order_by_variance(params) != tuple(params):  # statsmodels' state 1 is the calm one
        np.testing.assert_allclose(filtered_stress_prob(x, a), 1 - sm_filtered(x, params), atol=1e-9)
    else:
        np.testing.assert_allclose(filtered_stress_prob(x, a), sm_filtered(x, params), atol=1e-9)


# --- serialisation -----------------------------------------------------------------------------------


def test_json_round_trip(fitted: RegimeFit) -> None:
    text = fitted.to_json()
    stored = json.loads(text)
    assert stored["param_names"] == list(PARAM_NAMES) and stored["scale"] == 100.0
    back = RegimeFit.from_json(text)
    assert back == fitted  # floats round-trip exactly
    assert isinstance(back.fit_through, dt.date) and isinstance(back.params, tuple)
    # a record without valid_from (the four documented fields) defaults to the day after fit_through
    legacy = {k: stored[k] for k in ("fit_through", "params", "n_obs", "loglike")}
    assert RegimeFit.from_dict(legacy).valid_from == fitted.fit_through + dt.timedelta(days=1)
    with pytest.raises(ValueError, match="order"):
        RegimeFit.from_dict({**stored, "param_names": list(reversed(PARAM_NAMES))})
    with pytest.raises(ValueError, match="x1"):
        RegimeFit.from_dict({**stored, "scale": 1.0})
    with pytest.raises(ValueError):
        RegimeFit(D(2024, 1, 1), (0.9, 0.1), 10, 0.0)


# --- refit schedule ----------------------------------------------------------------------------------


def _fit_for(fit_through: dt.date, valid_from: dt.date | None = None) -> RegimeFit:
    return RegimeFit(fit_through, (0.95, 0.1, 0.0, 0.0, 0.3, 4.0), 300, -1.0, valid_from)


@pytest.mark.parametrize(
    ("last", "as_of", "due"),
    [
        (None, D(2024, 3, 5), True),
        (_fit_for(D(2024, 2, 29), D(2024, 3, 1)), D(2024, 3, 1), False),  # made this month
        (_fit_for(D(2024, 2, 29), D(2024, 3, 1)), D(2024, 3, 29), False),
        (_fit_for(D(2024, 2, 29), D(2024, 3, 1)), D(2024, 4, 1), True),  # new month
        (_fit_for(D(2024, 2, 29), D(2024, 3, 1)), D(2024, 2, 29), False),  # as_of before the fit
        (_fit_for(D(2023, 12, 29), D(2024, 1, 2)), D(2024, 2, 1), True),
        (_fit_for(D(2023, 11, 30), D(2023, 12, 1)), D(2024, 1, 2), True),  # across a year end
        (_fit_for(D(2024, 3, 15), D(2024, 3, 15)), D(2025, 3, 3), True),  # same month, next year
        (_fit_for(D(2024, 2, 29)), D(2024, 3, 4), False),  # default valid_from 3-01: March's fit
        (_fit_for(D(2024, 2, 28)), D(2024, 3, 1), True),  # default valid_from 2-29: February's
        (_fit_for(D(2024, 2, 28)), D(2024, 2, 29), False),
    ],
)
def test_refit_due(last: RegimeFit | None, as_of: dt.date, due: bool) -> None:
    assert refit_due(last, as_of) is due


def test_current_fit(series: pd.Series, monkeypatch: pytest.MonkeyPatch) -> None:
    x = series.iloc[:420]
    first_of_month = D(2022, 8, 1)  # a Monday, inside the calm tail
    assert refit_due(None, first_of_month)
    f = current_fit(x, first_of_month, None)
    assert f is not None
    assert f.valid_from == first_of_month and f.fit_through == D(2022, 7, 29)  # data through Friday
    assert f == fit(x, D(2022, 7, 31))
    assert current_fit(x, D(2022, 8, 2), f) is f  # not due again this month
    # a failed refit keeps the last fit for the month, marked so that it is not retried daily
    monkeypatch.setattr(regime, "fit", lambda *a, **k: None)
    kept = current_fit(x, D(2022, 9, 1), f)
    assert kept is not None and kept.params == f.params and kept.valid_from == D(2022, 9, 1)
    assert not refit_due(kept, D(2022, 9, 2))
    assert current_fit(x, D(2022, 9, 1), None) is None


# --- point in time -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short() -> pd.Series:
    """~9 months of business days, stress block in month 7; with min_obs=120 about 4 monthly refits."""
    rng = np.random.default_rng(3)
    r = np.concatenate([rng.normal(0, 0.005, 140), rng.normal(0, 0.03, 25), rng.normal(0, 0.005, 35)])
    return pd.Series(r, index=pd.bdate_range("2022-01-03", periods=len(r)))


@pytest.fixture(scope="module")
def short_history(short: pd.Series) -> pd.Series:
    return stress_prob_history(short, short.index[0].date(), short.index[-1].date(), min_obs=120)


def test_history_uses_the_month_fit_and_data_to_date(short: pd.Series, short_history: pd.Series) -> None:
    h = short_history
    assert h.index.equals(short.index)
    first_fit_day = short.index[short.index.to_period("M") == "2022-07"][0]  # 2022-07-01
    assert short.loc[:first_fit_day].iloc[:-1].count() >= 120 > short.loc[:"2022-05-31"].count()
    assert h.loc[:"2022-06-30"].isna().all() and h.loc["2022-07-01":].notna().all()
    # a day in August: the fit made on August's first trading day with data through July (warm
    # started from July's fit, as the service does), then the filter over the data up to that day
    day = pd.Timestamp("2022-08-17")
    july = fit(short, D(2022, 6, 30), min_obs=120)
    august = fit(short, D(2022, 7, 31), min_obs=120, warm_start=july.params)
    assert august is not None and august.fit_through == D(2022, 7, 29)
    assert h[day] == filtered_stress_prob(short.loc[:day], august).iloc[-1]
    assert h.loc["2022-07-20":"2022-08-10"].max() > 0.8  # the stress block


@pytest.mark.parametrize("cut", ["2022-07-01", "2022-07-29", "2022-08-01", "2022-08-12", "2022-09-30"])
def test_no_look_ahead(short: pd.Series, short_history: pd.Series, cut: str) -> None:
    """Values up to day D do not change when (very different) data after D are appended."""
    cut_ts = pd.Timestamp(cut)
    start = short.index[0].date()
    truncated = stress_prob_history(short.loc[:cut_ts], start, cut_ts.date(), min_obs=120)
    pd.testing.assert_series_equal(truncated, short_history.loc[:cut_ts])
    if cut_ts < short.index[-1]:
        other = short.copy()
        later = other.index > cut_ts
        other[later] = np.random.default_rng(9).normal(0, 0.05, later.sum())  # a crash instead
        replayed = stress_prob_history(other, start, short.index[-1].date(), min_obs=120)
        pd.testing.assert_series_equal(replayed.loc[:cut_ts], short_history.loc[:cut_ts])


def test_filtered_not_smoothed(series: pd.Series, fitted: RegimeFit) -> None:
    ours = filtered_stress_prob(series, fitted)
    model = regime._model(series.to_numpy() * SCALE)
    params = np.asarray(fitted.params)
    np.testing.assert_allclose(ours, model.filter(params).filtered_marginal_probabilities[:, 1], atol=1e-12)
    smoothed = model.smooth(params).smoothed_marginal_probabilities[:, 1]
    # the smoothed probability already "knows" the stress block before it starts: it looks ahead
    before = slice(CALM1 - 3, CALM1 + 3)
    assert np.max(np.abs(smoothed[before] - ours.iloc[before].to_numpy())) > 0.3
    assert np.max(np.abs(smoothed - ours.to_numpy())) > 0.3
    assert smoothed[-1] == pytest.approx(ours.iloc[-1], abs=1e-9)  # equal only at the last day
    # each value depends only on the data up to its day: filtering the prefix gives the same value
    for t in (CALM1 - 2, CALM1 + 1, CALM1 + STRESS + 3):
        assert filtered_stress_prob(series.iloc[: t + 1], fitted).iloc[-1] == pytest.approx(ours.iloc[t])


# --- missing data, index types -----------------------------------------------------------------------


def test_nan_gaps(series: pd.Series, fitted: RegimeFit) -> None:
    holes = series.copy()
    holes.iloc[[0, 5, 6, 7, 200, 320, 321, 500, len(holes) - 1]] = np.nan
    holes.iloc[100:110] = np.nan
    f = fit(holes, holes.index[-1].date())
    assert f is not None and f.n_obs == holes.count()
    p = filtered_stress_prob(holes, f)
    assert p.index.equals(holes.index)
    assert p.isna().equals(holes.isna())
    assert p.dropna().between(0, 1).all()
    np.testing.assert_allclose(p.dropna(), filtered_stress_prob(holes.dropna(), f), atol=1e-12)
    assert (p.iloc[CALM1 + 5:CALM1 + STRESS].dropna() > 0.8).mean() > 0.8
    assert filtered_stress_prob(pd.Series(np.nan, index=holes.index[:5]), f).isna().all()
    x = holes.iloc[:400]
    h = stress_prob_history(x, D(2021, 11, 1), D(2022, 3, 31), min_obs=250)
    days = x.loc["2021-11-01":"2022-03-31"].index
    assert h.index.equals(days)
    month_start = pd.Series(days, index=days).groupby(days.to_period("M")).transform("min")
    has_fit = np.array([x[x.index < m].count() >= 250 for m in month_start])
    assert not has_fit.all() and has_fit.any()  # the first fit happens inside the range
    assert h.notna().equals(pd.Series(has_fit & x[days].notna().to_numpy(), index=days))


def test_date_object_index_and_unsorted_input(series: pd.Series, fitted: RegimeFit) -> None:
    x = series.iloc[:80]
    as_dates = pd.Series(x.to_numpy(), index=[t.date() for t in x.index])
    p = filtered_stress_prob(as_dates, fitted)
    assert list(p.index) == list(as_dates.index)
    np.testing.assert_allclose(p, filtered_stress_prob(x, fitted))
    shuffled = x.iloc[::-1]
    np.testing.assert_allclose(filtered_stress_prob(shuffled, fitted).sort_index(),
                               filtered_stress_prob(x, fitted))


def test_microcap_excess_returns() -> None:
    frame = pd.DataFrame({"index.microcap.close": [100.0, 102.0, math.nan, 104.0],
                          "index.all_a.close": [10.0, 10.1, 10.2, 10.2]})
    x = regime.microcap_excess_returns(frame)
    assert x.iloc[1] == pytest.approx(0.02 - 0.01)
    assert math.isnan(x.iloc[0]) and math.isnan(x.iloc[2]) and math.isnan(x.iloc[3])


@settings(max_examples=40, deadline=None)
@given(st.floats(0.5, 0.995), st.floats(0.005, 0.5), st.floats(-1, 1), st.floats(-1, 1),
       st.floats(0.05, 2), st.floats(2.1, 20), st.integers(1, 300), st.integers(0, 10_000))
def test_numpy_filter_equals_statsmodels(p00, p10, c0, c1, s0, s1, n, seed):
    from signals.regime import _filtered_high_prob, _filtered_high_prob_statsmodels

    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1.5, n)
    y[rng.random(n) < 0.05] *= 8  # some outliers
    params = (p00, p10, c0, c1, s0, s1)
    np.testing.assert_allclose(_filtered_high_prob(y, params),
                               _filtered_high_prob_statsmodels(y, params), rtol=1e-9, atol=1e-12)


# --- batched filter (issue 15): every month's fit filtered in one pass, equal to one pass per month --


def _filtered_before15(y: np.ndarray, params) -> np.ndarray:
    """The single filter as it was before issue 15 (math.exp inside the loop), verbatim."""
    p00, p10, c0, c1, s0, s1 = (float(v) for v in params)
    out = np.empty(len(y))
    l0 = -0.5 * (np.log(2 * np.pi * s0) + (y - c0) ** 2 / s0)
    l1 = -0.5 * (np.log(2 * np.pi * s1) + (y - c1) ** 2 / s1)
    prob1 = (1.0 - p00) / (1.0 - p00 + p10)
    for t in range(len(y)):
        m = max(l0[t], l1[t])
        a0 = (1.0 - prob1) * math.exp(l0[t] - m)
        a1 = prob1 * math.exp(l1[t] - m)
        filtered = a1 / (a0 + a1)
        out[t] = filtered
        prob1 = (1.0 - filtered) * (1.0 - p00) + filtered * (1.0 - p10)
    return np.clip(out, 0.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_filter_equals_one_filter_per_fit(seed: int) -> None:
    from signals.regime import BATCH_DAYS, _filtered_high_prob, _filtered_high_prob_many

    rng = np.random.default_rng(seed)
    n = 2 * BATCH_DAYS + 37  # several blocks, the last one partial
    y = rng.normal(0, 1.5, n)
    y[rng.random(n) < 0.05] *= 8
    params = [(rng.uniform(0.5, 0.995), rng.uniform(0.005, 0.5), rng.uniform(-1, 1), rng.uniform(-1, 1),
               rng.uniform(0.05, 2), rng.uniform(2.1, 20)) for _ in range(25)]
    ends = [int(e) for e in rng.integers(0, n + 1, 25)] + [n, 0, BATCH_DAYS, BATCH_DAYS + 1]
    params += params[:4]
    batched = _filtered_high_prob_many(y, params, ends)
    assert len(batched) == len(params)
    worst = 0.0
    for got, p, end in zip(batched, params, ends, strict=True):
        one = _filtered_high_prob(y[:end], p)
        assert got.shape == (end,)
        np.testing.assert_array_equal(got, one)  # the same operations: exactly equal
        if end:
            worst = max(worst, float(np.max(np.abs(one - _filtered_before15(y[:end], p)))))
    assert worst <= 1e-12  # and equal to the filter before issue 15 (0.0 where numpy's exp is libm's)
    assert _filtered_high_prob_many(y, [], []) == []


def test_filter_runs_equal_one_filter_per_run(series: pd.Series, fitted: RegimeFit) -> None:
    x = series.copy()
    x.iloc[[0, 5, 6, 200, 320]] = np.nan  # gaps: dropped by the filter, NaN in the output
    other = dataclasses.replace(fitted, params=swap_states(fitted.params))  # another fit
    months = pd.Series(x.index, index=x.index).groupby(x.index.to_period("M"))
    runs = [(fitted if i % 2 else other, list(days)) for i, (_, days) in enumerate(months)]
    runs.append((fitted, [pd.Timestamp("2030-01-01")]))  # a day absent from the series: NaN
    got = regime.filtered_stress_prob_runs(x, runs)
    for (f, days), values in zip(runs, got, strict=True):
        want = filtered_stress_prob(x.loc[:days[-1]], f).reindex(pd.DatetimeIndex(days)).to_numpy()
        np.testing.assert_array_equal(values, want)
    assert np.isnan(got[-1]).all() and np.isnan(got[0][0])


def _history_per_month(x: pd.Series, start, end, min_obs: int) -> pd.Series:
    """stress_prob_history as before issue 15: each month filtered from the series start alone."""
    s = x[x.index <= pd.Timestamp(end)]
    in_range = s.index[s.index >= pd.Timestamp(start)]
    out = pd.Series(np.nan, index=in_range)
    previous = None
    for m in pd.unique(s.index.to_period("M")):
        first = s.index[s.index.to_period("M") == m][0]
        f = fit(s, first.date() - dt.timedelta(days=1), min_obs, valid_from=first.date(),
                warm_start=previous.params if previous else None)
        previous = f or previous
        days = in_range[in_range.to_period("M") == m]
        if previous is not None and len(days):
            out[days] = filtered_stress_prob(s.loc[:days[-1]], previous)[days].to_numpy()
    return out


def test_history_equals_the_per_month_computation(short: pd.Series, short_history: pd.Series) -> None:
    want = _history_per_month(short, short.index[0].date(), short.index[-1].date(), 120)
    assert short_history.notna().sum() > 40
    np.testing.assert_array_equal(short_history.to_numpy(), want.to_numpy())


def test_filter_fast_path_equals_the_general_path(series: pd.Series, fitted: RegimeFit) -> None:
    """A sorted, unique, normalised DatetimeIndex (the cycle's frames) skips the re-labelling; the
    values are those of the general path (date objects, any order)."""
    x = series.copy()
    x.iloc[[0, 5, 6, 200, 320, len(x) - 1]] = np.nan
    fast = filtered_stress_prob(x, fitted)
    general = filtered_stress_prob(pd.Series(x.to_numpy(), index=[t.date() for t in x.index]), fitted)
    np.testing.assert_array_equal(fast.to_numpy(), general.to_numpy())
    assert fast.index.equals(x.index) and fast.name == regime.SIGNAL
    assert filtered_stress_prob(x.iloc[:0], fitted).empty
    assert filtered_stress_prob(x.iloc[:1], fitted).isna().all()
