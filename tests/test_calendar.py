"""The XSHG trading calendar: holidays, make-up working days, extra closed days, coverage."""

from __future__ import annotations

import datetime as dt

from monitor.calendar import TradingCalendar

D = dt.date


def test_spring_festival_2024_is_closed_and_the_makeup_sunday_is_not_a_trading_day():
    cal = TradingCalendar()
    for day in (D(2024, 2, 9) + dt.timedelta(days=i) for i in range(9)):  # 02-09 .. 02-17
        assert not cal.is_trading_day(day), day
    assert not cal.is_trading_day(D(2024, 2, 4))  # a make-up working day: exchanges closed
    assert not cal.is_trading_day(D(2024, 2, 18))  # Sunday make-up day after the holiday
    assert cal.is_trading_day(D(2024, 2, 8)) and cal.is_trading_day(D(2024, 2, 19))
    assert cal.days(D(2024, 2, 5), D(2024, 2, 20)) == [
        D(2024, 2, 5), D(2024, 2, 6), D(2024, 2, 7), D(2024, 2, 8), D(2024, 2, 19), D(2024, 2, 20)]


def test_navigation_helpers():
    cal = TradingCalendar()
    assert cal.previous(D(2024, 2, 19)) == D(2024, 2, 8)
    assert cal.last_on_or_before(D(2024, 2, 12)) == D(2024, 2, 8)
    assert cal.window_start(D(2024, 2, 20), 3) == D(2024, 2, 8)
    assert cal.count_between(D(2024, 2, 8), D(2024, 2, 20)) == 2


def test_extra_closed_days_and_life_after_coverage():
    assert TradingCalendar().coverage_end == D(2026, 12, 31)
    cal = TradingCalendar([D(2027, 1, 4)])
    # past the installed calendar: weekdays are open unless declared closed
    assert not cal.is_trading_day(D(2027, 1, 4))
    assert cal.is_trading_day(D(2027, 1, 5))
    assert not cal.is_trading_day(D(2027, 1, 9))  # a Saturday
    assert not cal.is_trading_day(D(2027, 1, 1))  # New Year: closed every year
    assert not cal.is_trading_day(D(2027, 10, 1))
    assert cal.previous(D(2027, 1, 5)) == D(2026, 12, 31)
