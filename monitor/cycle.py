"""One daily cycle: fetch, compute signals, evaluate rules, advance alerts, queue the digest.

The fetch (network: minutes with AKShare) runs first, outside any transaction; then every read
that decides a write and every write of the cycle happen in ONE ``BEGIN IMMEDIATE`` transaction.
A writer that comes in during the fetch (``silence add``, ``import-csv``) therefore cannot fail the
cycle, and the cycle never acts on state read before the lock. A cycle that fails halfway leaves the
database as it was (a ``failed`` row is then added to ``runs`` with the reason, retried while the
database is locked). Running the same day twice with the same data changes no row and queues
nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlite_utils import Database

from monitor.alerting import data_stale, lifecycle, rules
from monitor.alerting.advance import advance, starting_state
from monitor.alerting.context import evaluate_context
from monitor.calendar import TradingCalendar, coverage_note
from monitor.compute import SignalValue, compute_day
from monitor.config import COMPOSITE, Config, RuleConfig
from monitor.delivery import digest
from monitor.sources import CalendarCheckingSource, CrossSectionSource, Source
from signals.episodes import drawdown_episodes, rotation_episodes
from signals.series import MICROCAP_CLOSE
from storage import (
    alerts,
    episodes,
    observations,
    outbox,
    runs,
    scorecards,
    signal_values,
    silences,
)
from storage.db import immediate
from storage.observations import ObservationRow
from storage.util import dumps, utc_now

JOB = "cycle"


class CycleError(RuntimeError):
    """The cycle cannot run for this day; the message says why in one line."""


@dataclass
class CycleResult:
    """What one cycle did."""

    as_of: dt.date
    status: str  # ok | partial | fetch_failed | closed | unchanged
    changed: int
    events: list[dict] = field(default_factory=list)
    digest: dict | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # series or function -> reason


def digest_key(as_of: dt.date) -> str:
    """Return the outbox dedup key of ``as_of``'s digest."""
    return f"digest:{as_of.isoformat()}"


def summary_day(config: Config, calendar: TradingCalendar, day: dt.date) -> bool:
    """Return whether ``day``'s cycle sends the weekly summary (``notify.weekly_summary``)."""
    enabled = config.notify.weekly_summary
    return enabled and digest.is_summary_day(day, calendar.next(day), enabled)


def headline_rules(config: Config) -> list[RuleConfig]:
    """Return the rules whose ``when`` reads the headline signal (``risk.drawdown_prob``)."""
    return [r for r in config.rules if digest.is_headline(r)]


@dataclass(frozen=True)
class RunConstants:
    """What a run of consecutive cycles that fetch nothing (a replay: the observations stay as
    they are) works out once instead of every day (``run_constants``): the parsed rules, the
    series the ``data_stale`` alert requires, and those series' observation days."""

    rules: tuple[rules.ParsedRule, ...]
    observed: dict[str, tuple[list[str], list[str]]]  # required series -> (days, available_at)

    @property
    def required(self) -> tuple[str, ...]:
        """The series the ``data_stale`` alert requires (the keys of ``observed``)."""
        return tuple(self.observed)


def run_constants(db: Database, config: Config) -> RunConstants:
    """Return the ``RunConstants`` of ``config`` over the observations now in ``db``."""
    required = data_stale.required_series(config, observations.series_names(db))
    return RunConstants(tuple(rules.parse(r) for r in config.rules),
                        observations.observed_days(db, required))


