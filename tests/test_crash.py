"""Crash consistency and failing disks (issue 7: item 1, and the disk part of item 3).

1. Daily cycles SIGKILLed at random moments: a worker process (tests/crash_worker.py, which
   imports the service once and forks one child per life) catches up 2018-03-01 .. 2018-04-27 of
   the demo scenario on a real SQLite file, as the daemon does at start-up; the test kills it at
   random (seeded) moments spread over its life, plus kills aimed at the COMMIT of a random cycle,
   and restarts it until every day is done. After each kill: ``PRAGMA integrity_check`` is ok, no
   partial cycle is visible, and every cycle whose COMMIT returned is there. At the end the domain
   tables equal those of an uninterrupted run and every alert transition is there exactly once.
2. Outbox deliveries SIGKILLed at random moments against the loopback Slack server
   (tests/slack_server.py): by the test at random delays, by the server the moment a post arrives
   (before it answers), while the server delays its answers, and while the chart is rendered
   after Slack accepted the message. Restarted with the injected ``now`` moved past the claim
   lease until the outbox is empty. Every digest is delivered, and each key is posted exactly
   1 + (number of kills between Slack accepting that key's post and its ``mark_sent``) times: the
   documented duplicate, with the same dedup key in its metadata and footer. The duplicate is per
   crash, so the test never lands a second kill in the same key's window (it postpones the kill
   until that row is marked sent) and then asserts at most two posts per key. The final outbox
   equals that of an uninterrupted delivery of the same rows (ids, timestamps and attempt counters
   aside: same keys, kinds, payloads as sent, destinations, all sent, none failed), and Slack got
   the same set of messages as in that run.
3. A read-only database file or directory fails ``once`` with a one-line error and no traceback,
   leaves the database unchanged, and the run after the permissions are restored succeeds. A full
   database (``PRAGMA max_page_count``) fails the cycle without writing it; the next run succeeds.
   The database file is created owner-only.
4. The real daemon (``regime-monitor run``: monitor.cli.main in its own interpreter, with
   tests/test_ops.py's clock and trigger seams and a delivery clock one claim lease later per
   restart) SIGKILLed at random moments while its
   start-up catch-up runs 2018-03-01 .. 2018-05-23 and delivers the 8 digests (with charts) to the
   loopback Slack server: in start-up, in (or just before) a cycle of the catch-up, during
   delivery, and when Slack receives a post (by the server, or a little later by the test).
   Restarted until it has caught up and delivered everything (its scheduler started), then
   stopped with SIGTERM. After each kill: integrity, no partial cycle, no lost transition; at the
   end: the domain tables and the outbox of an uninterrupted daemon run on the same days, the
   same set of Slack messages, every digest posted once, twice only after a kill between Slack
   receiving it and mark_sent (never a second kill in that window), its dedup key in the metadata.

Markers written by the worker's children (see tests/crash_worker.py) tell where each kill landed;
``-s`` prints the tallies.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import random
import select
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.calendar import TradingCalendar
from monitor.config import load_config
from monitor.daemon import Service
from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV
from monitor.delivery.deliver import CLAIM_SECONDS
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, ROOT, RecordingNotifier
from tests.procs import (
    OBEY_MODES,
    TABLES,
    connect,
    differences,
    domain_snapshot,
    frozen_snapshot,
    integrity,
)
from tests.slack_server import TOKEN, SlackServer
from tests.test_ops import SEAMED_DAEMON, Daemon, environment, evening

FIRST = dt.date(2018, 1, 2)
PREPARED_END = dt.date(2018, 2, 28)  # the prepared database: cycles up to here
CRASH_CONFIG_TEXT = CLASSIC_CONFIG.read_text(encoding="utf-8").replace(
    "inhibit = true\n", "inhibit = true\nweekly_summary = true\n", 1)
"""The classic rules with the weekly summary on: a digest every week, so the crash tests have many
rows to deliver (otherwise a digest goes out only when an alert fires or resolves)."""
CRASH_CONFIG = Path()  # set by the crash_config fixture before any test of this module runs


@pytest.fixture(scope="module", autouse=True)
def crash_config(tmp_path_factory) -> Path:
    global CRASH_CONFIG
    CRASH_CONFIG = tmp_path_factory.mktemp("config") / "crash.toml"
    CRASH_CONFIG.write_text(CRASH_CONFIG_TEXT, encoding="utf-8")
    return CRASH_CONFIG


CYCLE_UNTIL = dt.date(2018, 4, 27)  # the crash sequences catch up 2018-03-01 .. here
DELIVERY_UNTIL = dt.date(2018, 6, 29)  # the delivery database: cycles up to here
FIRE_DAY = "2018-03-29"  # the demo's micro-cap drawdown alert fires on this day
SEED = 20240507
MIN_CYCLE_KILLS = 60
MIN_CYCLE_SEQUENCES = 6
MIN_DELIVERY_KILLS = 50
MIN_DELIVERY_SEQUENCES = 4
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")

# The domain tables, and the columns that legitimately differ between two runs of the same days
# (autoincrement ids, wall-clock timestamps).
TRANSITION = ("rule", "date", "event", "from_state", "to_state")

MID_CYCLE = ("in a cycle, before its transaction", "in a cycle, inside its open transaction",
             "during COMMIT (rolled back)", "during COMMIT (kept)",
             "after COMMIT, before the cycle returned")


# -- the worker ---------------------------------------------------------------------------------

@dataclass
class Marker:
    pid: int
    t: float  # the child's time.monotonic() (the same clock as the test's)
    event: str
    arg: str


@dataclass
class Life:
    pid: int
    markers: list[Marker]
    killed_at: float | None  # when the test sent SIGKILL (None: it did not)
    code: int  # exit code; -9: SIGKILL

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    def last(self) -> Marker | None:
        return self.markers[-1] if self.markers else None


class WorkerError(AssertionError):
    pass


class Worker:
    """tests/crash_worker.py as a subprocess; ``life()`` runs one forked child and kills it."""

    def __init__(self, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in PROXIES and k != WEBHOOK_ENV}
        env.update({"PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN, "OPENBLAS_NUM_THREADS": "1",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                    "CRASH_WORKER_CONFIG": str(CRASH_CONFIG), "NO_PROXY": "127.0.0.1"})
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "crash_worker.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, cwd=ROOT, env=env, bufsize=0)
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        line = self._line(120)
        if line != "Z ready":
            raise WorkerError(f"worker did not start: {line!r}\n{self.log_tail()}")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def _fill(self, timeout: float) -> bool:
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return False
        chunk = os.read(self.fd, 65536)
        if not chunk:
            raise WorkerError(f"the worker exited\n{self.log_tail()}")
        self.buf += chunk
        return True

    def _line(self, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if not self._fill(end - time.monotonic()) and time.monotonic() >= end:
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def _available(self) -> list[str]:
        """The complete lines already written (without waiting)."""
        while self._fill(0):
            pass
        *lines, self.buf = self.buf.split(b"\n")
        return [x.decode() for x in lines]

    def life(self, cmd: dict, delay: float | None = None, on_marker=None, may_kill=None,
             limit: float = 60.0) -> Life:
        """Run one child; SIGKILL it ``delay`` seconds after it started (if still alive), or when
        ``on_marker(marker, markers)`` says so. ``may_kill(markers)`` can postpone a timed kill:
        it is then retried after each further marker."""
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        markers: list[Marker] = []
        state = {"pid": None, "kill_at": None, "killed_at": None, "pending": False}
        hard_end = time.monotonic() + limit

        def kill() -> None:
            os.kill(state["pid"], signal.SIGKILL)  # not reaped yet: the pid is still the child's
            state["killed_at"] = time.monotonic()
            state["kill_at"] = None
            state["pending"] = False

        def process(line: str) -> bool:
            """Handle one line; return True when the child has ended."""
            if line.startswith("Z dead"):
                return True
            if not line.startswith("M "):
                raise WorkerError(f"unexpected line {line!r}\n{self.log_tail()}")
            _, pid, t, event, *arg = line.split(" ", 4)
            m = Marker(int(pid), float(t), event, arg[0] if arg else "")
            markers.append(m)
            if event == "hello":
                state["pid"] = int(pid)
                if delay is not None:
                    state["kill_at"] = m.t + delay
            if state["killed_at"] is None and state["pid"] is not None:
                if on_marker is not None and on_marker(m, markers):
                    kill()
                elif state["pending"] and (may_kill is None or may_kill(markers)):
                    kill()
            return False

        dead = overran = False
        while not dead:
            now = time.monotonic()
            wait = hard_end - now
            if state["kill_at"] is not None:
                wait = min(wait, state["kill_at"] - now)
            line = self._line(max(0.0, wait))
            if line is not None:
                dead = process(line)
                continue
            if time.monotonic() >= hard_end:
                if state["pid"] is None or overran:
                    raise WorkerError(f"the child is stuck\n{self.log_tail()}")
                if state["killed_at"] is None:
                    kill()
                overran, hard_end = True, time.monotonic() + 30
                continue
            if state["kill_at"] is not None and time.monotonic() >= state["kill_at"]:
                # the guard must see every marker written so far
                for pending_line in self._available():
                    if process(pending_line):
                        dead = True
                        break
                if dead or state["killed_at"] is not None:
                    continue
                if may_kill is None or may_kill(markers):
                    kill()
                else:
                    state["kill_at"], state["pending"] = None, True
        self.proc.stdin.write(b"reap\n")
        line = self._line(30)
        if line is None or not line.startswith("Z status"):
            raise WorkerError(f"no exit status: {line!r}\n{self.log_tail()}")
        code = int(line.split()[3])
        if overran:
            raise WorkerError(f"a life ran for more than {limit} s\n{self.log_tail()}")
        return Life(state["pid"], markers, state["killed_at"], code)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = Worker(tmp_path_factory.mktemp("worker") / "worker.log")
    yield w
    w.close()


# -- databases ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The demo scenario run day by day from FIRST to PREPARED_END (a closed, clean file)."""
    path = tmp_path_factory.mktemp("crash") / "prepared.db"
    service = Service(load_config(CRASH_CONFIG), path, notifier=RecordingNotifier())
    for day in service.calendar.days(FIRST, PREPARED_END):
        service.run_day(day)
    service.close()
    return path


