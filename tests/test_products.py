"""Products and their NAVs (issue 16): the config's [exposure] and [[products]], the NAV file of
import-csv (date,product,nav[,available_at]), product_navs point-in-time, revisions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import cli
from monitor.calendar import TradingCalendar
from monitor.config import ConfigError, parse_config
from monitor.sources.csv_import import CsvImportError, import_report, nav_available
from signals import exposure as ex
from storage import products
from storage.db import open_db
from tests.conftest import table_snapshot

TODAY = dt.date(2024, 3, 1)
NAVS = """date,product,nav
2024-01-05,A,1.00
2024-01-12,A,1.02
2024-01-19,A,0.99
2024-01-05,B,2.50
2024-01-12,B,2.55
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "navs.db")


def stored(db) -> list[tuple]:
    return db.execute("SELECT product, date, nav, available_at, source FROM product_navs "
                      "ORDER BY product, date").fetchall()


# -- the import --------------------------------------------------------------------------------

def test_nav_file_is_stored_with_the_lag_in_trading_days(db, tmp_path):
    path = write(tmp_path, "navs.csv", NAVS)
    [done] = import_report(db, [path], TODAY, nav_lag_days=5)
    assert (done.kind, done.read, done.values, done.written, done.unchanged) == ("navs", 5, 5, 5, 0)
    assert done.products == {"A", "B"}
    # 2024-01-05 (Fri) + 5 XSHG trading days = Fri 2024-01-12; 2024-01-19 + 5 = 2024-01-26
    assert stored(db) == [("A", "2024-01-05", 1.0, "2024-01-12", "csv:navs.csv"),
                          ("A", "2024-01-12", 1.02, "2024-01-19", "csv:navs.csv"),
                          ("A", "2024-01-19", 0.99, "2024-01-26", "csv:navs.csv"),
                          ("B", "2024-01-05", 2.5, "2024-01-12", "csv:navs.csv"),
                          ("B", "2024-01-12", 2.55, "2024-01-19", "csv:navs.csv")]
    summary = done.summary()
    assert "5 rows read, 5 NAVs of 2 product(s): 5 written, 0 unchanged" in summary
    assert "NAV date + 5 XSHG trading day(s)" in summary
    run = db.execute("SELECT job, as_of, status, detail FROM runs").fetchall()
    assert [r[:3] for r in run] == [("import", "2024-03-01", "ok")]
    assert json.loads(run[0][3]) == {"files": {str(path): 5}}
    before = table_snapshot(db)
    [again] = import_report(db, [path], TODAY, nav_lag_days=5)
    assert (again.written, again.unchanged) == (0, 5)
    assert table_snapshot(db) == before  # nothing written, no run recorded


def test_the_lag_skips_holidays_and_is_cut_at_the_import_day():
    cal = TradingCalendar()
    dates = pd.Series(pd.to_datetime(["2024-02-08", "2024-02-09", "2024-01-05", "2024-01-06"]))
    # Spring Festival 2024: closed 2024-02-09 .. 2024-02-16; Sat 2024-01-06: the 1st trading
    # day after it is Mon 2024-01-08
    got = nav_available(dates, 5, cal, dt.date(2026, 1, 1))
    assert [d.date().isoformat() for d in got] == ["2024-02-23", "2024-02-23", "2024-01-12",
                                                    "2024-01-12"]
    assert list(nav_available(dates, 0, cal, dt.date(2026, 1, 1))) == list(dates)
    # imported on 2024-01-09: a NAV in hand is known that day at the latest
    got = nav_available(dates.iloc[2:], 5, cal, dt.date(2024, 1, 9))
    assert [d.date().isoformat() for d in got] == ["2024-01-09", "2024-01-09"]


def test_an_explicit_available_at_wins_and_a_blank_one_takes_the_lag(db, tmp_path):
    path = write(tmp_path, "n.csv", "date,product,nav,available_at\n"
                                    "2024-01-05,A,1.0,2024-01-06\n"
                                    "2024-01-12,A,1.1,\n")
    import_report(db, [path], TODAY, nav_lag_days=1)
    assert [r[3] for r in stored(db)] == ["2024-01-06", "2024-01-15"]