def run_cycle(db: Database, config: Config, as_of: dt.date, source: Source,
              calendar: TradingCalendar,
              precomputed: dict[str, SignalValue] | None = None,
              episodes: str = "incremental", constants: RunConstants | None = None) -> CycleResult:
    """Run the daily cycle for trading day ``as_of``; return what it did.

    ``precomputed``: the day's signal values when a replay computed them for the whole period
    at once (``monitor.compute.history``, equal to ``compute_day``); everything else is the same.
    ``episodes``: "incremental" (the daemon: re-read only the history since the latest stored
    episode), "full" (recompute from all history) or "skip" (a replay skips it until its last
    day, then recomputes in full: the same table as updating every day).
    ``constants``: a replay's ``run_constants``, computed once for all its days; with them the
    cycle fetches nothing (``source`` is not called) and must not: they hold while the
    observations do not change. Without them the cycle works them out itself (the same values).

    Raises CycleError for a day that is not a trading day or that lies before the last day
    already evaluated (history is re-run with ``replay``), and re-raises any failure after
    recording it in ``runs``; in both cases nothing else is written.
    """
    if not calendar.is_trading_day(as_of):
        raise CycleError(f"{as_of} is not an XSHG trading day")
    day = as_of.isoformat()
    if constants is None:  # before fetching anything for a day refused anyway
        _check_forward(alerts.get_all(db), day)
    started = utc_now()
    try:
        fetched = (fetch_day(db, source, as_of) if constants is None  # network: outside any
                   else FetchedDay([], {}))  # transaction; a replay fetches nothing
        with immediate(db):  # the write lock first: the reads below decide the writes
            current = alerts.get_all(db)
            _check_forward(current, day)
            return _run(db, config, as_of, fetched, calendar, current, started, precomputed,
                        episodes, constants)
    except CycleError:
        raise
    except Exception as exc:
        try:
            runs.record_failure(db, JOB, day, started, utc_now(),
                                f"{type(exc).__name__}: {exc}".splitlines()[0])
        except Exception as unrecorded:  # the caller must see the cycle's own failure
            exc.add_note(f"its failed row could not be recorded: {unrecorded}")
        raise


def _check_forward(current: dict[str, dict], day: str) -> None:
    """Raise CycleError when ``day`` lies before the last day the alerts were evaluated."""
    latest = max((a["last_evaluated"] for a in current.values()), default=None)
    if latest is not None and day < latest:
        raise CycleError(f"{day} is before the last evaluated day {latest}: cycles run forward "
                         "in time (use `regime-monitor replay` for history)")


@dataclass
class FetchedDay:
    """What the source delivered for a day, before anything is written."""

    rows: list[ObservationRow]
    failures: dict[str, str]  # series or function -> reason
    checks_calendar: bool = False  # no index value for the day means the exchange was closed
    cross_section: bool = False  # the source has a market-cap cross-section (AKShare)
    panel_fetched: bool = False  # the cross-section was asked for (not on a day that looked closed)
    panel: pd.DataFrame | None = None  # the day's cross-section, when the source had one


def fetch_day(db: Database, source: Source, as_of: dt.date) -> FetchedDay:
    """Fetch ``as_of``'s data from ``source`` (the network part of the cycle; reads the run log
    and the stored index days, writes nothing); return it as a ``FetchedDay``.

    The rows are fetched again from the last fully successful cycle on (after a degraded day).
    The cross-section is not asked for on a day that looks closed (no index value for the day).
    """
    since = runs.last_success(db, JOB, before=as_of)  # fetch again after a degraded day
    got = source.fetch(as_of, since)
    rows = list(got.rows)
    out = FetchedDay(rows, dict(got.failures),
                     checks_calendar=(isinstance(source, CalendarCheckingSource)
                                      and bool(source.cross_checks_calendar)),
                     cross_section=isinstance(source, CrossSectionSource))
    if not isinstance(source, CrossSectionSource):
        return out
    day = as_of.isoformat()
    looks_closed = (out.checks_calendar
                    and not any(r[0].startswith("index.") and r[0] != MICROCAP and r[1] == day
                                for r in rows)
                    and _published_nothing(db, as_of, out.failures))
    if not looks_closed:
        panel = source.fetch_cross_section(as_of)
        out.panel = panel.frame
        out.panel_fetched = True
        out.failures.update(panel.failures)
    return out


