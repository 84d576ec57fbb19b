"""Forecast metrics for risk.drawdown_prob: hand-computed Brier, Brier skill, AUC, reliability."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.analysis import forecast

N = math.nan


def test_brier_and_skill_by_hand():
    p, y, ref = [0.9, 0.2, N, 0.5], [1, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]
    # rows 0, 1, 3: (0.1^2 + 0.2^2 + 0.5^2) / 3 = 0.1; reference 0.25 -> skill 1 - 0.1/0.25 = 0.6
    assert forecast.brier(p, y) == pytest.approx(0.1)
    assert forecast.brier_skill(p, y, ref) == pytest.approx(0.6)
    assert forecast.brier_skill(ref, y, ref) == 0.0
    assert math.isnan(forecast.brier([], []))


def test_auc_by_hand():
    # positives 0.8, 0.4; negatives 0.5, 0.1, 0.4: pairs won 0.8>all (3), 0.4>0.1 (1), 0.4=0.4 (.5)
    # -> 4.5 / 6 = 0.75
    assert forecast.auc([0.8, 0.4, 0.5, 0.1, 0.4], [1, 1, 0, 0, 0]) == pytest.approx(0.75)
    assert forecast.auc([0.3, 0.3], [1, 0]) == 0.5
    assert math.isnan(forecast.auc([0.1, 0.2], [0, 0]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=2, max_size=40))
def test_auc_is_the_pairwise_win_rate(rows):
    p = [r[0] for r in rows]
    y = [float(r[1]) for r in rows]
    pos = [a for a, b in zip(p, y, strict=True) if b]
    neg = [a for a, b in zip(p, y, strict=True) if not b]
    got = forecast.auc(p, y)
    if not pos or not neg:
        assert math.isnan(got)
        return
    want = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg])
    assert got == pytest.approx(want)


def test_reliability_bins():
    bins = forecast.reliability([0.05, 0.15, 0.18, 1.0, N], [0, 1, 0, 1, 1], edges=(0, 0.1, 0.2, 1.0))
    assert [(b.days, b.observed) for b in bins] == [(1, 0.0), (2, 0.5), (1, 1.0)]
    assert bins[1].mean_forecast == pytest.approx(0.165)


def test_score_drawdown_forecast_uses_the_base_rate_known_each_day():
    idx = pd.bdate_range("2021-01-04", periods=6)
    close = pd.Series([100, 95, 85, 90, 95, 100], index=idx, dtype=float)
    # horizon 1, depth 10%: t1 95 -> 85 = -10.5% -> 1; others 0; t5 unknown
    values = pd.DataFrame({"risk.drawdown_prob": [0.1, 0.8, 0.1, 0.1, 0.1, 0.1]}, index=idx)
    ctx = pd.DataFrame({"risk.drawdown_prob": [json.dumps({"base_rate": 0.2})] * 6}, index=idx)
    s = forecast.score_drawdown_forecast(values, ctx, close, "risk.drawdown_prob", 1, 0.10)
    assert (s.days, s.events) == (5, 1)
    # Brier: (0.01 + 0.04 + 3 * 0.01) / 5 = 0.016; reference (4 * 0.04 + 0.64) / 5 = 0.16
    assert s.brier == pytest.approx(0.016) and s.brier_reference == pytest.approx(0.16)
    assert s.brier_skill == pytest.approx(0.9) and s.auc == 1.0
    assert "Brier skill +0.900" in forecast.forecast_table(s)
