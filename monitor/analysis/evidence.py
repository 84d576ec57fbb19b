"""Preparing history for backtests, sweeps, calibration and the report (I/O edge).

Signal values are computed point-in-time by ``monitor.compute.history`` (equal to the daily
cycle's values) on a scratch copy of the database, so that nothing - not even the regime model's
fits - is written to the history the daemon uses; the regime fits are kept across runs in their own
file beside it (``storage.fit_cache``: ``<db>.fits.sqlite``, keyed by the data fitted on).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlite_utils import Database

from monitor.analysis.replay import cached_history, scratch_copy
from monitor.calendar import TradingCalendar
from monitor.config import Config
from monitor.cycle import CycleError
from signals.episodes import DrawdownEpisode, drawdown_episodes
from signals.series import MICROCAP_CLOSE
from storage import observations

MICROCAP = MICROCAP_CLOSE
@dataclass
class Evidence:
    """What a backtest scores: signal values per day, drawdown labels, and the micro-cap close."""

    values: pd.DataFrame
    contexts: pd.DataFrame  # each signal's per-day context (e.g. the risk model's base rate)
    episodes: list[DrawdownEpisode]
    close: pd.Series
    start: dt.date
    end: dt.date


def data_range(db: Database) -> tuple[dt.date, dt.date]:
    """Return the first and last day of micro-cap data in ``db``."""
    first, last = observations.date_range(db, MICROCAP)
    if first is None or last is None:
        raise CycleError(f"no {MICROCAP} observations in the database: nothing to backtest")
    return dt.date.fromisoformat(first), dt.date.fromisoformat(last)


def gather(source: Database, config: Config, start: dt.date | None, end: dt.date | None,
           scratch: Path | None = None) -> Evidence:
    """Compute the evidence for [start, end] (defaults: the micro-cap data's range).

    Labels are the micro-cap drawdown episodes of at least ``episodes.drawdown_min_depth`` found in
    the closes up to ``end`` (the outcome being scored, not an input of any alert).
    """
    first, last = data_range(source)
    start, end = max(start or first, first), min(end or last, last)
    if end < start:
        raise CycleError(f"no data between {start} and {end}")
    calendar = TradingCalendar(config.calendar.extra_closed)
    with tempfile.TemporaryDirectory() as tmp:
        db = scratch_copy(source, scratch or Path(tmp) / "evidence.db", end)
        days = calendar.days(start, end)
        values, contexts = cached_history(source, db, calendar, days, config)
        close = observations.load_frame(db, [MICROCAP], calendar.days(first, end), end)[MICROCAP]
        db.close()
    episodes = drawdown_episodes(close, config.episodes.drawdown_min_depth)
    return Evidence(values, contexts, episodes, close, days[0], days[-1])