def test_nav_dates_on_closed_days_are_kept(db, tmp_path):
    path = write(tmp_path, "n.csv", "date,product,nav\n2024-02-09,A,1.0\n2024-02-10,A,1.01\n")
    [done] = import_report(db, [path], TODAY, nav_lag_days=0)
    assert done.skipped == {} and [r[1] for r in stored(db)] == ["2024-02-09", "2024-02-10"]


@pytest.mark.parametrize("text,message", [
    ("date,product,nav\n2024-01-05,A,1.0\n2024-01-12,,1.0\n", "line 3, column product: empty product name"),
    ("date,product,nav\n2024-01-05,A,0\n", "line 2, column nav: 0 is not a positive NAV"),
    ("date,product,nav\n2024-01-05,A,-1.2\n", "line 2, column nav: -1.2 is not a positive NAV"),
    ("date,product,nav\n2024-01-05,A,abc\n", "line 2, column nav: 'abc' is not a number"),
    ("date,product,nav\n2024-01-05,A,inf\n", "line 2, column nav: 'inf' is not a number"),
    ("date,product,nav\n05/01/2024,A,1.0\n", "line 2, column date: '05/01/2024' is not a YYYY-MM-DD date"),
    ("date,product,nav\n2024-03-02,A,1.0\n", "line 2, column date: 2024-03-02 is in the future"),
    ("date,product,nav\n2024-01-05,A,1.0\n2024-01-12,B,1.0\n2024-01-05,A,1.1\n",
     "line 2: duplicate date 2024-01-05 for product 'A'"),
    ("date,product,nav,available_at\n2024-01-05,A,1.0,2024-01-04\n",
     "line 2, column available_at: 2024-01-04 is before the date 2024-01-05"),
    ("date,product,nav\n", "no data rows"),
    ("date,product,nav,extra\n2024-01-05,A,1.0,x\n", "unrecognised header"),
])
def test_a_bad_nav_file_is_one_line_naming_the_line_and_changes_nothing(db, tmp_path, text, message):
    good = write(tmp_path, "good.csv", NAVS)
    bad = write(tmp_path, "bad.csv", text)
    before = table_snapshot(db)
    with pytest.raises(CsvImportError) as err:
        import_report(db, [good, bad], TODAY)
    assert str(err.value).startswith(f"{bad}: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert table_snapshot(db) == before  # the good file was not written either


def test_navs_import_in_one_transaction_with_other_formats(db, tmp_path):
    long = write(tmp_path, "idx.csv", "date,series,value\n2024-01-05,index.csi500.close,5000\n")
    navs = write(tmp_path, "navs.csv", NAVS)
    done = import_report(db, [long, navs], TODAY)
    assert [d.kind for d in done] == ["long", "navs"]
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 1
    assert len(stored(db)) == 5
    detail = db.execute("SELECT detail FROM runs").fetchone()[0]
    assert json.loads(detail) == {"files": {str(long): 1, str(navs): 5}}


def test_a_revised_nav_is_known_from_the_import_day_and_the_old_one_before(db, tmp_path):
    path = write(tmp_path, "navs.csv", NAVS)
    import_report(db, [path], dt.date(2024, 2, 1), nav_lag_days=5)
    revised = write(tmp_path, "navs.csv", NAVS.replace("2024-01-12,A,1.02", "2024-01-12,A,1.03"))
    [done] = import_report(db, [revised], TODAY, nav_lag_days=5)
    assert (done.written, done.unchanged) == (1, 4)
    row = db.execute("SELECT nav, available_at FROM product_navs WHERE product = 'A' AND "
                     "date = '2024-01-12'").fetchone()
    assert row == (1.03, "2024-03-01")  # the import day, not 2024-01-19
    old = db.execute("SELECT nav, available_at, superseded_at FROM product_nav_revisions").fetchall()
    assert old == [(1.02, "2024-01-19", "2024-03-01")]
    assert products.load(db, dt.date(2024, 2, 29))["A"].tolist() == [1.0, 1.02, 0.99]
    assert products.load(db, dt.date(2024, 3, 1))["A"].tolist() == [1.0, 1.03, 0.99]
    assert products.load(db, None)["A"].tolist() == [1.0, 1.03, 0.99]
    assert products.load(db, dt.date(2024, 1, 18))["A"].tolist() == [1.0]  # 01-12's not known yet


# -- storage -----------------------------------------------------------------------------------

def test_load_is_point_in_time_and_coverage_counts(db):
    rows = [("A", "2024-01-05", 1.0, "2024-01-12", "t"), ("A", "2024-01-12", 1.1, "2024-01-19", "t"),
            ("B", "2024-01-05", 2.0, "2024-01-05", "t")]
    with db.atomic():
        assert products.upsert(db, rows) == 3
        assert products.upsert(db, rows) == 0
    assert list(products.load(db, dt.date(2024, 1, 11))) == ["B"]  # A's first: from 01-12
    assert products.load(db, dt.date(2024, 1, 4)) == {}
    known = products.load(db, dt.date(2024, 1, 12))
    assert set(known) == {"A", "B"} and known["A"].tolist() == [1.0]
    assert known["A"].index.equals(pd.DatetimeIndex([pd.Timestamp("2024-01-05")], name="date"))
    assert products.load(db, None, ["A"])["A"].tolist() == [1.0, 1.1]
    assert products.coverage(db) == [("A", "2024-01-05", "2024-01-12", 2, "2024-01-19"),
                                     ("B", "2024-01-05", "2024-01-05", 1, "2024-01-05")]
    assert products.coverage(db, ["B", "C"]) == [("B", "2024-01-05", "2024-01-05", 1, "2024-01-05")]
    assert products.names(db) == ["A", "B"]


DAY0 = dt.date(2024, 1, 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 30), st.integers(0, 10),
                          st.booleans(), st.integers(1, 40)), min_size=1, max_size=25),
       st.integers(0, 90), st.integers(0, 90))
