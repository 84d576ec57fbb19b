"""Cached model fits, one row per month in which a model was (re)fitted: the regime model
(``regime_fits``) and the drawdown-risk model (``risk_fits``)."""

from __future__ import annotations

import datetime as dt

from sqlite_utils import Database

TABLES = {"regime": "regime_fits", "risk": "risk_fits"}


def latest(db: Database, as_of: dt.date, model: str = "regime") -> str | None:
    """Return the JSON of ``model``'s latest fit usable on ``as_of`` (valid_from <= as_of), or None."""
    table = TABLES[model]
    row = db.execute(f"SELECT fit_json FROM {table} WHERE valid_from <= ? ORDER BY valid_from DESC "
                     "LIMIT 1", [as_of.isoformat()]).fetchone()
    return row[0] if row else None


def save(db: Database, valid_from: dt.date, fit_through: dt.date, fit_json: str,
         model: str = "regime") -> int:
    """Store a fit of ``model`` (unchanged rows untouched); return rows changed."""
    table = TABLES[model]
    before = db.conn.total_changes
    db.execute(f"INSERT INTO {table} (valid_from, fit_through, fit_json) VALUES (?, ?, ?) "
               "ON CONFLICT (valid_from) DO UPDATE SET fit_through = excluded.fit_through, "
               f"fit_json = excluded.fit_json WHERE {table}.fit_json IS NOT excluded.fit_json",
               [valid_from.isoformat(), fit_through.isoformat(), fit_json])
    return db.conn.total_changes - before
