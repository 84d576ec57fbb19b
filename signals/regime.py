"""Regime probability (SIGNALS.md section 8), as pure functions.

A two-state Markov switching model (statsmodels ``MarkovRegression``, ``k_regimes=2``, ``trend="c"``,
``switching_variance=True``: switching mean and variance) on daily micro-cap excess returns over CSI
All Share (:func:`microcap_excess_returns`). ``regime.stress_prob`` is the FILTERED probability of the
high-variance state: the value at day t uses returns up to and including t only. The smoothed
probabilities use the whole sample (they look ahead) and are never used here.

Fitting (~1 s on 2,500 days) is separated from filtering (~1-3 ms), so the caller can cache fits:

- :func:`fit` estimates a :class:`RegimeFit` from the data up to a date. A fit is JSON-serialisable
  (:meth:`RegimeFit.to_json` / :meth:`RegimeFit.from_json`); the service stores it in SQLite.
- :func:`refit_due` / :func:`current_fit` implement the refit schedule: at most monthly, on the first
  cycle of each month, with the data through the previous day.
- :func:`filtered_stress_prob` applies a cached fit to a return series (Hamilton filter only).
- :func:`stress_prob_history` replays the schedule point in time on a return series alone (the
  tests' reference; replay and backtest follow the daily cycle's stored fits instead:
  ``monitor.compute.history``).

Conventions
- Returns are fractions on input; the model is fitted on returns in PERCENT (x100, ``SCALE``) for
  numerical stability, and ``RegimeFit.params`` / ``loglike`` are in that scaling (const in percent,
  sigma2 in percent squared; the log-likelihood is that of the percent returns).
- States are ordered by variance after every fit: state 0 = LOW variance (calm), state 1 = HIGH
  variance (stress). ``params`` follow statsmodels' order ``PARAM_NAMES``.
- Missing returns (NaN) are dropped before fitting and filtering (the chain then makes one transition
  across the gap) and are NaN in the output.
- The filter starts from the chain's steady-state distribution at the first return of the series
  given, so a value depends (slightly, the effect decays within days) on where the series starts: pass
  the whole stored history, from the same first day, to reproduce a replay.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from signals import common
from signals.common import simple_returns
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import ALL_A_CLOSE, MICROCAP_CLOSE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")

SIGNAL = "regime.stress_prob"
MICROCAP = MICROCAP_CLOSE
ALL_A = ALL_A_CLOSE
SCALE = 100.0  # returns are fitted in percent
PARAM_NAMES = ("p[0->0]", "p[1->0]", "const[0]", "const[1]", "sigma2[0]", "sigma2[1]")
# A state whose variance is below this share of the sample variance is a degenerate optimum (a state
# that captures one or two outlying days: the likelihood is unbounded there), not a regime.
MIN_VARIANCE_SHARE = 1e-2
EM_ITER = 20  # EM steps before BFGS: cheap and makes BFGS start close to the optimum
MAXITER = 200  # BFGS iterations


def microcap_excess_returns(frame: pd.DataFrame) -> pd.Series:
    """Return daily micro-cap returns minus CSI All Share returns (fraction; NaN where either is)."""
    return simple_returns(frame[MICROCAP]) - simple_returns(frame[ALL_A])


@dataclass(frozen=True)
class RegimeFit:
    """Fitted parameters of the two-state model, states ordered by variance (1 = high variance).

    ``fit_through`` is the last day whose return was used; ``valid_from`` the first day the fit may be
    used (the day after the data cut-off passed to :func:`fit`; it is what :func:`refit_due` looks at).
    ``params`` are in the order ``PARAM_NAMES``, fitted on percent returns; ``loglike`` is the
    log-likelihood of those percent returns; ``n_obs`` the number of (non-missing) returns used.
    """

    fit_through: datetime.date
    params: tuple[float, ...]
    n_obs: int
    loglike: float
    valid_from: datetime.date | None = None  # None: the day after fit_through

    def __post_init__(self) -> None:
        if len(self.params) != len(PARAM_NAMES):
            raise ValueError(f"RegimeFit needs {len(PARAM_NAMES)} params {PARAM_NAMES}, got {self.params}")
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        if self.valid_from is None:
            object.__setattr__(self, "valid_from", self.fit_through + datetime.timedelta(days=1))

    @property
    def first_day(self) -> datetime.date:
        """The first day the fit may be used: ``valid_from`` (the day after ``fit_through`` unless
        given)."""
        return self.valid_from or self.fit_through + datetime.timedelta(days=1)

    @property
    def sigma2(self) -> tuple[float, float]:
        """Variances (percent squared) of the calm (0) and stress (1) states."""
        return self.params[4], self.params[5]

    @property
    def transition(self) -> tuple[float, float]:
        """(P(calm -> calm), P(stress -> calm))."""
        return self.params[0], self.params[1]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (dates as ISO strings)."""
        return {
            "fit_through": self.fit_through.isoformat(),
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "params": list(self.params),
            "param_names": list(PARAM_NAMES),
            "n_obs": self.n_obs,
            "loglike": self.loglike,
            "scale": SCALE,
        }

    def to_json(self) -> str:
        """Serialise to a JSON string (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegimeFit:
        """Inverse of :meth:`to_dict`; refuses parameters stored in another order or scaling."""
        if list(d.get("param_names", PARAM_NAMES)) != list(PARAM_NAMES):
            raise ValueError(f"stored params are in order {d['param_names']}, expected {PARAM_NAMES}")
        if float(d.get("scale", SCALE)) != SCALE:
            raise ValueError(f"stored params are for returns x{d['scale']}, expected x{SCALE}")
        valid_from = d.get("valid_from")
        return cls(
            fit_through=datetime.date.fromisoformat(d["fit_through"]),
            params=tuple(float(p) for p in d["params"]),
            n_obs=int(d["n_obs"]),
            loglike=float(d["loglike"]),
            valid_from=datetime.date.fromisoformat(valid_from) if valid_from else None,
        )

    @classmethod
    def from_json(cls, text: str) -> RegimeFit:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


# --- parameters ------------------------------------------------------------------------------------


def swap_states(params: tuple[float, ...] | np.ndarray) -> tuple[float, ...]:
    """Return ``params`` with the two states' labels exchanged (the same model, relabelled).

    New state 0 is old state 1, so: p[0->0]' = P_old(1->1) = 1 - p[1->0];
    p[1->0]' = P_old(0->1) = 1 - p[0->0]; const and sigma2 are exchanged.
    """
    p00, p10, c0, c1, s0, s1 = (float(p) for p in params)
    return (1.0 - p10, 1.0 - p00, c1, c0, s1, s0)


def order_by_variance(params: tuple[float, ...] | np.ndarray) -> tuple[float, ...]:
    """Return ``params`` relabelled so that state 1 has the higher variance (sigma2[1] >= sigma2[0]).

    Exact ties (not met in practice) are broken by the lower mean, then the higher persistence, being
    state 1, so that a fit and its label-swapped twin always map to the same parameters.
    """
    p00, p10, c0, c1, s0, s1 = params = tuple(float(p) for p in params)
    return swap_states(params) if (s0, -c0, p00) > (s1, -c1, 1.0 - p10) else params


# --- fitting ---------------------------------------------------------------------------------------


def _model(y: np.ndarray) -> Any:
    # imported on first use, and this module only (statsmodels.api takes ~0.5 s more)
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    model = MarkovRegression(y, k_regimes=2, trend="c", switching_variance=True)
    if tuple(model.param_names) != PARAM_NAMES:  # guard against a statsmodels change of order
        raise RuntimeError(f"unexpected MarkovRegression params {model.param_names}")
    return model


def _dates(index: pd.Index) -> pd.DatetimeIndex:
    dates = pd.DatetimeIndex(pd.to_datetime(index))
    return dates if dates.tz is None and dates.is_normalized else dates.normalize()


def _as_date(d: datetime.date) -> datetime.date:
    return pd.Timestamp(d).date()


def _clean(excess_returns: pd.Series) -> pd.Series:
    """Return the series as float on a sorted DatetimeIndex (original labels are restored by callers)."""
    s = pd.Series(excess_returns.to_numpy(dtype=float, na_value=np.nan), index=_dates(excess_returns.index))
    if s.index.has_duplicates:
        raise ValueError("excess_returns has duplicate dates")
    return s.sort_index()


def _start_candidates(model: Any, y: np.ndarray) -> list[np.ndarray]:
    """Deterministic start points: statsmodels' own, and one with persistent regimes."""
    var, mean = float(np.var(y)), float(np.mean(y))
    persistent = np.array([0.98, 0.05, mean, mean, 0.5 * var, 4.0 * var])
    return [np.asarray(model.start_params, dtype=float), persistent]


