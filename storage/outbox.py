"""The outbox: notifications queued in the cycle's transaction, delivered afterwards."""

from __future__ import annotations

from sqlite_utils import Database

from storage.util import utc_now

COLUMNS = ("id", "dedup_key", "kind", "as_of", "payload", "created_at", "attempts",
           "next_attempt_at", "last_error", "sent_at", "failed_at", "destination")


def enqueue(db: Database, dedup_key: str, kind: str, as_of: str, payload: str) -> int:
    """Queue ``payload`` under ``dedup_key``; return rows changed.

    An identical row changes nothing. An unsent row with another payload (the day was re-run
    with revised data) is replaced; a row already sent is never sent again.
    """
    row = db.execute("SELECT payload, sent_at FROM outbox WHERE dedup_key = ?",
                     [dedup_key]).fetchone()
    if row is not None and (row[0] == payload or row[1] is not None):
        return 0
    now = utc_now()
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


def withdraw(db: Database, dedup_key: str) -> int:
    """Delete an unsent row (its day no longer notifies anything); return rows changed."""
    cur = db.execute("DELETE FROM outbox WHERE dedup_key = ? AND sent_at IS NULL", [dedup_key])
    return cur.rowcount


def due(db: Database, now: str) -> list[dict]:
    """Return unsent, not permanently failed rows whose next attempt is due, oldest first."""
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM outbox WHERE sent_at IS NULL AND "
                     "failed_at IS NULL AND next_attempt_at <= ? ORDER BY id", [now])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur]


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


def mark_sent(db: Database, row_id: int, destination: str, payload: str | None = None,
              note: str | None = None) -> None:
    """Record that row ``row_id`` was delivered to ``destination`` (``payload``: the payload as
    sent, when delivery added to it; ``note``: e.g. a chart that could not be attached)."""
    with db.atomic():
        db.execute("UPDATE outbox SET sent_at = ?, destination = ?, last_error = ?, "
                   "payload = COALESCE(?, payload) WHERE id = ?",
                   [utc_now(), destination, note, payload, row_id])


def mark_retry(db: Database, row_id: int, error: str, next_attempt_at: str) -> None:
    """Record a failed (claimed) attempt; try again at ``next_attempt_at``."""
    with db.atomic():
        db.execute("UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?",
                   [error, next_attempt_at, row_id])


def mark_failed(db: Database, row_id: int, error: str) -> None:
    """Record a permanent failure of a (claimed) attempt: the row is not attempted again."""
    with db.atomic():
        db.execute("UPDATE outbox SET last_error = ?, failed_at = ? WHERE id = ?",
                   [error, utc_now(), row_id])


def list_rows(db: Database, include_sent: bool = False) -> list[dict]:
    """Return outbox rows (newest first); unsent only unless ``include_sent``."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM outbox"
    if not include_sent:
        sql += " WHERE sent_at IS NULL"
    return [dict(zip(COLUMNS, r, strict=True)) for r in db.execute(sql + " ORDER BY id DESC")]
