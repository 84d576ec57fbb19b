"""Episodes: micro-cap drawdowns (the labels backtests score alerts against) and rotation spells.

Pure functions over Series indexed by trading day; an episode still under way at the last day of
the input is returned open (``recovery``/``end`` None), so computing as of day D never uses data
after D.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DrawdownEpisode:
    """A decline of at least the threshold from a running peak.

    ``depth`` = trough close / peak close - 1 (fraction, negative). ``recovery`` is the first day
    the close is back at or above the peak close (None while not recovered).
    """

    peak: dt.date
    trough: dt.date
    recovery: dt.date | None
    peak_close: float
    trough_close: float
    depth: float
    threshold_day: dt.date  # first day the decline reached the threshold

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(self).items()}


def _day(ts) -> dt.date:
    return pd.Timestamp(ts).date()


def drawdown_episodes(close: pd.Series, min_depth: float = 0.10) -> list[DrawdownEpisode]:
    """Return every peak -> trough -> recovery decline of at least ``min_depth`` (fraction).

    An episode starts at a running maximum, runs until the close first regains that maximum
    (recovery), and its trough is the lowest close in between. Declines smaller than
    ``min_depth`` are not episodes. NaN closes are skipped.
    """
    s = close.dropna()
    values = s.to_numpy(dtype=float)
    index = s.index
    episodes: list[DrawdownEpisode] = []
    peak_i = 0
    trough_i = 0
    hit_i: int | None = None
    for i in range(1, len(values)):
        v = values[i]
        if v >= values[peak_i]:
            if hit_i is not None:
                episodes.append(_episode(index, values, peak_i, trough_i, i, hit_i))
            peak_i, trough_i, hit_i = i, i, None
            continue
        if v < values[trough_i]:
            trough_i = i
        if hit_i is None and v / values[peak_i] - 1.0 <= -min_depth:
            hit_i = i
    if hit_i is not None:
        episodes.append(_episode(index, values, peak_i, trough_i, None, hit_i))
    return episodes


def _episode(index, values, peak_i, trough_i, recovery_i, hit_i) -> DrawdownEpisode:
    return DrawdownEpisode(
        peak=_day(index[peak_i]), trough=_day(index[trough_i]),
        recovery=None if recovery_i is None else _day(index[recovery_i]),
        peak_close=float(values[peak_i]), trough_close=float(values[trough_i]),
        depth=float(values[trough_i] / values[peak_i] - 1.0), threshold_day=_day(index[hit_i]))


ROTATION_MERGE_GAP_DAYS = 2
"""Spells of the rotation condition separated by at most this many trading days without it are
one rotation episode (a condition that lapses for a day or two has not ended)."""
ROTATION_MIN_DAYS = 5
"""A finished rotation episode spans at least this many trading days (first to last day with
the condition, merged gaps included); a shorter spell is noise, not an episode."""
ROTATION_THEME_MIN_EXCESS = 0.05
"""A rotation episode names its leading theme only when that theme's peak excess return over CSI
All Share reached at least this (fraction): a spell driven by large caps (CSI 300 beating the
micro-caps) with no theme well ahead of the market has no leading theme."""


@dataclass(frozen=True)
class RotationEpisode:
    """A rotation spell: trading days on which the rotation condition held, lapses of at most
    ``ROTATION_MERGE_GAP_DAYS`` merged."""

    start: dt.date
    end: dt.date | None  # last day of the spell; None while it may still continue (see below)
    last_day: dt.date  # last day in the condition so far
    theme: str | None  # the hottest theme on the day its excess peaked (None: none well ahead)
    theme_excess_peak: float | None  # fraction
    microcap_drawdown: float | None  # worst micro-cap decline within the spell (fraction, <= 0)

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(self).items()}


def _runs(flags: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """Return the (first, last) positions of the runs of True in ``flags``, runs separated by at
    most ``gap`` False values merged."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(flags)
    while i < n:
        if not flags[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and flags[j + 1]:
            j += 1
        if out and i - out[-1][1] - 1 <= gap:
            out[-1] = (out[-1][0], j)
        else:
            out.append((i, j))
        i = j + 1
    return out


def rotation_episodes(condition: pd.Series, hot_theme_excess: pd.Series, hot_theme: pd.Series,
                      microcap_close: pd.Series, merge_gap: int = ROTATION_MERGE_GAP_DAYS,
                      min_days: int = ROTATION_MIN_DAYS,
                      theme_min_excess: float = ROTATION_THEME_MIN_EXCESS
                      ) -> list[RotationEpisode]:
    """Return the rotation episodes: spells of days with ``condition`` True, spells separated by
    at most ``merge_gap`` days without it merged, finished ones shorter than ``min_days`` days
    (first to last day in the condition) dropped.

    A spell is open (``end`` None) while its last day in the condition is at most ``merge_gap``
    days before the last input day: it may still continue, so computing as of day D never
    depends on later data, and an open spell is kept whatever its length.

    ``hot_theme_excess`` (fraction) and ``hot_theme`` (theme id) give the theme at its peak
    excess within the spell; it is named only when that peak is at least ``theme_min_excess``.
    The micro-cap drawdown is measured from the close on the day before the spell (or its first
    day) to the lowest close within it, against the running maximum.
    """
    cond = condition.fillna(False).astype(bool)
    if cond.empty:
        return []
    flags = cond.to_numpy()
    index = cond.index
    n = len(flags)
    out: list[RotationEpisode] = []
    for i, j in _runs(flags, merge_gap):
        still = n - 1 - j <= merge_gap
        if not still and j - i + 1 < min_days:
            continue
        days = index[i:j + 1]
        excess = hot_theme_excess.reindex(days)
        theme: str | None = None
        peak_excess: float | None = None
        if excess.notna().any():
            peak_day = excess.idxmax()
            peak_excess = float(excess.max())
            name = hot_theme.get(peak_day)
            if (peak_excess >= theme_min_excess and name is not None
                    and not (isinstance(name, float) and np.isnan(name))):
                theme = str(name)
        base = index[i - 1] if i > 0 else index[i]
        window = microcap_close.reindex(index[index.get_loc(base):j + 1]).dropna()
        dd = float((window / window.cummax() - 1.0).min()) if len(window) else None
        out.append(RotationEpisode(start=_day(days[0]), end=None if still else _day(days[-1]),
                                   last_day=_day(days[-1]), theme=theme,
                                   theme_excess_peak=peak_excess, microcap_drawdown=dd))
    return out
