"""The ``regime-monitor`` command line: a thin click layer over the library. Library errors
become one-line messages only here.

Each command's options sit beside it. Heavy libraries (pandas, numpy, matplotlib, statsmodels,
slack_sdk) are imported only inside the commands that use them, so ``regime-monitor --help``
stays fast. :func:`main` returns the exit code: 0 ok, 1 a failure (one line on stderr), 2 a bad
argument (one line on stderr, raised as ``SystemExit(2)`` as argparse did), 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # monitor.config imports the signals, and they pandas: not for --help
    from monitor.config import Config

log = logging.getLogger("regime_monitor")

PROG = "regime-monitor"
STATUS_HORIZON_DAYS = 31  # `status` lists the assumed-open days this far ahead
REPLAY_SCRATCH = Path("var/replay.db")  # `replay --scratch` default
DEMO_DB = Path("var/demo.db")  # `demo`'s database when --db is not given


class UsageError(ValueError):
    """A bad argument found by a command; the message is one line (exit 1)."""


# -- argument types ----------------------------------------------------------------------------

class _Date(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param, ctx) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a YYYY-MM-DD date", param, ctx)


class _PositiveInt(click.ParamType):
    name = "N"

    def convert(self, value: Any, param, ctx) -> int:
        if isinstance(value, int):
            return value
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not an integer", param, ctx)
        if number <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        if number > 2**63 - 1:
            self.fail(f"{value!r} is too large", param, ctx)
        return number


class _Draws(_PositiveInt):
    def convert(self, value: Any, param, ctx) -> int:
        from monitor.analysis.backtest import MAX_DRAWS

        number = super().convert(value, param, ctx)
        if number > MAX_DRAWS:
            self.fail(f"{value!r} is more than {MAX_DRAWS} draws", param, ctx)
        return number


class _Seed(click.ParamType):
    name = "N"

    def convert(self, value: Any, param, ctx) -> int:
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not an integer", param, ctx)
        if not 0 <= number <= 2**63 - 1:
            self.fail(f"{value!r} must be between 0 and 2**63 - 1", param, ctx)
        return number


class _Penalty(click.ParamType):
    name = "X"

    def convert(self, value: Any, param, ctx) -> float:
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (number >= 0 and number != float("inf")):
            self.fail(f"{value!r} must be a finite number >= 0", param, ctx)
        return number


DATE, POSITIVE_INT, DRAWS, SEED, PENALTY = _Date(), _PositiveInt(), _Draws(), _Seed(), _Penalty()
FILE = click.Path(path_type=Path)


class _LibraryDefault(click.Option):
    """An option whose default is a constant of a library module (a zero-argument callable,
    imported only when the option is used or its help shown); ``--help`` prints the value."""

    def get_default(self, ctx, call: bool = True):
        return super().get_default(ctx, call=True)


def _backtest_constant(name: str) -> Callable[[], int]:
    def default() -> int:
        from monitor.analysis import backtest

        return getattr(backtest, name)

    return default


def _baseline_options(command: Callable) -> Callable:
    command = click.option("--seed", cls=_LibraryDefault, type=SEED, default=_backtest_constant("SEED"),
                           show_default=True, help="seed of the chance baselines")(command)
    return click.option("--draws", cls=_LibraryDefault, type=DRAWS, default=_backtest_constant("DRAWS"),
                        show_default=True, help="random draws of each chance baseline")(command)


# -- the group and main() ----------------------------------------------------------------------

@dataclass
class Globals:
    """The options given before the command."""

    config: str | None
    db: str | None

    def load(self) -> Config:
        from monitor.config import load_config

        return load_config(self.config)

    def db_path(self, config: Config) -> str:
        return self.db or config.storage.path

    def open(self, config: Config):
        """Open (creating if needed) the history database: for the commands that bring data."""
        from storage.db import open_db

        return open_db(self.db_path(config))

    def existing(self, config: Config):
        """Open the history database, which must exist: for the commands that read it (a
        mistyped ``--db`` is refused, and no folder or file is created)."""
        from storage.db import open_db

        return open_db(self.require(config))

    def require(self, config: Config) -> str:
        """Return the history database's path; raise UsageError (one line) when there is no
        database file there (nothing is created)."""
        path = self.db_path(config)
        if str(path) != ":memory:" and not Path(path).is_file():
            raise UsageError(f"no database at {path}: check --db or [storage] path (`once`, "
                             "`backfill`, `import-csv` or `demo` create it)")
        return path

    def trial(self, trial_config: str | None) -> Config:
        """The config a command tries (its own ``--config``), else the main one."""
        from monitor.config import load_config

        return load_config(trial_config) if trial_config else self.load()


class _Group(click.Group):
    """Subcommands listed in the order they are declared; an unknown one is an invalid choice;
    none is a one-line usage error (not the help page)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if args and args[0] not in self.commands and str(exc).startswith("No such command"):
                choices = ", ".join(repr(c) for c in self.commands)
                raise click.UsageError(f"argument command: invalid choice: {args[0]!r} (choose "
                                       f"from {choices})", ctx) from None
            raise


class _Root(_Group):
    """The top-level group: every error is one line on stderr, whoever calls ``main``."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command line; return its exit code (0, 1 for a failure, 130 interrupted),
        or exit with it when ``standalone_mode``. A bad argument prints one line and raises
        ``SystemExit(2)`` either way."""
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            _error(_safe(_one_line(exc.format_message())))
            raise SystemExit(2) from None
        except click.ClickException as exc:
            _error(_safe(_one_line(exc.format_message())))
            code = exc.exit_code
        except click.Abort:
            code = 130
        code = code if isinstance(code, int) else 0
        try:  # what is still buffered goes now, while a closed pipe can be answered quietly
            sys.stdout.flush()
        except BrokenPipeError:
            code = _pipe_closed()
        if standalone_mode:
            sys.exit(code)
        return code


