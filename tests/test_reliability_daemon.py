"""Issue 12, the daemon's share: the lock file, concurrent writers, a corrupt database, a wedged
delivery, silencing ``data_stale``, control characters on the terminal and the calendar's coverage.

Real SQLite files, real flock, the real scheduler in a real subprocess (test_ops's seams: a clock
file and a trigger that fires every second), real signals. Dates are always passed in.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor import cli, daemon
from monitor.calendar import TradingCalendar
from monitor.config import load_config
from monitor.cycle import run_cycle, summary_day
from monitor.daemon import DaemonError, Service
from monitor.delivery import digest
from monitor.delivery.blocks import render
from monitor.delivery.console import ConsoleNotifier
from monitor.sources.base import Fetched
from storage import outbox, silences
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, DEFAULT_CONFIG, ROOT, RecordingNotifier
from tests.procs import command, wait_for

SH = ZoneInfo("Asia/Shanghai")
D = dt.date


def sh(y: int, m: int, d: int, hh: int = 21) -> dt.datetime:
    return dt.datetime(y, m, d, hh, tzinfo=SH)


def demo_config(path=DEFAULT_CONFIG):
    config = load_config(path)
    return config.model_copy(update={"source": config.source.model_copy(update={"kind": "demo"})})


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update({"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}, **extra)
    return env


def statuses(path: Path, day: str) -> list[tuple[str, str | None]]:
    con = sqlite3.connect(path, timeout=10)
    try:
        return con.execute("SELECT status, error FROM runs WHERE job = 'cycle' AND as_of = ? "
                           "ORDER BY id", [day]).fetchall()
    finally:
        con.close()


# -- item 3: the lock file ----------------------------------------------------------------------

def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    db = tmp_path / "history.db"
    Path(f"{db}.lock").symlink_to(victim)
    with pytest.raises(DaemonError) as caught:
        daemon._acquire_lock(str(db))
    message = str(caught.value)
    assert "\n" not in message and f"{db}.lock" in message, message
    assert victim.read_text() == "do not truncate me\n"


def test_one_daemon_per_database_also_through_a_symlinked_path(tmp_path):
    real = tmp_path / "var" / "history.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    first = daemon._acquire_lock(str(link))
    try:
        lock = real.parent / "history.db.lock"  # next to the real database
        assert lock.exists() and not lock.is_symlink()
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(DaemonError, match="already running"):
            daemon._acquire_lock(str(real))
        other = tmp_path / "elsewhere"
        other.mkdir()
        (other / "history.db").symlink_to(real)
        with pytest.raises(DaemonError, match="already running"):
            daemon._acquire_lock(str(other / "history.db"))
    finally:
        first.close()


# -- item 5: a concurrent write during the fetch ------------------------------------------------

class WritingSource:
    """The demo source; while it "fetches", another connection writes (a `silence add`)."""

    def __init__(self, inner, path: Path) -> None:
        self.inner, self.path = inner, path
        self.name = inner.name

    def fetch(self, as_of, since):
        rows = self.inner.fetch(as_of, since)
        other = open_db(self.path)
        try:
            silences.add(other, "all", D(2030, 1, 1), "maintenance during the fetch")
        finally:
            other.close()
        return rows


def test_a_write_during_the_fetch_does_not_fail_the_cycle(tmp_path):
    path = tmp_path / "history.db"
    config = demo_config()
    service = Service(config, path, notifier=RecordingNotifier(), clock=lambda: sh(2018, 3, 1))
    try:
        assert [r.status for r in service.catch_up()] == ["ok"]
        service.source = WritingSource(service.source, path)
        result = service.run_day(D(2018, 3, 2))
        assert result.status == "ok"
    finally:
        service.close()
    assert statuses(path, "2018-03-02") == [("ok", None)]
    con = sqlite3.connect(path)
    assert con.execute("SELECT reason FROM silences").fetchall() == [
        ("maintenance during the fetch",)]
    con.close()


class Locker:
    """Another writer holding the write lock (BEGIN IMMEDIATE) for ``seconds``."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.con = sqlite3.connect(path, timeout=10, isolation_level=None,
                                   check_same_thread=False)
        self.con.execute("BEGIN IMMEDIATE")
        self.thread = threading.Thread(target=self._release, args=(seconds,), daemon=True)
        self.thread.start()

    def _release(self, seconds: float) -> None:
        time.sleep(seconds)
        self.con.execute("COMMIT")
        self.con.close()


