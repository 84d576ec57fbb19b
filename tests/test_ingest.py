"""The CSV drop folder and the resumable backfill."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from monitor import cli
from monitor.calendar import TradingCalendar
from monitor.sources.base import Fetched
from monitor.sources.demo_source import DemoSource
from monitor.sources.ingest import backfill, import_drop_folder
from storage import observations
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG

GOOD = "date,series,value\n2024-01-02,index.csi300.close,3386.35\n"
BAD = "date,series,value\n2024-01-02,index.csi300.close,abc\n"


def test_drop_folder_imports_good_files_and_rejects_bad_ones(tmp_path):
    db = open_db(tmp_path / "drop.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a_good.csv").write_text(GOOD)
    (inbox / "b_bad.csv").write_text(BAD)
    outcome = import_drop_folder(db, inbox, settle_seconds=0)  # just written: settled at once
    assert outcome["a_good.csv"].startswith("imported (1 rows")
    assert outcome["b_bad.csv"].startswith("rejected: ") and "line 2, column value" in outcome["b_bad.csv"]
    assert db.execute("SELECT series, value FROM observations").fetchall() == [
        ("index.csi300.close", 3386.35)]
    assert not list(inbox.glob("*.csv"))
    [err] = list((inbox / "rejected").glob("*.error.txt"))
    assert "not a number" in err.read_text()
    assert len(list((inbox / "imported").glob("*a_good.csv"))) == 1
    assert import_drop_folder(db, inbox) == {}  # nothing left


def test_drop_folder_skips_rows_on_closed_days_and_says_so(tmp_path, caplog):
    db = open_db(tmp_path / "drop.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "feed.csv").write_text(GOOD + "2024-01-06,index.csi300.close,3390\n"  # Saturday
                                    "2024-02-12,index.csi300.close,3391\n")  # Spring Festival
    with caplog.at_level("WARNING", logger="regime_monitor.ingest"):
        outcome = import_drop_folder(db, inbox, settle_seconds=0)
    assert outcome == {"feed.csv": "imported (1 rows changed); 2 row(s) skipped: not XSHG "
                                   "trading days"}
    assert "feed.csv: skipped 2 row(s) dated on 2 day(s)" in caplog.text
    assert "2024-01-06, 2024-02-12" in caplog.text
    assert db.execute("SELECT date FROM observations").fetchall() == [("2024-01-02",)]
    # a declared extra closed day (a holiday past the installed calendar) is skipped too
    (inbox / "more.csv").write_text("date,series,value\n2024-01-03,index.csi300.close,3380\n")
    outcome = import_drop_folder(db, inbox, settle_seconds=0,
                                 calendar=TradingCalendar([dt.date(2024, 1, 3)]))
    assert outcome == {"more.csv": "imported (0 rows changed); 1 row(s) skipped: not XSHG "
                                   "trading days"}


def test_daemon_cycle_imports_the_drop_folder_first(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.csv").write_text(GOOD)
    os.utime(inbox / "x.csv", (1e9, 1e9))  # written long ago: settled
    config = tmp_path / "c.toml"
    config.write_text(DEFAULT_CONFIG.read_text().replace('kind = "demo"', 'kind = "csv"')
                      .replace('drop_folder = ""', f'drop_folder = "{inbox}"'))
    assert cli.main(["--config", str(config), "--db", str(tmp_path / "d.db"), "once", "--as-of",
                     "2024-01-02"]) == 0
    db = open_db(tmp_path / "d.db")
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 1


def test_a_nav_file_in_the_drop_folder_takes_the_configured_lag(tmp_path):
    """The daemon passes ``exposure.nav_lag_days`` to the drop folder's import, as ``import-csv``
    does: NAVs of Fri 2024-01-05 known 2 XSHG trading days later (Tue 2024-01-09), not 5."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "navs.csv").write_text("date,product,nav\n2024-01-05,A,1.0\n2024-01-12,A,1.01\n")
    os.utime(inbox / "navs.csv", (1e9, 1e9))  # written long ago: settled
    config = tmp_path / "c.toml"
    text = DEFAULT_CONFIG.read_text()
    assert "nav_lag_days = 5" in text
    config.write_text(text.replace('kind = "demo"', 'kind = "csv"')
                      .replace('drop_folder = ""', f'drop_folder = "{inbox}"')
                      .replace("nav_lag_days = 5", "nav_lag_days = 2"))
    assert cli.main(["--config", str(config), "--db", str(tmp_path / "d.db"), "once", "--as-of",
                     "2024-01-19"]) == 0
    db = open_db(tmp_path / "d.db")
    assert db.execute("SELECT date, available_at FROM product_navs ORDER BY date").fetchall() == [
        ("2024-01-05", "2024-01-09"), ("2024-01-12", "2024-01-16")]