def transitions(path: Path) -> list[tuple]:
    con = connect(path)
    try:
        return con.execute(f"SELECT {', '.join(TRANSITION)} FROM alert_events").fetchall()
    finally:
        con.close()


def last_cycle_day(path: Path) -> str:
    con = connect(path)
    try:
        return con.execute("SELECT MAX(as_of) FROM runs WHERE job = 'cycle' AND status IN "
                           "('ok', 'partial', 'fetch_failed')").fetchone()[0]
    finally:
        con.close()


def cycle_cmd(path: Path, until: dt.date) -> dict:
    return {"op": "cycle", "db": str(path), "config": str(CRASH_CONFIG),
            "until": until.isoformat()}


@dataclass
class Reference:
    path: Path
    days: list[str]
    snapshot: dict[str, list[tuple]]
    transitions: list[tuple]
    open_s: float  # child start to database open
    day_s: dict[str, float]  # each cycle's duration
    commit_s: float  # median COMMIT duration


def durations(markers: list[Marker]) -> tuple[dict[str, float], list[float]]:
    days, commits, started, commit = {}, [], {}, None
    for m in markers:
        if m.event == "S":
            started[m.arg] = m.t
        elif m.event == "D":
            days[m.arg] = m.t - started[m.arg]
        elif m.event == "c":
            commit = m.t
        elif m.event == "C" and commit is not None:
            commits.append(m.t - commit)
            commit = None
    return days, commits


