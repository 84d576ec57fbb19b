"""Slack delivery against hostile or broken endpoints (issue 12, items 2, 7, 8, 9 and 13), on a
real HTTP server on loopback (tests/slack_server.py); slack-sdk itself is never mocked.

- a 302 to another origin is never followed: the token stays home, the digest is not delivered;
- an answer of tens of MB is refused, not read whole;
- an endpoint that trickles one byte a second fails at ``timeout_seconds`` (a total deadline);
- an upload answer without ``upload_url`` posts the digest once, the chart failure recorded;
- a write lock held by another connection during ``mark_sent`` posts once, recorded sent;
- ``Retry-After: inf`` / ``1e8`` waits at most ``retry_max_seconds``, with one warning line;
- the plain-text fallback is escaped like the blocks (``<!channel>`` does not notify anyone).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
import tracemalloc

import pytest

from monitor.config import SlackConfig, load_config
from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV, DeliveryError, make_notifier
from monitor.delivery.deliver import CLAIM_SECONDS, RetryPolicy, deliver_due
from monitor.delivery.slack import SlackNotifier
from storage import outbox
from storage.db import open_db
from storage.util import dumps
from tests.conftest import CLASSIC_CONFIG
from tests.slack_server import (
    AS_OF,
    CHANNEL_ID,
    TOKEN,
    WEBHOOK_SECRET,
    Reply,
    SlackServer,
    all_firing_payload,
    fill_history,
)

KEY = f"digest:{AS_OF}"
CHANNEL = "#micro-cap-risk"
POLICY = RetryPolicy(30, 3600)
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def server(monkeypatch):
    for name in PROXIES:  # loopback only, never through a proxy
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    with SlackServer() as s:
        yield s


@pytest.fixture
def other():
    """Another origin (another port): where a hostile redirect points."""
    with SlackServer() as s:
        yield s


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)


def enqueue(db, key: str, payload: dict) -> None:
    with db.atomic():
        outbox.enqueue(db, key, "digest", payload["as_of"], dumps(payload))


@pytest.fixture
def db_path(tmp_path, classic_config):
    path = tmp_path / "history.db"
    d = open_db(path)
    with d.atomic():
        fill_history(d)
    enqueue(d, KEY, all_firing_payload(classic_config))
    d.close()
    return path


@pytest.fixture
def db(db_path):
    d = open_db(db_path)
    yield d
    d.close()


def config_for(server: SlackServer, **slack):
    config = load_config(CLASSIC_CONFIG)
    fields = {"channel": CHANNEL, "api_url": server.api_url, "timeout_seconds": 5, **slack}
    return config.model_copy(update={"notify": config.notify.model_copy(
        update={"slack": SlackConfig(**fields)})})


def bot(server, monkeypatch, **slack) -> SlackNotifier:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    notifier = make_notifier(config_for(server, **slack))
    assert isinstance(notifier, SlackNotifier)
    return notifier


def webhook(server, monkeypatch, url: str | None = None) -> SlackNotifier:
    monkeypatch.setenv(WEBHOOK_ENV, url or server.webhook_url)
    notifier = make_notifier(config_for(server, channel=None))
    assert isinstance(notifier, SlackNotifier) and notifier.destination == "slack:webhook"
    return notifier


def row(db, key: str = KEY) -> dict:
    return next(r for r in outbox.list_rows(db, include_sent=True) if r["dedup_key"] == key)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# -- item 2: redirects and huge answers ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["bot", "webhook"])
def test_a_redirect_to_another_origin_is_not_followed(server, other, monkeypatch, db, now, kind):
    if kind == "bot":
        notifier = bot(server, monkeypatch, chart=False)
        server.script("chat.postMessage",
                      Reply(302, "", {"Location": f"{other.api_url}chat.postMessage"}))
    else:
        notifier = webhook(server, monkeypatch)
        server.script("webhook", Reply(302, "", {"Location": other.webhook_url}))
    assert deliver_due(db, notifier, now, POLICY) == 0
    assert other.requests == []  # the token (or the webhook path) never reached the other origin
    assert len(server.posted()) == 1  # one POST, nothing re-sent as a GET
    r = row(db)
    assert r["sent_at"] is None  # the other origin's "ok" cannot mark it delivered
    assert "redirect" in r["last_error"] and "302" in r["last_error"]
    assert r["failed_at"]  # a redirecting endpoint is a configuration error: not retried
    for secret in (TOKEN, WEBHOOK_SECRET, str(other.port)):
        assert secret not in r["last_error"]


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_answer_is_refused_not_read_whole(server, monkeypatch, db, now, declared):
    notifier = bot(server, monkeypatch, chart=False)
    size = 48 << 20  # 48 MB (the 200 MB took 555 MB of RSS)
    server.script("chat.postMessage", Reply(200, {"ok": True, "channel": CHANNEL_ID,
                                                  "ts": "1700000001.000100"}, pad_bytes=size,
                                            declare_length=declared))
    tracemalloc.start()
    try:
        delivered = deliver_due(db, notifier, now, POLICY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"peak {peak / 2**20:.0f} MB while answering"
    assert delivered == 0
    r = row(db)
    assert r["sent_at"] is None and r["failed_at"] is None  # retried later
    assert "too large" in r["last_error"]
    assert server.bytes_sent < size  # the client hung up long before the end


# -- item 7: a total deadline per request -------------------------------------------------------

def test_a_trickling_endpoint_fails_at_the_total_deadline(server, monkeypatch, db_path, now):
    timeout = 2
    notifier = bot(server, monkeypatch, chart=False, timeout_seconds=timeout)
    server.script("chat.postMessage", Reply(200, {"ok": True, "channel": CHANNEL_ID,
                                                  "ts": "1700000001.000100"}, trickle=1.0))
    result: dict = {}

    def run() -> None:
        start = time.monotonic()
        own = open_db(db_path)  # the worker thread's own connection
        try:
            result["delivered"] = deliver_due(own, notifier, now, POLICY)
        finally:
            result["elapsed"] = time.monotonic() - start
            own.close()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout + 4)
    assert not worker.is_alive(), "delivery still waiting on a trickling server"
    assert result["elapsed"] <= timeout + 1.5 and result["delivered"] == 0
    db = open_db(db_path)
    r = row(db)
    db.close()
    assert r["sent_at"] is None and r["failed_at"] is None
    assert "timed out" in r["last_error"]
    assert at(r["next_attempt_at"]) == now + dt.timedelta(seconds=30)


def test_send_itself_is_bounded_by_the_total_deadline(server, monkeypatch):
    notifier_timeout = 2
    monkeypatch.setenv(WEBHOOK_ENV, server.webhook_url)
    notifier = make_notifier(config_for(server, channel=None, timeout_seconds=notifier_timeout))
    server.script("webhook", Reply(200, "ok", trickle=1.0))
    payload = all_firing_payload(load_config(CLASSIC_CONFIG))
    out: dict = {}

    def run() -> None:
        start = time.monotonic()
        try:
            notifier.send(payload, KEY)
        except DeliveryError as exc:
            out["error"] = exc
        out["elapsed"] = time.monotonic() - start

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(notifier_timeout + 4)
    assert not worker.is_alive()
    assert out["elapsed"] <= notifier_timeout + 1.5
    assert "timed out" in str(out["error"]) and not out["error"].permanent


# -- item 8: no duplicate without a crash -------------------------------------------------------

def test_an_upload_answer_without_upload_url_posts_the_digest_once(server, monkeypatch, db, now):
    notifier = bot(server, monkeypatch)
    no_url = Reply(200, {"ok": True, "file_id": "F0NOURL"})
    server.script("files.getUploadURLExternal", no_url, no_url, no_url)
    for run in range(3):
        deliver_due(db, notifier, now + dt.timedelta(seconds=run * (CLAIM_SECONDS + 1)), POLICY)
    assert len(server.calls("chat.postMessage")) == 1
    r = row(db)
    assert r["sent_at"] and r["failed_at"] is None
    assert r["last_error"].startswith("delivered; chart upload failed: ")
    assert TOKEN not in r["last_error"]


def hold_write_lock(path, seconds: float, locked: threading.Event) -> threading.Thread:
    """Another writer: a connection that holds BEGIN IMMEDIATE for ``seconds``."""

    def hold() -> None:
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(seconds)
            con.execute("COMMIT")
        finally:
            con.close()

    holder = threading.Thread(target=hold, daemon=True)
    return holder


def lock_while_slack_answers(server, path, seconds: float) -> threading.Thread:
    """Take the database's write lock as Slack receives the post (before it answers)."""
    locked = threading.Event()
    holder = hold_write_lock(path, seconds, locked)

    def on_post(_request) -> None:
        if not holder.is_alive() and not locked.is_set():
            holder.start()
            assert locked.wait(5)

    server.on("chat.postMessage", on_post)
    return holder