def _run(db: Database, config: Config, as_of: dt.date, data: FetchedDay,
         calendar: TradingCalendar, current: dict[str, dict], started: str,
         precomputed: dict[str, SignalValue] | None, episodes: str,
         constants: RunConstants | None) -> CycleResult:
    day = as_of.isoformat()
    before = db.conn.total_changes
    fetched = (observations.upsert(db, data.rows, revised_from=day)  # a revised value: from today
               if data.rows else 0)
    failures = dict(data.failures)
    if data.checks_calendar and _published_nothing(db, as_of, failures):
        # Every index fetch succeeded and none has the day: the exchange was closed (a holiday the
        # calendar does not know), not a trading day with missing data. Nothing is evaluated.
        runs.record(db, JOB, day, started, utc_now(), runs.CLOSED,
                    error=f"no index data published for {day}: treated as a closed day")
        return CycleResult(as_of, runs.CLOSED, db.conn.total_changes - before, failures=failures)
    if data.cross_section:
        if not data.panel_fetched:  # looked closed at the fetch; another writer stored the day since
            failures.setdefault("stock_panel", "the cross-section was not fetched (the day had no "
                                               "index data when the cycle fetched)")
        fetched += continue_microcap_index(db, data.panel, as_of, calendar, failures)

    computed = (precomputed if precomputed is not None
                else compute_day(db, calendar, as_of, config.signal_params(), keep=True))
    values = {name: sv.value for name, sv in computed.items()}
    parsed = constants.rules if constants is not None else [rules.parse(r) for r in config.rules]
    evaluations = [rules.evaluate_parsed(p, values) for p in parsed]
    count, names = rules.composite(evaluations)
    rows = [(name, day, sv.value, None if sv.context is None else json.dumps(sv.context))
            for name, sv in sorted(computed.items())]
    rows.append((COMPOSITE, day, float(count), json.dumps(names)))
    signal_values.upsert(db, rows)

    active_silences = silences.active_on(db, as_of)
    events, items, firing, pending, active = [], [], [], [], []
    firing_values: dict[str, list[dict]] = {}  # each firing rule's values, shown in the digest
    states: dict[str, lifecycle.AlertState] = {}
    for p, ev in zip(parsed, evaluations, strict=True):
        rule = p.rule
        prev = starting_state(current.get(rule.name), day)
        # the headline signal's context (the model's base rate and contributions) tops the digest
        context = {n: computed[n].context for n in p.names
                   if n in computed and computed[n].context and n != digest.HEADLINE_SIGNAL}
        new, event, item = advance(rule, ev, prev, day, silences=active_silences, context=context)
        if event:
            events.append(event)
        if item:
            items.append(item)
        states[rule.name] = new
        if new.state == lifecycle.FIRING:
            firing.append(rule.name)
            active.append({"rule": rule.name, "severity": rule.severity, "since": new.since})
            firing_values[rule.name] = ev.comparisons
        elif new.state == lifecycle.PENDING:
            pending.append(rule.name)
        alerts.save(db, {
            "rule": rule.name, "severity": rule.severity, "state": new.state,
            "state_json": new.to_json(), "prev_state_json": prev.to_json(),
            "last_evaluated": day, "since": new.since, "last_values": dumps(ev.values),
        })
    stale_event, stale_item, stale_state, stale_comparisons = _data_stale(
        db, config, as_of, calendar, current, active_silences, constants)
    if stale_event:
        events.append(stale_event)
    if stale_item:
        items.append(stale_item)
    if stale_state.state == lifecycle.FIRING:
        firing.append(DATA_STALE)
        active.append({"rule": DATA_STALE, "severity": data_stale.RULE.severity,
                       "since": stale_state.since})
        firing_values[DATA_STALE] = stale_comparisons
    alerts.replace_events(db, day, events)
    if episodes != "skip":
        update_episodes(db, config, as_of, calendar, full=episodes == "full")

    # A digest only when something changed (or on the weekly summary day): reminders and info
    # changes ride along in a digest that goes out anyway. The events above are recorded either way.
    payload = None
    key = digest_key(as_of)
    summary = summary_day(config, calendar, as_of)
    if digest.should_send(items, summary):
        payload = digest.build(
            day, items, firing, pending, {"count": count, "names": names}, active=active,
            context=evaluate_context(config.context, values),
            risk=_risk(db, config, computed, states, day), summary=summary,
            notes=[n for n in (coverage_note(calendar.coverage_end, as_of),) if n]
            + failure_notes(db, day), microcap=microcap_state(db, as_of, calendar),
            firing_values=firing_values)
        outbox.enqueue(db, key, "digest", day, dumps(payload))
    else:
        outbox.withdraw(db, key)

    changed = db.conn.total_changes - before
    status = runs.OK if not failures else runs.FETCH_FAILED if not fetched else runs.PARTIAL
    error = "; ".join(f"{name}: {reason}" for name, reason in sorted(failures.items())) or None
    if changed == 0 and runs.has_success(db, JOB, day, (status,)):
        return CycleResult(as_of, "unchanged", 0, events, payload, values, failures)
    detail = dumps({"observations": fetched, "signals": len(rows), "events": len(events),
                    "notifications": len(items), "digest": int(payload is not None)})
    runs.record(db, JOB, day, started, utc_now(), status, error=error, detail=detail)
    return CycleResult(as_of, status, changed, events, payload, values, failures)