def test_a_cycle_that_fails_on_a_lock_leaves_its_failed_row_and_is_retried(tmp_path, caplog):
    path = tmp_path / "history.db"
    clock = {"now": sh(2018, 3, 1)}
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        time.sleep(min(seconds, 0.05))
        return False  # not stopping

    service = Service(demo_config(), path, notifier=RecordingNotifier(),
                      clock=lambda: clock["now"], retry_delays=(30.0, 60.0), wait=wait)
    try:
        assert [r.status for r in service.catch_up()] == ["ok"]
        clock["now"] = sh(2018, 3, 2)
        service.db.execute("PRAGMA busy_timeout = 100")  # a writer outlasts the busy timeout
        locker = Locker(path, 1.0)
        with caplog.at_level(logging.INFO, logger="regime_monitor.daemon"):
            results = service.catch_up()
        locker.thread.join(5)
    finally:
        service.close()
    assert [(r.as_of, r.status) for r in results] == [(D(2018, 3, 2), "ok")]
    assert statuses(path, "2018-03-02") == [("failed", "OperationalError: database is locked"),
                                            ("ok", None)]
    assert [w for w in waits if w] == [30.0]  # one retry, after the first injected delay
    assert any("retry" in r.getMessage() and "2018-03-02" in r.getMessage()
               for r in caplog.records), caplog.text


# -- item 6: a corrupt database -----------------------------------------------------------------

