"""Slack delivery against a real HTTP server on loopback (tests/slack_server.py), with slack-sdk
pointed at it through ``notify.slack.api_url`` and the webhook URL.

Scenarios: normal delivery (bot with chart upload, webhook), 429 with Retry-After then success,
repeated 500 with exponential backoff, connection errors, permanent errors (no retry loop), a
process killed between Slack accepting the message and ``mark_sent``, a daemon restarted with
undelivered rows, ``notify test``, and secrets never leaking. Time for next_attempt_at is
injected (``deliver_due(now=...)``); nothing sleeps on a backoff.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor import cli
from monitor.config import SlackConfig, load_config
from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV, DeliveryError, make_notifier
from monitor.delivery.blocks import limit_problems
from monitor.delivery.deliver import CLAIM_SECONDS, RetryPolicy, deliver_due
from monitor.delivery.slack import SlackNotifier
from storage import outbox
from storage.db import open_db
from storage.util import dumps
from tests.conftest import CLASSIC_CONFIG, ROOT
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
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture
def server(monkeypatch):
    for name in PROXIES:  # loopback only, never through a proxy
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    with SlackServer() as s:
        yield s


@pytest.fixture
def now() -> dt.datetime:
    """A whole-second 'now' just ahead of the rows' creation time."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)


def config_for(server: SlackServer, **slack):
    config = load_config(CLASSIC_CONFIG)
    fields = {"channel": CHANNEL, "api_url": server.api_url, "timeout_seconds": 5, **slack}
    return config.model_copy(update={"notify": config.notify.model_copy(
        update={"slack": SlackConfig(**fields)})})


def bot(server, monkeypatch, **slack) -> SlackNotifier:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    notifier = make_notifier(config_for(server, **slack))
    assert isinstance(notifier, SlackNotifier) and notifier.destination == f"slack:{CHANNEL}"
    return notifier


def webhook(server, monkeypatch, url: str | None = None) -> SlackNotifier:
    monkeypatch.setenv(WEBHOOK_ENV, url or server.webhook_url)
    notifier = make_notifier(config_for(server, channel=None))
    assert isinstance(notifier, SlackNotifier) and notifier.destination == "slack:webhook"
    return notifier


def enqueue(db, key: str, payload: dict) -> None:
    with db.atomic():  # committed, as the cycle does: other processes see it
        outbox.enqueue(db, key, "digest", payload["as_of"], dumps(payload))


@pytest.fixture
def db(tmp_path, classic_config):
    d = open_db(tmp_path / "history.db")
    with d.atomic():
        fill_history(d)
    enqueue(d, KEY, all_firing_payload(classic_config))
    yield d
    d.close()


