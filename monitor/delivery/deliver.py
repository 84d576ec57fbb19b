"""Delivering the outbox: each due row is claimed, sent, then marked sent (or retried later).

The outbox is the single place that decides about retries (notifiers make one attempt each):
- a transient failure (HTTP 5xx, a connection error, an unknown Slack error) is retried with
  exponential backoff: ``retry_base_seconds`` x 2^(attempts-1), capped at ``retry_max_seconds``;
- HTTP 429 waits what the server's ``Retry-After`` asks (at least one second, at most
  ``retry_max_seconds``: a larger or infinite value is capped, and the attempt's warning says so);
- a permanent failure (``invalid_auth``, ``channel_not_found``, ``not_in_channel``, a webhook's
  404 ...) is stored with its reason, logged once, and never attempted again.

Before sending, a row is *claimed*: its attempt is counted and its next attempt moved a lease
(``CLAIM_SECONDS``) ahead, in one conditional update. A second deliverer on the same database
(``once`` while the daemon runs) therefore skips it, and a process that dies between Slack
accepting a message and ``mark_sent`` leaves the row queued, with a note, for a retry after the
lease. That retry is the only possible duplicate; it carries the same dedup key in its metadata.

Once Slack accepted a message, nothing a live process does posts it again:
- the acceptance (``mark_sent``, with Slack's channel and ts) is recorded first, in its own short
  write, retried while another writer holds the database lock; if it still cannot be stored,
  this process remembers the row, never posts it again, and records it on its next run;
- the chart is uploaded only after that record (``chart_due`` until its outcome is stored); a
  chart that fails is noted on the row (``delivered; chart ...``) and never re-sends the message.
  A process that ends between the two leaves the chart to the next run, after the lease.

Before sending, delivery adds to each alert the closest historical episode (computed here, from
the database, for the digest's day), when a micro-cap warning is new the PM's most exposed
products with their estimated excess loss (``attach_exposure``), and, for a notifier that
uploads charts, prepares the chart (rendered only after the message was accepted).
The payload as sent is what ``mark_sent`` stores.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from monitor.calendar import TradingCalendar
from monitor.config import COMPOSITE, Config, NotifyConfig
from monitor.delivery import ChartUploader, DeliveryError, HistoryReader, Notifier, digest, redact
from signals.episodes import ROTATION_MERGE_GAP_DAYS
from storage import episodes, outbox, signal_values
from storage.db import file_of
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

    With a server's Retry-After (HTTP 429) that wait, at least one second and at most
    ``policy.max_seconds`` (an infinite or absurd value is capped); otherwise exponential
    (30 s, 60 s, 120 s ... capped at one hour by default).
    """
    if retry_after is not None and not math.isnan(retry_after):
        return max(1.0, min(float(policy.max_seconds), float(retry_after)))
    exponent = min(max(0, attempts - 1), 64)  # 2**64 x base is beyond any cap
    return float(min(policy.max_seconds, policy.base_seconds * 2 ** exponent))


def retry_after_capped(retry_after: float | None, policy: RetryPolicy) -> bool:
    """Return whether a server's Retry-After (seconds) is beyond ``policy.max_seconds``."""
    return retry_after is not None and retry_after > policy.max_seconds


# Rows Slack accepted whose record could not be stored (the database stayed locked, the disk is
# full ...): (database, row id) -> the write still to do. This process never posts them again,
# and retries the write at the start of each delivery run.
_unrecorded: dict[tuple[str, int], Callable[[float | None], None]] = {}


def _db_key(db: Database) -> str:
    """Return what identifies ``db`` across connections: its file (or the connection, in
    memory)."""
    try:
        name = file_of(db)
    except Exception:
        name = ":memory:"
    return name if name != ":memory:" else f"memory:{id(db.conn)}"


def _record(db: Database, row_id: int, key: str,
            write: Callable[[float | None], None]) -> bool:
    """Store a delivery's record (``write(patience)``, retried while the database is locked);
    return True when stored. When it cannot be, the row is remembered in this process (never
    posted again) and the write retried on the next run; the failure is logged once."""
    try:
        write(None)
        return True
    except Exception as exc:
        _unrecorded[(_db_key(db), row_id)] = write
        log.error("outbox %s: delivered, but the record could not be stored (%s: %s); this "
                  "process will not send it again and stores the record on its next run", key,
                  type(exc).__name__, redact(str(exc).splitlines()[0] if str(exc) else ""))
        return False


