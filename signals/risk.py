"""Drawdown risk: the probability of a micro-cap sell-off in the coming weeks (pure functions).

``risk.drawdown_prob`` on day t is the estimated probability that the micro-cap index's maximum
drawdown over the next ``horizon_days`` trading days (from t's close) reaches ``drawdown``
(default: 10% within 20 trading days), given the day's indicator values.

Model: an L2-regularised (ridge) logistic regression of that label on the standardised values of
``features`` (other registered signals: the note's conditions), fitted by Newton's method
(:func:`ridge_logit`; with ``l2 = 0`` it is statsmodels' ``Logit`` MLE, tested). The intercept is
not penalised; each feature is standardised with the training rows' mean and standard deviation.

Point in time and walk-forward:
- The label of day t needs the closes through t + horizon, so it is known only ``horizon_days``
  trading days later. A fit made on day D uses the data through the previous trading day and
  only the labels fully known by then (:func:`fit`).
- The model is refitted at most monthly, on the first cycle of each month (expanding window), and
  the fit is cached (``risk_fits``), as the regime model's are: ``signals.common.refit_due``.
- A day's probability is the month's fit applied to that day's feature values; NaN when a feature
  is missing that day or there is no fit yet (fewer than ``min_train_days`` labelled rows, or fewer
  than ``MIN_CLASS`` positive or negative labels).

The service computes the feature values and supplies the fit (``monitor.compute``); this module
holds the formulas only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from signals.common import refit_due
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import MICROCAP_CLOSE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")

SIGNAL = "risk.drawdown_prob"
MICROCAP = MICROCAP_CLOSE
MIN_CLASS = 5
"""Fewest positive (and negative) labels a fit needs."""
NEWTON_MAXITER = 100

DEFAULT_FEATURES = [
    "microcap.vol_spike",
    "market.return_20d",
    "market.amount_ratio_20_120",
    "turnover.csi2000_share_pctile_1y",
    "turnover.csi2000_share_drop_60d",
    "credit.spread_chg_20d",
    "rotation.microcap_excess_10d",
    "rotation.largecap_minus_microcap_20d",
]
"""The note's event conditions, as continuous signals (chosen on 2016-2023 data, README)."""

FAMILY = family("risk", horizon_days=20, drawdown=0.10, l2=1000.0, min_train_days=250,
                features=list(DEFAULT_FEATURES))


def forward_drawdown_label(close: pd.Series, horizon: int, depth: float) -> pd.Series:
    """Return 1.0 where the maximum drawdown of ``close`` over rows [t, t + horizon] reaches
    ``depth`` (a fraction, e.g. 0.10), 0.0 where it does not, NaN where it is not known yet (the
    last ``horizon`` rows) or the close of day t is missing.

    The drawdown is measured along the path from day t's close: min over t <= i <= j <= t + h of
    close[j] / max(close[t..j]) - 1. Missing closes inside the path are skipped.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 trading day, got {horizon}")
    c = close.to_numpy(dtype=float)
    n = len(c)
    out = np.full(n, np.nan)
    if n > horizon:
        windows = np.lib.stride_tricks.sliding_window_view(c, horizon + 1)
        filled = np.where(np.isnan(windows), -np.inf, windows)
        peak = np.maximum.accumulate(filled, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dd = np.where(np.isnan(windows), np.nan, windows / peak - 1.0)
        worst = np.nanmin(np.where(np.isnan(dd), np.inf, dd), axis=1)
        lab = (worst <= -depth).astype(float)
        lab[np.isnan(c[: n - horizon])] = np.nan
        out[: n - horizon] = lab
    return pd.Series(out, index=close.index, name="label")


def ridge_logit(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Return the coefficients (intercept first) maximising the logistic log-likelihood of ``y``
    (0/1) on ``x`` (rows x features) minus ``l2 / 2 * sum(beta_k ** 2)`` over the slopes.

    Newton's method from zero; with ``l2 = 0`` this is the plain maximum-likelihood Logit.
    Raises ValueError when it does not converge (e.g. separable data without a penalty).
    """
    n, k = x.shape
    xb = np.column_stack([np.ones(n), x])
    penalty = np.full(k + 1, float(l2))
    penalty[0] = 0.0
    w = np.zeros(k + 1)
    for _ in range(NEWTON_MAXITER):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1.0 - p))[:, None]).T @ xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.max(np.abs(step)) < 1e-10:
            return w
    raise ValueError("ridge logit did not converge")


