"""The run log: one row per cycle (or import) that did something, with status and error."""

from __future__ import annotations

import datetime as dt

from sqlite_utils import Database

COLUMNS = ("id", "job", "as_of", "started", "finished", "status", "error", "detail")


def record(db: Database, job: str, as_of: str, started: str, finished: str, status: str,
           error: str | None = None, detail: str | None = None) -> int:
    """Insert a run row (inside the caller's transaction); return its id."""
    cur = db.execute(
        "INSERT INTO runs (job, as_of, started, finished, status, error, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", [job, as_of, started, finished, status, error, detail])
    return int(cur.lastrowid)


def has_success(db: Database, job: str, as_of: str) -> bool:
    """True when a successful ``job`` run for ``as_of`` is recorded."""
    row = db.execute("SELECT 1 FROM runs WHERE job = ? AND as_of = ? AND status = 'ok' LIMIT 1",
                     [job, as_of]).fetchone()
    return row is not None


def last_success(db: Database, job: str = "cycle",
                 before: dt.date | None = None) -> dt.date | None:
    """Return the latest ``as_of`` (earlier than ``before``, if given) with a successful run."""
    bound = before.isoformat() if before else "9999-12-31"
    row = db.execute("SELECT MAX(as_of) FROM runs WHERE job = ? AND status = 'ok' AND as_of < ?",
                     [job, bound]).fetchone()
    return dt.date.fromisoformat(row[0]) if row and row[0] else None


def recent(db: Database, limit: int = 20) -> list[dict]:
    """Return the latest runs, newest first."""
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY id DESC LIMIT ?", [limit])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur]