def test_load_sees_a_nav_from_its_available_at_and_a_revision_from_its_day(rows, revised_on, look):
    """Whatever NAVs, lags and revisions: ``load(as_of)`` holds exactly the NAVs known on as_of:
    the first value from its available_at, the revised one from the later of its available_at
    and the revision day, the first one until then."""
    db = open_db(":memory:")
    first: dict[tuple[str, str], tuple[float, str]] = {}
    for product, day, lag, _, _ in rows:
        d = DAY0 + dt.timedelta(days=day)
        known = (d + dt.timedelta(days=lag)).isoformat()
        first.setdefault((product, d.isoformat()), (1.0 + day / 100, known))
    revision_day = (DAY0 + dt.timedelta(days=revised_on)).isoformat()
    revised = {}
    for product, day, _, change, new in rows:
        key = (product, (DAY0 + dt.timedelta(days=day)).isoformat())
        if change and key not in revised:
            revised[key] = 1.0 + day / 100 + new / 1000  # always a different value
    with db.atomic():
        products.upsert(db, [(p, d, v, a, "t") for (p, d), (v, a) in first.items()])
        products.upsert(db, [(p, d, v, first[(p, d)][1], "t") for (p, d), v in revised.items()],
                        revised_from=revision_day)
    as_of = DAY0 + dt.timedelta(days=look)
    want: dict[str, dict[str, float]] = {}
    for (p, d), (v, a) in sorted(first.items()):
        known_revised = (p, d) in revised and max(a, revision_day) <= as_of.isoformat()
        if known_revised:
            want.setdefault(p, {})[d] = revised[(p, d)]
        elif a <= as_of.isoformat():
            want.setdefault(p, {})[d] = v
    got = {p: {ts.date().isoformat(): v for ts, v in s.items()}
           for p, s in products.load(db, as_of).items()}
    assert got == want


# -- the command line: import-csv --------------------------------------------------------------

CONFIG = """
[source]
kind = "csv"
[exposure]
nav_lag_days = 2
[[products]]
name = "A"
benchmark = "csi500"
"""


