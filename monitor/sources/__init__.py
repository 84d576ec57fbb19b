"""Data sources: adapters that turn a provider's data into canonical observations.

The interfaces are in ``monitor.sources.base`` (``Source``, whose ``fetch`` returns a
``Fetched``: rows and failures; the optional abilities ``CalendarCheckingSource``,
``CrossSectionSource`` and ``HoldingsSource``), one file per implementation:
``akshare_source``, ``demo_source``, ``csv_source``. ``make_source`` picks the configured one.
"""

from __future__ import annotations

from monitor.config import Config
from monitor.sources.base import (
    CalendarCheckingSource,
    CrossSectionSource,
    Fetched,
    FetchedPanel,
    HoldingsSource,
    Source,
)
from monitor.sources.csv_source import CsvSource

__all__ = ["CalendarCheckingSource", "CrossSectionSource", "CsvSource", "Fetched", "FetchedPanel",
           "HoldingsSource", "Source", "make_source"]


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
