"""The alert lifecycle as a pure state machine: table-driven, day by day."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerting.lifecycle import (
    FIRING,
    INACTIVE,
    NO_DATA,
    PENDING,
    RESOLVED,
    STATES,
    AlertState,
    Timing,
    step,
)

T, F, N = True, False, None


def run(seq, timing, clears=None):
    """Run a sequence of `when` values (and optional clear values); return (states, events, notes)."""
    state = AlertState()
    states, events, notes = [], [], []
    for i, when in enumerate(seq):
        clear = clears[i] if clears is not None else (None if when is None else not when)
        r = step(state, when, clear, f"d{i:02d}", timing)
        state = r.state
        states.append(state.state)
        events.append(r.event)
        notes.append(r.notify)
    return states, events, notes


CASES = [
    # (name, when sequence, timing, expected states, expected notifications)
    ("fires after for_days", [T, T, T], Timing(for_days=3),
     [PENDING, PENDING, FIRING], [None, None, "firing"]),
    ("pending cancelled", [T, F, T], Timing(for_days=2),
     [PENDING, INACTIVE, PENDING], [None, None, None]),
    ("for_days 1 fires at once", [T], Timing(for_days=1), [FIRING], ["firing"]),
    ("resolves after clear_days", [T, F, F, F], Timing(for_days=1, clear_days=3),
     [FIRING, FIRING, FIRING, RESOLVED], ["firing", None, None, "resolved"]),
    ("clear streak broken by a true day", [T, F, T, F, F], Timing(clear_days=2),
     [FIRING, FIRING, FIRING, FIRING, RESOLVED], ["firing", None, None, None, "resolved"]),
    ("repeat every 2 days while firing", [T, T, T, T, T], Timing(repeat_every_days=2),
     [FIRING] * 5, ["firing", None, "repeat", None, "repeat"]),
    ("missing data never resolves a firing alert", [T, N, N, N, F], Timing(clear_days=1),
     [FIRING, FIRING, FIRING, FIRING, RESOLVED], ["firing", None, None, None, "resolved"]),
    ("no data is its own state", [N, N, F], Timing(), [NO_DATA, NO_DATA, INACTIVE],
     [None, None, None]),
    ("no data interrupts pending", [T, N, T, T], Timing(for_days=2),
     [PENDING, NO_DATA, PENDING, FIRING], [None, None, None, "firing"]),
    ("fires again after resolving", [T, F, T], Timing(), [FIRING, RESOLVED, FIRING],
     ["firing", "resolved", "firing"]),
]


@pytest.mark.parametrize("name,seq,timing,states,notes", CASES, ids=[c[0] for c in CASES])
def test_lifecycle_table(name, seq, timing, states, notes):
    got_states, _, got_notes = run(seq, timing)
    assert got_states == states
    assert got_notes == notes


def test_events_name_each_transition():
    _, events, _ = run([T, T, F, N, F, T, F], Timing(for_days=2, clear_days=1))
    assert events == ["pending", "firing", "resolved", "no_data", "data_back", "pending",
                      "cancelled"]


def test_clear_when_hysteresis_holds_firing_in_between():
    # when false but clear false (between the two thresholds): stays firing, streak resets
    seq = [T, F, F, F, F]
    clears = [F, F, T, T, F]
    states, _, notes = run(seq, Timing(clear_days=2), clears)
    assert states == [FIRING, FIRING, FIRING, RESOLVED, RESOLVED]
    assert notes == ["firing", None, None, "resolved", None]


def test_unknown_clear_neither_counts_nor_breaks():
    states, _, _ = run([T, F, F, F], Timing(clear_days=2), [F, T, N, T])
    assert states == [FIRING, FIRING, FIRING, RESOLVED]


def test_since_is_the_day_the_state_began():
    s = AlertState()
    s = step(s, T, F, "a", Timing(for_days=2)).state
    s = step(s, T, F, "b", Timing(for_days=2)).state
    assert (s.state, s.since) == (FIRING, "b")
    s = step(s, T, F, "c", Timing(for_days=2)).state
    assert s.since == "b"


def test_state_json_round_trip():
    s = AlertState(FIRING, "2024-01-02", 3, 1, 2)
    assert AlertState.from_json(s.to_json()) == s
    assert AlertState.from_json(None) == AlertState()


@given(st.lists(st.sampled_from([T, F, N]), max_size=60),
       st.integers(1, 4), st.integers(1, 4), st.integers(0, 4))
def test_invariants(seq, for_days, clear_days, repeat):
    timing = Timing(for_days, clear_days, repeat)
    state = AlertState()
    firing_run = 0
    for i, when in enumerate(seq):
        r = step(state, when, None if when is None else not when, str(i), timing)
        assert r.state.state in STATES
        # a notification always comes with an event, and only these three kinds exist
        assert r.notify in (None, "firing", "repeat", "resolved")
        if r.notify:
            assert r.event == r.notify
        # firing needs `for_days` consecutive true days
        if r.event == "firing":
            assert when is True
            assert r.state.true_count >= for_days
        # resolved only from firing, never on a day without data
        if r.event == "resolved":
            assert state.state == FIRING and when is False
        if r.event == "repeat":
            assert repeat > 0
        firing_run = firing_run + 1 if r.state.state == FIRING else 0
        state = r.state
