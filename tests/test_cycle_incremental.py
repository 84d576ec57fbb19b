"""The daily cycle's state kept between cycles equals the full computation (issue 15, goal 4).

``storage.observations.load_frame_cached`` keeps, per connection, the observations it read as
known on a day and extends them to the next day (the new day's rows, and the cells a late value or
a revision reached in between) instead of reading ten years again. Every read must be the frame
``load_frame`` gives at that moment - through late values, revisions with ``available_at``,
backdated imports, deletes, raw SQL, another connection's writes and rolled-back transactions -
and must actually have come from the kept values where nothing invalidated them (the counts of
``kept_reads``), so that the comparison is not vacuous. At the cycle level, consecutive cycles on
one connection (the kept state) store exactly what cycles on fresh connections (everything read
afresh) store: signal values, alerts, events, episodes and the outbox.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.calendar import TradingCalendar
from monitor.config import SourceConfig, load_config
from monitor.cycle import run_cycle
from monitor.sources import CsvSource
from storage import observations
from storage.db import immediate, open_db
from tests.conftest import DEFAULT_CONFIG, table_snapshot

CAL = TradingCalendar()
SERIES = ["s.a", "s.b", "s.c"]
DAYS = CAL.days(dt.date(2024, 1, 2), dt.date(2024, 7, 31))
HOLE = DAYS[50]  # s.c has no value that day until one is published late


def _rows(rng: np.random.Generator, series: list[str], days: list[dt.date], late_every: int = 0,
          source: str = "t") -> list[tuple]:
    rows = []
    for name in series:
        for i, d in enumerate(days):
            avail = d if not late_every or i % late_every else CAL.days(d, d + dt.timedelta(10))[3]
            rows.append((name, d.isoformat(), float(rng.normal(100, 5)), avail.isoformat(), source))
    return rows


def _build(path: Path, seed: int = 1) -> None:
    db = open_db(path)
    with db.atomic():
        observations.upsert(db, _rows(np.random.default_rng(seed), SERIES, DAYS, late_every=17))
        db.execute("DELETE FROM observations WHERE series = 's.c' AND date = ?",  # a hole
                   [HOLE.isoformat()])
    db.close()


def _check(db, series, days, as_of, starts=None) -> None:
    want = observations.load_frame(db, series, days, as_of, starts)
    got = observations.load_frame_cached(db, series, days, as_of, starts)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def _reads(db) -> tuple[int, int]:
    info = observations.kept_reads(db)
    return (0, 0) if info is None else (info["full"], info["kept"])


def _day_reads(db, day: dt.date) -> None:
    """What a cycle reads on ``day``: every series over a long window with per-series starts,
    then one series from a later day (the episodes), as known on ``day``."""
    days = CAL.days(DAYS[0], day)
    _check(db, SERIES, days, day, {"s.b": days[max(0, len(days) - 20)]})
    _check(db, ["s.a"], days[len(days) // 2:], day)


def test_kept_reads_equal_fresh_reads_through_revisions_imports_and_other_writers(tmp_path,
                                                                                  monkeypatch):
    """Forty consecutive days on one connection; between them a revision known later, a late
    value, a backdated import, a new series, a delete, a raw UPDATE, another connection's write,
    a rolled-back transaction and an import too large to patch. Each read equals load_frame's;
    the cells written on the connection are read again, and only the other connection's commit,
    the rollback and the large import make it read everything afresh."""
    monkeypatch.setattr(observations, "MAX_CELLS", 100)
    path = tmp_path / "obs.db"
    _build(path)
    db = open_db(path)
    run = DAYS[60:100]
    expected_full = 1
    for k, day in enumerate(run):
        nxt = run[k + 1] if k + 1 < len(run) else day
        _day_reads(db, day)
        assert _reads(db)[0] == expected_full, (k, day)
        if k == 3:  # a revision known from the next day (the earlier value kept in revisions)
            observations.upsert(db, [("s.a", DAYS[40].isoformat(), 1.5, DAYS[40].isoformat(), "r")],
                                revised_from=nxt.isoformat())
        elif k == 6:  # a late value of an earlier day, published the next day, and a delete of
            # a row not known yet
            db.execute("DELETE FROM observations WHERE series = 's.c' AND date = ? ",
                       [run[k + 5].isoformat()])
            db.conn.commit()
            observations.upsert(db, [("s.c", HOLE.isoformat(), 2.5, nxt.isoformat(), "late")])
        elif k == 9:  # a backdated import (history rewritten as always known)
            observations.upsert(db, [("s.b", d.isoformat(), 7.0, d.isoformat(), "import")
                                     for d in DAYS[10:15]])
        elif k == 12:  # a new series imported with its history (read when first asked for)
            observations.upsert(db, _rows(np.random.default_rng(3), ["s.d"], DAYS[:80]))
            _check(db, ["s.d", "s.a"], CAL.days(DAYS[0], day), day)
        elif k == 15:  # a raw delete of a known value
            db.execute("DELETE FROM observations WHERE series = 's.a' AND date = ?",
                       [DAYS[30].isoformat()])
            db.conn.commit()
        elif k == 18:  # a raw UPDATE making a known value late (no revision kept)
            db.execute("UPDATE observations SET available_at = ? WHERE series = 's.b' AND date = ?",
                       [nxt.isoformat(), day.isoformat()])
            db.conn.commit()
        elif k == 21:  # another connection writes (even a value not known yet): read afresh
            other = open_db(path)
            observations.upsert(other, [("s.c", day.isoformat(), 9.0, nxt.isoformat(), "other")],
                                revised_from=nxt.isoformat())
            other.conn.commit()
            other.close()
            expected_full += 1
        elif k == 24:  # a read inside a transaction that rolls back: the kept values went with it
            with pytest.raises(RuntimeError), immediate(db):
                observations.upsert(db, [("s.a", nxt.isoformat(), 3.0, nxt.isoformat(), "x")])
                _day_reads(db, nxt)
                raise RuntimeError("rolled back")
            expected_full += 1
        elif k == 27:  # an earlier day's read: read afresh without touching what is kept
            _check(db, SERIES, CAL.days(DAYS[0], run[k - 5]), run[k - 5])
        elif k == 30:  # more cells written than MAX_CELLS: read afresh
            observations.upsert(db, [("s.a", d.isoformat(), 8.0, d.isoformat(), "big")
                                     for d in DAYS[:110]])
            assert len(observations._TOUCHED[db]) == observations.MAX_CELLS + 1  # bounded
            expected_full += 1
        if db.conn.in_transaction:  # the driver's implicit transaction of an upsert
            db.conn.commit()
    info = observations.kept_reads(db)
    assert info is not None and info["full"] == expected_full == 4
    assert info["kept"] >= 2 * len(run) - 2 * expected_full  # the other reads were kept values
    assert info["cells"] >= 10  # cells written or published late were read again
    db.close()


def test_kept_reads_within_a_cycle_transaction_see_its_own_new_rows(tmp_path):
    """The day's rows written in the cycle's transaction (available that day) extend the kept
    values; a revision written there too (a value revised from that day) is read as known."""
    path = tmp_path / "obs.db"
    _build(path)
    db = open_db(path)
    day, nxt = DAYS[100], DAYS[101]
    db.execute("DELETE FROM observations WHERE date >= ?", [nxt.isoformat()])
    db.conn.commit()
    _day_reads(db, day)
    with immediate(db):
        observations.upsert(db, [(s, nxt.isoformat(), 50.0, nxt.isoformat(), "fetch") for s in SERIES]
                            + [("s.a", DAYS[90].isoformat(), 51.0, DAYS[90].isoformat(), "fetch")],
                            revised_from=nxt.isoformat())
        _day_reads(db, nxt)
    _day_reads(db, nxt)
    assert _reads(db) == (1, 5)
    db.close()


OPS = st.lists(st.tuples(st.sampled_from(["advance", "late", "revise", "backdate", "delete",
                                          "other", "rollback", "window"]),
                         st.integers(0, 10_000)), min_size=4, max_size=14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_kept_reads_equal_fresh_reads_for_any_sequence_of_writes(ops):
    """Random sequences of days and writes: every read equals load_frame's."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obs.db"
        _build(path, seed=5)
        db = open_db(path)
        rng = np.random.default_rng(len(ops))
        i = 70
        for op, n in ops:
            day, nxt = DAYS[i], DAYS[i + 1]
            name, past = SERIES[n % 3], DAYS[n % i]
            if op == "advance":
                i += 1 + n % 3
            elif op == "late":  # a past value published on the next day
                observations.upsert(db, [(name, past.isoformat(), float(rng.normal()),
                                          nxt.isoformat(), "late")])
            elif op == "revise":
                observations.upsert(db, [(name, past.isoformat(), float(rng.normal()),
                                          past.isoformat(), "rev")], revised_from=nxt.isoformat())
            elif op == "backdate":
                observations.upsert(db, [(name, past.isoformat(), float(rng.normal()),
                                          past.isoformat(), "imp")])
            elif op == "delete":
                db.execute("DELETE FROM observations WHERE series = ? AND date = ?",
                           [name, past.isoformat()])
                db.conn.commit()
            elif op == "other":
                other = open_db(path)
                observations.upsert(other, [(name, nxt.isoformat(), 1.0, nxt.isoformat(), "o")])
                other.conn.commit()
                other.close()
            elif op == "rollback":
                with pytest.raises(RuntimeError), immediate(db):
                    observations.upsert(db, [(name, past.isoformat(), 2.0, past.isoformat(), "x")])
                    _day_reads(db, day)
                    raise RuntimeError("rolled back")
            elif op == "window":
                days = CAL.days(DAYS[n % i], day)
                _check(db, [name, "s.a"], days, day, {name: days[-1]})
            if db.conn.in_transaction:
                db.conn.commit()
            _day_reads(db, DAYS[i])
        db.close()