def corrupt_copy(tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    service = Service(demo_config(), path, notifier=RecordingNotifier(),
                      clock=lambda: sh(2018, 3, 1))
    try:
        service.catch_up()
    finally:
        service.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'signal_values'").fetchone()[0]
    con.close()
    with path.open("r+b") as f:  # overwrite the root page of a table the cycle writes
        f.seek(page_size * (root - 1))
        f.write(b"\xa5" * page_size)
    con = sqlite3.connect(path)
    try:
        answer = con.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        answer = str(exc)
    finally:
        con.close()
    assert answer != "ok"  # the premise
    return path


def test_a_corrupt_database_stops_run_and_once_with_one_line(tmp_path):
    path = corrupt_copy(tmp_path)
    config = tmp_path / "monitor.toml"
    config.write_text('[source]\nkind = "demo"\n', encoding="utf-8")
    for args in (["run"], ["once", "--as-of", "2018-03-02"]):
        try:
            proc = subprocess.run([*command(), "--config", str(config), "--db", str(path), *args],
                                  cwd=tmp_path, env=environment(), capture_output=True, text=True,
                                  timeout=30, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{args[0]}` kept running on a corrupt database")
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("regime-monitor: error: ") and str(path) in lines[0]
        assert "quick_check" in lines[0] and "backup" in lines[0], lines[0]
        assert "Traceback" not in proc.stderr


def test_backup_writes_an_owner_only_copy_and_never_overwrites(tmp_path, capsys):
    path = tmp_path / "history.db"
    service = Service(demo_config(), path, notifier=RecordingNotifier(),
                      clock=lambda: sh(2018, 3, 1))
    try:
        service.catch_up()
        dest = tmp_path / "backups" / "copy.db"
        dest.parent.mkdir()
        code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(path), "backup", str(dest)])
        out = capsys.readouterr().out
        assert code == 0 and str(dest) in out, out
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        copy = sqlite3.connect(dest)
        assert copy.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT as_of, status FROM runs").fetchall() == \
            service.db.execute("SELECT as_of, status FROM runs").fetchall()
        copy.close()
        before = dest.read_bytes()
        code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(path), "backup", str(dest)])
        err = capsys.readouterr().err
        assert code == 1 and "exists" in err and str(dest) in err, err
        assert dest.read_bytes() == before
    finally:
        service.close()


# -- item 7: a wedged delivery never delays the cycle, SIGTERM still stops ----------------------

WEDGED_DAEMON = r"""
import datetime as dt
import logging
import os
import sys
import threading
from pathlib import Path

from monitor import daemon

CLOCK = Path(os.environ["RELIABILITY_TEST_CLOCK"])


class EverySecond(daemon.TradingDayTrigger):
    def get_next_fire_time(self, previous_fire_time, now):
        return now + dt.timedelta(seconds=1)


class Wedged:
    destination = "wedged"

    def send(self, payload, dedup_key, **kwargs):
        logging.getLogger("test").warning("delivery of %s hangs", dedup_key)
        threading.Event().wait()  # a Slack request that never ends


real_make_trigger, real_init = daemon.make_trigger, daemon.Service.__init__


def make_trigger(config, calendar):
    trigger = real_make_trigger(config, calendar)
    return EverySecond(trigger.cron, trigger.calendar)


def init(self, *args, **kwargs):
    kwargs.setdefault("clock", lambda: dt.datetime.fromisoformat(CLOCK.read_text().strip()))
    real_init(self, *args, **kwargs)


daemon.make_trigger, daemon.Service.__init__ = make_trigger, init
daemon.make_notifier = lambda config, *a, **k: Wedged()

from monitor.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_a_wedged_delivery_neither_delays_the_cycle_nor_blocks_sigterm(tmp_path):
    path = tmp_path / "history.db"
    db = open_db(path)
    with db.atomic():
        outbox.enqueue(db, "digest:2018-02-28", "digest", "2018-02-28", json.dumps(digest.build(
            "2018-02-28", [], [], [], {"count": 0, "names": []}, summary=True)))
    db.close()
    config = tmp_path / "monitor.toml"
    config.write_text('[source]\nkind = "demo"\n', encoding="utf-8")
    clock = tmp_path / "clock"
    clock.write_text("2018-03-01T21:00:00+08:00")
    log_path = tmp_path / "daemon.log"
    argv = [sys.executable, "-c", WEDGED_DAEMON, "--config", str(config), "--db", str(path), "run"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=environment(RELIABILITY_TEST_CLOCK=str(clock)),
                                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        def text() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        def seen(needle: str, timeout: float) -> bool:
            return wait_for(lambda: needle in text() or proc.poll() is not None, timeout) \
                and needle in text()

        assert seen("cycle 2018-03-01: ok", 60), text()
        assert seen("delivery of digest:2018-02-28 hangs", 20), text()
        clock.write_text("2018-03-02T21:00:00+08:00")  # the next evening: its cycle is due
        assert seen("cycle 2018-03-02: ok", 30), text()
        assert "maximum number of running instances" not in text()
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM did not stop the daemon within 15 s:\n{text()}")
        assert code == 0, text()
        assert time.monotonic() - start < 8, text()
        assert "daemon stopped" in text().splitlines()[-1], text()
        assert "Traceback" not in text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert statuses(path, "2018-03-02") == [("ok", None)]
    con = sqlite3.connect(path)  # the abandoned row is claimed: retried after its lease
    assert con.execute("SELECT sent_at, attempts FROM outbox").fetchall() == [(None, 1)]
    con.close()


# -- item 13: data_stale can be silenced; control characters are escaped ------------------------

def run_cli(capsys, *args, config=CLASSIC_CONFIG):
    code = cli.main(["--config", str(config), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_silence_add_accepts_the_built_in_data_stale(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    code, out, err = run_cli(capsys, "--db", db, "silence", "add", "data_stale", "--until",
                             "2030-01-01", "--reason", "feed down")
    assert code == 0, err
    assert "data_stale muted until 2030-01-01" in out
    code, out, err = run_cli(capsys, "--db", db, "silence", "add", "no_such_rule", "--until",
                             "2030-01-01", "--reason", "x")
    assert code == 1 and "unknown rule" in err and "data_stale" in err


CONTROL = "\x1b]0;owned\x07\x1b[2J\r\x9b31m"


def test_control_characters_are_escaped_on_the_terminal(tmp_path, capsys):
    db = tmp_path / "h.db"
    code, out, err = run_cli(capsys, "--db", str(db), "silence", "add", "all", "--until",
                             "2030-01-01", "--reason", f"evil{CONTROL}")
    assert code == 0, err
    for text in (out, *(run_cli(capsys, "--db", str(db), "silence", "list")[1],)):
        assert "evil" in text and "\\x1b]0;owned\\x07" in text, text
        assert not any(c in text for c in "\x1b\x07\x9b\r"), repr(text)
    code, out, _ = run_cli(capsys, "--db", str(db), "silence", "list", "--json")
    assert json.loads(out)[0]["reason"] == f"evil{CONTROL}"
    assert "\x9b" not in out and "\x1b" not in out

    stream = io.StringIO()
    ConsoleNotifier(stream).send({
        "as_of": "2018-03-01", "summary": False, "counts": {"firing": 1, "new": 1, "repeat": 0,
                                                            "resolved": 0, "pending": 0},
        "items": [{"rule": "r", "severity": "warning", "kind": "firing", "since": "2018-03-01",
                   "explain": f"why{CONTROL}", "comparisons": [], "values": {}, "context": {}}],
        "firing": ["r"], "pending": [], "active": [], "composite": {"count": 0, "names": []},
        "context": [], "risk": None}, "digest:2018-03-01")
    printed = stream.getvalue()
    assert "why\\x1b]0;owned" in printed and "\x1b" not in printed and "\x9b" not in printed


# -- item 14: the calendar's coverage in every digest and in `status` ---------------------------

class NoFetch:
    name = "none"

    def fetch(self, as_of, since):
        return Fetched()


def test_the_calendar_coverage_note_rides_in_each_digest_from_60_days_before_its_end(tmp_path):
    cal = TradingCalendar()
    end = cal.coverage_end
    config = load_config(CLASSIC_CONFIG)
    config = config.model_copy(update={"notify": config.notify.model_copy(
        update={"weekly_summary": True})})
    near = next(d for d in cal.days(end - dt.timedelta(days=40), end)
                if summary_day(config, cal, d))
    far = next(d for d in cal.days(end - dt.timedelta(days=120), end - dt.timedelta(days=70))
               if summary_day(config, cal, d))
    assert (end - near).days <= 60 < (end - far).days

    db = open_db(tmp_path / "far.db")
    far_payload = run_cycle(db, config, far, NoFetch(), cal).digest
    db.close()
    assert far_payload is not None and far_payload["notes"] == []

    db = open_db(tmp_path / "near.db")
    payload = run_cycle(db, config, near, NoFetch(), cal).digest
    db.close()
    assert payload is not None
    (note,) = payload["notes"]
    assert end.isoformat() in note and "extra_closed" in note and "assumed open" in note
    stream = io.StringIO()
    ConsoleNotifier(stream).send(payload, "k")
    assert note in stream.getvalue()
    blocks, text = render(payload, "k")
    assert note in text and note.replace("&", "&amp;") in json.dumps(blocks, ensure_ascii=False)


class FailsOn:
    """The demo source, failing its fetch once on ``day`` (a vendor outage)."""

    def __init__(self, inner, day: dt.date) -> None:
        self.inner, self.day, self.failed = inner, day, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fetch(self, as_of, since):
        if as_of == self.day and not self.failed:
            self.failed = True
            raise RuntimeError("vendor feed down")
        return self.inner.fetch(as_of, since)


def test_a_failed_cycle_and_a_rejected_drop_file_are_said_in_the_next_digest(tmp_path):
    """Nothing fails silently: the failures recorded in ``runs`` since the previous digest ride
    in the next one (console and Slack), once."""
    drop = tmp_path / "drop"
    drop.mkdir()
    config = demo_config(CLASSIC_CONFIG)
    config = config.model_copy(update={
        "notify": config.notify.model_copy(update={"weekly_summary": True}),
        "source": config.source.model_copy(update={"drop_folder": str(drop),
                                                   "drop_folder_settle_seconds": 0.0})})
    path = tmp_path / "history.db"
    clock = {"now": sh(2018, 1, 2)}
    service = Service(config, path, notifier=RecordingNotifier(), clock=lambda: clock["now"])
    service.source = FailsOn(service.source, D(2018, 1, 3))
    try:
        payloads = {}
        for day in (D(2018, 1, 2), D(2018, 1, 3), D(2018, 1, 4), D(2018, 1, 5), D(2018, 1, 8),
                    D(2018, 1, 9), D(2018, 1, 10), D(2018, 1, 11), D(2018, 1, 12)):
            clock["now"] = sh(day.year, day.month, day.day)
            if day == D(2018, 1, 4):
                (drop / "feed.csv").write_text("date,series,value\n2018-01-03,nonsense,1\n",
                                               encoding="utf-8")
            try:
                result = service.run_day(day)
            except RuntimeError:
                result = service.run_day(day)  # the evening's retry
            payloads[day] = result.digest
    finally:
        service.close()
    first = payloads[D(2018, 1, 5)]  # the week's summary: the first digest after the failures
    assert first is not None
    cycle_note = "The daily cycle failed (2018-01-03): RuntimeError: vendor feed down"
    assert cycle_note in first["notes"]
    (drop_note,) = [n for n in first["notes"] if n.startswith("A drop-folder file failed")]
    assert "feed.csv" in drop_note and "nonsense" in drop_note
    blocks, text = render(first, "k")
    assert cycle_note in text and cycle_note in json.dumps(blocks)
    assert payloads[D(2018, 1, 12)] is not None
    assert [n for n in payloads[D(2018, 1, 12)]["notes"] if "failed" in n] == []  # said once


def test_status_prints_rules_last_run_and_the_calendar_coverage(tmp_path, capsys):
    path = tmp_path / "history.db"
    service = Service(demo_config(CLASSIC_CONFIG), path, notifier=RecordingNotifier(),
                      clock=lambda: sh(2018, 3, 1))
    try:
        service.catch_up()
    finally:
        service.close()
    before = path.read_bytes()
    end = TradingCalendar().coverage_end
    as_of = end - dt.timedelta(days=28)
    code, out, err = run_cli(capsys, "--db", str(path), "status", "--as-of", as_of.isoformat())
    assert code == 0, err
    assert "last cycle: 2018-03-01 ok" in out, out
    rules = [r.name for r in load_config(CLASSIC_CONFIG).rules]
    for name in [*rules, "data_stale"]:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), (name, out)
    assert f"holidays known to {end}" in out, out
    first_open = TradingCalendar().next(end)
    assert "assumed open" in out and first_open.isoformat() in out, out
    assert path.read_bytes() == before  # read-only

    code, out, err = run_cli(capsys, "--db", str(path), "status", "--as-of",
                             (end - dt.timedelta(days=120)).isoformat())
    assert code == 0 and f"holidays known to {end}" in out and "assumed open" not in out, out

    code, out, err = run_cli(capsys, "--db", str(tmp_path / "missing.db"), "status")
    assert code == 1 and "missing.db" in err
    assert not (tmp_path / "missing.db").exists()


class Revising:
    """The demo source; on ``day`` its fetch also revises the micro-cap close of ``revised``."""

    def __init__(self, inner, day: dt.date, revised: dt.date) -> None:
        self.inner, self.day, self.revised = inner, day, revised

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fetch(self, as_of, since):
        got = self.inner.fetch(as_of, since)
        rows = list(got.rows)
        if as_of == self.day:
            old = next(r for r in self.inner.fetch(self.revised, None).rows
                       if r[0] == "index.microcap.close" and r[1] == self.revised.isoformat())
            rows.append((old[0], old[1], old[2] * 1.1, old[3], old[4]))
        return Fetched(rows, got.failures)


def test_a_value_revised_by_the_daily_fetch_is_known_only_from_that_day(tmp_path):
    """Issue 12 item 10 for the daily fetch: the vendor revises a past close; days before the
    cycle that fetched the revision keep seeing the old value."""
    from storage import observations

    path = tmp_path / "history.db"
    config = demo_config()
    service = Service(config, path, notifier=RecordingNotifier(), clock=lambda: sh(2018, 1, 2))
    service.source = Revising(service.source, D(2018, 1, 8), D(2018, 1, 3))
    try:
        for day in (D(2018, 1, 2), D(2018, 1, 3), D(2018, 1, 4), D(2018, 1, 5), D(2018, 1, 8)):
            assert service.run_day(day).status == "ok"
        days = [D(2018, 1, 3)]
        series = ["index.microcap.close"]
        before = observations.load_frame(service.db, series, days, D(2018, 1, 5))[series[0]].iloc[0]
        after = observations.load_frame(service.db, series, days, D(2018, 1, 8))[series[0]].iloc[0]
        (available,) = service.db.execute(
            "SELECT available_at FROM observations WHERE series = ? AND date = '2018-01-03'",
            series).fetchone()
    finally:
        service.close()
    assert after == pytest.approx(before * 1.1)
    assert available == "2018-01-08"
