"""The crash harness, extended with the faults that need no crash (issue 12).

Seeded random trials on a real SQLite file, the real ``Service`` and the daemon's own scheduled
job, and Slack through slack-sdk against the loopback server (tests/slack_server.py):

1. **Lock contention during the fetch.** While a cycle's source fetch runs, another connection
   writes (a ``silence add`` or an ``import-csv`` of a harmless file) and may keep its write lock
   a little past the end of the fetch. Every evening's cycle must be done by the end of that
   evening's job (cycles lost: goal 0), and the history equals an uncontended run's.
2. **Lock contention during ``mark_sent``.** Right after Slack accepted a digest, another
   connection takes the write lock for a random while, once longer than SQLite's busy timeout.
   Every digest is delivered and posted exactly once (duplicates without a crash: goal 0).
3. **A wedged Slack endpoint.** The server trickles its answer one byte a second, before or after
   it has recorded the message. Each delivery attempt ends within ``timeout_seconds`` plus a
   little; every digest is delivered once the server recovers; duplicates are counted.
4. **A half-written drop file.** A writer appends a CSV (plain or gzip) to the drop folder in
   slow pieces while evenings run, and sometimes abandons it half-way. No evening's cycle fails
   because of it; the file's rows are in the database all or none, never a part; an abandoned
   gzip is moved to ``rejected/`` with its reason. A symlink to a file holding the secrets (and to
   ``/proc/self/environ``) sits in the drop folder too.

At the end every file the service wrote (database, WAL, drop-folder files, reasons) and every log
record is searched for the bot token and the webhook secret (tokens found anywhere: goal 0).
``-s`` prints the tallies: trials run, cycles lost, duplicates without a crash, tokens found.
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import logging
import random
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor import daemon
from monitor.calendar import TradingCalendar
from monitor.config import load_config
from monitor.daemon import Service
from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV, make_notifier
from monitor.delivery.deliver import CLAIM_SECONDS, RetryPolicy, deliver_due
from monitor.sources.demo_source import DemoSource
from storage import silences
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, table_snapshot
from tests.slack_server import TOKEN, WEBHOOK_SECRET, Reply, SlackServer

SEED = 20261203
TZ = ZoneInfo("Asia/Shanghai")
FIRST = dt.date(2018, 1, 2)
PREPARED_END = dt.date(2018, 2, 28)
CONTENDED_UNTIL = dt.date(2018, 3, 30)  # fault 1: the evenings 2018-03-01 .. here
DROP_UNTIL = dt.date(2018, 3, 16)  # fault 4: the evenings 2018-03-01 .. here
CONFIG_TEXT = CLASSIC_CONFIG.read_text(encoding="utf-8").replace(
    "inhibit = true\n", "inhibit = true\nweekly_summary = true\n", 1)
"""The classic rules with the weekly summary on: a digest every week, many rows to deliver."""
SECRETS = (TOKEN, WEBHOOK_SECRET)
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
TALLY: collections.Counter = collections.Counter()
# the tables whose rows two runs of the same days must share (runs: timestamps; silences: the
# contender's own rows; outbox: timestamps and ids)
COMPARED = ("observations", "signal_values", "alerts", "alert_events", "episodes")


def evening(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(21, 0), tzinfo=TZ)


def write_config(path: Path, extra: str = "", **slack: object) -> Path:
    text = CONFIG_TEXT
    if slack:
        lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in slack.items())
        text = text.replace("[notify.slack]\n", "[notify.slack]\n" + lines, 1)
    path.write_text(text + extra, encoding="utf-8")
    return path


class Clock:
    """The injected clock of a ``Service``: the evening being run."""

    def __init__(self, day: dt.date) -> None:
        self.now = evening(day)

    def __call__(self) -> dt.datetime:
        return self.now


class Silent:
    destination = "silent"

    def send(self, payload, dedup_key, **kwargs):
        return None


def evening_job(config, path: Path, source, clock: Clock):
    """The daemon's scheduled catch-up job (``monitor.daemon``), as the scheduler runs it."""
    factory = lambda: Service(config, path, source=source, notifier=Silent(), clock=clock)  # noqa: E731
    job = daemon._scheduled("catch_up", factory)
    job()


