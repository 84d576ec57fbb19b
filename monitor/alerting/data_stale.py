"""The built-in ``data_stale`` alert (pure): fires when a required input series has not been
updated for more than ``[data_quality] stale_after_days`` trading days.

It is a rule like the configured ones, advanced by the same :func:`monitor.alerting.advance.advance`
(timing: fires on the first stale day, resolves on the first fresh day, reminds every 5 trading
days). The cycle reads the stored series names and latest observation days (``storage``) and
passes them in.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitor.alerting.rules import Evaluation
from monitor.calendar import TradingCalendar
from monitor.config import Config
from monitor.delivery.digest import DATA_STALE

__all__ = ["DATA_STALE", "RULE", "STALE_EXPLAIN", "BuiltinRule", "ages", "evaluate",
           "last_days", "latest_known", "lookback_days", "required_series"]

STALE_EXPLAIN = ("Required input series have not been updated for several trading days: the "
                 "indicators that read them cannot see today's market, so their alerts are blind.")
MAX_SHOWN = 20
"""Most series listed in the alert's comparisons."""


@dataclass(frozen=True)
class BuiltinRule:
    """A rule that is not in the config: what ``advance`` reads of a rule."""

    name: str
    severity: str
    explain: str
    for_days: int = 1
    clear_days: int = 1
    repeat_every_days: int = 0


RULE = BuiltinRule(DATA_STALE, "warning", STALE_EXPLAIN, for_days=1, clear_days=1,
                   repeat_every_days=5)


def required_series(config: Config, available: Iterable[str]) -> list[str]:
    """Return the daily input series that must be fresh, sorted: ``[data_quality] required``, or
    by default the daily (not quarterly ``funds.*``, not ``theme.*``) inputs, among the stored
    series ``available``, of the signals the rules read."""
    import signals

    if config.data_quality.required:
        return sorted(config.data_quality.required)
    params = config.signal_params()
    names = {n for rule in config.rules for n in rule.names}
    stored = set(available)
    out: set[str] = set()
    for name in names:
        sig = signals.REGISTRY[name]
        out.update(s for s in sig.resolve_inputs(stored, params[sig.family])
                   if not s.startswith("funds.") and not s.startswith("theme."))
    return sorted(out)


def lookback_days(config: Config) -> int:
    """Return how many trading days back the series' latest observation is looked for."""
    return config.data_quality.stale_after_days + 5


def latest_known(days: Sequence[str], available: Sequence[str], first: str, as_of: str) -> str | None:
    """Return the latest of ``days`` (ISO, ascending; ``available`` the day each became known)
    in [``first``, ``as_of``] that was available by ``as_of``, or None: what
    ``storage.observations.latest_dates`` asks SQLite for, from the days read once
    (``storage.observations.observed_days``)."""
    i = bisect_right(days, as_of) - 1
    while i >= 0 and days[i] >= first:
        if available[i] <= as_of:
            return days[i]
        i -= 1
    return None


def ages(latest: Mapping[str, str | None], as_of: dt.date,
         calendar: TradingCalendar) -> dict[str, int | None]:
    """Return each series' age in trading days on ``as_of`` (0 = has today's value) from its
    latest observation day (ISO; None = nothing within the lookback -> None)."""
    return {name: None if day is None
            else calendar.count_between(dt.date.fromisoformat(day), as_of)
            for name, day in latest.items()}


def evaluate(age: Mapping[str, int | None], limit: int,
             last: Mapping[str, str | None] | None = None) -> Evaluation:
    """Return the alert's evaluation from the series' ``age`` (trading days) and the limit
    ``stale_after_days``: it holds when any series is older than ``limit`` or has no value in
    the lookback; clear is its negation (never unknown). The comparisons and values list the
    stale series (all series when none is stale), at most ``MAX_SHOWN`` comparisons; each
    comparison carries the series' ``last`` observation day (ISO, None: none stored) from
    ``last``, so the digest says "last value 2024-01-05, 6 trading days old" rather than "n/a"."""
    stale = {k: v for k, v in age.items() if v is None or v > limit}
    holds = bool(stale)
    shown = stale or age
    last = last or {}
    comparisons = [{"signal": name, "value": a, "op": "<=", "threshold": limit,
                    "threshold_signal": None, "holds": a is not None and a <= limit,
                    "last": last.get(name), "unit": "trading days"}
                   for name, a in sorted(shown.items())][:MAX_SHOWN]
    values: dict[str, float | None] = {f"age_days.{k}": v for k, v in sorted(shown.items())}
    return Evaluation(DATA_STALE, holds, not holds, values, comparisons)


def last_days(latest: Mapping[str, str | None], older: Mapping[str, str | None],
              as_of: dt.date, calendar: TradingCalendar
              ) -> tuple[dict[str, int | None], dict[str, str | None]]:
    """Return (age in trading days, last observation day) per series: from ``latest`` (the last
    day within the lookback, None when none) and, for a series with none there, ``older`` (its
    last day at any earlier date known by ``as_of``, None when nothing is stored at all)."""
    last = {k: day if day is not None else older.get(k) for k, day in latest.items()}
    return ages(last, as_of, calendar), last