def row(db, key: str = KEY) -> dict:
    return next(r for r in outbox.list_rows(db, include_sent=True) if r["dedup_key"] == key)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def metadata_keys(server) -> list[str]:
    return [b["metadata"]["event_payload"]["dedup_key"] for b in server.posted()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 1. normal delivery ------------------------------------------------------------------------

def test_bot_delivers_blocks_metadata_and_chart_in_thread(server, monkeypatch, db, now):
    notifier = bot(server, monkeypatch)
    assert deliver_due(db, notifier, now, POLICY) == 1

    [post] = server.calls("chat.postMessage")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    body = post.body
    assert body["channel"] == CHANNEL
    assert body["metadata"] == {"event_type": "regime_monitor_digest",
                                "event_payload": {"dedup_key": KEY}}
    blocks = body["blocks"]
    assert limit_problems(blocks, body["text"]) == []
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"].startswith(f"regime-monitor {AS_OF}: ")
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert sections[0].startswith(f":rotating_light: *[CRITICAL] microcap_drawdown: NEW since {AS_OF}*")
    assert "(microcap.drawdown) = -15.2% (threshold &lt;= -10.0%: met)" in sections[0]
    contexts = " ".join(e["text"] for b in blocks if b["type"] == "context" for e in b["elements"])
    assert "Closest past drawdown: drawdown from the" in contexts and "-23.1%" in contexts
    assert "silence add microcap_drawdown --until" in contexts
    assert "Folded under the critical alert" in contexts  # notify.inhibit defaults to true
    assert "in this message's thread" in contexts and f"`{KEY}`" in contexts
    assert body["text"].startswith(f"regime-monitor {AS_OF}: ")

    # the chart: files_upload_v2 = getUploadURLExternal, the upload URL, completeUploadExternal
    [get_url] = server.calls("files.getUploadURLExternal")
    [upload] = server.calls("upload")
    [complete] = server.calls("files.completeUploadExternal")
    assert upload.body.startswith(b"\x89PNG") and int(get_url.body["length"]) == len(upload.body)
    assert get_url.body["filename"] == f"regime-monitor-{AS_OF}.png"
    posted_ts = f"{1700000000 + 1}.000100"  # the server's answer to the first request
    assert complete.body["channel_id"] == CHANNEL_ID and complete.body["thread_ts"] == posted_ts
    assert json.loads(complete.body["files"])[0]["id"] == "F000002"
    assert upload.path == "/upload/F000002"

    r = row(db)
    assert r["destination"] == f"slack:{CHANNEL}" and r["attempts"] == 1
    assert r["sent_at"] == now.isoformat()  # the delivery's clock, passed in: no wall-clock read
    assert r["last_error"] is None and r["failed_at"] is None
    sent = json.loads(r["payload"])  # the payload as sent, closest episode included
    assert sent["items"][0]["closest_episode"]["kind"] == "drawdown"

    # nothing is sent twice
    assert deliver_due(db, notifier, now + dt.timedelta(hours=1), POLICY) == 0
    assert len(server.calls("chat.postMessage")) == 1


def test_webhook_delivers_blocks_and_points_to_the_report(server, monkeypatch, db, now):
    notifier = webhook(server, monkeypatch)
    assert deliver_due(db, notifier, now, POLICY) == 1
    [hook] = server.calls("webhook")
    assert hook.path == f"/services/{WEBHOOK_SECRET}"
    assert hook.body["metadata"]["event_payload"]["dedup_key"] == KEY
    assert limit_problems(hook.body["blocks"], hook.body["text"]) == []
    contexts = json.dumps(hook.body["blocks"])
    assert "regime-monitor report" in contexts and "cannot upload" in contexts
    assert not server.calls("files.getUploadURLExternal") and not server.calls("upload")
    assert row(db)["destination"] == "slack:webhook" and row(db)["sent_at"]


# -- 2. 429 with Retry-After, then success -----------------------------------------------------

RATE_LIMITED = {
    "bot": ("chat.postMessage", Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})),
    "webhook": ("webhook", Reply(429, "rate_limited", {"Retry-After": "1"})),
}


@pytest.mark.parametrize("kind", ["bot", "webhook"])
def test_rate_limited_waits_retry_after_then_delivers_once(server, monkeypatch, db, now, kind):
    notifier = bot(server, monkeypatch) if kind == "bot" else webhook(server, monkeypatch)
    server.script(*RATE_LIMITED[kind])
    assert deliver_due(db, notifier, now, POLICY) == 0
    r = row(db)
    assert r["sent_at"] is None and r["failed_at"] is None and r["attempts"] == 1
    assert at(r["next_attempt_at"]) == now + dt.timedelta(seconds=1)  # Retry-After, not 30 s
    assert "rate limited" in r["last_error"] and "Retry-After 1 s" in r["last_error"]
    # half a second later it is not due yet: nothing is sent
    assert deliver_due(db, notifier, now + dt.timedelta(milliseconds=500), POLICY) == 0
    assert len(server.posted()) == 1
    # after the wait: delivered, once
    assert deliver_due(db, notifier, now + dt.timedelta(seconds=1), POLICY) == 1
    assert len(server.posted()) == 2 and metadata_keys(server) == [KEY, KEY]
    r = row(db)
    assert r["sent_at"] and r["attempts"] == 2 and r["last_error"] is None
    assert deliver_due(db, notifier, now + dt.timedelta(minutes=5), POLICY) == 0
    assert len(server.posted()) == 2