def _acceptable(res: Any, var: float) -> bool:
    params = np.asarray(res.params, dtype=float)
    converged = bool((res.mle_retvals or {}).get("converged", False))
    return (
        converged
        and bool(np.all(np.isfinite(params)))
        and math.isfinite(float(res.llf))
        and float(min(params[4], params[5])) > MIN_VARIANCE_SHARE * var
    )


WARM_EM_MAXITER = 500
WARM_EM_TOLERANCE = 1e-8


def _warm_em(model: Any, warm_start: tuple[float, ...], var: float) -> Any | None:
    """EM iterations from last month's optimum, to convergence (tolerance on the log-likelihood).

    A month adds ~21 observations to the expanding window, so the optimum moves little: EM from
    the previous optimum converges in a few dozen cheap steps (~0.03 s on 2,500 days) where BFGS
    with numerical gradients takes ~0.3-0.5 s; on real data the two optima differ by ~1e-3 in
    log-likelihood. None when EM is unavailable or its result is not acceptable (the caller then
    runs the cold candidates)."""
    fit_em = getattr(model, "_fit_em", None)  # statsmodels' EM routine (pinned < 0.16)
    if fit_em is None:
        return None
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            # return_params: the last EM parameters themselves (the results object would filter
            # them once more, on top of the log-likelihood below)
            found = fit_em(start_params=np.asarray(warm_start, dtype=float), maxiter=WARM_EM_MAXITER,
                           tolerance=WARM_EM_TOLERANCE, return_params=True)
            params = np.asarray(found, dtype=float)
            llf = float(model.loglike(params))
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    if not (np.all(np.isfinite(params)) and math.isfinite(llf)
            and float(min(params[4], params[5])) > MIN_VARIANCE_SHARE * var):
        return None
    return _Fitted(params, llf)


