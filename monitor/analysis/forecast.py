"""How good a probability forecast is: tiny pure metrics (as in empyrical), for risk.drawdown_prob.

Every function takes aligned arrays (or Series) of forecast probabilities in [0, 1] and outcomes
(1.0 = the event happened, 0.0 = it did not); rows where either is missing (NaN) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from signals.risk import forward_drawdown_label


def _clean(*arrays) -> list[np.ndarray]:
    cols = [np.asarray(a, dtype=float) for a in arrays]
    ok = np.logical_and.reduce([~np.isnan(c) for c in cols])
    return [c[ok] for c in cols]


def brier(prob, outcome) -> float:
    """Return the mean squared error of the probabilities (0 = perfect); NaN without rows."""
    p, y = _clean(prob, outcome)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def brier_skill(prob, outcome, reference) -> float:
    """Return 1 - Brier(prob) / Brier(reference): > 0 beats the reference forecast (e.g. the base
    rate known on each day), 0 ties it, < 0 is worse. NaN without rows or a perfect reference."""
    p, y, r = _clean(prob, outcome, reference)
    ref = float(np.mean((r - y) ** 2)) if len(p) else float("nan")
    if not len(p) or ref == 0:
        return float("nan")
    return 1.0 - float(np.mean((p - y) ** 2)) / ref


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Return the ranks (1..n, float) of ``x``, ties given the mean of their ranks: what
    ``scipy.stats.rankdata`` returns (method "average"), without importing scipy.stats (about a
    second of a backtest's start-up when nothing else needs it)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])  # tie groups' starts, and n
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.repeat((bounds[:-1] + 1 + bounds[1:]) / 2.0, np.diff(bounds))
    return ranks


def auc(prob, outcome) -> float:
    """Return the area under the ROC curve (the chance that a random positive day gets a higher
    probability than a random negative one; ties count half): 0.5 = no discrimination. NaN
    unless both outcomes occur."""
    p, y = _clean(prob, outcome)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = average_ranks(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class Bin:
    """One reliability bin: forecasts in [lo, hi), their mean and the observed frequency."""

    lo: float
    hi: float
    days: int
    mean_forecast: float | None
    observed: float | None


def reliability(prob, outcome, edges: Sequence[float] = (0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)) -> list[Bin]:
    """Return the reliability table: per probability bin [lo, hi) (the last bin includes 1), the
    number of days, the mean forecast and the share of days the event happened (fractions)."""
    p, y = _clean(prob, outcome)
    out = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = k == len(edges) - 2
        m = (p >= lo) & ((p <= hi) if last else (p < hi))
        n = int(m.sum())
        out.append(Bin(float(lo), float(hi), n, float(p[m].mean()) if n else None,
                       float(y[m].mean()) if n else None))
    return out


@dataclass(frozen=True)
class ForecastScore:
    """The walk-forward record of a probability forecast over a period."""

    days: int  # days with a forecast and a known outcome
    events: int  # of which the event happened
    base_rate: float | None  # the outcome's frequency over those days (fraction)
    brier: float
    brier_reference: float  # Brier score of the reference (the base rate known each day)
    brier_skill: float
    auc: float
    reliability: tuple[Bin, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def score_drawdown_forecast(values: pd.DataFrame, contexts: pd.DataFrame | None, close: pd.Series,
                            signal: str, horizon_days: int, drawdown: float,
                            start=None, end=None) -> ForecastScore:
    """Score the daily forecast column ``signal`` of ``values`` against the realised label (a
    ``drawdown`` fraction within ``horizon_days``, from ``close``: known only where the closes
    reach t + horizon) over [start, end]. The reference forecast is the base rate the model knew on
    each day (``base_rate`` in the signal's context); without contexts, the label's expanding mean
    known ``horizon_days + 1`` days earlier."""
    idx = values.index
    label = forward_drawdown_label(close.reindex(idx), horizon_days, drawdown)
    if contexts is not None and signal in contexts.columns:
        ref = pd.Series([json.loads(c)["base_rate"] if isinstance(c, str) else np.nan
                         for c in contexts[signal].reindex(idx)], index=idx, dtype=float)
    else:
        ref = label.shift(horizon_days + 1).expanding().mean()
    m = np.ones(len(idx), dtype=bool)
    if start is not None:
        m &= idx >= pd.Timestamp(start)
    if end is not None:
        m &= idx <= pd.Timestamp(end)
    prob = values[signal].to_numpy(dtype=float)[m]
    y = label.to_numpy(dtype=float)[m]
    r = ref.to_numpy(dtype=float)[m]
    p, yy, rr = _clean(prob, y, r)
    return ForecastScore(days=len(p), events=int(yy.sum()),
                         base_rate=float(yy.mean()) if len(p) else None,
                         brier=brier(p, yy), brier_reference=brier(rr, yy),
                         brier_skill=brier_skill(p, yy, rr), auc=auc(p, yy),
                         reliability=tuple(reliability(p, yy)))


def forecast_table(score: ForecastScore) -> str:
    """The score as a few plain lines: skill first, then the reliability table."""
    if not score.days:
        return "drawdown-risk forecast: no day with both a forecast and a known outcome"
    assert score.base_rate is not None  # set whenever a day was scored
    verdict = ("better than the base rate" if score.brier_skill > 0 else
               "no better than the base rate known on each day")
    lines = [f"drawdown-risk forecast over {score.days} days ({score.events} with a drawdown ahead, "
             f"{100 * score.base_rate:.1f}%): Brier skill {score.brier_skill:+.3f} ({verdict}), "
             f"AUC {score.auc:.3f} (0.5 = no discrimination)"]
    from tabulate import tabulate

    body = [[f"{100 * b.lo:.0f}-{100 * b.hi:.0f}%", str(b.days),
             "-" if b.mean_forecast is None else f"{100 * b.mean_forecast:.1f}%",
             "-" if b.observed is None else f"{100 * b.observed:.1f}%"] for b in score.reliability]
    text = tabulate(body, headers=["forecast bin", "days", "mean forecast", "observed"],
                    tablefmt="plain", colalign=("left", "right", "right", "right"),
                    disable_numparse=True)
    lines += ["  " + line.rstrip() for line in text.splitlines()]
    return "\n".join(lines)
