"""import-csv: the canonical long format and the stock panel; bad files change nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from monitor import cli
from monitor.sources.csv_import import CsvImportError, import_files
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG, table_snapshot

GOOD = """date,series,value
2024-01-02,index.csi2000.amount,45000000000
2024-01-02,index.all_a.amount,800000000000
2024-01-03,index.csi2000.amount,47000000000
2024-01-03,index.all_a.amount,820000000000
2024-01-02,yield.gov.3y,2.31
2023-12-29,funds.smallcap_share_mean,0.41
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "import.db")


def test_long_format_import_and_reimport_changes_nothing(db, tmp_path):
    path = write(tmp_path, "good.csv", GOOD)
    assert import_files(db, [path]) == {str(path): 6}
    rows = db.execute("SELECT series, date, value, available_at, source FROM observations "
                      "ORDER BY series, date").fetchall()
    assert ("funds.smallcap_share_mean", "2023-12-29", 0.41, "2024-01-28", "csv:good.csv") in rows
    assert ("index.all_a.amount", "2024-01-02", 8e11, "2024-01-02", "csv:good.csv") in rows
    before = table_snapshot(db)
    assert import_files(db, [path]) == {str(path): 0}
    assert table_snapshot(db) == before


def test_explicit_available_at_column(db, tmp_path):
    path = write(tmp_path, "a.csv", "date,series,value,available_at\n"
                                    "2023-12-29,funds.smallcap_count,120,2024-02-05\n"
                                    "2024-01-02,yield.gov.3y,2.31,\n")
    import_files(db, [path])
    rows = dict(db.execute("SELECT series, available_at FROM observations").fetchall())
    assert rows == {"funds.smallcap_count": "2024-02-05", "yield.gov.3y": "2024-01-02"}


BAD = [
    ("date,name,value\n2024-01-02,index.csi300.close,3400\n", "unrecognised header"),
    ("date,series,value\n2024-01-02,index.csi300.close,abc\n",
     "line 2, column value: 'abc' is not a number"),
    ("date,series,value\n2024-01-02,index.csi300.close,3400\n2024-01-02,index.csi300.close,3401\n",
     "line 2: duplicate date 2024-01-02 for series index.csi300.close"),
    ("date,series,value\n2024-13-02,index.csi300.close,3400\n",
     "line 2, column date: '2024-13-02' is not a YYYY-MM-DD date"),
    ("date,series,value\n2999-01-02,index.csi300.close,3400\n",
     "line 2, column date: 2999-01-02 is in the future"),
    ("date,series,value\n2024-01-02,index.hsi.close,16000\n",
     "column series: 'index.hsi.close' is not a canonical series name"),
    ("date,series,value\n2024-01-02,index.csi2000.amount,450.3\n",
     "series index.csi2000.amount: value 450.3 is outside the plausible range"),
    ("date,series,value\n2024-01-02,yield.gov.3y,0.0231\n", "looks like a fraction"),
    ("date,series,value\n2024-01-02,index.csi300.close,inf\n", "'inf' is not a number"),
    ("date,series,value\n", "no data rows"),
    ("", "not a readable CSV file"),
    ("date,code,close,total_mv,is_st\n2024-01-02,600519,1685.0,21.2e2,0\n",
     "column total_mv: median 2120 is too small for yuan"),
    ("date,code,close,total_mv,is_st\n2024-01-02,60051,1685.0,2.1e12,0\n",
     "column code: '60051' is not a 6-digit stock code"),
    ("date,code,close,total_mv,is_st\n2024-01-02,600519,1685.0,2.1e12,2\n",
     "column is_st: must be 0 or 1"),
]


@pytest.mark.parametrize("text,needle", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_files_give_one_line_and_write_nothing(db, tmp_path, text, needle):
    good = write(tmp_path, "good.csv", GOOD)
    bad = write(tmp_path, "bad.csv", text)
    before = table_snapshot(db)
    with pytest.raises(CsvImportError) as info:
        import_files(db, [good, bad])  # the good file is not written either
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(bad))
    assert needle in msg
    assert table_snapshot(db) == before


def test_amount_in_yi_gets_a_unit_hint(db, tmp_path):
    bad = write(tmp_path, "yi.csv", "date,series,value\n2024-01-02,index.all_a.amount,8123.4\n")
    with pytest.raises(CsvImportError, match=r"looks like 1e8 yuan .*convert to yuan"):
        import_files(db, [bad])