def test_a_lock_during_mark_sent_posts_once_and_records_it(server, monkeypatch, db_path, now):
    db = open_db(db_path)
    db.execute("PRAGMA busy_timeout = 300")  # one lock wait of SQLite is short: the retry counts
    notifier = bot(server, monkeypatch, chart=False)
    holder = lock_while_slack_answers(server, db_path, 2.5)
    error = None
    try:
        try:
            deliver_due(db, notifier, now, POLICY)
        except sqlite3.OperationalError as exc:  # the old code: the row stays claimed ...
            error = exc
        holder.join(10)
        # ... and after the claim's lease, Slack got the same digest again
        deliver_due(db, notifier, now + dt.timedelta(seconds=CLAIM_SECONDS + 1), POLICY)
        assert len(server.calls("chat.postMessage")) == 1
        assert error is None
        r = row(db)
        assert r["sent_at"] and r["destination"] == f"slack:{CHANNEL}" and r["last_error"] is None
    finally:
        holder.join(10)
        db.close()


def test_an_accepted_post_never_recorded_is_not_posted_again_by_this_process(
        server, monkeypatch, db_path, now):
    """The lock outlasts the bounded retry of the record: the process remembers the post and
    records it once the lock is gone, without posting again."""
    monkeypatch.setattr(outbox, "RECORD_PATIENCE_SECONDS", 1.0, raising=False)
    db = open_db(db_path)
    db.execute("PRAGMA busy_timeout = 200")
    notifier = bot(server, monkeypatch, chart=False)
    holder = lock_while_slack_answers(server, db_path, 4.0)
    lease = dt.timedelta(seconds=CLAIM_SECONDS + 1)
    try:
        failures = 0
        for n in range(2):  # the first run records nothing; the second comes after the lease
            try:
                deliver_due(db, notifier, now + n * lease, POLICY)
            except sqlite3.OperationalError:
                failures += 1
        assert len(server.calls("chat.postMessage")) == 1
        holder.join(10)
        assert deliver_due(db, notifier, now + 2 * lease, POLICY) == 0
        assert len(server.calls("chat.postMessage")) == 1 and failures == 0
        r = row(db)
        assert r["sent_at"] and r["last_error"] is None
    finally:
        holder.join(10)
        db.close()


