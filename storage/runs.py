"""The run log: one row per cycle (or import) that did something, with status and error."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable

from sqlite_utils import Database

from storage.db import immediate, is_locked
from storage.util import inserted_id

COLUMNS = ("id", "job", "as_of", "started", "finished", "status", "error", "detail")


def record(db: Database, job: str, as_of: str, started: str, finished: str, status: str,
           error: str | None = None, detail: str | None = None) -> int:
    """Insert a run row (inside the caller's transaction); return its id."""
    cur = db.execute(
        "INSERT INTO runs (job, as_of, started, finished, status, error, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", [job, as_of, started, finished, status, error, detail])
    return inserted_id(cur)


OK = "ok"  # everything fetched and evaluated
PARTIAL = "partial"  # evaluated; some series could not be fetched (reasons in `error`)
FETCH_FAILED = "fetch_failed"  # evaluated on the stored data; no series could be fetched
FAILED = "failed"  # an error: nothing was written
CLOSED = "closed"  # the live source published no index data for the day: the market was closed
EVALUATED = (OK, PARTIAL, FETCH_FAILED, CLOSED)


FAILURE_RECORD_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds between attempts (plus busy timeouts)


def record_failure(db: Database, job: str, as_of: str, started: str, finished: str, error: str,
                   delays: Iterable[float] = FAILURE_RECORD_DELAYS,
                   sleep: Callable[[float], object] = time.sleep) -> int:
    """Insert a ``failed`` run row in its own IMMEDIATE transaction; return its id.

    The failure being recorded may itself be a lock held by another writer: an attempt that
    finds the database locked (after the connection's busy timeout) is retried after each of
    ``delays`` (seconds), so the row lands once the other writer is done. Raises the last lock
    error when every attempt found the database locked; any other error at once.
    """
    pauses = list(delays)
    for attempt in range(len(pauses) + 1):
        try:
            with immediate(db):
                return record(db, job, as_of, started, finished, FAILED, error=error)
        except Exception as exc:
            if not is_locked(exc) or attempt == len(pauses):
                raise
            sleep(pauses[attempt])
    raise AssertionError("unreachable")


def has_success(db: Database, job: str, as_of: str, statuses: tuple[str, ...] = (OK,)) -> bool:
    """True when a ``job`` run for ``as_of`` with one of ``statuses`` is recorded."""
    marks = ",".join("?" * len(statuses))
    row = db.execute(f"SELECT 1 FROM runs WHERE job = ? AND as_of = ? AND status IN ({marks}) LIMIT 1",
                     [job, as_of, *statuses]).fetchone()
    return row is not None


def last_success(db: Database, job: str = "cycle", before: dt.date | None = None,
                 statuses: tuple[str, ...] = (OK,)) -> dt.date | None:
    """Return the latest ``as_of`` (earlier than ``before``, if given) of a run with one of
    ``statuses`` (default: fully successful runs)."""
    bound = before.isoformat() if before else "9999-12-31"
    marks = ",".join("?" * len(statuses))
    row = db.execute(f"SELECT MAX(as_of) FROM runs WHERE job = ? AND status IN ({marks}) AND as_of < ?",
                     [job, *statuses, bound]).fetchone()
    return dt.date.fromisoformat(row[0]) if row and row[0] else None


def failures_since(db: Database, after: str | None, limit: int = 5) -> tuple[list[dict], int]:
    """Return the first ``limit`` ``failed`` runs of any job started after ``after`` (an ISO UTC
    timestamp; None: all), oldest first, and how many there are in all."""
    bound = after or ""
    total = db.execute("SELECT COUNT(*) FROM runs WHERE status = ? AND started > ?",
                       [FAILED, bound]).fetchone()[0]
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE status = ? AND started > ? "
                     "ORDER BY id LIMIT ?", [FAILED, bound, limit])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur], int(total)


def recent(db: Database, limit: int = 20) -> list[dict]:
    """Return the latest runs, newest first."""
    cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY id DESC LIMIT ?", [limit])
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur]