_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(PROG, cls=_Root, context_settings=_SETTINGS,
             help="Micro-cap regime monitor for China A-shares.")
@click.option("--config", metavar="PATH",
              help="config file (default: $REGIME_MONITOR_CONFIG or config/monitor.toml)")
@click.option("--db", metavar="PATH", help="SQLite database (default: [storage] path of the config)")
@click.option("-v", "--verbose", is_flag=True, help="log debug messages")
@click.pass_context
def cli(ctx: click.Context, config: str | None, db: str | None, verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = Globals(config, db)


EXIT_PIPE = 141
"""The exit code when standard output's reader went away (``| head``): 128 + SIGPIPE, what the
shell reports for a Unix tool stopped by it."""


def _pipe_closed() -> int:
    """Standard output's reader went away: point standard output at /dev/null (so no later
    flush, at exit either, fails or prints a traceback) and return ``EXIT_PIPE``."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor behind it
        pass
    return EXIT_PIPE


def _one_line(text: str) -> str:
    """``monitor.config.one_line`` (imported when called: it loads the signals)."""
    from monitor.config import one_line

    return one_line(text)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


_HEAVY_ERRORS = (("monitor.cycle", "CycleError"), ("monitor.daemon", "DaemonError"),
                 ("monitor.sources.csv_import", "CsvImportError"))


def _one_line_errors() -> tuple[type[Exception], ...]:
    """The library's one-line error types: the config's, storage's, the CLI's, and those of the
    heavy modules (pandas, APScheduler) a command imported: only those can have raised, and a
    read-only command must not import them to catch them."""
    from monitor.config import ConfigError
    from storage.db import StorageError

    return (ConfigError, StorageError, UsageError,
            *(getattr(sys.modules[module], name) for module, name in _HEAVY_ERRORS
              if module in sys.modules))


def _returns_code(command: Callable[..., int]) -> Callable[..., int]:
    """Run a command body; library errors become one line on stderr and exit code 1."""

    @wraps(command)
    def run(*args, **kwargs) -> int:
        from monitor.config import one_line

        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # `| head` stopped reading: stop quietly, as Unix tools do
            return _pipe_closed()
        except _one_line_errors() as exc:  # evaluated when an exception arrives here
            _error(_safe(one_line(str(exc))))
            return 1
        except sqlite3.Error as exc:
            g = click.get_current_context().find_object(Globals)
            where = (g.db if g else None) or "[storage] path of the config"
            _error(f"database {_safe(one_line(f'{where}: {exc}'))}")
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def command(group: click.Group, name: str, help: str, **kwargs) -> Callable:
    """Declare ``name`` in ``group``: its callback gets the :class:`Globals` first and returns
    the exit code."""

    def declare(body: Callable[..., int]) -> click.Command:
        return group.command(name, help=help, short_help=help, **kwargs)(
            click.pass_obj(_returns_code(body)))

    return declare


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code. A bad
    argument prints one line on stderr and raises ``SystemExit(2)`` (as argparse did)."""
    return cli.main(sys.argv[1:] if argv is None else list(argv), prog_name=PROG,
                    standalone_mode=False)


# -- helpers -----------------------------------------------------------------------------------

def _refuse_the_database(option: str, path: str | Path, g: Globals, config: Config) -> None:
    """Raise UsageError when ``path`` (an output that is replaced) is the history database."""
    db = Path(g.db_path(config))
    target = Path(path)
    same = target.resolve() == db.resolve() or (
        target.exists() and db.exists() and os.path.samefile(target, db))
    if same:
        raise UsageError(f"{option} {path} is the history database itself: choose another file "
                         "(it would be replaced)")


def _today(config: Config) -> dt.date:
    """Today in the schedule's time zone (the day silences and the calendar are judged on)."""
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(config.schedule.timezone)).date()


def _calendar(config: Config):
    from monitor.calendar import TradingCalendar

    return TradingCalendar(config.calendar.extra_closed)


def _safe(text: object, keep: str = "") -> str:
    """Return ``text`` fit for the terminal: control characters (C0, DEL, C1) escaped, except
    those in ``keep`` (``monitor.delivery.console.terminal_safe``). Every untrusted text printed -
    config text, rule explanations, database content, remote answers - goes through it."""
    from monitor.delivery.console import terminal_safe

    return terminal_safe(str(text), keep)


def _table(rows: list[dict], columns: list[str]) -> str:
    """Return ``rows`` as a plain-text table of ``columns`` (tabulate), or ``(none)``."""
    from tabulate import tabulate

    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    return tabulate(cells, headers=columns, tablefmt="simple", disable_numparse=True)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return _safe(v)


def _safe_json(text: str) -> str:
    """Return JSON text with the raw control characters json.dumps leaves (DEL, C1) as \\u
    escapes (they can only occur inside strings, so the JSON value is unchanged)."""
    import re

    return re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _print_rows(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:  # json escapes C0 itself; C1 characters become \u escapes too (valid JSON)
        print(_safe_json(json.dumps(rows, ensure_ascii=False, indent=2)))
    else:
        print(_table(rows, columns))


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[..., None]]:
    """Yield a callback to call once per step of ``total``: it advances a click progress bar on
    stderr when stderr is a terminal (nothing is drawn otherwise)."""
    hidden = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    with click.progressbar(length=total, label=label, file=sys.stderr, hidden=hidden) as bar:
        yield lambda *_: bar.update(1)


