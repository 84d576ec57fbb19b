"""Signal values: one row per (signal, trading day); NULL value = not computable that day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlite_utils import Database

SignalRow = tuple[str, str, float | None, str | None]  # signal, date, value, context JSON

_UPSERT = """
INSERT INTO signal_values (signal, date, value, context) VALUES (?, ?, ?, ?)
ON CONFLICT (signal, date) DO UPDATE SET value = excluded.value, context = excluded.context
WHERE signal_values.value IS NOT excluded.value OR signal_values.context IS NOT excluded.context
"""


def upsert(db: Database, rows: Iterable[SignalRow]) -> int:
    """Write signal values, leaving identical rows untouched; return the number changed."""
    before = db.conn.total_changes
    db.conn.executemany(_UPSERT, rows)
    return db.conn.total_changes - before


def history(db: Database, name: str | None = None, since: dt.date | None = None,
            until: dt.date | None = None) -> list[dict]:
    """Return stored values as dicts (signal, date, value, context), by signal then date."""
    where, params = [], []
    if name:
        where.append("signal = ?")
        params.append(name)
    if since:
        where.append("date >= ?")
        params.append(since.isoformat())
    if until:
        where.append("date <= ?")
        params.append(until.isoformat())
    sql = "SELECT signal, date, value, context FROM signal_values"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY signal, date"
    cur = db.execute(sql, params)
    return [dict(zip(("signal", "date", "value", "context"), r, strict=True)) for r in cur]


def latest(db: Database) -> list[dict]:
    """Return each signal's most recent stored row."""
    cur = db.execute(
        "SELECT signal, date, value, context FROM signal_values s WHERE date = "
        "(SELECT MAX(date) FROM signal_values t WHERE t.signal = s.signal) ORDER BY signal"
    )
    return [dict(zip(("signal", "date", "value", "context"), r, strict=True)) for r in cur]


def date_range(db: Database) -> tuple[str | None, str | None]:
    """Return the first and last day (ISO) with any stored signal row, or ``(None, None)``."""
    lo, hi = db.execute("SELECT MIN(date), MAX(date) FROM signal_values").fetchone()
    return lo, hi


def days_between(db: Database, first: str, last: str) -> list[str]:
    """Return the days (ISO, oldest first) with any stored signal row from ``first`` to ``last``
    (ISO days, both included)."""
    cur = db.execute("SELECT DISTINCT date FROM signal_values WHERE date >= ? AND date <= ? "
                     "ORDER BY date", [first, last])
    return [r[0] for r in cur]


def values_between(db: Database, names: Iterable[str], first: str,
                   last: str) -> list[tuple[str, str, float]]:
    """Return the non-null stored values of the signals ``names`` from ``first`` to ``last`` (ISO
    days, both included) as ``(signal, date, value)`` tuples, in no particular order; value in the
    signal's own unit."""
    names = list(names)
    if not names:
        return []
    marks = ",".join("?" * len(names))
    cur = db.execute(f"SELECT signal, date, value FROM signal_values WHERE signal IN ({marks}) "
                     "AND date >= ? AND date <= ? AND value IS NOT NULL", [*names, first, last])
    return [(r[0], r[1], r[2]) for r in cur]


def rows_between(db: Database, names: Iterable[str], first: str,
                 last: str) -> list[SignalRow]:
    """Return the stored rows of the signals ``names`` from ``first`` to ``last`` (ISO days, both
    included) as ``(signal, date, value, context JSON)`` tuples, null values too, in no particular
    order; value in the signal's own unit."""
    names = list(names)
    if not names:
        return []
    marks = ",".join("?" * len(names))
    cur = db.execute(f"SELECT signal, date, value, context FROM signal_values WHERE date >= ? AND "
                     f"date <= ? AND signal IN ({marks})", [first, last, *names])
    return [(r[0], r[1], r[2], r[3]) for r in cur]


def values_on_days(db: Database, days: Iterable[str]) -> dict[str, dict[str, float | None]]:
    """Return day (ISO) -> (signal -> value in the signal's own unit, None when stored as null)
    for the stored rows of ``days`` (ISO), in one read; days without rows are absent."""
    days = sorted(set(days))
    out: dict[str, dict[str, float | None]] = {}
    marks = ",".join("?" * len(days))
    for signal, day, value in db.execute(
            f"SELECT signal, date, value FROM signal_values WHERE date IN ({marks})", days):
        out.setdefault(day, {})[signal] = value
    return out


def moments_through(db: Database, as_of: str) -> list[tuple[str, int, float, float]]:
    """Return, per signal with a non-null value up to ``as_of`` (ISO, included), (signal, number
    of values, mean, mean of the squares), in the signal's own unit (squared for the last)."""
    return [(r[0], r[1], r[2], r[3]) for r in db.execute(
        "SELECT signal, COUNT(value), AVG(value), AVG(value * value) FROM signal_values "
        "WHERE date <= ? AND value IS NOT NULL GROUP BY signal", [as_of])]
