"""The CSV source: data arrives through ``regime-monitor import-csv``; the cycle fetches nothing."""

from __future__ import annotations

import datetime as dt

from monitor.sources.base import Fetched


class CsvSource:
    """Fetches nothing: the observations are imported (``monitor.sources.csv_import``)."""

    name = "csv"

    def fetch(self, as_of: dt.date, since: dt.date | None) -> Fetched:
        return Fetched()