def test_rate_limit_retry_after_really_waited(server, monkeypatch, db):
    """The same on the real clock: the message arrives only after Retry-After has passed."""
    notifier = bot(server, monkeypatch)
    server.script(*RATE_LIMITED["bot"])
    start = time.monotonic()
    delivered = 0
    calls_at: list[float] = []  # the `now` passed to each call, as a POSIX time
    while not delivered and time.monotonic() - start < 10:
        now = dt.datetime.now(dt.UTC)
        calls_at.append(now.timestamp())
        delivered = deliver_due(db, notifier, now, policy=POLICY)
        time.sleep(0.1)
    assert delivered == 1
    first, second = server.calls("chat.postMessage")
    # Retry-After: 1 counts from the `now` of the call that got the 429 (the first call): the
    # retry reaches the server no earlier than that plus one second, however late the first post
    # left on a loaded machine (measuring from the first post's arrival flaked at load 3)
    assert first.at >= calls_at[0] and second.at >= calls_at[0] + 1.0


# -- 3. repeated 5xx and connection errors: exponential backoff, still queued ------------------

SERVER_ERROR = {
    "bot": ("chat.postMessage", Reply(500, "<html>Internal Server Error</html>")),
    "webhook": ("webhook", Reply(503, "service_unavailable")),
}