@pytest.fixture(scope="module")
def reference(prepared, worker, tmp_path_factory) -> Reference:
    """The uninterrupted run of the crash sequences' days, by the same worker."""
    path = tmp_path_factory.mktemp("reference") / "reference.db"
    shutil.copy(prepared, path)
    life = worker.life(cycle_cmd(path, CYCLE_UNTIL))
    assert life.code == 0, worker.log_tail()
    day_s, commits = durations(life.markers)
    days = sorted(day_s)
    assert days[0] == "2018-03-01" and days[-1] == CYCLE_UNTIL.isoformat() and len(days) >= 35
    opened = next(m.t for m in life.markers if m.event == "open")
    events = transitions(path)
    assert ("microcap_drawdown", FIRE_DAY, "firing") in [e[:3] for e in events]
    assert integrity(path) == ["ok"]
    return Reference(path, days, domain_snapshot(path), events, opened - life.markers[0].t, day_s,
                     sorted(commits)[len(commits) // 2])


# -- 1. cycles killed at random points ----------------------------------------------------------

def where_cycle(life: Life, committed_day: str | None) -> str:
    """Where a kill landed, from the child's last marker."""
    last = life.last()
    event = last.event if last else None
    if event in (None, "hello"):
        return "start-up, opening the database"
    if event in ("open", "D"):
        return "between cycles"
    if event == "S":
        return "in a cycle, before its transaction"
    if event == "B":
        return "in a cycle, inside its open transaction"
    if event == "c":
        in_flight = [m.arg for m in life.markers if m.event == "S"][-1]
        return "during COMMIT (kept)" if committed_day == in_flight else "during COMMIT (rolled back)"
    if event == "C":
        return "after COMMIT, before the cycle returned"
    return "after the last cycle"


def check_no_partial_cycle(path: Path, reference_transitions: list[tuple]) -> str:
    """Integrity and atomicity after a kill: every write of the last committed cycle and none of
    a later one, no failed run, and the alert transitions of the uninterrupted run up to that
    day, each once. Return that day."""
    assert integrity(path) == ["ok"]
    con = connect(path)
    try:
        last = last_cycle_day(path)
        failed = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'failed'").fetchone()[0]
        assert failed == 0  # SIGKILL leaves no failed row: there was no chance to write one
        # no partial cycle: every write of the last committed cycle, none of a later one
        assert {r[0] for r in con.execute("SELECT DISTINCT last_evaluated FROM alerts")} == {last}
        assert con.execute("SELECT MAX(date) FROM signal_values").fetchone()[0] == last
        for sql in ("SELECT COUNT(*) FROM alert_events WHERE date > ?",
                    "SELECT COUNT(*) FROM outbox WHERE as_of > ?",
                    "SELECT COUNT(*) FROM observations WHERE available_at > ?",
                    "SELECT COUNT(*) FROM signal_values WHERE date > ?"):
            assert con.execute(sql, [last]).fetchone()[0] == 0, sql
        got = collections.Counter(con.execute(
            f"SELECT {', '.join(TRANSITION)} FROM alert_events").fetchall())
        want = collections.Counter(e for e in reference_transitions if e[1] <= last)
        assert got == want
    finally:
        con.close()
    return last


def check_after_cycle_kill(path: Path, ref: Reference, life: Life, before: str) -> str:
    """Integrity, atomicity and durability after a killed life; return where the kill landed."""
    last = check_no_partial_cycle(path, ref.transitions)
    # durable: a cycle whose COMMIT returned survives; one killed before COMMIT is not there
    started = [m.arg for m in life.markers if m.event == "S"]
    returned = sum(m.event == "C" for m in life.markers)  # one COMMIT per cycle
    expected = started[returned - 1] if returned else before
    where = where_cycle(life, last)
    if where.startswith("during COMMIT"):
        assert last in (expected, started[-1])
    else:
        assert last == expected, (where, last, expected)
    return where


def test_cycles_killed_at_random_points_end_in_the_uninterrupted_state(prepared, reference, worker,
                                                                       tmp_path):
    rng = random.Random(SEED)
    kills: list[tuple[int, str]] = []
    lives = 0
    sequence = 0
    start = time.monotonic()
    while len(kills) < MIN_CYCLE_KILLS or sequence < MIN_CYCLE_SEQUENCES:
        sequence += 1
        assert sequence <= 40, f"only {len(kills)} kills in {sequence - 1} sequences"
        path = tmp_path / f"sequence-{sequence}.db"
        shutil.copy(prepared, path)
        for _ in range(200):
            before = last_cycle_day(path)
            remaining = [d for d in reference.days if d > before]
            if not remaining:
                break
            lives += 1
            delay, on_marker = None, None
            aim = rng.random()
            if aim < 0.3:
                # aimed at the COMMIT of a random remaining cycle: a random fraction of a COMMIT's
                # duration after it started (20%), or as soon as it returned (10%)
                event = "c" if aim < 0.2 else "C"
                target = rng.randrange(len(remaining)) + 1
                lag = rng.uniform(0, 1.5 * reference.commit_s) if event == "c" else 0.0

                def on_marker(m, markers, event=event, target=target, lag=lag):
                    if m.event != event or sum(x.event == event for x in markers) != target:
                        return False
                    end = time.monotonic() + lag
                    while time.monotonic() < end:
                        pass
                    return True
            else:
                expected = reference.open_s + sum(reference.day_s[d] for d in remaining)
                delay = rng.uniform(0, 1.1 * expected)
            life = worker.life(cycle_cmd(path, CYCLE_UNTIL), delay=delay, on_marker=on_marker)
            if life.killed:
                kills.append((sequence, check_after_cycle_kill(path, reference, life, before)))
            else:
                assert life.code == 0, worker.log_tail()
                assert life.last().event == "end"
        else:
            pytest.fail(f"sequence {sequence} did not finish")
        # the end state of the interrupted sequence is that of the uninterrupted run
        assert integrity(path) == ["ok"]
        problems = differences(domain_snapshot(path), reference.snapshot)
        assert not problems, f"sequence {sequence}: " + "; ".join(problems)
        counts = collections.Counter(transitions(path))
        assert counts == collections.Counter(reference.transitions)
        assert set(counts.values()) == {1}  # every transition exactly once
    tally = collections.Counter(where for _, where in kills)
    mid = sum(tally[w] for w in MID_CYCLE)
    print(f"\ncycle crash test: {len(kills)} kills in {lives} lives over {sequence} sequences "
          f"({time.monotonic() - start:.1f} s); {mid} mid-cycle")
    for where, n in sorted(tally.items(), key=lambda x: -x[1]):
        print(f"  {n:3d}  {where}")
    assert len(kills) >= MIN_CYCLE_KILLS
    # the kills are spread: inside transactions and around COMMIT, not only between cycles
    assert tally["in a cycle, inside its open transaction"] >= 5
    assert tally["during COMMIT (kept)"] + tally["during COMMIT (rolled back)"] + \
        tally["after COMMIT, before the cycle returned"] >= 5
    assert mid >= len(kills) // 2


# -- 2. deliveries killed at random points ------------------------------------------------------

@dataclass
class Arm:
    """Kill the child when its n-th post of this life reaches the server (before the answer)."""
    n: int
    pid: int | None = None


class CrashSlack(SlackServer):
    """The loopback Slack server, able to delay its answer to chat.postMessage and to SIGKILL the
    delivering process the moment a post arrives."""

    def __init__(self) -> None:
        super().__init__()
        self._httpd.handle_error = lambda request, client_address: None  # a killed client
        self.delay = 0.0
        self.arm: Arm | None = None
        self.crashed: set[str] = set()  # keys already interrupted after Slack accepted them
        self.posts_in_life = 0
        self.killed_on: str | None = None
        self.connections = 0  # accepted and not yet closed
        self._count_lock = threading.Lock()
        process, shutdown = self._httpd.process_request, self._httpd.shutdown_request

        def process_request(request, client_address):  # in the accepting thread
            with self._count_lock:
                self.connections += 1
            process(request, client_address)

        def shutdown_request(request):  # after the connection's handler, always
            try:
                shutdown(request)
            finally:
                with self._count_lock:
                    self.connections -= 1

        self._httpd.process_request = process_request
        self._httpd.shutdown_request = shutdown_request

    def _handle(self, handler, raw: bytes) -> None:
        if len(raw) < int(handler.headers.get("Content-Length") or 0):
            return  # the client died while sending: Slack never gets an incomplete request
        super()._handle(handler, raw)

    def _default(self, method, path, req, n):
        if method == "chat.postMessage":
            key = req.body["metadata"]["event_payload"]["dedup_key"]
            self.posts_in_life += 1
            arm = self.arm
            if (arm is not None and arm.pid is not None and self.posts_in_life == arm.n
                    and key not in self.crashed and self.killed_on is None):
                os.kill(arm.pid, signal.SIGKILL)  # the worker has not reaped it: still ours
                self.killed_on = key
            elif self.delay:
                time.sleep(self.delay)
        return super()._default(method, path, req, n)

    @contextlib.contextmanager
    def sequence(self):
        """One delivery sequence: the requests of the previous one are forgotten."""
        with self._lock:
            self.requests.clear()
        yield self

    def settle(self) -> None:
        """Wait until every request the ended child managed to send has been handled: all its
        connections closed, and nothing new for a while."""
        seen, quiet = -1, 0
        deadline = time.monotonic() + 10
        while quiet < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
            with self._lock:
                count = len(self.requests)
            quiet = quiet + 1 if count == seen and self.connections == 0 else 0
            seen = count
        assert quiet >= 3, "the Slack server did not settle"

    def post_keys(self, start: int = 0) -> list[str]:
        with self._lock:
            return [r.body["metadata"]["event_payload"]["dedup_key"] for r in self.requests[start:]
                    if r.method == "chat.postMessage"]


@pytest.fixture(scope="module")
def delivery_db(reference, worker, tmp_path_factory) -> Path:
    """The reference database with the cycles continued to DELIVERY_UNTIL: queued digests."""
    path = tmp_path_factory.mktemp("delivery") / "outbox.db"
    shutil.copy(reference.path, path)
    life = worker.life(cycle_cmd(path, DELIVERY_UNTIL))
    assert life.code == 0, worker.log_tail()
    con = connect(path)
    queued = con.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    con.close()
    assert queued >= 10
    return path


def outbox_rows(path: Path) -> dict[str, dict]:
    con = connect(path)
    con.row_factory = sqlite3.Row
    try:
        return {r["dedup_key"]: dict(r) for r in con.execute("SELECT * FROM outbox")}
    finally:
        con.close()


def outbox_state(path: Path) -> dict[str, tuple]:
    """The outbox rows without what legitimately differs between two deliveries of the same rows
    (id, the creation, next-attempt and sent timestamps, the attempt counter): dedup key -> kind,
    day, payload as sent, destination, last error (a note, or the interrupted attempt of an
    unsent row), sent or not, failure."""
    return {k: (r["kind"], r["as_of"], r["payload"], r["destination"], r["last_error"],
                r["sent_at"] is not None, r["failed_at"]) for k, r in outbox_rows(path).items()}


def posted_messages(server: SlackServer) -> collections.Counter[str]:
    """The messages posted to Slack (whole chat.postMessage bodies, as canonical JSON)."""
    return collections.Counter(json.dumps(r.body, sort_keys=True)
                               for r in server.calls("chat.postMessage"))


def uninterrupted_delivery(worker: Worker, server: CrashSlack, start: Path, config: Path,
                           now: dt.datetime, path: Path) -> tuple[dict, collections.Counter]:
    """Deliver a copy of ``start`` with no kill (one life); return its final ``outbox_state``
    and the messages Slack got."""
    shutil.copy(start, path)
    server.crashed, server.arm, server.delay = set(), None, 0.0
    server.posts_in_life, server.killed_on = 0, None
    with server.sequence():
        life = worker.life({"op": "deliver", "db": str(path), "config": str(config),
                            "now": now.isoformat()})
        assert life.code == 0 and life.last().event == "end", worker.log_tail()
        server.settle()
        state, posted = outbox_state(path), posted_messages(server)
    assert all(sent and failed is None for *_, sent, failed in state.values())
    queued = sorted(k for k, r in outbox_rows(start).items() if r["sent_at"] is None)
    assert sorted(json.loads(m)["metadata"]["event_payload"]["dedup_key"]
                  for m in posted.elements()) == queued  # each queued row posted once
    return state, posted


def where_delivery(life: Life, posted: list[str], window: list[str], server_kill: bool) -> str:
    last = life.last()
    event = last.event if last else None
    if server_kill:
        return "post received by Slack, before its answer (killed by the server)"
    if window:
        if event == "P":
            return "after Slack accepted the post: awaiting the answer or uploading the chart"
        if event == "A":
            return "after Slack accepted the post: send returned, before mark_sent"
        return "after Slack accepted the post: during mark_sent (rolled back)"
    if event == "m":
        return "during mark_sent (kept)"
    if event in ("K", "P"):
        return "row claimed, before Slack had the post"
    if event in (None, "hello", "open"):
        return "start-up"
    if event == "M":
        return "after mark_sent, before the next claim"
    return "after the last row"


def write_slack_config(path: Path, server: SlackServer, chart: bool) -> Path:
    """A config whose bot destination is ``server`` (delivery reads nothing else from it)."""
    path.write_text(f'[notify.slack]\nchannel = "#micro-cap-risk"\napi_url = "{server.api_url}"\n'
                    f"timeout_seconds = 5\nchart = {str(chart).lower()}\n", encoding="utf-8")
    return path


@pytest.fixture
def server(monkeypatch):
    for name in PROXIES:  # loopback only
        monkeypatch.delenv(name, raising=False)
    with CrashSlack() as s:
        yield s


def test_deliveries_killed_at_random_points_deliver_everything_with_one_duplicate_at_most(
        delivery_db, worker, server, tmp_path):
    rng = random.Random(SEED + 1)
    keys = sorted(outbox_rows(delivery_db))
    uninterrupted: dict[tuple[bool, tuple[str, ...]], tuple[dict, collections.Counter]] = {}
    kills: list[str] = []
    duplicates = 0
    lives = 0
    per_row = {True: [0.15], False: [0.02]}  # seconds per row, learnt from complete rows
    open_s = 0.05
    sequence = 0
    start = time.monotonic()
    while len(kills) < MIN_DELIVERY_KILLS or sequence < MIN_DELIVERY_SEQUENCES:
        sequence += 1
        assert sequence <= 30, f"only {len(kills)} kills in {sequence - 1} sequences"
        chart = sequence % 3 == 1  # a chart takes ~0.1 s to render after Slack accepted the post
        path = tmp_path / f"outbox-{sequence}.db"
        shutil.copy(delivery_db, path)
        queued = keys
        if chart:  # fewer rows: a chart takes ~0.1 s to render
            queued = sorted(rng.sample(keys, 5))
            con = connect(path)
            with con:
                con.execute("UPDATE outbox SET sent_at = '2018-07-01T00:00:00+00:00', "
                            f"destination = 'earlier' WHERE dedup_key NOT IN ({', '.join('?' * 5)})",
                            queued)
            con.close()
        config = write_slack_config(tmp_path / f"monitor-{sequence}.toml", server, chart)
        # the injected now: past every row's creation, then one claim lease later per life
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=5)
        if (chart, tuple(queued)) not in uninterrupted:  # the same start, delivered without a kill
            uninterrupted[chart, tuple(queued)] = uninterrupted_delivery(
                worker, server, path, config, now, tmp_path / f"uninterrupted-{sequence}.db")
        want_outbox, want_posted = uninterrupted[chart, tuple(queued)]
        with server.sequence():
            crashed: collections.Counter[str] = collections.Counter()
            for _ in range(200):
                rows = outbox_rows(path)
                unsent = [k for k, r in rows.items() if r["sent_at"] is None or r["chart_due"]]
                assert not [k for k, r in rows.items() if r["failed_at"]]
                if not unsent:
                    break
                lives += 1
                server.crashed = set(crashed)
                server.posts_in_life, server.killed_on, server.arm = 0, None, None
                server.delay = rng.uniform(0, 0.03) if not chart and rng.random() < 0.6 else 0.0
                first_request = len(server.requests)
                delay, on_marker = None, None
                if rng.random() < 0.25:
                    server.arm = Arm(rng.randrange(len(unsent)) + 1)

                    def on_marker(m, markers, arm=server.arm):
                        if m.event == "hello":
                            arm.pid = m.pid
                        return False
                else:
                    typical = sorted(per_row[chart])[len(per_row[chart]) // 2] + server.delay
                    delay = rng.uniform(0.8 * open_s, 1.1 * (open_s + len(unsent) * typical))

                def may_kill(markers, crashed_keys=frozenset(crashed)):
                    """No second kill between Slack accepting a key and its mark_sent."""
                    in_flight = None
                    for m in markers:
                        if m.event == "K":
                            in_flight = m.arg
                        elif m.event == "M":
                            in_flight = None
                    return in_flight not in crashed_keys

                cmd = {"op": "deliver", "db": str(path), "config": str(config),
                       "now": now.isoformat()}
                life = worker.life(cmd, delay=delay, on_marker=on_marker, may_kill=may_kill)
                server.settle()
                now += dt.timedelta(seconds=CLAIM_SECONDS + 1)
                claimed = {m.arg: m.t for m in life.markers if m.event == "K"}
                for m in life.markers:
                    if m.event == "M" and m.arg in claimed and not server.delay:
                        per_row[chart].append(m.t - claimed[m.arg])
                opened = [m.t for m in life.markers if m.event == "open"]
                if opened:
                    open_s = opened[0] - life.markers[0].t
                if not life.killed:
                    assert life.code == 0, worker.log_tail()
                    continue
                assert integrity(path) == ["ok"]
                after = outbox_rows(path)
                posted = server.post_keys(first_request)
                window = sorted({k for k in posted if after[k]["sent_at"] is None})
                assert len(window) <= 1
                for key in window:
                    crashed[key] += 1
                    # the row stays queued, saying the attempt may have been delivered
                    assert after[key]["last_error"].startswith("interrupted: the attempt started")
                    assert after[key]["failed_at"] is None
                if server.killed_on is not None:
                    assert window == [server.killed_on]
                kills.append(where_delivery(life, posted, window, server.killed_on is not None))
            else:
                pytest.fail(f"delivery sequence {sequence} did not finish")

            # everything delivered, no key more than twice, every duplicate explained by a kill
            rows = outbox_rows(path)
            assert sorted(rows) == keys
            assert all(r["sent_at"] and r["failed_at"] is None for r in rows.values())
            posts = collections.Counter(server.post_keys())
            assert set(posts) == set(queued)
            for key in queued:
                assert posts[key] == 1 + crashed[key], (key, posts[key], crashed[key])
                assert posts[key] <= 2
                assert rows[key]["attempts"] >= posts[key]
            duplicates += sum(n - 1 for n in posts.values())
            # each post carries its dedup key in the metadata and the footer; a duplicate is the
            # same message
            by_key: dict[str, list[dict]] = collections.defaultdict(list)
            for body in server.posted():
                key = body["metadata"]["event_payload"]["dedup_key"]
                assert body["metadata"]["event_type"] == "regime_monitor_digest"
                assert f"`{key}`" in json.dumps(body["blocks"])
                by_key[key].append(body)
            for bodies in by_key.values():
                assert all(b["text"] == bodies[0]["text"] for b in bodies)
                assert all(b["blocks"] == bodies[0]["blocks"] for b in bodies)
            if chart:  # every digest's chart went into its thread at least once
                uploads = len(server.calls("files.completeUploadExternal"))
                assert uploads >= len(queued)
            # the final outbox is that of the uninterrupted delivery of the same rows (apart from
            # ids, timestamps and attempt counters), and Slack got the same messages (the
            # duplicates aside)
            assert outbox_state(path) == want_outbox
            assert set(posted_messages(server)) == set(want_posted)
    tally = collections.Counter(kills)
    print(f"\ndelivery crash test: {len(kills)} kills in {lives} lives over {sequence} sequences "
          f"({time.monotonic() - start:.1f} s); {duplicates} duplicate post(s), each after a kill "
          "between Slack accepting the post and mark_sent")
    for where, n in sorted(tally.items(), key=lambda x: -x[1]):
        print(f"  {n:3d}  {where}")
    assert len(kills) >= MIN_DELIVERY_KILLS
    assert duplicates >= 5  # the duplicate window was really hit
    assert tally["post received by Slack, before its answer (killed by the server)"] >= 1
    assert sum(n for w, n in tally.items() if not w.startswith("after Slack")
               and not w.startswith("post received")) >= 5


# -- 3. read-only and full disks ----------------------------------------------------------------

DAY = "2018-03-01"  # the first day after the prepared database


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, WEBHOOK_ENV)}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120,
                          preexec_fn=OBEY_MODES,
                          **kwargs)