def test_import_csv_takes_the_lag_from_the_config_and_lists_undeclared_products(tmp_path, capsys):
    config = write(tmp_path, "c.toml", CONFIG)
    path = write(tmp_path, "navs.csv", NAVS)
    code = cli.main(["--config", str(config), "--db", str(tmp_path / "x.db"), "import-csv", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "5 NAVs of 2 product(s): 5 written" in out and "NAV date + 2 XSHG" in out
    lines = out.splitlines()
    a = next(ln for ln in lines if ln.startswith("A "))
    b = next(ln for ln in lines if ln.startswith("B "))
    assert a.split() == ["A", "2024-01-05", "2024-01-19", "3", "2024-01-23", "yes"]
    assert b.split()[:5] == ["B", "2024-01-05", "2024-01-12", "2", "2024-01-16"]
    assert "no (no benchmark)" in b


# -- config ------------------------------------------------------------------------------------

def test_exposure_defaults_come_from_the_analytics():
    config = parse_config("")
    e = config.exposure
    assert (e.large_microcap_corr, e.loose_tracking_corr) == (ex.LARGE_MICROCAP_CORR,
                                                              ex.LOOSE_TRACKING_CORR)
    assert tuple(e.windows_weeks) == ex.DEFAULT_WINDOWS
    assert e.rank_window_weeks == ex.DEFAULT_RANK_WINDOW
    assert (e.nav_lag_days, e.digest_top) == (5, 3) and config.products == []


def test_products_are_read():
    config = parse_config('[[products]]\nname = "九坤1000B"\nbenchmark = "csi1000"\n'
                          'strategy = "index_enhanced"\nweight = 0.10\n'
                          '[[products]]\nname = "B"\nbenchmark = "csi300"\nweight = 0\n')
    assert [(p.name, p.benchmark, p.strategy, p.weight) for p in config.products] == [
        ("九坤1000B", "csi1000", "index_enhanced", 0.1), ("B", "csi300", "", 0.0)]


P = '[[products]]\nname = "{name}"\nbenchmark = "{bench}"\n'


@pytest.mark.parametrize("text,message", [
    (P.format(name="A", bench="csi800"),
     "products[0] (A).benchmark: unknown benchmark 'csi800' (known: csi300, csi500, csi1000, csi2000)"),
    (P.format(name="A", bench="csi500") + P.format(name="A", bench="csi1000"),
     "products[1] (A).name: duplicate product name 'A'"),
    (P.format(name="A", bench="csi500") + "weight = 1.5\n",
     "products[0] (A).weight: must be the product's share of the book, between 0 and 1, got 1.5"),
    (P.format(name="A", bench="csi500") + "weight = -0.1\n", "products[0] (A).weight: must be"),
    (P.format(name="A", bench="csi500") + "weight = 0.6\n" + P.format(name="B", bench="csi500")
     + "weight = 0.6\n", "products: the weights add up to 1.2, more than the whole book (1)"),
    (P.format(name="", bench="csi500"), "products[0].name: String should have at least 1 character"),
    (P.format(name=" A", bench="csi500"), "products[0] ( A).name: ' A' has spaces around it"),
    ('[[products]]\nbenchmark = "csi500"\n', "products[0].name: Field required"),
    (P.format(name="A", bench="csi500") + "wieght = 0.1\n", "products[0] (A).wieght: unknown key"),
    ("[exposure]\nrank_window_weeks = 13\n",
     "exposure.rank_window_weeks: 13 is not one of exposure.windows_weeks [26, 52]"),
    ("[exposure]\nwindows_weeks = [4, 52]\n",
     "exposure.windows_weeks: a window is 13 to 520 NAV intervals, got 4"),
    ("[exposure]\nwindows_weeks = []\n", "exposure.windows_weeks: give at least one window"),
    ("[exposure]\nwindows_weeks = [52, 52]\n", "exposure.windows_weeks: a window is given twice"),
    ("[exposure]\nlarge_microcap_corr = 1.2\n",
     "exposure.large_microcap_corr: must be a correlation between 0 and 1, got 1.2"),
    ("[exposure]\nloose_tracking_corr = -0.5\n", "exposure.loose_tracking_corr: must be a correlation"),
    ("[exposure]\nnav_lag_days = -1\n", "exposure.nav_lag_days: Input should be greater than or equal to 0"),
    ("[exposure]\nnav_lag_days = 2.5\n", "exposure.nav_lag_days: Input should be a valid integer"),
    ("[exposure]\ndigest_top = -1\n", "exposure.digest_top: Input should be greater than or equal to 0"),
    ("[exposure]\nlag = 5\n", "exposure.lag: unknown key"),
])
def test_a_bad_product_or_exposure_setting_is_one_line_naming_the_key(text, message):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.toml")
    assert str(err.value) == f"c.toml: {message}" or str(err.value).startswith(f"c.toml: {message}"), \
        str(err.value)
