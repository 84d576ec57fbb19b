"""Episodes: micro-cap drawdowns and rotation spells, one row per (kind, start)."""

from __future__ import annotations

from sqlite_utils import Database

COLUMNS = ("id", "kind", "start", "peak", "trough", "end", "depth", "detail")
_FIELDS = COLUMNS[1:]


def latest(db: Database, kind: str) -> dict | None:
    """Return the latest stored episode of ``kind`` (by start), or None."""
    row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM episodes WHERE kind = ? ORDER BY start DESC "
                     "LIMIT 1", [kind]).fetchone()
    return dict(zip(COLUMNS, row, strict=True)) if row else None


def replace_kind(db: Database, kind: str, rows: list[dict], since: str | None = None) -> int:
    """Make the stored episodes of ``kind`` (those starting on or after ``since``, if given)
    exactly ``rows``; return rows changed.

    Unchanged episodes are left alone (a re-run changes nothing); an episode that grew (a later
    trough, a recovery) is updated in place; one that no longer exists is deleted.
    """
    before = db.conn.total_changes
    existing = {r[0]: r[1:] for r in db.execute(
        "SELECT start, peak, trough, end, depth, detail FROM episodes WHERE kind = ? AND start >= ?",
        [kind, since or ""])}
    wanted = {r["start"]: (r["peak"], r["trough"], r["end"], r["depth"], r["detail"]) for r in rows}
    for start in set(existing) - set(wanted):
        db.execute("DELETE FROM episodes WHERE kind = ? AND start = ?", [kind, start])
    for start, values in wanted.items():
        if existing.get(start) == values:
            continue
        db.execute(
            "INSERT INTO episodes (kind, start, peak, trough, end, depth, detail) VALUES "
            "(?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, start) DO UPDATE SET peak = excluded.peak, "
            "trough = excluded.trough, end = excluded.end, depth = excluded.depth, "
            "detail = excluded.detail", [kind, start, *values])
    return db.conn.total_changes - before


def list_episodes(db: Database, kind: str | None = None) -> list[dict]:
    """Return episodes ordered by start (all kinds, or one)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM episodes"
    params: list = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    return [dict(zip(COLUMNS, r, strict=True)) for r in db.execute(sql + " ORDER BY start, kind",
                                                                    params)]