# --- the cycle: consecutive days on one connection vs a fresh connection every day -------------


def _config():
    return load_config(DEFAULT_CONFIG).model_copy(update={"source": SourceConfig(kind="csv")})


def test_consecutive_cycles_on_one_connection_equal_cycles_reading_afresh(demo_observations,
                                                                        tmp_path):
    """Fourteen daily cycles over the demo data, with a revision, a late value and a backdated
    import between them: one connection throughout (the kept state) and a fresh connection every
    day store the same signal values, alerts, events, episodes and outbox, and the kept state
    served the reads."""
    config = _config()
    end = dt.date.fromisoformat(observations.date_range(open_db(demo_observations),
                                                        "index.microcap.close")[1])
    days = CAL.days(end - dt.timedelta(days=26), end)[-14:]
    base = tmp_path / "base.db"
    shutil.copy(demo_observations, base)
    db = open_db(base)
    future = [d.isoformat() for d in days]
    db.execute(f"DELETE FROM observations WHERE date IN ({','.join('?' * len(future))})", future)
    db.conn.commit()
    run_cycle(db, config, CAL.previous(days[0]), CsvSource(), CAL)  # fits made once, for both
    db.close()
    source = open_db(demo_observations)
    todays = {d: [(s, dd, v, a, src) for s, dd, v, a, src in source.execute(
        "SELECT series, date, value, available_at, source FROM observations WHERE date = ?",
        [d.isoformat()]).fetchall()] for d in days}
    source.close()
    kept, fresh = tmp_path / "kept.db", tmp_path / "fresh.db"
    shutil.copy(base, kept)
    shutil.copy(base, fresh)
    one = open_db(kept)

    def between(db, k: int, day: dt.date) -> None:
        """The day's data arrives (an import before the cycle), and the events of the test."""
        rows = list(todays[day])
        if k == 4:  # a revised micro-cap close of 30 days ago, known from today
            rows.append(("index.microcap.close", CAL.days(day - dt.timedelta(45), day)[0].isoformat(),
                         1234.5, day.isoformat(), "revision"))
        if k == 7:  # a CSI 300 close published late (for yesterday, today)
            rows.append(("index.csi300.close", CAL.previous(day).isoformat(), 4321.0,
                         day.isoformat(), "late"))
        observations.upsert(db, rows, revised_from=day.isoformat())
        if k == 10:  # a backdated import: a week of All-A closes rewritten as always known
            past = CAL.days(day - dt.timedelta(60), day - dt.timedelta(50))
            observations.upsert(db, [("index.all_a.close", d.isoformat(), 5000.0 + i,
                                      d.isoformat(), "import") for i, d in enumerate(past)])
        db.conn.commit()

    for k, day in enumerate(days):
        between(one, k, day)
        run_cycle(one, config, day, CsvSource(), CAL)
        each = open_db(fresh)
        between(each, k, day)
        run_cycle(each, config, day, CsvSource(), CAL)
        each.close()
    info = observations.kept_reads(one)
    # read afresh on the first day only; the revision, the late value and the import are cells
    assert info is not None and info["full"] == 1 and info["kept"] >= 2 * len(days), info
    assert info["cells"] >= 8, info
    inputs = ("runs", "observations", "observation_revisions")  # written alike, with timestamps
    other = open_db(fresh)
    a, b = table_snapshot(one, exclude=inputs), table_snapshot(other, exclude=inputs)
    outbox = "SELECT dedup_key, kind, as_of, payload FROM outbox ORDER BY dedup_key"
    assert one.execute(outbox).fetchall() == other.execute(outbox).fetchall()
    one.close()
    other.close()
    assert a.keys() == b.keys()
    stored = a["signal_values"]
    assert sum(1 for r in stored if r[1] == days[-1].isoformat() and r[2] is not None) > 20
    assert len({r[1] for r in a["episodes"]}) >= 1
    for name in a:
        if name != "outbox":
            assert a[name] == b[name], name


