"""Tests for the signal functions in ``signals`` (SIGNALS.md).

Part 1: one hand-computed fixture per registered signal (tiny frames, small windows passed as
params, expected numbers written out with the arithmetic in a comment).
Part 2: hypothesis properties for every registered signal on random frames with NaN holes and
missing stretches: shape/dtype, no invented values, bounds, no look-ahead, window sufficiency.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import signals
from signals.common import min_obs, pct_rank
from signals.regime import RegimeFit

N = math.nan
SQRT252 = 15.874507866387544  # sqrt(252)
REL = 1e-9
ABS = 1e-12  # values that are 0 by hand come out as +-1e-17 in floats


# --------------------------------------------------------------------------- helpers


def make_frame(columns: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """A wide frame on consecutive business days (stand-in for trading days)."""
    n = len(next(iter(columns.values())))
    assert all(len(v) == n for v in columns.values())
    index = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=n), name="date")
    return pd.DataFrame({k: [float(x) for x in v] for k, v in columns.items()}, index=index)


def params_for(sig: signals.Signal, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The family parameters of ``sig`` (defaults) with ``overrides`` applied."""
    return signals.resolved_params({sig.family: dict(overrides or {})})[sig.family]


def same(a: float, b: float) -> bool:
    """Float equality for signal values: both NaN, or close (rel 1e-9, abs 1e-12)."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)


def same_ctx(a: Any, b: Any) -> bool:
    """Context equality where missing (None / NaN) equals missing."""
    a = None if a is None or (isinstance(a, float) and math.isnan(a)) else a
    b = None if b is None or (isinstance(b, float) and math.isnan(b)) else b
    return a == b


def assert_series(actual: pd.Series, expected: Sequence[float]) -> None:
    got = [float(x) for x in actual]
    assert len(got) == len(expected)
    bad = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected, strict=True)) if not same(g, e)]
    assert not bad, f"(row, got, expected): {bad}\nfull: {got}"


# --------------------------------------------------------------------------- part 1: fixtures


@dataclass(frozen=True)
class Case:
    columns: dict[str, list[float]]
    expected: list[float]
    params: dict[str, Any] = field(default_factory=dict)  # family param overrides
    context: list[Any] | None = None  # expected context (None entries = no context)


A2000, AALL, A300 = "index.csi2000.amount", "index.all_a.amount", "index.csi300.amount"
CALL, CMICRO, C300 = "index.all_a.close", "index.microcap.close", "index.csi300.close"
GOV3, CRED3 = "yield.gov.3y", "yield.credit.3y"

# Micro-cap closes with daily returns +1%, -1%, +3%, +1%, +2%, (gap), -, +2%:
# 100 -> 101 -> 99.99 -> 102.9897 -> 104.019597 -> 106.09998894 -> NaN -> 100 -> 102
VOL_CLOSES = [100, 101, 99.99, 102.9897, 104.019597, 106.09998894, N, 100, 102]
# vol_days=3 (min_obs(3) = ceil(2.4) = 3, so all three returns must be present):
#   t3: r = [.01, -.01, .03]  mean .01, dev 0,-.02,.02 -> var (.0004+.0004)/2 = .0004 -> std .02
#   t4: r = [-.01, .03, .01]  mean .01, dev -.02,.02,0 -> std .02
#   t5: r = [.03, .01, .02]   mean .02, dev .01,-.01,0 -> var .0002/2 = .0001 -> std .01
#   t6, t7: returns at t6 and t7 are NaN (close t6 missing); t8: r = [NaN, NaN, .02] -> NaN
VOL_EXPECTED = [N, N, N, 0.02 * SQRT252, 0.02 * SQRT252, 0.01 * SQRT252, N, N, N]
#              0.31749015732775...  0.31749...  0.15874507866387...


def _vol_case(series: str) -> Case:
    return Case({series: VOL_CLOSES}, VOL_EXPECTED, {"vol_days": 3, "periods_per_year": 252})


CASES: dict[str, Case] = {
    # ---- turnover (SIGNALS.md section 2) -------------------------------------------------
    # share = csi2000 / all_a per day; NaN if either is missing
    "turnover.csi2000_share": Case(
        {A2000: [10, 20, N, 30, 25], AALL: [100, 100, 100, N, 50]},
        # 10/100, 20/100, NaN/100, 30/NaN, 25/50
        [0.1, 0.2, N, N, 0.5],
    ),
    # mean_days=5 -> min_obs(5) = ceil(4.0) = 4 present shares needed
    "turnover.csi2000_share_20d": Case(
        {A2000: [10, 20, 30, 40, 40, 50, 60, 20, 30],
         AALL: [100, 100, 100, N, 100, 100, 100, 100, 100]},
        # shares .1 .2 .3 NaN .4 .5 .6 .2 .3
        # t3: rows 0-3 hold 3 present -> NaN
        # t4: (.1+.2+.3+.4)/4 = .25      t5: (.2+.3+.4+.5)/4 = .35
        # t6: (.3+.4+.5+.6)/4 = .45      t7: (.4+.5+.6+.2)/4 = .425
        # t8: (.4+.5+.6+.2+.3)/5 = .4
        [N, N, N, N, 0.25, 0.35, 0.45, 0.425, 0.4],
        {"mean_days": 5},
    ),
    # mean_days=2 (min_obs 2), pctile_days=5 (min_obs 4). all_a = 16 so shares are a/16 (exact)
    "turnover.csi2000_share_pctile_1y": Case(
        {A2000: [2, 6, 4, 8, 2, 10, 6, 4, N, 6, 8], AALL: [16] * 11},
        # 2-day mean of a (in 1/16): t1 4, t2 5, t3 6, t4 5, t5 6, t6 8, t7 5, t8 NaN, t9 NaN,
        # t10 7.  pctile = share of window values <= today's, today included:
        # t3: window t0..t3 has 3 means < 4 -> NaN
        # t4: [NaN,4,5,6,5] -> <=5: 4,5,5 -> 3/4 = .75
        # t5: [4,5,6,5,6]   -> 5/5 = 1      t6: [5,6,5,6,8] -> 5/5 = 1
        # t7: [6,5,6,8,5]   -> <=5: 5,5 -> 2/5 = .4
        # t8: today missing -> NaN; t9: mean needs both shares -> NaN
        # t10: [8,5,NaN,NaN,7] -> 3 present < 4 -> NaN
        [N, N, N, N, 0.75, 1.0, 1.0, 0.4, N, N, N],
        {"mean_days": 2, "pctile_days": 5},
    ),
    # mean_days=5 (min_obs 4) of csi2000 / csi300
    "turnover.csi2000_vs_csi300": Case(
        {A2000: [30, 60, 90, 40, 50, 60, 90], A300: [30, 30, 45, 40, N, 30, 30]},
        # ratios 1 2 2 1 NaN 2 3
        # t3: (1+2+2+1)/4 = 1.5 (4 of 4 rows present)  t4: (1+2+2+1)/4 = 1.5
        # t5: (2+2+1+2)/4 = 1.75                       t6: (2+1+2+3)/4 = 2.0
        [N, N, N, 1.5, 1.5, 1.75, 2.0],
        {"mean_days": 5},
    ),
    # mean_days=2, high_days=5 (min_obs 4): 2-day mean share / its 5-day high - 1
    "turnover.csi2000_share_drop_60d": Case(
        {A2000: [4, 8, 12, 4, 8, 2, 6, 10], AALL: [16] * 8},
        # 2-day means (1/16): NaN 6 10 8 6 5 4 8
        # t3: 3 means in window < 4 -> NaN
        # t4: high(NaN,6,10,8,6) = 10 -> 6/10 - 1 = -.4
        # t5: high(6,10,8,6,5) = 10 -> 5/10 - 1 = -.5
        # t6: high(10,8,6,5,4) = 10 -> 4/10 - 1 = -.6
        # t7: high(8,6,5,4,8) = 8 -> 8/8 - 1 = 0
        [N, N, N, N, -0.4, -0.5, -0.6, 0.0],
        {"mean_days": 2, "high_days": 5},
    ),
    # ---- market (section 3) ----------------------------------------------------------------
    # short_days=2 (min_obs 2) mean / long_days=5 (min_obs 4) mean
    "market.amount_ratio_20_120": Case(
        {AALL: [100, 200, 300, 400, 500, 600, N, 300, 200]},
        # t3: (300+400)/2 = 350 / ((100+200+300+400)/4 = 250) = 1.4
        # t4: 450 / (1500/5 = 300) = 1.5
        # t5: 550 / (2000/5 = 400) = 1.375
        # t6: short mean has 1 of 2 -> NaN;  t7: (NaN, 300) -> NaN
        # t8: (300+200)/2 = 250 / ((500+600+300+200)/4 = 400) = .625
        [N, N, N, 1.4, 1.5, 1.375, N, N, 0.625],
        {"short_days": 2, "long_days": 5},
    ),
    # return_days=3: close[t] / close[t-3] - 1
    "market.return_20d": Case(
        {CALL: [100, 110, 120, 90, 99, N, 108, 79.2, 100]},
        # t3: 90/100-1 = -.1   t4: 99/110-1 = -.1   t5: NaN
        # t6: 108/90-1 = .2    t7: 79.2/99-1 = -.2  t8: 100/NaN -> NaN
        [N, N, N, -0.1, -0.1, N, 0.2, -0.2, N],
        {"return_days": 3},
    ),
    # ---- volatility (section 4): std (ddof=1) of daily returns x sqrt(252) ------------------
    "microcap.vol_20d": _vol_case(CMICRO),
    "csi300.vol_20d": _vol_case(C300),
    "csi500.vol_20d": _vol_case("index.csi500.close"),
    "csi1000.vol_20d": _vol_case("index.csi1000.close"),
    "csi2000.vol_20d": _vol_case("index.csi2000.close"),
    "microcap.vol_ratio_csi300": Case(
        {CMICRO: VOL_CLOSES[:6] + [N],
         # CSI 300 returns +1%, 0, +2%, +1%, 0, +0.912...%
         C300: [100, 101, 101, 103.02, 104.0502, 104.0502, 105]},
        # micro-cap std (see VOL_CLOSES): t3 .02, t4 .02, t5 .01
        # CSI 300: t3 std(.01,0,.02) = .01; t4 std(0,.02,.01) = .01; t5 std(.02,.01,0) = .01
        # ratio: 2, 2, 1; t6 micro-cap close missing -> NaN
        [N, N, N, 2.0, 2.0, 1.0, N],
        {"vol_days": 3},
    ),
    # vol_days=3, median_days=3 (min_obs 3): vol / rolling median of vol
    "microcap.vol_spike": Case(
        # returns +1%, -1%, +3%, +1%, +2%, 0, +4%, -4%
        {CMICRO: [100, 101, 99.99, 102.9897, 104.019597, 106.09998894, 106.09998894,
                  110.3439884976, 105.930228957696]},
        # vol (x sqrt252 cancels): t3 .02, t4 .02, t5 .01, t6 std(.01,.02,0) = .01,
        #   t7 std(.02,0,.04) = .02, t8 std(0,.04,-.04) = sqrt(.0032/2) = .04
        # t5: .01 / median(.02,.02,.01) = .01/.02 = .5
        # t6: .01 / median(.02,.01,.01) = 1      t7: .02 / median(.01,.01,.02) = 2
        # t8: .04 / median(.01,.02,.04) = 2
        [N, N, N, N, N, 0.5, 1.0, 2.0, 2.0],
        {"vol_days": 3, "median_days": 3},
    ),
    # ---- drawdown (section 7) --------------------------------------------------------------
    "microcap.drawdown": Case(
        {CMICRO: [N, 100, 110, 99, N, 121, 108.9, 96.8]},
        # running max 100, 110, 110, -, 121, 121, 121
        # 100/100-1 = 0, 0, 99/110-1 = -.1, NaN, 0, 108.9/121-1 = -.1, 96.8/121-1 = -.2
        [N, 0.0, 0.0, -0.1, N, 0.0, -0.1, -0.2],
    ),
    "microcap.rel_drawdown_csi300": Case(
        {CMICRO: [100, 120, 90, 150, 120, 96], C300: [100, 100, 100, 125, N, 100]},
        # ratio 1, 1.2, .9, 1.2, NaN, .96; running max 1, 1.2, 1.2, 1.2, -, 1.2
        # 0, 0, .9/1.2-1 = -.25, 1.2/1.2-1 = 0 (micro-cap itself at a new high), NaN,
        # .96/1.2-1 = -.2
        [0.0, 0.0, -0.25, 0.0, N, -0.2],
    ),
    # ---- credit (section 1): spread bp = (credit - gov) x 100 ------------------------------
    "credit.spread_bp": Case(
        {CRED3: [2.85, 2.90, N, 3.10], GOV3: [2.35, 2.30, 2.40, N]},
        # (2.85-2.35)*100 = 50, (2.90-2.30)*100 = 60, NaN, NaN
        [50.0, 60.0, N, N],
    ),
    # pctile_days=5 (min_obs 4); gov 2.5, spreads 60 50 NaN 55 40 70 55 NaN 45 bp
    "credit.spread_pctile_10y": Case(
        {CRED3: [3.10, 3.00, N, 3.05, 2.90, 3.20, 3.05, N, 2.95], GOV3: [2.5] * 9},
        # t3: [60,50,NaN,55] 3 present -> NaN
        # t4: [60,50,NaN,55,40] -> <=40: 1 of 4 = .25
        # t5: [50,NaN,55,40,70] -> 4/4 = 1
        # t6: [NaN,55,40,70,55] -> <=55: 55,40,55 -> 3/4 = .75
        # t7: today missing -> NaN
        # t8: [40,70,55,NaN,45] -> <=45: 40,45 -> 2/4 = .5
        [N, N, N, N, 0.25, 1.0, 0.75, N, 0.5],
        {"pctile_days": 5},
    ),
    # change_days=2: spread[t] - spread[t-2]
    "credit.spread_chg_20d": Case(
        {CRED3: [3.00, 3.05, 3.02, 3.10, N, 3.20, 3.15], GOV3: [2.5] * 7},
        # spreads 50 55 52 60 NaN 70 65
        # t2: 52-50 = 2, t3: 60-55 = 5, t4: NaN, t5: 70-60 = 10, t6: 65-NaN = NaN
        [N, N, 2.0, 5.0, N, 10.0, N],
        {"change_days": 2},
    ),
    # the credit.spread_pctile_10y case above, lagged by lag_days=2
    "credit.spread_pctile_10y_lag60": Case(
        {CRED3: [3.10, 3.00, N, 3.05, 2.90, 3.20, 3.05, N, 2.95], GOV3: [2.5] * 9},
        # pctile: N N N N .25 1 .75 N .5  -> shifted by 2 rows
        [N, N, N, N, N, N, 0.25, 1.0, 0.75],
        {"pctile_days": 5, "lag_days": 2},
    ),
    # ---- rotation (section 5) --------------------------------------------------------------
    # theme_days=2: theme 2-day return - all_a 2-day return; max over themes, context = its id
    "rotation.hot_theme_excess": Case(
        {CALL: [100, 100, 110, 120, 121, 125],
         "theme.ai.close": [50, 55, 60, 66, N, N],
         "theme.soe.close": [10, 10, 11, 13, 13.31, N]},
        # market: t2 110/100-1 = .1, t3 120/100-1 = .2, t4 121/110-1 = .1
        # ai:     t2 60/50-1 = .2 (excess .1), t3 66/55-1 = .2 (excess 0), t4 NaN
        # soe:    t2 11/10-1 = .1 (excess 0), t3 13/10-1 = .3 (excess .1),
        #         t4 13.31/11-1 = .21 (excess .11)
        # t5: every theme missing -> NaN, no context
        [N, N, 0.1, 0.1, 0.11, N],
        {"theme_days": 2},
        context=[None, None, "ai", "soe", "soe", None],
    ),
    # microcap_days=2: micro-cap 2-day return - all_a 2-day return
    "rotation.microcap_excess_10d": Case(
        {CMICRO: [100, 100, 95, 90, N, 99], CALL: [100, 100, 100, 100, 105, 110]},
        # t2: -.05 - 0 = -.05; t3: -.1 - 0 = -.1; t4: NaN; t5: (99/90-1 = .1) - (110/100-1 = .1) = 0
        [N, N, -0.05, -0.1, N, 0.0],
        {"microcap_days": 2},
    ),
    # largecap_days=2: CSI 300 2-day return - micro-cap 2-day return
    "rotation.largecap_minus_microcap_20d": Case(
        {C300: [100, 100, 105, 110, 115.5], CMICRO: [100, 100, 95, 90, 85.5]},
        # t2: .05 - (-.05) = .1; t3: .1 - (-.1) = .2; t4: (115.5/105-1 = .1) - (85.5/95-1 = -.1) = .2
        [N, N, 0.1, 0.2, 0.2],
        {"largecap_days": 2},
    ),
    # ---- funds (section 6): change from the previous report, carried carry_days rows ------
    "funds.smallcap_share_mean_chg": Case(
        {"funds.smallcap_share_mean": [N, 0.40, N, N, N, 0.36, N, 0.38, N, N, N, N, N]},
        # reports t1 .40, t5 .36, t7 .38 -> changes t5 .36-.40 = -.04, t7 .38-.36 = +.02
        # carried 4 rows: t6 = -.04; t8..t11 = .02; t12 beyond carry -> NaN
        # t1 has no previous report -> NaN
        [N, N, N, N, N, -0.04, -0.04, 0.02, 0.02, 0.02, 0.02, 0.02, N],
        {"carry_days": 4},
    ),
    "funds.smallcap_value_total_chg": Case(
        {"funds.smallcap_value_total": [N, 100e9, N, 90e9, N, N, N, 99e9]},
        # t3: 90/100-1 = -.1 (previous report 2 rows earlier), carried t4, t5; t6 NaN;
        # t7: the previous report (t3) is 4 > carry_days rows earlier -> no change measurable: NaN
        [N, N, N, -0.1, -0.1, -0.1, N, N],
        {"carry_days": 2},
    ),
}


# Signals with their own test module: the regime model (below and test_regime.py) and the
# drawdown-risk model, which is computed from other signals' values, not from input series
# (test_risk.py); the input-frame property tests below do not apply to the latter.
DERIVED = {"risk.drawdown_prob"}


def test_every_registered_signal_has_a_hand_computed_case():
    assert set(CASES) | {"regime.stress_prob"} | DERIVED == set(signals.REGISTRY)


# regime: a fixed fit (percent units): p00 = .9, p10 = .1, both means 0, sigma2 = 1 (calm) and 4
FIXED_FIT = RegimeFit(fit_through=dt.date(2020, 1, 1), params=(0.9, 0.1, 0.0, 0.0, 1.0, 4.0),
                      n_obs=300, loglike=0.0)


def test_regime_stress_prob_by_hand():
    # micro-cap and all-A flat: excess return 0 on t1 and t2 (t0 has no return -> NaN).
    # t1: prior = steady state (p10 / (1 - p00 + p10) = .5 each); densities at 0: N(0,1) = c,
    #     N(0,4) = c/2 -> P(high) = .5 * c/2 / (.5 * c + .5 * c/2) = 1/3
    # t2: predicted P(high) = 2/3 * (1 - .9) + 1/3 * (1 - .1) = 11/30;
    #     filtered = 11/30 * 1/2 / (19/30 * 1 + 11/30 * 1/2) = 11/49
    sig = signals.REGISTRY["regime.stress_prob"]
    frame = make_frame({"index.microcap.close": [100, 100, 100], "index.all_a.close": [50, 50, 50]})
    values, _ = sig.compute(frame, params_for(sig), FIXED_FIT)
    assert_series(values, [N, 1 / 3, 11 / 49])
    no_fit, _ = sig.compute(frame, params_for(sig), None)
    assert no_fit.isna().all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_computed(name: str):
    case = CASES[name]
    sig = signals.REGISTRY[name]
    frame = make_frame(case.columns)
    p = params_for(sig, case.params)
    values, context = sig.compute(frame, p)
    assert values.index.equals(frame.index)
    assert_series(values, case.expected)
    if case.context is None:
        assert context is None
    else:
        assert context is not None and context.index.equals(frame.index)
        got = list(context)
        assert all(same_ctx(g, e) for g, e in zip(got, case.context, strict=True)), got


def test_min_obs_is_80_percent_rounded_up():
    assert min_obs(1) == 1
    assert min_obs(2) == 2  # ceil(1.6)
    assert min_obs(3) == 3  # ceil(2.4)
    assert min_obs(5) == 4
    assert min_obs(20) == 16
    assert min_obs(250) == 200
    assert min_obs(2520) == 2016


def test_pct_rank_semantics():
    s = pd.Series([3.0, 1.0, N, 2.0, 5.0, 2.0, N, 4.0, 1.0, 6.0])
    # window 5, min_obs 4; share of present window values <= today's (today included)
    # t3: 3 present -> NaN; t4 [3,1,N,2,5] 4/4; t5 [1,N,2,5,2] <=2: 1,2,2 -> 3/4;
    # t6 today NaN; t7 [2,5,2,N,4] <=4: 3/4; t8 [5,2,N,4,1] 1/4; t9 [2,N,4,1,6] 4/4
    assert_series(pct_rank(s, 5), [N, N, N, N, 1.0, 0.75, N, 0.75, 0.25, 1.0])
    # window 1: always 1 where present
    assert_series(pct_rank(s, 1), [1.0, 1.0, N, 1.0, 1.0, 1.0, N, 1.0, 1.0, 1.0])


def test_vol_uses_periods_per_year():
    sig = signals.REGISTRY["microcap.vol_20d"]
    frame = make_frame({CMICRO: VOL_CLOSES})
    values, _ = sig.compute(frame, params_for(sig, {"vol_days": 3, "periods_per_year": 100}))
    # std .02, .02, .01 x sqrt(100) = 10
    assert_series(values, [N, N, N, 0.2, 0.2, 0.1, N, N, N])


def test_spread_bp_tenor_param_selects_columns():
    sig = signals.REGISTRY["credit.spread_bp"]
    frame = make_frame({CRED3: [3.0, 3.1], GOV3: [2.5, 2.5],
                        "yield.credit.5y": [3.4, 3.2], "yield.gov.5y": [2.6, 2.7]})
    values, _ = sig.compute(frame, params_for(sig, {"tenor": "5y"}))
    # (3.4-2.6)*100 = 80, (3.2-2.7)*100 = 50
    assert_series(values, [80.0, 50.0])


HOT_CASE = CASES["rotation.hot_theme_excess"]


def _hot_frame_with_semis() -> pd.DataFrame:
    cols = dict(HOT_CASE.columns)
    # semis: 2-day return t2 100/50-1 = 1 (excess .9), t3 1 (excess .8), t4 NaN
    cols["theme.semis.close"] = [50, 50, 100, 100, N, N]
    return make_frame(cols)


def test_hot_theme_universe_is_every_theme_by_default():
    sig = signals.REGISTRY["rotation.hot_theme_excess"]
    frame = _hot_frame_with_semis()
    p = params_for(sig, {"theme_days": 2})
    inputs = sig.resolve_inputs(frame.columns, p)
    assert inputs == [CALL, "theme.ai.close", "theme.semis.close", "theme.soe.close"]
    values, context = sig.compute(frame[inputs], p)
    # t2: max(.1, .9, 0) = .9 semis; t3: max(0, .8, .1) = .8 semis; t4: soe .11 (semis NaN)
    assert_series(values, [N, N, 0.9, 0.8, 0.11, N])
    assert [same_ctx(c, e) for c, e in zip(context, [None, None, "semis", "semis", "soe", None],
                                           strict=True)] == [True] * 6


def test_hot_theme_universe_restricted_by_themes_param():
    sig = signals.REGISTRY["rotation.hot_theme_excess"]
    frame = _hot_frame_with_semis()
    p = params_for(sig, {"theme_days": 2, "themes": ["ai", "soe"]})
    inputs = sig.resolve_inputs(frame.columns, p)
    assert inputs == [CALL, "theme.ai.close", "theme.soe.close"]
    # monitor.compute hands a glob-input signal only its resolved columns
    values, context = sig.compute(frame[inputs], p)
    assert_series(values, HOT_CASE.expected)
    assert all(same_ctx(c, e) for c, e in zip(context, HOT_CASE.context, strict=True))


def test_hot_theme_function_honours_themes_param_on_a_wider_frame():
    sig = signals.REGISTRY["rotation.hot_theme_excess"]
    frame = _hot_frame_with_semis()
    values, _ = sig.compute(frame, params_for(sig, {"theme_days": 2, "themes": ["ai", "soe"]}))
    assert_series(values, HOT_CASE.expected)  # actual: semis counted (.9, .8 at t2, t3)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("credit.")])
def test_credit_inputs_follow_tenor_param(name: str):
    sig = signals.REGISTRY[name]
    p = params_for(sig, {"tenor": "5y"})
    available = [CRED3, GOV3, "yield.credit.5y", "yield.gov.5y"]
    assert sorted(sig.resolve_inputs(available, p)) == ["yield.credit.5y", "yield.gov.5y"]


@pytest.mark.parametrize("carry_days, gap, expected", [(60, 63, N), (130, 189, N), (130, 63, -0.04),
                                                       (130, 130, -0.04)])
def test_funds_window_covers_previous_report(carry_days: int, gap: int, expected):
    # quarterly reports `gap` rows apart; the last day is carry_days-2 rows after the second
    # report. A previous report more than carry_days rows earlier (missed reports) gives NaN:
    # no change can be measured, and the declared window then agrees with the full history.
    sig = signals.REGISTRY["funds.smallcap_share_mean_chg"]
    p = params_for(sig, {"carry_days": carry_days})
    n = gap + carry_days - 1
    share = [N] * n
    share[0], share[gap] = 0.40, 0.36
    frame = make_frame({"funds.smallcap_share_mean": share})
    full = sig.compute(frame, p)[0].iloc[-1]
    assert same(full, expected)
    w = sig.window_days(p)
    short = sig.compute(frame.iloc[-w:], p)[0].iloc[-1]
    assert same(short, full)


# --------------------------------------------------------------------------- part 2: properties

INDEXES = ("csi300", "csi500", "csi1000", "csi2000", "all_a", "microcap")
CLOSE_COLS = [f"index.{c}.close" for c in INDEXES]
AMOUNT_COLS = [f"index.{c}.amount" for c in INDEXES if c != "microcap"]
TENORS = ("1y", "3y", "5y")
THEME_IDS = ("ai", "semis", "600519", "soe")
FUND_COLS = ("funds.smallcap_share_mean", "funds.smallcap_value_total")
MAX_ROWS = 400

DEFAULT_PARAMS = signals.resolved_params()
# Scaled-down windows so that long-window signals (credit 2,520 days) produce values on 400 rows.
SMALL_PARAMS = signals.resolved_params({
    "turnover": {"mean_days": 5, "pctile_days": 40, "high_days": 15},
    "market": {"return_days": 5, "short_days": 5, "long_days": 30},
    "volatility": {"vol_days": 5, "median_days": 25},
    "credit": {"pctile_days": 60, "change_days": 5, "lag_days": 15},
    "rotation": {"theme_days": 5, "microcap_days": 3, "largecap_days": 5},
    "funds": {"carry_days": 70},
})
PARAM_SETS = {"default": DEFAULT_PARAMS, "small": SMALL_PARAMS}

PCTILE = {"turnover.csi2000_share_pctile_1y", "credit.spread_pctile_10y",
          "credit.spread_pctile_10y_lag60"}
NONPOSITIVE = {"microcap.drawdown", "microcap.rel_drawdown_csi300",
               "turnover.csi2000_share_drop_60d"}
NONNEGATIVE = {n for n in signals.REGISTRY if n.endswith(".vol_20d")} | {
    "microcap.vol_ratio_csi300", "microcap.vol_spike"}
# signals that are NaN whenever a needed input is missing on the day itself (look-back 1 day, or
# documented "NaN where close / today's value is missing")
ONE_DAY = {"turnover.csi2000_share", "credit.spread_bp"}
TODAY_REQUIRED = ONE_DAY | {"credit.spread_pctile_10y", "microcap.drawdown",
                            "microcap.rel_drawdown_csi300"}

PROPERTY_SETTINGS = settings(max_examples=30, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Drawn:
    frame: pd.DataFrame
    days: list[int]  # a few row positions for the look-ahead check

    def __repr__(self) -> str:  # keep hypothesis' falsifying example readable
        f = self.frame
        return (f"Drawn(rows={len(f)}, cols={list(f.columns)}, days={self.days},\n"
                f"{f.to_string(max_rows=60)})")


@st.composite
def random_frames(draw) -> Drawn:
    n = draw(st.integers(1, MAX_ROWS))
    seed = draw(st.integers(0, 2**32 - 1))
    hole_p = draw(st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.5]))
    n_themes = draw(st.integers(0, len(THEME_IDS)))
    # whole missing stretches: (start as a fraction of the frame, length, all columns or some)
    stretches = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 300), st.booleans()),
                              max_size=4))
    days = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))
    rng = np.random.default_rng(seed)

    cols: dict[str, np.ndarray] = {}
    themes = [f"theme.{t}.close" for t in THEME_IDS[:n_themes]]
    for c in CLOSE_COLS + themes:  # positive random walks, daily vol 0.5%..4%
        sigma = rng.uniform(0.005, 0.04)
        cols[c] = rng.uniform(50, 5000) * np.exp(np.cumsum(rng.normal(0, sigma, n)))
    for c in AMOUNT_COLS:  # yuan, positive
        level = rng.uniform(1e9, 1e12)
        cols[c] = level * np.exp(np.cumsum(rng.normal(0, 0.05, n)) + rng.normal(0, 0.2, n))
    for tenor in TENORS:  # percent, within [1, 5]
        gov = np.clip(rng.uniform(1.5, 3.5) + np.cumsum(rng.normal(0, 0.02, n)), 1.0, 4.5)
        spread = np.clip(rng.uniform(0.2, 1.0) + np.cumsum(rng.normal(0, 0.01, n)), 0.01, 2.0)
        cols[f"yield.gov.{tenor}"] = gov
        cols[f"yield.credit.{tenor}"] = np.clip(gov + spread, 1.0, 5.0)
    # quarterly fund reports: a value every ~60 rows, NaN in between
    report = np.zeros(n, dtype=bool)
    pos = int(rng.integers(0, 60))
    while pos < n:
        report[pos] = True
        pos += int(rng.integers(55, 70))
    cols[FUND_COLS[0]] = np.where(report, rng.uniform(0.2, 0.6, n), np.nan)
    cols[FUND_COLS[1]] = np.where(report, rng.uniform(5e10, 5e11, n), np.nan)

    frame = pd.DataFrame(cols, index=pd.DatetimeIndex(pd.bdate_range("2015-01-05", periods=n),
                                                     name="date"))
    names = list(frame.columns)
    values = frame.to_numpy(copy=True)
    values[rng.random(values.shape) < hole_p] = np.nan
    for frac, length, whole_row in stretches:
        start = int(frac * (n - 1))
        which = (np.ones(len(names), dtype=bool) if whole_row
                 else rng.random(len(names)) < 0.3)
        values[start:start + length, which] = np.nan
    frame = pd.DataFrame(values, index=frame.index, columns=names)
    return Drawn(frame, sorted(set(days)))


def _is_glob(sig: signals.Signal) -> bool:
    return any(any(ch in pat for ch in "*?[") for pat in sig.inputs)


def run(sig: signals.Signal, frame: pd.DataFrame, params: Mapping[str, Mapping[str, Any]]):
    """Compute ``sig`` as monitor.compute does, but on the resolved input columns only (so a
    function that reads an undeclared column fails)."""
    p = params[sig.family]
    inputs = sig.resolve_inputs(frame.columns, p)
    return sig.compute(frame[inputs], p, FIXED_FIT if sig.state else None)


def _param_sets(sig: signals.Signal) -> list[str]:
    """Every signal with its defaults; also with SMALL_PARAMS when its default window is long
    (so that random frames of <= 400 rows rarely or never fill it)."""
    w = sig.window_days(DEFAULT_PARAMS[sig.family])
    return ["default", "small"] if sig.params and (w is None or w > 100) else ["default"]


SIGNAL_PARAMS = [pytest.param(name, pset, id=f"{name}-{pset}")
                 for name in sorted(set(signals.REGISTRY) - DERIVED)
                 for pset in _param_sets(signals.REGISTRY[name])]


@pytest.mark.parametrize("name, pset", SIGNAL_PARAMS)
@PROPERTY_SETTINGS
@given(drawn=random_frames())
def test_shape_dtype_and_bounds(name: str, pset: str, drawn: Drawn):
    sig = signals.REGISTRY[name]
    frame = drawn.frame
    values, context = run(sig, frame, PARAM_SETS[pset])
    assert isinstance(values, pd.Series)
    assert values.index.equals(frame.index)
    assert pd.api.types.is_float_dtype(values.dtype)
    v = values.to_numpy()
    present = ~np.isnan(v)
    assert not np.isinf(v).any()  # inputs are positive: no division by zero
    if name in PCTILE:
        assert ((v[present] >= 0) & (v[present] <= 1)).all()
    if name in NONPOSITIVE:
        assert (v[present] <= 0).all()
    if name in NONNEGATIVE:
        assert (v[present] >= 0).all()
    if name == "rotation.hot_theme_excess":
        assert context is not None and context.index.equals(frame.index)
        p = PARAM_SETS[pset][sig.family]
        excess = signals.rotation.theme_excess(frame, p["theme_days"])
        for i in range(len(frame)):
            if present[i]:
                assert context.iloc[i] in excess.columns
                assert same(excess[context.iloc[i]].iloc[i], v[i])
                assert v[i] >= excess.iloc[i].max()
            else:
                assert same_ctx(context.iloc[i], None)
    else:
        assert context is None


@pytest.mark.parametrize("name, pset", SIGNAL_PARAMS)
@PROPERTY_SETTINGS
@given(drawn=random_frames())
def test_does_not_invent_values(name: str, pset: str, drawn: Drawn):
    sig = signals.REGISTRY[name]
    frame = drawn.frame
    p = PARAM_SETS[pset][sig.family]
    inputs = sig.resolve_inputs(frame.columns, p)
    values, _ = run(sig, frame, PARAM_SETS[pset])
    v = values.to_numpy()
    any_input = frame[inputs].notna().any(axis=1).astype(float)
    w = sig.window_days(p)
    seen = (any_input.cumsum() if w is None else any_input.rolling(w, min_periods=1).sum())
    blind = (seen == 0).to_numpy()  # every input NaN over the whole look-back
    assert np.isnan(v[blind]).all(), np.flatnonzero(blind & ~np.isnan(v))
    if name in TODAY_REQUIRED:
        gap = frame[inputs].isna().any(axis=1).to_numpy()
        assert np.isnan(v[gap]).all(), np.flatnonzero(gap & ~np.isnan(v))


@pytest.mark.parametrize("name, pset", SIGNAL_PARAMS)
@PROPERTY_SETTINGS
@given(drawn=random_frames())
def test_no_look_ahead(name: str, pset: str, drawn: Drawn):
    sig = signals.REGISTRY[name]
    full, full_ctx = run(sig, drawn.frame, PARAM_SETS[pset])
    for t in drawn.days:
        part, part_ctx = run(sig, drawn.frame.iloc[: t + 1], PARAM_SETS[pset])
        assert same(part.iloc[-1], full.iloc[t]), (t, part.iloc[-1], full.iloc[t])
        if full_ctx is not None:
            assert same_ctx(part_ctx.iloc[-1], full_ctx.iloc[t]), t


WINDOWED = [pytest.param(n, pset, id=f"{n}-{pset}") for n, pset in
            ((p.values[0], p.values[1]) for p in SIGNAL_PARAMS)
            if signals.REGISTRY[n].window_days(PARAM_SETS[pset][signals.REGISTRY[n].family])
            is not None]


@pytest.mark.parametrize("name, pset", WINDOWED)
@PROPERTY_SETTINGS
@given(drawn=random_frames())
def test_window_sufficiency(name: str, pset: str, drawn: Drawn):
    """The daily cycle computes the last value from only the last window_days rows."""
    sig = signals.REGISTRY[name]
    params = PARAM_SETS[pset]
    w = sig.window_days(params[sig.family])
    frame = drawn.frame
    if sig.family == "funds":
        # Known bug (test_funds_window_covers_previous_report): the window only holds while
        # consecutive reports are less than carry_days apart. Check everything else.
        reports = np.flatnonzero(frame[list(sig.inputs)].notna().any(axis=1).to_numpy())
        assume(len(reports) < 2 or np.diff(reports).max() < params[sig.family]["carry_days"])
    full, full_ctx = run(sig, frame, params)
    short, short_ctx = run(sig, frame.iloc[-w:], params)
    assert same(short.iloc[-1], full.iloc[-1]), (w, short.iloc[-1], full.iloc[-1])
    if full_ctx is not None:
        assert same_ctx(short_ctx.iloc[-1], full_ctx.iloc[-1])
