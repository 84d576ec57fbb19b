"""Observations: (series, date, value, available_at, source). Every read is point-in-time."""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import sqlite3
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

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
    # rowcount: the rows the statement inserted or changed (sqlite3_changes), not the
    # trigger's copies of replaced values
    params = ((s, d, v, a, src, now, revised_from) for s, d, v, a, src in rows)
    return db.conn.executemany(_UPSERT, params).rowcount


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


def known_on_sql(table: str, revisions: str | None, key: str, value: str, known: str,
                 where: str = "") -> str:
    """Return the SQL query of the ``(key, date, value)`` rows of ``table`` as known on the ISO
    day bound to the parameter ``known`` (e.g. ``"?4"``): a row's current value when its
    ``available_at <= known``, else the earlier value kept in ``revisions`` (None: no such table)
    that was known then and not superseded yet; absent when neither. ``where``: conditions on the
    columns ``key`` and ``date`` (unqualified), applied to both tables. The one point-in-time rule
    of every table with revisions (observations, product NAVs)."""
    cond = f" AND {where}" if where else ""
    sql = f"SELECT {key}, date, {value} FROM {table} WHERE available_at <= {known}{cond}"
    if revisions is not None:  # earlier values, when the current one was not known yet
        sql += (f" UNION ALL SELECT {key}, date, {value} FROM {revisions} r WHERE available_at <= "
                f"{known} AND superseded_at > {known}{cond} AND NOT EXISTS (SELECT 1 FROM {table} "
                f"o WHERE o.{key} = r.{key} AND o.date = r.date AND o.available_at <= {known})")
    return sql


def _point_in_time_sql(db: Database) -> str:
    """The query of one series' (series, date, value) rows dated in [?2, ?3] as known on ?4 (see
    ``load_frame``)."""
    return known_on_sql("observations", REVISIONS if has_revisions(db) else None, "series", "value",
                        "?4", "series = ?1 AND date >= ?2 AND date <= ?3")


def _read_values(db: Database, series: Sequence[str], days: Sequence[dt.date], as_of: dt.date,
                 starts: Mapping[str, dt.date] | None = None,
                 position: Mapping[str, int] | None = None) -> np.ndarray:
    """The values of ``load_frame`` as a (days x series) float array (NaN: missing).
    ``position``: each day's ISO date -> its row (built here when not given)."""
    values = np.full((len(days), len(series)), np.nan)
    if not len(series) or not len(days):
        return values
    # a row's position from its ISO date by one dict probe (days not in ``days`` are dropped)
    if position is None:
        position = day_positions(days)
    sql, last, known = _point_in_time_sql(db), days[-1].isoformat(), as_of.isoformat()
    for j, name in enumerate(series):
        lo = max(days[0], (starts or {}).get(name, days[0])).isoformat()
        rows = db.conn.execute(sql, [name, lo, last, known]).fetchall()
        if not rows:
            continue
        pos = np.fromiter([position.get(r[1], -1) for r in rows], dtype=np.int64, count=len(rows))
        vals = np.fromiter([r[2] for r in rows], dtype=np.float64, count=len(rows))
        ok = pos >= 0
        values[pos[ok], j] = vals[ok]
    return values


def load_frame(db: Database, series: Sequence[str], days: Sequence[dt.date], as_of: dt.date,
               starts: Mapping[str, dt.date] | None = None) -> pd.DataFrame:
    """Return a wide float frame (index = ``days`` as Timestamps, columns = ``series``).

    Only observations dated within ``days`` (from ``starts[series]`` when given, so each series
    is read only as far back as needed) and with ``available_at <= as_of`` are used; a value
    revised after ``as_of`` is read as it was known then (``observation_revisions``). Missing
    values are NaN. Dates that are not in ``days`` (e.g. weekend make-up days) are dropped.
    """
    values = _read_values(db, series, days, as_of, starts)
    return pd.DataFrame(values, index=day_index(days), columns=list(series))


def day_index(days: Sequence[dt.date]) -> pd.DatetimeIndex:
    """Return ``days`` as the frames' index: ``pd.to_datetime(days)`` (the same unit) named
    "date", built from the days' ordinals (no parsing). A new object each time (its name may be
    set), over the kept data."""
    return _day_lookup(days)[1].copy()


def day_positions(days: Sequence[dt.date]) -> Mapping[str, int]:
    """Return each day's ISO date -> its position in ``days`` (do not modify it)."""
    return _day_lookup(days)[0]


_DAY_LOOKUPS: list[tuple[list[dt.date], dict[str, int], pd.DatetimeIndex]] = []
DAY_LOOKUPS = 8
"""How many recent day lists ``_day_lookup`` keeps (a cycle asks for a few spans of days)."""


