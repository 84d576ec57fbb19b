"""Observations: (series, date, value, available_at, source). Every read is point-in-time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sqlite_utils import Database

from storage.util import utc_now

ObservationRow = tuple[str, str, float, str, str]  # series, date, value, available_at, source

_UPSERT = """
INSERT INTO observations (series, date, value, available_at, source, imported_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (series, date) DO UPDATE SET
    value = excluded.value,
    available_at = CASE WHEN ?7 IS NULL THEN excluded.available_at
                        ELSE max(excluded.available_at, ?7) END,
    source = excluded.source, imported_at = excluded.imported_at
WHERE observations.value IS NOT excluded.value
"""
REVISIONS = "observation_revisions"


BULK_CACHE_KIB = 128 * 1024  # page cache during a large write (an import), KiB


@contextmanager
def large_write(db: Database, cache_kib: int = BULK_CACHE_KIB) -> Iterator[None]:
    """Within the block, the connection's page cache is ``cache_kib`` KiB (then restored): a
    write of millions of rows in one transaction keeps the pages it revisits (one per series and
    per day in the indexes) in memory instead of spilling them to the WAL again and again."""
    before = db.execute("PRAGMA cache_size").fetchone()[0]
    db.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
    try:
        yield
    finally:
        db.execute(f"PRAGMA cache_size = {int(before)}")


def has_revisions(db: Database) -> bool:
    """Return whether the database keeps earlier values of revised observations (m007)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      [REVISIONS]).fetchone() is not None


def upsert(db: Database, rows: Iterable[ObservationRow], revised_from: str | None = None, *,
           now: str | None = None) -> int:
    """Insert new observations, update revised values; return the number of rows changed.

    A row whose value is unchanged is left alone (so re-imports change nothing). A revised value
    takes the row's ``available_at``, or ``revised_from`` (ISO day: when the revision became
    known, e.g. the import day) when that is later: a revision never reaches days before it was
    known. Where the schema keeps revisions (m007), the value it replaces is kept in
    ``observation_revisions`` and point-in-time reads of earlier days still see it. ``now`` (ISO
    UTC) is the rows' ``fetched_at``; None reads the wall clock (for callers that do not pass it
    yet).
    """
    now = now or utc_now()
    kept = _last_revision(db)
    before = db.conn.total_changes
    db.conn.executemany(_UPSERT, ((s, d, v, a, src, now, revised_from) for s, d, v, a, src in rows))
    # total_changes counts the trigger's copies of replaced values too
    return db.conn.total_changes - before - (_last_revision(db) - kept)


def _last_revision(db: Database) -> int:
    if not has_revisions(db):
        return 0
    return db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {REVISIONS}").fetchone()[0]


def change_days(db: Database, series: Sequence[str], after: dt.date, through: dt.date) -> list[dt.date]:
    """Return the days in (after, through] on which a value of ``series`` dated earlier becomes
    visible: a late value (published after its date) or a revision replacing a known value
    (``available_at > date``, current and earlier values), sorted, as dates.

    Between two consecutive such days, what is known about the days up to any day ``t`` is what
    is known at the end of that stretch, since every other value appears on its own date: a
    causal computation over the stretch's last knowledge gives each day's point-in-time value.
    """
    if not series:
        return []
    marks = ",".join("?" * len(series))
    lo, hi = after.isoformat(), through.isoformat()
    sql = (f"SELECT DISTINCT available_at FROM observations WHERE series IN ({marks}) "
           "AND available_at > date AND available_at > ? AND available_at <= ?")
    args: list = [*series, lo, hi]
    if has_revisions(db):
        sql += (f" UNION SELECT available_at FROM {REVISIONS} WHERE series IN ({marks}) "
                "AND available_at > date AND available_at > ? AND available_at <= ?")
        args += [*series, lo, hi]
    return sorted(dt.date.fromisoformat(r[0]) for r in db.execute(sql, args))


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


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def load_frame(db: Database, series: Sequence[str], days: Sequence[dt.date], as_of: dt.date,
               starts: Mapping[str, dt.date] | None = None) -> pd.DataFrame:
    """Return a wide float frame (index = ``days`` as Timestamps, columns = ``series``).

    Only observations dated within ``days`` (from ``starts[series]`` when given, so each series
    is read only as far back as needed) and with ``available_at <= as_of`` are used; a value
    revised after ``as_of`` is read as it was known then (``observation_revisions``). Missing
    values are NaN. Dates that are not in ``days`` (e.g. weekend make-up days) are dropped.
    """
    index = pd.DatetimeIndex(pd.to_datetime(list(days)), name="date")
    values = np.full((len(days), len(series)), np.nan)
    if len(series) and len(days):
        # the days as datetime64 from their ordinals (no ISO string per day), rows' ISO dates
        # parsed by numpy: positions by a numeric search
        day64 = (np.fromiter((d.toordinal() for d in days), dtype=np.int64, count=len(days))
                 - _EPOCH_ORDINAL).astype("datetime64[D]")
        sql = ("SELECT date, value FROM observations WHERE series = ?1 AND date >= ?2 "
               "AND date <= ?3 AND available_at <= ?4")
        if has_revisions(db):  # earlier values, when the current one was not known yet
            sql += (f" UNION ALL SELECT r.date, r.value FROM {REVISIONS} r WHERE r.series = ?1 "
                    "AND r.date >= ?2 AND r.date <= ?3 AND r.available_at <= ?4 "
                    "AND r.superseded_at > ?4 AND NOT EXISTS (SELECT 1 FROM observations o "
                    "WHERE o.series = r.series AND o.date = r.date AND o.available_at <= ?4)")
        for j, name in enumerate(series):
            lo = max(days[0], (starts or {}).get(name, days[0])).isoformat()
            rows = db.execute(sql, [name, lo, days[-1].isoformat(), as_of.isoformat()]).fetchall()
            if not rows:
                continue
            dates, vals = zip(*rows, strict=True)
            row_days = np.array(dates, dtype="datetime64[D]")
            pos = np.searchsorted(day64, row_days)
            ok = (pos < len(day64)) & (day64[np.minimum(pos, len(day64) - 1)] == row_days)
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