JSON = click.option("--json", "as_json", is_flag=True, help="print JSON")


# -- commands ----------------------------------------------------------------------------------

@command(cli, "run", "run the daemon: the daily cycle on every XSHG trading evening")
def cmd_run(g: Globals) -> int:
    from monitor.config import config_path
    from monitor.daemon import run_daemon

    config = g.load()
    return run_daemon(config, g.db_path(config), config_file=config_path(g.config))


@command(cli, "once", "run one daily cycle now")
@click.option("--as-of", type=DATE, help="trading day (default: the latest trading day whose "
                                         "scheduled time has passed)")
def cmd_once(g: Globals, as_of: dt.date | None) -> int:
    from monitor.daemon import Service, check_database
    from monitor.delivery import destination_warning

    config = g.load()
    check_database(g.db_path(config))
    warning = destination_warning(config)
    if warning:
        log.error("%s", warning)
    service = Service(config, g.db_path(config))
    try:
        due = service.latest_due()
        if as_of is not None and (due is None or as_of > due):
            raise UsageError(f"--as-of {as_of} is after the latest due trading day {due or '(none yet)'}"
                             f" (its run at cron {config.schedule.cron!r} has not come): cycles "
                             "run forward, so a future day would block every day before it")
        result = service.run_day(as_of)
        for name, reason in sorted(result.failures.items()):
            _error(f"{_safe(name)}: {_safe(reason)}")
        print(f"{result.as_of}: {result.status}, {result.changed} row(s) changed, "
              f"{len(result.events)} event(s)")
        for e in result.events:
            print(_safe(f"  {e['rule']}: {e['from_state']} -> {e['to_state']} ({e['event']})"))
        service.deliver()
    finally:
        service.close()
    return 1 if result.status == "fetch_failed" else 0


@command(cli, "backfill", "fetch history through the configured source, month by month (resumable)")
@click.option("--start", type=DATE, required=True, help="first day")
@click.option("--end", type=DATE, help="last day (default: today)")
def cmd_backfill(g: Globals, start: dt.date, end: dt.date | None) -> int:
    from monitor.sources import make_source
    from monitor.sources.ingest import backfill, month_chunks

    config = g.load()
    if config.source.kind == "csv":
        raise UsageError("the csv source has nothing to fetch: bring history with `import-csv` "
                         "(or the drop folder)")
    end = end or dt.date.today()
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    cal = _calendar(config)
    db = g.open(config)
    chunks = month_chunks(cal, start, end)
    with _progress(len(chunks), "backfill") as step:
        counts = backfill(db, make_source(config), cal, start, end, on_chunk=step)
    print(f"backfill {start} .. {end}: {counts['done']} month(s) fetched "
          f"({counts['observations']} rows written), {counts['skipped']} already done, "
          f"{counts['failed']} failed (see `runs`; run the command again to retry them)")
    return 0 if not counts["failed"] else 1


@command(cli, "holdings", "run the quarterly fund-holdings job now (AKShare source; resumable)")
@click.option("--report-date", type=DATE,
              help="quarter end (default: the latest published quarter, if not done yet)")
def cmd_holdings(g: Globals, report_date: dt.date | None) -> int:
    from monitor.daemon import Service
    from monitor.sources.holdings import quarter_end

    config = g.load()
    if config.source.kind != "akshare":
        raise UsageError(f"the holdings job fetches through AKShare, but source.kind is "
                         f"{config.source.kind!r}: bring holdings with `import-csv` instead")
    if report_date is not None and not quarter_end(report_date):
        raise UsageError(f"--report-date {report_date} is not a quarter end")
    service = Service(config, g.db_path(config))
    try:
        outcome = service.holdings(report_date)
    finally:
        service.close()
    if outcome is None:
        raise UsageError("the holdings job is off: set source.akshare.holdings_job = true")
    print(outcome.line())
    return 0 if outcome.status in ("ok", "done") else 1


@command(cli, "import-csv", "import CSV files (long format, stock panel, holdings, product NAVs, "
                             "or a vendor export through --mapping)")
@click.argument("paths", nargs=-1, required=True, type=FILE, metavar="PATH...")
@click.option("--coverage", type=click.Choice(["top10", "full"]), default="top10", show_default=True,
              help="fund-holdings files: top-10 (quarterly) or full (semi-annual/annual) holdings")
@click.option("--mapping", "mapping_file", type=FILE, metavar="FILE",
              help="a mapping TOML for vendor exports (CSIndex, Wind, ChinaBond; examples in "
                   "config/mappings/): which columns go to which series, units, date format, "
                   "encoding")
def cmd_import_csv(g: Globals, paths: tuple[Path, ...], coverage: str,
                   mapping_file: Path | None) -> int:
    from monitor.sources import mapping as vendor
    from monitor.sources.csv_import import coverage_rows, import_report, nav_coverage_rows

    layout = None
    if mapping_file is not None:
        try:
            layout = vendor.load(mapping_file)
        except vendor.MappingError as exc:
            raise UsageError(str(exc)) from None
    config = g.load()
    db = g.open(config)
    done = import_report(db, list(paths), coverage=coverage, mapping=layout,
                         calendar=_calendar(config), nav_lag_days=config.exposure.nav_lag_days)
    for result in done:
        note = result.skipped_note()
        if note:
            print(_safe(f"warning: {note}"), file=sys.stderr)
    for result in done:
        print(_safe(result.summary()))
    rows = coverage_rows(db, done)
    if rows:
        print("coverage of the series imported:")
        _print_rows(rows, ["series", "first", "last", "rows"], False)
    navs = nav_coverage_rows(db, done, {p.name for p in config.products})
    if navs:
        print("NAVs stored of the products imported:")
        _print_rows(navs, ["product", "first", "last", "navs", "known_through", "declared"], False)
    return 0


