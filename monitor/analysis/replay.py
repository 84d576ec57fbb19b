"""Replay: the daily cycle over history into a scratch database, point-in-time, nothing sent.

Signals are computed for the whole period in one pass (``monitor.compute.history``, equal to the
day-by-day ``compute_day``), then every trading day runs the daemon's own ``run_cycle`` with
those values: rules, lifecycle, events, episodes and the outbox are the very same code. The
regime model's fits come from the fit cache beside the source database when an earlier run made
them on the same data (``storage.fit_cache``), and new ones are kept there.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlite_utils import Database

from monitor.calendar import TradingCalendar
from monitor.compute import SignalValue, history
from monitor.config import Config
from monitor.cycle import CycleError, run_constants, run_cycle
from monitor.sources.base import Fetched
from storage import alerts, fit_cache
from storage.db import copy_known, fast_unsafe_writes, open_db


class NoFetch:
    """A replay reads what the scratch database holds; it fetches nothing."""

    name = "replay"

    def fetch(self, as_of: dt.date, since: dt.date | None) -> Fetched:
        return Fetched()


@dataclass
class ReplayResult:
    """A finished replay: its scratch database, days run, and every alert event."""

    db: Database
    days: list[dt.date]
    events: list[dict]
    values: pd.DataFrame


def scratch_copy(source: Database, path: Path, end: dt.date) -> Database:
    """Create a fresh database at ``path`` holding the source's observations (with the values
    revised later, ``observation_revisions``) and stock panel known by ``end`` (nothing else: no
    alerts, events, fits or runs)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = open_db(path)
    fast_unsafe_writes(db)  # a scratch database: speed over durability
    copy_known(db, source, end.isoformat())
    return db


def cached_history(source: Database, db: Database, calendar: TradingCalendar, days: list[dt.date],
                   config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``monitor.compute.history`` of ``db`` (a scratch copy of ``source``) over ``days``, with the
    regime fits of earlier runs from the fit cache beside ``source`` (keyed by their data), which
    keeps the new ones; the cache is closed when done."""
    cache = fit_cache.for_database(source)
    try:
        return history(db, calendar, days[0], days[-1], config.signal_params(), fit_cache=cache)
    finally:
        if cache is not None:
            cache.close()


def _day_values(values, contexts) -> list[SignalValue]:
    """One signal's ``SignalValue`` per day from its column of values and (or None) contexts: a
    value that is NaN or infinite is None, and so is its context; a context is its text."""
    out = []
    for i, v in enumerate(values.tolist()):
        ok = v == v and math.isfinite(v)
        c = contexts[i] if contexts is not None else None
        out.append(SignalValue(float(v) if ok else None,
                               str(c) if ok and c is not None and c == c else None))
    return out


def replay(source: Database, config: Config, start: dt.date, end: dt.date, scratch: Path,
           on_day: Callable[[dt.date], None] | None = None) -> ReplayResult:
    """Run the daily cycle for every trading day in [start, end] into the scratch database at
    ``scratch``; nothing is delivered (digests stay in the scratch outbox). ``on_day`` is called
    after each day (the CLI's progress bar). Returns the result."""
    calendar = TradingCalendar(config.calendar.extra_closed)
    days = calendar.days(start, end)
    if not days:
        raise CycleError(f"no XSHG trading day between {start} and {end}")
    db = scratch_copy(source, scratch, end)
    values, contexts = cached_history(source, db, calendar, days, config)
    columns = [_day_values(values[name].to_numpy(),
                           contexts[name].to_numpy() if name in contexts.columns else None)
               for name in values.columns]
    constants = run_constants(db, config)  # once: the replay fetches nothing
    source_ = NoFetch()
    for i, day in enumerate(days):
        pre = {name: col[i] for name, col in zip(values.columns, columns, strict=True)}
        run_cycle(db, config, day, source_, calendar, precomputed=pre,
                  episodes="full" if i == len(days) - 1 else "skip", constants=constants)
        if on_day:
            on_day(day)
    db.enable_wal()  # the journal back on disk for whoever writes through the returned connection
    return ReplayResult(db, days, alerts.events(db), values)