def date_range(db: Database, series: str) -> tuple[str | None, str | None]:
    """Return the first and last day (ISO) with an observation of ``series``, or
    ``(None, None)``."""
    lo, hi = db.execute("SELECT MIN(date), MAX(date) FROM observations WHERE series = ?",
                        [series]).fetchone()
    return lo, hi


def values_between(db: Database, series: str, first: str, last: str) -> list[tuple[str, float | None]]:
    """Return the stored observations of ``series`` from ``first`` to ``last`` (ISO days, both
    included) as ``(date, value)`` pairs, oldest first; value in the series' own unit (None when
    stored as null)."""
    cur = db.execute("SELECT date, value FROM observations WHERE series = ? AND date >= ? "
                     "AND date <= ? ORDER BY date", [series, first, last])
    return [(r[0], r[1]) for r in cur]


def current_value(db: Database, series: str, day: str, known_by: str) -> float | None:
    """Return the current stored value of ``series`` on ``day`` (ISO) if it was available by
    ``known_by`` (ISO), in the series' own unit; None when there is none (or it is stored as
    null). Earlier, revised values (``observation_revisions``) are not read."""
    row = db.execute("SELECT value FROM observations WHERE series = ? AND date = ? AND "
                     "available_at <= ?", [series, day, known_by]).fetchone()
    return None if row is None else row[0]


def index_published(db: Database, day: str, exclude: str) -> bool:
    """Return whether any ``index.*`` series other than ``exclude`` has an observation dated
    ``day`` (ISO)."""
    row = db.execute("SELECT 1 FROM observations WHERE series LIKE 'index.%' AND series != ? AND "
                     "date = ? LIMIT 1", [exclude, day]).fetchone()
    return row is not None


def latest_dates(db: Database, series: Sequence[str], first: str, as_of: str) -> dict[str, str | None]:
    """Return, per series of ``series``, its latest observation day (ISO) in [``first``, ``as_of``]
    that was available by ``as_of`` (point-in-time), or None when it has none."""
    out: dict[str, str | None] = {}
    for name in series:
        row = db.execute("SELECT MAX(date) FROM observations WHERE series = ? AND date >= ? AND "
                         "date <= ? AND available_at <= ?", [name, first, as_of, as_of]).fetchone()
        out[name] = row[0] if row else None
    return out


def observed_days(db: Database, series: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Return, per series of ``series``, its observation days (ISO, ascending) and beside each
    the day it became available (``available_at``, ISO): what ``latest_dates`` reads, taken once
    for a run of days over observations that do not change (a replay)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for name in series:
        rows = db.execute("SELECT date, available_at FROM observations WHERE series = ? "
                          "ORDER BY date", [name]).fetchall()
        out[name] = ([r[0] for r in rows], [r[1] for r in rows])
    return out


def last_known(db: Database, series: str, as_of: str, count: int) -> list[tuple[str, float | None]]:
    """Return the last ``count`` observations of ``series`` dated on or before ``as_of`` (ISO) and
    available by then, as ``(date, value)`` pairs, oldest first; value in the series' own unit
    (None when stored as null). The current values: for a chart drawn on ``as_of``."""
    rows = db.execute("SELECT date, value FROM observations WHERE series = ? AND date <= ? AND "
                      "available_at <= ? ORDER BY date DESC LIMIT ?",
                      [series, as_of, as_of, count]).fetchall()
    return [(r[0], r[1]) for r in reversed(rows)]


def coverage(db: Database, series: Sequence[str]) -> list[tuple[str, str | None, str | None, int]]:
    """Return, per name of ``series`` (in that order), ``(series, first day, last day, rows)``:
    the ISO days of its first and last stored observation (None when it has none) and how many
    observations are stored (current values, revisions not counted)."""
    out = []
    for name in series:
        lo, hi, n = db.execute("SELECT MIN(date), MAX(date), COUNT(*) FROM observations WHERE "
                               "series = ?", [name]).fetchone()
        out.append((name, lo, hi, int(n)))
    return out
