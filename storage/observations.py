"""Observations: (series, date, value, available_at, source). Every read is point-in-time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from sqlite_utils import Database

from storage.util import utc_now

ObservationRow = tuple[str, str, float, str, str]  # series, date, value, available_at, source

_UPSERT = """
INSERT INTO observations (series, date, value, available_at, source, imported_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (series, date) DO UPDATE SET
    value = excluded.value, available_at = excluded.available_at,
    source = excluded.source, imported_at = excluded.imported_at
WHERE observations.value IS NOT excluded.value
"""


def upsert(db: Database, rows: Iterable[ObservationRow]) -> int:
    """Insert new observations, update revised values; return the number of rows changed.

    A row whose value is unchanged is left alone (so re-imports change nothing). A revised value
    takes the revision's ``available_at``: replays of earlier days then do not see it at all,
    which is conservative (no look-ahead).
    """
    now = utc_now()
    before = db.conn.total_changes
    db.conn.executemany(_UPSERT, ((s, d, v, a, src, now) for s, d, v, a, src in rows))
    return db.conn.total_changes - before


def series_names(db: Database) -> list[str]:
    """Return every series name that has at least one observation, sorted."""
    # a skip-scan over the primary key: one index probe per series, whatever the history length
    cur = db.execute(
        "WITH RECURSIVE s(name) AS (SELECT MIN(series) FROM observations UNION ALL "
        "SELECT (SELECT MIN(series) FROM observations WHERE series > s.name) FROM s "
        "WHERE s.name IS NOT NULL) SELECT name FROM s WHERE name IS NOT NULL")
    return [r[0] for r in cur]


def first_date(db: Database, series: Sequence[str]) -> dt.date | None:
    """Return the earliest observation date among ``series`` (None when there is none)."""
    if not series:
        return None
    marks = ",".join("?" * len(series))
    row = db.execute(f"SELECT MIN(date) FROM observations WHERE series IN ({marks})",
                     list(series)).fetchone()
    return dt.date.fromisoformat(row[0]) if row and row[0] else None


def load_frame(db: Database, series: Sequence[str], days: Sequence[dt.date], as_of: dt.date,
               starts: Mapping[str, dt.date] | None = None) -> pd.DataFrame:
    """Return a wide float frame (index = ``days`` as Timestamps, columns = ``series``).

    Only observations dated within ``days`` (from ``starts[series]`` when given, so each series
    is read only as far back as needed) and with ``available_at <= as_of`` are used; missing
    values are NaN. Dates that are not in ``days`` (e.g. weekend make-up days) are dropped.
    """
    index = pd.DatetimeIndex(pd.to_datetime(list(days)), name="date")
    values = np.full((len(days), len(series)), np.nan)
    if len(series) and len(days):
        iso = np.array([d.isoformat() for d in days])
        for j, name in enumerate(series):
            lo = max(days[0], (starts or {}).get(name, days[0])).isoformat()
            rows = db.execute(
                "SELECT date, value FROM observations WHERE series = ? AND date >= ? "
                "AND date <= ? AND available_at <= ?",
                [name, lo, days[-1].isoformat(), as_of.isoformat()]).fetchall()
            if not rows:
                continue
            dates, vals = zip(*rows, strict=True)
            dates = np.array(dates)
            pos = np.searchsorted(iso, dates)
            ok = (pos < len(iso)) & (iso[np.minimum(pos, len(iso) - 1)] == dates)
            values[pos[ok], j] = np.asarray(vals, dtype=float)[ok]
    return pd.DataFrame(values, index=index, columns=list(series))


def lagged_series(db: Database, series: Sequence[str]) -> list[str]:
    """Return the series among ``series`` with any observation available after its date."""
    if not series:
        return []
    marks = ",".join("?" * len(series))
    cur = db.execute(f"SELECT DISTINCT series FROM observations WHERE series IN ({marks}) "
                     "AND available_at > date", list(series))
    return sorted(r[0] for r in cur)