def _flush_unrecorded(db: Database) -> set[int]:
    """Try once to store the records this process still owes ``db``; return the row ids still
    owed (those rows must not be sent again)."""
    name = _db_key(db)
    owed = set()
    for (where, row_id), write in list(_unrecorded.items()):
        if where != name:
            continue
        try:
            write(0.0)
        except Exception:
            owed.add(row_id)
            continue
        del _unrecorded[(where, row_id)]
        log.info("outbox row %d: the delivery's record is stored now", row_id)
    return owed


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


def _iso_after(t: dt.datetime, seconds: float) -> str:
    """Return ``t + seconds`` rounded up to the whole second (the outbox's resolution), so that
    a row is never due before the wait is over."""
    t = t + dt.timedelta(seconds=seconds)
    if t.microsecond:
        t = t.replace(microsecond=0) + dt.timedelta(seconds=1)
    return _iso(t)


def deliver_due(db: Database, notifier: Notifier, now: dt.datetime,
                policy: RetryPolicy | None = None, config: Config | None = None) -> int:
    """Send every due outbox row through ``notifier``; return how many were delivered.

    ``now`` (an aware datetime, the wall clock of the caller: outbox times are UTC) decides
    which rows are due and when a failed one is tried next, and is the time recorded as sent or
    failed. Also finishes the charts of rows sent by a process that ended before uploading
    them, and stores records an earlier run of this process could not. ``config`` (the
    daemon's) adds the products' exposure to a digest whose micro-cap warning is new
    (:func:`prepare`); None leaves it out.
    """
    now = now.astimezone(dt.UTC)
    policy = policy or RetryPolicy()
    owed = _flush_unrecorded(db)
    sent = 0
    for row in outbox.due(db, _iso(now)):
        if row["id"] in owed:
            continue  # Slack has it; only its record is missing
        if not outbox.claim(db, row["id"], row["next_attempt_at"], _iso_after(now, CLAIM_SECONDS),
                            _iso(now)):
            continue  # another deliverer took it
        key = row["dedup_key"]
        payload = json.loads(row["payload"])
        if row["kind"] == "digest":
            payload = prepare(db, payload, config)
        chart = None
        try:
            uploader = _chart_uploader(notifier)
            chart = _chart(db, payload) if uploader is not None else None
            answer = _posted_before(db, notifier, row)
            if answer is None:
                answer = (uploader.send(payload, key, chart=True)
                          if uploader is not None and chart is not None
                          else notifier.send(payload, key))
        except DeliveryError as exc:
            attempts = row["attempts"] + 1
            if exc.permanent:
                outbox.mark_failed(db, row["id"], str(exc), _iso(now))
                log.error("outbox %s: permanent delivery failure, not retried: %s", key, exc)
            else:
                wait = backoff_seconds(attempts, exc.retry_after, policy)
                nxt = _iso_after(now, wait)
                outbox.mark_retry(db, row["id"], str(exc), nxt)
                capped = (f"; Retry-After capped at {wait:g} s (notify.retry_max_seconds)"
                          if retry_after_capped(exc.retry_after, policy) else "")
                log.warning("outbox %s: delivery attempt %d failed (%s)%s, next attempt at %s",
                            key, attempts, exc, capped, nxt)
            continue
        except Exception as exc:  # a bug must not lose the row nor stop the other rows
            attempts = row["attempts"] + 1
            reason = redact(f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])[:300]
            nxt = _iso_after(now, backoff_seconds(attempts, None, policy))
            outbox.mark_retry(db, row["id"], reason, nxt)
            # no traceback: it could carry a request URL (a webhook URL is a secret)
            log.error("outbox %s: %s; next attempt at %s", key, reason, nxt)
            continue
        # Slack accepted the message: record that first (its own short write), then the chart
        posted = answer if isinstance(answer, dict) else {}
        channel, ts = posted.get("channel"), posted.get("ts")
        sent_payload = dumps(payload)
        destination = notifier.destination
        chart_due = chart is not None

        recorded = _record(db, row["id"], key, _sent_write(db, row["id"], destination,
                                                           _iso(now), sent_payload, None,
                                                           channel, ts, chart_due))
        sent += 1
        where = f" (ts {ts})" if ts else ""
        # a remote destination's answer is worth a line; the console's output speaks for itself
        log.log(logging.INFO if answer else logging.DEBUG, "outbox %s: delivered to %s%s", key,
                destination, where)
        if chart_due and uploader is not None and chart is not None:
            note = _upload_chart(uploader, chart, payload, posted, key)
            if recorded:
                _record(db, row["id"], key, _chart_write(db, row["id"], note))
            else:  # the record still owed now carries the chart's outcome
                _unrecorded[(_db_key(db), row["id"])] = _sent_write(
                    db, row["id"], destination, _iso(now), sent_payload, note, channel, ts, False)
    _finish_charts(db, notifier, now, owed)
    return sent


