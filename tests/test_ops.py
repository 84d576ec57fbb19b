"""Operations, through real processes: a full disk, a read-only database, and SIGHUP.

1. Full disk: ``regime-monitor once`` runs with ``RLIMIT_FSIZE`` (SIGXFSZ ignored), so writing past
   the limit fails in the kernel with EFBIG, as on a disk that has no room left. A limit below the
   write-ahead log the cycle needs fails the cycle; a limit below SQLite's 32 KiB shared-memory
   index fails opening the database. Either way: exit 1, one ``regime-monitor: error:`` line naming
   the database, ``integrity_check`` ok, the domain tables unchanged - apart from the ``failed``
   row in ``runs`` that README promises when it fits - and the next run, without the limit, ends
   in the state of a database where the failure never happened.
2. Read-only: ``regime-monitor run`` on a read-only database file (or a read-only directory that
   already holds the lock file) logs one clean error for the start-up catch-up and keeps running;
   nothing is written. Once writable again, a restarted daemon catches the day up. (As root, the
   file capabilities are dropped from the bounding set so that file modes apply.)
3. SIGHUP: a daemon runs with an injected clock (a file the test advances) and a cycle trigger
   that fires every second, so "the next cycle" comes right after each reload. Rejected reloads
   (unknown key, bad rule expression, a file that is not UTF-8, a config the notifier refuses)
   log their reason and leave the old rules in force for the next cycle (the ``alerts`` table);
   after a valid reload the next cycle evaluates the new rules.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.calendar import TradingCalendar
from monitor.config import load_config
from monitor.daemon import Service, latest_due_day, make_trigger
from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV
from tests.conftest import DEFAULT_CONFIG, ROOT, RecordingNotifier
from tests.procs import (
    OBEY_MODES,
    command,
    connect,
    differences,
    domain_snapshot,
    frozen_snapshot,
    integrity,
    wait_for,
)

D = dt.date
PREPARED_DAYS = (D(2018, 2, 26), D(2018, 2, 28))  # the prepared database: these demo cycles
DAY = "2018-03-01"  # the first day after it
SHM_BYTES = 32768  # SQLite's WAL index (-shm) is mapped in 32 KiB regions


# -- helpers ------------------------------------------------------------------------------------

def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, WEBHOOK_ENV)}
    env.update({"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}, **extra)
    return env


def added_runs(after: dict[str, list], before: dict[str, list]) -> list[tuple]:
    return list((collections.Counter(after["runs"]) - collections.Counter(before["runs"])).elements())


def query(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    con = connect(path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def last_cycle_day(path: Path) -> str:
    return query(path, "SELECT MAX(as_of) FROM runs WHERE job = 'cycle' AND status IN "
                       "('ok', 'partial', 'fetch_failed')")[0][0]


# -- databases ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The demo scenario's cycles over PREPARED_DAYS (a closed, clean file)."""
    path = tmp_path_factory.mktemp("ops") / "prepared.db"
    service = Service(load_config(DEFAULT_CONFIG), path, notifier=RecordingNotifier())
    for day in service.calendar.days(*PREPARED_DAYS):
        assert service.run_day(day).status == "ok"
    service.close()
    return path


@pytest.fixture(scope="module")
def expected(prepared, tmp_path_factory) -> tuple[dict[str, list], int]:
    """The prepared database after DAY's cycle with no failure: (snapshot, bytes of write-ahead
    log that cycle wrote)."""
    path = tmp_path_factory.mktemp("expected") / "expected.db"
    shutil.copy(prepared, path)
    service = Service(load_config(DEFAULT_CONFIG), path, notifier=RecordingNotifier())
    try:
        assert service.run_day(D.fromisoformat(DAY)).status == "ok"
        wal_bytes = Path(f"{path}-wal").stat().st_size  # the open connection keeps it
    finally:
        service.close()
    return domain_snapshot(path), wal_bytes


# -- 1. a full disk -----------------------------------------------------------------------------