MODEL_VERSION = 1
"""Version of :func:`fit`'s algorithm (start points, EM/BFGS settings, acceptance): part of every
cache key (:func:`fit_key`); bump it when a change would give another fit on the same data."""


class FitStore(Protocol):
    """Where :func:`fit` may keep its results across runs (``storage.fit_cache.FitCache``)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...


@functools.cache
def _versions() -> dict[str, str]:
    from importlib import metadata  # reads the installed packages' metadata, imports nothing

    out = {}
    for name in ("statsmodels", "scipy", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def fit_key(y: np.ndarray, fit_through: datetime.date, valid_from: datetime.date, min_obs: int,
            warm_start: tuple[float, ...] | None) -> str:
    """Return the cache key (hex SHA-256) of a fit on percent returns ``y`` (the non-missing
    returns used, in order) through ``fit_through``: it covers the returns' exact bytes, the dates,
    ``min_obs``, the warm start's exact floats, the fitting settings, ``MODEL_VERSION`` and the
    installed statsmodels/scipy/numpy versions, so any change of data or method is a miss."""
    head = {
        "model": MODEL_VERSION, "versions": _versions(), "scale": SCALE, "em_iter": EM_ITER,
        "maxiter": MAXITER, "warm": [WARM_EM_MAXITER, WARM_EM_TOLERANCE], "min_obs": int(min_obs),
        "min_variance_share": MIN_VARIANCE_SHARE, "fit_through": fit_through.isoformat(),
        "valid_from": valid_from.isoformat(), "n": len(y),
        "warm_start": None if warm_start is None else [float(v).hex() for v in warm_start],
    }
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    h.update(np.ascontiguousarray(y, dtype="<f8").tobytes())
    return h.hexdigest()


NO_FIT = "null"  # cached value of a fit that failed (no acceptable optimum): not retried either


def _cached(cache: FitStore, key: str) -> tuple[bool, RegimeFit | None]:
    """(found, fit) for ``key``; an entry that cannot be decoded counts as not found."""
    text = cache.get(key)
    if text is None:
        return False, None
    if text == NO_FIT:
        return True, None
    try:
        return True, RegimeFit.from_json(text)
    except (ValueError, KeyError, TypeError):
        return False, None


@dataclass(frozen=True)
class _Fitted:
    params: np.ndarray
    llf: float


def fit(excess_returns: pd.Series, through: datetime.date, min_obs: int = 250, *,
        valid_from: datetime.date | None = None,
        warm_start: tuple[float, ...] | None = None,
        cache: FitStore | None = None) -> RegimeFit | None:
    """Fit the two-state model on the returns dated <= ``through`` (expanding window from the start).

    ``excess_returns``: daily excess returns (fraction) indexed by trading day; NaN are dropped.
    Returns a :class:`RegimeFit` with states ordered by variance, or ``None`` when
    - fewer than ``min_obs`` non-missing returns are dated <= ``through``, or
    - no start point converges to an acceptable optimum: the optimiser reports no convergence, the
      parameters or log-likelihood are not finite, statsmodels raises, or a state's variance
      collapses below ``MIN_VARIANCE_SHARE`` of the sample variance (a degenerate optimum).
    Deterministic: two fixed start points (statsmodels' default and a persistent-regime one), each
    improved by ``EM_ITER`` EM steps then BFGS; the acceptable result with the highest likelihood
    wins. No random search. Convergence warnings are silenced (failure is detected as above).
    ``valid_from``: first day the fit is meant for; default the day after ``through``.
    ``warm_start``: the previous month's params; when given, EM from there to convergence is tried
    first (``_warm_em``) and, if acceptable, used alone (a monthly refit then takes ~0.03 s).
    ``cache``: where a result (a fit or a failure) is looked up first and stored after, under
    :func:`fit_key` of exactly these inputs; a cached result is the one this call would compute.
    """
    through = _as_date(through)
    if excess_returns.count() < max(min_obs, 10) and not excess_returns.index.has_duplicates:
        return None  # too few returns even before the cut (the replay's first year: cheap)
    s = _clean(excess_returns)
    s = s[s.index <= pd.Timestamp(through)].dropna()
    if len(s) < max(min_obs, 10):
        return None
    y = s.to_numpy() * SCALE
    var = float(np.var(y))
    if not var > 0:
        return None
    valid_from = _as_date(valid_from) if valid_from else through + datetime.timedelta(days=1)
    if cache is None:
        return _fit(y, var, s.index[-1].date(), valid_from, warm_start)
    key = fit_key(y, s.index[-1].date(), valid_from, min_obs, warm_start)
    found, hit = _cached(cache, key)
    if found:
        return hit
    result = _fit(y, var, s.index[-1].date(), valid_from, warm_start)
    cache.put(key, result.to_json() if result is not None else NO_FIT)
    return result


def _fit(y: np.ndarray, var: float, fit_through: datetime.date, valid_from: datetime.date,
         warm_start: tuple[float, ...] | None) -> RegimeFit | None:
    """The estimation itself (see :func:`fit`) on percent returns ``y`` of variance ``var``."""
    model = _model(y)
    best = _warm_em(model, warm_start, var) if warm_start is not None else None
    candidates = [] if best is not None else _start_candidates(model, y)
    for start in candidates:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                res = model.fit(start_params=start, cov_type="none", em_iter=EM_ITER, maxiter=MAXITER,
                                search_reps=0, disp=0)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue
        if _acceptable(res, var) and (best is None or res.llf > best.llf):
            best = res
    if best is None:
        return None
    return RegimeFit(
        fit_through=fit_through,
        params=order_by_variance(best.params),
        n_obs=len(y),
        loglike=float(best.llf),
        valid_from=valid_from,
    )


# --- filtering -------------------------------------------------------------------------------------


def _log_densities(y: np.ndarray, params: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian log densities of percent returns ``y`` in state 0 and state 1 under ``params``,
    each rescaled by the larger of the two (so one of them is 1 on every day): (e0, e1), arrays
    shaped like ``y``. Shared by the single and the batched filter so that both compute every
    element with the same operations (the batched values equal the single ones exactly)."""
    p00, p10, c0, c1, s0, s1 = (float(v) for v in params)
    l0 = -0.5 * (np.log(2 * np.pi * s0) + (y - c0) ** 2 / s0)
    l1 = -0.5 * (np.log(2 * np.pi * s1) + (y - c1) ** 2 / s1)
    m = np.maximum(l0, l1)
    return np.exp(l0 - m), np.exp(l1 - m)


def _filtered_high_prob(y: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """Filtered P(state 1) for percent returns ``y`` (no NaN) under ``params``: the Hamilton filter.

    The same recursion as statsmodels' ``MarkovRegression.filter`` (steady-state initial
    probabilities, Gaussian densities per state), written out in numpy so that the daily cycle
    does not import statsmodels (about two seconds) just to filter; tests check the two agree.

    The recursion over the returns of the last call under the same ``params`` is kept
    (``_CONTINUED``): when ``y`` starts with exactly those returns (the next day's series: one
    return more), only the new returns are filtered, from the kept state. Each day's value is
    then computed with the same operations in the same order as from the start: equal (tested).
    """
    p00, p10 = float(params[0]), float(params[1])
    n = len(y)
    out = np.empty(n)
    if n == 0:
        return out
    key = (p00, p10, *(float(v) for v in params[2:]))
    q0, q1 = 1.0 - p00, 1.0 - p10
    prob1 = (1.0 - p00) / (1.0 - p00 + p10)  # steady state P(state 1)
    start = 0
    kept = _CONTINUED.get(key)
    if kept is not None and len(kept[0]) <= n and np.array_equal(y[:len(kept[0])], kept[0]):
        start, prob1 = len(kept[0]), kept[2]
        out[:start] = kept[1]
    e0, e1 = (e.tolist() for e in _log_densities(y[start:], params))
    for t in range(start, n):
        a0 = (1.0 - prob1) * e0[t - start]
        a1 = prob1 * e1[t - start]
        filtered = a1 / (a0 + a1)
        out[t] = filtered
        prob1 = (1.0 - filtered) * q0 + filtered * q1  # predicted for t + 1
    _CONTINUED.pop(key, None)
    _CONTINUED[key] = (y.copy(), out.copy(), prob1)
    while len(_CONTINUED) > CONTINUED_FITS:
        _CONTINUED.pop(next(iter(_CONTINUED)))
    return np.clip(out, 0.0, 1.0)


CONTINUED_FITS = 4
"""How many fits' last filter runs ``_filtered_high_prob`` keeps (the daily cycle uses one)."""
_CONTINUED: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray, float]] = {}
"""params -> (the returns filtered, the unclipped filtered probabilities, the predicted P(state 1)
for the next return): a cache keyed by content, so it cannot go stale."""


