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