@pytest.mark.parametrize("kind", ["bot", "webhook"])
def test_repeated_server_errors_back_off_and_stay_queued(server, monkeypatch, db, now, kind,
                                                          capsys, tmp_path):
    notifier = bot(server, monkeypatch) if kind == "bot" else webhook(server, monkeypatch)
    method, reply = SERVER_ERROR[kind]
    server.script(method, reply, reply, reply, reply)
    t, waits = now, []
    for attempt in range(1, 5):
        assert deliver_due(db, notifier, t, POLICY) == 0
        r = row(db)
        assert r["attempts"] == attempt and r["sent_at"] is None and r["failed_at"] is None
        nxt = at(r["next_attempt_at"])
        waits.append((nxt - t).total_seconds())
        # before the next attempt is due, nothing is sent
        assert deliver_due(db, notifier, nxt - dt.timedelta(seconds=1), POLICY) == 0
        assert len(server.posted()) == attempt  # one request per attempt: no hidden sdk retries
        t = nxt
    assert waits == [30, 60, 120, 240]
    status = "500" if kind == "bot" else "503 service_unavailable"
    assert row(db)["last_error"].endswith(f"HTTP {status}")

    # still queued, as `regime-monitor outbox` shows
    capsys.readouterr()
    assert cli.main(["--config", str(CLASSIC_CONFIG), "--db", str(tmp_path / "history.db"),
                     "outbox", "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["dedup_key"] == KEY and shown["sent_at"] is None and shown["attempts"] == 4

    # Slack is back: the next due attempt delivers it
    assert deliver_due(db, notifier, t, POLICY) == 1
    assert row(db)["sent_at"] and len(server.posted()) == 5


def test_backoff_is_capped(server, monkeypatch, db, now):
    notifier = bot(server, monkeypatch)
    policy = RetryPolicy(30, 100)
    server.script("chat.postMessage", *[Reply(502, "bad gateway")] * 4)
    t = now
    for _ in range(4):
        deliver_due(db, notifier, t, policy)
        nxt = at(row(db)["next_attempt_at"])
        assert (nxt - t).total_seconds() <= 100
        t = nxt
    assert (nxt - t).total_seconds() <= 100 and row(db)["attempts"] == 4


@pytest.mark.parametrize("kind", ["bot", "webhook"])
def test_connection_errors_are_retried(server, monkeypatch, db, now, kind):
    dead = f"http://127.0.0.1:{closed_port()}"
    if kind == "bot":
        notifier = bot(server, monkeypatch, api_url=f"{dead}/api/")
    else:
        notifier = webhook(server, monkeypatch, url=f"{dead}/services/{WEBHOOK_SECRET}")
    assert deliver_due(db, notifier, now, POLICY) == 0
    r = row(db)
    assert r["failed_at"] is None and r["sent_at"] is None
    assert "connection error" in r["last_error"]
    assert at(r["next_attempt_at"]) == now + dt.timedelta(seconds=30)


# -- 4. permanent errors: stored with the reason, logged once, never retried -------------------

PERMANENT = {
    "invalid_auth": ("bot", "chat.postMessage", Reply(200, {"ok": False, "error": "invalid_auth"}),
                     "slack: invalid_auth"),
    "channel_not_found": ("bot", "chat.postMessage",
                          Reply(200, {"ok": False, "error": "channel_not_found"}),
                          "slack: channel_not_found"),
    "not_in_channel": ("bot", "chat.postMessage", Reply(200, {"ok": False, "error": "not_in_channel"}),
                       "slack: not_in_channel"),
    "webhook_no_service": ("webhook", "webhook", Reply(404, "no_service"),
                           "slack webhook: HTTP 404 no_service"),
    "webhook_invalid_token": ("webhook", "webhook", Reply(403, "invalid_token"),
                              "slack webhook: HTTP 403 invalid_token"),
}


@pytest.mark.parametrize("case", list(PERMANENT))
def test_permanent_error_is_stored_logged_once_and_not_retried(server, monkeypatch, db, now, case,
                                                              caplog, capsys, tmp_path):
    kind, method, reply, reason = PERMANENT[case]
    notifier = bot(server, monkeypatch) if kind == "bot" else webhook(server, monkeypatch)
    server.script(method, reply)
    caplog.set_level(logging.INFO, logger="regime_monitor")
    assert deliver_due(db, notifier, now, POLICY) == 0
    r = row(db)
    assert r["failed_at"] == now.isoformat()  # the delivery's clock, passed in
    assert r["sent_at"] is None and r["last_error"] == reason
    assert r["attempts"] == 1
    for later in (1, 60, 3600, 86400 * 7):  # no retry loop, however long we wait
        assert deliver_due(db, notifier, now + dt.timedelta(seconds=later), POLICY) == 0
    assert len(server.posted()) == 1
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and reason in errors[0].getMessage()

    capsys.readouterr()
    cli.main(["--config", str(CLASSIC_CONFIG), "--db", str(tmp_path / "history.db"), "outbox"])
    out = capsys.readouterr().out
    assert KEY in out and reason in out


def test_chart_upload_failure_still_delivers_the_digest_once(server, monkeypatch, db, now):
    notifier = bot(server, monkeypatch)
    server.script("files.completeUploadExternal", Reply(200, {"ok": False, "error": "internal_error"}))
    assert deliver_due(db, notifier, now, POLICY) == 1
    r = row(db)
    assert r["sent_at"] and r["last_error"] == ("delivered; chart upload failed: "
                                                "slack files: internal_error")
    assert deliver_due(db, notifier, now + dt.timedelta(hours=1), POLICY) == 0
    assert len(server.calls("chat.postMessage")) == 1


def test_chart_is_not_uploaded_when_switched_off(server, monkeypatch, db, now):
    notifier = bot(server, monkeypatch, chart=False)
    assert deliver_due(db, notifier, now, POLICY) == 1
    assert not server.calls("files.getUploadURLExternal")
    assert "Chart" not in json.dumps(server.posted()[0]["blocks"])


# -- 5. killed between Slack accepting the message and mark_sent -------------------------------

CRASH_SCRIPT = """
import datetime, sys, time
from monitor.delivery import deliver as delivery
from monitor.config import load_config
from monitor.delivery import make_notifier
from storage import outbox
from storage.db import open_db

def hang(*args, **kwargs):  # Slack has answered; the process dies before recording it
    print("posted", flush=True)
    time.sleep(120)

outbox.mark_sent = hang
delivery.deliver_due(open_db(sys.argv[2]), make_notifier(load_config(sys.argv[1])),
                     datetime.datetime.now(datetime.UTC))
"""


def write_config(path: Path, server: SlackServer, extra: str = "", chart: bool = True) -> Path:
    path.write_text(
        f'{extra}\n[notify.slack]\nchannel = "{CHANNEL}"\napi_url = "{server.api_url}"\n'
        f"timeout_seconds = 5\nchart = {str(chart).lower()}\n", encoding="utf-8")
    return path


def child_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXIES and k != WEBHOOK_ENV}
    env.update({"PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN, **extra})
    return env


def test_killed_after_send_before_mark_sent_gives_at_most_one_duplicate(server, monkeypatch, db,
                                                                         tmp_path):
    config = write_config(tmp_path / "monitor.toml", server, chart=False)
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT, encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), str(config), str(tmp_path / "history.db")],
                             cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "posted", child.stderr.read()
        assert len(server.calls("chat.postMessage")) == 1  # Slack accepted it ...
        child.send_signal(signal.SIGKILL)  # ... and the process dies before mark_sent
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    r = row(db)
    assert r["sent_at"] is None and r["attempts"] == 1
    assert r["last_error"].startswith("interrupted: the attempt started")

    # restart: nothing queued is lost. The interrupted attempt is retried once its claim lapses
    # (no second deliverer may send it while a send could still be in flight) ...
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    notifier = make_notifier(load_config(config))
    now = dt.datetime.now(dt.UTC)
    assert deliver_due(db, notifier, now, POLICY) == 0
    later = now + dt.timedelta(seconds=CLAIM_SECONDS + 1)
    assert deliver_due(db, notifier, later, POLICY) == 1
    # ... giving at most one duplicate, which carries the same dedup key
    assert metadata_keys(server) == [KEY, KEY]
    r = row(db)
    assert r["sent_at"] and r["attempts"] == 2 and r["last_error"] is None
    assert deliver_due(db, notifier, later + dt.timedelta(hours=1), POLICY) == 0
    assert len(server.posted()) == 2


def test_a_second_deliverer_skips_a_claimed_row(server, monkeypatch, db, now):
    r = row(db)
    assert outbox.claim(db, r["id"], r["next_attempt_at"], "2999-01-01T00:00:00+00:00",
                        now.isoformat())
    assert not outbox.claim(db, r["id"], r["next_attempt_at"], "2999-01-01T00:00:00+00:00",
                            now.isoformat())
    assert deliver_due(db, bot(server, monkeypatch), now, POLICY) == 0
    assert server.posted() == []


# -- 6. a daemon restarted with undelivered rows delivers them on its first delivery run -------

def test_daemon_restart_delivers_queued_rows_on_first_run(server, tmp_path, classic_config):
    path = tmp_path / "daemon.db"
    d = open_db(path)
    keys = ["digest:2024-02-01", "digest:2024-02-02", "digest:2024-02-05"]
    for key in keys:
        enqueue(d, key, all_firing_payload(classic_config, as_of=key.split(":")[1]))
    rows = {r["dedup_key"]: r for r in outbox.list_rows(d)}
    # left by the previous process: one row delivered, one after a failed attempt, one untouched
    first = rows[keys[0]]
    outbox.claim(d, first["id"], first["next_attempt_at"], first["next_attempt_at"], "x")
    outbox.mark_sent(d, first["id"], f"slack:{CHANNEL}", "2000-01-01T00:00:00+00:00")
    second = rows[keys[1]]
    outbox.claim(d, second["id"], second["next_attempt_at"], second["next_attempt_at"], "x")
    outbox.mark_retry(d, second["id"], "slack: HTTP 500", "2000-01-01T00:00:00+00:00")
    d.close()

    config = write_config(tmp_path / "monitor.toml", server,
                          '[schedule]\ncatch_up_max_days = 0\n\n[source]\nkind = "csv"\n')
    script = Path(sys.executable).parent / "regime-monitor"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "monitor.cli"]
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*cmd, "--config", str(config), "--db", str(path), "run"],
                                cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL,
                                stderr=log, stdin=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        assert server.wait_for(lambda: len(server.posted()) >= 2, timeout=40), log_path.read_text()
        elapsed = time.monotonic() - start
        db2 = open_db(path)
        assert server.wait_for(lambda: all(r["sent_at"] for r in outbox.list_rows(db2, True)), 10)
        db2.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert elapsed < 60  # the start-up delivery run, not the one-minute job
    assert sorted(metadata_keys(server)) == keys[1:]  # the delivered one is not sent again
    text = log_path.read_text(encoding="utf-8")
    assert f"outbox {keys[1]}: delivered to slack:{CHANNEL}" in text
    assert TOKEN not in text and "Traceback" not in text


