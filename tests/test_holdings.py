"""The quarterly fund-holdings job and the stored holdings behind the ``funds.*`` series."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from monitor.config import Config
from monitor.daemon import Service, holdings_trigger
from monitor.sources.csv_import import import_files
from monitor.sources.holdings import (
    due_report,
    next_report,
    previous_report,
    quarter_end,
    run_holdings_job,
)
from storage.db import open_db
from tests.conftest import ROOT
from tests.test_akshare_source import FakeAk, source

SHANGHAI = ZoneInfo("Asia/Shanghai")
Q3, Q4 = dt.date(2022, 9, 30), dt.date(2022, 12, 31)

# total market caps (yuan) on both quarter ends; small caps are under 10 bn yuan
CAPS = {"300395": 8e9, "300593": 6e9, "688281": 5e9, "688536": 9e9, "002025": 2e10, "603259": 3e11,
        "603986": 6e10, "300661": 5e10, "688981": 4e11, "002129": 1.5e11, "300750": 1e12}


@pytest.fixture()
def db(tmp_path):
    database = open_db(tmp_path / "h.db")
    rows = [(day, code, 10.0, cap, 0, day, "test") for day in ("2022-09-30", "2022-12-30")
            for code, cap in CAPS.items()]
    database.conn.executemany("INSERT INTO stock_panel (date, code, close, total_mv, is_st, available_at, "
                              "source) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    database.conn.commit()
    yield database
    database.close()


def funds_rows(db):
    return db.execute("SELECT series, date, value, available_at, source FROM observations WHERE series "
                      "LIKE 'funds.%' ORDER BY series").fetchall()


# --- report dates ----------------------------------------------------------------------------------

@pytest.mark.parametrize("today, due", [
    (dt.date(2026, 11, 23), dt.date(2026, 9, 30)),   # 09-30 + 30 days = 10-30 <= 11-23
    (dt.date(2026, 10, 29), dt.date(2026, 6, 30)),   # Q3 reports not all published yet
    (dt.date(2026, 10, 30), dt.date(2026, 9, 30)),
    (dt.date(2027, 1, 30), dt.date(2026, 12, 31)),
    (dt.date(2027, 1, 29), dt.date(2026, 9, 30)),
    (dt.date(2024, 5, 1), dt.date(2024, 3, 31)),
])
def test_due_report_is_the_latest_quarter_published_30_days_ago(today, due):
    assert due_report(today) == due


def test_previous_report_by_coverage():
    assert previous_report(dt.date(2024, 3, 31), "top10") == dt.date(2023, 12, 31)
    assert previous_report(dt.date(2024, 9, 30), "top10") == dt.date(2024, 6, 30)
    assert previous_report(dt.date(2024, 6, 30), "full") == dt.date(2023, 12, 31)
    assert previous_report(dt.date(2023, 12, 31), "full") == dt.date(2023, 6, 30)


@given(st.integers(2000, 2100), st.integers(1, 4), st.sampled_from(["top10", "full"]))
def test_next_report_inverts_previous_report(year, quarter, coverage):
    month = 3 * quarter
    report = dt.date(year, month, 31 if month in (3, 12) else 30)
    assert quarter_end(report) and quarter_end(previous_report(report, coverage))
    assert next_report(previous_report(report, coverage), coverage) == report
    assert previous_report(report, coverage) < report


# --- the job ---------------------------------------------------------------------------------------

def test_first_run_fetches_both_quarters_and_writes_the_allocation(db):
    ak = FakeAk()
    outcome = run_holdings_job(db, source(ak), dt.date(2023, 2, 1))
    assert outcome.report_date == Q4 and outcome.status == "ok", outcome.line()
    # the previous quarter first (a quarter's values need the report before it), then Q4
    calls = [(c["symbol"], c["date"]) for c in ak.called("fund_portfolio_hold_em")]
    assert calls == [("000001", "2022"), ("005669", "2022"), ("519674", "2022")] * 2
    assert outcome.funds == 3 and outcome.fetched == 6 and outcome.missing == {}
    reports = db.execute("SELECT report_date, fund_code, holdings FROM fund_reports ORDER BY 1, 2")
    assert reports.fetchall() == [
        ("2022-09-30", "000001", 2), ("2022-09-30", "005669", 0), ("2022-09-30", "519674", 0),
        ("2022-12-31", "000001", 5), ("2022-12-31", "005669", 2), ("2022-12-31", "519674", 4)]
    # Q3: 000001 holds only small caps (300395, 300593): share 1.0.
    # Q4: 000001 small = 29528 + 27765 + 8216 = 65509 of 94030 (万元) = 0.69668... > 0.30 at both
    # reports; 519674: 125028 / 527538 = 0.237 (not small-cap); 005669: 0.
    src = "holdings:top10;akshare:fund_portfolio_hold_em"
    assert funds_rows(db) == [
        ("funds.smallcap_count", "2022-12-30", 1.0, "2023-02-01", src),
        ("funds.smallcap_share_mean", "2022-12-30", pytest.approx(65509 / 94030), "2023-02-01", src),
        ("funds.smallcap_value_total", "2022-12-30", pytest.approx(65509e4), "2023-02-01", src),
    ]
    assert db.execute("SELECT job, as_of, status FROM runs").fetchall() == [("holdings", "2022-12-31", "ok")]

    # done: the next night calls nothing and writes nothing
    again = FakeAk()
    assert run_holdings_job(db, source(again), dt.date(2023, 2, 2)).status == "done"
    assert again.calls == []


def test_available_at_is_never_before_publication(db):
    run_holdings_job(db, source(FakeAk()), dt.date(2023, 1, 15), report_date=Q4)
    # fetched early (by hand): the values are still available only from quarter end + 30 days
    assert {r[3] for r in funds_rows(db)} == {"2023-01-30"}


def test_a_failing_fund_leaves_the_quarter_partial_and_the_next_run_fetches_only_it(db):
    ak = FakeAk()
    real = ak.fund_portfolio_hold_em

    def flaky(symbol="000001", date="2024"):
        if symbol == "005669":
            raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=20)")
        return real(symbol=symbol, date=date)

    ak.fund_portfolio_hold_em = flaky
    outcome = run_holdings_job(db, source(ak), dt.date(2023, 2, 1))
    assert outcome.status == "partial"
    assert outcome.missing == {"2022-09-30": 1, "2022-12-31": 1}
    assert outcome.error.startswith("005669: akshare fund_portfolio_hold_em: ReadTimeout")
    assert funds_rows(db) == []  # a quarter with a missing fund is not scored yet
    assert db.execute("SELECT status, error FROM runs").fetchone()[0] == "partial"
    assert db.execute("SELECT COUNT(*) FROM fund_reports").fetchone()[0] == 4  # kept for the resume

    ak = FakeAk()
    outcome = run_holdings_job(db, source(ak), dt.date(2023, 2, 2))
    assert outcome.status == "ok" and outcome.fetched == 2
    assert [c["symbol"] for c in ak.called("fund_portfolio_hold_em")] == ["005669", "005669"]
    assert [r[2] for r in funds_rows(db)] == [1.0, pytest.approx(65509 / 94030), pytest.approx(65509e4)]


def test_a_missing_share_within_the_tolerance_still_scores_the_quarter(db):
    ak = FakeAk()
    real = ak.fund_portfolio_hold_em
    ak.fund_portfolio_hold_em = lambda symbol="000001", date="2024": (
        real(symbol=symbol, date=date).rename(columns={"持仓市值": "持仓市值（亿元）"})
        if symbol == "519674" else real(symbol=symbol, date=date))
    outcome = run_holdings_job(db, source(ak), dt.date(2023, 2, 1), max_missing_share=0.5)
    assert outcome.status == "ok" and outcome.missing == {"2022-09-30": 1, "2022-12-31": 1}
    assert "column '持仓市值' missing" in outcome.error
    assert funds_rows(db)[0][2] == 1.0


def test_unreachable_upstream_records_a_failed_run_and_writes_nothing(db):
    ak = FakeAk()

    def down():
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: /js/fundcode_search.js")

    ak.fund_name_em = down
    outcome = run_holdings_job(db, source(ak), dt.date(2023, 2, 1))
    assert outcome.status == "failed"
    assert outcome.error.startswith("akshare fund_name_em: ConnectionError")
    assert db.execute("SELECT job, as_of, status FROM runs").fetchall() == [
        ("holdings", "2022-12-31", "failed")]
    assert db.execute("SELECT COUNT(*) FROM fund_reports").fetchone()[0] == 0


def test_missing_market_caps_fail_the_run_with_the_date(tmp_path):
    db = open_db(tmp_path / "nocaps.db")
    outcome = run_holdings_job(db, source(FakeAk()), dt.date(2023, 2, 1))
    assert outcome.status == "failed"
    assert outcome.error == ("no stock_panel market caps within 30 days before report date 2022-09-30: "
                             "import the stock panel first")
    assert db.execute("SELECT COUNT(*) FROM fund_reports").fetchone()[0] == 6  # raw reports kept
    db.close()


# --- the daemon's side -----------------------------------------------------------------------------

def akshare_config(**akshare):
    return Config.model_validate({"source": {"kind": "akshare", "akshare": akshare}})


def test_service_runs_the_job_on_its_clock_and_the_trigger_fires_at_night(db, tmp_path):
    config = akshare_config()
    clock = lambda: dt.datetime(2023, 2, 1, 1, 30, tzinfo=SHANGHAI)  # noqa: E731
    service = Service(config, tmp_path / "h.db", source=source(FakeAk()), clock=clock)
    try:
        assert service.holdings().status == "ok"
        assert service.holdings().status == "done"
    finally:
        service.close()
    trigger = holdings_trigger(config)
    now = dt.datetime(2026, 11, 23, 20, 5, tzinfo=SHANGHAI)
    assert trigger.get_next_fire_time(None, now) == dt.datetime(2026, 11, 24, 1, 30, tzinfo=SHANGHAI)
    assert holdings_trigger(akshare_config(holdings_job=False)) is None
    assert holdings_trigger(Config()) is None  # the demo source has no holdings


def test_service_skips_sources_without_holdings(tmp_path):
    service = Service(Config(), tmp_path / "d.db")
    try:
        assert service.holdings() is None
    finally:
        service.close()


def test_the_holdings_command_refuses_a_source_without_holdings(tmp_path):
    command = [sys.executable, "-m", "monitor.cli", "--config", str(ROOT / "config" / "monitor.toml"),
               "--db", str(tmp_path / "x.db"), "holdings"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "regime-monitor: error: the holdings job fetches through AKShare, but source.kind is 'demo': "
        "bring holdings with `import-csv` instead"]


# --- CSV imports, one quarter at a time -------------------------------------------------------------

HEADER = "report_date,fund_code,fund_name,stock_code,holding_value\n"
Q3_ROWS = ("2022-09-30,000011,远见成长混合A,300395,400000000\n"
           "2022-09-30,000011,远见成长混合A,603259,600000000\n"
           "2022-09-30,000012,远见成长混合C,300395,100000000\n")
Q4_ROWS = ("2022-12-31,000011,远见成长混合A,300395,400000000\n"
           "2022-12-31,000011,远见成长混合A,603259,600000000\n"
           "2022-12-31,000012,远见成长混合C,300395,0\n")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _values(db):
    return [(s, d, v, a) for s, d, v, a, _ in funds_rows(db)]


def test_quarters_imported_one_at_a_time_or_out_of_order_equal_one_file(db, tmp_path):
    both = _write(tmp_path, "both.csv", HEADER + Q3_ROWS + Q4_ROWS)
    q3, q4 = _write(tmp_path, "q3.csv", HEADER + Q3_ROWS), _write(tmp_path, "q4.csv", HEADER + Q4_ROWS)
    import_files(db, [both], today=dt.date(2023, 3, 1))
    expected = _values(db)
    # Q3: 5e8 of 11e8 small (45.5%); Q4: 4e8 of 10e8 = 40%: one small-cap fund
    assert expected == [("funds.smallcap_count", "2022-12-30", 1.0, "2023-01-30"),
                        ("funds.smallcap_share_mean", "2022-12-30", pytest.approx(0.4), "2023-01-30"),
                        ("funds.smallcap_value_total", "2022-12-30", 4e8, "2023-01-30")]
    for order in ([q3, q4], [q4, q3]):
        fresh = open_db(tmp_path / f"{order[0].stem}.db")
        fresh.conn.executemany("INSERT INTO stock_panel SELECT * FROM (SELECT ?, ?, ?, ?, ?, ?, ?)",
                               db.execute("SELECT * FROM stock_panel").fetchall())
        fresh.conn.commit()
        for path in order:
            import_files(fresh, [path], today=dt.date(2023, 3, 1))
        assert _values(fresh) == expected, order
        assert import_files(fresh, order, today=dt.date(2023, 3, 1)) == {str(p): 0 for p in order}
        fresh.close()


def test_a_reimported_fund_replaces_its_report(db, tmp_path):
    import_files(db, [_write(tmp_path, "both.csv", HEADER + Q3_ROWS + Q4_ROWS)], today=dt.date(2023, 3, 1))
    # the Q4 report of 000011 corrected: it sold 603259, so it is all small caps
    fixed = _write(tmp_path, "fix.csv", HEADER + "2022-12-31,000011,远见成长混合A,300395,400000000\n")
    import_files(db, [fixed], today=dt.date(2023, 3, 1))
    assert db.execute("SELECT stock_code FROM fund_holdings WHERE fund_code = '000011' AND "
                      "report_date = '2022-12-31'").fetchall() == [("300395",)]
    assert [v for _, _, v, _ in _values(db)] == [1.0, pytest.approx(1.0), 4e8]


def test_the_daemon_schedules_and_reschedules_the_holdings_job():
    from apscheduler.schedulers.background import BackgroundScheduler

    from monitor.daemon import _schedule_holdings

    scheduler = BackgroundScheduler(timezone="Asia/Shanghai")
    scheduler.start(paused=True)
    try:
        _schedule_holdings(scheduler, akshare_config(holdings_cron="45 2 * * *"), lambda: None)
        fire = scheduler.get_job("holdings").next_run_time.astimezone(SHANGHAI)
        assert (fire.hour, fire.minute) == (2, 45)
        _schedule_holdings(scheduler, akshare_config(), lambda: None)  # SIGHUP with the default cron
        fire = scheduler.get_job("holdings").next_run_time.astimezone(SHANGHAI)
        assert (fire.hour, fire.minute) == (1, 30)
        _schedule_holdings(scheduler, akshare_config(holdings_job=False), lambda: None)
        assert scheduler.get_job("holdings") is None
    finally:
        scheduler.shutdown(wait=False)
