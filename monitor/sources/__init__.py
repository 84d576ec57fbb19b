"""Data sources: adapters that turn a provider's data into canonical observations.

A source's ``fetch(as_of, since)`` returns the observation rows that became available after
trading day ``since`` (None: everything) and no later than ``as_of``:
``(series, date ISO, value in canonical unit, available_at ISO, source label)``.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from monitor.config import Config
from storage.observations import ObservationRow


class Source(Protocol):
    name: str

    def fetch(self, as_of: dt.date, since: dt.date | None) -> list[ObservationRow]:
        """Return the rows that became available in (since, as_of]."""
        ...


class CsvSource:
    """Data arrives through ``regime-monitor import-csv``; the cycle itself fetches nothing."""

    name = "csv"

    def fetch(self, as_of: dt.date, since: dt.date | None) -> list[ObservationRow]:
        return []


def make_source(config: Config) -> Source:
    """Return the source configured in ``[source]``."""
    if config.source.kind == "demo":
        from monitor.sources.demo_source import DemoSource

        return DemoSource(seed=config.source.demo_seed)
    if config.source.kind == "akshare":  # akshare itself is imported only at the first fetch
        from monitor.calendar import TradingCalendar
        from monitor.sources.akshare_source import AkshareSource

        return AkshareSource(config.source.akshare, TradingCalendar(config.calendar.extra_closed))
    return CsvSource()
