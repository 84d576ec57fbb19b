"""The daemon: trading-day trigger, due days and catch-up with an injected clock, the real
scheduler process (lock, SIGTERM) and config errors reaching ``run``.

Time is always passed in (APScheduler's ``get_next_fire_time(previous, now)``, ``Service(clock=)``):
nothing here sleeps on a wall-clock schedule.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor import daemon
from monitor.calendar import TradingCalendar
from monitor.config import Config, load_config, parse_config
from monitor.daemon import Service, TradingDayTrigger, days_to_run, latest_due_day, make_trigger
from tests.conftest import DEFAULT_CONFIG
from tests.procs import command, wait_for

SH = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
D = dt.date


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SH)


def trigger_for(toml: str = "", extra_closed: tuple[dt.date, ...] = ()) -> TradingDayTrigger:
    config = parse_config(toml, "<test>")
    closed = tuple(config.calendar.extra_closed) + extra_closed
    return make_trigger(config, TradingCalendar(closed))


DAILY = '[schedule]\ncron = "0 20 * * *"\n'  # every day: only the calendar filters


# -- 1. TradingDayTrigger ----------------------------------------------------------------------

@pytest.mark.parametrize("now, expected", [
    pytest.param(sh(2024, 3, 5, 10), sh(2024, 3, 5, 20), id="tuesday-before-20h"),
    pytest.param(sh(2024, 3, 5, 20), sh(2024, 3, 5, 20), id="tuesday-at-20h"),
    pytest.param(sh(2024, 3, 5, 20, 30), sh(2024, 3, 6, 20), id="tuesday-after-20h"),
    pytest.param(sh(2024, 3, 8, 21), sh(2024, 3, 11, 20), id="friday-after-20h-to-monday"),
    pytest.param(sh(2024, 3, 9, 12), sh(2024, 3, 11, 20), id="saturday"),
    pytest.param(sh(2024, 2, 8, 21), sh(2024, 2, 19, 20), id="spring-festival-2024"),
    pytest.param(sh(2024, 2, 12, 9), sh(2024, 2, 19, 20), id="inside-spring-festival"),
    pytest.param(sh(2024, 2, 3, 12), sh(2024, 2, 5, 20), id="makeup-sunday-2024-02-04"),
    pytest.param(sh(2024, 2, 4, 12), sh(2024, 2, 5, 20), id="on-makeup-sunday"),
    pytest.param(sh(2023, 9, 28, 20, 1), sh(2023, 10, 9, 20), id="national-day-2023"),
    pytest.param(dt.datetime(2024, 3, 5, 12, 30, tzinfo=UTC), sh(2024, 3, 6, 20),
                 id="utc-now-after-20h-shanghai"),
    pytest.param(dt.datetime(2024, 3, 5, 11, 59, tzinfo=UTC), sh(2024, 3, 5, 20),
                 id="utc-now-before-20h-shanghai"),
    pytest.param(sh(2027, 1, 5, 10), sh(2027, 1, 5, 20), id="beyond-coverage-tuesday"),
    pytest.param(sh(2027, 1, 4, 21), sh(2027, 1, 5, 20), id="beyond-coverage-monday-evening"),
])
def test_default_trigger_next_fire_time(now, expected):
    trigger = make_trigger(load_config(DEFAULT_CONFIG), TradingCalendar())
    fire = trigger.get_next_fire_time(None, now)
    assert fire == expected
    assert isinstance(fire.tzinfo, ZoneInfo) and fire.tzinfo.key == "Asia/Shanghai"
    assert fire.utcoffset() == dt.timedelta(hours=8)
    assert fire.hour == 20 and fire.minute == 0


def test_beyond_calendar_coverage_falls_back_to_weekdays():
    calendar = TradingCalendar()
    assert calendar.coverage_end < D(2027, 1, 5)
    assert calendar.is_trading_day(D(2027, 1, 5))


@pytest.mark.parametrize("now, expected", [
    # 2024-02-04 and 2024-02-18 (Sundays) were make-up working days; exchanges stayed closed.
    pytest.param(sh(2024, 2, 3, 21), sh(2024, 2, 5, 20), id="makeup-2024-02-04"),
    pytest.param(sh(2024, 2, 8, 21), sh(2024, 2, 19, 20), id="makeup-2024-02-18"),
    # 2023-10-07/08 (Sat/Sun) were make-up working days after National Day.
    pytest.param(sh(2023, 9, 28, 21), sh(2023, 10, 9, 20), id="makeup-2023-10-07"),
])
def test_daily_cron_never_fires_on_makeup_working_days(now, expected):
    assert trigger_for(DAILY).get_next_fire_time(None, now) == expected


def test_chained_fire_times_are_exactly_the_trading_days():
    """Iterate like the scheduler does (previous fire time, then a moment later)."""
    calendar = TradingCalendar()
    for toml in ("", DAILY):
        trigger = make_trigger(parse_config(toml), calendar)
        fires, prev = [], None
        now = sh(2023, 9, 1)
        while True:
            fire = trigger.get_next_fire_time(prev, now)
            if fire.date() > D(2024, 3, 31):
                break
            fires.append(fire)
            prev, now = fire, fire + dt.timedelta(seconds=1)
        days = calendar.days(D(2023, 9, 1), D(2024, 3, 31))
        assert fires == [dt.datetime.combine(d, dt.time(20), tzinfo=SH) for d in days]
        assert D(2024, 2, 4) not in {f.date() for f in fires}
        assert D(2023, 10, 7) not in {f.date() for f in fires}


@pytest.mark.parametrize("now, expected", [
    pytest.param(sh(2024, 3, 5, 21), sh(2024, 3, 7, 20), id="skips-extra-closed-wednesday"),
    pytest.param(sh(2024, 3, 6, 10), sh(2024, 3, 7, 20), id="on-extra-closed-day"),
    pytest.param(sh(2027, 1, 4, 21), sh(2027, 1, 6, 20), id="beyond-coverage-extra-closed"),
])
def test_extra_closed_days_from_config_are_skipped(now, expected):
    toml = "[calendar]\nextra_closed = [2024-03-06, 2027-01-05]\n"
    config = parse_config(toml)
    assert config.calendar.extra_closed == [D(2024, 3, 6), D(2027, 1, 5)]
    trigger = make_trigger(config, TradingCalendar(config.calendar.extra_closed))
    assert trigger.get_next_fire_time(None, now) == expected


def test_trigger_describes_itself():
    assert "XSHG trading days" in str(trigger_for())


# -- 2. latest_due_day / days_to_run -----------------------------------------------------------

@pytest.mark.parametrize("now, expected", [
    pytest.param(sh(2024, 3, 5, 19, 59), D(2024, 3, 4), id="before-20h-previous-day"),
    pytest.param(sh(2024, 3, 5, 20), D(2024, 3, 5), id="at-20h-today"),
    pytest.param(sh(2024, 3, 5, 23, 59), D(2024, 3, 5), id="after-20h-today"),
    pytest.param(sh(2024, 3, 6, 0, 30), D(2024, 3, 5), id="after-midnight"),
    pytest.param(sh(2024, 3, 11, 9), D(2024, 3, 8), id="monday-morning-friday"),
    pytest.param(sh(2024, 3, 9, 21), D(2024, 3, 8), id="saturday-friday"),
    pytest.param(sh(2024, 2, 12, 21), D(2024, 2, 8), id="holiday-last-trading-day"),
    pytest.param(sh(2024, 2, 4, 21), D(2024, 2, 2), id="makeup-sunday-last-trading-day"),
    pytest.param(sh(2024, 2, 19, 10), D(2024, 2, 8), id="first-day-after-festival-morning"),
    pytest.param(sh(2023, 10, 9, 8), D(2023, 9, 28), id="after-national-day-morning"),
    pytest.param(dt.datetime(2024, 3, 5, 11, 59, tzinfo=UTC), D(2024, 3, 4), id="utc-before"),
    pytest.param(dt.datetime(2024, 3, 5, 12, 0, tzinfo=UTC), D(2024, 3, 5), id="utc-at"),
    pytest.param(dt.datetime(2024, 3, 5, 20, 30, tzinfo=UTC), D(2024, 3, 5),
                 id="utc-evening-is-shanghai-next-morning"),
    pytest.param(sh(2027, 1, 5, 21), D(2027, 1, 5), id="beyond-coverage"),
])
def test_latest_due_day(now, expected):
    calendar = TradingCalendar()
    trigger = make_trigger(parse_config(""), calendar)
    assert latest_due_day(trigger, calendar, now) == expected


def test_latest_due_day_skips_extra_closed():
    calendar = TradingCalendar([D(2024, 3, 5)])
    trigger = make_trigger(parse_config(""), calendar)
    assert latest_due_day(trigger, calendar, sh(2024, 3, 5, 21)) == D(2024, 3, 4)
    assert latest_due_day(trigger, calendar, sh(2024, 3, 6, 21)) == D(2024, 3, 6)


FESTIVAL = [D(2024, 2, 2), D(2024, 2, 5), D(2024, 2, 6), D(2024, 2, 7), D(2024, 2, 8),
            D(2024, 2, 19)]


@pytest.mark.parametrize("last, due, limit, expected", [
    pytest.param(None, D(2024, 2, 19), 60, [D(2024, 2, 19)], id="no-success-only-due"),
    pytest.param(D(2024, 2, 19), D(2024, 2, 19), 60, [], id="done"),
    pytest.param(D(2024, 2, 20), D(2024, 2, 19), 60, [], id="ahead"),
    pytest.param(None, None, 60, [], id="nothing-due"),
    pytest.param(D(2024, 2, 1), D(2024, 2, 19), 60, FESTIVAL, id="missed-days-in-order"),
    pytest.param(D(2024, 2, 1), D(2024, 2, 19), 2, FESTIVAL[-2:], id="limit-keeps-recent"),
    pytest.param(D(2024, 2, 1), D(2024, 2, 19), 6, FESTIVAL, id="limit-exact"),
    pytest.param(D(2024, 2, 1), D(2024, 2, 19), 0, [D(2024, 2, 19)], id="limit-0-only-due"),
    pytest.param(D(2024, 2, 8), D(2024, 2, 19), 60, [D(2024, 2, 19)], id="across-holiday"),
    pytest.param(D(2024, 2, 10), D(2024, 2, 19), 60, [D(2024, 2, 19)], id="last-on-holiday"),
])
def test_days_to_run(last, due, limit, expected):
    assert days_to_run(last, due, TradingCalendar(), limit) == expected


# -- 3. Service.catch_up with the demo source and an injected clock ----------------------------

class SilentNotifier:
    destination = "test"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, payload: dict, dedup_key: str) -> None:
        self.sent.append((dedup_key, payload))


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def demo_config(**schedule) -> Config:
    config = load_config(DEFAULT_CONFIG)
    return config.model_copy(update={
        "source": config.source.model_copy(update={"kind": "demo"}),
        "schedule": config.schedule.model_copy(update=schedule),
    })


def ok_cycle_days(service: Service) -> list[str]:
    rows = service.db.execute(
        "SELECT as_of FROM runs WHERE job = 'cycle' AND status = 'ok' ORDER BY id").fetchall()
    return [r[0] for r in rows]


def all_runs(service: Service) -> list[tuple]:
    return service.db.execute("SELECT job, as_of, status FROM runs ORDER BY id").fetchall()


@pytest.fixture
def demo_service(tmp_path):
    clock = Clock(sh(2018, 3, 1, 21))
    service = Service(demo_config(), tmp_path / "history.db", notifier=SilentNotifier(),
                      clock=clock)
    assert [r.as_of for r in service.catch_up()] == [D(2018, 3, 1)]  # first run: only due
    yield service, clock
    service.close()


def test_catch_up_runs_missed_days_in_order_once(demo_service):
    service, clock = demo_service
    clock.now = sh(2018, 3, 7, 21)
    results = service.catch_up()
    missed = [D(2018, 3, 2), D(2018, 3, 5), D(2018, 3, 6), D(2018, 3, 7)]
    assert [r.as_of for r in results] == missed
    assert all(r.status == "ok" for r in results)
    assert ok_cycle_days(service) == ["2018-03-01"] + [d.isoformat() for d in missed]
    assert all(status == "ok" for _job, _day, status in all_runs(service))

    before = all_runs(service)
    assert service.catch_up() == []  # nothing new is due
    assert all_runs(service) == before

    clock.now += dt.timedelta(days=1)  # Thursday 2018-03-08 21:00
    assert [(r.as_of, r.status) for r in service.catch_up()] == [(D(2018, 3, 8), "ok")]
    assert ok_cycle_days(service)[-1] == "2018-03-08"
    assert service.catch_up() == []


def test_catch_up_before_the_evening_run_waits(demo_service):
    service, clock = demo_service
    clock.now = sh(2018, 3, 2, 19, 59)  # 2018-03-02's run is not due yet
    assert service.catch_up() == []
    clock.now = sh(2018, 3, 2, 20, 0)
    assert [r.as_of for r in service.catch_up()] == [D(2018, 3, 2)]


def test_catch_up_limit_keeps_most_recent_days(tmp_path):
    clock = Clock(sh(2018, 3, 1, 21))
    service = Service(demo_config(catch_up_max_days=2), tmp_path / "h.db",
                      notifier=SilentNotifier(), clock=clock)
    try:
        service.catch_up()
        clock.now = sh(2018, 3, 7, 21)
        assert [r.as_of for r in service.catch_up()] == [D(2018, 3, 6), D(2018, 3, 7)]
        assert ok_cycle_days(service) == ["2018-03-01", "2018-03-06", "2018-03-07"]
    finally:
        service.close()


def test_run_day_defaults_to_latest_due_day(tmp_path):
    # Saturday 2018-03-03: the latest due trading day is Friday 2018-03-02.
    service = Service(demo_config(), tmp_path / "h.db", notifier=SilentNotifier(),
                      clock=Clock(sh(2018, 3, 3, 10)))
    try:
        assert service.run_day().as_of == D(2018, 3, 2)
        assert ok_cycle_days(service) == ["2018-03-02"]
    finally:
        service.close()


# -- 4. the real daemon process ----------------------------------------------------------------

CSV_CONFIG = '[schedule]\ncatch_up_max_days = 0\n\n[source]\nkind = "csv"\n'


def test_daemon_process_lock_and_sigterm(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text(CSV_CONFIG, encoding="utf-8")
    db = tmp_path / "history.db"
    base = [*command(), "--config", str(config), "--db", str(db)]
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        first = subprocess.Popen([*base, "run"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                 stderr=log, stdin=subprocess.DEVNULL)
    try:
        def log_text() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        started = wait_for(lambda: "daemon started" in log_text() or first.poll() is not None,
                           timeout=20)
        assert started and first.poll() is None, f"daemon did not start:\n{log_text()}"

        second = subprocess.run([*base, "run"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=15)
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "already running" in lines[0]
        assert str(first.pid) in lines[0]
        assert first.poll() is None  # the first daemon is unaffected

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
        text = log_text()
        assert "stopped" in text.splitlines()[-1], text
        assert "Traceback" not in text
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=5)


# An in-process run: a SIGTERM that arrives while the scheduler is starting must not be lost.

def test_sigterm_while_scheduler_starts_stops_daemon(tmp_path, monkeypatch):
    config = parse_config(CSV_CONFIG)
    monkeypatch.setattr(Service, "catch_up", lambda self: [])
    monkeypatch.setattr(Service, "deliver", lambda self: 0)
    real_make_trigger = daemon.make_trigger
    sent = []

    class SignallingTrigger(TradingDayTrigger):
        def get_next_fire_time(self, previous_fire_time, now):
            if not sent:  # first call: inside scheduler.start(), before it is running
                sent.append(True)
                os.kill(os.getpid(), signal.SIGTERM)
            return super().get_next_fire_time(previous_fire_time, now)

    def make(config, calendar):
        t = real_make_trigger(config, calendar)
        return SignallingTrigger(t.cron, t.calendar)

    monkeypatch.setattr(daemon, "make_trigger", make)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    finished = threading.Event()

    def watchdog() -> None:  # the daemon's own handler: a second signal stops a running one
        if not finished.wait(10):
            os.kill(os.getpid(), signal.SIGINT)

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    start = time.monotonic()
    try:
        assert daemon.run_daemon(config, tmp_path / "h.db") == 0
        elapsed = time.monotonic() - start
    finally:
        finished.set()
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert sent
    assert elapsed < 5, "the SIGTERM received during scheduler start-up was lost"


# -- 5. config errors reach `run` --------------------------------------------------------------

RULE = '[[rules]]\nname = "r"\nwhen = "{when}"\nexplain = "x"\n'


@pytest.mark.parametrize("toml, needles", [
    pytest.param('[schedule]\ncronn = "0 20 * * *"\n', ["schedule.cronn: unknown key"],
                 id="unknown-key"),
    pytest.param('[source]\nkind = "csv"\nbogus = 1\n', ["source.bogus: unknown key"],
                 id="unknown-nested-key"),
    pytest.param(RULE.format(when="microcap.drawdown <= "),
                 ["rules[0] (r).when", '"microcap.drawdown <= "'], id="malformed-expression"),
    pytest.param(RULE.format(when="microcap.nope <= -0.1"),
                 ["rules[0]", "unknown signal 'microcap.nope'"], id="unknown-signal"),
])
def test_config_errors_stop_run_with_one_line(tmp_path, toml, needles):
    config = tmp_path / "bad.toml"
    config.write_text(toml, encoding="utf-8")
    db = tmp_path / "history.db"
    proc = subprocess.run([*command(), "--config", str(config), "--db", str(db), "run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"regime-monitor: error: {config}: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert not db.exists() and not Path(f"{db}.lock").exists()  # nothing was started


def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text(CSV_CONFIG, encoding="utf-8")
    base = [*command(), "--config", str(config), "--db", str(tmp_path / "history.db")]
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*base, "run"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
                                stdin=subprocess.DEVNULL)
    try:
        def log_text() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        assert wait_for(lambda: "daemon started" in log_text(), timeout=20), log_text()
        config.write_text(CSV_CONFIG + '\n[[rules]]\nname = "r"\nwhen = "microcap.vol_spike >= 1.5"'
                          '\nexplain = "why"\n', encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config reloaded" in log_text(), timeout=10), log_text()
        assert "(1 rules)" in log_text()
        config.write_text(CSV_CONFIG + "\n[schedule]\ncolour = 1\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config not reloaded" in log_text(), timeout=10), log_text()
        line = next(x for x in log_text().splitlines() if "config not reloaded" in x)
        assert "keeping the running one" in line and "monitor.toml" in line
        assert proc.poll() is None  # still running on the previous config
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in log_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


# -- issue 14: a future day in the database, a Slack channel without its token ----------------

def test_a_database_evaluated_past_the_due_day_is_said_loudly_and_nothing_runs(tmp_path, caplog):
    """A cycle for a future day (as a mistyped `once --as-of` ran before it was refused) blocks
    every earlier day: catch-up runs nothing, logs an error and records a failed cycle naming
    both days, which `status` shows as the last cycle."""
    clock = Clock(sh(2018, 3, 5, 21))
    path = tmp_path / "h.db"
    service = Service(demo_config(), path, notifier=SilentNotifier(), clock=clock)
    try:
        assert service.run_day(D(2018, 3, 9)).status == "ok"  # four trading days ahead
        with caplog.at_level("ERROR", logger="regime_monitor.daemon"):
            assert service.catch_up() == []
        assert ok_cycle_days(service) == ["2018-03-09"]
        failed = service.db.execute("SELECT as_of, status, error FROM runs WHERE job = 'cycle' "
                                    "AND status = 'failed'").fetchall()
        assert len(failed) == 1 and failed[0][:2] == ("2018-03-05", "failed")
        assert failed[0][2].startswith("the database was evaluated up to 2018-03-09, after the "
                                       "latest due trading day 2018-03-05")
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "cycle 2018-03-05 not run" in errors[0].getMessage()
        assert "2018-03-09" in errors[0].getMessage()
        clock.now = sh(2018, 3, 9, 21)  # once the day has come, the daemon goes on by itself
        assert service.catch_up() == []
        clock.now = sh(2018, 3, 12, 21)
        assert [r.as_of for r in service.catch_up()] == [D(2018, 3, 12)]
    finally:
        service.close()


def test_once_refuses_a_day_after_the_latest_due_day_and_writes_nothing(tmp_path, capsys):
    from monitor import cli

    config = tmp_path / "monitor.toml"
    config.write_text('[source]\nkind = "demo"\n', encoding="utf-8")
    db = tmp_path / "h.db"
    future = dt.date.today() + dt.timedelta(days=30)
    code = cli.main(["--config", str(config), "--db", str(db), "once", "--as-of",
                     future.isoformat()])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"regime-monitor: error: --as-of {future} is after the latest due "
                          "trading day ")
    assert not db.exists()


def test_a_slack_channel_without_its_token_is_an_error_in_the_daemon_log(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text(CSV_CONFIG + '\n[notify.slack]\nchannel = "#pm-desk"\n', encoding="utf-8")
    log_path = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k not in ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*command(), "--config", str(config), "--db",
                                 str(tmp_path / "h.db"), "run"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        def text() -> str:
            return log_path.read_text(encoding="utf-8", errors="replace")

        assert wait_for(lambda: "daemon started" in text() or proc.poll() is not None, 20), text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        errors = [ln for ln in text().splitlines() if " ERROR " in ln]
        assert len(errors) == 1, text()
        assert errors[0].endswith("notify.slack.channel is '#pm-desk' but $SLACK_BOT_TOKEN is not "
                                  "set: digests go to the console only, not to that channel; "
                                  "export $SLACK_BOT_TOKEN (README \"Slack\")")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
