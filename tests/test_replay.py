"""Replay: the same alert events as the live cycle, and no look-ahead."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from monitor.analysis.replay import replay
from monitor.calendar import TradingCalendar
from monitor.compute import compute_day, history
from monitor.daemon import Service
from monitor.sources.demo_source import DemoSource
from storage import observations
from storage.db import open_db
from tests.conftest import RecordingNotifier

START, END = dt.date(2018, 1, 2), dt.date(2019, 3, 29)
EVENT = "SELECT rule, date, event, from_state, to_state, severity, signal_values FROM alert_events " \
        "ORDER BY date, id"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The daemon's cycle run live, day by day, over the demo from START to END."""
    from monitor.config import load_config
    from tests.conftest import CLASSIC_CONFIG

    config = load_config(CLASSIC_CONFIG)
    path = tmp_path_factory.mktemp("live") / "live.db"
    service = Service(config, path, notifier=RecordingNotifier())
    for day in service.calendar.days(START, END):
        service.run_day(day)
    service.close()
    return config, path


def test_replay_produces_the_live_alert_events(live, tmp_path):
    config, path = live
    source = open_db(path)
    result = replay(source, config, START, END, tmp_path / "replay.db")
    assert result.days[0] == START and result.days[-1] == END
    live_events = source.execute(EVENT).fetchall()
    assert [e[2] for e in live_events].count("firing") >= 2
    assert result.db.execute(EVENT).fetchall() == live_events
    # the signal values and the episodes too
    # (rolling statistics over a longer frame may differ in the last bit: 1e-12 relative)
    sql = "SELECT signal, date, value, context FROM signal_values ORDER BY signal, date"
    got, want = result.db.execute(sql).fetchall(), source.execute(sql).fetchall()
    assert [(r[0], r[1], r[3]) for r in got] == [(r[0], r[1], r[3]) for r in want]
    assert [r[2] for r in got] == [pytest.approx(r[2], rel=1e-12, abs=1e-15) if r[2] is not None
                                   else None for r in want]
    sql = "SELECT kind, start, peak, trough, end, depth FROM episodes ORDER BY kind, start"
    assert result.db.execute(sql).fetchall() == source.execute(sql).fetchall()
    # the outbox payloads (the digests the daemon queued) and the alert states too
    sql = "SELECT dedup_key, kind, as_of, payload FROM outbox ORDER BY dedup_key"
    digests = source.execute(sql).fetchall()
    assert len(digests) >= 2 and result.db.execute(sql).fetchall() == digests
    sql = ("SELECT rule, severity, state, state_json, prev_state_json, last_evaluated, since, "
           "last_values FROM alerts ORDER BY rule")
    got, want = result.db.execute(sql).fetchall(), source.execute(sql).fetchall()
    assert [r[:-1] for r in got] == [r[:-1] for r in want]
    for g, w in zip(got, want, strict=True):  # the values read last: as the signal values above
        w_values = json.loads(w[-1])
        assert json.loads(g[-1]) == {k: pytest.approx(v, rel=1e-12, abs=1e-15) if v is not None
                                     else None for k, v in w_values.items()}
    # nothing was delivered: the scratch outbox holds the digests, unsent
    assert result.db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0] == 0


def test_history_equals_the_day_by_day_computation(live):
    """The vectorised pass (with lagged fund data and the regime model) equals compute_day."""
    config, path = live
    db = open_db(path)
    cal = TradingCalendar()
    days = cal.days(dt.date(2019, 1, 2), END)
    values, contexts = history(db, cal, days[0], days[-1], config.signal_params())
    # not vacuous: the credit spread is computed on every day (a replay of a source whose writes
    # were never committed reads an empty database, NaN everywhere: that is not this)
    assert values["credit.spread_bp"].notna().all()
    for day in days[::7]:
        daily = compute_day(db, cal, day, config.signal_params())
        for name, sv in daily.items():
            got = values.at[pd.Timestamp(day), name]
            assert (sv.value is None and pd.isna(got)) or got == pytest.approx(sv.value, rel=1e-12,
                                                                                abs=1e-15), (name, day)


def test_no_look_ahead_data_after_d_changes_nothing_up_to_d(tmp_path, default_config):
    """A replay's results for days up to D do not change when data after D is added."""
    d = dt.date(2018, 11, 30)
    rows = DemoSource(default_config.source.demo_seed).fetch(END, None).rows
    short, full = open_db(tmp_path / "short.db"), open_db(tmp_path / "full.db")
    with short.atomic():
        observations.upsert(short, [r for r in rows if r[3] <= d.isoformat()])
    with full.atomic():
        observations.upsert(full, rows)
    a = replay(short, default_config, START, d, tmp_path / "a.db")
    b = replay(full, default_config, START, END, tmp_path / "b.db")
    upto = [e for e in b.events if e["date"] <= d.isoformat()]
    strip = [{k: e[k] for k in ("rule", "date", "event", "to_state", "signal_values")} for e in upto]
    assert strip == [{k: e[k] for k in ("rule", "date", "event", "to_state", "signal_values")}
                     for e in a.events]
    assert len(upto) > 10
    sql = "SELECT signal, date, value FROM signal_values WHERE date <= ? ORDER BY signal, date"
    got = a.db.execute(sql, [d.isoformat()]).fetchall()
    want = b.db.execute(sql, [d.isoformat()]).fetchall()
    assert [r[:2] for r in got] == [r[:2] for r in want]
    assert [r[2] for r in got] == [pytest.approx(r[2], rel=1e-12, abs=1e-15) if r[2] is not None
                                   else None for r in want]




def test_stale_data_days_read_once_equal_the_daily_query(live):
    """The replay reads the required series' observation days once (``run_constants``); the
    data_stale alert's latest days from them equal the daily SQL query's, on every day."""
    from monitor.alerting import data_stale
    from monitor.cycle import run_constants

    config, path = live
    db = open_db(path)
    constants = run_constants(db, config)
    assert constants.required and len(constants.rules) == len(config.rules)
    cal = TradingCalendar()
    for day in cal.days(START, END)[::5]:
        iso = day.isoformat()
        for first in (cal.window_start(day, data_stale.lookback_days(config) + 1).isoformat(), ""):
            want = observations.latest_dates(db, list(constants.required), first, iso)
            got = {k: data_stale.latest_known(*constants.observed[k], first, iso)
                   for k in constants.required}
            assert got == want, (day, first)
    # late and revised values: available after their date
    days, avail = ["2020-01-02", "2020-01-03", "2020-01-06"], ["2020-01-02", "2020-01-08", "2020-01-06"]
    assert data_stale.latest_known(days, avail, "2020-01-01", "2020-01-06") == "2020-01-06"
    assert data_stale.latest_known(days, avail, "2020-01-01", "2020-01-05") == "2020-01-02"
    assert data_stale.latest_known(days, avail, "2020-01-03", "2020-01-05") is None
    assert data_stale.latest_known(days, avail, "", "2020-01-01") is None
