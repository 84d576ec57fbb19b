"""Cached drawdown-risk model fits (risk.drawdown_prob): one row per month in which the model was (re)fitted."""

from __future__ import annotations

import datetime as dt

from sqlite_utils import Database


def latest(db: Database, as_of: dt.date) -> str | None:
    """Return the JSON of the latest fit usable on ``as_of`` (valid_from <= as_of), or None."""
    row = db.execute("SELECT fit_json FROM risk_fits WHERE valid_from <= ? ORDER BY valid_from DESC "
                     "LIMIT 1", [as_of.isoformat()]).fetchone()
    return row[0] if row else None


def save(db: Database, valid_from: dt.date, fit_through: dt.date, fit_json: str) -> int:
    """Store a fit (unchanged rows untouched); return rows changed."""
    before = db.conn.total_changes
    db.execute("INSERT INTO risk_fits (valid_from, fit_through, fit_json) VALUES (?, ?, ?) "
               "ON CONFLICT (valid_from) DO UPDATE SET fit_through = excluded.fit_through, "
               "fit_json = excluded.fit_json WHERE risk_fits.fit_json IS NOT excluded.fit_json",
               [valid_from.isoformat(), fit_through.isoformat(), fit_json])
    return db.conn.total_changes - before