def _chart_uploader(notifier: Notifier) -> ChartUploader | None:
    """Return ``notifier`` when it uploads charts (a ``ChartUploader`` with ``uploads_charts``
    true), else None."""
    if isinstance(notifier, ChartUploader) and notifier.uploads_charts:
        return notifier
    return None


def _posted_before(db: Database, notifier: Notifier, row: dict) -> dict | None:
    """For a row attempted before (a timeout, a dropped connection or an ended process may have
    left Slack holding the message without our knowing), return Slack's answer for that earlier
    post when the channel's history has a digest with the row's dedup key, else None (post it).

    Only notifiers that can read their history (``find_posted``: a bot token) are asked. When the
    history cannot be read (no ``channels:history`` scope, no channel ID known yet, an error),
    the row is posted again, and a warning says that a duplicate is possible.
    """
    if row["attempts"] == 0 or not isinstance(notifier, HistoryReader):
        return None
    key = row["dedup_key"]
    channel = notifier.channel_id(outbox.last_posted_channel(db, notifier.destination))
    if channel is None:
        log.warning("outbox %s: retrying; no channel ID known yet to check whether the earlier "
                    "attempt reached Slack, so a duplicate is possible", key)
        return None
    oldest = dt.datetime.fromisoformat(row["created_at"]).timestamp() - 60
    try:
        found = notifier.find_posted(key, channel, oldest)
    except DeliveryError as exc:
        log.warning("outbox %s: retrying; could not check whether the earlier attempt reached "
                    "Slack (%s), so a duplicate is possible", key, exc)
        return None
    if found:
        log.info("outbox %s: the earlier attempt had reached Slack (ts %s): recorded, not posted "
                 "again", key, found.get("ts"))
    return found


def _upload_chart(notifier: ChartUploader, chart: Callable[[], tuple[bytes, str]], payload: dict,
                  posted: dict, key: str) -> str | None:
    """Upload the chart into the accepted message's thread; return the row's note (None when
    uploaded, else ``delivered; chart ...``). Never raises: the message was delivered."""
    try:
        outcome = notifier.upload_chart(chart, payload["as_of"], posted)
    except Exception as exc:  # the notifier reports failures; this is a bug, not a resend
        outcome = redact(f"upload failed: {type(exc).__name__}: {exc}".splitlines()[0])[:300]
    if outcome == "uploaded":
        return None
    note = f"delivered; chart {outcome}"
    log.warning("outbox %s: %s", key, note)
    return note


def _finish_charts(db: Database, notifier: Notifier, now: dt.datetime, owed: set[int]) -> None:
    """Upload the charts of rows sent by a process that ended before it could (``chart_due``,
    their lease passed), without posting their message again."""
    for row in outbox.charts_due(db, _iso(now)):
        if row["id"] in owed or not outbox.claim_chart(db, row["id"], row["next_attempt_at"],
                                                       _iso_after(now, CLAIM_SECONDS)):
            continue
        key = row["dedup_key"]
        payload = json.loads(row["payload"])
        uploader = _chart_uploader(notifier)
        chart = _chart(db, payload) if uploader is not None and row["posted_ts"] else None
        note: str | None
        if uploader is None or chart is None:
            note = "delivered; chart not uploaded (no chart, or the destination cannot upload)"
            log.warning("outbox %s: %s", key, note)
        else:
            note = _upload_chart(uploader, chart, payload,
                                 {"channel": row["posted_channel"], "ts": row["posted_ts"]}, key)
        _record(db, row["id"], key, _chart_write(db, row["id"], note))


def _sent_write(db: Database, row_id: int, destination: str, sent_at: str, payload: str,
                note: str | None, channel: str | None, ts: str | None, chart_due: bool
                ) -> Callable[[float | None], None]:
    """Return the write that records an accepted message (``outbox.mark_sent``, sent at
    ``sent_at``, ISO UTC), taking the lock patience in seconds (None: the default)."""
    return lambda patience: outbox.mark_sent(db, row_id, destination, sent_at, payload, note,
                                             channel, ts, chart_due, patience)