@command(cli, "exposure", "rank the declared products by micro-cap exposure (NAVs point-in-time); "
                           "--evidence: check the measure against a past crash window")
@click.option("--as-of", type=DATE, help="day the exposure is measured on, with what was known "
                                         "then (default: today; with --evidence, the trading day "
                                         "before START)")
@click.option("--evidence", nargs=2, type=DATE, metavar="START END",
              help="rank correlation (Spearman) of the exposure measured on --as-of with each "
                   "product's excess return from START to END")
@click.option("--record", is_flag=True,
              help="with --evidence: store the result as the ranking's record, shown under the "
                   "products in the digest (the only write this command makes)")
@JSON
def cmd_exposure(g: Globals, as_of: dt.date | None, evidence: tuple[dt.date, dt.date] | None,
                 record: bool, as_json: bool) -> int:
    from monitor.analysis import exposure as ex

    config = g.load()
    db = g.existing(config)
    if record and not evidence:
        raise UsageError("--record needs --evidence START END (it stores that check's result)")
    try:
        if evidence:
            start, end = evidence
            result = ex.crash_evidence(db, config, as_of, start, end)
            if record:
                ex.record_evidence(db, result)
            if as_json:
                print(_safe_json(json.dumps(ex.evidence_json(result), ensure_ascii=False, indent=2)))
                return 0
            for line in ex.evidence_text(ex.evidence_json(result)):
                print(_safe(line))
            return 0
        day = as_of or _today(config)
        rows = ex.report_rows(db, config, day, ex.exposure_report(db, config, day))
    except ex.ExposureError as exc:
        raise UsageError(str(exc)) from None
    if as_json:
        print(_safe_json(json.dumps(rows, ensure_ascii=False, indent=2)))
        return 0
    from tabulate import tabulate

    headers, cells = ex.text_table(rows, config)
    print(_safe(ex.header_line(config, day)))
    print(tabulate([[_safe(c) for c in line] for line in cells], headers=headers,
                   tablefmt="simple", disable_numparse=True, colalign=ex.text_align(headers)))
    for line in ex.legend(config):
        print(_safe(line))
    from monitor.delivery.digest import record_text  # the ranking's chance baseline, as the digest says it

    print(_safe(record_text(ex.recorded_evidence(db, config, day))))
    return 0


@command(cli, "signals", "show signal values (latest, or one signal's history)")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--since", type=DATE, help="history from this day")
@JSON
def cmd_signals(g: Globals, name: str | None, since: dt.date | None, as_json: bool) -> int:
    from storage import signal_values

    config = g.load()
    db = g.existing(config)
    if name or since:
        rows = signal_values.history(db, name, since)
        if name and not rows:
            import signals

            if name not in signals.REGISTRY and name != "composite.conditions_active":
                raise UsageError(f"unknown signal {name!r}")
    else:
        rows = signal_values.latest(db)
    _print_rows(rows, ["signal", "date", "value", "context"], as_json)
    return 0


@command(cli, "alerts", "show alerts: active ones, or the event history with --all")
@click.option("--all", "show_all", is_flag=True, help="every transition, oldest first")
@click.option("--rule", metavar="RULE", help="only this rule's alerts (or events)")
@click.option("--since", type=DATE, help="only events from this day (with --all), or alerts "
                                         "active since this day or later")
@JSON
def cmd_alerts(g: Globals, show_all: bool, rule: str | None, since: dt.date | None,
               as_json: bool) -> int:
    from monitor.delivery.digest import DATA_STALE
    from storage import alerts

    config = g.load()
    db = g.existing(config)
    stored = alerts.get_all(db)
    if rule is not None:
        names = {r.name for r in config.rules} | {DATA_STALE} | set(stored)
        if rule not in names:
            raise UsageError(f"--rule {rule!r}: no such rule (rules: {', '.join(sorted(names))})")
    if show_all:
        rows = alerts.events(db, since=since.isoformat() if since else None, rule=rule)
        for r in rows:
            r["signal_values"] = json.loads(r["signal_values"])["values"]
        cols = ["date", "rule", "severity", "event", "from_state", "to_state", "notified",
                "silenced_by", "signal_values"]
        if not as_json:
            for r in rows:
                r["signal_values"] = ", ".join(f"{k}={_cell(v)}"
                                               for k, v in r["signal_values"].items())
        _print_rows(rows, cols, as_json)
        return 0
    rows = [a for a in stored.values() if a["state"] in ("pending", "firing", "no_data")
            and (rule is None or a["rule"] == rule)
            and (since is None or (a["since"] or "") >= since.isoformat())]
    for r in rows:
        r["last_values"] = json.loads(r["last_values"] or "{}")
        if not as_json:
            r["last_values"] = ", ".join(f"{k}={_cell(v)}" for k, v in r["last_values"].items())
    rows.sort(key=lambda r: (r["state"] != "firing", r["rule"]))
    _print_rows(rows, ["rule", "severity", "state", "since", "last_evaluated", "last_values"],
                as_json)
    return 0