JOB_LABELS = {JOB: "The daily cycle", "drop_folder": "A drop-folder file", "holdings":
              "The fund-holdings job", "backfill": "A backfill month", "import": "An import"}
MAX_FAILURE_NOTES = 5


def failure_notes(db: Database, day: str) -> list[str]:
    """Return one line per failure recorded in ``runs`` since the previous digest was queued (a
    failed cycle, a rejected drop-folder file, a failed holdings run), at most
    ``MAX_FAILURE_NOTES`` and a count of the rest: nothing fails silently."""
    rows, total = runs.failures_since(db, outbox.last_digest_queued(db, day), MAX_FAILURE_NOTES)
    notes = [f"{JOB_LABELS.get(r['job'], r['job'])} failed ({r['as_of']}): "
             f"{(r['error'] or 'no reason recorded')[:200]}" for r in rows]
    if total > len(rows):
        notes.append(f"... and {total - len(rows)} more failures: see `regime-monitor status`.")
    return notes


def microcap_state(db: Database, as_of: dt.date, calendar: TradingCalendar) -> dict | None:
    """Return the digest's micro-cap block (``digest.microcap_state``: the level and its drawdown
    from the peak) from the closes available on ``as_of`` (point-in-time). Read only on a day a
    digest goes out: the whole history, for the peak."""
    first = observations.first_date(db, [MICROCAP_CLOSE])
    if first is None or first > as_of:
        return None
    days = calendar.days(first, as_of)
    close = observations.load_frame_cached(db, [MICROCAP_CLOSE], days, as_of)[MICROCAP_CLOSE].to_numpy()
    known = np.flatnonzero(np.isfinite(close))
    if not len(known):
        return None
    # only the days that can decide it: the last close and every day of the highest one (the
    # pure function picks the peak among equal highs)
    picked = [*np.flatnonzero(close == close[known].max()), known[-1]]
    return digest.microcap_state([(days[i].isoformat(), float(close[i])) for i in picked])


def _risk(db: Database, config: Config, computed: dict[str, SignalValue],
          states: dict[str, lifecycle.AlertState], day: str) -> dict | None:
    """Return the digest's headline block (``digest.risk_block``) of ``day`` (ISO), each rule
    with the score measured on days before it (``backtest --record``), or None without headline
    rules."""
    heads = headline_rules(config)
    if not heads:
        return None
    sv = computed.get(digest.HEADLINE_SIGNAL) or SignalValue(None)
    return digest.risk_block(sv.value, sv.context, [
        {"rule": r.name, "severity": r.severity, "state": states[r.name].state,
         "since": states[r.name].since, "scorecard": scorecards.latest(db, r.name, ended_before=day)}
        for r in heads])