def _chart_write(db: Database, row_id: int, note: str | None) -> Callable[[float | None], None]:
    """Return the write that records a chart's outcome (``outbox.mark_chart``)."""
    return lambda patience: outbox.mark_chart(db, row_id, note, patience)


def _chart(db: Database, payload: dict) -> Callable[[], tuple[bytes, str]] | None:
    """Return a function that renders the digest's chart as ``(png, alt_text)``, or None when
    there is nothing to plot. The data is read now; the (slower) rendering happens only once
    the message itself has been accepted. A chart never blocks a digest."""
    from monitor.delivery import chart

    try:
        data = chart.load(db, payload)
    except Exception as exc:
        log.warning("digest %s: no chart: %s: %s", payload.get("as_of"), type(exc).__name__, exc)
        return None
    if data is None:
        return None
    return lambda: (chart.render(data), chart.alt_text(data))


# -- the closest historical episode ------------------------------------------------------------

def prepare(db: Database, payload: dict, config: Config | None = None) -> dict:
    """Return ``payload`` with the closest historical episode in each alert (when missing),
    compared like with like (``digest.episode_kind``: drawdown alerts with drawdowns, the
    rotation rule with rotation spells, ``data_stale`` with none), and, with ``config``, the
    PM's most exposed products (:func:`attach_exposure`) when a micro-cap warning is new."""
    if digest.needs_closest(payload):
        try:
            kinds = digest.kinds_needed(payload)
            payload = digest.attach_closest(payload, {k: closest_for(db, payload["as_of"], k)
                                                      for k in sorted(kinds)})
        except Exception as exc:  # context, not the alert: send without it
            log.warning("digest %s: closest episode unavailable: %s: %s", payload["as_of"],
                        type(exc).__name__, exc)
    if config is not None:
        payload = attach_exposure(db, payload, config)
    return payload


def attach_exposure(db: Database, payload: dict, config: Config) -> dict:
    """Return ``payload`` with its ``exposure`` block (``digest.exposure_block``) when a
    micro-cap warning is new (``digest.needs_exposure``), products are declared in the config and
    some have NAVs known on the digest's day: the ``exposure.digest_top`` most exposed products
    (ranked by the micro-cap beta of ``exposure.rank_window_weeks``, from
    ``monitor.analysis.exposure.exposure_report`` on the digest's day: NAVs with
    ``available_at`` on or before it) and, for each, the estimated excess loss if the micro-cap
    excess over its benchmark repeated its peak-to-trough move in the closest past drawdown
    episode attached to the alert, when that episode is close (``digest.closest_episode``): a
    farther one is no analogue, so the block then gives each product's sensitivity instead; and
    the ranking's recorded out-of-sample check (``exposure --evidence ... --record``) when it was
    known on the digest's day (``recorded_evidence`` on it: the window's last NAVs known by
    then), or that it has none. Unchanged otherwise; a failure is logged and the digest goes out
    without the block."""
    if not config.products or config.exposure.digest_top <= 0 or not digest.needs_exposure(payload):
        return payload
    as_of = payload["as_of"]
    try:
        from monitor.analysis.exposure import ExposureError, exposure_report, recorded_evidence

        day = dt.date.fromisoformat(as_of)
        try:
            table = exposure_report(db, config, day)
        except ExposureError as exc:  # no NAV known yet, an index missing: said, not alarming
            log.info("digest %s: no product exposure: %s", as_of, exc)
            return payload
        if not len(table):
            return payload
        rows = table.to_dict("records")
        episode = digest.drawdown_episode(payload)
        if episode is None and not any(
                i["kind"] == "firing" and "closest_episode" in i for i in payload["items"]):
            episode = closest_for(db, as_of, digest.DRAWDOWN)  # not attached yet: look it up
        calendar = TradingCalendar(config.calendar.extra_closed)
        # only a close analogue is repeated (digest.MAX_EPISODE_DISTANCE, the digest's one rule)
        moves = (episode_moves(db, episode, {str(r["benchmark"]) for r in rows}, as_of,
                               calendar) if episode and episode.get("close", True) else {})
        block = digest.exposure_block(rows, episode, moves, top=config.exposure.digest_top,
                                      rank_window=config.exposure.rank_window_weeks,
                                      record=recorded_evidence(db, config, day))
    except Exception as exc:  # context, not the alert: send without it
        log.warning("digest %s: product exposure unavailable: %s: %s", as_of,
                    type(exc).__name__, exc)
        return payload
    return payload if block is None else {**payload, "exposure": block}


