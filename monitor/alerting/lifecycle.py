"""The alert lifecycle, counted in trading days (one evaluation per trading day).

inactive -> pending (condition true, fewer than ``for_days``) -> firing (notify) -> resolved
(clear condition held ``clear_days``; notify). A firing alert re-notifies every
``repeat_every_days``. When the condition cannot be evaluated (missing data) a non-firing alert is
in state ``no_data``; a firing alert stays firing and missing data never counts towards clearing.

``step`` is a pure function: the previous state and today's evaluation in, the new state, the
event (if any) and the notification (if any) out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache

INACTIVE, PENDING, FIRING, RESOLVED, NO_DATA = "inactive", "pending", "firing", "resolved", "no_data"
STATES = (INACTIVE, PENDING, FIRING, RESOLVED, NO_DATA)


@dataclass(frozen=True)
class Timing:
    """A rule's counting parameters, in trading days (``repeat_every_days`` 0 = never)."""

    for_days: int = 1
    clear_days: int = 1
    repeat_every_days: int = 0

    @classmethod
    def of(cls, rule) -> Timing:
        """The timing of ``rule`` (anything with ``for_days``, ``clear_days`` and
        ``repeat_every_days``, e.g. a ``RuleConfig``)."""
        return cls(rule.for_days, rule.clear_days, rule.repeat_every_days)


@dataclass(frozen=True)
class AlertState:
    """Where one rule's alert stands after an evaluation."""

    state: str = INACTIVE
    since: str | None = None  # ISO trading day the current state began
    true_count: int = 0  # consecutive trading days the condition held (pending)
    clear_count: int = 0  # consecutive trading days the clear condition held (firing)
    since_notified: int = 0  # trading days since the last notification (firing)

    def to_json(self) -> str:
        return _state_json(self)

    @classmethod
    def from_json(cls, text: str | None) -> AlertState:
        return _parse_state(text)


@lru_cache(maxsize=4096)
def _state_json(state: AlertState) -> str:
    """``state`` as JSON (sorted keys). Cached: a replay writes each rule's state every day, and
    states repeat; the fields are plain values, so their dict is what ``asdict`` (a deep copy,
    slow) returns."""
    return json.dumps(vars(state), sort_keys=True)


@lru_cache(maxsize=4096)
def _parse_state(text: str | None) -> AlertState:
    """The state stored as ``text`` (``AlertState()`` for None or ""). Cached: it is immutable."""
    return AlertState(**json.loads(text)) if text else AlertState()


@dataclass(frozen=True)
class Step:
    """The outcome of one evaluation: new state, event name (or None) and notification kind."""

    state: AlertState
    event: str | None = None  # pending | firing | repeat | resolved | cancelled | no_data | data_back
    notify: str | None = None  # firing | repeat | resolved


def step(prev: AlertState, when: bool | None, clear: bool | None, as_of: str, timing: Timing) -> Step:
    """Advance ``prev`` by one trading day.

    ``when`` is the rule's condition today (None = cannot be evaluated); ``clear`` the clear
    condition (the rule's ``clear_when``, or ``not when`` when it has none; None = unknown).
    """
    if prev.state == FIRING:
        return _step_firing(prev, when, clear, as_of, timing)
    if when is None:
        if prev.state == NO_DATA:
            return Step(prev)
        return Step(AlertState(NO_DATA, since=as_of), event="no_data")
    if when:
        count = prev.true_count + 1 if prev.state == PENDING else 1
        if count >= timing.for_days:
            return Step(AlertState(FIRING, since=as_of, true_count=count), "firing", "firing")
        if prev.state == PENDING:
            return Step(replace(prev, true_count=count))
        return Step(AlertState(PENDING, since=as_of, true_count=count), "pending")
    if prev.state == PENDING:
        return Step(AlertState(INACTIVE, since=as_of), "cancelled")
    if prev.state == NO_DATA:
        return Step(AlertState(INACTIVE, since=as_of), "data_back")
    return Step(prev)


def _step_firing(prev: AlertState, when: bool | None, clear: bool | None, as_of: str,
                 timing: Timing) -> Step:
    if when:
        clear_count = 0
    elif clear is None:
        clear_count = prev.clear_count  # unknown: neither counts nor breaks the streak
    elif clear:
        clear_count = prev.clear_count + 1
    else:
        clear_count = 0
    if clear_count >= timing.clear_days:
        return Step(AlertState(RESOLVED, since=as_of), "resolved", "resolved")
    since_notified = prev.since_notified + 1
    true_count = prev.true_count + 1 if when else prev.true_count
    if timing.repeat_every_days and since_notified >= timing.repeat_every_days:
        state = replace(prev, clear_count=clear_count, since_notified=0, true_count=true_count)
        return Step(state, "repeat", "repeat")
    return Step(replace(prev, clear_count=clear_count, since_notified=since_notified,
                        true_count=true_count))