def succeeded_days(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {d for (d,) in con.execute(
            "SELECT DISTINCT as_of FROM runs WHERE job = 'cycle' AND status IN ('ok', 'partial')")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def secrets_env():
    """The secrets in the environment for the whole module, as the daemon would have them."""
    mp = pytest.MonkeyPatch()
    mp.setenv(TOKEN_ENV, TOKEN)
    mp.setenv(WEBHOOK_ENV, f"http://127.0.0.1:9/services/{WEBHOOK_SECRET}")
    for name in PROXIES:
        mp.delenv(name, raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def logs():
    """Every log record of the module, at DEBUG, as text (searched for secrets at the end)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            try:
                records.append(self.format(record))
            except Exception:  # noqa: BLE001 - a record that cannot format is kept raw
                records.append(repr(record.__dict__))

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old)


@pytest.fixture(scope="module")
def base(tmp_path_factory, secrets_env):
    """A database with the evenings 2018-01-02 .. 2018-02-28 done (and their digests queued)."""
    root = tmp_path_factory.mktemp("faults")
    config = load_config(write_config(root / "harness.toml"))
    path = root / "base.db"
    calendar = TradingCalendar(config.calendar.extra_closed)
    source = DemoSource(config.source.demo_seed)
    clock = Clock(PREPARED_END)
    service = Service(config, path, source=source, notifier=Silent(), clock=clock)
    for day in calendar.days(FIRST, PREPARED_END):
        service.run_day(day)
    service.close()
    return root, config, path, source


@pytest.fixture(scope="module")
def reference(base):
    """The uncontended evenings 2018-03-01 .. CONTENDED_UNTIL on a copy of the base."""
    root, config, path, source = base
    ref = root / "reference.db"
    shutil.copy(path, ref)
    calendar = TradingCalendar(config.calendar.extra_closed)
    for day in calendar.days(PREPARED_END + dt.timedelta(days=1), CONTENDED_UNTIL):
        evening_job(config, ref, source, Clock(day))
    return snapshot(ref)


def snapshot(path: Path) -> dict[str, list[tuple]]:
    db = open_db(path)
    try:
        full = table_snapshot(db, exclude=("observations",))
        out = {t: full[t] for t in COMPARED if t != "observations"}
        out["observations"] = sorted(db.execute(  # imported_at: the wall clock of each write
            "SELECT series, date, value, available_at, source FROM observations").fetchall())
        return out
    finally:
        db.close()


# -- 1. lock contention during the fetch ---------------------------------------------------------

class Contended:
    """The demo source; during each fetch another connection writes to the database and commits,
    then (sometimes) takes the write lock again and keeps it a little past the fetch's end."""

    def __init__(self, inner, path: Path, rng: random.Random) -> None:
        self.inner = inner
        self.path = path
        self.rng = rng
        self.kinds: collections.Counter = collections.Counter()
        self._threads: list[threading.Thread] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fetch(self, as_of, since):
        rows = self.inner.fetch(as_of, since)
        kind = self.rng.choice(["silence add", "silence expire", "import-csv"])
        hold = self.rng.choice([0.0, 0.0, self.rng.uniform(0.05, 0.8)])
        self.kinds[kind] += 1
        done, locked = threading.Event(), threading.Event()

        def contend():
            db = open_db(self.path)
            try:
                if kind == "silence add":
                    silences.add(db, "data_stale", as_of + dt.timedelta(days=1), "harness")
                elif kind == "silence expire":
                    sid = silences.add(db, "data_stale", as_of + dt.timedelta(days=1), "harness")
                    silences.expire(db, sid)
                else:
                    import_harmless(db, self.path.parent / f"contender-{as_of}.csv", as_of)
                done.set()
                if hold:
                    db.conn.execute("BEGIN IMMEDIATE")
                    locked.set()
                    time.sleep(hold)
                    db.conn.execute("COMMIT")
            finally:
                done.set()
                locked.set()
                db.close()

        thread = threading.Thread(target=contend, daemon=True)
        thread.start()
        self._threads.append(thread)
        done.wait(30)  # the write lands while the fetch is still running
        if hold:
            locked.wait(30)
        return rows

    def join(self) -> None:
        for thread in self._threads:
            thread.join(30)


HARMLESS = "theme.harness.close"


def import_harmless(db, path: Path, as_of: dt.date) -> None:
    """``import-csv`` of one value of a series no rule reads, dated after every cycle here."""
    from monitor.sources.csv_import import import_files

    value = 1000.0 + as_of.toordinal() % 97
    path.write_text(f"date,series,value\n2025-01-02,{HARMLESS},{value}\n", encoding="utf-8")
    import_files(db, [path])


def test_lock_contention_during_the_fetch_loses_no_cycle(base, reference, logs, capsys):
    root, config, path, source = base
    rng = random.Random(SEED)
    calendar = TradingCalendar(config.calendar.extra_closed)
    days = calendar.days(PREPARED_END + dt.timedelta(days=1), CONTENDED_UNTIL)
    trials = 0
    lost, histories = [], []
    for sequence in range(2):
        db_path = root / f"contended-{sequence}.db"
        shutil.copy(path, db_path)
        contended = Contended(source, db_path, rng)
        for day in days:
            evening_job(config, db_path, contended, Clock(day))
            trials += 1
            if day.isoformat() not in succeeded_days(db_path):
                lost.append(day)
        contended.join()
        histories.append(snapshot(db_path))
    TALLY["trials"] += trials
    TALLY["fault 1: evenings with a write during the fetch"] += trials
    TALLY["cycles lost"] += len(lost)
    with capsys.disabled():
        print(f"\nfault 1: {trials} evenings with a concurrent write during the fetch "
              f"({dict(contended.kinds)} in the last sequence); cycles lost: {len(lost)}")
    assert lost == [], f"{len(lost)} of {trials} evenings lost their cycle: {lost[:5]}"
    for sequence, got in enumerate(histories):
        got["observations"] = [r for r in got["observations"] if HARMLESS not in r]
        assert got == reference, f"sequence {sequence}: history differs from the uncontended run"


# -- 2. and 3.: delivery against a contended database and a wedged Slack ---------------------------

def slack_config(path: Path, server: SlackServer, timeout: int, chart: bool = False) -> Path:
    """The harness config with the bot destination pointed at the loopback server."""
    text = CONFIG_TEXT.replace(
        "timeout_seconds = 30\n",
        f'timeout_seconds = {timeout}\nchannel = "#risk"\napi_url = "{server.api_url}"\n', 1)
    text = text.replace("chart = true", f"chart = {str(chart).lower()}")
    path.write_text(text, encoding="utf-8")
    return path


class FaultySlack(SlackServer):
    """The loopback Slack server with faults on chat.postMessage, chosen per post by ``fault``:
    ``"lock"`` (another connection takes the database's write lock for ``hold`` seconds before
    the answer goes back), ``"trickle"`` (the message is accepted, then the answer is written one
    byte a second), ``"hang"`` (no answer for ``hang`` seconds, then HTTP 503: not accepted)."""

    def __init__(self) -> None:
        super().__init__()
        self._httpd.handle_error = lambda request, client_address: None  # a client that gave up
        self.fault = lambda key, attempt: None
        self.db_path: Path | None = None
        self.accepted: collections.Counter = collections.Counter()
        self.attempts: collections.Counter = collections.Counter()
        self.holders: list[threading.Thread] = []
        self.hang = 8.0

    def _default(self, method, path, req, n):
        if method != "chat.postMessage":
            return super()._default(method, path, req, n)
        key = req.body["metadata"]["event_payload"]["dedup_key"]
        with self._lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
        fault = self.fault(key, attempt)
        if fault and fault[0] == "hang":
            time.sleep(fault[1])
            return Reply(503, {"ok": False, "error": "service_unavailable"})
        reply = super()._default(method, path, req, n)
        with self._lock:
            self.accepted[key] += 1
        if fault and fault[0] == "lock":
            self.holders.append(hold_write_lock(self.db_path, fault[1]))
        elif fault and fault[0] == "trickle":  # accepted; the answer comes one byte a second
            return Reply(reply.status, reply.body, reply.headers, trickle=1.0)
        return reply


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Take the database's write lock on another connection and keep it ``seconds``; return the
    thread once the lock is held."""
    locked = threading.Event()

    def hold():
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(seconds)
            con.execute("COMMIT")
        finally:
            locked.set()
            con.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    locked.wait(30)
    return thread


def unsent(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    finally:
        con.close()


def deliver_until_empty(path: Path, config, start: dt.datetime, rounds: int = 8) -> list[float]:
    """Run the delivery job until the outbox is empty, moving ``now`` past every claim lease and
    backoff between runs; return how long each send attempt took (seconds)."""
    notifier = make_notifier(config)
    took: list[float] = []
    send = notifier.send

    def timed(*args, **kwargs):
        t0 = time.monotonic()
        try:
            return send(*args, **kwargs)
        finally:
            took.append(time.monotonic() - t0)

    notifier.send = timed
    now = start
    for _ in range(rounds):
        db = open_db(path)
        try:
            deliver_due(db, notifier, now, RetryPolicy(30, 3600))
        except Exception as exc:  # the old code let a locked mark_sent escape: the row stays claimed
            logging.getLogger("harness").error("delivery run failed: %s: %s", type(exc).__name__, exc)
        finally:
            db.close()
        if unsent(path) == 0:
            break
        now += dt.timedelta(seconds=CLAIM_SECONDS + 3600)
    return took


@pytest.fixture(scope="module")
def queued(base):
    """The base database: its evenings queued this many digests."""
    _, _, path, _ = base
    count = unsent(path)
    assert count >= 8
    return count


def test_lock_contention_during_mark_sent_posts_each_digest_once(base, queued, logs, capsys):
    root, _, path, _ = base
    rng = random.Random(SEED + 2)
    trials = duplicates = 0
    with FaultySlack() as server:
        config = load_config(slack_config(root / "slack-lock.toml", server, timeout=10))
        for trial in range(3):
            db_path = root / f"lock-{trial}.db"
            shutil.copy(path, db_path)
            server.db_path = db_path
            server.accepted.clear()
            server.attempts.clear()
            # one hold longer than SQLite's busy timeout (10 s) in the first trial; short ones else
            long_key = f"digest:{rng.choice(sorted(keys_of(db_path)))[7:]}" if trial == 0 else None
            plan = {k: (10.5 if k == long_key else rng.uniform(0.05, 0.5)) for k in keys_of(db_path)
                    if k == long_key or rng.random() < 0.5}
            server.fault = lambda key, attempt, plan=plan: (
                ("lock", plan[key]) if key in plan and attempt == 1 else None)
            deliver_until_empty(db_path, config, dt.datetime.now(dt.UTC))
            for holder in server.holders:
                holder.join(30)
            trials += len(plan)
            duplicates += sum(c - 1 for c in server.accepted.values() if c > 1)
            assert unsent(db_path) == 0
            assert set(server.accepted) == keys_of(db_path)
    TALLY["trials"] += trials
    TALLY["fault 2: digests with the write lock taken at mark_sent"] += trials
    TALLY["duplicates without a crash"] += duplicates
    with capsys.disabled():
        print(f"\nfault 2: {trials} deliveries with the write lock held by another connection when "
              f"Slack answered (one for 10.5 s, past the 10 s busy timeout); duplicates without a "
              f"crash: {duplicates}")
    assert duplicates == 0


def keys_of(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {k for (k,) in con.execute("SELECT dedup_key FROM outbox")}
    finally:
        con.close()


def test_a_wedged_slack_endpoint_never_holds_a_delivery_past_its_deadline(base, queued, logs,
                                                                         capsys):
    """Per sequence, 3 of the queued digests meet a wedged endpoint on their first attempt. With
    the ``channels:history`` scope, a retry first looks for the digest in the channel and finds
    the trickled ones: no duplicate. Without it, each post whose answer never arrived is posted
    again (the documented, warned-about duplicate): exactly one per trickled post, never more."""
    root, _, path, _ = base
    rng = random.Random(SEED + 3)
    timeout = 1
    trials = 0
    slowest = 0.0
    duplicates = {}
    for history in (True, False):
        with FaultySlack() as server:
            server.history = history
            config = load_config(slack_config(root / "slack-wedged.toml", server, timeout=timeout))
            db_path = root / f"wedged-{history}.db"
            shutil.copy(path, db_path)
            keys = sorted(keys_of(db_path))
            plan = {k: rng.choice(["trickle", "hang"]) for k in rng.sample(keys, 3)}
            server.fault = lambda key, attempt, plan=plan: (
                (plan[key], 8.0) if key in plan and attempt == 1 else None)
            took = deliver_until_empty(db_path, config, dt.datetime.now(dt.UTC))
            trials += len(plan)
            slowest = max(slowest, *took)
            duplicates[history] = sum(c - 1 for c in server.accepted.values() if c > 1)
            assert unsent(db_path) == 0
            assert set(server.accepted) == set(keys)
            trickled = sum(1 for fault in plan.values() if fault == "trickle")
        if not history:
            assert duplicates[history] == trickled
    TALLY["trials"] += trials
    TALLY["fault 3: posts to a wedged endpoint"] += trials
    TALLY["duplicates without a crash"] += duplicates[True]
    TALLY["duplicates without a crash, app without channels:history (warned)"] += duplicates[False]
    with capsys.disabled():
        print(f"\nfault 3: {trials} posts to a wedged endpoint (trickled after acceptance, or "
              f"hung); slowest attempt {slowest:.1f} s (deadline {timeout} s); duplicates without "
              f"a crash: {duplicates[True]} with the channels:history scope, "
              f"{duplicates[False]} without it")
    assert slowest <= timeout + 2.0
    assert duplicates[True] == 0


# -- 4. a half-written drop file --------------------------------------------------------------------

SETTLE = 2.0  # source.drop_folder_settle_seconds of this fault; a writer pauses at most a quarter of it


class Writer(threading.Thread):
    """Writes ``rows`` observations of its own series into the drop folder in slow pieces (each
    pause shorter than the settle time), as a vendor export lands over a network share; an
    ``abandoned`` writer (gzip only) stops half-way, leaving the stream unterminated."""

    def __init__(self, folder: Path, index: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.series = f"theme.harness{index}.close"
        self.gz = rng.random() < 0.5
        # only a gzip stream can be told apart once abandoned (no end-of-stream marker); a plain
        # CSV cut at any byte can look complete, which is why a writer should use .part names
        self.abandoned = self.gz and rng.random() < 0.5
        self.path = folder / (f"feed-{index}.csv" + (".gz" if self.gz else ""))
        self.rows = rng.randint(40, 160)
        # XSHG trading days only: rows on closed days are skipped by the import (issue 14, bug 8)
        days = TradingCalendar().days(dt.date(2025, 1, 6), dt.date(2025, 12, 31))[:self.rows]
        lines = "".join(f"{day},{self.series},{100 + i * 0.25:.2f}\n"
                        for i, day in enumerate(days))
        self.data = ("date,series,value\n" + lines).encode()
        if self.gz:
            self.data = gzip.compress(self.data)
        self.cut = (rng.randint(len(self.data) // 4, 3 * len(self.data) // 4) if self.abandoned
                    else None)
        self.pauses = [rng.uniform(0.02, 0.25 * SETTLE) for _ in range(rng.randint(3, 8))]

    def run(self) -> None:
        data = self.data if self.cut is None else self.data[:self.cut]
        step = max(1, len(data) // len(self.pauses))
        with open(self.path, "wb") as f:
            for i, pause in enumerate(self.pauses):
                chunk = data[i * step:] if i == len(self.pauses) - 1 else data[i * step:(i + 1) * step]
                f.write(chunk)
                f.flush()
                time.sleep(pause)


def stored_rows(path: Path, series: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT COUNT(*) FROM observations WHERE series = ?",
                           [series]).fetchone()[0]
    finally:
        con.close()


def test_a_half_written_drop_file_is_imported_whole_or_rejected_and_no_cycle_stops(
        base, logs, tmp_path_factory, capsys):
    root, _, path, source = base
    rng = random.Random(SEED + 4)
    drop = root / "drop"
    drop.mkdir()
    outside = tmp_path_factory.mktemp("outside")  # not searched: it holds the secrets on purpose
    secret_file = outside / "secrets.csv"
    secret_file.write_text(f"date,series,value\n2020-01-02,{TOKEN},{WEBHOOK_SECRET}\n",
                           encoding="utf-8")
    (drop / "secrets.csv").symlink_to(secret_file)
    (drop / "environ.csv").symlink_to("/proc/self/environ")
    config_path = root / "drop.toml"
    config_path.write_text(CONFIG_TEXT.replace('drop_folder = ""', f'drop_folder = "{drop}"', 1).replace(
        "drop_folder_settle_seconds = 10", f"drop_folder_settle_seconds = {SETTLE}", 1),
        encoding="utf-8")
    config = load_config(config_path)
    assert config.source.drop_folder == str(drop)
    assert config.source.drop_folder_settle_seconds == SETTLE
    db_path = root / "drop.db"
    shutil.copy(path, db_path)
    calendar = TradingCalendar(config.calendar.extra_closed)
    days = calendar.days(PREPARED_END + dt.timedelta(days=1), DROP_UNTIL)
    writers: list[Writer] = []
    lost, partial = [], []
    for day in days:
        for _ in range(rng.choice([0, 1, 1, 2])):
            writer = Writer(drop, len(writers), rng)
            writers.append(writer)
            writer.start()
        time.sleep(rng.uniform(0.05, 0.5))  # the evening comes while some files are half-written
        evening_job(config, db_path, source, Clock(day))
        if day.isoformat() not in succeeded_days(db_path):
            lost.append(day)
        for writer in writers:
            got = stored_rows(db_path, writer.series)
            if got not in (0, writer.rows):
                partial.append((writer.path.name, got, writer.rows))
    for writer in writers:
        writer.join(30)
    time.sleep(SETTLE + 0.2)
    evening_job(config, db_path, source, Clock(calendar.next(DROP_UNTIL)))
    complete = [w for w in writers if not w.abandoned]
    abandoned = [w for w in writers if w.abandoned]
    rejected = {p.name for p in (drop / "rejected").iterdir()} if (drop / "rejected").exists() else set()
    for writer in complete:
        assert stored_rows(db_path, writer.series) == writer.rows, writer.path.name
    for writer in abandoned:
        assert stored_rows(db_path, writer.series) == 0, writer.path.name
        assert any(n.endswith(f"{writer.path.name}.error.txt") for n in rejected), writer.path.name
    for name in ("secrets.csv", "environ.csv"):
        assert any(n.endswith(f"-{name}.error.txt") for n in rejected), name
    assert not [p for p in drop.iterdir() if p.is_file() or p.is_symlink()], "files left waiting"
    trials = len(writers) + 2
    TALLY["trials"] += trials
    TALLY["fault 4: drop files written while cycles run (and 2 symlinks)"] += trials
    TALLY["cycles lost"] += len(lost)
    with capsys.disabled():
        print(f"\nfault 4: {len(writers)} files written into the drop folder while {len(days)} "
              f"evenings ran ({len(abandoned)} abandoned half-way), 2 symlinks to secrets; "
              f"partial imports seen: {len(partial)}; cycles lost: {len(lost)}")
    assert partial == [] and lost == []


# -- the end: no secret anywhere ------------------------------------------------------------------

def test_zz_no_secret_in_any_file_or_log_record(base, logs, capsys):
    """Runs last (pytest keeps file order): every file the faults above left under the harness's
    directory, and every log record of the module, searched for the token and the webhook secret."""
    root = base[0]
    found = []
    files = 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        files += 1
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {s[:8]}..." for s in SECRETS if s.encode() in data]
    found += [f"log: {line[:80]}" for line in logs for s in SECRETS if s in line]
    TALLY["files and log records searched"] += files + len(logs)
    TALLY["tokens found anywhere"] += len(found)
    with capsys.disabled():
        print(f"\nsecrets: {files} files and {len(logs)} log records searched; tokens found: "
              f"{len(found)}")
        print("harness tally: " + ", ".join(f"{k}: {v}" for k, v in TALLY.items()))
    assert found == []