def once(path: Path, day: str = DAY) -> subprocess.CompletedProcess:
    return run(["-m", "monitor.cli", "--config", str(CRASH_CONFIG), "--db", str(path), "once",
                "--as-of", day])


@pytest.mark.parametrize("what", ["file", "directory"])
def test_read_only_database_fails_once_cleanly_and_the_next_run_recovers(prepared, tmp_path, what,
                                                                        permissions_apply):
    folder = tmp_path / "var"
    folder.mkdir()
    path = folder / "history.db"
    shutil.copy(prepared, path)
    before, content = frozen_snapshot(path), path.read_bytes()
    target = path if what == "file" else folder
    restore = stat.S_IMODE(target.stat().st_mode)
    target.chmod(0o400 if what == "file" else 0o500)
    try:
        result = once(path)
    finally:
        target.chmod(restore)  # the operator restores the permissions
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("regime-monitor: error: ") and "readonly" in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    # unchanged: the file, its rows, and no write-ahead log left holding anything
    assert path.read_bytes() == content
    assert frozen_snapshot(path) == before
    wal = folder / "history.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # the next run recovers
    result = once(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{DAY}: ok, ")
    assert integrity(path) == ["ok"]
    assert last_cycle_day(path) == DAY


def test_full_database_fails_the_cycle_without_writing_and_the_next_run_recovers(prepared, tmp_path,
                                                                                 classic_config):
    day = dt.date.fromisoformat(DAY)
    expected = tmp_path / "expected.db"
    shutil.copy(prepared, expected)
    service = Service(classic_config, expected, notifier=RecordingNotifier())
    assert service.run_day(day).status == "ok"
    service.close()

    path = tmp_path / "full.db"
    shutil.copy(prepared, path)
    before = domain_snapshot(path)
    service = Service(classic_config, path, notifier=RecordingNotifier())
    try:
        db = service.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages  # no growth
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            service.run_day(day)
        after = domain_snapshot(path)
        assert {t: r for t, r in after.items() if t != "runs"} == \
            {t: r for t, r in before.items() if t != "runs"}
        # at most the failed run's row, which README promises when it fits
        added = collections.Counter(after["runs"]) - collections.Counter(before["runs"])
        assert list(added.elements()) in ([], [("cycle", DAY, "failed",
                                                "OperationalError: database or disk is full", None)])
        assert integrity(path) == ["ok"]
        assert last_cycle_day(path) == PREPARED_END.isoformat()

        db.execute("PRAGMA max_page_count = 1073741823")  # space again
        assert service.run_day(day).status == "ok"
    finally:
        service.close()
    got = domain_snapshot(path)
    got["runs"] = [r for r in got["runs"] if r[2] != "failed"]
    assert differences(got, domain_snapshot(expected)) == []
    assert integrity(path) == ["ok"]


def test_database_file_is_created_owner_only(tmp_path, capsys):
    from monitor import cli

    path = tmp_path / "new" / "history.db"
    old = os.umask(0)  # even with a permissive umask
    try:
        assert cli.main(["--config", str(CRASH_CONFIG), "--db", str(path), "once", "--as-of",
                         FIRST.isoformat()]) == 0
        db = open_db(path)  # an open connection keeps the WAL and its index on disk
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()
                 if p.name.startswith("history.db")}
        db.close()
    finally:
        os.umask(old)
    assert capsys.readouterr().out.startswith(f"{FIRST}: ok, ")
    assert modes["history.db"] == 0o600
    assert set(modes) >= {"history.db", "history.db-wal", "history.db-shm"}
    assert set(modes.values()) == {0o600}, modes