def _day_lookup(days: Sequence[dt.date]) -> tuple[dict[str, int], pd.DatetimeIndex]:
    """(ISO date -> position, the frames' index) of ``days``, kept for the last few lists asked
    for: a list equal to a kept one (compared day by day, so a calendar that changed is not
    mistaken for it) reuses its lookups."""
    days = list(days)
    for kept, position, index in _DAY_LOOKUPS:
        if len(kept) == len(days) and kept == days:
            return position, index
    position = {d.isoformat(): i for i, d in enumerate(days)}
    day64 = (np.fromiter((d.toordinal() for d in days), dtype=np.int64, count=len(days))
             - _EPOCH_ORDINAL).astype("datetime64[D]")
    index = pd.DatetimeIndex(day64.astype(_day_dtype()), name="date")
    _DAY_LOOKUPS.insert(0, (days, position, index))
    del _DAY_LOOKUPS[DAY_LOOKUPS:]
    return position, index


@functools.cache
def _day_dtype() -> np.dtype:
    """The dtype ``pd.to_datetime`` gives a list of dates (its unit depends on pandas' version)."""
    return pd.to_datetime([dt.date(2000, 1, 3)]).dtype


# --- the values already read on a connection, kept for the next day's read (the daily cycle) ---
#
# ``load_frame_cached`` returns exactly what ``load_frame`` returns, from the values a previous
# call on the same ``Database`` read (as known on that call's ``as_of``), brought up to date:
# - a cell's value as known on a day depends only on the rows of its (series, date) in
#   ``observations`` and ``observation_revisions``. TEMP triggers on both tables report the
#   (series, date) of every row this connection inserts, updates or deletes (whatever the SQL:
#   an import, a revision, a raw statement) to a Python set; those cells are read again (a
#   write that was rolled back is read again too, which is harmless);
# - moving to a later ``as_of``, the cells with a value or revision that became known in between
#   are read again (found by the ``available_at`` index), and the new days are read;
# - another connection's commit (``PRAGMA data_version`` changed), a change of the database's
#   schema (``schema_version``: a table dropped and created again), a rolled-back transaction in
#   which a read was made (its stamp, a TEMP table named by a token used once, went with it) or
#   more than ``MAX_CELLS`` cells to read again: everything is read afresh.
# The stamps and triggers are schema statements on the connection's TEMP database: they change
# no row (``total_changes`` counts none), nothing in the database file.

_STAMP = "rm_known_stamp"
_TOUCHED_FUNC = "rm_known_touched"
MAX_CELLS = 2000
"""Above this many cells to read again (a large import on the connection), read everything."""
_TOKENS = itertools.count(1)


@dataclass
class _Known:
    """Values of ``series`` on ``days`` as known on ``as_of`` (rows before ``first[j]`` not read)."""

    token: int
    version: tuple[int, int]
    as_of: dt.date
    days: list[dt.date]
    position: dict[str, int]
    series: list[str]
    values: np.ndarray  # (days x series), NaN: missing
    first: list[int]  # per series, the first row read
    reads: dict[str, int] = field(default_factory=lambda: {"full": 0, "kept": 0, "cells": 0})
    index: pd.DatetimeIndex | None = None  # day_index(days)


_KNOWN: weakref.WeakKeyDictionary[Database, _Known] = weakref.WeakKeyDictionary()
_TOUCHED: weakref.WeakKeyDictionary[Database, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


def _install_triggers(db: Database) -> None:
    """Register the touched-cells function and create the TEMP triggers that call it on ``db``'s
    connection (idempotent)."""
    conn = db.conn
    touched = _TOUCHED.setdefault(db, set())

    def touch(series: str, date: str) -> None:
        if len(touched) <= MAX_CELLS:  # beyond, everything is read afresh: no need to remember
            touched.add((series, date))

    conn.create_function(_TOUCHED_FUNC, 2, touch)
    tables = ["observations"] + ([REVISIONS] if has_revisions(db) else [])
    for table in tables:
        for event, rows in (("INSERT", ["NEW"]), ("UPDATE", ["OLD", "NEW"]), ("DELETE", ["OLD"])):
            body = " ".join(f"SELECT {_TOUCHED_FUNC}({r}.series, {r}.date);" for r in rows)
            conn.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS {_STAMP}_{table}_{event.lower()} "
                         f"AFTER {event} ON main.{table} BEGIN {body} END")


def _stamps(db: Database) -> list[str]:
    return [r[0] for r in db.conn.execute(
        "SELECT name FROM temp.sqlite_master WHERE type = 'table' AND name LIKE ?",
        [f"{_STAMP}_%"])]


