"""Data-quality gates: the data_stale alert, fetch failures in `runs`, and no-data rules."""

from __future__ import annotations

import datetime as dt
import json

from monitor.calendar import TradingCalendar
from monitor.cycle import DATA_STALE, run_cycle
from monitor.sources.base import Fetched
from monitor.sources.demo_source import DemoSource
from storage import alerts
from storage.db import open_db

START = dt.date(2018, 1, 2)


class GappySource:
    """The demo data, except that some series stop arriving after ``cutoff`` and the fetch of
    them is reported as failed (as the live source does)."""

    name = "gappy"

    def __init__(self, seed: int, cutoff: dt.date, missing: set[str]):
        self.demo = DemoSource(seed)
        self.cutoff, self.missing = cutoff, missing

    def fetch(self, as_of, since):
        rows = self.demo.fetch(as_of, since).rows
        if as_of > self.cutoff:
            rows = [r for r in rows if r[0] not in self.missing]
            return Fetched(rows, {s: "timed out after 2 attempts" for s in sorted(self.missing)})
        return Fetched(rows)


def test_stale_series_raise_data_stale_and_runs_record_the_reason(tmp_path, default_config):
    db = open_db(tmp_path / "dq.db")
    cal = TradingCalendar()
    cutoff = dt.date(2018, 3, 1)
    source = GappySource(default_config.source.demo_seed, cutoff, {"index.all_a.amount"})
    days = cal.days(START, dt.date(2018, 3, 9))
    results = [run_cycle(db, default_config, d, source, cal) for d in days]
    by_day = dict(zip(days, results, strict=True))
    # 03-02 .. 03-06: 1..3 trading days old -> fine; 03-07: 4 > 3 -> data_stale fires
    assert by_day[dt.date(2018, 3, 6)].status == "partial"
    fired = [e for r in results for e in r.events if e["rule"] == DATA_STALE and e["event"] == "firing"]
    assert [e["date"] for e in fired] == ["2018-03-07"]
    values = json.loads(fired[0]["signal_values"])["values"]
    assert values == {"age_days.index.all_a.amount": 4}
    assert by_day[dt.date(2018, 3, 7)].digest["items"][0]["rule"] == DATA_STALE
    row = db.execute("SELECT status, error FROM runs WHERE as_of = '2018-03-07'").fetchone()
    assert row == ("partial", "index.all_a.amount: timed out after 2 attempts")
    # no value is invented for the missing day: the daily share is not computable
    assert by_day[dt.date(2018, 3, 7)].values["turnover.csi2000_share"] is None
    assert alerts.get_all(db)[DATA_STALE]["state"] == "firing"
    # the series comes back: data_stale resolves
    source.cutoff = dt.date(2099, 1, 1)
    result = run_cycle(db, default_config, dt.date(2018, 3, 12), source, cal)
    assert result.status == "ok"
    assert [e["event"] for e in result.events if e["rule"] == DATA_STALE] == ["resolved"]


def test_a_cycle_that_fetched_nothing_is_recorded_as_fetch_failed(tmp_path, default_config):
    db = open_db(tmp_path / "ff.db")
    cal = TradingCalendar()
    day = dt.date(2018, 1, 3)
    run_cycle(db, default_config, dt.date(2018, 1, 2), DemoSource(default_config.source.demo_seed), cal)

    class Down:
        name = "down"
        def fetch(self, as_of, since):
            return Fetched([], {"index.csi300": "connection refused", "yield.gov": "connection refused"})

    result = run_cycle(db, default_config, day, Down(), cal)
    assert result.status == "fetch_failed" and set(result.failures) == {"index.csi300", "yield.gov"}
    assert db.execute("SELECT status FROM runs WHERE as_of = ?", [day.isoformat()]).fetchone() == (
        "fetch_failed",)


def test_a_day_with_no_index_data_from_any_source_is_a_closed_day(tmp_path, default_config):
    """The live source cross-checks the calendar: every fetch succeeded, no index has the day ->
    the exchange was closed (a holiday the calendar missed), not a day of missing data."""
    db = open_db(tmp_path / "closed.db")
    cal = TradingCalendar()
    demo = DemoSource(default_config.source.demo_seed)

    class Live:
        name = "akshare"
        cross_checks_calendar = True
        failures: dict = {}

        def __init__(self, closed):
            self.closed = closed

        def fetch(self, as_of, since):
            return Fetched([r for r in demo.fetch(as_of, since).rows if r[1] != self.closed.isoformat()],
                           dict(self.failures))

    day1, day2 = dt.date(2018, 1, 2), dt.date(2018, 1, 3)
    run_cycle(db, default_config, day1, Live(dt.date(1900, 1, 1)), cal)
    result = run_cycle(db, default_config, day2, Live(day2), cal)
    assert result.status == "closed" and result.events == []
    assert db.execute("SELECT status, error FROM runs WHERE as_of = ?", [day2.isoformat()]).fetchone() == (
        "closed", "no index data published for 2018-01-03: treated as a closed day")
    count = db.execute("SELECT COUNT(*) FROM signal_values WHERE date = ?", [day2.isoformat()]).fetchone()
    assert count == (0,)
    # a failed index fetch is not a closed day: it is missing data (and data_stale's business)
    down = Live(dt.date(2018, 1, 4))
    down.failures = {"index.csi300.*": "connection refused"}
    assert run_cycle(db, default_config, dt.date(2018, 1, 4), down, cal).status == "partial"


def test_a_revised_day_counts_as_known_from_its_first_value():
    """A day whose value was revised later (from 2024-01-08) was known from its first value's
    available_at (2024-01-03): the freshness check as of 2024-01-04 sees it, in the live query
    (latest_dates) and in the days a replay reads once (observed_days), as load_frame sees its
    first value then."""
    from storage import observations

    db = open_db(":memory:")
    series = "index.csi300.close"
    observations.upsert(db, [(series, "2024-01-02", 100.0, "2024-01-02", "t"),
                             (series, "2024-01-03", 101.0, "2024-01-03", "t")])
    observations.upsert(db, [(series, "2024-01-03", 102.0, "2024-01-03", "t")], revised_from="2024-01-08")
    assert db.execute("SELECT available_at FROM observations WHERE date = '2024-01-03'"
                      ).fetchone() == ("2024-01-08",)  # the revision is known from its day
    for as_of, latest in (("2024-01-02", "2024-01-02"), ("2024-01-04", "2024-01-03"),
                          ("2024-01-09", "2024-01-03")):
        assert observations.latest_dates(db, [series], "2024-01-01", as_of) == {series: latest}
    days, known = observations.observed_days(db, [series])[series]
    assert (days, known) == (["2024-01-02", "2024-01-03"], ["2024-01-02", "2024-01-03"])
