"""The outbox: notifications queued in the cycle's transaction, delivered afterwards.

A row is *sent* (``sent_at``) as soon as Slack accepted its message: that record is written
first, in its own short transaction, retried while another writer holds the lock
(``RECORD_PATIENCE_SECONDS``), and a sent row is never posted again. The chart that follows in
the message's thread is a second step: ``chart_due`` stays 1 until its outcome is recorded.
"""

from __future__ import annotations

import sqlite3
import time

from sqlite_utils import Database

from storage.util import utc_now

COLUMNS = ("id", "dedup_key", "kind", "as_of", "payload", "created_at", "attempts",
           "next_attempt_at", "last_error", "sent_at", "failed_at", "destination",
           "posted_channel", "posted_ts", "chart_due")
# How long (seconds) the record of a delivery keeps retrying while the database is locked by
# another writer (each try also waits the connection's busy_timeout).
RECORD_PATIENCE_SECONDS = 60.0
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 2.0


def _is_lock(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _write_retrying(db: Database, sql: str, params: list, patience: float | None) -> None:
    """Run one write in its own transaction; while the database is locked, try again with a
    doubling pause (50 ms .. 2 s) for up to ``patience`` seconds (default
    ``RECORD_PATIENCE_SECONDS``), then raise the last sqlite3.OperationalError."""
    limit = RECORD_PATIENCE_SECONDS if patience is None else patience
    deadline = time.monotonic() + limit
    pause = _FIRST_PAUSE
    while True:
        try:
            with db.atomic():
                db.execute(sql, params)
            return
        except sqlite3.OperationalError as exc:
            if not _is_lock(exc) or db.conn.in_transaction or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(_MAX_PAUSE, pause * 2)


def enqueue(db: Database, dedup_key: str, kind: str, as_of: str, payload: str, *,
            now: str | None = None) -> int:
    """Queue ``payload`` under ``dedup_key`` at ``now`` (ISO UTC: its ``created_at`` and first
    ``next_attempt_at``); return rows changed.

    An identical row changes nothing. An unsent row with another payload (the day was re-run
    with revised data) is replaced; a row already sent is never sent again. ``now`` None reads
    the wall clock (for callers that do not pass it yet; the cycle should).
    """
    row = db.execute("SELECT payload, sent_at FROM outbox WHERE dedup_key = ?",
                     [dedup_key]).fetchone()
    if row is not None and (row[0] == payload or row[1] is not None):
        return 0
    now = now or utc_now()
    before = db.conn.total_changes
    if row is None:
        db.execute(
            "INSERT INTO outbox (dedup_key, kind, as_of, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", [dedup_key, kind, as_of, payload, now, now])
    else:
        db.execute("UPDATE outbox SET payload = ?, attempts = 0, next_attempt_at = ?, "
                   "last_error = NULL, failed_at = NULL WHERE dedup_key = ?",
                   [payload, now, dedup_key])
    return db.conn.total_changes - before


def last_digest_queued(db: Database, before_as_of: str) -> str | None:
    """Return when (ISO UTC) the latest digest of a day before ``before_as_of`` was queued, or
    None when there is none."""
    row = db.execute("SELECT MAX(created_at) FROM outbox WHERE kind = 'digest' AND as_of < ?",
                     [before_as_of]).fetchone()
    return row[0] if row else None


def withdraw(db: Database, dedup_key: str) -> int:
    """Delete an unsent row (its day no longer notifies anything); return rows changed."""
    cur = db.execute("DELETE FROM outbox WHERE dedup_key = ? AND sent_at IS NULL", [dedup_key])
    return cur.rowcount


def due(db: Database, now: str) -> list[dict]:
    """Return unsent, not permanently failed rows whose next attempt is due, oldest first."""
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM outbox WHERE sent_at IS NULL AND "
                     "failed_at IS NULL AND next_attempt_at <= ? ORDER BY id", [now])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur]


def last_posted_channel(db: Database, destination: str) -> str | None:
    """Return the channel ID Slack answered for the latest message accepted at ``destination``
    (None when there is none)."""
    row = db.execute("SELECT posted_channel FROM outbox WHERE destination = ? AND posted_channel "
                     "IS NOT NULL ORDER BY sent_at DESC LIMIT 1", [destination]).fetchone()
    return row[0] if row else None