@cli.group("silence", cls=_Group, help="mute notifications of a rule until a date",
           short_help="mute notifications of a rule until a date")
def silence() -> None:
    pass


@command(silence, "add", "add a silence")
@click.argument("rule", metavar="RULE")
@click.option("--until", type=DATE, required=True, help="last silenced day (inclusive)")
@click.option("--reason", required=True, help="why (shown with the silence)")
def cmd_silence_add(g: Globals, rule: str, until: dt.date, reason: str) -> int:
    """RULE: a rule name, or 'all'."""
    from monitor.delivery.digest import DATA_STALE
    from storage import silences

    config = g.load()
    db = g.open(config)  # a silence may come before the first cycle
    names = {r.name for r in config.rules} | {DATA_STALE}  # the built-in alert too
    matcher = silences.ALL if rule == "all" else rule
    if matcher != silences.ALL and matcher not in names:
        raise UsageError(f"unknown rule {rule!r} (rules: {', '.join(sorted(names))})")
    if not reason.strip():
        raise UsageError("--reason must not be empty")
    today = _today(config)
    if until < today:
        raise UsageError(f"--until {until} is in the past (today is {today}): a silence lasts up "
                         "to and including that day")
    sid = silences.add(db, matcher, until, reason.strip())
    print(_safe(f"silence {sid}: {rule} muted until {until} ({reason.strip()})"))
    return 0


@command(silence, "list", "list silences in force today, oldest first (all with --all)")
@click.option("--all", "show_all", is_flag=True, help="ended and expired silences too")
@JSON
def cmd_silence_list(g: Globals, show_all: bool, as_json: bool) -> int:
    from storage import silences

    config = g.load()
    today = _today(config)
    rows = silences.list_all(g.existing(config), include_expired=show_all, on=today)
    for r in rows:
        r["state"] = silences.state_on(r, today)
    _print_rows(rows, ["id", "matcher", "until", "state", "reason", "created_at", "expired_at"],
                as_json)
    return 0


@command(silence, "expire", "end a silence now")
@click.argument("id", type=POSITIVE_INT, metavar="ID")
def cmd_silence_expire(g: Globals, id: int) -> int:
    from storage import silences

    config = g.load()
    if not silences.expire(g.existing(config), id):
        raise UsageError(f"no active silence with id {id}")
    print(f"silence {id} expired")
    return 0


@command(cli, "outbox", "show queued, failed (and with --all sent) notifications, oldest first")
@click.option("--all", "show_all", is_flag=True, help="sent notifications too")
@JSON
def cmd_outbox(g: Globals, show_all: bool, as_json: bool) -> int:
    from storage import outbox

    config = g.load()
    rows = outbox.list_rows(g.existing(config), include_sent=show_all)
    for r in rows:
        payload = r.pop("payload")
        if r["sent_at"] is not None:  # delivered: no further attempt is planned
            r["next_attempt_at"] = None
        if as_json:  # the message itself: its data and the text the console and Slack show
            r["payload"], r["text"] = _message(payload, config)
    _print_rows(rows, ["id", "dedup_key", "as_of", "attempts", "next_attempt_at", "sent_at",
                       "failed_at", "last_error", "destination"], as_json)
    return 0


def _message(payload: str, config: Config) -> tuple[Any, str | None]:
    """Return an outbox row's payload as data and its digest as plain text (None when the
    payload is not a digest this version can render)."""
    from monitor.delivery.digest import render_text

    try:
        data = json.loads(payload)
    except ValueError:
        return payload, None
    try:
        return data, render_text(data, inhibit=config.notify.inhibit)
    except (KeyError, TypeError, ValueError, AttributeError):
        return data, None


@command(cli, "episodes", "micro-cap drawdown and rotation episodes")
@click.option("--kind", type=click.Choice(["drawdown", "rotation"]), help="only this kind")
@JSON
def cmd_episodes(g: Globals, kind: str | None, as_json: bool) -> int:
    from storage import episodes

    config = g.load()
    rows = episodes.list_episodes(g.existing(config), kind)
    for r in rows:
        detail = json.loads(r.pop("detail") or "{}")
        r["theme"] = detail.get("theme")
        r["theme_excess_peak"] = detail.get("theme_excess_peak")
    _print_rows(rows, ["kind", "start", "peak", "trough", "end", "depth", "theme",
                       "theme_excess_peak"], as_json)
    return 0


TRIAL_CONFIG_HELP = "rules and signal parameters to try (default: the main config)"


@command(cli, "replay", "run the daily cycle over history into a scratch database")
@click.option("--start", type=DATE, required=True, help="first day")
@click.option("--end", type=DATE, required=True, help="last day")
@click.option("--config", "trial_config", metavar="PATH", help=TRIAL_CONFIG_HELP)
@click.option("--scratch", type=FILE, default=REPLAY_SCRATCH, show_default=True,
              help="scratch database for the replay (recreated)")