# -- 4. the real daemon killed at random points -------------------------------------------------

DAEMON_UNTIL = dt.date(2018, 5, 23)  # the daemon catches up 2018-03-01 .. here: 56 days, 8 digests
MIN_DAEMON_KILLS = 12
MIN_DAEMON_SEQUENCES = 2
SHIFT_ENV = "CRASH_TEST_DELIVERY_SHIFT"
NOT_OUTBOX = tuple(t for t in TABLES if t != "outbox")  # the outbox: compared by outbox_state
# ``regime-monitor run`` with the seams of tests/test_ops.py (the service's clock read from a file
# the test writes, and the cycle's trigger firing every second), and one more: delivery's clock
# runs SHIFT_ENV seconds ahead of the real one. A row claimed by a killed daemon is due again
# only after the claim lease (CLAIM_SECONDS); the test restarts the daemon at once, so each
# restart is shifted one more lease ahead, as if the operator had restarted it that much later.
DAEMON_SCRIPT = r"""
import datetime as _dt
import os as _os

from monitor import daemon as _daemon

_real_deliver_due = _daemon.deliver_due
_shift = _dt.timedelta(seconds=float(_os.environ["CRASH_TEST_DELIVERY_SHIFT"]))


def _shifted_deliver_due(db, notifier, now=None, policy=None, config=None):
    now = (now or _dt.datetime.now(_dt.UTC)) + _shift
    return _real_deliver_due(db, notifier, now=now, policy=policy, config=config)


_daemon.deliver_due = _shifted_deliver_due
""" + SEAMED_DAEMON
assert SHIFT_ENV in DAEMON_SCRIPT
STARTED = "regime_monitor.daemon: regime-monitor daemon started on "
SCHEDULER_STARTED = "regime_monitor.daemon: start-up delivery run finished"  # caught up, delivered
CYCLE_LOGGED = "regime_monitor.daemon: cycle "  # after each cycle of a catch-up


