"""The ``regime-monitor`` command line. Library errors become one-line messages only here."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from monitor.config import Config, ConfigError, config_path, load_config, one_line

log = logging.getLogger("regime_monitor")


class UsageError(ValueError):
    """A bad argument; the message is one line."""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    if value > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is too large")
    return value


def _draws(text: str) -> int:
    from monitor.analysis.backtest import MAX_DRAWS

    value = _positive_int(text)
    if value > MAX_DRAWS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {MAX_DRAWS} draws")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 2**63 - 1")
    return value


def _penalty(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _baseline_options(parser: argparse.ArgumentParser) -> None:
    from monitor.analysis.backtest import DRAWS, SEED

    parser.add_argument("--draws", type=_draws, default=DRAWS,
                        help=f"random draws of each chance baseline (default {DRAWS})")
    parser.add_argument("--seed", type=_seed, default=SEED,
                        help=f"seed of the chance baselines (default {SEED})")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"regime-monitor: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="regime-monitor",
                description="Micro-cap regime monitor for China A-shares.")
    p.add_argument("--config", help="config file (default: $REGIME_MONITOR_CONFIG or "
                                    "config/monitor.toml)")
    p.add_argument("--db", help="SQLite database (default: [storage] path of the config)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("run", help="run the daemon: the daily cycle on every XSHG trading evening")
    once = sub.add_parser("once", help="run one daily cycle now")
    once.add_argument("--as-of", type=_date, help="trading day (default: the latest trading day "
                                                   "whose scheduled time has passed)")

    bf = sub.add_parser("backfill", help="fetch history through the configured source, month by "
                                         "month (resumable)")
    bf.add_argument("--start", type=_date, required=True)
    bf.add_argument("--end", type=_date, help="default: today")

    hold = sub.add_parser("holdings", help="run the quarterly fund-holdings job now (AKShare source; "
                                           "resumable)")
    hold.add_argument("--report-date", type=_date,
                      help="quarter end (default: the latest published quarter, if not done yet)")

    imp = sub.add_parser("import-csv", help="import CSV files (long format or stock panel)")
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument("--coverage", choices=["top10", "full"], default="top10",
                     help="fund-holdings files: top-10 (quarterly) or full (semi-annual/annual) holdings")

    sig = sub.add_parser("signals", help="show signal values (latest, or one signal's history)")
    sig.add_argument("name", nargs="?")
    sig.add_argument("--since", type=_date)
    sig.add_argument("--json", action="store_true")

    al = sub.add_parser("alerts", help="show alerts: active ones, or the event history with --all")
    al.add_argument("--all", action="store_true", help="every transition, oldest first")
    al.add_argument("--json", action="store_true")

    sil = sub.add_parser("silence", help="mute notifications of a rule until a date")
    silsub = sil.add_subparsers(dest="action", required=True, parser_class=_Parser)
    add = silsub.add_parser("add", help="add a silence")
    add.add_argument("rule", help="rule name, or 'all'")
    add.add_argument("--until", type=_date, required=True, help="last silenced day (inclusive)")
    add.add_argument("--reason", required=True)
    ls = silsub.add_parser("list", help="list silences in force (all with --all)")
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true")
    exp = silsub.add_parser("expire", help="end a silence now")
    exp.add_argument("id", type=_positive_int)

    rp = sub.add_parser("replay", help="run the daily cycle over history into a scratch database")
    rp.add_argument("--start", type=_date, required=True)
    rp.add_argument("--end", type=_date, required=True)
    rp.add_argument("--config", dest="trial_config",
                    help="rules and signal parameters to try (default: the main config)")
    rp.add_argument("--scratch", type=Path, default=Path("var/replay.db"),
                    help="scratch database for the replay (default: var/replay.db, recreated)")
    rp.add_argument("--json", action="store_true", help="print the alert events as JSON")

    bt = sub.add_parser("backtest", help="score the rules against micro-cap drawdown episodes")
    bt.add_argument("--start", type=_date)
    bt.add_argument("--end", type=_date)
    bt.add_argument("--config", dest="trial_config",
                    help="rules and signal parameters to try (default: the main config)")
    bt.add_argument("--sweep", action="append", default=[], metavar="RULE.PARAM=LO:HI:STEP",
                    help="grid over a rule's threshold (PARAM = a signal in its `when`) or "
                         "for_days/clear_days/repeat_every_days; repeatable")
    _baseline_options(bt)
    bt.add_argument("--json", action="store_true")
    bt.add_argument("--record", action="store_true",
                    help="store each rule's score as its scorecard, shown beside the headline "
                         "warning in digests (the only write backtest makes)")

    cal = sub.add_parser("calibrate", help="propose thresholds aimed at the drawdown labels, from "
                                           "data up to a date (TOML)")
    cal.add_argument("--until", type=_date, required=True)
    cal.add_argument("--penalty", type=_penalty, default=1.0,
                     help="each threshold maximises caught - PENALTY x false alarms per year "
                          "(default 1)")
    _baseline_options(cal)
    cal.add_argument("--config", dest="trial_config")

    rep = sub.add_parser("report", help="one self-contained HTML page: signals, alerts, episodes, "
                                        "backtest")
    rep.add_argument("--out", type=Path, required=True)
    rep.add_argument("--start", type=_date)
    rep.add_argument("--end", type=_date)
    rep.add_argument("--no-backtest", action="store_true", help="leave the backtest table out")

    ep = sub.add_parser("episodes", help="micro-cap drawdown and rotation episodes")
    ep.add_argument("--kind", choices=["drawdown", "rotation"])
    ep.add_argument("--json", action="store_true")

    ob = sub.add_parser("outbox", help="show queued, failed (and with --all sent) notifications")
    ob.add_argument("--all", action="store_true")
    ob.add_argument("--json", action="store_true")

    nt = sub.add_parser("notify", help="the notification destination")
    ntsub = nt.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ntsub.add_parser("test", help="send a test message to the configured Slack destination and "
                                  "print what Slack answered")

    cfg = sub.add_parser("config", help="configuration")
    cfgsub = cfg.add_subparsers(dest="action", required=True, parser_class=_Parser)
    chk = cfgsub.add_parser("check", help="validate a config file and print what it resolves to")
    chk.add_argument("path", nargs="?")

    bk = sub.add_parser("backup", help="copy the database to a new file, safely while the daemon "
                                       "runs (SQLite online backup; owner-only; never overwrites)")
    bk.add_argument("dest", type=Path, help="the new file (must not exist)")

    st = sub.add_parser("status", help="each rule's state and since when, the last cycle, and the "
                                       "holiday calendar's coverage (reads only)")
    st.add_argument("--as-of", type=_date, help="the day to judge the calendar coverage from "
                                                "(default: today in the schedule's time zone)")

    demo = sub.add_parser("demo", help="run the built-in offline scenario end to end")
    demo.add_argument("--quiet-digests", action="store_true",
                      help="print only the timeline, not every message")
    demo.add_argument("--end", type=_date, help="stop after this day (default: the scenario's end)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from monitor.cycle import CycleError
    from monitor.daemon import DaemonError
    from monitor.sources.csv_import import CsvImportError
    from storage.db import StorageError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CycleError, CsvImportError, StorageError, DaemonError, UsageError) as exc:
        print(f"regime-monitor: error: {_safe(one_line(str(exc)))}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        where = args.db or "[storage] path of the config"
        print(f"regime-monitor: error: database {_safe(one_line(f'{where}: {exc}'))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- helpers -----------------------------------------------------------------------------------

def _refuse_the_database(option: str, path: str | Path, args, config: Config) -> None:
    """Raise UsageError when ``path`` (an output that is replaced) is the history database."""
    db = Path(_db_path(args, config))
    target = Path(path)
    same = target.resolve() == db.resolve() or (
        target.exists() and db.exists() and os.path.samefile(target, db))
    if same:
        raise UsageError(f"{option} {path} is the history database itself: choose another file "
                         "(it would be replaced)")


def _config(args) -> Config:
    return load_config(args.config)


def _db_path(args, config: Config) -> str:
    return args.db or config.storage.path


def _open(args, config: Config):
    from storage.db import open_db

    return open_db(_db_path(args, config))


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
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]
    return "\n".join(out)


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


# -- commands ----------------------------------------------------------------------------------

def cmd_config(args) -> int:
    path = config_path(args.path or args.config)
    config = load_config(path)
    cal = _calendar(config)
    print(_safe(f"config: {path} (valid)"))
    s = config.schedule
    print(f"schedule: cron {s.cron!r} in {s.timezone}, XSHG trading days only; misfire grace "
          f"{s.misfire_grace_seconds} s; start-up catch-up up to {s.catch_up_max_days} trading days")
    print(f"calendar: XSHG, holidays known to {cal.coverage_end}; "
          f"{len(config.calendar.extra_closed)} extra closed day(s)")
    print(f"source: {config.source.kind}")
    print(_safe(f"storage: {Path(args.db or config.storage.path).resolve()}"))
    import os

    from monitor.delivery import TOKEN_ENV, WEBHOOK_ENV

    slack = config.notify.slack
    if slack.channel and os.environ.get(TOKEN_ENV):
        dest = _safe(f"Slack channel {slack.channel} (bot token from ${TOKEN_ENV})")
    elif os.environ.get(WEBHOOK_ENV):
        dest = f"Slack incoming webhook (from ${WEBHOOK_ENV})"
    else:
        dest = "console (no Slack destination configured)"
    summary = "; weekly summary on the last trading day of each week" if config.notify.weekly_summary else ""
    print(f"notify: {dest}; a digest when a warning or critical alert fires or resolves{summary}")
    print(_safe(f"context ({len(config.context)}): " + (", ".join(
        f"{c.name} when {str(c.when_expr)!r}" for c in config.context) or "none")))
    print(f"rules ({len(config.rules)}):")
    for r in config.rules:
        clear = str(r.clear_expr) if r.clear_expr is not None else f"not ({r.when_expr})"
        print(_safe(f"  {r.name} [{r.severity}] when {str(r.when_expr)!r} for {r.for_days}d"
                    f", clear when {clear!r} for {r.clear_days}d, repeat every "
                    f"{r.repeat_every_days or 'never'}{'d' if r.repeat_every_days else ''}"))
    return 0


def cmd_once(args) -> int:
    from monitor.daemon import Service, check_database

    config = _config(args)
    check_database(_db_path(args, config))
    service = Service(config, _db_path(args, config))
    try:
        result = service.run_day(args.as_of)
        for name, reason in sorted(result.failures.items()):
            print(f"regime-monitor: error: {_safe(name)}: {_safe(reason)}", file=sys.stderr)
        print(f"{result.as_of}: {result.status}, {result.changed} row(s) changed, "
              f"{len(result.events)} event(s)")
        for e in result.events:
            print(_safe(f"  {e['rule']}: {e['from_state']} -> {e['to_state']} ({e['event']})"))
        service.deliver()
    finally:
        service.close()
    return 1 if result.status == "fetch_failed" else 0


def cmd_run(args) -> int:
    from monitor.daemon import run_daemon

    config = _config(args)
    return run_daemon(config, _db_path(args, config), config_file=config_path(args.config))


def cmd_backfill(args) -> int:
    from monitor.analysis.replay import progress
    from monitor.sources import make_source
    from monitor.sources.ingest import backfill, month_chunks

    config = _config(args)
    if config.source.kind == "csv":
        raise UsageError("the csv source has nothing to fetch: bring history with `import-csv` "
                         "(or the drop folder)")
    end = args.end or dt.date.today()
    if end < args.start:
        raise UsageError(f"--end {end} is before --start {args.start}")
    cal = _calendar(config)
    db = _open(args, config)
    chunks = month_chunks(cal, args.start, end)
    bar = iter(progress(range(len(chunks)), len(chunks), "backfill"))
    counts = backfill(db, make_source(config), cal, args.start, end,
                      on_chunk=lambda first, last, status: next(bar, None))
    print(f"backfill {args.start} .. {end}: {counts['done']} month(s) fetched "
          f"({counts['observations']} rows written), {counts['skipped']} already done, "
          f"{counts['failed']} failed (see `runs`; run the command again to retry them)")
    return 0 if not counts["failed"] else 1


def cmd_holdings(args) -> int:
    from monitor.daemon import Service
    from monitor.sources.holdings import quarter_end

    config = _config(args)
    if config.source.kind != "akshare":
        raise UsageError(f"the holdings job fetches through AKShare, but source.kind is "
                         f"{config.source.kind!r}: bring holdings with `import-csv` instead")
    if args.report_date is not None and not quarter_end(args.report_date):
        raise UsageError(f"--report-date {args.report_date} is not a quarter end")
    service = Service(config, _db_path(args, config))
    try:
        outcome = service.holdings(args.report_date)
    finally:
        service.close()
    if outcome is None:
        raise UsageError("the holdings job is off: set source.akshare.holdings_job = true")
    print(outcome.line())
    return 0 if outcome.status in ("ok", "done") else 1


def cmd_import_csv(args) -> int:
    from monitor.sources.csv_import import import_files, printable

    config = _config(args)
    db = _open(args, config)
    changed = import_files(db, list(args.paths), coverage=args.coverage)
    for path, n in changed.items():
        print(f"{printable(path)}: {n} row(s) written")
    return 0


def cmd_signals(args) -> int:
    from storage import signal_values

    config = _config(args)
    db = _open(args, config)
    if args.name or args.since:
        rows = signal_values.history(db, args.name, args.since)
        if args.name and not rows:
            import signals

            if args.name not in signals.REGISTRY and args.name != "composite.conditions_active":
                raise UsageError(f"unknown signal {args.name!r}")
    else:
        rows = signal_values.latest(db)
    _print_rows(rows, ["signal", "date", "value", "context"], args.json)
    return 0


def cmd_alerts(args) -> int:
    from storage import alerts

    config = _config(args)
    db = _open(args, config)
    if args.all:
        rows = alerts.events(db)
        for r in rows:
            r["signal_values"] = json.loads(r["signal_values"])["values"]
        cols = ["date", "rule", "severity", "event", "from_state", "to_state", "notified",
                "silenced_by", "signal_values"]
        if not args.json:
            for r in rows:
                r["signal_values"] = ", ".join(f"{k}={_cell(v)}"
                                               for k, v in r["signal_values"].items())
        _print_rows(rows, cols, args.json)
        return 0
    rows = [a for a in alerts.get_all(db).values() if a["state"] in ("pending", "firing",
                                                                       "no_data")]
    for r in rows:
        r["last_values"] = json.loads(r["last_values"] or "{}")
        if not args.json:
            r["last_values"] = ", ".join(f"{k}={_cell(v)}" for k, v in r["last_values"].items())
    rows.sort(key=lambda r: (r["state"] != "firing", r["rule"]))
    _print_rows(rows, ["rule", "severity", "state", "since", "last_evaluated", "last_values"],
                args.json)
    return 0


def cmd_silence(args) -> int:
    from storage import silences

    config = _config(args)
    db = _open(args, config)
    if args.action == "add":
        from monitor.delivery.digest import DATA_STALE

        names = {r.name for r in config.rules} | {DATA_STALE}  # the built-in alert too
        matcher = silences.ALL if args.rule == "all" else args.rule
        if matcher != silences.ALL and matcher not in names:
            raise UsageError(f"unknown rule {args.rule!r} (rules: {', '.join(sorted(names))})")
        if not args.reason.strip():
            raise UsageError("--reason must not be empty")
        sid = silences.add(db, matcher, args.until, args.reason.strip())
        print(_safe(f"silence {sid}: {args.rule} muted until {args.until} "
                    f"({args.reason.strip()})"))
    elif args.action == "list":
        _print_rows(silences.list_all(db, include_expired=args.all),
                    ["id", "matcher", "until", "reason", "created_at", "expired_at"], args.json)
    else:
        if not silences.expire(db, args.id):
            raise UsageError(f"no active silence with id {args.id}")
        print(f"silence {args.id} expired")
    return 0


def _trial_config(args) -> Config:
    return load_config(args.trial_config) if args.trial_config else _config(args)


def cmd_replay(args) -> int:
    from monitor.analysis.replay import replay
    from monitor.demo import timeline

    if args.end < args.start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    config = _config(args)
    trial = _trial_config(args)
    _refuse_the_database("--scratch", args.scratch, args, config)
    source = _open(args, config)
    result = replay(source, trial, args.start, args.end, args.scratch)
    if args.json:
        print(json.dumps([{k: e[k] for k in ("date", "rule", "severity", "event", "from_state",
                                             "to_state")} for e in result.events], indent=2))
        return 0
    fired = sum(e["event"] == "firing" for e in result.events)
    print(_safe(f"replay {result.days[0]} .. {result.days[-1]}: {len(result.days)} trading days, "
                f"{len(trial.rules)} rules, {fired} firings; nothing was sent. Scratch database: "
                f"{args.scratch}"))
    print("Alert timeline (pending -> firing -> resolved):")
    for line in timeline(result.events):
        print(_safe(f"  {line}"))
    return 0


def cmd_backtest(args) -> int:
    from monitor.analysis import backtest
    from monitor.analysis.evidence import gather
    from monitor.analysis.replay import progress

    config = _config(args)
    trial = _trial_config(args)
    try:
        sweeps = [backtest.parse_sweep(text) for text in args.sweep]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    evidence = gather(_open(args, config), trial, args.start, args.end)
    if sweeps:
        total = 1
        for sw in sweeps:
            total *= len(sw.values)
        bar = iter(progress(range(total), total, "sweep"))
        try:
            points = backtest.sweep(trial, evidence.values, evidence.episodes, evidence.close, sweeps,
                                    draws=args.draws, seed=args.seed,
                                    on_point=lambda done, _total: next(bar, None))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(points, indent=2, default=str) if args.json
              else _safe(backtest.sweep_table(points), keep="\n"))
        return 0
    sim = backtest.simulate_full(trial, evidence.values)
    rows = backtest.score_simulation(sim, evidence.episodes, evidence.close,
                                     min_depth=trial.episodes.drawdown_min_depth, draws=args.draws,
                                     seed=args.seed)
    from monitor.cycle import summary_day

    calendar = _calendar(trial)
    summary = [d.isoformat() for d in calendar.days(evidence.start, evidence.end)
               if summary_day(trial, calendar, d)]
    per_year = backtest.digests_per_year(backtest.digest_days(sim, summary), evidence.values.index)
    forecast_score = _forecast_score(trial, evidence)
    if args.record:
        _record_scorecards(args, config, rows, evidence)
    if args.json:
        print(json.dumps({"start": evidence.start.isoformat(), "end": evidence.end.isoformat(),
                          "draws": args.draws, "seed": args.seed, "digests_per_year": per_year,
                          "rows": json.loads(backtest.to_json(rows)),
                          "forecast": None if forecast_score is None else forecast_score.to_dict()},
                         indent=2, ensure_ascii=False))
    else:
        print(f"backtest {evidence.start} .. {evidence.end}: labels = micro-cap drawdowns of at least "
              f"{trial.episodes.drawdown_min_depth:.0%}; chance baselines: {args.draws} draws, "
              f"seed {args.seed}")
        print(_safe(backtest.table(rows, draws=args.draws), keep="\n"))
        print(f"digests: {per_year:.1f} a year (the daemon's own decision: a new or resolved "
              f"warning; weekly summary {'on' if trial.notify.weekly_summary else 'off'})")
        if forecast_score is not None:
            from monitor.analysis import forecast

            print(forecast.forecast_table(forecast_score))
        if args.record:
            print(f"recorded {len(rows)} scorecard(s) in {_db_path(args, config)} (shown beside the "
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


def _record_scorecards(args, config: Config, rows, evidence) -> None:
    """Store each row's score as the rule's scorecard (the only write ``backtest`` makes)."""
    from monitor.analysis import backtest
    from storage import scorecards
    from storage.util import utc_now

    db = _open(args, config)
    now = utc_now()
    with db.atomic():
        for row in backtest.to_records(rows):
            scorecards.save(db, row["rule"], evidence.start, evidence.end, now,
                            {**row, "min_lead_days": backtest.MIN_LEAD_DAYS})


def cmd_calibrate(args) -> int:
    from monitor.analysis import backtest
    from monitor.analysis.evidence import gather

    config = _config(args)
    trial = _trial_config(args)
    evidence = gather(_open(args, config), trial, None, args.until)
    try:
        text = backtest.calibrate(trial, evidence.values, evidence.close, args.until,
                                  penalty=args.penalty, draws=args.draws, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(_safe(text, keep="\n\t"))
    return 0


def cmd_report(args) -> int:
    from monitor.analysis import backtest
    from monitor.analysis.evidence import gather
    from monitor.analysis.report import build_report, write_report

    config = _config(args)
    _refuse_the_database("--out", args.out, args, config)
    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder: give the file name of the report")
    db = _open(args, config)
    rows = None
    if not args.no_backtest:
        evidence = gather(db, config, args.start, args.end)
        rows = backtest.to_records(backtest.score(config, evidence.values, evidence.episodes,
                                                  evidence.close))
    page = build_report(db, config, backtest_rows=rows, start=args.start, end=args.end)
    try:
        path = write_report(args.out, page)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {args.out}: {exc.strerror or exc}") from None
    print(f"report written to {path}")
    return 0


def cmd_episodes(args) -> int:
    from storage import episodes

    config = _config(args)
    db = _open(args, config)
    rows = episodes.list_episodes(db, args.kind)
    for r in rows:
        detail = json.loads(r.pop("detail") or "{}")
        r["theme"] = detail.get("theme")
        r["theme_excess_peak"] = detail.get("theme_excess_peak")
    _print_rows(rows, ["kind", "start", "peak", "trough", "end", "depth", "theme",
                       "theme_excess_peak"], args.json)
    return 0


def cmd_outbox(args) -> int:
    from storage import outbox

    config = _config(args)
    db = _open(args, config)
    rows = outbox.list_rows(db, include_sent=args.all)
    for r in rows:
        r.pop("payload")
    _print_rows(rows, ["id", "dedup_key", "as_of", "attempts", "next_attempt_at", "sent_at",
                       "failed_at", "last_error", "destination"], args.json)
    return 0


def cmd_notify(args) -> int:
    from monitor.delivery import DeliveryError, make_notifier, slack_destination

    config = _config(args)
    if slack_destination(config) is None:
        raise UsageError("no Slack destination configured: set $SLACK_BOT_TOKEN and "
                         "notify.slack.channel, or $SLACK_WEBHOOK_URL")
    notifier = make_notifier(config)
    try:
        answer = notifier.send_test()
    except DeliveryError as exc:
        kind = "permanent" if exc.permanent else "temporary"
        print(_safe(f"regime-monitor: error: {notifier.destination} answered: {exc} ({kind})"),
              file=sys.stderr)
        return 1
    if answer.get("ts"):
        print(_safe(f"ok: {notifier.destination} accepted the test message: channel "
                    f"{answer['channel']}, ts {answer['ts']}"))
    else:
        print(_safe(f"ok: {notifier.destination} accepted the test message: "
                    f"{answer.get('answer', 'ok')}"))
    return 0


def cmd_backup(args) -> int:
    from storage.db import backup, open_readonly

    config = _config(args)
    path = _db_path(args, config)
    _refuse_the_database("backup", args.dest, args, config)
    db = open_readonly(path)
    try:
        size = backup(db, args.dest)
    finally:
        db.close()
    print(_safe(f"backup of {path} written to {args.dest} ({size} bytes, quick_check ok)"))
    return 0


STATUS_HORIZON_DAYS = 31  # `status` lists the assumed-open days this far ahead


def cmd_status(args) -> int:
    from zoneinfo import ZoneInfo

    from monitor.calendar import ASSUMED_OPEN_RULE, coverage_warning_due
    from monitor.delivery.digest import DATA_STALE
    from storage import alerts, runs
    from storage.db import open_readonly

    config = _config(args)
    path = _db_path(args, config)
    as_of = args.as_of or dt.datetime.now(ZoneInfo(config.schedule.timezone)).date()
    db = open_readonly(path)
    try:
        stored = alerts.get_all(db) if "alerts" in db.table_names() else {}
        recent = [r for r in (runs.recent(db, 50) if "runs" in db.table_names() else [])
                  if r["job"] == "cycle"]
        last_ok = runs.last_success(db, "cycle", statuses=runs.EVALUATED) if recent else None
    finally:
        db.close()
    print(_safe(f"database: {path}"))
    if recent:
        last = recent[0]
        error = f": {last['error']}" if last["error"] else ""
        print(_safe(f"last cycle: {last['as_of']} {last['status']} (finished {last['finished']})"
                    f"{error}"))
        if last["status"] not in runs.EVALUATED:
            print(f"last successful cycle: {last_ok or 'none'}")
    else:
        print("last cycle: none yet")
    rows = []
    for name in [*(r.name for r in config.rules), DATA_STALE]:
        a = stored.get(name)
        rows.append({"rule": name, "state": a["state"] if a else "not evaluated yet",
                     "since": a["since"] if a else None,
                     "last_evaluated": a["last_evaluated"] if a else None})
    for name in sorted(set(stored) - {r["rule"] for r in rows}):  # rules no longer configured
        a = stored[name]
        rows.append({"rule": name, "state": f"{a['state']} (not in the config)",
                     "since": a["since"], "last_evaluated": a["last_evaluated"]})
    print(_table(rows, ["rule", "state", "since", "last_evaluated"]))
    cal = _calendar(config)
    end = cal.coverage_end
    print(f"calendar: XSHG holidays known to {end} (judged on {as_of})")
    if coverage_warning_due(end, as_of):
        start = max(as_of, end + dt.timedelta(days=1))
        horizon = start + dt.timedelta(days=STATUS_HORIZON_DAYS)
        days = cal.assumed_open(start, horizon)
        print(f"  after {end} {ASSUMED_OPEN_RULE}; declare the exchange's holidays in [calendar] "
              "extra_closed")
        print(f"  assumed open {start} .. {horizon}: "
              + (", ".join(d.isoformat() for d in days) or "none"))
    return 0


def cmd_demo(args) -> int:
    from monitor.demo import run_demo

    config = _config(args)
    return run_demo(config, Path(args.db or "var/demo.db"), show_digests=not args.quiet_digests,
                    end=args.end)


COMMANDS = {
    "run": cmd_run,
    "once": cmd_once,
    "import-csv": cmd_import_csv,
    "backfill": cmd_backfill,
    "holdings": cmd_holdings,
    "signals": cmd_signals,
    "alerts": cmd_alerts,
    "silence": cmd_silence,
    "outbox": cmd_outbox,
    "episodes": cmd_episodes,
    "replay": cmd_replay,
    "backtest": cmd_backtest,
    "calibrate": cmd_calibrate,
    "report": cmd_report,
    "config": cmd_config,
    "notify": cmd_notify,
    "demo": cmd_demo,
    "backup": cmd_backup,
    "status": cmd_status,
}

if __name__ == "__main__":
    sys.exit(main())