# -- 7. regime-monitor notify test -------------------------------------------------------------

def notify_test(capsys, config: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["--config", str(config), "notify", "test"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_notify_test_reports_what_slack_answered(server, monkeypatch, tmp_path, capsys):
    config = write_config(tmp_path / "monitor.toml", server)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    code, out, _ = notify_test(capsys, config)
    assert code == 0
    assert out.strip() == (f"ok: slack:{CHANNEL} accepted the test message: channel {CHANNEL_ID}, "
                           f"ts {1700000000 + 1}.000100")
    [post] = server.calls("chat.postMessage")
    assert post.body["metadata"]["event_type"] == "regime_monitor_test"

    server.script("chat.postMessage", Reply(200, {"ok": False, "error": "not_in_channel"}))
    code, out, err = notify_test(capsys, config)
    assert code == 1 and out == ""
    assert err.strip() == (f"regime-monitor: error: slack:{CHANNEL} answered: slack: not_in_channel "
                           "(permanent)")

    monkeypatch.delenv(TOKEN_ENV)
    monkeypatch.setenv(WEBHOOK_ENV, server.webhook_url)
    code, out, _ = notify_test(capsys, config)
    assert code == 0 and out.strip() == "ok: slack:webhook accepted the test message: ok"

    monkeypatch.delenv(WEBHOOK_ENV)
    code, out, err = notify_test(capsys, config)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no Slack destination configured" in err


# -- 8. secrets never leak ---------------------------------------------------------------------

def test_secrets_never_appear_in_logs_database_errors_or_output(server, monkeypatch, now,
                                                                caplog, capsys, tmp_path):
    caplog.set_level(logging.DEBUG)  # everything, slack-sdk included
    db = open_db(tmp_path / "history.db")
    errors: list[str] = []
    dead = f"http://127.0.0.1:{closed_port()}"
    cases = [
        (lambda: bot(server, monkeypatch), ("chat.postMessage", Reply(200, {"ok": False,
                                                                            "error": "invalid_auth"}))),
        (lambda: bot(server, monkeypatch), ("chat.postMessage", Reply(500, f"echo {TOKEN}"))),
        (lambda: bot(server, monkeypatch, api_url=f"{dead}/api/"), None),
        (lambda: webhook(server, monkeypatch), ("webhook", Reply(404, "no_service"))),
        (lambda: webhook(server, monkeypatch), ("webhook", Reply(500, f"{WEBHOOK_SECRET}"))),
        (lambda: webhook(server, monkeypatch, url=f"{dead}/services/{WEBHOOK_SECRET}"), None),
    ]
    for n, (make, script) in enumerate(cases):
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        monkeypatch.delenv(WEBHOOK_ENV, raising=False)
        notifier = make()
        if script:
            server.script(*script)
        try:
            notifier.send(all_firing_payload(load_config(CLASSIC_CONFIG)), KEY)
        except DeliveryError as exc:
            errors.append(str(exc))
        key = f"digest:secret-{n}"
        enqueue(db, key, all_firing_payload(load_config(CLASSIC_CONFIG)))
        if script:
            server.script(*script)
        deliver_due(db, notifier, now + dt.timedelta(seconds=n), POLICY)
        errors.append(row(db, key)["last_error"] or "")
    assert len([e for e in errors if e]) == 2 * len(cases)

    # the CLI too: a failing `notify test`, `config check`, `outbox`
    config = write_config(tmp_path / "monitor.toml", server)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server.script("chat.postMessage", Reply(200, {"ok": False, "error": "invalid_auth"}))
    code, out, err = notify_test(capsys, config)
    assert code == 1
    cli.main(["--config", str(config), "config", "check"])
    cli.main(["--config", str(config), "--db", str(tmp_path / "history.db"), "outbox", "--all"])
    output = out + err + "".join(capsys.readouterr())

    dump = json.dumps([list(r) for t in db.table_names()
                       for r in db.execute(f"SELECT * FROM [{t}]").fetchall()], default=str)
    logs = caplog.text + " ".join(str(r.args) for r in caplog.records)
    for secret in (TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET.split("/")[-1]):
        assert secret not in logs
        assert secret not in dump
        assert not [e for e in errors if secret in e]
        assert secret not in output
    assert any("invalid_auth" in e for e in errors)


def test_secrets_pasted_into_the_config_are_refused_without_echo():
    from monitor.config import ConfigError, parse_config

    for toml in (f'[notify.slack]\nchannel = "{TOKEN}"\n',
                 f'[notify.slack]\napi_url = "https://hooks.slack.com/services/{WEBHOOK_SECRET}"\n'):
        with pytest.raises(ConfigError) as info:
            parse_config(toml, "monitor.toml")
        message = str(info.value)
        assert "secrets belong in $SLACK_BOT_TOKEN / $SLACK_WEBHOOK_URL" in message
        assert TOKEN not in message and WEBHOOK_SECRET not in message


def test_a_token_without_channel_falls_back_to_the_console(monkeypatch, caplog):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    notifier = make_notifier(load_config(CLASSIC_CONFIG))
    assert notifier.destination == "console"
    assert "notify.slack.channel is not" in caplog.text and TOKEN not in caplog.text


def test_an_unexpected_error_keeps_the_row_and_the_other_rows_go_out(db, now, classic_config):
    enqueue(db, "digest:2024-02-06", all_firing_payload(classic_config, as_of="2024-02-06"))

    class Flaky:
        destination = "test"

        def __init__(self):
            self.sent = []

        def send(self, payload, dedup_key):
            if dedup_key == KEY:
                raise KeyError("boom")
            self.sent.append(dedup_key)

    notifier = Flaky()
    assert deliver_due(db, notifier, now, POLICY) == 1
    assert notifier.sent == ["digest:2024-02-06"]
    r = row(db)
    assert r["sent_at"] is None and r["failed_at"] is None
    assert r["last_error"] == "internal error: KeyError: 'boom'"
    assert at(r["next_attempt_at"]) == now + dt.timedelta(seconds=30)


def test_inhibition_can_be_switched_off_in_the_config(server, monkeypatch, db, now, classic_config):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    config = config_for(server)
    config = config.model_copy(update={"notify": config.notify.model_copy(update={"inhibit": False})})
    assert deliver_due(db, make_notifier(config), now, POLICY) == 1
    blocks = server.calls("chat.postMessage")[0].body["blocks"]
    assert len([b for b in blocks if b["type"] == "section"]) == len(classic_config.rules)
    assert "folded under" not in json.dumps(blocks)