def file_size_limit(limit: int):
    """preexec_fn: files cannot grow past ``limit`` bytes; a write past it fails with EFBIG."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*command(), *args], cwd=ROOT, env=environment(), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, **kwargs)


def once(path: Path, **kwargs) -> subprocess.CompletedProcess:
    return cli(["--config", str(DEFAULT_CONFIG), "--db", str(path), "once", "--as-of", DAY],
               **kwargs)


@pytest.mark.parametrize("stage, limit", [
    pytest.param("cycle", 2 * SHM_BYTES, id="cycle-write-fails"),
    pytest.param("open", SHM_BYTES // 2, id="open-fails"),
])
def test_full_disk_fails_once_cleanly_and_the_next_run_recovers(prepared, expected, tmp_path,
                                                                 stage, limit):
    want, cycle_wal_bytes = expected
    # the premise: the open's shared-memory index fits (or not), the cycle's log does not
    assert limit < cycle_wal_bytes
    assert (limit > SHM_BYTES) == (stage == "cycle")
    path = tmp_path / "history.db"
    shutil.copy(prepared, path)
    before = domain_snapshot(path)

    result = once(path, preexec_fn=file_size_limit(limit))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("regime-monitor: error: ") and str(path) in line, line
    reason = re.search(r"(disk I/O error|database or disk is full)$", line)
    assert reason, line
    if stage == "open":
        assert line.startswith(f"regime-monitor: error: cannot open database {path}: "), line
    else:
        assert line.startswith(f"regime-monitor: error: database {path}: "), line

    assert integrity(path) == ["ok"]
    after = domain_snapshot(path)
    assert {t: r for t, r in after.items() if t != "runs"} == \
        {t: r for t, r in before.items() if t != "runs"}
    assert last_cycle_day(path) == PREPARED_DAYS[-1].isoformat()
    # README: "a cycle that fails halfway leaves the database as it was, apart from a `failed`
    # row in `runs` with the reason" - the row fits under this limit (the failed cycle's log
    # frames are rolled back first); a database that cannot be opened gets nothing.
    if stage == "cycle":
        assert added_runs(after, before) == [
            ("cycle", DAY, "failed", f"OperationalError: {reason.group(1)}", None)]
    else:
        assert added_runs(after, before) == []

    result = once(path)  # space again: the next run recovers
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{DAY}: ok, ")
    assert integrity(path) == ["ok"]
    got = domain_snapshot(path)
    got["runs"] = [r for r in got["runs"] if r[2] != "failed"]
    assert differences(got, want) == []


# -- 2. a read-only database under the daemon ---------------------------------------------------

class Daemon:
    """``regime-monitor run`` (or ``argv``) as a subprocess, its log in a file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 preexec_fn=None) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, cwd=log_path.parent, env=env or environment(),
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, needle: str) -> list[str]:
        return [x for x in self.log().splitlines() if needle in x]

    def wait_log(self, needle: str, count: int = 1, timeout: float = 30) -> str:
        ok = wait_for(lambda: len(self.lines(needle)) >= count or self.proc.poll() is not None,
                      timeout)
        assert ok and len(self.lines(needle)) >= count, \
            f"no {needle!r} (#{count}) in the log (exit {self.proc.poll()}):\n{self.log()}"
        return self.lines(needle)[count - 1]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def daemon(argv: list[str], log_path: Path, **kwargs):
    d = Daemon(argv, log_path, **kwargs)
    try:
        yield d
    finally:
        d.kill()