@dataclass(frozen=True)
class RiskFit:
    """One fit of the drawdown-risk model.

    ``fit_through``: the last day of data used (labels known by then); ``valid_from``: the first
    day the fit may be used. ``mean``/``std``: the standardisation of each feature (its unit);
    ``coef``: intercept then one slope per feature, in log-odds per standard deviation.
    ``base_rate``: the share of positive labels among the training rows (fraction).
    """

    valid_from: dt.date
    fit_through: dt.date
    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    coef: tuple[float, ...]
    n_obs: int
    positives: int
    l2: float
    horizon_days: int = 20
    drawdown: float = 0.10

    def matches(self, params: Mapping[str, Any]) -> bool:
        """True when this fit is of the model ``params`` (the ``[signals.risk]`` family) asks for
        (:func:`model_key`; ``min_train_days`` only decides whether a fit can be made)."""
        key = model_key(params)
        return (list(self.features), self.l2, self.horizon_days, self.drawdown) == (
            key["features"], key["l2"], key["horizon_days"], key["drawdown"])

    @property
    def base_rate(self) -> float:
        """Share of positive labels in the training rows (fraction)."""
        return self.positives / self.n_obs

    def to_json(self) -> str:
        """Serialise to JSON (floats round-trip exactly)."""
        d = {"valid_from": self.valid_from.isoformat(), "fit_through": self.fit_through.isoformat(),
             "features": list(self.features), "mean": list(self.mean), "std": list(self.std),
             "coef": list(self.coef), "n_obs": self.n_obs, "positives": self.positives, "l2": self.l2,
             "horizon_days": self.horizon_days, "drawdown": self.drawdown}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RiskFit:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(valid_from=dt.date.fromisoformat(d["valid_from"]),
                   fit_through=dt.date.fromisoformat(d["fit_through"]),
                   features=tuple(d["features"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   coef=tuple(d["coef"]), n_obs=int(d["n_obs"]), positives=int(d["positives"]),
                   l2=float(d["l2"]), horizon_days=int(d["horizon_days"]),
                   drawdown=float(d["drawdown"]))


def fit(features: pd.DataFrame, close: pd.Series, through: dt.date, valid_from: dt.date, *,
        horizon_days: int, drawdown: float, l2: float, min_train_days: int) -> RiskFit | None:
    """Fit the model on the rows of ``features`` (index = trading days, one column per feature)
    whose label is known by ``through``: the label uses only ``close`` up to ``through``.

    Returns None when fewer than ``min_train_days`` rows have every feature and a known label,
    or either class has fewer than :data:`MIN_CLASS` rows.
    """
    cut = pd.Timestamp(through)
    c = close[close.index <= cut]
    label = forward_drawdown_label(c, horizon_days, drawdown)
    x = features[features.index <= cut]
    y = label.reindex(x.index)
    ok = x.notna().all(axis=1).to_numpy() & y.notna().to_numpy()
    xv = x.to_numpy(dtype=float)[ok]
    yv = y.to_numpy(dtype=float)[ok]
    positives = int(yv.sum())
    if len(yv) < min_train_days or positives < MIN_CLASS or len(yv) - positives < MIN_CLASS:
        return None
    mean = xv.mean(axis=0)
    std = xv.std(axis=0)
    std[std == 0] = 1.0
    coef = ridge_logit((xv - mean) / std, yv, l2)
    return RiskFit(valid_from=valid_from, fit_through=through, features=tuple(x.columns),
                   mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                   coef=tuple(float(v) for v in coef), n_obs=int(len(yv)), positives=positives,
                   l2=float(l2), horizon_days=horizon_days, drawdown=float(drawdown))


def model_key(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that define the model (``[signals.risk]``), as JSON data: a cached fit or
    "no fit this month" marker is reused only for the same settings."""
    return {"features": list(params["features"]), "l2": float(params["l2"]),
            "horizon_days": int(params["horizon_days"]), "drawdown": float(params["drawdown"]),
            "min_train_days": int(params["min_train_days"])}


def current_fit(features: pd.DataFrame, close: pd.Series, as_of: dt.date, last: RiskFit | None,
                previous_day: dt.date, params: Mapping[str, Any]) -> RiskFit | None:
    """Return the fit to use on ``as_of``: ``last`` unless a refit is due (first cycle of a month),
    else a new fit on the data through ``previous_day``, valid from ``as_of``. A refit that cannot
    be made keeps ``last`` for the rest of the month (returned with ``valid_from = as_of``)."""
    if not refit_due(None if last is None else last.valid_from, as_of):
        return last
    new = fit(features, close, previous_day, as_of, horizon_days=params["horizon_days"],
              drawdown=params["drawdown"], l2=params["l2"], min_train_days=params["min_train_days"])
    if new is None and last is not None:
        return dataclasses.replace(last, valid_from=as_of)
    return new


def log_odds(features: pd.DataFrame, fit: RiskFit) -> pd.DataFrame:
    """Return each feature's contribution to the log-odds on each row: slope x standardised value."""
    z = (features[list(fit.features)].to_numpy(dtype=float) - np.array(fit.mean)) / np.array(fit.std)
    return pd.DataFrame(z * np.array(fit.coef[1:]), index=features.index, columns=list(fit.features))


@register(SIGNAL, family=FAMILY, inputs=(), window=lambda p: None, unit="fraction [0,1]",
          params=("features",), state="risk_fit", arrays=True)
def drawdown_prob(frame: pd.DataFrame, features: list[str],
                  fit: RiskFit | None = None) -> tuple[pd.Series, pd.Series]:
    """Probability (0..1) that the micro-cap index draws down by ``drawdown`` (10%) or more within
    the next ``horizon_days`` (20) trading days, from a ridge logit on the day's ``features``
    (the note's conditions), refitted monthly on an expanding window with labels known on the day.
    Context (JSON): base rate, fit date and each feature's contribution in log-odds.

    ``frame`` holds the FEATURE values (one column per name in ``features``), not input series:
    the service computes them first. NaN without a fit or when a feature is missing. ``frame``
    may also be a mapping of feature name -> 1-D array (the daily cycle's day): the same numbers,
    as arrays (the log-odds summed over the features in the order pandas sums a frame's row).
    """
    if not isinstance(frame, pd.DataFrame):
        return _drawdown_prob_arrays(frame, features, fit)
    if fit is None:
        nan = pd.Series(np.nan, index=frame.index, dtype=float)
        return nan, pd.Series(None, index=frame.index, dtype=object)
    _check_features(fit, features)
    contrib = log_odds(frame, fit)
    z = fit.coef[0] + contrib.sum(axis=1, skipna=False)
    prob = 1.0 / (1.0 + np.exp(-z))
    values = frame[list(fit.features)].to_numpy(dtype=float)  # rows as plain floats
    context = pd.Series(_contexts(fit, values, contrib.to_numpy(), prob.to_numpy()),
                        index=frame.index, dtype=object)
    return prob.astype(float), context


def _drawdown_prob_arrays(columns: Mapping[str, Any], features: list[str], fit: RiskFit | None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``drawdown_prob`` on a mapping of feature name -> 1-D float array (rows: days): (the
    probabilities, the contexts as an object array). Equal to the frame's computation (tested)."""
    n = len(next(iter(columns.values()))) if columns else 0
    if fit is None:
        return np.full(n, np.nan), np.full(n, None, dtype=object)
    _check_features(fit, features)
    values = np.column_stack([np.asarray(columns[f], dtype=float) for f in fit.features])  # days x features
    parts = (values - np.array(fit.mean)) / np.array(fit.std) * np.array(fit.coef[1:])
    # a frame's row sum (axis=1) adds along its block, features x days: the same order here
    z = fit.coef[0] + np.ascontiguousarray(parts.T).sum(axis=0)
    prob = 1.0 / (1.0 + np.exp(-z))
    return prob, np.array(_contexts(fit, values, parts, prob), dtype=object)


def _check_features(fit: RiskFit, features: list[str]) -> None:
    """Raise ValueError when ``fit`` was made for other features than the config's ``features``."""
    if list(fit.features) != list(features):
        raise ValueError(f"the fit is for features {list(fit.features)}, the config asks for {features}")


def _contexts(fit: RiskFit, values: np.ndarray, parts: np.ndarray, prob: np.ndarray) -> list[str | None]:
    """Each day's context text (``_context``) from its feature ``values`` and log-odds ``parts``
    (days x ``fit.features``); None on a day whose probability ``prob`` is not finite."""
    names = list(fit.features)
    return [_context(fit, dict(zip(names, values[i], strict=True)), dict(zip(names, parts[i], strict=True)))
            if math.isfinite(p) else None for i, p in enumerate(prob)]


def _context(fit: RiskFit, values: Mapping[str, float], contrib: Mapping[str, float]) -> str:
    """The context text of one day: ``values`` and ``contrib`` (log-odds) by feature name."""
    rows = [(name, _sig(values[name]), _sig((values[name] - m) / s), _sig(contrib[name]))
            for name, m, s in zip(fit.features, fit.mean, fit.std, strict=True)]
    rows.sort(key=lambda r: -r[3])  # the largest log-odds contribution first
    items = [{"signal": name, "value": value, "z": z, "logodds": lo} for name, value, z, lo in rows]
    return json.dumps({"base_rate": _sig(fit.base_rate), "fit_through": fit.fit_through.isoformat(),
                       "n_obs": fit.n_obs, "contributions": items}, sort_keys=True)


def _sig(x: float, digits: int = 6) -> float:
    """``x`` to ``digits`` significant digits (context text: identical for values equal to ~1e-12)."""
    return float(f"{float(x):.{digits}g}")