def _published_nothing(db: Database, as_of: dt.date, failures: dict[str, str]) -> bool:
    """True when no index series failed to fetch and none has a value dated ``as_of``."""
    if any(name.startswith("index.") for name in failures):
        return False
    return not observations.index_published(db, as_of.isoformat(), exclude=MICROCAP)


DATA_STALE = data_stale.DATA_STALE


def _data_stale(db: Database, config: Config, as_of: dt.date, calendar: TradingCalendar,
                current: dict[str, dict], active_silences: list[dict],
                constants: RunConstants | None = None
                ) -> tuple[dict | None, dict | None, lifecycle.AlertState, list[dict]]:
    """Advance the built-in ``data_stale`` alert (``monitor.alerting.data_stale``) and store its
    state; return (event or None, digest item or None, new state, the day's comparisons).
    ``constants``: the required series and their observation days read once (a replay)."""
    limit = config.data_quality.stale_after_days
    if limit <= 0:
        return None, None, lifecycle.AlertState(), []
    day = as_of.isoformat()
    first = calendar.window_start(as_of, data_stale.lookback_days(config) + 1).isoformat()
    if constants is None:
        required = data_stale.required_series(config, observations.series_names(db))

        def latest_since(names: list[str], since: str) -> dict[str, str | None]:
            return observations.latest_dates(db, names, since, day)
    else:  # the same answers from the days read once
        required = list(constants.required)

        def latest_since(names: list[str], since: str) -> dict[str, str | None]:
            return {k: data_stale.latest_known(*constants.observed[k], since, day) for k in names}
    latest = latest_since(required, first)
    gone = [k for k, v in latest.items() if v is None]  # nothing in the lookback: its last day
    older = latest_since(gone, "") if gone else {}
    ages, last = data_stale.last_days(latest, older, as_of, calendar)
    ev = data_stale.evaluate(ages, limit, last)
    prev = starting_state(current.get(DATA_STALE), day)
    new, event, item = advance(data_stale.RULE, ev, prev, day, silences=active_silences)
    alerts.save(db, {
        "rule": DATA_STALE, "severity": data_stale.RULE.severity, "state": new.state,
        "state_json": new.to_json(), "prev_state_json": prev.to_json(),
        "last_evaluated": day, "since": new.since, "last_values": dumps(ev.values),
    })
    return event, item, new, ev.comparisons


