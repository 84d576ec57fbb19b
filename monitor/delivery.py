"""Delivering the outbox: each due row is claimed, sent, then marked sent (or retried later).

The outbox is the single place that decides about retries (notifiers make one attempt each):
- a transient failure (HTTP 5xx, a connection error, an unknown Slack error) is retried with
  exponential backoff: ``retry_base_seconds`` x 2^(attempts-1), capped at ``retry_max_seconds``;
- HTTP 429 waits exactly what the server's ``Retry-After`` asks (at least one second);
- a permanent failure (``invalid_auth``, ``channel_not_found``, ``not_in_channel``, a webhook's
  404 ...) is stored with its reason, logged once, and never attempted again.

Before sending, a row is *claimed*: its attempt is counted and its next attempt moved a lease
(``CLAIM_SECONDS``) ahead, in one conditional update. A second deliverer on the same database
(``once`` while the daemon runs) therefore skips it, and a process that dies between Slack
accepting a message and ``mark_sent`` leaves the row queued, with a note, for a retry after the
lease. That retry is the only possible duplicate; it carries the same dedup key in its metadata.

Before sending, delivery adds to each alert the closest historical episode (computed here, from
the database, for the digest's day) and, for a notifier that uploads charts, prepares the chart
(rendered only after the message was accepted).
The payload as sent is what ``mark_sent`` stores.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from monitor import digest
from monitor.config import COMPOSITE, NotifyConfig
from monitor.notify import DeliveryError, Notifier, redact
from storage import episodes, outbox
from storage.util import dumps

log = logging.getLogger("regime_monitor.delivery")
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
CLAIM_SECONDS = 300  # longer than one send can take (message + chart upload, with timeouts)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = BASE_BACKOFF_SECONDS
    max_seconds: float = MAX_BACKOFF_SECONDS

    @classmethod
    def from_config(cls, notify: NotifyConfig) -> RetryPolicy:
        return cls(notify.retry_base_seconds, notify.retry_max_seconds)


def backoff_seconds(attempts: int, retry_after: float | None = None,
                    policy: RetryPolicy = RetryPolicy()) -> float:
    """Return the wait before the next attempt after ``attempts`` failed ones (seconds).

    With a server's Retry-After (HTTP 429) that wait, at least one second; otherwise exponential
    (30 s, 60 s, 120 s ... capped at one hour by default).
    """
    if retry_after is not None:
        return max(1.0, float(retry_after))
    return float(min(policy.max_seconds, policy.base_seconds * 2 ** max(0, attempts - 1)))


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


def _iso_after(t: dt.datetime, seconds: float) -> str:
    """Return ``t + seconds`` rounded up to the whole second (the outbox's resolution), so that
    a row is never due before the wait is over."""
    t = t + dt.timedelta(seconds=seconds)
    if t.microsecond:
        t = t.replace(microsecond=0) + dt.timedelta(seconds=1)
    return _iso(t)


def deliver_due(db: Database, notifier: Notifier, now: dt.datetime | None = None,
                policy: RetryPolicy | None = None) -> int:
    """Send every due outbox row through ``notifier``; return how many were delivered.

    ``now`` (default: the current time) decides which rows are due and when a failed one is
    tried next.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    policy = policy or RetryPolicy()
    sent = 0
    for row in outbox.due(db, _iso(now)):
        if not outbox.claim(db, row["id"], row["next_attempt_at"], _iso_after(now, CLAIM_SECONDS),
                            _iso(now)):
            continue  # another deliverer took it
        key = row["dedup_key"]
        payload = json.loads(row["payload"])
        if row["kind"] == "digest":
            payload = prepare(db, payload)
        try:
            chart = _chart(db, payload) if getattr(notifier, "uploads_charts", False) else None
            answer = (notifier.send(payload, key, chart=chart) if chart is not None
                      else notifier.send(payload, key))
        except DeliveryError as exc:
            attempts = row["attempts"] + 1
            if exc.permanent:
                outbox.mark_failed(db, row["id"], str(exc))
                log.error("outbox %s: permanent delivery failure, not retried: %s", key, exc)
            else:
                nxt = _iso_after(now, backoff_seconds(attempts, exc.retry_after, policy))
                outbox.mark_retry(db, row["id"], str(exc), nxt)
                log.warning("outbox %s: delivery attempt %d failed (%s), next attempt at %s",
                            key, attempts, exc, nxt)
            continue
        except Exception as exc:  # a bug must not lose the row nor stop the other rows
            attempts = row["attempts"] + 1
            reason = redact(f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])[:300]
            nxt = _iso_after(now, backoff_seconds(attempts, None, policy))
            outbox.mark_retry(db, row["id"], reason, nxt)
            # no traceback: it could carry a request URL (a webhook URL is a secret)
            log.error("outbox %s: %s; next attempt at %s", key, reason, nxt)
            continue
        note = None
        if isinstance(answer, dict) and answer.get("chart") not in (None, "uploaded"):
            note = f"delivered; chart {answer['chart']}"
            log.warning("outbox %s: %s", key, note)
        outbox.mark_sent(db, row["id"], notifier.destination, dumps(payload), note)
        where = f" (ts {answer['ts']})" if isinstance(answer, dict) and answer.get("ts") else ""
        # a remote destination's answer is worth a line; the console's output speaks for itself
        log.log(logging.INFO if answer else logging.DEBUG, "outbox %s: delivered to %s%s", key,
                notifier.destination, where)
        sent += 1
    return sent


