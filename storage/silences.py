"""Silences: mute a rule's (or every rule's) notifications until a date, with a reason."""

from __future__ import annotations

import datetime as dt

from sqlite_utils import Database

from storage.util import inserted_id, utc_now

COLUMNS = ("id", "matcher", "until", "reason", "created_at", "expired_at")
ALL = "*"


def add(db: Database, matcher: str, until: dt.date, reason: str, *, now: str | None = None) -> int:
    """Create a silence at ``now`` (ISO UTC, its ``created_at``; None: the wall clock, for callers
    that do not pass it yet); return its id."""
    with db.atomic():
        cur = db.execute(
            "INSERT INTO silences (matcher, until, reason, created_at) VALUES (?, ?, ?, ?)",
            [matcher, until.isoformat(), reason, now or utc_now()],
        )
        return inserted_id(cur)


def expire(db: Database, silence_id: int, *, now: str | None = None) -> bool:
    """Expire silence ``silence_id`` at ``now`` (ISO UTC; None: the wall clock, for callers that
    do not pass it yet); return False when no active silence has that id."""
    with db.atomic():
        cur = db.execute("UPDATE silences SET expired_at = ? WHERE id = ? AND expired_at IS NULL",
                         [now or utc_now(), silence_id])
        return cur.rowcount == 1


def list_all(db: Database, include_expired: bool = False, on: dt.date | None = None) -> list[dict]:
    """Return silences, oldest first: those in force on ``on`` (not expired and ``until`` on or
    after it; without ``on``: not expired), or every one with ``include_expired``."""
    if on is not None and not include_expired:
        return active_on(db, on)
    sql = f"SELECT {', '.join(COLUMNS)} FROM silences"
    if not include_expired:
        sql += " WHERE expired_at IS NULL"
    return [dict(zip(COLUMNS, r, strict=True)) for r in db.execute(sql + " ORDER BY id")]


IN_FORCE, ENDED, EXPIRED = "in force", "ended", "expired"


def state_on(row: dict, day: dt.date) -> str:
    """Return a silence row's state on ``day``: ``expired`` (ended by ``silence expire``),
    ``ended`` (its ``until`` is before ``day``) or ``in force``."""
    if row["expired_at"] is not None:
        return EXPIRED
    return ENDED if row["until"] < day.isoformat() else IN_FORCE


def active_on(db: Database, day: dt.date) -> list[dict]:
    """Return silences in force on trading day ``day`` (not expired, ``until`` >= day)."""
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM silences WHERE expired_at IS NULL "
                     "AND until >= ? ORDER BY id", [day.isoformat()])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur]


def matching(active: list[dict], rule: str) -> int | None:
    """Return the id of the first silence in ``active`` that covers ``rule``, else None."""
    for s in active:
        if s["matcher"] in (rule, ALL):
            return int(s["id"])
    return None