# -- item 9: absurd Retry-After -----------------------------------------------------------------

@pytest.mark.parametrize("kind,value", [("bot", "inf"), ("bot", "1e8"), ("webhook", "inf"),
                                        ("webhook", "1e8")])
def test_an_absurd_retry_after_is_capped_with_one_warning(server, monkeypatch, db, now, kind, value,
                                                         caplog):
    policy = RetryPolicy(30, 600)
    if kind == "bot":
        notifier = bot(server, monkeypatch, chart=False)
        server.script("chat.postMessage", Reply(429, {"ok": False, "error": "ratelimited"},
                                                {"Retry-After": value}))
    else:
        notifier = webhook(server, monkeypatch)
        server.script("webhook", Reply(429, "rate_limited", {"Retry-After": value}))
    caplog.set_level(logging.INFO, logger="regime_monitor")
    assert deliver_due(db, notifier, now, policy) == 0  # no OverflowError
    r = row(db)
    assert r["sent_at"] is None and r["failed_at"] is None
    assert not r["last_error"].startswith("interrupted")
    assert "rate limited" in r["last_error"]
    assert now < at(r["next_attempt_at"]) <= now + dt.timedelta(seconds=600)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "Retry-After" in warnings[0] and "capped" in warnings[0]
    assert "Traceback" not in caplog.text
    # and then it is delivered, once
    assert deliver_due(db, notifier, at(r["next_attempt_at"]), policy) == 1
    assert len(server.posted()) == 2


