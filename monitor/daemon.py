"""The daemon: APScheduler's BlockingScheduler running the daily cycle on XSHG trading evenings.

Choices made on purpose:
- the cycle's trigger is the config's cron line in Asia/Shanghai, filtered to trading days
  (``TradingDayTrigger``), so holidays and weekend make-up working days never fire;
- ``misfire_grace_time`` is hours, not seconds, and ``coalesce=True``: a daily job that starts a
  little late (machine busy, process restarted) still runs, and a backlog runs once;
- the job itself runs every trading day that is due and not yet done (``catch_up``), so a late
  start, a missed evening or a restart never skips a day, and re-running one is a no-op;
- one daemon per database, enforced with an exclusive lock file next to the database;
- SIGTERM/SIGINT stop the scheduler from a helper thread and wait for a running cycle to finish.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from monitor.calendar import TradingCalendar
from monitor.config import Config
from monitor.cycle import CycleResult, run_cycle
from monitor.delivery import RetryPolicy, deliver_due
from monitor.notify import Notifier, make_notifier
from monitor.sources import Source, make_source
from storage import runs
from storage.db import open_db

log = logging.getLogger("regime_monitor.daemon")
COVERAGE_WARNING_DAYS = 60


class DaemonError(RuntimeError):
    """The daemon cannot start; one-line reason."""


class TradingDayTrigger(BaseTrigger):
    """A cron trigger that fires only on XSHG trading days (time zone of the cron line)."""

    def __init__(self, cron: CronTrigger, calendar: TradingCalendar) -> None:
        self.cron = cron
        self.calendar = calendar

    def get_next_fire_time(self, previous_fire_time, now):
        fire = self.cron.get_next_fire_time(previous_fire_time, now)
        for _ in range(1000):  # at most a few weeks of closed days in a row
            if fire is None or self.calendar.is_trading_day(fire.date()):
                return fire
            fire = self.cron.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        return None

    def __str__(self) -> str:
        return f"{self.cron} on XSHG trading days"


def make_trigger(config: Config, calendar: TradingCalendar) -> TradingDayTrigger:
    """Return the daily cycle's trigger from ``[schedule]``."""
    cron = CronTrigger.from_crontab(config.schedule.cron, timezone=config.schedule.timezone)
    return TradingDayTrigger(cron, calendar)


def latest_due_day(trigger: TradingDayTrigger, calendar: TradingCalendar,
                   now: dt.datetime) -> dt.date | None:
    """Return the latest trading day whose scheduled run time is at or before ``now``."""
    tz = trigger.cron.timezone
    local = now.astimezone(tz)
    day = calendar.last_on_or_before(local.date())
    for _ in range(30):
        start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz)
        fire = trigger.get_next_fire_time(None, start)
        if fire is not None and fire.date() == day and fire <= local:
            return day
        day = calendar.previous(day)
    return None


def days_to_run(last_success: dt.date | None, due: dt.date | None, calendar: TradingCalendar,
                limit: int) -> list[dt.date]:
    """Return the trading days to run now: those after ``last_success`` up to ``due``.

    At most ``limit`` (the most recent ones); with no success yet, only ``due`` itself.
    """
    if due is None or (last_success is not None and last_success >= due):
        return []
    if last_success is None:
        return [due]
    days = calendar.days(last_success + dt.timedelta(days=1), due)
    return days[-limit:] if limit > 0 else [due]


