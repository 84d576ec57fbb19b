"""Delivering the outbox: each due row is sent, then marked sent (or retried later)."""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlite_utils import Database

from monitor.notify import DeliveryError, Notifier
from storage import outbox

log = logging.getLogger("regime_monitor.delivery")
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Return the wait before the next attempt after ``attempts`` failures (seconds).

    Exponential (30 s, 60 s, 120 s ... capped at one hour); a server's Retry-After wins when
    longer.
    """
    wait = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return max(wait, retry_after or 0.0)


def deliver_due(db: Database, notifier: Notifier, now: dt.datetime | None = None) -> int:
    """Send every due outbox row through ``notifier``; return how many were delivered."""
    now = now or dt.datetime.now(dt.UTC)
    sent = 0
    for row in outbox.due(db, now.isoformat(timespec="seconds")):
        try:
            notifier.send(json.loads(row["payload"]), row["dedup_key"])
        except DeliveryError as exc:
            if exc.permanent:
                outbox.mark_failed(db, row["id"], str(exc))
                log.error("outbox %s: permanent delivery failure: %s", row["dedup_key"], exc)
            else:
                wait = backoff_seconds(row["attempts"] + 1, exc.retry_after)
                nxt = (now + dt.timedelta(seconds=wait)).isoformat(timespec="seconds")
                outbox.mark_retry(db, row["id"], str(exc), nxt)
                log.warning("outbox %s: delivery failed (%s), retry at %s",
                            row["dedup_key"], exc, nxt)
            continue
        outbox.mark_sent(db, row["id"], notifier.destination)
        sent += 1
    return sent
