"""``regime-monitor demo``: the built-in scenario told in one screen, in seconds.

The history (every trading day but the last ``LIVE_DAYS``) is built by replay
(``monitor.analysis.replay``: the signals of the whole period in one vectorised point-in-time pass,
then the daemon's own ``run_cycle`` for each day; equal to the live run, ``tests/test_replay.py``).
The last ``LIVE_DAYS`` trading days then run cycle by cycle exactly as the daemon runs them
(``Service.run_day`` fetching from the demo source, then ``Service.deliver``), with real digests.
The database left behind holds the whole history: observations, signal values, alert states and
events, episodes and one ``runs`` row per day; its outbox holds the digests actually delivered
(the history's are withdrawn: they were never sent, and ``replay`` rebuilds them).
"""

from __future__ import annotations

import datetime as dt
import io
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the CLI imports this module lazily; pydantic/pandas stay out of --help
    from monitor.config import Config

LIVE_DAYS = 10  # trading days (two weeks) run cycle by cycle at the end, as the daemon would
MAX_TIMELINE_LINES = 24  # the timeline's latest episodes shown; the rest: `alerts --all`
DIGEST_RULE = "-" * 78  # the console notifier's frame around a digest


def _remove(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def timeline(events: list[dict]) -> list[str]:
    """Return the alert timeline: one line per alert episode (pending -> firing -> resolved),
    in date order, with the number of repeat reminders sent while it was firing."""
    open_: dict[str, dict] = {}
    lines: list[tuple[str, str]] = []
    for e in events:
        rule, kind, day = e["rule"], e["event"], e["date"]
        if kind in ("no_data", "data_back"):
            continue
        ep = open_.setdefault(rule, {"steps": [], "repeats": 0, "start": day})
        if kind == "repeat":
            ep["repeats"] += 1
            continue
        ep["steps"].append(f"{kind} {day}")
        if kind in ("resolved", "cancelled"):
            lines.append((ep["start"], _episode_line(rule, open_.pop(rule))))
    for rule, ep in open_.items():
        if ep["steps"]:
            lines.append((ep["start"], _episode_line(rule, ep) + " (still active)"))
    return [text for _, text in sorted(lines)]


def _episode_line(rule: str, ep: dict) -> str:
    reminders = f" [{ep['repeats']} reminder(s)]" if ep["repeats"] else ""
    return f"{rule:<26} " + " -> ".join(ep["steps"]) + reminders


class _Capture:
    """The console notifier's rendering of each digest, kept (and printed too when ``echo``):
    the demo shows one of them, ``--verbose`` all of them as they are delivered."""

    destination = "console"

    def __init__(self, echo: TextIO | None, inhibit: bool) -> None:
        self.echo = echo
        self.inhibit = inhibit
        self.texts: list[tuple[str, str]] = []  # (as_of, the framed digest as printed)

    def send(self, payload: dict, dedup_key: str) -> None:
        from monitor.delivery.console import ConsoleNotifier

        buf = io.StringIO()
        ConsoleNotifier(buf, inhibit=self.inhibit).send(payload, dedup_key)
        self.texts.append((str(payload.get("as_of", "")), buf.getvalue()))
        if self.echo is not None:
            self.echo.write(buf.getvalue())
            self.echo.flush()


def demo_config(config: Config) -> Config:
    """Return ``config`` as the demo runs it: the built-in demo source (its seed kept) and the
    weekly summary on, so that even a quiet last few weeks show the digest a PM receives."""
    from monitor.config import SourceConfig

    return config.model_copy(update={
        "source": SourceConfig(kind="demo", demo_seed=config.source.demo_seed),
        "notify": config.notify.model_copy(update={"weekly_summary": True}),
    })


def build_history(config: Config, db_path: Path, days: list[dt.date], source) -> None:
    """Create the database at ``db_path`` holding the demo's observations known by ``days[-1]``
    and the daily cycle of every day in ``days`` (replay: the vectorised signal pass, then
    ``run_cycle`` per day), with its unsent digests withdrawn. ``source``: the demo source, whose
    scenario (generated once) is written to a temporary database for replay to copy from."""
    from monitor.analysis.replay import replay
    from storage import observations, outbox
    from storage.db import open_db

    with tempfile.TemporaryDirectory(prefix="regime-monitor-demo-") as tmp:
        scenario = open_db(Path(tmp) / "scenario.db")
        try:
            with scenario.atomic():
                observations.upsert(scenario, source.fetch(days[-1], None).rows)
            result = replay(scenario, config, days[0], days[-1], db_path)
        finally:
            scenario.close()
    db = result.db
    try:
        with db.atomic():
            for row in outbox.list_rows(db):  # never delivered: `replay` rebuilds them
                outbox.withdraw(db, row["dedup_key"])
    finally:
        db.close()


def run_demo(config: Config, db_path: Path, verbose: bool = False, end: dt.date | None = None,
             config_path: str | None = None, quiet_digests: bool = False,
             out: TextIO | None = None) -> int:
    """Build a fresh database at ``db_path`` from the demo scenario through ``end`` (default:
    the scenario's end): the history by replay, the last ``LIVE_DAYS`` trading days cycle by
    cycle as the daemon would, delivering their digests. Print the alert timeline, one sample
    digest (``verbose``: every digest as it is delivered; ``quiet_digests``: none) and the
    commands to look further (with ``config_path`` when one was given). Returns the exit code."""
    from monitor.calendar import TradingCalendar
    from monitor.daemon import Service
    from monitor.sources import demo
    from monitor.sources.demo_source import DemoSource
    from storage import alerts

    started = time.perf_counter()
    out = out or sys.stdout
    config = demo_config(config)
    history_config = config.model_copy(update={"notify": config.notify.model_copy(
        update={"weekly_summary": False})})  # its digests are withdrawn: building them is waste
    calendar = TradingCalendar(config.calendar.extra_closed)
    days = calendar.days(demo.DEMO_START, min(end or demo.DEMO_END, demo.DEMO_END))
    if not days:
        from monitor.cycle import CycleError

        raise CycleError(f"--end {end} is before the demo scenario's first day {demo.DEMO_START}")
    history_days, live_days = days[:-LIVE_DAYS], days[-LIVE_DAYS:]
    _remove(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    out.write(f"regime-monitor demo: {len(days)} XSHG trading days {days[0]} .. {days[-1]}, "
              f"{len(config.rules)} rules, database {db_path}\n")
    source = DemoSource(config.source.demo_seed)
    if history_days:
        build_history(history_config, db_path, history_days, source)
        out.write(f"  {history_days[0]} .. {history_days[-1]}: {len(history_days)} days by replay "
                  f"(one vectorised signal pass, the cycle per day), "
                  f"{time.perf_counter() - started:.1f} s\n")
    out.write(f"  {live_days[0]} .. {live_days[-1]}: {len(live_days)} days cycle by cycle as the "
              "daemon runs them (weekly summary on)\n")
    out.flush()
    notifier = _Capture(out if verbose and not quiet_digests else None, config.notify.inhibit)
    service = Service(config, db_path, source=source, notifier=notifier)
    live_started = time.perf_counter()
    sent = 0
    try:
        for day in live_days:
            service.run_day(day)
            sent += service.deliver()
        events = alerts.events(service.db)
    finally:
        service.close()
    live_seconds = time.perf_counter() - live_started

    fired = sum(e["event"] == "firing" for e in events)
    resolved = sum(e["event"] == "resolved" for e in events)
    lines = timeline(events)
    out.write(f"\nAlert timeline (pending -> firing -> resolved), {fired} fired, "
              f"{resolved} resolved:\n")
    if len(lines) > MAX_TIMELINE_LINES:
        out.write(f"  ... {len(lines) - MAX_TIMELINE_LINES} earlier episode(s): see "
                  "`alerts --all` below\n")
    for line in lines[-MAX_TIMELINE_LINES:] or ["(no alert fired)"]:
        out.write(f"  {line}\n")
    out.write(f"\n{sent} digest(s) delivered to {notifier.destination} in the last {len(live_days)} "
              f"days ({live_seconds:.1f} s)")
    if notifier.texts and not verbose and not quiet_digests:
        as_of, text = notifier.texts[-1]
        out.write(f"; the latest, of {as_of} (all: --verbose):\n{text}")
    else:
        out.write(".\n")
    report = db_path.parent / "demo-report.html"
    prefix = shlex.join(["regime-monitor", *(["--config", config_path] if config_path else []),
                         "--db", str(db_path)])
    out.write(f"\nDone in {time.perf_counter() - started:.1f} s. Where to look next:\n"
              f"  {prefix} status        # each rule now, data coverage\n"
              f"  {prefix} alerts --all  # every alert event\n"
              f"  {prefix} report --out {shlex.quote(str(report))}  # the HTML page\n"
              f"  {prefix} backtest      # each rule against the drawdowns\n")
    out.flush()
    return 0
