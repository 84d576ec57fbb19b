"""The daily cycle on a real SQLite file: idempotent, atomic, point-in-time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from monitor import cli
from monitor.config import load_config
from monitor.cycle import CycleError, digest_key, run_cycle
from monitor.daemon import Service
from monitor.delivery import digest
from monitor.sources.base import Fetched
from storage import alerts as alert_store
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, RecordingNotifier, table_snapshot

FIRST = dt.date(2018, 1, 2)
FIRE_DAY = dt.date(2018, 3, 29)  # the demo's micro-cap drawdown alert fires on this day
# the fixed classic rule set (conftest.classic_config: microcap_drawdown critical, reminded every 5
# days), not the changing default

@pytest.fixture(scope="module")
def prepared(tmp_path_factory, request) -> Path:
    """A database with the demo scenario run day by day up to the day before FIRE_DAY."""
    path = tmp_path_factory.mktemp("cycle") / "base.db"
    service = Service(load_config(CLASSIC_CONFIG), path, notifier=RecordingNotifier())
    for day in service.calendar.days(FIRST, service.calendar.previous(FIRE_DAY)):
        service.run_day(day)
    service.close()
    return path


@pytest.fixture
def service(prepared, tmp_path, classic_config):
    path = tmp_path / "history.db"
    shutil.copy(prepared, path)
    s = Service(classic_config, path, notifier=RecordingNotifier())
    yield s
    s.close()


def test_cycle_fires_stores_and_queues_in_one_go(service):
    result = service.run_day(FIRE_DAY)
    assert result.status == "ok"
    fired = [e for e in result.events if e["event"] == "firing"]
    assert [e["rule"] for e in fired] == ["microcap_drawdown"]
    values = json.loads(fired[0]["signal_values"])
    assert values["values"]["microcap.drawdown"] <= -0.10
    assert values["comparisons"][0] == {
        "signal": "microcap.drawdown", "value": values["values"]["microcap.drawdown"],
        "op": "<=", "threshold": -0.1, "threshold_signal": None, "holds": True}
    db = service.db
    row = db.execute("SELECT kind, payload, sent_at FROM outbox WHERE dedup_key = ?",
                     [digest_key(FIRE_DAY)]).fetchone()
    assert row[0] == "digest" and row[2] is None
    payload = json.loads(row[1])
    assert payload["counts"]["new"] == 1
    assert payload["items"][0]["rule"] == "microcap_drawdown"
    assert alert_store.get_all(db)["microcap_drawdown"]["state"] == "firing"
    # delivery marks it sent; a second delivery sends nothing
    assert service.deliver() == 1
    assert service.deliver() == 0
    assert len(service.notifier.sent) == 1


def test_running_the_same_day_twice_changes_nothing(service):
    first = service.run_day(FIRE_DAY)
    assert first.changed > 0
    before = table_snapshot(service.db)
    second = service.run_day(FIRE_DAY)
    assert second.status == "unchanged" and second.changed == 0
    assert table_snapshot(service.db) == before
    assert service.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


def test_once_cli_twice_for_the_same_day(prepared, tmp_path, capsys):
    path = tmp_path / "cli.db"
    shutil.copy(prepared, path)
    args = ["--config", str(CLASSIC_CONFIG), "--db", str(path), "once", "--as-of",
            FIRE_DAY.isoformat()]
    assert cli.main(args) == 0
    db = open_db(path)
    before = table_snapshot(db)
    queued = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert queued == 1
    out1 = capsys.readouterr().out
    assert "microcap_drawdown: pending -> firing" in out1 or "inactive -> firing" in out1
    assert cli.main(args) == 0
    out2 = capsys.readouterr().out
    assert "unchanged, 0 row(s) changed" in out2
    assert table_snapshot(db) == before
    # the digest was printed once (console notifier), not twice
    assert out1.count("regime-monitor 2018-03-29:") == 1
    assert "regime-monitor 2018-03-29:" not in out2


def test_a_cycle_failing_halfway_leaves_the_database_as_it_was(service, monkeypatch):
    db = service.db
    before = table_snapshot(db, exclude=("runs",))
    runs_before = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    calls = {"n": 0}
    real_save = alert_store.save

    def failing_save(db_, row):
        calls["n"] += 1
        if calls["n"] == 3:  # observations, signal values and two alerts already written
            raise RuntimeError("injected failure")
        return real_save(db_, row)

    monkeypatch.setattr("storage.alerts.save", failing_save)
    with pytest.raises(RuntimeError, match="injected failure"):
        service.run_day(FIRE_DAY)
    assert calls["n"] == 3
    assert table_snapshot(db, exclude=("runs",)) == before
    rows = db.execute("SELECT status, error, as_of FROM runs ORDER BY id").fetchall()
    assert len(rows) == runs_before + 1
    assert rows[-1] == ("failed", "RuntimeError: injected failure", FIRE_DAY.isoformat())
    # and the next run succeeds from the untouched state
    monkeypatch.undo()
    assert service.run_day(FIRE_DAY).status == "ok"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_cycle_refuses_non_trading_days_and_going_backwards(service):
    with pytest.raises(CycleError, match="not an XSHG trading day"):
        service.run_day(dt.date(2018, 3, 31))  # a Saturday
    service.run_day(FIRE_DAY)
    with pytest.raises(CycleError, match="before the last evaluated day"):
        service.run_day(dt.date(2018, 3, 1))


def test_silence_mutes_notification_but_keeps_state(service):
    from storage import silences

    sid = silences.add(service.db, "microcap_drawdown", FIRE_DAY, "known, hedged")
    result = service.run_day(FIRE_DAY)
    event = next(e for e in result.events if e["event"] == "firing")
    assert event["silenced_by"] == sid and event["notified"] == 0
    assert alert_store.get_all(service.db)["microcap_drawdown"]["state"] == "firing"
    assert result.digest is None  # nothing else notified that day
    assert service.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_point_in_time_reads_ignore_data_not_yet_available(tmp_path, default_config):
    """A value whose available_at is after the cycle's day is invisible to that cycle."""
    from monitor.calendar import TradingCalendar
    from monitor.compute import compute_day
    from storage import observations

    db = open_db(tmp_path / "pit.db")
    cal = TradingCalendar()
    d1, d2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    with db.atomic():
        observations.upsert(db, [
            ("index.csi2000.amount", d1.isoformat(), 2e10, d1.isoformat(), "t"),
            ("index.all_a.amount", d1.isoformat(), 1e11, d1.isoformat(), "t"),
            # published a day late: the cycle of d1 must not see it
            ("index.csi2000.amount", d2.isoformat(), 3e10, d2.isoformat(), "t"),
            ("index.all_a.amount", d2.isoformat(), 1e11, "2024-01-04", "t"),
        ])
    params = default_config.signal_params()
    assert compute_day(db, cal, d1, params)["turnover.csi2000_share"].value == pytest.approx(0.2)
    assert compute_day(db, cal, d2, params)["turnover.csi2000_share"].value is None