def test_kept_state_is_per_connection(tmp_path):
    """A second connection to the same file starts with nothing kept and reads afresh."""
    path = tmp_path / "obs.db"
    _build(path)
    first = open_db(path)
    _day_reads(first, DAYS[80])
    second = open_db(path)
    assert observations.kept_reads(second) is None
    _day_reads(second, DAYS[80])
    assert _reads(second) == (1, 1)
    assert _reads(first) == (1, 1)
    first.close()
    second.close()


def test_day_lookups_are_kept_per_list_of_days_not_per_span():
    """Two calendars' day lists with the same first and last day and length (one closes a day the
    other opens) get their own positions and index: the kept lookups compare the days."""
    days = CAL.days(dt.date(2024, 3, 1), dt.date(2024, 3, 29))
    other = sorted(days[:5] + days[6:] + [dt.date(2024, 3, 9)])  # a Saturday, not March 8
    assert len(other) == len(days) and other[0] == days[0] and other[-1] == days[-1]
    a, b = observations.day_positions(days), observations.day_positions(other)
    assert a["2024-03-08"] == 5 and "2024-03-08" not in b and b["2024-03-09"] == 5
    assert list(observations.day_index(other)) == list(pd.to_datetime(other))
    assert observations.day_index(days).equals(pd.DatetimeIndex(pd.to_datetime(days), name="date"))