def _chart(db: Database, payload: dict) -> Callable[[], tuple[bytes, str]] | None:
    """Return a function that renders the digest's chart as ``(png, alt_text)``, or None when
    there is nothing to plot. The data is read now; the (slower) rendering happens only once
    the message itself has been accepted. A chart never blocks a digest."""
    from monitor.notify import chart

    try:
        data = chart.load(db, payload)
    except Exception as exc:
        log.warning("digest %s: no chart: %s: %s", payload.get("as_of"), type(exc).__name__, exc)
        return None
    if data is None:
        return None
    return lambda: (chart.render(data), chart.alt_text(data))


# -- the closest historical episode ------------------------------------------------------------

def prepare(db: Database, payload: dict) -> dict:
    """Return ``payload`` with the closest historical episode in each alert (when missing)."""
    if not digest.needs_closest(payload):
        return payload
    try:
        return digest.attach_closest(payload, closest_for(db, payload["as_of"]))
    except Exception as exc:  # context, not the alert: send without it
        log.warning("digest %s: closest episode unavailable: %s: %s", payload["as_of"],
                    type(exc).__name__, exc)
        return payload


def closest_for(db: Database, as_of: str) -> dict | None:
    """Return the stored episode nearest ``as_of`` by indicator values (``digest.closest_episode``):
    today's values and each episode's reference-day values from ``signal_values``, each signal
    scaled by the standard deviation of its history up to ``as_of``."""
    eps = [e for e in episodes.list_episodes(db) if e["end"] and e["end"] < as_of]
    if not eps:
        return None
    values_on = values_on_days(db, {as_of} | {digest.reference_date(e) for e in eps})
    today = {k: v for k, v in values_on.get(as_of, {}).items() if k != COMPOSITE}
    if not today:
        return None
    return digest.closest_episode(today, eps, values_on, signal_scales(db, as_of), as_of)


def values_on_days(db: Database, days: set[str]) -> dict[str, dict[str, float | None]]:
    """Return day -> (signal -> value) for ``days``, in one read."""
    out: dict[str, dict[str, float | None]] = {}
    marks = ",".join("?" * len(days))
    for signal, day, value in db.execute(
            f"SELECT signal, date, value FROM signal_values WHERE date IN ({marks})", sorted(days)):
        out.setdefault(day, {})[signal] = value
    return out


def signal_scales(db: Database, as_of: str) -> dict[str, float]:
    """Return each signal's sample standard deviation over its stored history up to ``as_of``."""
    rows = db.execute(
        "SELECT signal, COUNT(value), AVG(value), AVG(value * value) FROM signal_values "
        "WHERE date <= ? AND value IS NOT NULL GROUP BY signal", [as_of]).fetchall()
    out = {}
    for signal, n, mean, mean_sq in rows:
        if n >= 2:
            var = (mean_sq - mean * mean) * n / (n - 1)
            if var > (1e-9 * max(1.0, abs(mean))) ** 2:  # constant up to rounding: unusable
                out[signal] = var ** 0.5
    return out
