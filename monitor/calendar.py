"""XSHG trading days: the only clock the rules, windows and lifecycle count in.

exchange_calendars knows the Shanghai exchange's holidays only up to the end of its published
schedule (``coverage_end``). Past that date the calendar falls back to weekdays minus the
holidays fixed by date every year (1 January, 1 May, 1-3 October) and minus any ``extra_closed``
days declared in the config, so the daemon keeps working (and warns). The moving holidays (Spring
Festival, Qingming, Dragon Boat, Mid-Autumn) must be declared in ``extra_closed``.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from functools import lru_cache

import pandas as pd

CALENDAR_START = dt.date(2005, 1, 4)
FIXED_HOLIDAYS = {(1, 1), (5, 1), (10, 1), (10, 2), (10, 3)}  # closed every year (month, day)
COVERAGE_WARNING_DAYS = 60  # warn this many calendar days before the holidays run out
ASSUMED_OPEN_RULE = ("every weekday except 1 Jan, 1 May, 1-3 Oct and the [calendar] extra_closed "
                     "days is assumed open")


@lru_cache(maxsize=1)
def _xshg():
    import exchange_calendars as xc

    return xc.get_calendar("XSHG", start=CALENDAR_START.isoformat())


def coverage_end() -> dt.date:
    """Return the last date for which the installed XSHG calendar knows the holidays."""
    return _xshg().last_session.date()


def coverage_warning_due(end: dt.date, as_of: dt.date,
                         warn_days: int = COVERAGE_WARNING_DAYS) -> bool:
    """True when ``as_of`` is within ``warn_days`` calendar days of the holiday calendar's last
    day ``end``, or after it."""
    return (end - as_of).days <= warn_days


def coverage_note(end: dt.date, as_of: dt.date, warn_days: int = COVERAGE_WARNING_DAYS) -> str | None:
    """Return the one-line warning that the holiday calendar ends on ``end`` (said in every digest
    from ``warn_days`` calendar days before it, judged on the cycle's day ``as_of``), or None
    before that."""
    if not coverage_warning_due(end, as_of, warn_days):
        return None
    days = (end - as_of).days
    when = (f"ends on {end} (in {days} days)" if days > 1 else f"ends on {end} (tomorrow)"
            if days == 1 else f"ends today ({end})" if days == 0 else f"ended on {end}")
    return (f"The XSHG holiday calendar {when}: after it {ASSUMED_OPEN_RULE}. Declare the "
            "exchange's later holidays in [calendar] extra_closed (or install a newer "
            "exchange_calendars).")


@lru_cache(maxsize=8)
def _sessions(extra_closed: frozenset[dt.date]) -> tuple[dt.date, ...]:
    cal = _xshg()
    known = [ts.date() for ts in cal.sessions]
    end = coverage_end()
    # Fallback beyond coverage: weekdays for the next ten years.
    beyond = pd.bdate_range(end + dt.timedelta(days=1), end + dt.timedelta(days=3660))
    days = known + [ts.date() for ts in beyond if (ts.month, ts.day) not in FIXED_HOLIDAYS]
    return tuple(d for d in days if d not in extra_closed)


def _day(day: dt.date) -> dt.date:
    """``day`` as a plain date (a datetime or pandas Timestamp: its date), for bisecting the
    sessions (a tuple of dates; bisect, not pandas: the cycle asks many times a day)."""
    return day.date() if isinstance(day, dt.datetime) else day


class TradingCalendar:
    """XSHG sessions with optional extra closed days; dates are ``datetime.date``."""

    def __init__(self, extra_closed: Iterable[dt.date] = ()) -> None:
        self.extra_closed = frozenset(extra_closed)
        self._days = _sessions(self.extra_closed)
        self._pos = {d: i for i, d in enumerate(self._days)}

    @property
    def coverage_end(self) -> dt.date:
        return coverage_end()

    def assumed_open(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Return the days in [start, end] counted as trading days only by the fallback rule
        (after ``coverage_end``: weekdays minus the fixed and the declared holidays), ascending."""
        return self.days(max(start, self.coverage_end + dt.timedelta(days=1)), end)

    def is_trading_day(self, day: dt.date) -> bool:
        """True when ``day`` is an XSHG session (or a weekday past coverage, not declared closed)."""
        return day in self._pos

    def days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Return the trading days in [start, end], ascending."""
        lo = bisect_left(self._days, _day(start))
        hi = bisect_right(self._days, _day(end))
        return list(self._days[lo:hi])

    def previous(self, day: dt.date, n: int = 1) -> dt.date:
        """Return the trading day ``n`` sessions before ``day`` (``day`` need not be a session)."""
        i = bisect_left(self._days, _day(day))
        j = i - n
        if j < 0:
            raise ValueError(f"no trading day {n} sessions before {day}")
        return self._days[j]

    def next(self, day: dt.date) -> dt.date:
        """Return the first trading day after ``day`` (``day`` need not be a session)."""
        i = bisect_right(self._days, _day(day))
        if i >= len(self._days):
            raise ValueError(f"no trading day after {day} in the calendar")
        return self._days[i]

    def last_on_or_before(self, day: dt.date) -> dt.date:
        """Return the latest trading day <= ``day``."""
        i = bisect_right(self._days, _day(day)) - 1
        if i < 0:
            raise ValueError(f"no trading day on or before {day}")
        return self._days[i]

    def window_start(self, as_of: dt.date, length: int) -> dt.date:
        """Return the first day of the ``length``-trading-day window that ends at ``as_of``."""
        end = self.last_on_or_before(as_of)
        return self._days[max(0, self._pos[end] - (length - 1))]

    def count_between(self, start: dt.date, end: dt.date) -> int:
        """Return the number of trading days in (start, end]."""
        lo = bisect_right(self._days, _day(start))
        hi = bisect_right(self._days, _day(end))
        return int(max(0, hi - lo))