def test_digest_withdrawn_when_a_rerun_no_longer_notifies(service, monkeypatch):
    service.run_day(FIRE_DAY)
    assert service.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    # revise the day's micro-cap close upwards: the alert no longer fires on a re-run
    service.db.execute("UPDATE observations SET value = value * 1.5 WHERE series = "
                       "'index.microcap.close' AND date = ?", [FIRE_DAY.isoformat()])
    service.db.conn.commit()
    result = run_cycle(service.db, service.config, FIRE_DAY, _NoFetch(), service.calendar)
    assert not [e for e in result.events if e["event"] == "firing"]
    assert service.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


class _NoFetch:
    name = "none"

    def fetch(self, as_of, since):
        return Fetched()


REMINDERS = (dt.date(2018, 4, 9), dt.date(2018, 4, 16))  # microcap_drawdown's 5-day reminders


def test_reminders_alone_send_no_digest_a_new_firing_sends_one(service):
    days = service.calendar.days(FIRE_DAY, REMINDERS[-1])
    results = {day: service.run_day(day) for day in days}
    notified = {day: [e for e in r.events if e["notified"]] for day, r in results.items()}
    # the lifecycle still produces (and records) the reminders ...
    for day in REMINDERS:
        assert [(e["rule"], e["event"]) for e in notified[day]] == [("microcap_drawdown", "repeat")]
    # ... but only the day with a new firing queues a digest: one in the whole stretch
    keys = [k for (k,) in service.db.execute("SELECT dedup_key FROM outbox ORDER BY as_of")]
    assert keys == [digest_key(FIRE_DAY)]
    for day, items in notified.items():
        assert (results[day].digest is not None) == digest.should_send(
            [{"rule": e["rule"], "severity": e["severity"], "kind": e["event"]} for e in items],
            False), day
    assert service.deliver() == 1 and len(service.notifier.sent) == 1