# -- item 13: the plain-text fallback is escaped -----------------------------------------------

def test_the_plain_text_fallback_is_escaped_like_the_blocks(server, monkeypatch, classic_config):
    notifier = bot(server, monkeypatch, chart=False)
    payload = all_firing_payload(classic_config)
    payload["items"][0]["explain"] = "Sell now <!channel> & see <https://evil.example|here>"
    notifier.send(payload, KEY)
    [post] = server.calls("chat.postMessage")
    text = post.body["text"]
    assert "<!channel>" not in text and "<https://" not in text
    assert "Sell now &lt;!channel&gt; &amp; see &lt;https://evil.example|here&gt;" in text
    blocks = str(post.body["blocks"])
    assert "<!channel>" not in blocks and "&lt;!channel&gt;" in blocks


# -- the chart of a row whose process ended after the post was recorded -------------------------

def test_a_pending_chart_is_uploaded_later_into_the_thread_without_posting_again(
        server, monkeypatch, db, now):
    """A process that ended between recording the accepted post and the chart's outcome leaves
    ``chart_due``: the next run after the lease uploads the chart into the recorded message's
    thread and posts nothing."""
    notifier = bot(server, monkeypatch)
    r = row(db)
    lease = now + dt.timedelta(seconds=CLAIM_SECONDS)
    assert outbox.claim(db, r["id"], r["next_attempt_at"], lease.isoformat(), now.isoformat())
    outbox.mark_sent(db, r["id"], notifier.destination, now.isoformat(), None, None, CHANNEL_ID,
                     "1699999999.000100", True)
    assert deliver_due(db, notifier, now, POLICY) == 0  # the lease still runs: nothing
    assert not server.calls("files.getUploadURLExternal")
    assert deliver_due(db, notifier, lease, POLICY) == 0
    assert server.calls("chat.postMessage") == []
    [complete] = server.calls("files.completeUploadExternal")
    assert complete.body["channel_id"] == CHANNEL_ID
    assert complete.body["thread_ts"] == "1699999999.000100"
    r = row(db)
    assert r["sent_at"] and r["chart_due"] == 0 and r["last_error"] is None
    assert deliver_due(db, notifier, lease + dt.timedelta(hours=1), POLICY) == 0
    assert len(server.calls("files.completeUploadExternal")) == 1


# -- item 8: an unanswered post is looked up before it is posted again ---------------------------

@pytest.mark.parametrize("history", [True, False])
def test_a_retry_after_an_unanswered_post_looks_for_it_in_the_channel_first(
        server, monkeypatch, db, now, history, caplog):
    """Slack stores the post but its answer never arrives (trickled past the deadline). With the
    ``channels:history`` scope the retry finds the digest by its dedup key and records it: one
    post. Without the scope it posts again, and the warning says a duplicate is possible."""
    notifier = bot(server, monkeypatch, chart=False, timeout_seconds=2, channel=CHANNEL_ID)
    server.history = history
    server.script("chat.postMessage", Reply(200, {"ok": True, "channel": CHANNEL_ID,
                                                  "ts": "1700000001.000100"}, trickle=1.0))

    def stored_although_unanswered(req) -> None:
        if len(server.calls("chat.postMessage")) == 1:
            server.messages.append({"ts": "1700000001.000100", "text": req.body.get("text"),
                                    "metadata": req.body.get("metadata")})

    server.on("chat.postMessage", stored_although_unanswered)
    caplog.set_level(logging.INFO, logger="regime_monitor")
    assert deliver_due(db, notifier, now, POLICY) == 0
    assert "timed out" in row(db)["last_error"]
    assert deliver_due(db, notifier, now + dt.timedelta(seconds=31), POLICY) == 1
    r = row(db)
    assert r["sent_at"] is not None
    posts = server.calls("chat.postMessage")
    assert len(server.calls("conversations.history")) == 1
    if history:
        assert len(posts) == 1 and r["posted_ts"] == "1700000001.000100"
        assert "the earlier attempt had reached Slack" in caplog.text
    else:
        assert len(posts) == 2 and r["posted_ts"] != "1700000001.000100"
        assert "a duplicate is possible" in caplog.text
    assert TOKEN not in caplog.text