@click.option("--json", "as_json", is_flag=True, help="print the alert events as JSON")
def cmd_replay(g: Globals, start: dt.date, end: dt.date, trial_config: str | None, scratch: Path,
               as_json: bool) -> int:
    from monitor.analysis.replay import replay
    from monitor.demo import timeline

    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    config = g.load()
    trial = g.trial(trial_config)
    _refuse_the_database("--scratch", scratch, g, config)
    source = g.existing(config)
    total = len(_calendar(trial).days(start, end))
    with _progress(total, "replay") as step:
        result = replay(source, trial, start, end, scratch, on_day=step)
    if as_json:
        print(json.dumps([{k: e[k] for k in ("date", "rule", "severity", "event", "from_state",
                                             "to_state")} for e in result.events], indent=2))
        return 0
    fired = sum(e["event"] == "firing" for e in result.events)
    print(_safe(f"replay {result.days[0]} .. {result.days[-1]}: {len(result.days)} trading days, "
                f"{len(trial.rules)} rules, {fired} firings; nothing was sent. Scratch database: "
                f"{scratch}"))
    print("Alert timeline (pending -> firing -> resolved):")
    for line in timeline(result.events):
        print(_safe(f"  {line}"))
    return 0


@command(cli, "backtest", "score the rules against micro-cap drawdown episodes")
@click.option("--start", type=DATE, help="first day (default: the first day with values)")
@click.option("--end", type=DATE, help="last day (default: the last day with values)")
@click.option("--config", "trial_config", metavar="PATH", help=TRIAL_CONFIG_HELP)
@click.option("--sweep", multiple=True, metavar="RULE.PARAM=LO:HI:STEP",
              help="grid over a rule's threshold (PARAM = a signal in its `when`) or "
                   "for_days/clear_days/repeat_every_days; repeatable")
@_baseline_options
@JSON
@click.option("--record", is_flag=True,
              help="store each rule's score as its scorecard, shown beside the headline warning in "
                   "digests (the only write backtest makes)")
def cmd_backtest(g: Globals, start: dt.date | None, end: dt.date | None, trial_config: str | None,
                 sweep: tuple[str, ...], draws: int, seed: int, as_json: bool, record: bool) -> int:
    from monitor.analysis import backtest
    from monitor.analysis.evidence import gather

    config = g.load()
    trial = g.trial(trial_config)
    try:
        sweeps = [backtest.parse_sweep(text) for text in sweep]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    evidence = gather(g.existing(config), trial, start, end)
    if sweeps:
        total = 1
        for sw in sweeps:
            total *= len(sw.values)
        try:
            with _progress(total, "sweep") as step:
                points = backtest.sweep(trial, evidence.values, evidence.episodes, evidence.close,
                                        sweeps, draws=draws, seed=seed, on_point=step)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(points, indent=2, default=str) if as_json
              else _safe(backtest.sweep_table(points), keep="\n"))
        return 0
    sim = backtest.simulate_full(trial, evidence.values)
    rows = backtest.score_simulation(sim, evidence.episodes, evidence.close,
                                     min_depth=trial.episodes.drawdown_min_depth, draws=draws,
                                     seed=seed)
    from monitor.cycle import summary_day

    calendar = _calendar(trial)
    summary = [d.isoformat() for d in calendar.days(evidence.start, evidence.end)
               if summary_day(trial, calendar, d)]
    per_year = backtest.digests_per_year(backtest.digest_days(sim, summary), evidence.values.index)
    forecast_score = _forecast_score(trial, evidence)
    if record:
        _record_scorecards(g, config, rows, evidence)
    if as_json:
        print(json.dumps({"start": evidence.start.isoformat(), "end": evidence.end.isoformat(),
                          "draws": draws, "seed": seed, "digests_per_year": per_year,
                          "rows": json.loads(backtest.to_json(rows)),
                          "forecast": None if forecast_score is None else forecast_score.to_dict()},
                         indent=2, ensure_ascii=False))
    else:
        print(f"backtest {evidence.start} .. {evidence.end}: labels = micro-cap drawdowns of at least "
              f"{trial.episodes.drawdown_min_depth:.0%}; chance baselines: {draws} draws, "
              f"seed {seed}")
        print(_safe(backtest.table(rows, draws=draws), keep="\n"))
        print(f"digests: {per_year:.1f} a year (the daemon's own decision: a new or resolved "
              f"warning; weekly summary {'on' if trial.notify.weekly_summary else 'off'})")
        if forecast_score is not None:
            from monitor.analysis import forecast

            print(forecast.forecast_table(forecast_score))
        if record:
            print(f"recorded {len(rows)} scorecard(s) in {g.db_path(config)} (shown beside the "
                  "headline warning in digests)")
    return 0


def _forecast_score(config: Config, evidence):
    """The walk-forward score of ``risk.drawdown_prob`` over the evidence, or None without values."""
    from monitor.analysis import forecast
    from signals import risk

    if risk.SIGNAL not in evidence.values.columns or evidence.values[risk.SIGNAL].isna().all():
        return None
    p = config.signal_params()["risk"]
    return forecast.score_drawdown_forecast(evidence.values, evidence.contexts, evidence.close,
                                            risk.SIGNAL, p["horizon_days"], p["drawdown"])


def _record_scorecards(g: Globals, config: Config, rows, evidence) -> None:
    """Store each row's score as the rule's scorecard (the only write ``backtest`` makes)."""
    from monitor.analysis import backtest
    from storage import scorecards
    from storage.util import utc_now

    db = g.existing(config)
    now = utc_now()
    with db.atomic():
        for row in backtest.to_records(rows):
            scorecards.save(db, row["rule"], evidence.start, evidence.end, now,
                            {**row, "min_lead_days": backtest.MIN_LEAD_DAYS})


@command(cli, "calibrate", "propose thresholds aimed at the drawdown labels, from data up to a date "
                           "(TOML)")
@click.option("--until", type=DATE, required=True, help="last day of data used")
@click.option("--penalty", type=PENALTY, default=1.0, show_default=True,
              help="each threshold maximises caught - PENALTY x false alarms per year")