BATCH_DAYS = 256  # days per block of the batched filter (bounds its memory: fits x days x 8 B x 4)


def _filtered_high_prob_many(y: np.ndarray, params: Sequence[tuple[float, ...]],
                             ends: Sequence[int]) -> list[np.ndarray]:
    """``[_filtered_high_prob(y[:end], p) for p, end in zip(params, ends)]`` in one pass over ``y``.

    Every fit's recursion advances together, one numpy step per day over the vector of fits, so
    the Python work is linear in the days whatever the number of fits (a monthly replay filters
    one fit per month, each from the series start). Every element is computed with the same
    floating-point operations in the same order as the single filter (``_log_densities``, then
    the same products and quotients), so the results are equal to it (tested)."""
    k = len(params)
    ends = [int(e) for e in ends]
    if k == 0:
        return []
    order = sorted(range(k), key=lambda i: -ends[i])  # longest first: the active fits are a prefix
    n = max(ends)
    sorted_ends = np.array([ends[i] for i in order])
    p00 = np.array([float(params[i][0]) for i in order])
    p10 = np.array([float(params[i][1]) for i in order])
    q0, q1 = 1.0 - p00, 1.0 - p10
    prob1 = (1.0 - p00) / (1.0 - p00 + p10)
    out = np.empty((n, k))
    for b in range(0, n, BATCH_DAYS):
        a = int(np.count_nonzero(sorted_ends > b))  # fits that still need day b
        yb = y[b:min(b + BATCH_DAYS, n)]
        dens = [_log_densities(yb, params[i]) for i in order[:a]]
        e0 = np.array([d[0] for d in dens]).T.copy()  # days x fits
        e1 = np.array([d[1] for d in dens]).T.copy()
        pr, r0, r1 = prob1[:a], q0[:a], q1[:a]
        for i in range(len(yb)):
            a0 = (1.0 - pr) * e0[i]
            a1 = pr * e1[i]
            filtered = a1 / (a0 + a1)
            out[b + i, :a] = filtered
            pr = (1.0 - filtered) * r0 + filtered * r1
        prob1[:a] = pr
    result: list[np.ndarray] = [np.empty(0)] * k
    for j, i in enumerate(order):
        result[i] = np.clip(out[:ends[i], j], 0.0, 1.0)
    return result


