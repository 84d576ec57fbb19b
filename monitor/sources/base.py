"""The source interfaces (one file per implementation beside this one).

A source's ``fetch(as_of, since)`` returns a ``Fetched``: the observation rows that became
available after trading day ``since`` (None: everything) and no later than ``as_of``, as
``(series, date ISO, value in canonical unit, available_at ISO, source label)``, and the
failures of that call {series group or data set: one-line reason}. A failing series never
blocks the others: it is left out of ``rows`` and named in ``failures``.

Optional abilities are their own protocols, checked with ``isinstance`` by their callers:
``CalendarCheckingSource`` (a day without index data is a closed day), ``CrossSectionSource``
(the daily market-cap cross-section: the cycle continues the micro-cap index from it) and
``HoldingsSource`` (the funds' quarterly holdings: the daemon's holdings job).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pandas as pd

from storage.observations import ObservationRow


@dataclass(frozen=True)
class Fetched:
    """One fetch's result: the rows it got and why the others are missing."""

    rows: list[ObservationRow] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # series group or data set -> reason


@dataclass(frozen=True)
class FetchedPanel:
    """One cross-section fetch: the ``stock_panel`` rows of the day (empty when there are none)
    and, when empty or refused, why (``failures['stock_panel']``)."""

    frame: pd.DataFrame
    failures: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """Anything the cycle and the backfill can fetch observations from."""

    name: str

    def fetch(self, as_of: dt.date, since: dt.date | None) -> Fetched:
        """Return the rows that became available in (since, as_of] and the failures."""
        ...


@runtime_checkable
class CalendarCheckingSource(Protocol):
    """A source whose index fetch cross-checks the trading calendar (AKShare).

    ``cross_checks_calendar``: when true, a day for which every index fetch succeeded but none
    returned data is a closed day (the cycle records it as such), not a trading day with missing
    data.
    """

    cross_checks_calendar: bool


@runtime_checkable
class CrossSectionSource(Protocol):
    """A source with the daily market-cap cross-section (AKShare's spot list): the cycle stores it
    and continues the micro-cap index from it."""

    def fetch_cross_section(self, as_of: dt.date) -> FetchedPanel:
        """Return trading day ``as_of``'s ``stock_panel`` rows, or an empty frame and why."""
        ...


@runtime_checkable
class HoldingsSource(Protocol):
    """A source with the active equity funds and their quarterly holdings (the holdings job)."""

    def active_funds(self) -> pd.DataFrame:
        """Return (fund_code, fund_name, fund_type) of the active equity funds; raises
        SourceError."""
        ...

    def holdings_of(self, fund_code: str, report_date: dt.date, top: int | None = 10) -> pd.DataFrame:
        """Return (stock_code, holding_value in yuan) of one fund at quarter end
        ``report_date``; raises SourceError (``Skipped`` when the upstream looks unreachable)."""
        ...
