"""Backtest core: rules over history, scored against micro-cap drawdown episodes (pure).

Everything here is a pure function of its arguments: no database, no files, no clock. The replay
engine and the CLI feed it the signal values of a period (one row per trading day) and the
drawdown labels; this module answers "what would the rules have done, and how good was it".

Units: every window, lead time and horizon is counted in TRADING DAYS, i.e. in rows of the
``values`` index (positions), never in calendar days. Shares are fractions in [0, 1]; thresholds
are in the unit of their signal (SIGNALS.md).

Simulation (:func:`simulate`, :func:`simulate_full`)
    Each rule starts from ``AlertState()`` on the first row and is advanced one row at a time
    with ``lifecycle.step`` exactly as ``monitor.cycle._run`` does (``when``; ``clear`` = the
    rule's ``clear_when`` or, without one, ``not when``, unknown when ``when`` is unknown;
    ``Timing(for_days, clear_days, repeat_every_days)``). Silences are ignored (they mute
    notifications but never change states or events). Conditions are evaluated for all rows at
    once with numpy under the same Kleene three-valued logic as ``monitor.expr`` (a missing
    column, None or NaN is unknown; ``False and unknown`` is False, ``True or unknown`` True).

Scoring (:func:`score`, :func:`score_simulation`); L = ``lookback_days`` (20), H =
``horizon_days`` (40); positions p, t of an episode's peak and trough in the values index:
    - Labels: the drawdown episodes with ``depth <= -min_depth`` (default
      ``config.episodes.drawdown_min_depth``).
    - A "firing" is a day with the lifecycle event ``firing`` (a transition INTO the firing
      state). Repeats, and an alert that was already firing before the window, are not firings.
    - Catch window of an episode: positions [p - L, t], both ends inclusive.
    - Counted episodes: those whose catch window lies inside the scored period [a, b]
      (``start``/``end``, default the whole index): p - L >= a and t <= b. So an episode that
      peaks within L trading days of the period's start, or whose trough falls after its end, is
      not counted (neither as caught nor as missed). An open episode (no recovery yet) counts
      with its trough and depth so far. Episodes entirely before or after the index are ignored.
    - Caught: some firing f with p - L <= f <= t. Its lead times are measured from the EARLIEST
      such firing: ``lead_trough`` = t - f (>= 0) and ``lead_half`` = h - f, signed (negative
      when the alarm came after the drawdown had already reached half its final depth), where h
      is the first day in [peak, trough] with close / peak_close - 1 <= depth / 2.
    - False alarm: a firing f inside the period that is neither in the catch window of any
      labelled episode (p - L <= f <= t) nor followed by an episode's peak within H trading
      days (f <= p <= f + H). All labelled episodes count for this test, also those not counted
      above. A firing that would be false but whose horizon f + H runs past the last row of the
      values index cannot be judged: it is reported as ``unjudged``, not as false.
    - False alarms per year = false alarms / (days in the period / 252).
    - Share of days in alert = days of the period on which the rule ended the day in state
      ``firing`` / days in the period.
    - "any rule" (:data:`ANY`): firings = the days on which at least one rule fired (a day
      counts once), in alert = days on which at least one rule is firing. An episode is thus
      caught by "any rule" exactly when some rule caught it, with the earliest lead.

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
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
from pydantic import ValidationError

from monitor import expr, lifecycle
from monitor.config import Config, RuleConfig
from signals.episodes import DrawdownEpisode

__all__ = [
    "ANY",
    "EpisodeHit",
    "ScoreRow",
    "Simulation",
    "Sweep",
    "apply",
    "calibrate",
    "condition",
    "parse_sweep",
    "replace_threshold",
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

ANY = "any rule"
"""Row name of the union of all rules (rule names cannot contain a space, so it never clashes)."""

LOOKBACK_DAYS = 20
HORIZON_DAYS = 40
TRADING_DAYS_PER_YEAR = 252
TIMING_FIELDS = {"for_days": 1, "clear_days": 1, "repeat_every_days": 0}  # field -> minimum
MAX_POINTS = 200
"""Most values one sweep axis may have."""
MAX_GRID = 10_000
"""Most grid points (cartesian product of all axes) one sweep may have."""


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


# --------------------------------------------------------------------------- conditions


_NP_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
           "==": np.equal, "!=": np.not_equal}


def _operand(node: expr.Operand, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if isinstance(node, expr.Name):
        col = cols.get(node.name)
        return np.full(n, np.nan) if col is None else col
    return np.full(n, node.value)


def _kleene(e: expr.Expr, cols: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``e`` on every row as two boolean masks (is True, is False); neither = unknown."""
    if isinstance(e, expr.Comparison):
        left, right = _operand(e.left, cols, n), _operand(e.right, cols, n)
        known = ~(np.isnan(left) | np.isnan(right))
        with np.errstate(invalid="ignore"):
            holds = _NP_OPS[e.op](left, right)
        return holds & known, ~holds & known
    if isinstance(e, expr.Not):
        t, f = _kleene(e.operand, cols, n)
        return f, t
    if isinstance(e, expr.And | expr.Or):
        parts = [_kleene(o, cols, n) for o in e.operands]
        ts = np.vstack([p[0] for p in parts])
        fs = np.vstack([p[1] for p in parts])
        if isinstance(e, expr.And):
            return ts.all(axis=0), fs.any(axis=0)
        return ts.any(axis=0), fs.all(axis=0)
    raise TypeError(f"expected an expression node, got {e!r}")