@dataclass
class Plan:
    """How one daemon life is to be killed: ``aim`` None (not at all); "start-up": ``delay`` s
    after the process was started; "catch-up": ``lag`` s after the daemon logged the ``n``-th
    cycle of its start-up catch-up (0: its start, just before the catch-up); "delivery": ``delay``
    s after it logged its start; "post": when Slack receives the ``n``-th post of the life, by
    the server before it answers when ``lag`` is 0, else by the test ``lag`` s later."""
    aim: str | None
    delay: float = 0.0
    n: int = 0
    lag: float = 0.0


@dataclass
class DaemonLife:
    code: int
    log: str
    first_request: int  # the server's first request of this life
    started: float | None  # seconds from the process start to the daemon's "started" line
    postponed: bool  # the kill waited for a crashed key's mark_sent

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


def log_times(text: str, needle: str) -> list[float]:
    """The POSIX times of the log lines containing ``needle`` (logging's asctime, in ms)."""
    out = []
    for line in text.splitlines():
        if needle in line:
            stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            out.append(stamp.timestamp())
    return out


def in_duplicate_window(path: Path, crashed: collections.Counter, attempts: dict[str, int]) -> bool:
    """Whether a key already posted twice (one kill in its window) has been claimed again in this
    life and is not marked sent yet: a kill now could post it a third time."""
    if not crashed:
        return False
    rows = outbox_rows(path)
    return any(rows[k]["sent_at"] is None and rows[k]["attempts"] > attempts.get(k, 0)
               for k in crashed if k in rows)