@_baseline_options
@click.option("--config", "trial_config", metavar="PATH", help=TRIAL_CONFIG_HELP)
def cmd_calibrate(g: Globals, until: dt.date, penalty: float, draws: int, seed: int,
                  trial_config: str | None) -> int:
    from monitor.analysis import backtest
    from monitor.analysis.evidence import gather

    config = g.load()
    trial = g.trial(trial_config)
    evidence = gather(g.existing(config), trial, None, until)
    try:
        text = backtest.calibrate(trial, evidence.values, evidence.close, until,
                                  penalty=penalty, draws=draws, seed=seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(_safe(text, keep="\n\t"))
    return 0


@command(cli, "report", "one self-contained HTML page: signals, alerts, episodes, backtest")
@click.option("--out", type=FILE, required=True, help="the HTML file to write")
@click.option("--start", type=DATE, help="first day shown")
@click.option("--end", type=DATE, help="last day shown")
@click.option("--no-backtest", is_flag=True, help="leave the backtest table out")
@click.option("--crash", nargs=2, type=DATE, metavar="START END",
              help="the crash window of the manager-exposure evidence (default: the period's "
                   "deepest micro-cap drawdown, peak to trough)")
def cmd_report(g: Globals, out: Path, start: dt.date | None, end: dt.date | None,
               no_backtest: bool, crash: tuple[dt.date, dt.date] | None) -> int:
    from monitor.analysis.report import compose, write_report

    config = g.load()
    _refuse_the_database("--out", out, g, config)
    if Path(out).is_dir():
        raise UsageError(f"--out {out} is a folder: give the file name of the report")
    db = g.existing(config)
    page = compose(db, config, now=dt.datetime.now(dt.UTC), start=start, end=end,
                   backtest_rows=not no_backtest, crash=crash or None)
    try:
        path = write_report(out, page)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    print(f"report written to {path}")
    return 0


@cli.group("config", cls=_Group, help="configuration", short_help="configuration")
def config_group() -> None:
    pass


@command(config_group, "check", "validate a config file and print what it resolves to")
@click.argument("path", required=False, metavar="[PATH]")
def cmd_config_check(g: Globals, path: str | None) -> int:
    from monitor.config import config_path, load_config
    from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV, destination_warning

    file = config_path(path or g.config)
    config = load_config(file)
    cal = _calendar(config)
    print(_safe(f"config: {file} (valid)"))
    s = config.schedule
    print(f"schedule: cron {s.cron!r} in {s.timezone}, XSHG trading days only; misfire grace "
          f"{s.misfire_grace_seconds} s; start-up catch-up up to {s.catch_up_max_days} trading days")
    print(f"calendar: XSHG, holidays known to {cal.coverage_end}; "
          f"{len(config.calendar.extra_closed)} extra closed day(s)")
    print(f"source: {config.source.kind}")
    print(_safe(f"storage: {Path(g.db_path(config)).resolve()}"))
    slack = config.notify.slack
    if slack.channel and os.environ.get(TOKEN_ENV):
        dest = _safe(f"Slack channel {slack.channel} (bot token from ${TOKEN_ENV})")
    elif os.environ.get(WEBHOOK_ENV):
        dest = f"Slack incoming webhook (from ${WEBHOOK_ENV})"
    elif slack.channel:
        dest = f"console (NOT Slack: ${TOKEN_ENV} is not set)"
    else:
        dest = "console (no Slack destination configured)"
    summary = "; weekly summary on the last trading day of each week" if config.notify.weekly_summary else ""
    print(f"notify: {dest}; a digest when a warning or critical alert fires or resolves{summary}")
    warning = destination_warning(config)
    if warning:
        print(_safe(f"WARNING: {warning}"))
        print(_safe(f"{PROG}: warning: {warning}"), file=sys.stderr)
    e = config.exposure
    named = ", ".join(f"{p.name} vs {p.benchmark}" for p in config.products[:5])
    if len(config.products) > 5:
        named += ", ..."
    print(_safe(f"exposure: {len(config.products)} product(s) declared"
                + (f" ({named})" if named else "")
                + f"; NAVs known {e.nav_lag_days} XSHG trading days after their date; ranked by "
                  f"micro-cap beta over {e.rank_window_weeks} weeks; large exposure: tracking corr "
                  f"< {e.loose_tracking_corr:g} and micro-cap corr >= {e.large_microcap_corr:g}"))
    print(_safe(f"context ({len(config.context)}): " + (", ".join(
        f"{c.name} when {str(c.when_expr)!r}" for c in config.context) or "none")))
    print(f"rules ({len(config.rules)}):")
    for r in config.rules:
        clear = str(r.clear_expr) if r.clear_expr is not None else f"not ({r.when_expr})"
        print(_safe(f"  {r.name} [{r.severity}] when {str(r.when_expr)!r} for {r.for_days}d"
                    f", clear when {clear!r} for {r.clear_days}d, "
                    + (f"reminder every {r.repeat_every_days}d while firing"
                       if r.repeat_every_days else "no reminders")))
    return 0


@cli.group("notify", cls=_Group, help="the notification destination",
           short_help="the notification destination")
def notify_group() -> None:
    pass


@command(notify_group, "test", "send a test message to the configured Slack destination and print "
                               "what Slack answered")
def cmd_notify_test(g: Globals) -> int:
    from monitor.delivery import DeliveryError, TestMessageSender, make_notifier, slack_destination

    config = g.load()
    if slack_destination(config) is None:
        raise UsageError("no Slack destination configured: set $SLACK_BOT_TOKEN and "
                         "notify.slack.channel, or $SLACK_WEBHOOK_URL")
    notifier = make_notifier(config)
    if not isinstance(notifier, TestMessageSender):
        raise UsageError(f"{notifier.destination} cannot send a test message")
    try:
        answer = notifier.send_test()
    except DeliveryError as exc:
        kind = "permanent" if exc.permanent else "temporary"
        print(_safe(f"{PROG}: error: {notifier.destination} answered: {exc} ({kind})"),
              file=sys.stderr)
        return 1
    if answer.get("ts"):
        print(_safe(f"ok: {notifier.destination} accepted the test message: channel "
                    f"{answer['channel']}, ts {answer['ts']}"))
    else:
        print(_safe(f"ok: {notifier.destination} accepted the test message: "
                    f"{answer.get('answer', 'ok')}"))
    return 0


@command(cli, "demo", "run the built-in offline scenario end to end")
@click.option("--verbose", is_flag=True,
              help="print every digest of the days run cycle by cycle, not one sample")
@click.option("--quiet-digests", is_flag=True, help="print no digest, only the timeline")
@click.option("--end", type=DATE, help="stop after this day (default: the scenario's end)")
def cmd_demo(g: Globals, verbose: bool, quiet_digests: bool, end: dt.date | None) -> int:
    from monitor.demo import run_demo

    config = g.load()
    return run_demo(config, Path(g.db or DEMO_DB), verbose=verbose, end=end,
                    config_path=g.config, quiet_digests=quiet_digests)


@command(cli, "backup", "copy the database to a new file, safely while the daemon runs (SQLite online "
                        "backup; owner-only; never overwrites)")
@click.argument("dest", type=FILE, metavar="DEST")
def cmd_backup(g: Globals, dest: Path) -> int:
    """DEST: the new file (must not exist)."""
    from storage.db import backup, open_readonly

    config = g.load()
    path = g.require(config)
    _refuse_the_database("backup", dest, g, config)
    db = open_readonly(path)
    try:
        size = backup(db, dest)
    finally:
        db.close()
    print(_safe(f"backup of {path} written to {dest} ({size} bytes, quick_check ok)"))
    return 0


@command(cli, "status", "each rule's state and since when, its values against the firing and the "
                        "clearing condition, the data coverage, the last cycle and the holiday "
                        "calendar's coverage (reads only)")
@click.option("--as-of", type=DATE, help="the day to judge data ages and the calendar coverage "
                                         "from (default: today in the schedule's time zone)")
@JSON
def cmd_status(g: Globals, as_of: dt.date | None, as_json: bool) -> int:
    from monitor import status
    from monitor.calendar import ASSUMED_OPEN_RULE, coverage_warning_due
    from storage import alerts, observations, runs, signal_values, silences
    from storage.db import open_readonly

    config = g.load()
    path = g.require(config)
    as_of = as_of or _today(config)
    db = open_readonly(path)
    try:
        tables = set(db.table_names())
        stored = alerts.get_all(db) if "alerts" in tables else {}
        recent = [r for r in (runs.recent(db, 50) if "runs" in tables else [])
                  if r["job"] == "cycle"]
        last_ok = runs.last_success(db, "cycle", statuses=runs.EVALUATED) if recent else None
        days = {r["last_evaluated"] for r in stored.values() if r["last_evaluated"]}
        values_on = (signal_values.values_on_days(db, days)
                     if days and "signal_values" in tables else {})
        ranges = ({name: (first, last, n) for name, first, last, n
                   in observations.coverage(db, observations.series_names(db))}
                  if "observations" in tables else {})
        muted = silences.list_all(db, on=as_of) if "silences" in tables else []
    finally:
        db.close()
    cal = _calendar(config)
    report = status.build(config, stored=stored, values_on=values_on, ranges=ranges, on=as_of,
                          calendar=cal, silences=muted)
    last = recent[0] if recent else None
    end = cal.coverage_end
    assumed: list[dt.date] = []
    warn = coverage_warning_due(end, as_of)
    if warn:
        start = max(as_of, end + dt.timedelta(days=1))
        horizon = start + dt.timedelta(days=STATUS_HORIZON_DAYS)
        assumed = cal.assumed_open(start, horizon)
    if as_json:
        report = {"database": str(path),
                  "last_cycle": None if last is None else {
                      k: last[k] for k in ("as_of", "status", "started", "finished", "error")},
                  "last_successful_cycle": last_ok.isoformat() if last_ok else None,
                  **report,
                  "calendar": {"holidays_known_to": end.isoformat(),
                               "assumed_open": [d.isoformat() for d in assumed]}}
        print(_safe_json(status.to_json(report)))
        return 0
    print(_safe(f"database: {path}"))
    if last is not None:
        error = f": {last['error']}" if last["error"] else ""
        print(_safe(f"last cycle: {last['as_of']} {last['status']} (finished {last['finished']})"
                    f"{error}"))
        if last["status"] not in runs.EVALUATED:
            print(f"last successful cycle: {last_ok or 'none'}")
    else:
        print("last cycle: none yet")
    for line in status.render(report):
        print(_safe(line))
    print(f"calendar: XSHG holidays known to {end} (judged on {as_of})")
    if warn:
        print(f"  after {end} {ASSUMED_OPEN_RULE}; declare the exchange's holidays in [calendar] "
              "extra_closed")
        print(f"  assumed open {start} .. {horizon}: "
              + (", ".join(d.isoformat() for d in assumed) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