def test_stock_panel_import(db, tmp_path):
    path = write(tmp_path, "panel.csv",
                 "date,code,close,total_mv,is_st\n"
                 "2024-01-02,600519,1685.0,2116700000000,0\n"
                 "2024-01-02,000001,,18300000000,1\n"
                 "2024-01-03,600519,1676.0,2105400000000,0\n")
    assert import_files(db, [path]) == {str(path): 3}
    rows = db.execute("SELECT date, code, close, total_mv, is_st FROM stock_panel "
                      "ORDER BY date, code").fetchall()
    assert rows[0] == ("2024-01-02", "000001", None, 1.83e10, 1)
    assert import_files(db, [path]) == {str(path): 0}


def test_cli_import_reports_one_line_errors(tmp_path, capsys):
    bad = write(tmp_path, "bad.csv", "date,series,value\n2024-01-02,index.csi300.close,x\n")
    code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(tmp_path / "c.db"),
                     "import-csv", str(bad)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.csv: line 2, column value" in err
    missing = tmp_path / "nope.csv"
    assert cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(tmp_path / "c.db"),
                     "import-csv", str(missing)]) == 1
    assert "nope.csv: no such file" in capsys.readouterr().err


def test_import_is_recorded_in_runs(db, tmp_path):
    import_files(db, [write(tmp_path, "g.csv", GOOD)], today=dt.date(2024, 1, 4))
    assert db.execute("SELECT job, as_of, status FROM runs").fetchall() == [
        ("import", "2024-01-04", "ok")]


PANEL = """date,code,close,total_mv,is_st
2023-09-28,000001,10.0,5000000000,0
2023-09-28,600519,1800.0,2200000000000,0
2023-12-29,000001,9.0,4500000000,0
2023-12-29,600519,1700.0,2100000000000,0
"""
# two active funds (A/C share classes of one), one index fund (filtered out)
HOLDINGS = """report_date,fund_code,fund_name,stock_code,holding_value
2023-09-30,000011,远见成长混合A,000001,400000000
2023-09-30,000011,远见成长混合A,600519,600000000
2023-09-30,000012,远见成长混合C,000001,100000000
2023-09-30,000099,沪深300指数A,600519,900000000
2023-12-31,000011,远见成长混合A,000001,400000000
2023-12-31,000011,远见成长混合A,600519,600000000
2023-12-31,000012,远见成长混合C,000001,0
2023-12-31,000099,沪深300指数A,600519,900000000
"""


def test_fund_holdings_become_point_in_time_allocation_series(db, tmp_path):
    panel = write(tmp_path, "panel.csv", PANEL)
    holdings = write(tmp_path, "holdings.csv", HOLDINGS)
    import_files(db, [holdings, panel], coverage="top10")  # the panel is applied first
    rows = db.execute("SELECT series, date, value, available_at, source FROM observations "
                      "ORDER BY series").fetchall()
    # Q3: merged fund holds 000001 (5e9 < 10e9: small) 5e8 of 11e8 -> 45.5% (first report: no row)
    # Q4: 4e8 of 10e8 = 40% > 30% at both reports -> one small-cap fund, mean 0.4, total 4e8;
    # dated on the last trading day of the quarter, available 30 days after the quarter end
    src = "holdings:top10;csv:holdings.csv"
    assert rows == [
        ("funds.smallcap_count", "2023-12-29", 1.0, "2024-01-30", src),
        ("funds.smallcap_share_mean", "2023-12-29", pytest.approx(0.4), "2024-01-30", src),
        ("funds.smallcap_value_total", "2023-12-29", 4e8, "2024-01-30", src),
    ]


def test_holdings_without_a_panel_name_the_missing_caps(db, tmp_path):
    holdings = write(tmp_path, "holdings.csv", HOLDINGS)
    with pytest.raises(CsvImportError, match=r"holdings.csv: no stock_panel market caps .* report date "
                       r"2023-09-30: import the stock panel first"):
        import_files(db, [holdings])
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 0


@pytest.mark.parametrize("text", ["date,series,value\n2024-01-02,,,,\n",
                                  "date,series,value\n2024-01-02,2024-01-02,,\n"])
def test_rows_with_more_fields_than_the_header_are_refused(db, tmp_path, text):
    bad = write(tmp_path, "wide.csv", text)
    with pytest.raises(CsvImportError) as info:
        import_files(db, [bad])
    assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)
