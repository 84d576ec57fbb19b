"""One rule's evaluation on one trading day -> its new alert state, event row and digest item (pure).

``advance`` is the one rule-to-event decision (Alertmanager's ``needsUpdate``): the daily cycle
(every configured rule and the built-in ``data_stale`` alert) and the backtest all call it. It
steps the lifecycle (:func:`monitor.alerting.lifecycle.step`), then

* records an event row for every lifecycle event (pending, firing, repeat, resolved, cancelled,
  no_data, data_back), with the values read and the comparisons as JSON, the silence that muted
  it (``silenced_by``) and whether it notified;
* makes a digest item for a notifying event (firing, repeat, resolved) unless an active silence
  covers the rule. A silence mutes the notification only: states and events are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from monitor.alerting.lifecycle import AlertState, Timing, step
from monitor.alerting.rules import Evaluation
from storage.silences import matching
from storage.util import dumps


class AlertRule(Protocol):
    """What ``advance`` reads of a rule (a ``RuleConfig``, or ``data_stale.RULE``)."""

    @property
    def name(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def explain(self) -> str: ...
    @property
    def for_days(self) -> int: ...
    @property
    def clear_days(self) -> int: ...
    @property
    def repeat_every_days(self) -> int: ...


class Advanced(NamedTuple):
    """The outcome of one rule on one day: unpack as ``state, event, item``."""

    state: AlertState
    event: dict | None  # an ``alert_events`` row (``storage.alerts.replace_events``), or None
    item: dict | None  # a digest item (``monitor.delivery.digest.build``), or None


def starting_state(row: Mapping | None, day: str) -> AlertState:
    """Return the alert state a cycle for ``day`` starts from, given the stored ``alerts`` row:
    the stored state, or - when ``day`` is being re-run - the state before it (so a re-run
    advances nothing twice); ``AlertState()`` without a row."""
    if row is None:
        return AlertState()
    if row["last_evaluated"] == day:
        return AlertState.from_json(row["prev_state_json"])
    return AlertState.from_json(row["state_json"])


def advance(rule: AlertRule, evaluation: Evaluation, previous: AlertState, day: str, *,
            silences: Sequence[Mapping] = (), context: Mapping | None = None,
            timing: Timing | None = None) -> Advanced:
    """Advance ``rule`` from ``previous`` by trading day ``day`` (ISO) given its ``evaluation``.

    ``silences``: the silences in force on ``day`` (``storage.silences.active_on`` rows); the
    first covering the rule mutes a notifying event (``silenced_by`` = its id, no item).
    ``context``: the signal contexts shown under the alert (digest item ``context``).
    ``timing``: defaults to ``Timing.of(rule)``.

    Returns ``(state, event, item)``: the new state; the event row ``{rule, date, event,
    from_state, to_state, severity, signal_values (JSON: values, comparisons), silenced_by,
    notified (0/1)}`` or None when the lifecycle records no event; the digest item ``{rule,
    severity, kind (firing | repeat | resolved), since (the firing spell's start), explain,
    comparisons, values, context}`` or None when nothing is notified.
    """
    result = step(previous, evaluation.when, evaluation.clear, day,
                  timing if timing is not None else Timing.of(rule))
    new = result.state
    if not result.event:
        return Advanced(new, None, None)
    silenced_by = (matching([dict(s) for s in silences], rule.name)
                   if result.notify and silences else None)
    notified = bool(result.notify) and silenced_by is None
    event = {
        "rule": rule.name, "date": day, "event": result.event,
        "from_state": previous.state, "to_state": new.state, "severity": rule.severity,
        "signal_values": dumps({"values": evaluation.values,
                                "comparisons": evaluation.comparisons}),
        "silenced_by": silenced_by, "notified": int(notified),
    }
    if not notified:
        return Advanced(new, event, None)
    item = {
        "rule": rule.name, "severity": rule.severity, "kind": result.notify,
        "since": new.since if result.notify != "resolved" else previous.since,
        "explain": rule.explain, "comparisons": evaluation.comparisons,
        "values": evaluation.values, "context": dict(context or {}),
    }
    return Advanced(new, event, item)