def episode_moves(db: Database, episode: dict, benchmarks: set[str], as_of: str,
                  calendar: TradingCalendar) -> dict[str, float | None]:
    """Return benchmark -> the micro-cap excess return over that benchmark (fraction) from the
    drawdown ``episode``'s peak to its trough (``signals.exposure.index_excess``: each index at
    its last close on or before each of the two days), the closes of ``calendar``'s trading days
    as known on ``as_of`` (ISO day); None when a close is missing."""
    import pandas as pd

    from monitor.analysis.exposure import LOOKBACK_DAYS, close_series
    from signals.exposure import MICROCAP, index_excess
    from storage import observations

    peak, trough = episode.get("peak") or episode.get("start"), episode.get("trough")
    if not peak or not trough or trough <= peak:
        return dict.fromkeys(benchmarks)
    # closes from LOOKBACK_DAYS before the peak: each index has one on or before it
    first = dt.date.fromisoformat(peak) - dt.timedelta(days=LOOKBACK_DAYS)
    days = calendar.days(first, dt.date.fromisoformat(trough))
    ids = sorted(benchmarks | {MICROCAP})
    frame = observations.load_frame(db, [close_series(i) for i in ids], days,
                                    dt.date.fromisoformat(as_of))
    closes = {i: frame[close_series(i)].dropna() for i in ids}
    dates = pd.DatetimeIndex([pd.Timestamp(peak), pd.Timestamp(trough)])
    out: dict[str, float | None] = {}
    for bench in sorted(benchmarks):
        move = None
        if len(closes[MICROCAP]) and len(closes[bench]):
            got = index_excess(closes[MICROCAP], closes[bench], dates).dropna()
            move = float(got.iloc[-1]) if len(got) else None
        out[bench] = move if move is not None and math.isfinite(move) else None
    return out


def closest_for(db: Database, as_of: str, kind: str | None = None) -> dict | None:
    """Return the stored episode (of ``kind``: ``drawdown`` or ``rotation``; None: any) nearest
    ``as_of`` by indicator values (``digest.closest_episode``): today's values and each
    episode's reference-day values from ``signal_values``, each signal scaled by the standard
    deviation of its history up to ``as_of``. Only episodes known to be over on ``as_of`` are
    compared (:func:`known_over`)."""
    eps = known_over(db, episodes.list_episodes(db, kind), as_of)
    if not eps:
        return None
    values_on = signal_values.values_on_days(db, {as_of} | {digest.reference_date(e) for e in eps})
    today = {k: v for k, v in values_on.get(as_of, {}).items() if k != COMPOSITE}
    if not today:
        return None
    return digest.closest_episode(today, eps, values_on, signal_scales(db, as_of), as_of,
                                  kind=kind)


def known_over(db: Database, eps: list[dict], as_of: str) -> list[dict]:
    """Return the episodes of ``eps`` known to be over on ``as_of`` (point-in-time, whenever the
    table was last updated): a drawdown that recovered before ``as_of``; a rotation spell whose
    last day lies more than ``ROTATION_MERGE_GAP_DAYS`` cycle days (days with stored signal
    values) before ``as_of``: until then a resumed condition would still extend it, so on
    ``as_of`` it was open (``signals.episodes.rotation_episodes``)."""
    ended = [e for e in eps if e["end"] and e["end"] < as_of]
    rotations = [e["end"] for e in ended if e["kind"] == "rotation"]
    if not rotations:
        return ended
    days = signal_values.days_between(db, min(rotations), as_of)
    return [e for e in ended if e["kind"] != "rotation"
            or len(days) - bisect_right(days, e["end"]) > ROTATION_MERGE_GAP_DAYS]


def signal_scales(db: Database, as_of: str) -> dict[str, float]:
    """Return each signal's sample standard deviation over its stored history up to ``as_of``
    (in the signal's own unit; signals with fewer than 2 values or a constant one are absent)."""
    rows = signal_values.moments_through(db, as_of)
    out = {}
    for signal, n, mean, mean_sq in rows:
        if n >= 2:
            var = (mean_sq - mean * mean) * n / (n - 1)
            if var > (1e-9 * max(1.0, abs(mean))) ** 2:  # constant up to rounding: unusable
                out[signal] = var ** 0.5
    return out