def daemon_life(argv: list[str], env: dict[str, str], log_path: Path, path: Path,
                server: CrashSlack, plan: Plan, crashed: collections.Counter,
                limit: float = 60.0) -> DaemonLife:
    """Start the daemon, kill it as ``plan`` says (never inside the window of a key already
    crashed once), or, once it has caught up and delivered (its scheduler started), stop it
    with SIGTERM."""
    first = len(server.requests)
    server.crashed, server.arm, server.delay = set(crashed), None, 0.0
    server.posts_in_life, server.killed_on = 0, None
    attempts = {k: r["attempts"] for k, r in outbox_rows(path).items()}
    d = Daemon(argv, log_path, env=env)
    t0 = time.monotonic()
    kill_at, started, postponed = None, None, False
    if plan.aim == "start-up":
        kill_at = t0 + plan.delay
    elif plan.aim == "post" and plan.lag == 0:
        server.arm = Arm(plan.n, d.proc.pid)  # not reaped before it ends: the pid stays its own
    try:
        while d.proc.poll() is None:
            now = time.monotonic()
            assert now - t0 < limit, f"a daemon life ran for more than {limit} s:\n{d.log()}"
            text = d.log()
            if started is None and STARTED in text:
                started = now - t0
                if plan.aim == "delivery":
                    kill_at = now + plan.delay
            if (plan.aim == "catch-up" and kill_at is None and started is not None
                    and text.count(CYCLE_LOGGED) >= plan.n):
                kill_at = now + plan.lag
            if (plan.aim == "post" and plan.lag and kill_at is None
                    and len(server.post_keys(first)) >= plan.n):
                kill_at = now + plan.lag
            if SCHEDULER_STARTED in text:  # caught up and delivered: a clean stop
                assert d.stop() == 0, d.log()
                break
            if kill_at is not None and now >= kill_at:
                if in_duplicate_window(path, crashed, attempts):
                    postponed = True  # until that key is marked sent
                else:
                    d.proc.kill()
                    d.proc.wait(timeout=10)
                    break
            time.sleep(0.005)
    finally:
        d.kill()
    server.settle()
    return DaemonLife(d.proc.returncode, d.log(), first, started, postponed)


@dataclass
class DaemonReference:
    snapshot: dict[str, list[tuple]]  # the domain tables but the outbox
    transitions: list[tuple]
    outbox: dict[str, tuple]  # outbox_state
    posted: collections.Counter[str]  # posted_messages
    keys: list[str]
    days: list[str]
    startup_s: float  # process start to the daemon's "started" line
    day_s: float  # one cycle of the start-up catch-up
    deliver_s: float  # the start-up delivery of every digest (matplotlib's import included)


def where_daemon(life: DaemonLife, window: list[str], server_kill: bool, caught_up: bool) -> str:
    if server_kill:
        return "post received by Slack, before its answer (killed by the server)"
    if window:
        return "after Slack accepted the post, before mark_sent"
    if life.started is None:
        return "start-up, before the catch-up"
    if not caught_up:
        return "catching up"
    return "delivering, outside a post's window"


