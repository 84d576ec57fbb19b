"""Alert state per rule and the event log of every transition."""

from __future__ import annotations

import datetime as dt

from sqlite_utils import Database

ALERT_COLUMNS = ("rule", "severity", "state", "state_json", "prev_state_json", "last_evaluated",
                 "since", "last_values")
EVENT_COLUMNS = ("id", "rule", "date", "event", "from_state", "to_state", "severity",
                 "signal_values", "silenced_by", "notified")


def get_all(db: Database) -> dict[str, dict]:
    """Return the current alert row per rule name."""
    cur = db.execute(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts")
    return {r[0]: dict(zip(ALERT_COLUMNS, r, strict=True)) for r in cur}


def last_evaluated(db: Database) -> dt.date | None:
    """Return the latest day any alert was evaluated for, or None when none was."""
    row = db.execute("SELECT MAX(last_evaluated) FROM alerts").fetchone()
    return dt.date.fromisoformat(row[0]) if row and row[0] else None


_SAVE = (f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES "
         f"({', '.join('?' * len(ALERT_COLUMNS))}) ON CONFLICT (rule) DO UPDATE SET "
         f"{', '.join(f'{c} = excluded.{c}' for c in ALERT_COLUMNS[1:])} WHERE "
         f"{' OR '.join(f'alerts.{c} IS NOT excluded.{c}' for c in ALERT_COLUMNS[1:])}")


def save(db: Database, row: dict) -> int:
    """Insert or update one alert row unless identical; return rows changed (0 or 1)."""
    before = db.conn.total_changes
    db.execute(_SAVE, [row[c] for c in ALERT_COLUMNS])
    return db.conn.total_changes - before


def events_on(db: Database, date: str) -> list[dict]:
    """Return the events recorded for trading day ``date``, in insertion order."""
    cur = db.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM alert_events WHERE date = ? "
                     "ORDER BY id", [date])
    return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in cur]


def replace_events(db: Database, date: str, events: list[dict]) -> int:
    """Make ``date``'s events exactly ``events`` (ids aside); return rows changed.

    Identical content changes nothing, so re-running a cycle is a no-op.
    """
    fields = EVENT_COLUMNS[1:]
    existing = [{k: e[k] for k in fields} for e in events_on(db, date)]
    wanted = [{k: e[k] for k in fields} for e in events]
    if existing == wanted:
        return 0
    before = db.conn.total_changes
    db.execute("DELETE FROM alert_events WHERE date = ?", [date])
    for e in wanted:
        db.execute(f"INSERT INTO alert_events ({', '.join(fields)}) VALUES "
                   f"({', '.join('?' * len(fields))})", [e[k] for k in fields])
    return db.conn.total_changes - before


def events(db: Database, since: str | None = None, rule: str | None = None) -> list[dict]:
    """Return events (oldest first), optionally from ``since`` and for one ``rule``."""
    where, params = [], []
    if since:
        where.append("date >= ?")
        params.append(since)
    if rule:
        where.append("rule = ?")
        params.append(rule)
    sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM alert_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    cur = db.execute(sql + " ORDER BY date, id", params)
    return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in cur]


def events_through(db: Database, last: str) -> list[dict]:
    """Return every event dated ``last`` (an ISO day) or earlier, oldest first (by date, then id),
    as dicts of :data:`EVENT_COLUMNS`."""
    cur = db.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM alert_events WHERE date <= ? "
                     "ORDER BY date, id", [last])
    return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in cur]