def update_episodes(db: Database, config: Config, as_of: dt.date, calendar: TradingCalendar,
                    full: bool = False) -> int:
    """Update the drawdown and rotation episodes as known on ``as_of``; return rows changed.

    Drawdowns come from the micro-cap closes available by ``as_of``; rotation spells from the
    days on which the configured rotation rule's condition held (stored with the composite).
    Episodes before the latest stored one are final, so only the recent history is re-read and
    the cost does not grow with the length of the history.
    """
    series = MICROCAP_CLOSE
    first = observations.first_date(db, [series])
    if first is None:
        return 0
    # A drawdown episode starts at an all-time high and a recovery is one too, so scanning from
    # the latest episode's peak (open) or recovery (closed) reproduces the full-history result.
    last = None if full else episodes.latest(db, "drawdown")
    since = (last["end"] or last["start"]) if last else None
    start = max(first, dt.date.fromisoformat(since)) if since else first
    days = calendar.days(start, as_of)
    close = observations.load_frame_cached(db, [series], days, as_of)[series]
    changed = episodes.replace_kind(db, "drawdown", [
        {"start": e.peak.isoformat(), "peak": e.peak.isoformat(), "trough": e.trough.isoformat(),
         "end": e.recovery.isoformat() if e.recovery else None, "depth": e.depth,
         "detail": dumps(e.to_dict())}
        for e in drawdown_episodes(close, config.episodes.drawdown_min_depth)],
        since=start.isoformat())
    rule = config.episodes.rotation_rule
    if not rule:
        return changed
    # Spells that ended before the last successful cycle are stored and final: re-read from the
    # open spell's start, else from the day before the previous cycle.
    last = None if full else episodes.latest(db, "rotation")
    previous = None if full else runs.last_success(db, JOB, before=as_of, statuses=runs.EVALUATED)
    if last and last["end"] is None:
        lo = calendar.previous(dt.date.fromisoformat(last["start"]))
    elif previous is not None:
        lo = calendar.previous(previous)
    else:
        lo = first
    lo = max(lo, first)
    rows = signal_values.rows_between(db, [COMPOSITE, "rotation.hot_theme_excess"],
                                      lo.isoformat(), as_of.isoformat())
    holds = {d: rule in json.loads(c or "[]") for sig, d, _, c in rows if sig == COMPOSITE}
    excess = {d: v for sig, d, v, _ in rows if sig == "rotation.hot_theme_excess"}
    theme = {d: json.loads(c) for sig, d, _, c in rows if sig == "rotation.hot_theme_excess" and c}
    window = calendar.days(lo, as_of)
    index = pd.DatetimeIndex(pd.to_datetime(window))
    keys = [d.isoformat() for d in window]
    closes = observations.load_frame_cached(db, [series], window, as_of)[series]
    spells = rotation_episodes(
        pd.Series([holds.get(k, False) for k in keys], index=index),
        pd.Series([excess.get(k) for k in keys], index=index, dtype=float),
        pd.Series([theme.get(k) for k in keys], index=index, dtype=object), closes)
    # the spell containing day `lo` may be cut at the window's start: keep only later ones
    spells = [e for e in spells if e.start > lo or not holds.get(lo.isoformat(), False)]
    changed += episodes.replace_kind(db, "rotation", [
        {"start": e.start.isoformat(), "peak": None, "trough": None,
         "end": e.end.isoformat() if e.end else None, "depth": e.microcap_drawdown,
         "detail": dumps(e.to_dict())} for e in spells], since=(lo + dt.timedelta(days=1)).isoformat()
        if holds.get(lo.isoformat(), False) else lo.isoformat())
    return changed


MICROCAP = MICROCAP_CLOSE
def continue_microcap_index(db: Database, today: pd.DataFrame | None, as_of: dt.date,
                            calendar: TradingCalendar, failures: dict[str, str]) -> int:
    """Store the day's market-cap cross-section ``today`` (fetched before the transaction) and
    continue ``index.microcap.close`` from it.

    The index return of ``as_of`` comes from the stored cross-section of the previous trading
    day and today's (``signals.microcap.daily_return``, the recipe of SIGNALS.md section 7); the
    close is the previous close times (1 + return). Listed-day counts are carried in
    ``panel_listed_days``. Returns the rows written; a missing input is recorded in ``failures``.
    """
    from signals.microcap import continue_microcap
    from storage import stock_panel

    if today is None or today.empty:
        return 0
    changed = stock_panel.upsert(
        db, [tuple(r) for r in today[list(stock_panel.COLUMNS)].itertuples(index=False)])
    prev_day = calendar.previous(as_of).isoformat()
    prev = stock_panel.on_day(db, prev_day)
    prev_close = observations.current_value(db, MICROCAP, prev_day, as_of.isoformat())
    if prev.empty or prev_close is None:
        failures["index.microcap"] = (f"cannot continue the micro-cap index: no stored cross-section "
                                      f"or close for {prev_day} (import the stock panel and "
                                      f"{MICROCAP} history, or backfill)")
        return changed
    listed = stock_panel.listed_days(db, prev_day)
    if not listed:  # first continuation: count each stock's stored panel days up to yesterday
        listed = stock_panel.traded_days_through(db, prev_day)
    ret, listed_today = continue_microcap(prev, today[["code", "close", "total_mv", "is_st"]],
                                          pd.Series(listed, dtype=float))
    # keep two days of counts
    changed += stock_panel.store_listed_days(db, as_of.isoformat(), listed_today, keep_from=prev_day)
    if ret == ret:  # not NaN
        changed += observations.upsert(db, [(MICROCAP, as_of.isoformat(), prev_close * (1.0 + ret),
                                             as_of.isoformat(), "reconstructed:stock_panel")])
    return changed