def _stamp(db: Database) -> int:
    """Replace the stamp (a TEMP table named by a fresh token) and forget the touched cells;
    return the token."""
    token = next(_TOKENS)
    for name in _stamps(db):
        db.conn.execute(f"DROP TABLE temp.{name}")
    db.conn.execute(f"CREATE TEMP TABLE {_STAMP}_{token} (x)")
    _TOUCHED.setdefault(db, set()).clear()
    return token


def _data_version(db: Database) -> tuple[int, int]:
    """(``PRAGMA data_version``: changes when another connection commits, the main database's
    ``schema_version``: changes when any connection, this one too, alters its schema, e.g. drops
    and creates ``observations`` again, which takes the triggers with it)."""
    conn = db.conn
    return (conn.execute("PRAGMA data_version").fetchone()[0],
            conn.execute("PRAGMA main.schema_version").fetchone()[0])


def _touched_since(db: Database, state: _Known, version: tuple[int, int]
                   ) -> set[tuple[str, str]] | None:
    """The (series, ISO date) cells this connection wrote since ``state`` was stamped, or None
    when ``state`` no longer stands for the database (another connection committed: ``version``,
    the database's ``_data_version`` now, differs from the one before ``state`` was read; the
    stamp went with a rolled-back transaction; or too many cells)."""
    if _stamps(db) != [f"{_STAMP}_{state.token}"] or version != state.version:
        return None
    cells = _TOUCHED.get(db, set())
    return None if len(cells) > MAX_CELLS else set(cells)


def _became_known(db: Database, after: dt.date, through: dt.date) -> set[tuple[str, str]]:
    """The (series, ISO date) cells whose value as known may differ between ``after`` and
    ``through``: a current or earlier value available in (after, through], or an earlier value
    superseded then. Found by the ``available_at`` index (the rows of those days only), whatever
    the length of the history."""
    args = [after.isoformat(), through.isoformat()]
    sql = "SELECT series, date FROM observations WHERE available_at > ?1 AND available_at <= ?2"
    if has_revisions(db):
        sql += (f" UNION SELECT series, date FROM {REVISIONS} WHERE (available_at > ?1 AND "
                "available_at <= ?2) OR (superseded_at > ?1 AND superseded_at <= ?2)")
    return {(r[0], r[1]) for r in db.conn.execute(sql, args)}


def _reread(db: Database, state: _Known, cells: set[tuple[str, str]]) -> None:
    """Read the kept ``cells`` again, as known on ``state.as_of`` (cells not kept are skipped)."""
    column = {name: j for j, name in enumerate(state.series)}
    for name, day in cells:
        i, j = state.position.get(day), column.get(name)
        if i is None or j is None or i < state.first[j]:
            continue
        state.values[i, j] = _read_values(db, [name], [state.days[i]], state.as_of)[0, 0]
        state.reads["cells"] += 1


def _extend_days(db: Database, state: _Known, days: list[dt.date]) -> None:
    """Append ``days`` (the calendar days after ``state.days``) to ``state``, read as known on
    ``state.as_of``."""
    new = _read_values(db, state.series, days, state.as_of)
    state.values = np.vstack([state.values, new])
    if state.index is not None:
        state.index = state.index.append(day_index(days))
    for d in days:
        state.position[d.isoformat()] = len(state.days)
        state.days.append(d)


def _add_rows(db: Database, state: _Known, name: str, row: int) -> None:
    """Make ``name`` known in ``state`` from row ``row`` on (a new column, or earlier rows of a
    kept one), read as known on ``state.as_of``."""
    row = min(row, len(state.days))
    if name not in state.series:
        state.series.append(name)
        state.values = np.hstack([state.values, np.full((len(state.days), 1), np.nan)])
        state.first.append(len(state.days))
    j = state.series.index(name)
    if row < state.first[j]:
        state.values[row:state.first[j], j] = _read_values(
            db, [name], state.days[row:state.first[j]], state.as_of)[:, 0]
        state.first[j] = row