def test_real_daemon_killed_at_random_points_catches_up_and_delivers_like_an_uninterrupted_run(
        prepared, server, tmp_path):
    """``regime-monitor run`` itself (tests/test_ops.py's seams: the clock says the evening of
    DAEMON_UNTIL, the cycle's trigger fires every second) catches up 2018-03-01 .. DAEMON_UNTIL
    at start-up and delivers the digests to the loopback Slack server. It is SIGKILLed at random
    moments, in start-up, in the catch-up, in delivery and when Slack receives a post, and
    restarted until its scheduler starts with everything done. After each kill: integrity, no
    partial cycle. At the end: the state of an uninterrupted daemon run on the same days; every
    digest posted, a second time only after a kill between Slack receiving it and mark_sent."""
    calendar = TradingCalendar(load_config(CRASH_CONFIG).calendar.extra_closed)
    days = [d.isoformat() for d in calendar.days(PREPARED_END + dt.timedelta(days=1), DAEMON_UNTIL)]
    text = CRASH_CONFIG.read_text(encoding="utf-8")
    assert "catch_up_max_days = 60" in text and len(days) <= 60  # one start-up catches them up
    for old, new in (('# channel = "#micro-cap-risk"', 'channel = "#micro-cap-risk"'),
                     ('# api_url = "https://slack.com/api/"', f'api_url = "{server.api_url}"')):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config = tmp_path / "monitor.toml"
    config.write_text(text, encoding="utf-8")  # chart = true: each digest's chart is uploaded
    clock = tmp_path / "clock"
    clock.write_text(evening(DAEMON_UNTIL.isoformat()))

    def start(path: Path, shift: int) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-c", DAEMON_SCRIPT, "--config", str(config), "--db", str(path),
                "run"]
        return argv, environment(OPS_TEST_CLOCK=str(clock), NO_PROXY="127.0.0.1",
                                 **{TOKEN_ENV: TOKEN, SHIFT_ENV: str(shift)})

    def clean(life: DaemonLife) -> None:
        assert "Traceback" not in life.log and " ERROR " not in life.log, life.log

    # the uninterrupted run
    path = tmp_path / "uninterrupted.db"
    shutil.copy(prepared, path)
    with server.sequence():
        life = daemon_life(*start(path, 0), tmp_path / "uninterrupted.log", path, server,
                           Plan(None), collections.Counter())
        assert life.code == 0
        clean(life)
        keys = sorted(outbox_rows(path))
        assert len(keys) >= 5 and sorted(server.post_keys()) == keys  # each digest posted once
        cycles = log_times(life.log, CYCLE_LOGGED)
        delivered = log_times(life.log, ": delivered to slack:")
        assert len(cycles) == len(days) and len(delivered) == len(keys)
        ref = DaemonReference(domain_snapshot(path, NOT_OUTBOX), transitions(path),
                              outbox_state(path), posted_messages(server), keys, days,
                              life.started, (cycles[-1] - log_times(life.log, STARTED)[0]) / len(days),
                              delivered[-1] - cycles[-1])
    assert integrity(path) == ["ok"] and last_cycle_day(path) == days[-1]
    assert all(sent and failed is None for *_, sent, failed in ref.outbox.values())
    assert ("microcap_drawdown", FIRE_DAY, "firing") in [e[:3] for e in ref.transitions]

    rng = random.Random(SEED + 2)
    quota = -(-MIN_DAEMON_KILLS // MIN_DAEMON_SEQUENCES)  # kills per sequence, then a clean run
    kills: list[str] = []
    lives = postponed = duplicates = sequence = 0
    began = time.monotonic()
    def spread(kills: list[str]) -> bool:
        """Whether the kills landed both in the catch-up and after it (asserted at the end): on
        a loaded machine the catch-up takes longer and draws more of the aimed kills."""
        tally = collections.Counter(kills)
        return (tally["catching up"] >= 3 and
                len(kills) - tally["catching up"] - tally["start-up, before the catch-up"] >= 3)

    # sequences until the kills are spread and one landed in a post's window (a duplicate):
    # where the random kills land depends on the machine's speed, what is asserted does not
    while (len(kills) < MIN_DAEMON_KILLS or sequence < MIN_DAEMON_SEQUENCES or not spread(kills)
           or duplicates == 0):
        sequence += 1
        assert sequence <= 9, f"only {len(kills)} kills ({collections.Counter(kills)}, " \
                              f"{duplicates} duplicate posts) in {sequence - 1} sequences"
        path = tmp_path / f"daemon-{sequence}.db"
        shutil.copy(prepared, path)
        crashed: collections.Counter[str] = collections.Counter()
        in_sequence = 0
        with server.sequence():
            for n in range(1, 40):
                rows = outbox_rows(path)
                remaining = [d for d in ref.days if d > last_cycle_day(path)]
                unsent = [k for k in ref.keys if k not in rows or rows[k]["sent_at"] is None]
                lives += 1
                plan = Plan(None)  # the last life of a sequence is not killed
                if in_sequence < quota and (remaining or unsent):
                    aims = ["start-up", "catch-up", "delivery", "post"]
                    aim = rng.choices(aims, [1, 4, 2, 3] if remaining else [1, 0, 4, 5])[0]
                    if in_sequence < 2 and remaining:  # the catch-up of a sequence: twice
                        aim = "catch-up"
                    catch_up_s = ref.day_s * len(remaining)
                    if aim == "start-up":
                        plan = Plan(aim, delay=rng.uniform(0.1, ref.startup_s))
                    elif aim == "catch-up":  # in or just before one of the cycles
                        plan = Plan(aim, n=rng.randrange(len(remaining)),
                                    lag=rng.uniform(0, ref.day_s))
                    elif aim == "delivery":
                        share = ref.deliver_s * len(unsent) / len(ref.keys)
                        plan = Plan(aim, delay=catch_up_s + rng.uniform(0, 1.1 * share))
                    else:
                        plan = Plan(aim, n=rng.randrange(len(unsent)) + 1,
                                    lag=0.0 if rng.random() < 0.5 else
                                    rng.uniform(0, ref.deliver_s / len(ref.keys)))
                # each restart one claim lease later on delivery's clock
                life = daemon_life(*start(path, n * (CLAIM_SECONDS + 1)),
                                   tmp_path / f"daemon-{sequence}-{n}.log", path, server, plan,
                                   crashed)
                clean(life)
                postponed += life.postponed
                if not life.killed:  # caught up and delivered everything, then stopped
                    assert life.code == 0
                    break
                in_sequence += 1
                last = check_no_partial_cycle(path, ref.transitions)
                after = outbox_rows(path)
                assert not [k for k, r in after.items() if r["failed_at"]]
                window = sorted({k for k in server.post_keys(life.first_request)
                                 if after[k]["sent_at"] is None})
                assert len(window) <= 1
                for key in window:
                    crashed[key] += 1
                    assert after[key]["last_error"].startswith("interrupted: the attempt started")
                if server.killed_on is not None:
                    assert window == [server.killed_on]
                kills.append(where_daemon(life, window, server.killed_on is not None,
                                          last == ref.days[-1]))
            else:
                pytest.fail(f"daemon sequence {sequence} did not finish")

            # the end state of the interrupted sequence is that of the uninterrupted run
            assert integrity(path) == ["ok"]
            problems = differences(domain_snapshot(path, NOT_OUTBOX), ref.snapshot)
            assert not problems, f"sequence {sequence}: " + "; ".join(problems)
            counts = collections.Counter(transitions(path))
            assert counts == collections.Counter(ref.transitions)
            assert set(counts.values()) == {1}  # every alert transition exactly once
            assert outbox_state(path) == ref.outbox
            # every digest posted; twice only after a kill in its window, never more
            posts = collections.Counter(server.post_keys())
            assert sorted(posts) == ref.keys
            for key in ref.keys:
                assert posts[key] == 1 + crashed[key] <= 2, (key, posts[key], crashed[key])
            duplicates += sum(crashed.values())
            assert set(posted_messages(server)) == set(ref.posted)  # a duplicate is the same post
            for body in server.posted():
                key = body["metadata"]["event_payload"]["dedup_key"]
                assert body["metadata"]["event_type"] == "regime_monitor_digest"
                assert f"`{key}`" in json.dumps(body["blocks"])
            assert len(server.calls("files.completeUploadExternal")) >= len(ref.keys)  # charts
    tally = collections.Counter(kills)
    print(f"\nreal daemon crash test: {len(kills)} kills in {lives} lives over {sequence} "
          f"sequences ({time.monotonic() - began:.1f} s; uninterrupted start-up "
          f"{ref.startup_s:.2f} s, catch-up {ref.day_s * len(ref.days):.2f} s, delivery "
          f"{ref.deliver_s:.2f} s); {duplicates} duplicate post(s), {postponed} kill(s) postponed "
          "past a crashed key's mark_sent")
    for where, n in sorted(tally.items(), key=lambda x: -x[1]):
        print(f"  {n:3d}  {where}")
    assert len(kills) >= MIN_DAEMON_KILLS
    assert tally["catching up"] >= 3
    assert len(kills) - tally["catching up"] - tally["start-up, before the catch-up"] >= 3
    assert duplicates >= 1