class Service:
    """The I/O edge that wires config, database, source, notifier and clock together."""

    def __init__(self, config: Config, db_path: str | Path, *, source: Source | None = None,
                 notifier: Notifier | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.config = config
        self.db_path = str(db_path)
        self.calendar = TradingCalendar(config.calendar.extra_closed)
        self.trigger = make_trigger(config, self.calendar)
        self.source = source or make_source(config)
        self.notifier = notifier or make_notifier(config)
        tz = ZoneInfo(config.schedule.timezone)
        self.clock = clock or (lambda: dt.datetime.now(tz))
        self._db = None

    @property
    def db(self):
        if self._db is None:
            self._db = open_db(self.db_path)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def import_drop_folder(self) -> dict[str, str]:
        """Import the files waiting in ``[source] drop_folder`` (if configured)."""
        from monitor.ingest import import_drop_folder

        folder = self.config.source.drop_folder
        if not folder:
            return {}
        outcome = import_drop_folder(self.db, Path(folder), self.config.source.drop_folder_coverage)
        for name, what in outcome.items():
            log.info("drop folder %s: %s", name, what)
        return outcome

    def run_day(self, as_of: dt.date | None = None) -> CycleResult:
        """Run the cycle for ``as_of`` (default: the latest due trading day), after importing
        the drop folder's files."""
        self.import_drop_folder()
        if as_of is None:
            as_of = latest_due_day(self.trigger, self.calendar, self.clock())
            if as_of is None:
                raise DaemonError("no trading day is due yet")
        return run_cycle(self.db, self.config, as_of, self.source, self.calendar)

    def catch_up(self) -> list[CycleResult]:
        """Run every due trading day not yet run successfully, oldest first; stop at a failure."""
        due = latest_due_day(self.trigger, self.calendar, self.clock())
        last = runs.last_success(self.db, "cycle", statuses=runs.EVALUATED)
        results = []
        for day in days_to_run(last, due, self.calendar, self.config.schedule.catch_up_max_days):
            results.append(self.run_day(day))
            log.info("cycle %s: %s (%d rows changed, %d events)", day, results[-1].status,
                     results[-1].changed, len(results[-1].events))
        return results

    def holdings(self, report_date: dt.date | None = None):
        """Run the quarterly fund-holdings job (``monitor.holdings.run_holdings_job``) for
        ``report_date`` (default: the latest published quarter, if not done yet); return its
        ``HoldingsOutcome``, or None when the source has no holdings (demo, CSV) or the job is
        off in ``[source.akshare]``."""
        from monitor.holdings import run_holdings_job

        settings = self.config.source.akshare
        if not hasattr(self.source, "holdings_of") or (report_date is None and not settings.holdings_job):
            return None
        return run_holdings_job(self.db, self.source, self.clock().date(), report_date=report_date,
                                max_missing_share=settings.holdings_max_missing_share)

    def deliver(self) -> int:
        """Deliver the due outbox rows (retry timing from ``[notify]``); return how many were
        sent. Due-ness is judged on the real clock: outbox times are wall-clock UTC."""
        return deliver_due(self.db, self.notifier, policy=RetryPolicy.from_config(self.config.notify))


def _acquire_lock(db_path: str):
    lock_path = f"{db_path}.lock"
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
    except OSError as exc:
        raise DaemonError(f"cannot open the lock file {lock_path} next to the database {db_path}: "
                          f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise DaemonError(f"another regime-monitor daemon (pid {pid}) is already running on "
                          f"{db_path}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _scheduled(name: str, service_factory: Callable[[], Service]) -> Callable[[], None]:
    """Return a job that runs ``Service.<name>`` on a fresh connection and logs failures."""

    def wrapper() -> None:
        service = service_factory()
        try:
            getattr(service, name)()
        except Exception as exc:  # the daemon keeps running; the failure is in `runs`
            log.error("%s failed: %s: %s", name, type(exc).__name__, str(exc).splitlines()[0]
                      if str(exc) else "")
        finally:
            service.close()

    return wrapper


def holdings_trigger(config: Config) -> CronTrigger | None:
    """Return the quarterly holdings job's trigger (``[source.akshare] holdings_cron`` in the
    schedule's time zone), or None when the source has no holdings or the job is off."""
    if config.source.kind != "akshare" or not config.source.akshare.holdings_job:
        return None
    return CronTrigger.from_crontab(config.source.akshare.holdings_cron, timezone=config.schedule.timezone)


def _schedule_holdings(scheduler, config: Config, job: Callable[[], None]) -> None:
    """(Re)place the holdings job: it runs in the one worker thread, so AKShare calls of the
    cycle and of the holdings job never overlap."""
    if scheduler.get_job("holdings") is not None:
        scheduler.remove_job("holdings")
    trigger = holdings_trigger(config)
    if trigger is not None:
        scheduler.add_job(job, trigger, id="holdings", name="quarterly fund holdings",
                          misfire_grace_time=config.schedule.misfire_grace_seconds, coalesce=True,
                          max_instances=1)


def run_daemon(config: Config, db_path: str | Path, config_file: Path | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT; SIGHUP reloads ``config_file``. Return the exit
    code."""
    from apscheduler.events import EVENT_SCHEDULER_START
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers import SchedulerNotRunningError
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    db_path = str(db_path)
    lock = _acquire_lock(db_path)
    calendar = TradingCalendar(config.calendar.extra_closed)
    today = dt.date.today()
    if (calendar.coverage_end - today).days <= COVERAGE_WARNING_DAYS:
        log.warning("the XSHG holiday calendar ends on %s: declare later holidays in "
                    "[calendar] extra_closed (weekdays are assumed open after it)",
                    calendar.coverage_end)
    source = make_source(config)
    notifier = make_notifier(config)

    current = {"config": config, "source": source, "notifier": notifier}

    def factory() -> Service:
        return Service(current["config"], db_path, source=current["source"],
                       notifier=current["notifier"])

    scheduler = BlockingScheduler(timezone=config.schedule.timezone,
                                  executors={"default": ThreadPoolExecutor(1)})
    trigger = make_trigger(config, calendar)
    scheduler.add_job(_scheduled("catch_up", factory), trigger, id="cycle",
                      name="daily cycle", misfire_grace_time=config.schedule.misfire_grace_seconds,
                      coalesce=True, max_instances=1)
    scheduler.add_job(_scheduled("deliver", factory), IntervalTrigger(minutes=1),
                      id="deliver", name="outbox delivery", misfire_grace_time=60, coalesce=True,
                      max_instances=1)
    _schedule_holdings(scheduler, config, _scheduled("holdings", factory))

    stopping = threading.Event()

    def shutdown() -> None:
        try:
            scheduler.shutdown(wait=True)
        except SchedulerNotRunningError:  # already stopped by an earlier signal
            pass

    def stop(signum, _frame) -> None:
        log.info("received %s: stopping after the running job", signal.Signals(signum).name)
        stopping.set()
        if scheduler.running:
            threading.Thread(target=shutdown, daemon=True).start()

    def started(_event) -> None:
        # A signal that arrived while scheduler.start() was running (after the check below,
        # before the scheduler counted as running) found nothing to shut down: do it now.
        if stopping.is_set():
            threading.Thread(target=shutdown, daemon=True).start()

    def reload() -> None:
        from monitor.config import ConfigError, load_config
        from monitor.notify import redact

        try:
            new = load_config(config_file)
            new_calendar = TradingCalendar(new.calendar.extra_closed)
            new_trigger = make_trigger(new, new_calendar)
            new_source, new_notifier = make_source(new), make_notifier(new)
        except ConfigError as exc:
            log.error("SIGHUP: config not reloaded, keeping the running one: %s", exc)
            return
        except Exception as exc:  # unreadable, or valid but unusable: never kill the reload quietly
            reason = str(exc).splitlines()[0] if str(exc) else ""
            log.error("SIGHUP: config not reloaded, keeping the running one: %s: %s: %s",
                      config_file, type(exc).__name__, redact(reason))
            return
        current.update(config=new, source=new_source, notifier=new_notifier)
        # also before the scheduler runs (a SIGHUP during the start-up catch-up): the jobs are
        # pending then, and APScheduler reschedules pending jobs too
        if not stopping.is_set():
            scheduler.reschedule_job("cycle", trigger=new_trigger)
            _schedule_holdings(scheduler, new, _scheduled("holdings", factory))
        log.info("SIGHUP: config reloaded from %s (%d rules)", config_file, len(new.rules))

    def hangup(_signum, _frame) -> None:
        if config_file is None:
            log.warning("SIGHUP ignored: the daemon was not started from a config file")
            return
        threading.Thread(target=reload, daemon=True).start()

    scheduler.add_listener(started, EVENT_SCHEDULER_START)
    signal.signal(signal.SIGHUP, hangup)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("regime-monitor daemon started on %s (pid %d); cycle: %s", db_path, os.getpid(),
             trigger)
    # Start-up: catch up the trading days missed since the last successful run, then deliver.
    _scheduled("catch_up", factory)()
    _scheduled("deliver", factory)()
    try:
        if not stopping.is_set():
            scheduler.start()
    finally:
        lock.close()
    log.info("regime-monitor daemon stopped")
    return 0
