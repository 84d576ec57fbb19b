"""The daemon: APScheduler's BlockingScheduler running the daily cycle on XSHG trading evenings.

Choices made on purpose:
- the cycle's trigger is the config's cron line in Asia/Shanghai, filtered to trading days
  (``TradingDayTrigger``), so holidays and weekend make-up working days never fire;
- ``misfire_grace_time`` is hours, not seconds, and ``coalesce=True``: a daily job that starts a
  little late (machine busy, process restarted) still runs, and a backlog runs once;
- the job itself runs every trading day that is due and not yet done (``catch_up``), so a late
  start, a missed evening or a restart never skips a day, and re-running one is a no-op;
- one daemon per database, enforced with an exclusive lock file next to the real database file
  (symbolic links resolved; the lock file itself is never followed through a link);
- a database that fails ``PRAGMA quick_check`` stops the start with a one-line reason;
- a cycle that fails on a lock held by another writer is retried within the evening;
- delivery runs on its own executor: a hanging Slack request never delays a cycle;
- SIGTERM/SIGINT stop the scheduler from a helper thread, wait for a running cycle to finish and
  for a delivery in flight at most a few seconds (its claimed outbox row is retried after its
  lease).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from monitor.calendar import TradingCalendar, coverage_warning_due
from monitor.config import Config
from monitor.cycle import CycleResult, run_cycle
from monitor.delivery import Notifier, destination_warning, make_notifier
from monitor.delivery.deliver import RetryPolicy, deliver_due
from monitor.sources import HoldingsSource, Source, make_source
from storage import alerts, runs
from storage.db import is_locked, open_db, quick_check

log = logging.getLogger("regime_monitor.daemon")
LOCK_RETRY_DELAYS = (30.0, 60.0, 120.0, 300.0, 600.0)  # seconds before each retry of a locked cycle
DELIVERY_STOP_GRACE = 3.0  # seconds a stopping daemon waits for a delivery in flight


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


def ahead_of(db, due: dt.date | None) -> dt.date | None:
    """Return the last day the database was evaluated for (its last cycle run, or an alert's
    last evaluation) when that is after ``due``, else None."""
    if due is None:
        return None
    last = runs.last_success(db, "cycle", statuses=runs.EVALUATED)
    evaluated = alerts.last_evaluated(db)
    latest = max([d for d in (last, evaluated) if d is not None], default=None)
    return latest if latest is not None and latest > due else None


def _sleep(seconds: float) -> bool:
    """Sleep ``seconds``; return False (nothing asked to stop)."""
    time.sleep(seconds)
    return False


class Service:
    """The I/O edge that wires config, database, source, notifier and clock together.

    ``clock`` (an aware datetime, default: now in the schedule's timezone) decides which trading
    days are due; ``wall_clock`` (an aware datetime, default: now in UTC) stamps the records
    whose times are wall-clock UTC (outbox delivery, drop-folder runs, a file's settling). Tests
    move ``clock`` through the calendar while ``wall_clock`` stays real.

    ``retry_delays``: seconds to wait before each new attempt of a cycle that failed on a lock
    held by another writer; ``wait(seconds)`` waits and returns True when the daemon is stopping
    (then no further attempt or day is started).
    """

    def __init__(self, config: Config, db_path: str | Path, *, source: Source | None = None,
                 notifier: Notifier | None = None,
                 clock: Callable[[], dt.datetime] | None = None,
                 wall_clock: Callable[[], dt.datetime] | None = None,
                 retry_delays: Sequence[float] = LOCK_RETRY_DELAYS,
                 wait: Callable[[float], bool] = _sleep) -> None:
        self.config = config
        self.retry_delays = tuple(retry_delays)
        self.wait = wait
        self.db_path = str(db_path)
        self.calendar = TradingCalendar(config.calendar.extra_closed)
        self.trigger = make_trigger(config, self.calendar)
        self.source = source or make_source(config)
        self.notifier = notifier or make_notifier(config)
        tz = ZoneInfo(config.schedule.timezone)
        self.clock = clock or (lambda: dt.datetime.now(tz))
        self.wall_clock = wall_clock or (lambda: dt.datetime.now(dt.UTC))
        self._db = None

    def _wall_iso(self) -> str:
        """Return the wall clock now as ISO UTC with seconds (the records' time stamps)."""
        return self.wall_clock().astimezone(dt.UTC).isoformat(timespec="seconds")

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
        from monitor.sources.ingest import import_drop_folder

        folder = self.config.source.drop_folder
        if not folder:
            return {}
        outcome = import_drop_folder(self.db, Path(folder), self.config.source.drop_folder_coverage,
                                     settle_seconds=self.config.source.drop_folder_settle_seconds,
                                     now=self.wall_clock().timestamp(), clock=self._wall_iso,
                                     calendar=self.calendar,
                                     nav_lag_days=self.config.exposure.nav_lag_days)
        now = self._wall_iso()
        for name, what in outcome.items():
            log.info("drop folder %s: %s", name, what)
            if what.startswith("rejected"):  # said in the next digest (monitor.cycle.failure_notes)
                runs.record_failure(self.db, "drop_folder", self.clock().date().isoformat(), now,
                                    now, f"{name} {what}"[:500])
        return outcome

    def run_day(self, as_of: dt.date | None = None) -> CycleResult:
        """Run the cycle for ``as_of`` (default: the latest due trading day), after importing
        the drop folder's files."""
        self.import_drop_folder()
        if as_of is None:
            as_of = self.latest_due()
            if as_of is None:
                raise DaemonError("no trading day is due yet")
        return run_cycle(self.db, self.config, as_of, self.source, self.calendar)

    def latest_due(self) -> dt.date | None:
        """Return the latest trading day whose scheduled run time has passed (``clock``), or
        None when none has yet."""
        return latest_due_day(self.trigger, self.calendar, self.clock())

    def catch_up(self) -> list[CycleResult]:
        """Run every due trading day not yet run successfully, oldest first; return their
        results. A day that fails on a lock is retried (``retry_delays``); any other failure,
        or a lock outlasting the retries, stops the catch-up (raised). Stops between days when
        the daemon is stopping.

        When the database was already evaluated for a day after the latest due one (a future
        ``once --as-of``), no day can run (cycles run forward): that is logged as an error and
        recorded as a ``failed`` cycle in ``runs`` (``status`` shows it, the next digest says
        it), and nothing is run."""
        due = self.latest_due()
        last = runs.last_success(self.db, "cycle", statuses=runs.EVALUATED)
        ahead = ahead_of(self.db, due)
        if due is not None and ahead is not None:
            message = (f"the database was evaluated up to {ahead}, after the latest due trading "
                       f"day {due}: cycles run forward in time, so no cycle runs until {ahead} "
                       "has passed (a future `once --as-of`?); restore a backup taken before it "
                       "(README \"Backup and restore\")")
            log.error("cycle %s not run: %s", due, message)
            now = self._wall_iso()
            runs.record_failure(self.db, "cycle", due.isoformat(), now, now, message)
            return []
        results = []
        for day in days_to_run(last, due, self.calendar, self.config.schedule.catch_up_max_days):
            if self.wait(0):  # stopping: the remaining days are caught up at the next start
                break
            results.append(self._run_day_retrying(day))
            log.info("cycle %s: %s (%d rows changed, %d events)", day, results[-1].status,
                     results[-1].changed, len(results[-1].events))
        return results

    def _run_day_retrying(self, day: dt.date) -> CycleResult:
        """Run ``day``'s cycle; after a failure on a lock (its ``failed`` row is in ``runs``), wait
        each of ``retry_delays`` and try again. Return the result; raise the last failure."""
        for attempt, delay in enumerate((*self.retry_delays, None), start=1):
            try:
                return self.run_day(day)
            except Exception as exc:
                if delay is None or not is_locked(exc):
                    raise
                log.warning("cycle %s failed on a lock held by another writer (%s): retry %d of "
                            "%d in %g s", day, str(exc).splitlines()[0] if str(exc) else "locked",
                            attempt, len(self.retry_delays), delay)
                if self.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def holdings(self, report_date: dt.date | None = None):
        """Run the quarterly fund-holdings job (``monitor.sources.holdings.run_holdings_job``) for
        ``report_date`` (default: the latest published quarter, if not done yet); return its
        ``HoldingsOutcome``, or None when the source has no holdings (demo, CSV) or the job is
        off in ``[source.akshare]``."""
        from monitor.sources.holdings import run_holdings_job

        settings = self.config.source.akshare
        if (not isinstance(self.source, HoldingsSource)
                or (report_date is None and not settings.holdings_job)):
            return None
        return run_holdings_job(self.db, self.source, self.clock().date(), report_date=report_date,
                                max_missing_share=settings.holdings_max_missing_share,
                                clock=self._wall_iso)

    def deliver(self) -> int:
        """Deliver the due outbox rows (retry timing from ``[notify]``; the products of the
        config for a digest's exposure block); return how many were sent. Due-ness is judged on
        the real clock: outbox times are wall-clock UTC."""
        return deliver_due(self.db, self.notifier, self.wall_clock(),
                           policy=RetryPolicy.from_config(self.config.notify), config=self.config)


@dataclass
class _Current:
    """What the next job's ``Service`` is built from (replaced together on a config reload)."""

    config: Config
    source: Source
    notifier: Notifier


def _acquire_lock(db_path: str):
    """Take the one-daemon-per-database lock: an exclusive ``flock`` on ``<real db>.lock``, the
    database path with every symbolic link resolved (two paths to one file share one lock). The
    lock file is opened with O_NOFOLLOW and must be a regular file: a link planted there is
    refused, never followed. Return the open lock file (hold it while the daemon runs); raise
    DaemonError with a one-line reason."""
    real = os.path.realpath(db_path)
    lock_path = f"{real}.lock"
    try:
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        why = ("it is a symbolic link: remove it" if exc.errno == errno.ELOOP
               else exc.strerror or str(exc))
        raise DaemonError(f"cannot open the lock file {lock_path} next to the database {db_path}: "
                          f"{why}") from None
    handle = os.fdopen(fd, "r+")  # noqa: SIM115 - held for the daemon's lifetime
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise DaemonError(f"the lock file {lock_path} next to the database {db_path} is not a "
                          "regular file: remove it")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read(32).strip() or "?"
        handle.close()
        where = db_path if real == os.path.abspath(db_path) else f"{db_path} (file {real})"
        raise DaemonError(f"another regime-monitor daemon (pid {pid}) is already running on "
                          f"{where}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def check_database(db_path: str | Path) -> None:
    """Refuse a damaged database: raise DaemonError (one line naming the file and the first
    problem ``PRAGMA quick_check`` reports) instead of failing every evening. A missing file (a
    first start) or one that cannot be read right now is left to the first cycle to report."""
    problem = quick_check(db_path)
    if problem is not None:
        raise DaemonError(f"database {db_path} is damaged (PRAGMA quick_check: {problem}): not "
                          "starting; restore it from a backup (`regime-monitor backup`, README "
                          "\"Backup and restore\")")


class DetachedThreadExecutor(BaseExecutor):
    """An APScheduler executor that runs each job in a daemon thread of its own (the outbox
    delivery): a request that hangs delays neither the cycle's executor nor the process's exit.
    ``shutdown(wait=True)`` waits at most ``grace_seconds`` for running jobs, then leaves them
    (a delivery's claimed outbox row is attempted again after its lease)."""

    def __init__(self, grace_seconds: float = DELIVERY_STOP_GRACE) -> None:
        super().__init__()
        self.grace_seconds = grace_seconds
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def _do_submit_job(self, job, run_times) -> None:
        def target() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)
            finally:
                with self._threads_lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=target, name=f"job-{job.id}", daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        thread.start()

    def shutdown(self, wait: bool = True) -> None:
        if not wait:
            return
        deadline = time.monotonic() + self.grace_seconds
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in threads if t.is_alive()]
        if left:
            log.warning("stopping without waiting for %s (still running after %g s); an outbox "
                        "row it claimed is attempted again after its lease", ", ".join(left),
                        self.grace_seconds)


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
    try:
        check_database(db_path)
    except DaemonError:
        lock.close()
        raise
    calendar = TradingCalendar(config.calendar.extra_closed)
    today = dt.date.today()
    if coverage_warning_due(calendar.coverage_end, today):
        log.warning("the XSHG holiday calendar ends on %s: declare later holidays in "
                    "[calendar] extra_closed (weekdays are assumed open after it)",
                    calendar.coverage_end)
    source = make_source(config)
    notifier = make_notifier(config)
    warning = destination_warning(config)
    if warning:
        log.error("%s", warning)

    current = _Current(config, source, notifier)
    stopping = threading.Event()

    def factory() -> Service:
        return Service(current.config, db_path, source=current.source,
                       notifier=current.notifier, wait=stopping.wait)

    # the cycle (and the holdings job) on one worker; delivery on its own, detached threads
    scheduler = BlockingScheduler(timezone=config.schedule.timezone,
                                  executors={"default": ThreadPoolExecutor(1),
                                             "delivery": DetachedThreadExecutor()})
    trigger = make_trigger(config, calendar)
    scheduler.add_job(_scheduled("catch_up", factory), trigger, id="cycle",
                      name="daily cycle", misfire_grace_time=config.schedule.misfire_grace_seconds,
                      coalesce=True, max_instances=1)
    _schedule_holdings(scheduler, config, _scheduled("holdings", factory))

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
        from monitor.delivery import redact

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
        current.config, current.source, current.notifier = new, new_source, new_notifier
        warning = destination_warning(new)
        if warning:
            log.error("SIGHUP: %s", warning)
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
    # Start-up: catch up the trading days missed since the last successful run; delivery starts
    # with the scheduler (first run at once), on its own executor.
    _scheduled("catch_up", factory)()
    deliver, first_done = _scheduled("deliver", factory), threading.Event()

    def delivery_job() -> None:
        deliver()
        if not first_done.is_set():
            first_done.set()
            log.info("start-up delivery run finished")

    scheduler.add_job(delivery_job, IntervalTrigger(minutes=1),
                      id="deliver", name="outbox delivery", executor="delivery",
                      next_run_time=dt.datetime.now(ZoneInfo(config.schedule.timezone)),
                      misfire_grace_time=60, coalesce=True, max_instances=1)
    try:
        if not stopping.is_set():
            scheduler.start()
    finally:
        lock.close()
    log.info("regime-monitor daemon stopped")
    return 0
