"""advance: one rule's evaluation on one day -> (state, event row, digest item), table-driven like
Alertmanager's needsUpdate tests. The cycle, the built-in data_stale alert and the backtest all
call it (tests/test_cycle.py, tests/test_data_quality.py, tests/test_backtest.py check them)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from monitor.alerting import data_stale
from monitor.alerting.advance import Advanced, advance, starting_state
from monitor.alerting.lifecycle import (
    FIRING,
    INACTIVE,
    NO_DATA,
    PENDING,
    RESOLVED,
    AlertState,
    Timing,
)
from monitor.alerting.rules import Evaluation
from tests.conftest import config_from

DAY = "2024-03-05"
BEFORE = "2024-03-01"
RULE = config_from("""
[[rules]]
name = "stress"
severity = "warning"
when = "market.return_20d <= -0.08"
explain = "The market fell."
""").rules[0]

COMPARISONS = [{"signal": "market.return_20d", "value": -0.1, "op": "<=", "threshold": -0.08,
                "threshold_signal": None, "holds": True}]
VALUES = {"market.return_20d": -0.1}
# evaluation of the day: holds (when true), clear (when false, clear true), unknown (missing data),
# neither (when false but a clear_when does not hold either)
EVAL = {"holds": (True, False), "clear": (False, True), "unknown": (None, None),
        "neither": (False, False)}
SILENCE = {"id": 7, "matcher": "stress", "until": "2024-03-31", "reason": "known",
           "created_at": "2024-03-01T00:00:00+00:00", "expired_at": None}

inactive = AlertState()
pending1 = AlertState(PENDING, since=BEFORE, true_count=1)
firing = AlertState(FIRING, since=BEFORE, true_count=3)
firing_due = AlertState(FIRING, since=BEFORE, true_count=3, since_notified=2)
firing_clearing = AlertState(FIRING, since=BEFORE, true_count=3, clear_count=1)
no_data = AlertState(NO_DATA, since=BEFORE)
resolved = AlertState(RESOLVED, since=BEFORE)

# (case, previous state, evaluation, timing, silenced?) -> (state, since, event, item kind)
CASES = [
    ("inactive, holds: fires", inactive, "holds", Timing(), False,
     FIRING, DAY, "firing", "firing"),
    ("inactive, holds, silenced: fires without notifying", inactive, "holds", Timing(), True,
     FIRING, DAY, "firing", None),
    ("inactive, holds, for_days 2: pending", inactive, "holds", Timing(for_days=2), False,
     PENDING, DAY, "pending", None),
    ("pending, holds again, for_days 2: fires", pending1, "holds", Timing(for_days=2), False,
     FIRING, DAY, "firing", "firing"),
    ("pending, holds, for_days 3: still pending, no event", pending1, "holds",
     Timing(for_days=3), False, PENDING, BEFORE, None, None),
    ("pending, clear: cancelled", pending1, "clear", Timing(for_days=2), False,
     INACTIVE, DAY, "cancelled", None),
    ("pending, unknown: no data", pending1, "unknown", Timing(for_days=2), False,
     NO_DATA, DAY, "no_data", None),
    ("inactive, clear: nothing", inactive, "clear", Timing(), False,
     INACTIVE, None, None, None),
    ("inactive, unknown: no data", inactive, "unknown", Timing(), False,
     NO_DATA, DAY, "no_data", None),
    ("no data, unknown: nothing new", no_data, "unknown", Timing(), False,
     NO_DATA, BEFORE, None, None),
    ("no data, clear: data back", no_data, "clear", Timing(), False,
     INACTIVE, DAY, "data_back", None),
    ("no data, holds: fires", no_data, "holds", Timing(), False,
     FIRING, DAY, "firing", "firing"),
    ("firing, clear: resolves", firing, "clear", Timing(), False,
     RESOLVED, DAY, "resolved", "resolved"),
    ("firing, clear, silenced: resolves without notifying", firing, "clear", Timing(), True,
     RESOLVED, DAY, "resolved", None),
    ("firing, clear, clear_days 2: first clear day", firing, "clear", Timing(clear_days=2), False,
     FIRING, BEFORE, None, None),
    ("firing, second clear day, clear_days 2: resolves", firing_clearing, "clear",
     Timing(clear_days=2), False, RESOLVED, DAY, "resolved", "resolved"),
    ("firing, unknown: missing data never resolves", firing, "unknown", Timing(), False,
     FIRING, BEFORE, None, None),
    ("firing, neither holds nor clears: stays firing", firing, "neither", Timing(), False,
     FIRING, BEFORE, None, None),
    ("firing, holds, repeat due: reminds", firing_due, "holds", Timing(repeat_every_days=3), False,
     FIRING, BEFORE, "repeat", "repeat"),
    ("firing, holds, repeat due, silenced: no reminder item", firing_due, "holds",
     Timing(repeat_every_days=3), True, FIRING, BEFORE, "repeat", None),
    ("firing, holds, never repeat: nothing", firing_due, "holds", Timing(), False,
     FIRING, BEFORE, None, None),
    ("resolved, holds: fires again", resolved, "holds", Timing(), False,
     FIRING, DAY, "firing", "firing"),
    ("resolved, clear: nothing", resolved, "clear", Timing(), False,
     RESOLVED, BEFORE, None, None),
]


def evaluation(kind: str) -> Evaluation:
    when, clear = EVAL[kind]
    return Evaluation("stress", when, clear, VALUES, COMPARISONS)


@pytest.mark.parametrize(("case", "prev", "ev", "timing", "silenced", "state", "since", "event",
                          "kind"), CASES, ids=[c[0] for c in CASES])
def test_advance_table(case, prev, ev, timing, silenced, state, since, event, kind):
    out = advance(RULE, evaluation(ev), prev, DAY, silences=[SILENCE] if silenced else [],
                  timing=timing)
    assert isinstance(out, Advanced)
    new, row, item = out
    assert (new.state, new.since) == (state, since)
    assert (row["event"] if row else None) == event
    assert (item["kind"] if item else None) == kind
    if row is not None:  # the event row: transition, silence and notification recorded
        assert row["from_state"] == prev.state and row["to_state"] == state
        assert row["silenced_by"] == (7 if silenced and event in ("firing", "repeat", "resolved")
                                      else None)
        assert row["notified"] == int(kind is not None)


def test_event_row_and_item_carry_the_evaluation():
    new, row, item = advance(RULE, evaluation("holds"), inactive, DAY,
                             context={"market.return_20d": "led by banks"})
    assert row == {"rule": "stress", "date": DAY, "event": "firing", "from_state": INACTIVE,
                   "to_state": FIRING, "severity": "warning",
                   "signal_values": row["signal_values"], "silenced_by": None, "notified": 1}
    assert json.loads(row["signal_values"]) == {"values": VALUES, "comparisons": COMPARISONS}
    assert item == {"rule": "stress", "severity": "warning", "kind": "firing", "since": DAY,
                    "explain": "The market fell.", "comparisons": COMPARISONS,
                    "values": VALUES, "context": {"market.return_20d": "led by banks"}}


def test_a_resolved_item_says_since_when_the_alert_had_fired():
    _, _, item = advance(RULE, evaluation("clear"), firing, DAY)
    assert item["kind"] == "resolved" and item["since"] == BEFORE


@pytest.mark.parametrize(("matcher", "muted"), [("stress", True), ("*", True), ("other", False)])
def test_only_a_silence_covering_the_rule_mutes_it(matcher, muted):
    _, row, item = advance(RULE, evaluation("holds"), inactive, DAY,
                           silences=[dict(SILENCE, matcher=matcher)])
    assert (item is None) == muted
    assert row["silenced_by"] == (7 if muted else None)


def test_timing_defaults_to_the_rules_own():
    rule = RULE.model_copy(update={"for_days": 2})
    assert Timing.of(rule) == Timing(2, 1, 0)
    new, row, _ = advance(rule, evaluation("holds"), inactive, DAY)
    assert new.state == PENDING and row["event"] == "pending"


def test_advance_is_pure():
    args = (RULE, evaluation("holds"), firing_due, DAY)
    kwargs = {"silences": [SILENCE], "timing": Timing(repeat_every_days=3)}
    assert advance(*args, **kwargs) == advance(*args, **kwargs)
    assert firing_due == AlertState(FIRING, since=BEFORE, true_count=3, since_notified=2)


@pytest.mark.parametrize(("row", "state"), [
    (None, AlertState()),
    ({"last_evaluated": BEFORE, "state_json": firing.to_json(), "prev_state_json": None}, firing),
    ({"last_evaluated": DAY, "state_json": firing.to_json(), "prev_state_json": pending1.to_json()},
     pending1),  # a re-run of the day starts from the state before it
])
def test_starting_state(row, state):
    assert starting_state(row, DAY) == state


# --------------------------------------------------------------------------- data_stale


@pytest.mark.parametrize(("ages", "holds", "shown"), [
    ({"a": 0, "b": 2}, False, ["a", "b"]),  # none stale: every series listed
    ({"a": 0, "b": 4}, True, ["b"]),  # older than 3 trading days: stale
    ({"a": 3, "b": None}, True, ["b"]),  # no value within the lookback: stale
])
def test_data_stale_evaluation(ages, holds, shown):
    ev = data_stale.evaluate(ages, 3)
    assert (ev.when, ev.clear) == (holds, not holds)
    assert [c["signal"] for c in ev.comparisons] == shown
    assert ev.values == {f"age_days.{k}": ages[k] for k in shown}


def test_data_stale_advances_like_a_rule_and_reminds_every_5_days():
    ev = data_stale.evaluate({"a": 9}, 3)
    state, row, item = advance(data_stale.RULE, ev, AlertState(), DAY)
    assert (state.state, row["event"], item["kind"]) == (FIRING, "firing", "firing")
    assert item["explain"] == data_stale.STALE_EXPLAIN and item["severity"] == "warning"
    for n in range(5):
        state, row, item = advance(data_stale.RULE, ev, state, f"2024-03-{6 + n:02d}")
    assert row["event"] == "repeat" and item["kind"] == "repeat"
    state, row, item = advance(data_stale.RULE, data_stale.evaluate({"a": 0}, 3), state,
                               "2024-03-12")
    assert (state.state, row["event"], item["kind"]) == (RESOLVED, "resolved", "resolved")


class _Calendar:
    def count_between(self, start: dt.date, end: dt.date) -> int:
        return (end - start).days


def test_data_stale_ages_in_trading_days():
    ages = data_stale.ages({"a": "2024-03-05", "b": "2024-03-01", "c": None},
                           dt.date(2024, 3, 5), _Calendar())  # type: ignore[arg-type]
    assert ages == {"a": 0, "b": 4, "c": None}