def test_weekly_summary_lists_every_firing_alert(prepared, tmp_path, classic_config):
    notify = classic_config.notify.model_copy(update={"weekly_summary": True})
    config = classic_config.model_copy(update={"notify": notify})
    path = tmp_path / "weekly.db"
    shutil.copy(prepared, path)
    s = Service(config, path, notifier=RecordingNotifier())
    try:
        for day in s.calendar.days(FIRE_DAY, REMINDERS[-1]):
            s.run_day(day)
        rows = s.db.execute("SELECT as_of, payload FROM outbox ORDER BY as_of").fetchall()
    finally:
        s.close()
    # the day it fired, then the last trading day of each week (2018-04-04: Qingming follows)
    assert [d for d, _ in rows] == ["2018-03-29", "2018-03-30", "2018-04-04", "2018-04-13"]
    payloads = {d: json.loads(p) for d, p in rows}
    assert payloads["2018-03-29"]["summary"] is False
    for day in ("2018-03-30", "2018-04-04", "2018-04-13"):
        p = payloads[day]
        assert p["summary"] is True
        assert {"rule": "microcap_drawdown", "severity": "critical",
                "since": "2018-03-29"} in p["active"]
        assert digest.headline(p).startswith(f"regime-monitor {day}: Weekly summary")


def test_the_digest_microcap_block_reads_the_days_that_decide_it(tmp_path):
    """cycle.microcap_state passes the pure digest.microcap_state only the last close and the days
    of the highest one: the same block as from every close known on the day, equal highs included
    (the digest picks the latest of them), a late close left out until it is known."""
    from monitor.calendar import TradingCalendar
    from monitor.cycle import microcap_state
    from storage import observations

    db = open_db(tmp_path / "mc.db")
    cal = TradingCalendar()
    days = cal.days(dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    closes = [100.0, 120.0, 90.0, 120.0, 110.0, 120.0, 95.0] + [100.0 + i for i in range(len(days) - 7)]
    late = days[-3]  # its close is published two days later
    rows = [("index.microcap.close", d.isoformat(), v,
             (days[-1] if d == late else d).isoformat(), "test") for d, v in zip(days, closes, strict=True)]
    with db.atomic():
        observations.upsert(db, rows)
    for as_of in (days[6], days[-3], days[-2], days[-1]):
        known = [(d, v) for d, v, a in ((r[1], r[2], r[3]) for r in rows) if a <= as_of.isoformat()
                 and d <= as_of.isoformat()]
        assert microcap_state(db, as_of, cal) == digest.microcap_state(known), as_of
    assert microcap_state(db, days[6], cal)["peak"] == days[5].isoformat()  # the latest of the highs
    assert microcap_state(db, days[-3], cal)["date"] == days[-4].isoformat()  # the late close unknown
    assert microcap_state(db, dt.date(2023, 12, 29), cal) is None