def due_now(config) -> D:
    calendar = TradingCalendar(config.calendar.extra_closed)
    return latest_due_day(make_trigger(config, calendar), calendar,
                          dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("what", ["file", "directory"])
def test_read_only_database_the_daemon_logs_one_clean_error_keeps_running_and_recovers(
        prepared, tmp_path, what, permissions_apply):
    folder = tmp_path / "var"
    folder.mkdir()
    path = folder / "history.db"
    shutil.copy(prepared, path)
    lock = Path(f"{path}.lock")
    if what == "directory":  # a daemon ran here before: its lock file is there
        lock.touch(mode=0o600)
    config = tmp_path / "monitor.toml"
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    assert "catch_up_max_days = 60" in text
    config.write_text(text.replace("catch_up_max_days = 60", "catch_up_max_days = 0"),
                      encoding="utf-8")
    argv = [*command(), "--config", str(config), "--db", str(path), "run"]
    before, content = frozen_snapshot(path), path.read_bytes()
    target = path if what == "file" else folder
    restore = stat.S_IMODE(target.stat().st_mode)
    target.chmod(0o400 if what == "file" else 0o500)
    try:
        with daemon(argv, tmp_path / "read-only.log", preexec_fn=OBEY_MODES) as d:
            d.wait_log("Scheduler started")  # after the start-up catch-up and delivery
            errors = d.lines(" ERROR ")
            assert errors and errors[0].split(" ERROR ")[1].startswith(
                "regime_monitor.daemon: catch_up failed: "), d.log()
            for line in errors:  # one line each, naming what is wrong
                assert "readonly database" in line, line
                if what == "directory":
                    assert f"cannot open database {path}" in line, line
            assert wait_for(lambda: d.proc.poll() is not None, 1.0) is False  # keeps running
            assert d.stop() == 0
            assert "daemon stopped" in d.log().splitlines()[-1]
            assert "Traceback" not in d.log()
    finally:
        target.chmod(restore)  # the operator restores the permissions
    assert path.read_bytes() == content
    assert frozen_snapshot(path) == before
    wal = folder / "history.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0

    # the next run recovers: a restarted daemon catches the due day up
    due = {due_now(load_config(config))}
    with daemon(argv, tmp_path / "recovered.log") as d:
        line = d.wait_log("regime_monitor.daemon: cycle ", timeout=60)
        due.add(due_now(load_config(config)))  # the clock may have passed 20:00 Shanghai
        day = re.search(r"cycle (\S+): (\w+)", line)
        assert day and D.fromisoformat(day.group(1)) in due and day.group(2) == "ok", line
        assert d.stop() == 0
        assert " ERROR " not in d.log() and "Traceback" not in d.log(), d.log()
    assert integrity(path) == ["ok"]
    assert last_cycle_day(path) == day.group(1)


def test_read_only_directory_without_a_lock_file_stops_run_with_one_line(prepared, tmp_path,
                                                                        permissions_apply):
    folder = tmp_path / "var"
    folder.mkdir()
    path = folder / "history.db"
    shutil.copy(prepared, path)
    folder.chmod(0o500)
    try:
        result = cli(["--config", str(DEFAULT_CONFIG), "--db", str(path), "run"],
                     preexec_fn=OBEY_MODES)
    finally:
        folder.chmod(0o700)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("regime-monitor: error: ") and str(path) in lines[0]


# -- 3. SIGHUP ----------------------------------------------------------------------------------

# The daemon, with two test seams: the service's clock reads a file the test advances, and the
# cycle's trigger fires every second (a day is due from 00:00:01 of its date on that clock). A
# notifier that refuses channel "#unusable" stands for a config that validates but cannot be used.
SEAMED_DAEMON = r"""
import datetime as dt
import os
import sys
from pathlib import Path

from monitor import daemon

CLOCK = Path(os.environ["OPS_TEST_CLOCK"])


class EverySecond(daemon.TradingDayTrigger):
    def get_next_fire_time(self, previous_fire_time, now):
        return now + dt.timedelta(seconds=1)


real_make_trigger, real_make_notifier = daemon.make_trigger, daemon.make_notifier
real_init = daemon.Service.__init__


def make_trigger(config, calendar):
    trigger = real_make_trigger(config, calendar)
    return EverySecond(trigger.cron, trigger.calendar)


def make_notifier(config, *args, **kwargs):
    if config.notify.slack.channel == "#unusable":
        raise RuntimeError("the notifier cannot use channel #unusable")
    return real_make_notifier(config, *args, **kwargs)


def init(self, *args, **kwargs):
    kwargs.setdefault("clock", lambda: dt.datetime.fromisoformat(CLOCK.read_text().strip()))
    real_init(self, *args, **kwargs)


daemon.make_trigger, daemon.make_notifier, daemon.Service.__init__ = make_trigger, make_notifier, init

from monitor.cli import main

sys.exit(main(sys.argv[1:]))
"""

BASE = """[source]
kind = "demo"

[[rules]]
name = "old_rule"
when = "microcap.drawdown <= -0.10"
explain = "the rule of the running config"
"""
NEW_RULE = """
[[rules]]
name = "new_rule"
when = "{when}"
explain = "a rule that only a reloaded config has"
"""
VALID = BASE + NEW_RULE.format(when="microcap.drawdown <= -0.05")

REJECTED = [  # (file bytes, what the log line must say)
    pytest.param((VALID + '\n[schedule]\ncolour = "blue"\n').encode(),
                 ["schedule.colour: unknown key"], id="unknown-key"),
    pytest.param((BASE + NEW_RULE.format(when="microcap.drawdown <= ")).encode(),
                 ['rules[1] (new_rule).when: unexpected end of expression', '"microcap.drawdown <= "'],
                 id="bad-expression"),
    pytest.param(VALID.replace("only a reloaded", "\u4ec5").encode("gbk"),
                 ["not UTF-8 text (byte ", "save the config as UTF-8"], id="not-utf-8"),
    pytest.param((VALID + '\n[notify.slack]\nchannel = "#unusable"\n').encode(),
                 ["RuntimeError: the notifier cannot use channel #unusable"],
                 id="valid-but-unusable"),
]


def evening(day: str) -> str:
    return f"{day}T21:00:00+08:00"


def alert_days(path: Path) -> dict[str, str]:
    return dict(query(path, "SELECT rule, last_evaluated FROM alerts"))


def test_sighup_rejections_log_the_reason_and_keep_the_old_rules_until_a_valid_reload(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text(BASE, encoding="utf-8")
    clock = tmp_path / "clock"
    clock.write_text(evening("2018-03-01"))
    path = tmp_path / "history.db"
    argv = [sys.executable, "-c", SEAMED_DAEMON, "--config", str(config), "--db", str(path), "run"]
    env = environment(OPS_TEST_CLOCK=str(clock))
    with daemon(argv, tmp_path / "daemon.log", env=env) as d:
        d.wait_log("cycle 2018-03-01: ok")
        assert alert_days(path) == {"old_rule": "2018-03-01", "data_stale": "2018-03-01"}

        for n, case in enumerate(REJECTED, start=1):
            content, needles = case.values
            config.write_bytes(content)
            d.proc.send_signal(signal.SIGHUP)
            line = d.wait_log("config not reloaded", count=n, timeout=15)
            assert " ERROR " in line and "keeping the running one" in line, line
            assert str(config) in line, line
            for needle in needles:
                assert needle in line, (case.id, line)
            assert d.proc.poll() is None
        assert not d.lines("config reloaded")

        # the next cycle still runs the old config's rules
        clock.write_text(evening("2018-03-02"))
        d.wait_log("cycle 2018-03-02: ok")
        assert alert_days(path) == {"old_rule": "2018-03-02", "data_stale": "2018-03-02"}

        config.write_text(VALID, encoding="utf-8")
        d.proc.send_signal(signal.SIGHUP)
        line = d.wait_log("config reloaded", timeout=15)
        assert line.endswith(f"config reloaded from {config} (2 rules)"), line
        clock.write_text(evening("2018-03-05"))  # Monday
        d.wait_log("cycle 2018-03-05: ok")
        assert alert_days(path) == {"old_rule": "2018-03-05", "new_rule": "2018-03-05",
                                    "data_stale": "2018-03-05"}

        assert d.stop() == 0
        assert "Traceback" not in d.log(), d.log()
        assert "daemon stopped" in d.log().splitlines()[-1]
    assert integrity(path) == ["ok"]
    assert [r[0] for r in query(path, "SELECT as_of FROM runs WHERE job = 'cycle' AND status = 'ok' "
                                      "ORDER BY id")] == ["2018-03-01", "2018-03-02", "2018-03-05"]