class Flaky(DemoSource):
    """The demo source, failing (once) for one month."""

    def __init__(self, seed, fail_month):
        super().__init__(seed)
        self.fail_month = fail_month

    def fetch(self, as_of, since):
        if (as_of.year, as_of.month) == self.fail_month:
            self.fail_month = None
            return Fetched([], {"everything": "connection reset"})
        return super().fetch(as_of, since)


def test_backfill_is_month_by_month_and_resumes(tmp_path, default_config):
    db = open_db(tmp_path / "bf.db")
    cal = TradingCalendar()
    source = Flaky(default_config.source.demo_seed, (2018, 2))
    first = backfill(db, source, cal, dt.date(2018, 1, 1), dt.date(2018, 4, 30))
    assert first == {"done": 3, "skipped": 0, "failed": 1, "observations": first["observations"]}
    rows = db.execute("SELECT as_of, status, error FROM runs WHERE job = 'backfill' ORDER BY id").fetchall()
    assert rows[1] == ("2018-02-01..2018-02-28", "failed", "everything: connection reset")
    again = backfill(db, source, cal, dt.date(2018, 1, 1), dt.date(2018, 4, 30))
    assert again["done"] == 1 and again["skipped"] == 3 and again["failed"] == 0
    days = db.execute("SELECT COUNT(DISTINCT date) FROM observations WHERE series = "
                      "'index.csi300.close'").fetchone()[0]
    assert days == len(cal.days(dt.date(2018, 1, 1), dt.date(2018, 4, 30)))


def test_backfill_revises_a_stored_value_from_its_run_day(tmp_path, default_config):
    """A month backfilled over a value stored earlier (by the daily cycle) with a different one:
    the new value is known from the backfill's day, the stored one before it (kept apart), so a
    replay of January 2018 still sees what was known then."""
    db = open_db(tmp_path / "bf.db")
    cal = TradingCalendar()
    with db.atomic():
        observations.upsert(db, [("index.csi300.close", "2018-01-03", 1.0, "2018-01-03", "cycle")])
    backfill(db, DemoSource(default_config.source.demo_seed), cal, dt.date(2018, 1, 1),
             dt.date(2018, 1, 31), today=dt.date(2019, 6, 3))
    value, available = db.execute("SELECT value, available_at FROM observations WHERE series = "
                                  "'index.csi300.close' AND date = '2018-01-03'").fetchone()
    assert value != 1.0 and available == "2019-06-03"
    assert db.execute("SELECT value, available_at, superseded_at FROM observation_revisions"
                      ).fetchall() == [(1.0, "2018-01-03", "2019-06-03")]
    assert db.execute("SELECT available_at FROM observations WHERE series = 'index.csi300.close' "
                      "AND date = '2018-01-04'").fetchone() == ("2018-01-04",)  # new: its own


def test_backfill_refuses_the_csv_source(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(DEFAULT_CONFIG.read_text().replace('kind = "demo"', 'kind = "csv"'))
    code = cli.main(["--config", str(config), "--db", str(tmp_path / "d.db"), "backfill", "--start",
                     "2020-01-01"])
    err = capsys.readouterr().err
    assert code == 1 and "the csv source has nothing to fetch" in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["backfill", "--start", "2020-02-01", "--end", "2020-01-01"]])
def test_backfill_argument_errors(tmp_path, capsys, args):
    assert cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(tmp_path / "d.db"), *args]) == 1
    assert "is before --start" in capsys.readouterr().err