def load_frame_cached(db: Database, series: Sequence[str], days: Sequence[dt.date],
                      as_of: dt.date, starts: Mapping[str, dt.date] | None = None) -> pd.DataFrame:
    """Return ``load_frame(db, series, days, as_of, starts)`` (the same frame, tested in
    tests/test_cycle_incremental.py) from the values an earlier call on ``db`` kept, brought up
    to date as the comment above says; or read afresh, and kept for the next call.

    ``days``: consecutive trading days (``TradingCalendar.days``), as every caller passes. A call
    for an ``as_of`` before the kept one reads afresh without touching what is kept.
    """
    days = list(days)
    state = _KNOWN.get(db)
    if not days or not series or (state is not None and as_of < state.as_of):
        return load_frame(db, series, days, as_of, starts)
    rows = {name: _row_of(days, (starts or {}).get(name, days[0])) for name in series}
    cells: set[tuple[str, str]] | None = None  # the kept cells to read again
    # taken before anything is read: another connection's commit during the reads below (they
    # are separate statements, each seeing the latest commit) changes it, and the next call
    # reads afresh instead of keeping values read before that commit as current
    version = _data_version(db)
    if state is not None and _continues(state, days):
        cells = _touched_since(db, state, version)
        if cells is not None and as_of > state.as_of:
            cells |= _became_known(db, state.as_of, as_of)
        if cells is not None and len(cells) > MAX_CELLS:
            cells = None
    if state is None or cells is None:
        try:
            _install_triggers(db)
        except sqlite3.Error:  # a connection that cannot create TEMP objects: nothing kept
            return load_frame(db, series, days, as_of, starts)
        position = dict(day_positions(days))  # kept and extended: a copy
        names = list(dict.fromkeys(series))  # each series once (a caller may repeat one)
        values = _read_values(db, names, days, as_of, starts, position)
        old, state = state, _Known(0, (0, 0), as_of, days, position, names, values,
                                   [rows[n] for n in names])
        if old is not None:  # the counts go on
            state.reads = old.reads
        state.reads["full"] += 1
        _KNOWN[db] = state
    else:
        state.reads["kept"] += 1
        state.as_of = as_of
        _reread(db, state, cells)
        if days[-1] > state.days[-1]:
            _extend_days(db, state, days[days.index(state.days[-1]) + 1:])
        i0 = state.position[days[0].isoformat()]
        for name in series:
            _add_rows(db, state, name, i0 + rows[name])
    state.version, state.token = version, _stamp(db)
    i0 = state.position[days[0].isoformat()]
    out = state.values[i0:i0 + len(days)][:, [state.series.index(n) for n in series]].copy()
    for k, name in enumerate(series):  # nothing before the series' start, as load_frame
        out[:rows[name], k] = np.nan
    if state.index is None:
        state.index = day_index(state.days)
    return pd.DataFrame(out, index=state.index[i0:i0 + len(days)], columns=list(series))


def _continues(state: _Known, days: list[dt.date]) -> bool:
    """True when ``days`` start within ``state``'s days and agree with them where both have days
    (so the kept rows can serve them, extended by the later days)."""
    i0 = state.position.get(days[0].isoformat())
    if i0 is None:
        return False
    overlap = state.days[i0:i0 + len(days)]
    return overlap == days[:len(overlap)]


def _row_of(days: list[dt.date], start: dt.date) -> int:
    """The first row of ``days`` on or after ``start`` (``len(days)`` when none)."""
    return bisect.bisect_left(days, start)


def kept_reads(db: Database) -> dict[str, object] | None:
    """Return what ``load_frame_cached`` keeps for ``db``: the day it is known on, its span of
    days and series, how many calls read afresh ("full") or from it ("kept") and how many kept
    cells were read again ("cells"); None when nothing is kept."""
    state = _KNOWN.get(db)
    if state is None:
        return None
    return {"as_of": state.as_of, "first": state.days[0], "last": state.days[-1],
            "series": list(state.series), **state.reads}

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
    that was available by ``as_of`` (point-in-time: a day whose value was revised later counts from
    its first value's ``available_at``, kept in ``observation_revisions``), or None when it has
    none."""
    out: dict[str, str | None] = {}
    for name in series:
        row = db.execute("SELECT MAX(date) FROM observations WHERE series = ? AND date >= ? AND "
                         "date <= ? AND available_at <= ?", [name, first, as_of, as_of]).fetchone()
        latest = row[0] if row else None
        # a later day known then but revised since: its earlier value (only days after `latest`
        # matter, a short range of the revisions' (series, date) index)
        after = ("date > ?", latest) if latest is not None else ("date >= ?", first)
        row = db.execute(f"SELECT MAX(date) FROM observation_revisions WHERE series = ? AND "
                         f"{after[0]} AND date <= ? AND available_at <= ?",
                         [name, after[1], as_of, as_of]).fetchone()
        out[name] = row[0] if row and row[0] is not None else latest
    return out


def observed_days(db: Database, series: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Return, per series of ``series``, its observation days (ISO, ascending) and beside each
    the day it first became available (the earliest ``available_at`` of its value and of the
    values it replaced): what ``latest_dates`` reads, taken once for a run of days over
    observations that do not change (a replay)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for name in series:
        rows = db.execute("SELECT date, MIN(available_at) FROM (SELECT date, available_at FROM "
                          "observations WHERE series = ? UNION ALL SELECT date, available_at FROM "
                          "observation_revisions WHERE series = ?) GROUP BY date ORDER BY date",
                          [name, name]).fetchall()
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
