"""XSHG trading days: the only clock the rules, windows and lifecycle count in.

exchange_calendars knows the Shanghai exchange's holidays only up to the end of its published
schedule (``coverage_end``). Past that date the calendar falls back to weekdays minus the
holidays fixed by date every year (1 January, 1 May, 1-3 October) and minus any ``extra_closed``
days declared in the config, so the daemon keeps working (and warns). The moving holidays (Spring
Festival, Qingming, Dragon Boat, Mid-Autumn) must be declared in ``extra_closed``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import lru_cache

import pandas as pd

CALENDAR_START = dt.date(2005, 1, 4)
FIXED_HOLIDAYS = {(1, 1), (5, 1), (10, 1), (10, 2), (10, 3)}  # closed every year (month, day)


@lru_cache(maxsize=1)
def _xshg():
    import exchange_calendars as xc

    return xc.get_calendar("XSHG", start=CALENDAR_START.isoformat())


def coverage_end() -> dt.date:
    """Return the last date for which the installed XSHG calendar knows the holidays."""
    return _xshg().last_session.date()


@lru_cache(maxsize=8)
def _sessions(extra_closed: frozenset[dt.date]) -> tuple[dt.date, ...]:
    cal = _xshg()
    known = [ts.date() for ts in cal.sessions]
    end = coverage_end()
    # Fallback beyond coverage: weekdays for the next ten years.
    beyond = pd.bdate_range(end + dt.timedelta(days=1), end + dt.timedelta(days=3660))
    days = known + [ts.date() for ts in beyond if (ts.month, ts.day) not in FIXED_HOLIDAYS]
    return tuple(d for d in days if d not in extra_closed)


class TradingCalendar:
    """XSHG sessions with optional extra closed days; dates are ``datetime.date``."""

    def __init__(self, extra_closed: Iterable[dt.date] = ()) -> None:
        self.extra_closed = frozenset(extra_closed)
        self._days = _sessions(self.extra_closed)
        self._index = pd.DatetimeIndex(pd.to_datetime(self._days))
        self._pos = {d: i for i, d in enumerate(self._days)}

    @property
    def coverage_end(self) -> dt.date:
        return coverage_end()

    def is_trading_day(self, day: dt.date) -> bool:
        """True when ``day`` is an XSHG session (or a weekday past coverage, not declared closed)."""
        return day in self._pos

    def days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Return the trading days in [start, end], ascending."""
        lo = self._index.searchsorted(pd.Timestamp(start), side="left")
        hi = self._index.searchsorted(pd.Timestamp(end), side="right")
        return list(self._days[lo:hi])

    def previous(self, day: dt.date, n: int = 1) -> dt.date:
        """Return the trading day ``n`` sessions before ``day`` (``day`` need not be a session)."""
        i = int(self._index.searchsorted(pd.Timestamp(day), side="left"))
        j = i - n
        if j < 0:
            raise ValueError(f"no trading day {n} sessions before {day}")
        return self._days[j]

    def next(self, day: dt.date) -> dt.date:
        """Return the first trading day after ``day`` (``day`` need not be a session)."""
        i = int(self._index.searchsorted(pd.Timestamp(day), side="right"))
        if i >= len(self._days):
            raise ValueError(f"no trading day after {day} in the calendar")
        return self._days[i]

    def last_on_or_before(self, day: dt.date) -> dt.date:
        """Return the latest trading day <= ``day``."""
        i = int(self._index.searchsorted(pd.Timestamp(day), side="right")) - 1
        if i < 0:
            raise ValueError(f"no trading day on or before {day}")
        return self._days[i]

    def window_start(self, as_of: dt.date, length: int) -> dt.date:
        """Return the first day of the ``length``-trading-day window that ends at ``as_of``."""
        end = self.last_on_or_before(as_of)
        return self._days[max(0, self._pos[end] - (length - 1))]

    def count_between(self, start: dt.date, end: dt.date) -> int:
        """Return the number of trading days in (start, end]."""
        lo = self._index.searchsorted(pd.Timestamp(start), side="right")
        hi = self._index.searchsorted(pd.Timestamp(end), side="right")
        return int(max(0, hi - lo))
