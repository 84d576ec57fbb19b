"""One daily cycle: fetch, compute signals, evaluate rules, advance alerts, queue the digest.

Every write of a cycle happens in ONE transaction: a cycle that fails halfway leaves the database
as it was (a ``failed`` row is then added to ``runs`` with the reason). Running the same day twice
with the same data changes no row and queues nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from monitor import digest, lifecycle, rules
from monitor.calendar import TradingCalendar
from monitor.compute import compute_day
from monitor.config import COMPOSITE, Config
from monitor.sources import Source
from storage import alerts, observations, outbox, runs, signal_values, silences
from storage.util import dumps, utc_now

JOB = "cycle"


class CycleError(RuntimeError):
    """The cycle cannot run for this day; the message says why in one line."""


@dataclass
class CycleResult:
    """What one cycle did."""

    as_of: dt.date
    status: str  # ok | unchanged
    changed: int
    events: list[dict] = field(default_factory=list)
    digest: dict | None = None
    values: dict[str, float | None] = field(default_factory=dict)


def digest_key(as_of: dt.date) -> str:
    """Return the outbox dedup key of ``as_of``'s digest."""
    return f"digest:{as_of.isoformat()}"


def run_cycle(db: Database, config: Config, as_of: dt.date, source: Source,
              calendar: TradingCalendar) -> CycleResult:
    """Run the daily cycle for trading day ``as_of``; return what it did.

    Raises CycleError for a day that is not a trading day or that lies before the last day
    already evaluated (history is re-run with ``replay``), and re-raises any failure after
    recording it in ``runs``; in both cases nothing else is written.
    """
    if not calendar.is_trading_day(as_of):
        raise CycleError(f"{as_of} is not an XSHG trading day")
    day = as_of.isoformat()
    current = alerts.get_all(db)
    latest = max((a["last_evaluated"] for a in current.values()), default=None)
    if latest is not None and day < latest:
        raise CycleError(f"{day} is before the last evaluated day {latest}: cycles run forward "
                         "in time (use `regime-monitor replay` for history)")
    started = utc_now()
    try:
        with db.atomic():
            return _run(db, config, as_of, source, calendar, current, started)
    except Exception as exc:
        with db.atomic():
            runs.record(db, JOB, day, started, utc_now(), "failed",
                        error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise


def _run(db: Database, config: Config, as_of: dt.date, source: Source,
         calendar: TradingCalendar, current: dict[str, dict], started: str) -> CycleResult:
    day = as_of.isoformat()
    before = db.conn.total_changes
    since = runs.last_success(db, JOB, before=as_of)
    fetched = observations.upsert(db, source.fetch(as_of, since))

    computed = compute_day(db, calendar, as_of, config.signal_params())
    values = {name: sv.value for name, sv in computed.items()}
    evaluations = [rules.evaluate(rule, values) for rule in config.rules]
    count, names = rules.composite(evaluations)
    rows = [(name, day, sv.value, None if sv.context is None else json.dumps(sv.context))
            for name, sv in sorted(computed.items())]
    rows.append((COMPOSITE, day, float(count), json.dumps(names)))
    signal_values.upsert(db, rows)

    active_silences = silences.active_on(db, as_of)
    events, items, firing, pending = [], [], [], []
    for rule, ev in zip(config.rules, evaluations, strict=True):
        row = current.get(rule.name)
        if row is None:
            prev = lifecycle.AlertState()
        elif row["last_evaluated"] == day:  # re-run of the latest day: start from the day before
            prev = lifecycle.AlertState.from_json(row["prev_state_json"])
        else:
            prev = lifecycle.AlertState.from_json(row["state_json"])
        timing = lifecycle.Timing(rule.for_days, rule.clear_days, rule.repeat_every_days)
        result = lifecycle.step(prev, ev.when, ev.clear, day, timing)
        new = result.state
        context = {n: computed[n].context for n in sorted(rule.names)
                   if n in computed and computed[n].context}
        if result.event:
            silenced_by = silences.matching(active_silences, rule.name) if result.notify else None
            notified = bool(result.notify) and silenced_by is None
            events.append({
                "rule": rule.name, "date": day, "event": result.event,
                "from_state": prev.state, "to_state": new.state, "severity": rule.severity,
                "signal_values": dumps({"values": ev.values, "comparisons": ev.comparisons}),
                "silenced_by": silenced_by, "notified": int(notified),
            })
            if notified:
                items.append({
                    "rule": rule.name, "severity": rule.severity, "kind": result.notify,
                    "since": new.since if result.notify != "resolved" else prev.since,
                    "explain": rule.explain, "comparisons": ev.comparisons,
                    "values": ev.values, "context": context,
                })
        if new.state == lifecycle.FIRING:
            firing.append(rule.name)
        elif new.state == lifecycle.PENDING:
            pending.append(rule.name)
        alerts.save(db, {
            "rule": rule.name, "severity": rule.severity, "state": new.state,
            "state_json": new.to_json(), "prev_state_json": prev.to_json(),
            "last_evaluated": day, "since": new.since, "last_values": dumps(ev.values),
        })
    alerts.replace_events(db, day, events)

    payload = None
    key = digest_key(as_of)
    if items:
        payload = digest.build(day, items, firing, pending, {"count": count, "names": names})
        outbox.enqueue(db, key, "digest", day, dumps(payload))
    else:
        outbox.withdraw(db, key)

    changed = db.conn.total_changes - before
    if changed == 0 and runs.has_success(db, JOB, day):
        return CycleResult(as_of, "unchanged", 0, events, payload, values)
    detail = dumps({"observations": fetched, "signals": len(rows), "events": len(events),
                    "notifications": len(items)})
    runs.record(db, JOB, day, started, utc_now(), "ok", detail=detail)
    return CycleResult(as_of, "ok", changed, events, payload, values)