def claim(db: Database, row_id: int, next_attempt_at: str, lease_until: str, now: str) -> bool:
    """Claim a due row for one delivery attempt; return False when another deliverer has it.

    The attempt is counted and the row's next attempt moved to ``lease_until`` in one
    conditional update (the row must still be unsent with the ``next_attempt_at`` just read). If
    the process dies before recording the outcome, the row is attempted again after the lease,
    and ``last_error`` says that the interrupted attempt may have been delivered.
    """
    with db.atomic():
        cur = db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
            "WHERE id = ? AND sent_at IS NULL AND failed_at IS NULL AND next_attempt_at = ?",
            [lease_until, f"interrupted: the attempt started {now} did not finish (it may have "
                          "been delivered)", row_id, next_attempt_at])
    return cur.rowcount == 1


def mark_sent(db: Database, row_id: int, destination: str, now: str, payload: str | None = None,
              note: str | None = None, posted_channel: str | None = None,
              posted_ts: str | None = None, chart_due: bool = False,
              patience: float | None = None) -> None:
    """Record that row ``row_id`` was delivered to ``destination`` at ``now`` (ISO UTC, its
    ``sent_at``; ``payload``: the payload as
    sent, when delivery added to it; ``note``: e.g. a chart that could not be attached;
    ``posted_channel``/``posted_ts``: the message Slack accepted; ``chart_due``: its chart is
    still to be uploaded). One short transaction, retried while the database is locked for up
    to ``patience`` seconds (default ``RECORD_PATIENCE_SECONDS``); raises sqlite3.Error when it
    could not be stored."""
    _write_retrying(
        db, "UPDATE outbox SET sent_at = ?, destination = ?, last_error = ?, "
            "payload = COALESCE(?, payload), posted_channel = ?, posted_ts = ?, chart_due = ? "
            "WHERE id = ?",
        [now, destination, note, payload, posted_channel, posted_ts, int(chart_due), row_id],
        patience)


def charts_due(db: Database, now: str) -> list[dict]:
    """Return sent rows whose chart is still to be uploaded (the process that sent them ended
    before recording the upload) and whose lease has passed, oldest first."""
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM outbox WHERE sent_at IS NOT NULL AND "
                     "chart_due = 1 AND next_attempt_at <= ? ORDER BY id", [now])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur]


def claim_chart(db: Database, row_id: int, next_attempt_at: str, lease_until: str) -> bool:
    """Claim a sent row's pending chart upload (its next attempt moved to ``lease_until``);
    return False when another deliverer has it."""
    with db.atomic():
        cur = db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND chart_due = 1 "
                         "AND next_attempt_at = ?", [lease_until, row_id, next_attempt_at])
    return cur.rowcount == 1


def mark_chart(db: Database, row_id: int, note: str | None, patience: float | None = None) -> None:
    """Record the outcome of a sent row's chart upload (``note``: None when uploaded, else why
    not, kept as the row's ``last_error``); retried while the database is locked, as
    ``mark_sent``."""
    _write_retrying(db, "UPDATE outbox SET chart_due = 0, last_error = ? WHERE id = ?",
                    [note, row_id], patience)


def mark_retry(db: Database, row_id: int, error: str, next_attempt_at: str) -> None:
    """Record a failed (claimed) attempt; try again at ``next_attempt_at`` (retried while the
    database is locked, as ``mark_sent``)."""
    _write_retrying(db, "UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?",
                    [error, next_attempt_at, row_id], None)


def mark_failed(db: Database, row_id: int, error: str, now: str) -> None:
    """Record a permanent failure of a (claimed) attempt at ``now`` (ISO UTC, its
    ``failed_at``): the row is not attempted again (retried while the database is locked, as
    ``mark_sent``). Returns None."""
    _write_retrying(db, "UPDATE outbox SET last_error = ?, failed_at = ? WHERE id = ?",
                    [error, now, row_id], None)


def list_rows(db: Database, include_sent: bool = False) -> list[dict]:
    """Return outbox rows, oldest first (by id: the order they were queued, as ``alerts --all``
    lists events); unsent only unless ``include_sent``."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM outbox"
    if not include_sent:
        sql += " WHERE sent_at IS NULL"
    return [dict(zip(COLUMNS, r, strict=True)) for r in db.execute(sql + " ORDER BY id")]
