"""Backtest core: rules over history, scored against micro-cap drawdown episodes (pure).

Everything here is a pure function of its arguments: no database, no files, no clock. The replay
engine and the CLI feed it the signal values of a period (one row per trading day) and the
drawdown labels; this module answers "what would the rules have done, how good was it, and is
that better than the same number of alerts on random days".

Units: every window, lead time and horizon is counted in TRADING DAYS, i.e. in rows of the
``values`` index (positions), never in calendar days. Shares are fractions in [0, 1]; thresholds
are in the unit of their signal (SIGNALS.md).

Simulation (:func:`simulate`, :func:`simulate_full`)
    Each rule starts from ``AlertState()`` on the first row and is advanced one row at a time
    with ``monitor.alerting.advance.advance``, the function the daily cycle calls (``when``;
    ``clear`` = ``rules.clear_condition``: the rule's ``clear_when`` or, without one, ``not
    when``; ``Timing.of(rule)``). Silences are ignored (they mute notifications but never change
    states or events). Conditions are evaluated for all rows at once by
    ``monitor.alerting.expr.evaluate_columns`` (the same Kleene three-valued logic as
    ``Expr.evaluate``: a missing column, None or NaN is unknown; ``False and unknown`` is False,
    ``True or unknown`` True).

Scoring (:func:`score`, :func:`score_simulation`); L = ``lookback_days`` (20), H =
``horizon_days`` (40), MIN_LEAD = ``min_lead_days`` (3); p, h, t = positions in the values index
of an episode's peak, half-depth day and trough:
    - Labels: the drawdown episodes with ``depth <= -min_depth`` (default
      ``config.episodes.drawdown_min_depth``). h is the first day in [peak, trough] with
      close / peak_close - 1 <= depth / 2.
    - Rows and kinds: one row per rule. A rule whose ``when`` reads ``microcap.drawdown``
      restates the drawdown under way: kind ``"state"``. Other rules are ``"warning"``
      (severity warning or critical) or ``"info"``. :data:`ANY` ("any warning", kind
      ``"union"``) is the union of the warning rules only (no state, no info rule). Row order:
      warnings, ANY, state rules, info rules (each in config order).
    - A "firing" is a day with the lifecycle event ``firing`` (a transition INTO the firing
      state); repeats are not firings. For ANY: a day on which at least one of its rules fired;
      in state firing = at least one of its rules is.
    - Counted episodes: those whose catch window [p - L, t] lies inside the scored period
      [a, b] (``start``/``end``, default the whole index). An open episode (no recovery yet)
      counts with its trough and depth so far.
    - Crediting: counted episodes are taken in time order. The warning credited to an episode
      is, if the row is in state firing on day p, the firing that started that firing spell
      (it may lie before p - L; its lead is measured from it: ``already_firing``); else the
      earliest firing f with p - L <= f <= t. A firing is credited to one episode only: one
      already credited is skipped and the next eligible one taken. ``lead_half`` = h - f
      (signed: negative = after the half-depth day), ``lead_trough`` = t - f. The episode is
      *caught* when lead_half >= MIN_LEAD; *warned* when it got any credited warning.
    - recall = caught / counted episodes; lead quartiles: 25/50/75% of lead_half over the
      warned episodes (numpy's linear interpolation).
    - Each firing f inside the period is a *hit* if some labelled episode (counted or not) has
      f <= h <= f + H; else *late* if it lies inside an episode (p <= f <= t); else a *false
      alarm* when judged (f + H <= last row of the index), otherwise *unjudged*.
      precision = hits / (hits + late + false alarms); false alarms per year = false alarms /
      (days in the period / 252).
    - share_in_alert = days of the period on which the row ended in state firing / days;
      notifications_per_year = days of the period with a notified event (firing, repeat,
      resolved; for ANY: of any of its rules) per 252 days.
    - Chance baselines (``draws`` draws, generator ``numpy.random.default_rng([seed,
      crc32(row name), k])``, so a row's baseline does not depend on the other rows scored):
      *random placement* (k = 0) keeps the row's firing spells in the period (start and
      number of days in state firing; one still open at the end keeps its observed length)
      and places every spell start uniformly on a day of the period (spells may overlap;
      truncated at the period's end); *circular shift* (k = 1) rotates the row's fired/firing
      days of the period by a random offset in [1, n - 1], which keeps their clustering. Each
      draw is scored exactly as above (crediting, already firing at p, MIN_LEAD), on the
      period's days only. chance_mean / shift_mean = mean caught over the draws; p_value /
      shift_p = (1 + draws with caught >= the real caught) / (1 + draws). A row without firings
      in the period has chance 0 and p 1. Note the shift's floor: a shift by fewer days than the
      slack of a catch window keeps the catches (about 27 of n - 1 offsets for an alert 5 days
      before the half-depth day), so shift_p of a perfectly timed alert is ~27 / n, not 1 / draws.

Dates that are not rows of the values index are placed on it: a peak (or half-depth day) on the
first row on or after it, a trough on the last row on or before it. Episode labels should come
from closes that cover the values index.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
from pydantic import ValidationError

import signals
from monitor.alerting import expr, lifecycle
from monitor.alerting.advance import advance
from monitor.alerting.rules import Evaluation, clear_condition
from monitor.config import Config, RuleConfig
from monitor.delivery import digest
from signals.episodes import DrawdownEpisode, drawdown_episodes

__all__ = [
    "ANY",
    "DRAWS",
    "HORIZON_DAYS",
    "LOOKBACK_DAYS",
    "MIN_LEAD_DAYS",
    "SEED",
    "STATE_SIGNAL",
    "EpisodeDetail",
    "ScoreRow",
    "Simulation",
    "Sweep",
    "apply",
    "calibrate",
    "parse_sweep",
    "replace_threshold",
    "restate_explain",
    "rule_kind",
    "score",
    "score_simulation",
    "simulate",
    "simulate_full",
    "sweep",
    "sweep_table",
    "table",
    "to_json",
    "to_records",
]

ANY = "any warning"
"""Row name of the union of the warning rules (rule names cannot contain a space)."""
STATE_SIGNAL = "microcap.drawdown"
"""A rule whose ``when`` reads this signal restates the drawdown under way: kind "state"."""

LOOKBACK_DAYS = 20
HORIZON_DAYS = 40
MIN_LEAD_DAYS = 3
DRAWS = 1000
SEED = 20231201
MAX_DRAWS = 100_000
TRADING_DAYS_PER_YEAR = 252
NOTIFIED = frozenset({"firing", "repeat", "resolved"})
"""Lifecycle events that notify."""
TIMING_FIELDS = {"for_days": 1, "clear_days": 1, "repeat_every_days": 0}  # field -> minimum
MAX_POINTS = 200
"""Most values one sweep axis may have."""
MAX_GRID = 10_000
"""Most grid points (cartesian product of all axes) one sweep may have."""
_BLOCK = 1000
"""Baseline draws scored at once (bounds memory: a block is _BLOCK x spells)."""


def rule_kind(rule: RuleConfig) -> str:
    """``"state"`` when the rule's ``when`` reads :data:`STATE_SIGNAL`, else ``"info"`` for
    severity info and ``"warning"`` for warning and critical."""
    if STATE_SIGNAL in rule.when_expr.names:
        return "state"
    return "info" if rule.severity == "info" else "warning"


def _check_draws(draws: int, seed: int) -> None:
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or not 0 <= draws <= MAX_DRAWS:
        raise ValueError(f"draws must be a whole number in [0, {MAX_DRAWS}], got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")


# --------------------------------------------------------------------------- days


def _day_index(index: Iterable, what: str = "values") -> pd.DatetimeIndex:
    """The index as normalised timestamps; ValueError unless strictly ascending."""
    idx = pd.DatetimeIndex(pd.to_datetime(list(index) if not isinstance(index, pd.Index) else index))
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    idx = idx.normalize()
    if len(idx) > 1 and not (idx[1:] > idx[:-1]).all():
        raise ValueError(f"{what} index must be strictly ascending trading days")
    return idx


def _iso(ts: pd.Timestamp) -> str:
    return ts.date().isoformat()


def _isos(index: Iterable) -> list[str]:
    """The (validated) index as ISO dates."""
    return list(_day_index(index).strftime("%Y-%m-%d"))


def _to_date(d) -> dt.date:
    return pd.Timestamp(d).date()


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _RuleRun:
    """One rule over the whole index: its events and, per row, what happened that day."""

    events: list[tuple[int, str, str, str]]  # (position, event, from_state, to_state)
    fired: np.ndarray  # bool per row: event 'firing' on that day
    firing: np.ndarray  # bool per row: in state firing at the end of the day
    notified: np.ndarray  # bool per row: a notified event (firing, repeat, resolved) that day


_LOOKUP = (False, True, None)  # code 0, 1, -1


def _codes(t: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per row: 1 = True, 0 = False, -1 = unknown."""
    return np.where(t, 1, np.where(f, 0, -1))