def test_kept_reads_with_a_series_asked_twice(tmp_path):
    """A caller naming a series twice gets it twice, and a late value reaches both columns."""
    path = tmp_path / "obs.db"
    _build(path)
    db = open_db(path)
    day = DAYS[60]
    days = CAL.days(DAYS[0], day)
    _check(db, ["s.a", "s.a", "s.b"], days, day, {"s.a": days[-5]})
    observations.upsert(db, [("s.a", DAYS[58].isoformat(), 4.5, DAYS[61].isoformat(), "late")],
                        revised_from=DAYS[61].isoformat())
    db.conn.commit()
    for d in DAYS[61:64]:
        _check(db, ["s.a", "s.b", "s.a"], CAL.days(DAYS[0], d), d)
    assert _reads(db) == (1, 3)
    db.close()


def test_kept_reads_after_the_table_is_dropped_and_created_again(tmp_path):
    """This connection drops ``observations`` and creates it again (the TEMP triggers go with
    it) and writes other values: the next read is afresh, and equal."""
    path = tmp_path / "obs.db"
    _build(path)
    db = open_db(path)
    day = DAYS[60]
    _day_reads(db, day)
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'observations'").fetchone()[0]
    db.conn.execute("ALTER TABLE observations RENAME TO old_observations")
    db.conn.execute(sql)
    db.conn.execute("INSERT INTO observations SELECT series, date, value * 2, available_at, "
                    "source, imported_at FROM old_observations")
    db.conn.commit()
    _day_reads(db, day)
    assert _reads(db)[0] == 2
    db.close()


def test_another_connections_commit_during_a_read_is_not_kept_as_known(tmp_path, monkeypatch):
    """Another connection (an ``import-csv`` beside the daemon) commits a changed value while this
    connection is still reading series one by one, after the changed series was read: the next
    read must see the new value (read afresh), not keep the one read before the commit."""
    path = tmp_path / "obs.db"
    _build(path)
    db, other = open_db(path), open_db(path)
    day = DAYS[60]
    days = CAL.days(DAYS[0], day)
    read, done = observations._read_values, []

    def read_then_commit(*args, **kwargs):
        out = read(*args, **kwargs)
        if not done:  # the first read of the call; the other connection commits right after it
            done.append(1)
            other.execute("UPDATE observations SET value = -1.0 WHERE series = 's.a' AND date = ?",
                          [DAYS[10].isoformat()])
            other.conn.commit()
        return out

    monkeypatch.setattr(observations, "_read_values", read_then_commit)
    observations.load_frame_cached(db, SERIES, days, day)
    monkeypatch.undo()
    _check(db, SERIES, days, day)
    assert observations.load_frame(db, ["s.a"], days, day)["s.a"].iloc[10] == -1.0
    db.close()
    other.close()
