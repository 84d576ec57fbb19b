"""Measured skill of rules (``scorecards``): one row per rule, written by ``backtest --record`` and
read by the daily cycle to show beside the headline warning."""

from __future__ import annotations

import datetime as dt
import json

from sqlite_utils import Database

from storage.util import dumps


def _iso(day: dt.date | str) -> str:
    return day.isoformat() if isinstance(day, dt.date) else str(day)


def save(db: Database, rule: str, start: dt.date | str, end: dt.date | str, computed_at: str,
         score: dict) -> int:
    """Store ``rule``'s score over [start, end] measured at ``computed_at`` (UTC ISO timestamp),
    replacing the rule's previous one; an identical row is left untouched. Returns rows changed."""
    before = db.conn.total_changes
    db.execute(
        "INSERT INTO scorecards (rule, start, end, computed_at, score_json) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (rule) DO UPDATE SET start = excluded.start, end = excluded.end, "
        "computed_at = excluded.computed_at, score_json = excluded.score_json "
        "WHERE scorecards.start IS NOT excluded.start OR scorecards.end IS NOT excluded.end "
        "OR scorecards.computed_at IS NOT excluded.computed_at "
        "OR scorecards.score_json IS NOT excluded.score_json",
        [rule, _iso(start), _iso(end), computed_at, dumps(score)])
    return db.conn.total_changes - before


def latest(db: Database, rule: str, ended_before: dt.date | str | None = None) -> dict | None:
    """Return ``rule``'s stored score (its keys, plus ``rule``, ``start``, ``end`` and
    ``computed_at``), or None when it has not been measured. ``ended_before``: only a score
    whose period ended before that day (ISO), so a digest of an earlier day (a replay) never
    shows a score measured on days after it."""
    sql = "SELECT start, end, computed_at, score_json FROM scorecards WHERE rule = ?"
    args: list = [rule]
    if ended_before is not None:
        sql += " AND end < ?"
        args.append(_iso(ended_before))
    row = db.execute(sql, args).fetchone()
    if row is None:
        return None
    start, end, computed_at, score_json = row
    return {**json.loads(score_json), "rule": rule, "start": start, "end": end,
            "computed_at": computed_at}