def _run(rule: RuleConfig, when_expr: expr.Expr, cols: Mapping[str, np.ndarray],
         days: Sequence[str]) -> _RuleRun:
    """``rule`` (its ``when`` replaced by ``when_expr``) over every row: the conditions evaluated
    at once (``expr.evaluate_columns``), then ``advance`` one row at a time as the cycle does."""
    n = len(days)
    memo: dict = {}
    wt, wf = expr.evaluate_columns(when_expr, cols, n, memo)
    ct, cf = expr.evaluate_columns(clear_condition(when_expr, rule.clear_expr), cols, n, memo)
    # One Evaluation per (when, clear) pair: the events do not carry values (no digest items).
    evals = {(w, c): Evaluation(rule.name, _LOOKUP[w], _LOOKUP[c], {}, [])
             for w in (0, 1, -1) for c in (0, 1, -1)}
    pairs = zip(_codes(wt, wf).tolist(), _codes(ct, cf).tolist(), strict=True)
    timing = lifecycle.Timing.of(rule)
    state = lifecycle.AlertState()
    events: list[tuple[int, str, str, str]] = []
    fired = np.zeros(n, dtype=bool)
    firing = np.zeros(n, dtype=bool)
    notified = np.zeros(n, dtype=bool)
    for i, pair in enumerate(pairs):
        new, event, _ = advance(rule, evals[pair], state, days[i], timing=timing)
        if event:
            events.append((i, event["event"], event["from_state"], event["to_state"]))
            if event["event"] == "firing":
                fired[i] = True
            if event["event"] in NOTIFIED:
                notified[i] = True
        firing[i] = new.state == lifecycle.FIRING
        state = new
    return _RuleRun(events, fired, firing, notified)


def _run_rule(rule: RuleConfig, cols: Mapping[str, np.ndarray], days: Sequence[str]) -> _RuleRun:
    return _run(rule, rule.when_expr, cols, days)


def _rule_key(rule: RuleConfig) -> tuple:
    return (rule.when, rule.clear_when, rule.for_days, rule.clear_days, rule.repeat_every_days)


@dataclass(frozen=True)
class Simulation:
    """The rules over a period.

    ``events``: dicts {rule, date (ISO), event, from_state, to_state, severity}, ordered by day
    and, within a day, by the rules' order in the config (the order the cycle writes them).
    Bool DataFrames (index = the values index, columns = rule names in config order):
    ``firing``: the rule ended that day in state ``firing``; ``fired``: the event ``firing``
    (a transition into the firing state) that day; ``notified``: a notified event (firing,
    repeat or resolved, :data:`NOTIFIED`) that day. ``kinds``: rule name -> "warning" | "info" |
    "state" (:func:`rule_kind`).
    """

    events: list[dict]
    firing: pd.DataFrame
    fired: pd.DataFrame
    notified: pd.DataFrame
    kinds: dict[str, str]

    def firing_days(self, rule: str) -> set[dt.date]:
        """The days on which ``rule`` was in state firing."""
        col = self.firing[rule]
        return {_to_date(d) for d in col.index[col.to_numpy()]}