def _columns(values: pd.DataFrame, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Float arrays of the named columns present in ``values`` (None -> NaN)."""
    return {n: values[n].to_numpy(dtype=float, na_value=np.nan) for n in names if n in values.columns}


def condition(e: expr.Expr, values: pd.DataFrame) -> pd.Series:
    """``e`` on every row of ``values`` (columns = signals, NaN = missing): True/False/None.

    Vectorised; equal row by row to ``e.evaluate`` on that row's values (Kleene logic).
    """
    n = len(values)
    t, f = _kleene(e, _columns(values, e.names), n)
    out = np.full(n, None, dtype=object)
    out[t] = True
    out[f] = False
    return pd.Series(out, index=values.index, dtype=object)


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _RuleRun:
    """One rule over the whole index: its events, firing transitions and firing-state days."""

    events: list[tuple[int, str, str, str]]  # (position, event, from_state, to_state)
    fired: np.ndarray  # bool per row: event 'firing' on that day
    firing: np.ndarray  # bool per row: in state firing at the end of the day


_LOOKUP = (False, True, None)  # code 0, 1, -1


def _codes(t: np.ndarray, f: np.ndarray) -> list:
    return [_LOOKUP[c] for c in np.where(t, 1, np.where(f, 0, -1)).tolist()]


def _run_rule(rule: RuleConfig, cols: Mapping[str, np.ndarray], days: Sequence[str]) -> _RuleRun:
    n = len(days)
    wt, wf = _kleene(rule.when_expr, cols, n)
    if rule.clear_expr is not None:
        ct, cf = _kleene(rule.clear_expr, cols, n)
    else:  # the cycle's default: clear = not when, unknown when `when` is unknown
        ct, cf = wf, wt
    when, clear = _codes(wt, wf), _codes(ct, cf)
    timing = lifecycle.Timing(rule.for_days, rule.clear_days, rule.repeat_every_days)
    state = lifecycle.AlertState()
    events: list[tuple[int, str, str, str]] = []
    fired = np.zeros(n, dtype=bool)
    firing = np.zeros(n, dtype=bool)
    step = lifecycle.step
    for i in range(n):
        result = step(state, when[i], clear[i], days[i], timing)
        new = result.state
        if result.event:
            events.append((i, result.event, state.state, new.state))
            if result.event == "firing":
                fired[i] = True
        firing[i] = new.state == lifecycle.FIRING
        state = new
    return _RuleRun(events, fired, firing)


def _rule_key(rule: RuleConfig) -> tuple:
    return (rule.when, rule.clear_when, rule.for_days, rule.clear_days, rule.repeat_every_days)


@dataclass(frozen=True)
class Simulation:
    """The rules over a period.

    ``events``: dicts {rule, date (ISO), event, from_state, to_state, severity}, ordered by day
    and, within a day, by the rules' order in the config (the order the cycle writes them).
    ``firing``: bool DataFrame (index = the values index, columns = rule names): the rule ended
    that day in state ``firing``. ``fired``: bool DataFrame, True on days with the event
    ``firing`` (a transition into the firing state).
    """

    events: list[dict]
    firing: pd.DataFrame
    fired: pd.DataFrame

    def firing_days(self, rule: str) -> set[dt.date]:
        """The days on which ``rule`` was in state firing."""
        col = self.firing[rule]
        return {_to_date(d) for d in col.index[col.to_numpy()]}


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
    firing = pd.DataFrame({n: r.firing for n, r in zip(names, runs, strict=True)}, index=index,
                          columns=names, dtype=bool)
    fired = pd.DataFrame({n: r.fired for n, r in zip(names, runs, strict=True)}, index=index,
                         columns=names, dtype=bool)
    return Simulation([m[2] for m in merged], firing, fired)


def simulate_full(config: Config, values: pd.DataFrame) -> Simulation:
    """Run every rule of ``config`` over ``values`` day by day; return events and states.

    ``values``: index = trading days, strictly ascending (dates, Timestamps or ISO strings);
    columns = signal names; NaN/None = missing (a rule reading a column that is absent sees it
    missing every day). Each rule starts from ``AlertState()`` on the first row. Silences are
    ignored. Raises ValueError if the index is not strictly ascending.
    """
    days = _isos(values.index)
    names = set().union(*(r.names for r in config.rules)) if config.rules else set()
    cols = _columns(values, names)
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
class EpisodeHit:
    """One counted episode as seen by one rule (dates ISO; leads in trading days)."""

    peak: str
    trough: str
    half_depth: str  # first day the drawdown reached depth / 2
    depth: float  # fraction, negative
    first_firing: str | None  # earliest firing in the catch window, None = missed
    lead_trough: int | None  # trough - first firing (>= 0)
    lead_half: int | None  # half-depth day - first firing (signed)


@dataclass(frozen=True)
class ScoreRow:
    """A rule's (or "any rule"'s) record over the scored period (definitions: module doc)."""

    rule: str
    days: int  # trading days in the period
    episodes: int  # counted episodes (catch window inside the period)
    caught: int
    median_lead_trough: float | None  # trading days, over caught episodes
    median_lead_half: float | None  # trading days, signed, over caught episodes
    firings: int  # firing transitions within the period
    false_alarms: int
    unjudged: int  # firings whose horizon runs past the data and that are in no window
    false_alarms_per_year: float  # per 252 trading days of the period
    share_in_alert: float  # fraction of the period's days in state firing
    hits: tuple[EpisodeHit, ...] = field(default=())  # one per counted episode


@dataclass(frozen=True)
class _Labels:
    """The episodes placed on the values index, and the scored period."""

    n: int  # rows of the values index
    a: int  # first position of the period
    b: int  # last position of the period
    peak: np.ndarray  # positions (int); peaks before the index start are flagged in `early`
    trough: np.ndarray
    early: np.ndarray  # bool: the peak lies before the first row of the index
    counted: np.ndarray  # bool: catch window inside the period
    half: np.ndarray  # position of the half-depth day
    episodes: tuple[DrawdownEpisode, ...]
    half_dates: tuple[dt.date, ...]
    lookback: int
    horizon: int
    days: tuple[str, ...]  # the values index as ISO dates


def _half_depth_day(ep: DrawdownEpisode, close: pd.Series) -> dt.date:
    seg = close[(close.index >= pd.Timestamp(ep.peak)) & (close.index <= pd.Timestamp(ep.trough))].dropna()
    hit = seg[(seg.to_numpy(dtype=float) / ep.peak_close - 1.0) <= ep.depth / 2.0]
    return ep.trough if hit.empty else _to_date(hit.index[0])


def _labels(index: pd.Index, episodes: Iterable[DrawdownEpisode], close: pd.Series, min_depth: float,
            lookback: int, horizon: int, start, end) -> _Labels:
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
    early = np.array([pd.Timestamp(e.peak) < idx[0] for e in eps], dtype=bool)
    counted = (~early) & (peak - lookback >= a) & (trough <= b) & (peak <= trough)
    return _Labels(n, a, b, peak, trough, early, counted, half, eps, halves, lookback, horizon,
                   tuple(idx.strftime("%Y-%m-%d")))


def _median(xs: list[int]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _score(name: str, fired: np.ndarray, firing: np.ndarray, lab: _Labels,
           days: Sequence[str]) -> ScoreRow:
    """Score one firing series (bool arrays over the values index) against the labels."""
    pos = np.flatnonzero(fired)
    hits = []
    for k, ep in enumerate(lab.episodes):
        if not lab.counted[k]:
            continue
        p, t = int(lab.peak[k]), int(lab.trough[k])
        inside = pos[(pos >= p - lab.lookback) & (pos <= t)]
        first = int(inside[0]) if inside.size else None
        hits.append(EpisodeHit(
            peak=ep.peak.isoformat(), trough=ep.trough.isoformat(),
            half_depth=lab.half_dates[k].isoformat(), depth=ep.depth,
            first_firing=None if first is None else days[first],
            lead_trough=None if first is None else t - first,
            lead_half=None if first is None else int(lab.half[k]) - first))
    in_period = pos[(pos >= lab.a) & (pos <= lab.b)]
    f = in_period[:, None]  # firings x episodes
    in_window = ((lab.peak - lab.lookback <= f) & (f <= lab.trough)).any(axis=1)
    precedes = (~lab.early & (f <= lab.peak) & (lab.peak <= f + lab.horizon)).any(axis=1)
    alone = ~(in_window | precedes)
    judged = in_period + lab.horizon <= lab.n - 1
    false = int((alone & judged).sum())
    unjudged = int((alone & ~judged).sum())
    days_in = lab.b - lab.a + 1
    caught = [h for h in hits if h.first_firing is not None]
    return ScoreRow(
        rule=name, days=days_in, episodes=len(hits), caught=len(caught),
        median_lead_trough=_median([h.lead_trough for h in caught]),
        median_lead_half=_median([h.lead_half for h in caught]),
        firings=int(in_period.size), false_alarms=false, unjudged=unjudged,
        false_alarms_per_year=false / (days_in / TRADING_DAYS_PER_YEAR),
        share_in_alert=float(firing[lab.a:lab.b + 1].sum()) / days_in,
        hits=tuple(hits))


def score_simulation(sim: Simulation, episodes: Iterable[DrawdownEpisode], close: pd.Series, *,
                     min_depth: float = 0.10, lookback_days: int = LOOKBACK_DAYS,
                     horizon_days: int = HORIZON_DAYS, start: dt.date | None = None,
                     end: dt.date | None = None, rules: Sequence[str] | None = None) -> list[ScoreRow]:
    """Score a :class:`Simulation` against drawdown ``episodes``; one row per rule, then ANY.

    ``close``: the micro-cap close (points) indexed by trading day, used for the half-depth day.
    ``min_depth``: only episodes with depth <= -min_depth (fraction) are labels.
    ``lookback_days`` L, ``horizon_days`` H: trading days (see the module doc for every
    definition). ``start``/``end`` restrict the scored period to index rows within [start, end]
    (the simulation may start earlier to warm up); default the whole index. ``rules``: score
    only these rules (ANY is always the union of ALL simulated rules).
    """
    lab = _labels(sim.firing.index, episodes, close, min_depth, lookback_days, horizon_days,
                  start, end)
    return _score_all(sim.fired, sim.firing, lab, rules)


def _score_all(fired: pd.DataFrame, firing: pd.DataFrame, lab: _Labels,
               rules: Sequence[str] | None) -> list[ScoreRow]:
    days = lab.days
    names = list(fired.columns) if rules is None else list(rules)
    rows = [_score(n, fired[n].to_numpy(bool), firing[n].to_numpy(bool), lab, days) for n in names]
    any_fired = fired.to_numpy(bool).any(axis=1) if fired.shape[1] else np.zeros(len(days), bool)
    any_firing = firing.to_numpy(bool).any(axis=1) if firing.shape[1] else np.zeros(len(days), bool)
    rows.append(_score(ANY, any_fired, any_firing, lab, days))
    return rows


def score(config: Config, values: pd.DataFrame, episodes: Iterable[DrawdownEpisode], close: pd.Series,
          *, lookback_days: int = LOOKBACK_DAYS, horizon_days: int = HORIZON_DAYS,
          min_depth: float | None = None, start: dt.date | None = None,
          end: dt.date | None = None) -> list[ScoreRow]:
    """Simulate ``config``'s rules over ``values`` and score them; rows in config order + ANY.

    ``min_depth`` defaults to ``config.episodes.drawdown_min_depth``. See
    :func:`score_simulation` and the module doc for the definitions.
    """
    depth = config.episodes.drawdown_min_depth if min_depth is None else min_depth
    return score_simulation(simulate_full(config, values), episodes, close, min_depth=depth,
                            lookback_days=lookback_days, horizon_days=horizon_days,
                            start=start, end=end)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(rows: Sequence[ScoreRow]) -> str:
    """The score rows as an aligned text table (leads are medians over caught episodes)."""
    head = ["rule", "caught", "lead trough", "lead half", "firings", "false", "unjudged",
            "false/yr", "in alert"]
    body = [[r.rule, f"{r.caught}/{r.episodes}", _fmt(r.median_lead_trough, "g"),
             _fmt(r.median_lead_half, "g"), str(r.firings), str(r.false_alarms), str(r.unjudged),
             f"{r.false_alarms_per_year:.2f}", f"{100 * r.share_in_alert:.1f}%"] for r in rows]
    return _aligned(head, body)


def _aligned(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = []
    for k, line in enumerate([head, *body]):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                   strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_records(rows: Sequence[ScoreRow]) -> list[dict]:
    """The score rows as flat dicts (every field but ``hits``), e.g. for an HTML table."""
    return [{k: v for k, v in asdict(r).items() if k != "hits"} for r in rows]


def to_json(rows: Sequence[ScoreRow]) -> str:
    """The score rows as a JSON array of objects (hits included; None -> null)."""
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
          horizon_days: int = HORIZON_DAYS, min_depth: float | None = None,
          start: dt.date | None = None, end: dt.date | None = None,
          on_point: Callable[[int, int], None] | None = None) -> list[dict]:
    """Score every grid point of ``sweeps`` (cartesian product, the first axis varying slowest).

    Returns one dict per point: ``{"params": {"RULE.PARAM": value, ...}, "rules": {name:
    metrics, ..., ANY: metrics}}`` where the rules are the swept ones (config order) and
    metrics = {episodes, caught, median_lead_trough, median_lead_half, firings, false_alarms,
    unjudged, false_alarms_per_year, share_in_alert} as in :class:`ScoreRow`. "any rule" is the
    union of ALL rules of the point's config. Rules whose settings a point does not change are
    simulated once. ``on_point(done, total)`` is called after each point (progress bars).
    Raises ValueError for an unknown rule/signal or more than :data:`MAX_GRID` points.
    """
    if not sweeps:
        raise ValueError("no sweep given")
    total = math.prod(len(s.values) for s in sweeps)
    if total > MAX_GRID:
        raise ValueError(f"{total} grid points; at most {MAX_GRID}")
    for s in sweeps:  # validates rule and param with the first value, one-line errors
        apply(config, [(s.key, s.values[0])])
    depth = config.episodes.drawdown_min_depth if min_depth is None else min_depth
    idx = values.index
    lab = _labels(idx, list(episodes), close, depth, lookback_days, horizon_days, start, end)
    days = list(lab.days)
    names = set().union(*(r.names for r in config.rules)) if config.rules else set()
    cols = _columns(values, names)
    swept = [r.name for r in config.rules if any(s.rule == r.name for s in sweeps)]
    cache: dict[tuple, _RuleRun] = {}
    out = []
    for done, point in enumerate(itertools.product(*(s.values for s in sweeps)), 1):
        params = {s.key: v for s, v in zip(sweeps, point, strict=True)}
        cfg = apply(config, params)
        runs = []
        for rule in cfg.rules:
            key = _rule_key(rule)
            if key not in cache:
                extra = rule.names - cols.keys()
                if extra:  # a swept rule cannot read new signals, but keep this exact
                    cols.update(_columns(values, extra))
                cache[key] = _run_rule(rule, cols, days)
            runs.append(cache[key])
        rule_names = [r.name for r in cfg.rules]
        fired = pd.DataFrame({n: r.fired for n, r in zip(rule_names, runs, strict=True)},
                             index=idx, columns=rule_names, dtype=bool)
        firing = pd.DataFrame({n: r.firing for n, r in zip(rule_names, runs, strict=True)},
                              index=idx, columns=rule_names, dtype=bool)
        rows = _score_all(fired, firing, lab, swept)
        out.append({"params": params, "rules": {r.rule: _metrics(r) for r in rows}})
        if on_point is not None:
            on_point(done, total)
    return out


_METRICS = ("episodes", "caught", "median_lead_trough", "median_lead_half", "firings",
            "false_alarms", "unjudged", "false_alarms_per_year", "share_in_alert")


def _metrics(row: ScoreRow) -> dict:
    return {k: getattr(row, k) for k in _METRICS}


def sweep_table(points: Sequence[dict]) -> str:
    """The sweep result as an aligned text table: one line per grid point, for each scored
    rule its caught/episodes, false alarms per year and share of days in alert."""
    if not points:
        return ""
    keys = list(points[0]["params"])
    rules = list(points[0]["rules"])
    head = list(keys)
    for r in rules:
        head += [f"{r} caught", f"{r} false/yr", f"{r} in alert"]
    body = []
    for p in points:
        line = [format(p["params"][k], "g") for k in keys]
        for r in rules:
            m = p["rules"][r]
            line += [f"{m['caught']}/{m['episodes']}", f"{m['false_alarms_per_year']:.2f}",
                     f"{100 * m['share_in_alert']:.1f}%"]
        body.append(line)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- calibrate


_UPPER = {">", ">="}
_LOWER = {"<", "<="}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _hit_rate(e: expr.Expr, sample: pd.DataFrame) -> tuple[float | None, int]:
    """Share of the sample's days on which ``e`` holds, among days it can be evaluated."""
    t, f = _kleene(e, _columns(sample, e.names), len(sample))
    known = int(t.sum() + f.sum())
    return (float(t.sum()) / known if known else None), known


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def calibrate(config: Config, values: pd.DataFrame, until: dt.date, quantile: float = 0.95, *,
              min_obs: int = 250, rules: Sequence[str] | None = None) -> str:
    """Propose thresholds from data up to ``until`` (inclusive) only; return a TOML snippet.

    Method: the rows of ``values`` dated after ``until`` are dropped first, nothing else looks
    at them. Then, in each rule's ``when``, every comparison of a signal with a number by
    ``>=``/``>`` gets as its new number the in-sample ``quantile`` of that signal's non-missing
    values, and by ``<=``/``<`` the ``1 - quantile`` quantile (numpy's linear interpolation),
    rounded to 4 significant digits; so each comparison alone holds on about ``1 - quantile``
    of the in-sample days (5% by default). Comparisons are calibrated one by one: a rule that
    joins several with ``and`` holds on fewer days (its in-sample hit rate is reported).
    Comparisons with ``==``/``!=`` or between two signals, and signals with fewer than
    ``min_obs`` in-sample values, keep their threshold. ``clear_when`` is never changed; a
    comment warns when the new ``when`` now overlaps the rule's clear condition on that signal.

    The snippet holds one complete ``[[rules]]`` table per rule (all its keys, so it can replace
    the rule in the config), with comments giving per comparison the quantile used and the old
    threshold, and the share of in-sample days (where it can be evaluated) on which the new and
    the old ``when`` hold. ``rules`` restricts the output to these rule names.
    """
    if not 0.5 < quantile < 1:
        raise ValueError(f"quantile must be in (0.5, 1), got {quantile!r}")
    idx = _day_index(values.index)
    sample = values.iloc[np.flatnonzero(idx <= pd.Timestamp(until))]
    sample_days = idx[idx <= pd.Timestamp(until)]
    wanted = [r.name for r in config.rules] if rules is None else list(rules)
    for name in wanted:
        config.rule(name)  # KeyError for an unknown rule
    span = (f"{_iso(sample_days[0])} to {_iso(sample_days[-1])}" if len(sample_days) else "no rows")
    out = [f"# regime-monitor calibrate: thresholds from data up to {until.isoformat()} only "
           f"({len(sample_days)} trading days, {span}).",
           f"# '>=' / '>' thresholds: in-sample {quantile:g} quantile; '<=' / '<': "
           f"{1 - quantile:g} quantile (each comparison alone holds on ~{_pct(1 - quantile)} of days).",
           "# Review, then paste over the matching [[rules]] tables; the config is not changed."]
    for rule in config.rules:
        if rule.name not in wanted:
            continue
        notes: list[str] = []

        def propose(c: expr.Comparison, notes: list[str] = notes, rule: RuleConfig = rule) -> expr.Expr:
            names = [s for s in (c.left, c.right) if isinstance(s, expr.Name)]
            if len(names) != 1:
                notes.append(f"{c} kept: compares two signals")
                return c
            signal = names[0].name
            op = c.op if isinstance(c.left, expr.Name) else _FLIP[c.op]  # op with signal on the left
            old = (c.right if isinstance(c.left, expr.Name) else c.left).value  # type: ignore[union-attr]
            if op not in _UPPER | _LOWER:
                notes.append(f"{c} kept: '{c.op}' has no quantile")
                return c
            col = sample[signal] if signal in sample.columns else pd.Series(dtype=float)
            data = col.to_numpy(dtype=float, na_value=np.nan)
            data = data[~np.isnan(data)]
            if data.size < min_obs:
                notes.append(f"{c} kept: only {data.size} in-sample values of {signal} "
                             f"(fewer than {min_obs})")
                return c
            q = quantile if op in _UPPER else 1 - quantile
            new = _round_sig(float(np.quantile(data, q)))
            hold = float(np.mean(_NP_OPS[op](data, new)))
            number = expr.Number(new)
            out_c = (expr.Comparison(c.left, c.op, number) if isinstance(c.left, expr.Name)
                     else expr.Comparison(number, c.op, c.right))
            notes.append(f"{out_c} (was {expr.Number(old)}): in-sample {q:g} quantile of "
                         f"{data.size} values; holds on {_pct(hold)} of them")
            notes.extend(_overlap(rule, signal, op, new))
            return out_c

        new_when = _map_comparisons(rule.when_expr, propose)
        new_rate, known = _hit_rate(new_when, sample)
        old_rate, _ = _hit_rate(rule.when_expr, sample)
        out.append("")
        out.append("[[rules]]")
        out.append(f"name = {_toml_str(rule.name)}")
        out.append(f"severity = {_toml_str(rule.severity)}")
        out.extend(f"# {note}" for note in notes)
        out.append(f"# when holds on {_pct(new_rate)} of {known} in-sample days where it can be "
                   f"evaluated (old threshold: {_pct(old_rate)})")
        out.append(f"when = {_toml_str(str(new_when))}")
        out.append(f"for_days = {rule.for_days}")
        if rule.clear_when is not None:
            out.append(f"clear_when = {_toml_str(rule.clear_when)}")
        out.append(f"clear_days = {rule.clear_days}")
        out.append(f"repeat_every_days = {rule.repeat_every_days}")
        out.append(f"explain = {_toml_str(rule.explain)}")
    return "\n".join(out) + "\n"


def _overlap(rule: RuleConfig, signal: str, op: str, new: float) -> list[str]:
    """Warnings when the new ``signal op new`` region meets a clear_when comparison on it."""
    if rule.clear_expr is None:
        return []
    notes = []
    for c in expr.comparisons(rule.clear_expr):
        if isinstance(c.left, expr.Name) and c.left.name == signal and isinstance(c.right, expr.Number):
            cop, value = c.op, c.right.value
        elif isinstance(c.right, expr.Name) and c.right.name == signal and isinstance(c.left, expr.Number):
            cop, value = _FLIP[c.op], c.left.value
        else:
            continue
        if (op in _UPPER and cop in _LOWER and value > new) or (op in _LOWER and cop in _UPPER
                                                               and value < new):
            notes.append(f"note: clear_when's '{c}' now overlaps the new alert zone; review it")
    return notes