def _filtered_high_prob_statsmodels(y: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """The same probabilities from statsmodels (the reference the numpy filter is tested against)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        raw = _model(y).filter(np.asarray(params, dtype=float), return_raw=True)
    return np.clip(np.asarray(raw.filtered_marginal_probabilities)[1], 0.0, 1.0)


def _filtered_with_gaps(x: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """Filtered P(state 1) on each day of excess returns ``x`` (fraction, 1-D, NaN where
    missing): the filter over the present returns (in percent), NaN on a missing one; the one
    home of that step for the frame and the daily cycle's arrays (``stress_prob``)."""
    values = np.full(len(x), np.nan)
    present = ~np.isnan(x)
    if present.any():
        values[present] = _filtered_high_prob(x[present] * SCALE, params)
    return values


def filtered_stress_prob(excess_returns: pd.Series, fit: RegimeFit) -> pd.Series:
    """Return the filtered probability of the high-variance state for every day of the series.

    Uses the cached ``fit`` (Hamilton filter only, no estimation). The value at day t depends on the
    returns up to t only (and on ``fit``: for a point-in-time value the fit must be one available at t,
    see :func:`stress_prob_history`). NaN returns are dropped for the filter and are NaN in the result,
    which has the input's index and the name ``regime.stress_prob``. Values are in [0, 1].
    """
    index = excess_returns.index
    if (isinstance(index, pd.DatetimeIndex) and index.tz is None and index.is_monotonic_increasing
            and index.is_unique and index.is_normalized):  # the usual case (the cycle): no re-labelling
        x = excess_returns.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(_filtered_with_gaps(x, fit.params), index=index, name=SIGNAL)
    s = _clean(excess_returns)
    out = pd.Series(_filtered_with_gaps(s.to_numpy(), fit.params), index=s.index)
    # back to the caller's labels and order
    out = out.reindex(_dates(excess_returns.index))
    return pd.Series(out.to_numpy(), index=excess_returns.index, name=SIGNAL)


def filtered_stress_prob_runs(excess_returns: pd.Series,
                              runs: Sequence[tuple[RegimeFit, Sequence[Any]]]) -> list[np.ndarray]:
    """Return, for each ``(fit, days)`` run, the filtered probability of the high-variance state on
    ``days`` under ``fit``, the filter starting at the series start: for every run equal to
    ``filtered_stress_prob(excess_returns[<= days[-1]], fit)`` read on ``days`` (NaN on a day with a
    missing return or absent from the series), an array in the order of ``days``, values in [0, 1].

    All runs are filtered in one pass over the series (:func:`_filtered_high_prob_many`), so a
    replay of M months over N days costs N steps, not M x N (the monthly fits each filter from
    the first return)."""
    s = _clean(excess_returns)
    present = s.dropna()
    y = present.to_numpy() * SCALE
    every = _dates(pd.Index([d for _, days in runs for d in days]))  # one conversion for all runs
    cuts = np.cumsum([0] + [len(days) for _, days in runs])
    stamps = [every[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    ends = [int(present.index.searchsorted(st.max(), side="right")) if len(st) else 0 for st in stamps]
    probs = _filtered_high_prob_many(y, [f.params for f, _ in runs], ends)
    out = []
    for st, p, end in zip(stamps, probs, ends, strict=True):
        pos = present.index[:end].get_indexer(st)
        vals = np.full(len(st), np.nan)
        vals[pos >= 0] = p[pos[pos >= 0]]
        out.append(vals)
    return out


# --- schedule --------------------------------------------------------------------------------------


def refit_due(last_fit: RegimeFit | None, as_of: datetime.date) -> bool:
    """True when there is no fit, or the last fit was made for a month before ``as_of``'s month.

    The fit's month is that of its ``valid_from`` (the day after the data cut-off), not of
    ``fit_through``: a fit made on the first trading day of March with data through the last day of
    February is March's fit. So refits happen at most once per calendar month
    (``signals.common.refit_due``, shared with the drawdown-risk model).
    """
    if last_fit is None:
        return True
    return common.refit_due(last_fit.first_day, _as_date(as_of))


def current_fit(excess_returns: pd.Series, as_of: datetime.date, last_fit: RegimeFit | None,
                min_obs: int = 250, cache: FitStore | None = None) -> RegimeFit | None:
    """Return the fit to use on ``as_of``: ``last_fit`` unless :func:`refit_due`, else a new fit.

    A new fit uses the data through the day before ``as_of`` (as :func:`stress_prob_history` does) and
    is valid from ``as_of``. If it fails (see :func:`fit`), ``last_fit`` is kept for the rest of the
    month (returned with ``valid_from=as_of`` so that it is not retried daily); ``None`` when there is
    no fit at all yet. Store the result; the service calls this once per cycle. ``cache``: see
    :func:`fit`.
    """
    as_of = _as_date(as_of)
    if not refit_due(last_fit, as_of):
        return last_fit
    new = fit(excess_returns, as_of - datetime.timedelta(days=1), min_obs, valid_from=as_of,
              warm_start=last_fit.params if last_fit is not None else None, cache=cache)
    if new is None and last_fit is not None:
        return dataclasses.replace(last_fit, valid_from=as_of)
    return new


def stress_prob_history(excess_returns: pd.Series, start: datetime.date, end: datetime.date,
                        min_obs: int = 250) -> pd.Series:
    """Return point-in-time ``regime.stress_prob`` for the days of the series in [start, end].

    Expanding window: on each month's first trading day (first date of the series in that month) the
    model is refitted on all returns through the previous day; that fit is used for the whole month.
    Each day's value is the filtered probability over the returns from the series start to that day,
    under the fit available that day (all months filtered in one pass: :func:`filtered_stress_prob_runs`),
    so appending later data never changes it (no look-ahead). A
    failed refit keeps the previous month's fit; days with no fit yet (fewer than ``min_obs`` returns
    before their month) or a missing return are NaN. Result: the input's labels for those days.
    """
    s = _clean(excess_returns)
    s = s[s.index <= pd.Timestamp(_as_date(end))]
    in_range = s.index[s.index >= pd.Timestamp(_as_date(start))]
    out = pd.Series(np.nan, index=in_range, dtype=float)
    if len(in_range):
        month_of = s.index.to_period("M")
        first_days = pd.Series(s.index, index=s.index).groupby(month_of).min()  # month -> first day
        fits: dict[pd.Period, RegimeFit | None] = {}
        previous: list[RegimeFit] = []  # the latest fit made, for a warm start (as the service does)

        def month_fit(m: pd.Period) -> RegimeFit | None:
            if m not in fits:
                first = first_days[m].date()
                f = fit(s, first - datetime.timedelta(days=1), min_obs, valid_from=first,
                        warm_start=previous[-1].params if previous else None)
                if f is not None:
                    previous.append(f)
                earlier = first_days.index[first_days.index < m]
                enough = s[s.index < first_days[m]].count() >= min_obs
                if f is None and enough and len(earlier):  # the fit failed: keep last month's
                    f = month_fit(earlier[-1])
                fits[m] = f
            return fits[m]

        runs = []  # (the month's fit, its days): filtered in one pass below
        for m in pd.unique(in_range.to_period("M")):
            f = month_fit(m)
            if f is not None:
                runs.append((f, in_range[in_range.to_period("M") == m]))
        for (_, days), probs in zip(runs, filtered_stress_prob_runs(s, runs), strict=True):
            out[days] = probs
    labels = excess_returns.index[_dates(excess_returns.index).isin(in_range)]
    result = pd.Series(out.reindex(_dates(labels)).to_numpy(), index=labels, name=SIGNAL)
    return result


# --- registration: the daily cycle supplies the month's fit (cached in the database) --------------

FAMILY = family("regime", min_obs=250)


@register(SIGNAL, family=FAMILY, inputs=(MICROCAP, ALL_A), window=lambda p: None,
          unit="fraction [0,1]", params=("min_obs",), state="regime_fit", arrays=True)
def stress_prob(frame: pd.DataFrame, min_obs: int, fit: RegimeFit | None = None) -> pd.Series:
    """Filtered probability (0..1) of the high-variance state of the two-state Markov switching
    model on micro-cap excess returns over CSI All Share, under ``fit`` (the month's fit, refitted
    on an expanding window at most monthly and cached by the service). NaN without a fit (fewer
    than ``min_obs`` returns before the month). Look-back: all history. Stress regime when >= 0.8
    for 3 consecutive days.
    """
    excess = microcap_excess_returns(frame)
    if isinstance(excess, np.ndarray):  # the daily cycle's arrays: the filter on the same numbers
        return np.full(len(excess), np.nan) if fit is None else _filtered_with_gaps(excess, fit.params)
    if fit is None:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return filtered_stress_prob(excess, fit)
