"""The declared interfaces (issue 13 item 4): each implementation has exactly the abilities its
protocols say, so the callers' ``isinstance`` checks pick the right paths."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor import delivery
from monitor.analysis.replay import NoFetch
from monitor.calendar import TradingCalendar
from monitor.config import AkshareConfig
from monitor.delivery import ChartUploader, HistoryReader, Notifier, StoredOnlyNotifier
from monitor.delivery.console import ConsoleNotifier
from monitor.delivery.slack import SlackNotifier
from monitor.sources import (
    CalendarCheckingSource,
    CrossSectionSource,
    CsvSource,
    Fetched,
    HoldingsSource,
    Source,
)
from monitor.sources.akshare_source import AkshareSource
from monitor.sources.demo_source import DemoSource

ABILITIES = (CalendarCheckingSource, CrossSectionSource, HoldingsSource)


@pytest.mark.parametrize("source,abilities", [
    (AkshareSource(AkshareConfig(), TradingCalendar(), ak=object()), set(ABILITIES)),
    (DemoSource(seed=7), set()),
    (CsvSource(), set()),
    (NoFetch(), set()),
])
def test_each_source_declares_exactly_its_abilities(source, abilities):
    assert isinstance(source, Source)
    assert {p for p in ABILITIES if isinstance(source, p)} == abilities


def test_fetch_returns_rows_and_failures():
    got = DemoSource(seed=7).fetch(dt.date(2018, 1, 5), dt.date(2018, 1, 3))
    assert isinstance(got, Fetched) and got.failures == {}
    assert got.rows and {r[3] for r in got.rows} <= {"2018-01-04", "2018-01-05"}
    assert CsvSource().fetch(dt.date(2018, 1, 5), None) == Fetched([], {})


# TestMessageSender through the module: pytest would take the name for a test class
NOTIFIER_ABILITIES = (ChartUploader, HistoryReader, delivery.TestMessageSender)


@pytest.mark.parametrize("notifier,abilities", [
    (SlackNotifier("C0123456789", "xoxb-test-token", None), set(NOTIFIER_ABILITIES)),
    (SlackNotifier(None, None, "https://hooks.example/T/B/secret-path"), set(NOTIFIER_ABILITIES)),
    (ConsoleNotifier(), set()),
    (StoredOnlyNotifier(), set()),
])
def test_each_notifier_declares_exactly_its_abilities(notifier, abilities):
    assert isinstance(notifier.destination, str)
    assert {p for p in NOTIFIER_ABILITIES if isinstance(notifier, p)} == abilities
    _: Notifier = notifier  # every notifier is a Notifier
