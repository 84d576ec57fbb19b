"""The daily stock cross-section (``stock_panel``) and the listed-day counts carried with it
(``panel_listed_days``).

One conflict rule for every writer (the daily cross-section of the cycle, ``import-csv``): a row
written again for the same (date, code) with a different close, total market cap or ST flag
replaces those values and takes the new ``source`` (the source says who wrote the values
stored); an identical row changes nothing (not even the source), so a re-import changes nothing.
``available_at`` stays the first one written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
from sqlite_utils import Database

# (date ISO, code, close yuan | None, total_mv yuan | None, is_st 0/1, available_at ISO, source)
PanelRow = tuple[str, str, float | None, float | None, int, str, str]
COLUMNS = ("date", "code", "close", "total_mv", "is_st", "available_at", "source")

_UPSERT = (
    "INSERT INTO stock_panel (date, code, close, total_mv, is_st, available_at, source) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (date, code) DO UPDATE SET "
    "close = excluded.close, total_mv = excluded.total_mv, is_st = excluded.is_st, "
    "source = excluded.source WHERE stock_panel.close IS NOT excluded.close OR "
    "stock_panel.total_mv IS NOT excluded.total_mv OR stock_panel.is_st IS NOT excluded.is_st")


def upsert(db: Database, rows: Iterable[PanelRow]) -> int:
    """Write ``rows`` (``COLUMNS`` order) under the module's conflict rule; return the number of
    rows inserted or changed. Call inside the caller's transaction."""
    before = db.conn.total_changes
    db.conn.executemany(_UPSERT, rows)
    return db.conn.total_changes - before


def on_day(db: Database, day: str) -> pd.DataFrame:
    """Return the stored cross-section of ``day`` (ISO) as columns code, close (yuan), total_mv
    (yuan), is_st (0/1); empty when nothing is stored for that day."""
    rows = db.execute("SELECT code, close, total_mv, is_st FROM stock_panel WHERE date = ?",
                      [day]).fetchall()
    return pd.DataFrame(rows, columns=["code", "close", "total_mv", "is_st"])


def traded_days_through(db: Database, day: str) -> dict[str, int]:
    """Return, per stock code, the number of stored panel days up to ``day`` (ISO, included)
    with a close (trading days)."""
    return dict(db.execute("SELECT code, COUNT(*) FROM stock_panel WHERE date <= ? AND close IS "
                           "NOT NULL GROUP BY code", [day]))


def caps_between(db: Database, first: str, last: str) -> dict[str, float]:
    """Return each stock's latest stored total market cap (yuan) dated from ``first`` to ``last``
    (ISO days, both included); stocks without one are absent."""
    rows = db.execute("SELECT code, total_mv FROM stock_panel WHERE date <= ? AND date >= ? AND "
                      "total_mv IS NOT NULL ORDER BY date", [last, first]).fetchall()
    return dict(rows)  # ordered by date: the last cap per code wins


def listed_days(db: Database, as_of: str) -> dict[str, int]:
    """Return the listed-day counts (trading days, by code) stored for ``as_of`` (ISO); empty
    when none are stored."""
    return dict(db.execute("SELECT code, days FROM panel_listed_days WHERE as_of = ?", [as_of]))


def store_listed_days(db: Database, as_of: str, counts: Mapping[str, int], keep_from: str) -> int:
    """Store the listed-day counts of ``as_of`` (ISO; trading days by code; a changed count
    replaces the stored one) and delete the counts of days before ``keep_from`` (ISO); return
    the rows changed. Call inside the caller's transaction."""
    before = db.conn.total_changes
    db.conn.executemany("INSERT INTO panel_listed_days (code, as_of, days) VALUES (?, ?, ?) ON "
                        "CONFLICT (code, as_of) DO UPDATE SET days = excluded.days WHERE "
                        "panel_listed_days.days IS NOT excluded.days",
                        [(c, as_of, int(d)) for c, d in counts.items()])
    db.execute("DELETE FROM panel_listed_days WHERE as_of < ?", [keep_from])
    return db.conn.total_changes - before


def coverage(db: Database) -> tuple[str | None, str | None, int, int]:
    """Return ``(first day, last day, rows, stocks)`` of the stored panel (ISO days; None when
    it is empty)."""
    lo, hi, n, stocks = db.execute("SELECT MIN(date), MAX(date), COUNT(*), COUNT(DISTINCT code) "
                                   "FROM stock_panel").fetchone()
    return lo, hi, int(n), int(stocks)