def _frame(index: pd.Index, names: list[str], cols: Iterable[np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(dict(zip(names, cols, strict=True)), index=index, columns=names, dtype=bool)


def _simulation(config: Config, index: pd.Index, runs: Sequence[_RuleRun]) -> Simulation:
    days = _isos(index)
    merged = []
    for order, (rule, run) in enumerate(zip(config.rules, runs, strict=True)):
        for pos, event, frm, to in run.events:
            merged.append((pos, order, {"rule": rule.name, "date": days[pos], "event": event,
                                        "from_state": frm, "to_state": to,
                                        "severity": rule.severity}))
    merged.sort(key=lambda m: (m[0], m[1]))
    names = [r.name for r in config.rules]
    return Simulation([m[2] for m in merged],
                      firing=_frame(index, names, (r.firing for r in runs)),
                      fired=_frame(index, names, (r.fired for r in runs)),
                      notified=_frame(index, names, (r.notified for r in runs)),
                      kinds={r.name: rule_kind(r) for r in config.rules})


def simulate_full(config: Config, values: pd.DataFrame) -> Simulation:
    """Run every rule of ``config`` over ``values`` day by day; return events and states.

    ``values``: index = trading days, strictly ascending (dates, Timestamps or ISO strings);
    columns = signal names; NaN/None = missing (a rule reading a column that is absent sees it
    missing every day). Each rule starts from ``AlertState()`` on the first row. Silences are
    ignored. Raises ValueError if the index is not strictly ascending.
    """
    days = _isos(values.index)
    names = set().union(*(r.names for r in config.rules)) if config.rules else set()
    cols = expr.frame_columns(values, names)
    runs = [_run_rule(rule, cols, days) for rule in config.rules]
    return _simulation(config, values.index, runs)


def simulate(config: Config, values: pd.DataFrame) -> list[dict]:
    """The alert events the daily cycle would record over ``values`` (see :func:`simulate_full`).

    Each event is {rule, date (ISO), event, from_state, to_state, severity}; ordered by day,
    then by the rules' order in the config.
    """
    return simulate_full(config, values).events


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class EpisodeDetail:
    """One counted episode as seen by one row (dates ISO; leads in trading days)."""

    peak: str
    half_depth: str  # first day the drawdown reached depth / 2
    trough: str
    depth: float  # fraction, negative
    warning: str | None  # the credited firing (None = no warning)
    lead_half: int | None  # half-depth day - warning (signed)
    lead_trough: int | None  # trough - warning
    caught: bool  # lead_half >= MIN_LEAD
    already_firing: bool  # the row was in state firing on the peak day (warning = its spell start)


@dataclass(frozen=True)
class ScoreRow:
    """A rule's (or "any warning"'s) record over the scored period (definitions: module doc)."""

    rule: str
    kind: str  # "warning" | "info" | "state" | "union"
    days: int  # trading days in the period
    episodes: int  # counted episodes (catch window inside the period)
    caught: int  # warned at least MIN_LEAD trading days before the half-depth day
    warned: int  # got a credited warning at all
    recall: float | None  # caught / episodes
    lead_q25: float | None  # quartiles of lead_half (trading days, signed) over warned episodes
    lead_median: float | None
    lead_q75: float | None
    median_lead_trough: float | None  # over warned episodes
    firings: int  # firing transitions within the period
    hits: int  # firings followed by a half-depth day within H
    late: int  # no hit, but inside an episode
    false_alarms: int
    unjudged: int  # would be false, but the horizon runs past the data
    precision: float | None  # hits / (hits + late + false_alarms)
    false_alarms_per_year: float  # per 252 trading days of the period
    share_in_alert: float  # fraction of the period's days in state firing
    notifications_per_year: float  # days with a notified event, per 252 trading days
    chance_mean: float | None  # mean caught, same spells on random days (None: no draws)
    p_value: float | None
    shift_mean: float | None  # mean caught, own alert days circularly shifted
    shift_p: float | None
    episodes_detail: tuple[EpisodeDetail, ...] = field(default=())  # counted, in time order


@dataclass(frozen=True)
class _Labels:
    """The episodes placed on the values index, and the scored period."""

    n: int  # rows of the values index
    a: int  # first position of the period
    b: int  # last position of the period
    peak: np.ndarray  # positions (int); a peak before the index start is placed on row 0
    trough: np.ndarray
    half: np.ndarray  # position of the half-depth day
    half_ok: np.ndarray  # bool: the half-depth day lies on the index (usable for hits)
    counted: np.ndarray  # indices of the counted episodes, in time order
    episodes: tuple[DrawdownEpisode, ...]
    half_dates: tuple[dt.date, ...]
    lookback: int
    horizon: int
    min_lead: int
    days: tuple[str, ...]  # the values index as ISO dates


def _half_depth_day(ep: DrawdownEpisode, close: pd.Series) -> dt.date:
    seg = close[(close.index >= pd.Timestamp(ep.peak)) & (close.index <= pd.Timestamp(ep.trough))].dropna()
    hit = seg[(seg.to_numpy(dtype=float) / ep.peak_close - 1.0) <= ep.depth / 2.0]
    return ep.trough if hit.empty else _to_date(hit.index[0])


def _labels(index: pd.Index, episodes: Iterable[DrawdownEpisode], close: pd.Series, min_depth: float,
            lookback: int, horizon: int, start, end, min_lead: int = MIN_LEAD_DAYS) -> _Labels:
    if lookback < 0 or horizon < 0:
        raise ValueError("lookback_days and horizon_days must be >= 0")
    idx = _day_index(index)
    n = len(idx)
    a = 0 if start is None else int(idx.searchsorted(pd.Timestamp(start), side="left"))
    b = n - 1 if end is None else int(idx.searchsorted(pd.Timestamp(end), side="right")) - 1
    if n == 0 or b < a:
        raise ValueError("the scored period contains no trading day of the values index")
    c = close.copy()
    c.index = _day_index(c.index, "close")
    # Episodes entirely before or after the index cannot matter to any firing on it.
    eps = tuple(e for e in episodes if e.depth <= -min_depth
                and pd.Timestamp(e.peak) <= idx[-1] and pd.Timestamp(e.trough) >= idx[0])
    halves = tuple(_half_depth_day(e, c) for e in eps)
    peak = np.array([idx.searchsorted(pd.Timestamp(e.peak), side="left") for e in eps], dtype=int)
    trough = np.array([idx.searchsorted(pd.Timestamp(e.trough), side="right") - 1 for e in eps],
                      dtype=int)
    half = np.array([idx.searchsorted(pd.Timestamp(h), side="left") for h in halves], dtype=int)
    half_ok = np.array([idx[0] <= pd.Timestamp(h) <= idx[-1] for h in halves], dtype=bool)
    early = np.array([pd.Timestamp(e.peak) < idx[0] for e in eps], dtype=bool)
    counted = (~early) & (peak - lookback >= a) & (trough <= b) & (peak <= trough)
    order = np.flatnonzero(counted)
    order = order[np.lexsort((trough[order], peak[order]))] if order.size else order
    return _Labels(n, a, b, peak, trough, half, half_ok, order.astype(int), eps, halves,
                   lookback, horizon, min_lead, tuple(idx.strftime("%Y-%m-%d")))


def _spells(fired: np.ndarray, firing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The alert spells of one series: (start, end (exclusive), creditable), positions in the
    arrays.

    Each firing transition starts a creditable spell that runs to the end of its run of days in
    state firing (a run still open at the end keeps its observed length; at least one day). A
    run that does not start with a firing transition (it began before the arrays) is one spell
    that is not creditable: it is in state firing but has no warning to credit.
    """
    f = np.asarray(firing, dtype=bool)
    fd = np.asarray(fired, dtype=bool)
    run_start = np.flatnonzero(f & ~np.r_[False, f[:-1]])
    run_end = np.flatnonzero(f & ~np.r_[f[1:], False]) + 1
    pos = np.flatnonzero(fd)
    k = np.searchsorted(run_start, pos, side="right") - 1
    kc = np.maximum(k, 0)
    inside = (k >= 0) & (run_end[kc] > pos) if run_end.size else np.zeros(pos.size, bool)
    end = np.where(inside, run_end[kc] if run_end.size else 0, pos + 1)
    bare = ~fd[run_start]
    return (np.concatenate([pos, run_start[bare]]), np.concatenate([end, run_end[bare]]),
            np.concatenate([np.ones(pos.size, bool), np.zeros(int(bare.sum()), bool)]))


def _credit(start: np.ndarray, end: np.ndarray, creditable: np.ndarray, lab: _Labels,
            offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Credit warnings to the counted episodes, for D series at once (module doc, "Crediting").

    Each series is a set of spells: ``start``/``end`` (exclusive)/``creditable``, all (D, k),
    positions relative to index position ``offset``; the series is in state firing on the days
    its spells cover, a creditable spell's start is a firing transition. Overlapping or adjacent
    spells form one firing run, which starts at its earliest spell. Returns (warning, already),
    both (D, K) over ``lab.counted``: the credited firing's index position (-1 = none) and
    whether it was credited as the start of a run already firing at the peak.
    """
    d, k = start.shape
    n_eps = lab.counted.size
    warning = np.full((d, n_eps), -1, dtype=np.int64)
    already = np.zeros((d, n_eps), dtype=bool)
    if not n_eps or not k:
        return warning, already
    order = np.argsort(2 * start + ~creditable, axis=1)  # by start, creditable first on a tie
    s = np.take_along_axis(start, order, axis=1)
    c = np.take_along_axis(creditable, order, axis=1)
    reach = np.maximum.accumulate(np.take_along_axis(end, order, axis=1), axis=1)
    new_run = np.ones((d, k), dtype=bool)
    new_run[:, 1:] = s[:, 1:] > reach[:, :-1]
    first = np.maximum.accumulate(np.where(new_run, np.arange(k), 0), axis=1)  # run's first spell
    credited = np.zeros((d, k), dtype=bool)
    rows = np.arange(d)
    for j, e in enumerate(lab.counted):
        p, t = int(lab.peak[e]) - offset, int(lab.trough[e]) - offset
        last = (s <= p).sum(axis=1) - 1  # the last spell starting on or before the peak
        lc = np.maximum(last, 0)
        r = first[rows, lc]
        on = (last >= 0) & (reach[rows, lc] > p) & c[rows, r] & ~credited[rows, r]
        eligible = c & ~credited & (s >= p - lab.lookback) & (s <= t)
        i = eligible.argmax(axis=1)
        f = np.where(on, s[rows, r], np.where(eligible[rows, i], s[rows, i], -1))
        got = f >= 0
        credited |= got[:, None] & (s == f[:, None])
        warning[:, j] = np.where(got, f + offset, -1)
        already[:, j] = on
    return warning, already


def _caught(warning: np.ndarray, lab: _Labels) -> np.ndarray:
    """Caught episodes per series (row of ``warning``)."""
    if not lab.counted.size:
        return np.zeros(warning.shape[0], dtype=np.int64)
    lead = lab.half[lab.counted][None, :] - warning
    return ((warning >= 0) & (lead >= lab.min_lead)).sum(axis=1)


def _blocks(draws: int) -> list[int]:
    return [min(_BLOCK, draws - i) for i in range(0, draws, _BLOCK)]


def _baselines(name: str, fired: np.ndarray, firing: np.ndarray, lab: _Labels, caught: int,
               draws: int, seed: int) -> tuple[float, float, float, float]:
    """(chance_mean, p_value, shift_mean, shift_p) of one row (see the module doc)."""
    a, b = lab.a, lab.b
    m = b - a + 1
    s0, e0, c0 = _spells(fired[a:b + 1], firing[a:b + 1])
    lengths = (e0 - s0)[c0]
    if not lengths.size or not lab.counted.size:  # no firing, or nothing to catch
        return 0.0, 1.0, 0.0, 1.0
    tag = zlib.crc32(name.encode("utf-8"))

    rng = np.random.default_rng([seed, tag, 0])
    chance = []
    for size in _blocks(draws):
        s = rng.integers(0, m, size=(size, lengths.size))
        e = np.minimum(s + lengths, m)
        chance.append(_caught(_credit(s, e, np.ones(s.shape, bool), lab, a)[0], lab))
    chance_caught = np.concatenate(chance)

    if m < 2:  # nothing to shift by
        shift_caught = np.full(draws, caught)
    else:
        rng = np.random.default_rng([seed, tag, 1])
        shift = []
        span = e0 - s0
        for size in _blocks(draws):
            o = rng.integers(1, m, size=size)[:, None]
            s = (s0 + o) % m
            wrap = s + span - m  # days running past the period's end continue at its start
            tail = wrap > 0
            starts = np.concatenate([s, np.where(tail, 0, m)], axis=1)
            ends = np.concatenate([np.minimum(s + span, m), np.where(tail, wrap, m)], axis=1)
            cred = np.concatenate([np.broadcast_to(c0, s.shape), np.zeros(s.shape, bool)], axis=1)
            shift.append(_caught(_credit(starts, ends, cred, lab, a)[0], lab))
        shift_caught = np.concatenate(shift)

    def p(xs: np.ndarray) -> float:
        return float((1 + int((xs >= caught).sum())) / (1 + draws))

    return (float(chance_caught.mean()), p(chance_caught), float(shift_caught.mean()),
            p(shift_caught))


def _quartiles(xs: list[int]) -> tuple[float | None, float | None, float | None]:
    if not xs:
        return None, None, None
    q = np.percentile(np.asarray(xs, dtype=float), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def _score(name: str, kind: str, fired: np.ndarray, firing: np.ndarray, notified: np.ndarray,
           lab: _Labels, draws: int, seed: int) -> ScoreRow:
    """Score one row (bool arrays over the values index) against the labels."""
    days = lab.days
    start, end, creditable = _spells(fired, firing)
    warning, already = _credit(start[None, :], end[None, :], creditable[None, :], lab, 0)
    details = []
    for j, e in enumerate(lab.counted):
        ep = lab.episodes[e]
        f = int(warning[0, j])
        half, trough = int(lab.half[e]), int(lab.trough[e])
        lead_half = None if f < 0 else half - f
        details.append(EpisodeDetail(
            peak=ep.peak.isoformat(), half_depth=lab.half_dates[e].isoformat(),
            trough=ep.trough.isoformat(), depth=ep.depth, warning=None if f < 0 else days[f],
            lead_half=lead_half, lead_trough=None if f < 0 else trough - f,
            caught=lead_half is not None and lead_half >= lab.min_lead,
            already_firing=bool(already[0, j])))
    warned = [d for d in details if d.warning is not None]
    caught = sum(d.caught for d in details)
    q25, med, q75 = _quartiles([d.lead_half for d in warned if d.lead_half is not None])

    pos = np.flatnonzero(fired[lab.a:lab.b + 1]) + lab.a
    at = pos[:, None]  # firings x episodes
    halves = lab.half[lab.half_ok]
    hit = ((at <= halves) & (halves <= at + lab.horizon)).any(axis=1)
    inside = ((lab.peak <= at) & (at <= lab.trough)).any(axis=1)
    late = ~hit & inside
    rest = ~hit & ~inside
    judged = pos + lab.horizon <= lab.n - 1
    n_hit, n_late = int(hit.sum()), int(late.sum())
    n_false, n_unjudged = int((rest & judged).sum()), int((rest & ~judged).sum())
    scored = n_hit + n_late + n_false
    days_in = lab.b - lab.a + 1
    years = days_in / TRADING_DAYS_PER_YEAR
    baselines: tuple[float, float, float, float] | tuple[None, None, None, None] = (
        _baselines(name, fired, firing, lab, caught, draws, seed) if draws else (None, None, None, None))
    chance, p, shift, shift_p = baselines
    return ScoreRow(
        rule=name, kind=kind, days=days_in, episodes=len(details), caught=caught,
        warned=len(warned), recall=caught / len(details) if details else None,
        lead_q25=q25, lead_median=med, lead_q75=q75,
        median_lead_trough=_quartiles([d.lead_trough for d in warned if d.lead_trough is not None])[1],
        firings=int(pos.size), hits=n_hit, late=n_late, false_alarms=n_false,
        unjudged=n_unjudged, precision=n_hit / scored if scored else None,
        false_alarms_per_year=n_false / years,
        share_in_alert=float(firing[lab.a:lab.b + 1].sum()) / days_in,
        notifications_per_year=float(notified[lab.a:lab.b + 1].sum()) / years,
        chance_mean=chance, p_value=p, shift_mean=shift, shift_p=shift_p,
        episodes_detail=tuple(details))


_ORDER = {"warning": 0, "union": 1, "state": 2, "info": 3}


def _score_all(arrays: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
               kinds: Mapping[str, str], lab: _Labels, rules: Sequence[str] | None,
               draws: int, seed: int) -> list[ScoreRow]:
    """Rows for ``rules`` (default all of ``arrays``, in its order) and ANY, in the row order of
    the module doc. ``arrays``: rule -> (fired, firing, notified) over the whole index; ANY is
    the union of ALL warning rules of ``arrays``."""
    _check_draws(draws, seed)
    names = list(arrays) if rules is None else list(rules)
    for name in names:
        if name not in arrays:
            raise KeyError(f"no rule named {name!r}")
    members = [arrays[n] for n in arrays if kinds[n] == "warning"]
    n = lab.n
    fired_any, firing_any, notified_any = (
        np.logical_or.reduce([m[i] for m in members]) if members else np.zeros(n, bool) for i in range(3))
    union = (fired_any, firing_any, notified_any)
    todo = [(name, kinds[name], arrays[name]) for name in names] + [(ANY, "union", union)]
    todo.sort(key=lambda item: _ORDER[item[1]])  # stable: config order within a kind
    return [_score(name, kind, *arr, lab, draws, seed) for name, kind, arr in todo]


def score_simulation(sim: Simulation, episodes: Iterable[DrawdownEpisode], close: pd.Series, *,
                     min_depth: float = 0.10, lookback_days: int = LOOKBACK_DAYS,
                     horizon_days: int = HORIZON_DAYS, min_lead_days: int = MIN_LEAD_DAYS,
                     start: dt.date | None = None, end: dt.date | None = None,
                     rules: Sequence[str] | None = None, draws: int = DRAWS,
                     seed: int = SEED) -> list[ScoreRow]:
    """Score a :class:`Simulation` against drawdown ``episodes``.

    Rows: the warning rules, then ANY ("any warning"), then the state rules, then the info rules
    (config order within each). ``close``: the micro-cap close (points) indexed by trading day,
    used for the half-depth day. ``min_depth``: only episodes with depth <= -min_depth
    (fraction) are labels. ``lookback_days`` L, ``horizon_days`` H, ``min_lead_days``: trading
    days (see the module doc for every definition). ``start``/``end`` restrict the scored period
    to index rows within [start, end] (the simulation may start earlier to warm up); default the
    whole index. ``rules``: score only these rules (ANY is always the union of ALL simulated
    warning rules). ``draws`` (0 = no baselines: their fields are None) and ``seed``: the chance
    baselines. Raises ValueError for a bad period, draws or seed.
    """
    lab = _labels(sim.firing.index, episodes, close, min_depth, lookback_days, horizon_days,
                  start, end, min_lead_days)
    arrays = {n: (sim.fired[n].to_numpy(bool), sim.firing[n].to_numpy(bool),
                  sim.notified[n].to_numpy(bool)) for n in sim.firing.columns}
    return _score_all(arrays, sim.kinds, lab, rules, draws, seed)


def score(config: Config, values: pd.DataFrame, episodes: Iterable[DrawdownEpisode], close: pd.Series,
          *, lookback_days: int = LOOKBACK_DAYS, horizon_days: int = HORIZON_DAYS,
          min_lead_days: int = MIN_LEAD_DAYS, min_depth: float | None = None,
          start: dt.date | None = None, end: dt.date | None = None, draws: int = DRAWS,
          seed: int = SEED) -> list[ScoreRow]:
    """Simulate ``config``'s rules over ``values`` and score them (see :func:`score_simulation`
    and the module doc). ``min_depth`` defaults to ``config.episodes.drawdown_min_depth``."""
    depth = config.episodes.drawdown_min_depth if min_depth is None else min_depth
    return score_simulation(simulate_full(config, values), episodes, close, min_depth=depth,
                            lookback_days=lookback_days, horizon_days=horizon_days,
                            min_lead_days=min_lead_days, start=start, end=end, draws=draws,
                            seed=seed)


# --------------------------------------------------------------------------- output


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _p(p: float) -> str:
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _vs(mean: float | None, p: float | None) -> str:
    return "-" if mean is None or p is None else f"{mean:.1f} (p={_p(p)})"


def _lead(x: float | None) -> str:
    return "-" if x is None else format(round(x, 1), "g")


_HEADINGS = {"state": "state alerts (restate a drawdown under way; not warnings)",
             "info": 'info rules (not part of "any warning")'}


def table(rows: Sequence[ScoreRow], *, lookback_days: int = LOOKBACK_DAYS,
          horizon_days: int = HORIZON_DAYS, min_lead_days: int = MIN_LEAD_DAYS,
          draws: int = DRAWS, legend: bool = True) -> str:
    """The score rows as an aligned text table, in blocks (warnings and "any warning", state
    alerts, info rules), then one sentence per row not shown to beat chance at p <= 0.05, then
    (``legend``) one line per column. The keyword arguments only label the text."""
    head = ["rule", f"caught ≥{min_lead_days}d", "chance (p)", "shifted (p)", "precision",
            "false/yr", "in alert", "notif/yr", "lead q25/med/q75"]
    body = []
    for r in rows:
        judged = r.hits + r.late + r.false_alarms
        body.append([
            r.rule, f"{r.caught}/{r.episodes}", _vs(r.chance_mean, r.p_value),
            _vs(r.shift_mean, r.shift_p),
            "-" if r.precision is None else f"{100 * r.precision:.0f}% ({r.hits}/{judged})",
            f"{r.false_alarms_per_year:.2f}", f"{100 * r.share_in_alert:.1f}%",
            f"{r.notifications_per_year:.1f}",
            "-" if r.lead_median is None else "/".join(_lead(x) for x in (r.lead_q25, r.lead_median,
                                                                           r.lead_q75))])
    lines = _aligned(head, body).splitlines()
    out = lines[:2]
    shown: set[str] = set()
    for r, line in zip(rows, lines[2:], strict=True):
        if r.kind in _HEADINGS and r.kind not in shown:
            shown.add(r.kind)
            out.append(_HEADINGS[r.kind])
        out.append(line)
    notes = [note for r in rows if (note := _verdict(r))]
    if notes:
        out += ["", *notes]
    if legend:
        out += ["", *_legend(lookback_days, horizon_days, min_lead_days, draws)]
    return "\n".join(out)


def _verdict(r: ScoreRow) -> str | None:
    """One plain sentence when ``r`` is not shown to beat chance (p > 0.05), else None."""
    if r.p_value is None:
        return None
    if r.p_value > 0.05:
        why = ("it never fired in the period" if not r.firings else
               "no episode to score" if not r.episodes else "")
        return f"{r.rule}: not shown to beat chance (p = {_p(r.p_value)}{'; ' + why if why else ''})."
    if r.shift_p is not None and r.shift_p > 0.05:
        return (f"{r.rule}: beats random days (p = {_p(r.p_value)}) but not its own alert days "
                f"shifted in time (p = {_p(r.shift_p)}).")
    return None


def _legend(lookback: int, horizon: int, min_lead: int, draws: int) -> list[str]:
    return [
        f"caught ≥{min_lead}d: episodes warned at least {min_lead} trading days before the drawdown "
        f"reached half its depth / episodes (a warning counts from {lookback} days before the peak "
        "to the trough, or an alert already firing at the peak; one firing serves one episode)",
        f"chance (p): mean caught when the same alert spells start on random days ({draws} draws); "
        "p = share of draws catching at least as many",
        "shifted (p): the same with the rule's own alert days shifted in time by a random offset "
        "(keeps their clustering)",
        f"precision: firings followed by a half-depth day within {horizon} trading days / judged "
        "firings (those inside a drawdown are late, not hits)",
        f"false/yr: firings neither followed by a half-depth day within {horizon} days nor inside "
        "a drawdown, per 252 trading days",
        "in alert: share of days the alert was firing; notif/yr: days with a notification "
        "(firing, repeat, resolved) per 252 trading days",
        "lead q25/med/q75: trading days from the credited warning to the half-depth day "
        "(negative = after it)",
    ]


def _aligned(head: list[str], body: list[list[str]], first: str = "left") -> str:
    """Return ``body`` under ``head`` as a plain text table (tabulate's "simple" format: the
    first column aligned ``first``, the others right-aligned, a dashed line under the head)."""
    from tabulate import tabulate

    align = (first, *(["right"] * (len(head) - 1)))
    text = tabulate(body, headers=head, tablefmt="simple", colalign=align, disable_numparse=True)
    return "\n".join(line.rstrip() for line in text.splitlines())


def to_records(rows: Sequence[ScoreRow]) -> list[dict]:
    """The score rows as flat dicts (every field but ``episodes_detail``), e.g. for an HTML
    table."""
    return [{k: v for k, v in asdict(r).items() if k != "episodes_detail"} for r in rows]


def to_json(rows: Sequence[ScoreRow]) -> str:
    """The score rows as a JSON array of objects (every field, episodes_detail included;
    None -> null)."""
    return json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class Sweep:
    """One sweep axis: ``rule.param`` takes each of ``values`` (ints for lifecycle fields)."""

    rule: str
    param: str  # a lifecycle field (TIMING_FIELDS) or a signal name compared in the rule's `when`
    values: tuple[float, ...]
    text: str = ""

    @property
    def key(self) -> str:
        return f"{self.rule}.{self.param}"

    @property
    def is_timing(self) -> bool:
        return self.param in TIMING_FIELDS


_SWEEP_LHS = re.compile(r"([a-z][a-z0-9_]*)\.(.+)")
_SWEEP_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TOLERANCE = Decimal("1e-9")


def parse_sweep(text: str) -> Sweep:
    """Parse ``RULE.PARAM=LO:HI:STEP``: PARAM takes LO, LO+STEP, ... up to HI inclusive.

    PARAM is ``for_days``, ``clear_days``, ``repeat_every_days`` (whole numbers at or above the
    field's minimum) or a signal name whose number threshold in the rule's ``when`` is swept.
    Arithmetic is decimal, so ``1.2:2.0:0.1`` gives exactly 1.2 ... 2.0 (HI is included when
    within 1e-9 steps). At most :data:`MAX_POINTS` values. Raises a one-line ValueError naming
    the bad part. Whether the rule and signal exist is checked by :func:`apply`/:func:`sweep`.
    """
    def bad(reason: str) -> ValueError:
        return ValueError(f"sweep {text!r}: {reason}")

    if not isinstance(text, str) or "=" not in text:
        raise bad("expected RULE.PARAM=LO:HI:STEP")
    lhs, rhs = (s.strip() for s in text.split("=", 1))
    match = _SWEEP_LHS.fullmatch(lhs)
    if match is None:
        raise bad(f"{lhs!r} is not RULE.PARAM (rule names are lowercase letters, digits and "
                  "underscores, e.g. volatility_spike.for_days)")
    rule, param = match.groups()
    if param not in TIMING_FIELDS:
        try:
            expr.Name(param)
        except ValueError:
            raise bad(f"PARAM {param!r} is neither a lifecycle field ({', '.join(TIMING_FIELDS)}) "
                      "nor a signal name") from None
    parts = [s.strip() for s in rhs.split(":")]
    if len(parts) != 3:
        raise bad(f"range {rhs!r} must be LO:HI:STEP")
    nums = []
    for label, part in zip(("LO", "HI", "STEP"), parts, strict=True):
        if not _SWEEP_NUMBER.fullmatch(part):
            raise bad(f"{label} {part!r} is not a number")
        try:
            nums.append(Decimal(part))
        except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
            raise bad(f"{label} {part!r} is not a number") from None
    lo, hi, step = nums
    if step <= 0:
        raise bad(f"STEP {parts[2]!r} must be positive")
    if hi < lo:
        raise bad(f"HI {parts[1]!r} is below LO {parts[0]!r}")
    count = int((hi - lo) / step + _TOLERANCE) + 1
    if count > MAX_POINTS:
        raise bad(f"{count} values; at most {MAX_POINTS} per axis (use a larger STEP)")
    grid = [lo + i * step for i in range(count)]
    if param in TIMING_FIELDS:
        low = TIMING_FIELDS[param]
        for v in grid:
            if v != v.to_integral_value():
                raise bad(f"{param} takes whole trading days, got {v}")
            if v < low:
                raise bad(f"{param} must be at least {low}, got {v}")
        return Sweep(rule, param, tuple(int(v) for v in grid), text)
    return Sweep(rule, param, tuple(float(v) for v in grid), text)


def _map_comparisons(e: expr.Expr, fn: Callable[[expr.Comparison], expr.Expr]) -> expr.Expr:
    """Rebuild ``e`` with every Comparison leaf replaced by ``fn(leaf)``."""
    if isinstance(e, expr.Comparison):
        return fn(e)
    if isinstance(e, expr.Not):
        return expr.Not(_map_comparisons(e.operand, fn))
    if isinstance(e, expr.And):
        return expr.And(tuple(_map_comparisons(o, fn) for o in e.operands))
    if isinstance(e, expr.Or):
        return expr.Or(tuple(_map_comparisons(o, fn) for o in e.operands))
    raise TypeError(f"expected an expression node, got {e!r}")


def replace_threshold(e: expr.Expr, signal: str, value: float) -> expr.Expr:
    """Return ``e`` with the number compared against ``signal`` set to ``value`` everywhere.

    ``signal`` may be on either side (``x >= 1.5`` or ``1.5 <= x``); operators and structure
    are kept, so ``str()`` of the result is the canonical text of the new condition. Raises
    ValueError when ``signal`` does not occur in ``e`` or is compared with another signal.
    """
    found = 0

    def swap(c: expr.Comparison) -> expr.Expr:
        nonlocal found
        on_left = isinstance(c.left, expr.Name) and c.left.name == signal
        on_right = isinstance(c.right, expr.Name) and c.right.name == signal
        if not (on_left or on_right):
            return c
        other = c.right if on_left else c.left
        if isinstance(other, expr.Name):
            raise ValueError(f"{signal} is compared with a signal, not a number, in {str(c)!r}")
        found += 1
        if on_left:
            return expr.Comparison(c.left, c.op, expr.Number(value))
        return expr.Comparison(expr.Number(value), c.op, c.right)

    out = _map_comparisons(e, swap)
    if not found:
        raise ValueError(f"signal {signal!r} does not occur in {str(e)!r}")
    return out


def _assignments(assignments: Mapping[str, float] | Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    return list(assignments.items()) if isinstance(assignments, Mapping) else list(assignments)


def apply(config: Config, assignments: Mapping[str, float] | Iterable[tuple[str, float]]) -> Config:
    """Return a new validated Config with ``{"RULE.PARAM": value}`` applied (``config`` is
    unchanged). PARAM as in :func:`parse_sweep`; a signal PARAM rewrites the rule's ``when``
    with :func:`replace_threshold` (``clear_when`` is left as it is). Raises a one-line
    ValueError for an unknown rule, a signal absent from the rule's ``when``, or a result the
    config schema rejects."""
    data = config.model_dump()
    by_name = {r["name"]: r for r in data["rules"]}
    for key, value in _assignments(assignments):
        match = _SWEEP_LHS.fullmatch(key)
        if match is None:
            raise ValueError(f"{key!r} is not RULE.PARAM")
        name, param = match.groups()
        if name not in by_name:
            raise ValueError(f"{key}: no rule named {name!r} (rules: {', '.join(by_name) or 'none'})")
        rule = by_name[name]
        if param in TIMING_FIELDS:
            if float(value) != int(value):
                raise ValueError(f"{key}: takes whole trading days, got {value!r}")
            rule[param] = int(value)
            continue
        try:
            new = replace_threshold(expr.parse(rule["when"]), param, float(value))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{key}: {str(exc).splitlines()[0]}") from None
        rule["when"] = str(new)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


def sweep(config: Config, values: pd.DataFrame, episodes: Iterable[DrawdownEpisode], close: pd.Series,
          sweeps: Sequence[Sweep], *, lookback_days: int = LOOKBACK_DAYS,
          horizon_days: int = HORIZON_DAYS, min_lead_days: int = MIN_LEAD_DAYS,
          min_depth: float | None = None, start: dt.date | None = None,
          end: dt.date | None = None, draws: int = DRAWS, seed: int = SEED,
          on_point: Callable[[int, int], None] | None = None) -> list[dict]:
    """Score every grid point of ``sweeps`` (cartesian product, the first axis varying slowest).

    Returns one dict per point: ``{"params": {"RULE.PARAM": value, ...}, "rules": {name:
    metrics, ...}}`` where the rules are the swept ones and ANY, in the row order of
    :func:`score`, and metrics = every field of :class:`ScoreRow` but ``rule`` and
    ``episodes_detail`` (chance baselines included: ``draws``, ``seed``). ANY is the union of
    ALL warning rules of the point's config. Rules whose settings a point does not change are
    simulated once. ``on_point(done, total)`` is called after each point (progress bars).
    Raises ValueError for an unknown rule/signal, more than :data:`MAX_GRID` points, or bad
    draws/seed.
    """
    if not sweeps:
        raise ValueError("no sweep given")
    _check_draws(draws, seed)
    total = math.prod(len(s.values) for s in sweeps)
    if total > MAX_GRID:
        raise ValueError(f"{total} grid points; at most {MAX_GRID}")
    for s in sweeps:  # validates rule and param with the first value, one-line errors
        apply(config, [(s.key, s.values[0])])
    depth = config.episodes.drawdown_min_depth if min_depth is None else min_depth
    lab = _labels(values.index, list(episodes), close, depth, lookback_days, horizon_days, start,
                  end, min_lead_days)
    days = list(lab.days)
    names = set().union(*(r.names for r in config.rules)) if config.rules else set()
    cols = expr.frame_columns(values, names)
    swept = [r.name for r in config.rules if any(s.rule == r.name for s in sweeps)]
    cache: dict[tuple, _RuleRun] = {}
    out = []
    for done, point in enumerate(itertools.product(*(s.values for s in sweeps)), 1):
        params = {s.key: v for s, v in zip(sweeps, point, strict=True)}
        cfg = apply(config, params)
        arrays, kinds = {}, {}
        for rule in cfg.rules:
            key = _rule_key(rule)
            if key not in cache:
                extra = rule.names - cols.keys()
                if extra:  # a swept rule cannot read new signals, but keep this exact
                    cols.update(expr.frame_columns(values, extra))
                cache[key] = _run_rule(rule, cols, days)
            run = cache[key]
            arrays[rule.name] = (run.fired, run.firing, run.notified)
            kinds[rule.name] = rule_kind(rule)
        rows = _score_all(arrays, kinds, lab, swept, draws, seed)
        out.append({"params": params, "rules": {r.rule: _metrics(r) for r in rows}})
        if on_point is not None:
            on_point(done, total)
    return out


def _metrics(row: ScoreRow) -> dict:
    return {k: v for k, v in to_records([row])[0].items() if k != "rule"}


def sweep_table(points: Sequence[dict]) -> str:
    """The sweep result as an aligned text table: one line per grid point, for each scored
    rule (and "any warning") its caught/episodes, the mean caught on random days and its p,
    false alarms per year and share of days in alert."""
    if not points:
        return ""
    keys = list(points[0]["params"])
    rules = list(points[0]["rules"])
    head = list(keys)
    for r in rules:
        head += [f"{r} caught", f"{r} chance", f"{r} p", f"{r} false/yr", f"{r} in alert"]
    body = []
    for p in points:
        line = [format(p["params"][k], "g") for k in keys]
        for r in rules:
            m = p["rules"][r]
            line += [f"{m['caught']}/{m['episodes']}", _fmt(m["chance_mean"], ".1f"),
                     "-" if m["p_value"] is None else _p(m["p_value"]),
                     f"{m['false_alarms_per_year']:.2f}", f"{100 * m['share_in_alert']:.1f}%"]
        body.append(line)
    return _aligned(head, body, first="right")


# --------------------------------------------------------------------------- calibrate


_UPPER = {">", ">="}
_LOWER = {"<", "<="}
_GRID = {"upper": tuple(q / 100 for q in range(50, 100)), "lower": tuple(q / 100 for q in range(1, 51))}
"""Candidate quantiles of a threshold: 0.50..0.99 for '>=' / '>', 0.01..0.50 for '<=' / '<'."""


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _set_leaf(e: expr.Expr, i: int, value: float) -> expr.Expr:
    """``e`` with the number of its ``i``-th comparison leaf (in ``expr.comparisons`` order: a
    signal vs a number) set."""
    seen = -1

    def swap(c: expr.Comparison) -> expr.Expr:
        nonlocal seen
        seen += 1
        if seen != i:
            return c
        if isinstance(c.left, expr.Name):
            return expr.Comparison(c.left, c.op, expr.Number(value))
        return expr.Comparison(expr.Number(value), c.op, c.right)

    return _map_comparisons(e, swap)


def _leaf(c: expr.Comparison) -> tuple[str, str, float] | str:
    """(signal, op with the signal on the left, number) of a signal-vs-number comparison, or the
    reason it has no threshold to calibrate."""
    names = [s for s in (c.left, c.right) if isinstance(s, expr.Name)]
    if len(names) != 1:
        return "compares two signals" if names else "compares two numbers"
    shown = expr.oriented(c)
    if shown.op not in _UPPER | _LOWER:
        return f"'{c.op}' has no threshold to calibrate"
    return names[0].name, shown.op, shown.right.value  # type: ignore[union-attr]


# A number in running text: not part of a word ("Q1") or of a longer number, optionally a percent.
_TEXT_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\d.]\d|\w)(\s?%)?")


def _plain(x: float) -> str:
    return np.format_float_positional(float(f"{x:.6g}"), trim="-")


def restate_explain(explain: str, changes: Sequence[tuple[str, float, float]]) -> tuple[str, list[int]]:
    """Rewrite the thresholds an ``explain`` sentence states; return (text, unstated).

    ``changes``: (signal, old threshold, new threshold) per changed comparison. The old number is
    looked for in the text as a percent (``-0.10`` -> "10%", "10.0 %") when the signal's unit
    (``signals.REGISTRY[signal].unit``) starts with "fraction", then as a plain number (``1.5``);
    the magnitude is matched (texts say "10% below", not "-10%"). Every occurrence found is
    replaced by the new value in the same form ("12%", "1.62"). ``unstated``: the indices of the
    changes whose old number the text does not state, or that cannot be restated (the sign
    changes or a number is 0), or whose occurrence another change also claims; the text keeps
    those numbers unchanged.
    """
    matches = list(_TEXT_NUMBER.finditer(explain))
    claims: dict[int, tuple[int, str]] = {}  # match index -> (change, replacement)
    unstated: list[int] = []
    conflicts: set[int] = set()
    for k, (signal, old, new) in enumerate(changes):
        if old == 0 or new == 0 or (old < 0) != (new < 0):
            unstated.append(k)
            continue
        spec = signals.REGISTRY.get(signal)
        forms = (["percent"] if spec is not None and spec.unit.startswith("fraction") else []) + ["plain"]
        found: list[tuple[int, str]] = []
        for form in forms:
            scale = 100.0 if form == "percent" else 1.0
            target = abs(old) * scale
            for i, m in enumerate(matches):
                if (m.group(2) is not None) != (form == "percent"):
                    continue
                if math.isclose(float(m.group(1)), target, rel_tol=1e-9, abs_tol=1e-12):
                    found.append((i, _plain(abs(new) * scale) + (m.group(2) or "")))
            if found:
                break
        if not found:
            unstated.append(k)
        for i, text in found:
            if i in claims and claims[i][1] != text:
                conflicts.update((claims[i][0], k))
            claims.setdefault(i, (k, text))
    if conflicts:
        unstated = sorted(set(unstated) | conflicts)
        claims = {i: c for i, c in claims.items() if c[0] not in conflicts}
    out, last = [], 0
    for i, m in enumerate(matches):
        if i in claims:
            out += [explain[last:m.start()], claims[i][1]]
            last = m.end()
    out.append(explain[last:])
    return "".join(out), unstated


def _summary(row: ScoreRow) -> str:
    chance = ("" if row.chance_mean is None or row.p_value is None else
              f" (chance {row.chance_mean:.1f}, p = {_p(row.p_value)})")
    return (f"caught {row.caught}/{row.episodes}{chance}, {row.false_alarms_per_year:.2f} false "
            f"alarms/yr, in alert {_pct(row.share_in_alert)}")


def calibrate(config: Config, values: pd.DataFrame, close: pd.Series, until: dt.date, *,
              penalty: float = 1.0, draws: int = DRAWS, seed: int = SEED,
              lookback_days: int = LOOKBACK_DAYS, horizon_days: int = HORIZON_DAYS,
              min_lead_days: int = MIN_LEAD_DAYS, min_depth: float | None = None,
              min_obs: int = 250, rules: Sequence[str] | None = None) -> str:
    """Propose thresholds aimed at the drawdown labels, from data up to ``until`` only; return a
    TOML snippet.

    No look-ahead: the rows of ``values`` and ``close`` dated after ``until`` are dropped before
    anything looks at them; the labels are the drawdown episodes (depth <= -``min_depth``,
    default ``config.episodes.drawdown_min_depth``) of the remaining closes, scored as in
    :func:`score` over the remaining rows (so an episode counts only if its trough is on or
    before ``until``; firings whose horizon runs past ``until`` are unjudged).

    Method: in each rule's ``when``, every comparison of a signal with a number by ``>=``/``>``
    (``<=``/``<``) gets the number, among the in-sample quantiles 0.50, 0.51, ..., 0.99 (0.01
    ... 0.50) of that signal's non-missing values rounded to 4 significant digits and its current
    number, that maximises ``caught - penalty * false_alarms_per_year`` of the rule alone
    (caught = warned at least ``min_lead_days`` before the half-depth day), ties broken toward
    fewer days in alert, then toward the current number (so a proposal never scores worse in
    sample than the config).
    Several comparisons are optimised one at a time, in order, each with the ones before it
    already set (coordinate ascent, one pass). Comparisons with ``==``/``!=`` or between two
    signals, and signals with fewer than ``min_obs`` in-sample values, keep their number;
    ``for_days``, ``clear_when``, ``clear_days`` and ``repeat_every_days`` are kept. A comment
    warns when the new ``when`` overlaps the rule's clear condition on that signal.

    The snippet holds one complete ``[[rules]]`` table per rule (all its keys, so it can replace
    the rule in the config), with comments giving per comparison the quantile chosen and the old
    number, and for the old and the new ``when`` the in-sample caught/episodes, the chance mean
    and p (``draws``, ``seed``), false alarms per year and share of days in alert. The
    ``explain`` sentence is rewritten where it states a changed threshold
    (:func:`restate_explain`); where it does not, a ``# review explain`` comment says so.
    ``rules`` restricts the output to these rule names. Raises ValueError for a bad penalty,
    draws or seed, or no row up to ``until``; KeyError for an unknown rule.
    """
    if not (isinstance(penalty, int | float) and math.isfinite(penalty) and penalty >= 0):
        raise ValueError(f"penalty must be a finite number >= 0, got {penalty!r}")
    _check_draws(draws, seed)
    cut = pd.Timestamp(until)
    idx = _day_index(values.index)
    if not (idx <= cut).any():
        raise ValueError(f"no row of the values up to {until.isoformat()}")
    sample = values.iloc[np.flatnonzero(idx <= cut)]
    c = close.copy()
    c.index = _day_index(c.index, "close")
    c = c[c.index <= cut]
    depth = config.episodes.drawdown_min_depth if min_depth is None else min_depth
    episodes = drawdown_episodes(c, depth)
    lab = _labels(sample.index, episodes, c, depth, lookback_days, horizon_days, None, None,
                  min_lead_days)
    days = list(lab.days)
    wanted = [r.name for r in config.rules] if rules is None else list(rules)
    for name in wanted:
        config.rule(name)  # KeyError for an unknown rule
    cols = expr.frame_columns(sample, set().union(*(r.names for r in config.rules)) if config.rules else ())
    out = [f"# regime-monitor calibrate: thresholds from data up to {until.isoformat()} only "
           f"({len(days)} trading days, {days[0]} to {days[-1]}); labels: {len(lab.episodes)} "
           f"micro-cap drawdown(s) of at least {depth:.0%}, {lab.counted.size} scored (trough by "
           f"then, peak at least {lookback_days} trading days after the first day).",
           "# Each number compared in a rule's `when` is chosen among the in-sample quantiles "
           "0.50..0.99 ('>=' / '>') or 0.01..0.50 ('<=' / '<') and its current value, one "
           "comparison at a time in order, "
           f"to maximise caught - {penalty:g} x false alarms per year (caught = warned at least "
           f"{min_lead_days} trading days before the drawdown reached half its depth; ties: fewer "
           "days in alert, then the current value).",
           "# These are in-sample scores, which flatter the thresholds: check them with "
           f"`backtest --start` on days after {until.isoformat()}.",
           "# Review, then paste over the matching [[rules]] tables; the config is not changed."]
    for rule in config.rules:
        if rule.name not in wanted:
            continue
        kind = rule_kind(rule)

        def evaluate(e: expr.Expr, n_draws: int = 0, kind: str = kind,
                     rule: RuleConfig = rule) -> ScoreRow:
            run = _run(rule, e, cols, days)
            return _score(rule.name, kind, run.fired, run.firing, run.notified, lab, n_draws, seed)

        def objective(row: ScoreRow) -> tuple[float, float]:
            return (row.caught - penalty * row.false_alarms_per_year, -row.share_in_alert)

        notes: list[str] = []
        changes: list[tuple[str, float, float]] = []
        where: list[str] = []
        current = rule.when_expr
        for i, leaf in enumerate(expr.comparisons(rule.when_expr)):
            parts = _leaf(leaf)
            if isinstance(parts, str):
                notes.append(f"{leaf} kept: {parts}")
                continue
            signal, op, old = parts
            col = sample[signal] if signal in sample.columns else pd.Series(dtype=float)
            data = col.to_numpy(dtype=float, na_value=np.nan)
            data = data[~np.isnan(data)]
            if data.size < min_obs:
                notes.append(f"{leaf} kept: only {data.size} in-sample values of {signal} "
                             f"(fewer than {min_obs})")
                continue
            grid = _GRID["upper" if op in _UPPER else "lower"]
            # value -> the first quantile giving it; the current number first (None), so that
            # the proposal never scores worse in sample and an exact tie keeps it
            candidates: dict[float, float | None] = {old: None}
            for q, v in zip(grid, np.quantile(data, grid), strict=True):
                candidates.setdefault(_round_sig(float(v)), q)
            best = None
            for value in candidates:
                key = objective(evaluate(_set_leaf(current, i, value)))
                if best is None or key > best[0]:
                    best = (key, value)
            assert best is not None
            new = best[1]
            current = _set_leaf(current, i, new)
            if candidates[new] is None:
                notes.append(f"{leaf} kept: no in-sample quantile of {signal} scores better")
            else:
                notes.append(f"{expr.comparisons(current)[i]} (was {expr.Number(old)}): in-sample "
                             f"{candidates[new]:g} quantile of {data.size} values of {signal}")
            notes.extend(_overlap(rule, signal, op, new))
            if new != old:
                changes.append((signal, old, new))
                where.append(f"{leaf} -> {expr.Number(new)}")
        old_row = evaluate(rule.when_expr, draws)
        new_row = evaluate(current, draws) if current != rule.when_expr else old_row
        explain, unstated = restate_explain(rule.explain, changes)
        out.append("")
        out.append("[[rules]]")
        out.append(_toml_keys(name=rule.name, severity=rule.severity))
        if kind == "state":
            out.append(f"# a state rule (reads {STATE_SIGNAL}): it restates a drawdown under way; "
                       "scored here like a warning, review whether its threshold should move")
        out.extend(f"# {note}" for note in notes)
        out.append(f"# in sample, old: {_summary(old_row)}; objective "
                   f"{objective(old_row)[0]:.2f}")
        out.append(f"# in sample, new: {_summary(new_row)}; objective "
                   f"{objective(new_row)[0]:.2f}")
        timing = {"for_days": rule.for_days, "clear_when": rule.clear_when,
                  "clear_days": rule.clear_days, "repeat_every_days": rule.repeat_every_days}
        out.append(_toml_keys(when=str(current), **{k: v for k, v in timing.items() if v is not None}))
        for k in unstated:
            out.append(f"# review explain: it does not state the threshold ({where[k]})")
        out.append(_toml_keys(explain=explain))
    return "\n".join(out) + "\n"


def _toml_keys(**keys: object) -> str:
    """Return ``key = value`` lines for ``keys`` (in order) written by tomli-w, no final newline:
    the values are quoted and escaped by the TOML writer, never by hand."""
    import tomli_w

    return tomli_w.dumps(keys).rstrip("\n")


def _overlap(rule: RuleConfig, signal: str, op: str, new: float) -> list[str]:
    """Warnings when the new ``signal op new`` region meets a clear_when comparison on it."""
    if rule.clear_expr is None:
        return []
    notes = []
    for c in expr.comparisons(rule.clear_expr):
        shown = expr.oriented(c)
        if not (isinstance(shown.left, expr.Name) and shown.left.name == signal
                and isinstance(shown.right, expr.Number)):
            continue
        cop, value = shown.op, shown.right.value
        if (op in _UPPER and cop in _LOWER and value > new) or (op in _LOWER and cop in _UPPER
                                                               and value < new):
            notes.append(f"note: clear_when's '{c}' now overlaps the new alert zone; review it")
    return notes


# --------------------------------------------------------------------------- digests


def digest_days(sim: Simulation, summary_days: Iterable[str] = ()) -> list[str]:
    """Return the days (ISO) on which the daily cycle would send a digest over the simulation:
    the notified events of each day (silences ignored) judged by ``monitor.delivery.digest.should_send``,
    the daemon's own decision, plus the weekly ``summary_days`` when the summary is on."""
    by_day: dict[str, list[dict]] = {}
    for e in sim.events:
        if e["event"] in NOTIFIED:
            by_day.setdefault(e["date"], []).append(
                {"rule": e["rule"], "severity": e["severity"], "kind": e["event"]})
    summary = set(summary_days)
    return sorted(d for d in set(by_day) | summary if digest.should_send(by_day.get(d, []), d in summary))


def digests_per_year(days: Iterable[str], index: pd.Index, start: dt.date | None = None,
                     end: dt.date | None = None) -> float:
    """Return the digest ``days`` that fall in [start, end] per 252 trading days of ``index`` in
    that period (digests a year)."""
    isos = [d for d in _isos(index) if (start is None or d >= start.isoformat())
            and (end is None or d <= end.isoformat())]
    if not isos:
        return 0.0
    sent = sum(1 for d in days if isos[0] <= d <= isos[-1])
    return sent / (len(isos) / TRADING_DAYS_PER_YEAR)
