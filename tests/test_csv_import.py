"""import-csv: the canonical long format and the stock panel; bad files change nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from monitor import cli
from monitor.sources.csv_import import CsvImportError, import_files, import_report
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG, ROOT, table_snapshot

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


def import_cli(db_path: Path, *args: str | Path) -> int:
    """Run ``import-csv`` with the default config on ``db_path``; return its exit code."""
    return cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(db_path), "import-csv",
                     *map(str, args)])


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


def test_a_revised_value_counts_once_not_with_the_earlier_value_kept(db, tmp_path):
    """A re-import changing one of two values writes 1 row (the revision trigger's copy of the
    earlier value is not a row of the file), and the earlier value is kept."""
    path = write(tmp_path, "a.csv", "date,series,value\n2024-01-02,yield.gov.3y,2.31\n"
                                    "2024-01-03,yield.gov.3y,2.32\n")
    assert import_files(db, [path], today=dt.date(2024, 1, 10)) == {str(path): 2}
    path.write_text("date,series,value\n2024-01-02,yield.gov.3y,2.35\n2024-01-03,yield.gov.3y,2.32\n")
    assert import_files(db, [path], today=dt.date(2024, 1, 10)) == {str(path): 1}
    assert db.execute("SELECT value, available_at, superseded_at FROM observation_revisions"
                      ).fetchall() == [(2.31, "2024-01-02", "2024-01-10")]


def test_a_blank_available_at_takes_the_series_default_lag_not_the_date(db, tmp_path):
    """A file with an ``available_at`` column but a blank cell for a ``funds.*`` row: the row
    becomes known 30 days after its report date (the default, as without the column), not on
    the report date itself, which would let a cycle see the quarter's allocation a month early."""
    path = write(tmp_path, "a.csv", "date,series,value,available_at\n"
                                    "2023-12-29,funds.smallcap_count,120,\n"
                                    "2024-01-02,yield.gov.3y,2.31,\n")
    import_files(db, [path])
    rows = dict(db.execute("SELECT series, available_at FROM observations").fetchall())
    assert rows == {"funds.smallcap_count": "2024-01-28", "yield.gov.3y": "2024-01-02"}


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


def test_reimported_holdings_revise_the_allocation_from_the_import_day(db, tmp_path):
    """Holdings imported again with a changed position: the ``funds.*`` values it changes are
    known from the import day (the values they replace stay visible before it), not from 30 days
    after the quarter end, which a replay of February would otherwise see."""
    import_files(db, [write(tmp_path, "holdings.csv", HOLDINGS), write(tmp_path, "panel.csv", PANEL)],
                 today=dt.date(2024, 3, 1))
    changed = HOLDINGS.replace("2023-12-31,000011,远见成长混合A,000001,400000000",
                               "2023-12-31,000011,远见成长混合A,000001,500000000")
    import_files(db, [write(tmp_path, "holdings.csv", changed)], today=dt.date(2024, 4, 10))
    rows = db.execute("SELECT series, value, available_at FROM observations ORDER BY series").fetchall()
    assert rows == [("funds.smallcap_count", 1.0, "2024-01-30"),  # unchanged: one fund
                    ("funds.smallcap_share_mean", pytest.approx(5 / 11), "2024-04-10"),
                    ("funds.smallcap_value_total", 5e8, "2024-04-10")]
    kept = db.execute("SELECT series, value, available_at, superseded_at FROM observation_revisions "
                      "ORDER BY series").fetchall()
    assert kept == [("funds.smallcap_share_mean", pytest.approx(0.4), "2024-01-30", "2024-04-10"),
                    ("funds.smallcap_value_total", 4e8, "2024-01-30", "2024-04-10")]


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


# -- vendor exports through a mapping (config/mappings/) ----------------------------------------

MAPPINGS = ROOT / "config" / "mappings"

# the csindex.com.cn history download, bilingual headers, dates YYYYMMDD, amount in 亿元
CSINDEX_EXPORT = (
    "日期Date,指数代码Index Code,指数中文全称Chinese Full Name,指数中文简称Chinese Name,"
    "指数英文全称English Full Name,指数英文简称English Name,开盘Open,最高High,最低Low,收盘Close,"
    "涨跌Change,涨跌幅(%)Change(%),成交量（万手）Volume(M Shares),成交金额（亿元）Turnover,"
    "样本数量Cons Number\n"
    "20240102,000300,沪深300指数,沪深300,CSI 300 Index,CSI 300,3426.92,3428.18,3383.66,3386.35,"
    "-44.86,-1.31,11024.65,1980.15,300\n"
    "20240103,000300,沪深300指数,沪深300,CSI 300 Index,CSI 300,3380.61,3391.92,3361.03,3370.18,"
    "-16.17,-0.48,9917.34,1832.25,300\n"
    "20240102,000852,中证1000指数,中证1000,CSI 1000 Index,CSI 1000,5901.57,5903.07,5788.88,5790.73,"
    "-118.92,-2.01,13020.05,1450.61,1000\n"
    "20240102,399303,国证2000指数,国证2000,CNI 2000,CNI 2000,1.0,1.0,1.0,7001.2,0,0,1,1,2000\n")

# the tidy CSIndex index-perf layout of the real data, with the 2018-06-18 Dragon Boat row
CSINDEX_PERF = (
    "date,code,name,open,high,low,close,amount_yi,pe\n"
    "2018-06-15,000985,中证全指,4400.1,4420.2,4380.3,4391.55,4521.7,16.9\n"
    "2018-06-18,000985,中证全指,,,,4380.58,0.0,16.75\n"
    "2018-06-19,000985,中证全指,4380.6,4381.0,4250.2,4253.02,5236.4,16.3\n"
    "2018-06-19,930713,中证人工智能主题,2550.1,2560.3,2490.6,2500.11,95.3,38.1\n")

WIND_INDEX = ("date,code,name,open,high,low,close\n"
              "2024-02-05,8841431.WI,万得微盘股指数,204149.3438,204149.3438,176606.2969,178625.8125\n"
              "2024-02-05,000300.SH,沪深300,3208.8,3251.2,3150.3,3200.7\n"
              "2024-02-06,8841431.WI,万得微盘股指数,169544.8281,178636.7031,158146.0469,171486.7031\n")

# a Wind EDB export: GBK, header + 4 metadata rows, newest first, a blank cell, a footer
EDB_COLUMNS = ["中债国债到期收益率:1年", "中债国债到期收益率:3年", "中债国债到期收益率:5年",
               "中债国债到期收益率:10年", "中债中短期票据到期收益率(AAA):1年",
               "中债中短期票据到期收益率(AAA):3年", "中债中短期票据到期收益率(AAA):5年"]
WIND_EDB = ("指标名称," + ",".join(EDB_COLUMNS) + "\n"
            "频率" + ",日" * 7 + "\n单位" + ",%" * 7 + "\n"
            "指标ID,S0059744,S0059746,S0059747,S0059749,S0059736,S0059738,S0059739\n"
            "来源" + ",中债估值中心" * 7 + "\n"
            "2024-01-03,2.0861,2.2803,2.3925,2.5415,2.3951,2.6870,2.8011\n"
            "2024-01-02,2.0925,2.2915,2.4023,2.5553,2.4055,,2.8132\n"
            "2023-12-31,2.0800,2.2900,2.4000,2.5500,2.4000,2.6800,2.8100\n"
            "\n数据来源：Wind\n")

CHINABOND_LONG = ("date,curve,tenor_years,yield_pct\n"
                  "2023-12-29,CGB,1,2.0825\n2023-12-29,CGB,10,2.5553\n"
                  "2023-12-29,MTN_AAA,3,2.7139\n2023-12-29,CGB,30,2.8300\n")


def write_bytes(tmp_path: Path, name: str, text: str, encoding: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def stored(db) -> dict[tuple[str, str], float]:
    return {(s, d): v for s, d, v in db.execute("SELECT series, date, value FROM observations")}


def mapped(name: str):
    from monitor.sources import mapping

    return mapping.load(MAPPINGS / name)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-8"])
def test_csindex_export_in_yi_yuan_is_stored_in_yuan(db, tmp_path, encoding):
    path = write_bytes(tmp_path, "csindex.csv", CSINDEX_EXPORT, encoding)
    [done] = import_report(db, [path], today=dt.date(2024, 1, 5),
                           mapping=mapped("csindex_export.toml"))
    assert stored(db) == {
        ("index.csi300.close", "2024-01-02"): 3386.35,
        ("index.csi300.amount", "2024-01-02"): 198_015_000_000.0,  # 1980.15 亿元, exactly
        ("index.csi300.close", "2024-01-03"): 3370.18,
        ("index.csi300.amount", "2024-01-03"): 183_225_000_000.0,
        ("index.csi1000.close", "2024-01-02"): 5790.73,
        ("index.csi1000.amount", "2024-01-02"): 145_061_000_000.0,
    }
    assert (done.read, done.values, done.written, done.unchanged) == (4, 6, 6, 0)
    assert done.unmapped == {"399303": 1}
    assert done.summary() == (
        f"{path} (mapping csindex_export.toml): 4 rows read, 6 values of 4 series: 6 written, "
        "0 unchanged, 1 rows of 1 code(s) not in the mapping ignored (399303)")
    [again] = import_report(db, [path], today=dt.date(2024, 1, 5),
                            mapping=mapped("csindex_export.toml"))
    assert (again.written, again.unchanged) == (0, 6)


def test_csindex_perf_skips_the_dragon_boat_holiday_row(db, tmp_path):
    path = write(tmp_path, "perf.csv", CSINDEX_PERF)
    [done] = import_report(db, [path], today=dt.date(2024, 1, 5), mapping=mapped("csindex_perf.toml"))
    assert stored(db) == {
        ("index.all_a.close", "2018-06-15"): 4391.55,
        ("index.all_a.amount", "2018-06-15"): 452_170_000_000.0,
        ("index.all_a.close", "2018-06-19"): 4253.02,
        ("index.all_a.amount", "2018-06-19"): 523_640_000_000.0,
        ("theme.930713.close", "2018-06-19"): 2500.11,
        ("theme.930713.amount", "2018-06-19"): 9_530_000_000.0,
    }
    assert done.skipped == {"2018-06-18": 1}
    assert done.empty == 0  # the holiday row's amount 0 is skipped with its row, not "empty"
    assert done.skipped_note() == (f"{path}: skipped 1 row(s) dated on 1 day(s) that are not XSHG "
                                   "trading days (weekend or exchange holiday): 2018-06-18")
    assert "1 skipped (non-trading days)" in done.summary()


def test_wind_index_export_gives_the_microcap_close(db, tmp_path):
    path = write_bytes(tmp_path, "wind.csv", WIND_INDEX, "utf-8-sig")
    import_report(db, [path], today=dt.date(2024, 3, 1), mapping=mapped("wind_index.toml"))
    assert stored(db) == {("index.microcap.close", "2024-02-05"): 178625.8125,
                          ("index.microcap.close", "2024-02-06"): 171486.7031,
                          ("index.csi300.close", "2024-02-05"): 3200.7}


def test_wind_edb_gbk_export_with_metadata_rows_footer_and_blank_cells(db, tmp_path):
    path = write_bytes(tmp_path, "edb.csv", WIND_EDB, "gbk")
    [done] = import_report(db, [path], today=dt.date(2024, 1, 5),
                           mapping=mapped("wind_edb_chinabond.toml"))
    rows = stored(db)
    assert len(rows) == 13  # 7 + 6 (one blank cell); 2023-12-31 (a Sunday) skipped
    assert rows[("yield.gov.10y", "2024-01-02")] == 2.5553  # percent, as published
    assert rows[("yield.credit.3y", "2024-01-03")] == 2.6870
    assert ("yield.credit.3y", "2024-01-02") not in rows
    assert (done.read, done.empty, done.footer, done.skipped) == (5, 1, 2, {"2023-12-31": 1})
    bad = write_bytes(tmp_path, "bad.csv", WIND_EDB.replace("2.2915", "2.29x"), "gbk")
    with pytest.raises(CsvImportError) as info:
        import_report(db, [bad], today=dt.date(2024, 1, 5), mapping=mapped("wind_edb_chinabond.toml"))
    # header line 1, four metadata lines, then 2024-01-03 on line 6 and 2024-01-02 on line 7
    assert str(info.value) == f"{bad}: line 7, column 中债国债到期收益率:3年: '2.29x' is not a number"


def test_chinabond_long_table_goes_to_gov_and_credit_yields_in_percent(db, tmp_path):
    path = write_bytes(tmp_path, "cb.csv", CHINABOND_LONG, "utf-8-sig")
    [done] = import_report(db, [path], today=dt.date(2024, 1, 5), mapping=mapped("chinabond_long.toml"))
    assert stored(db) == {("yield.gov.1y", "2023-12-29"): 2.0825,
                          ("yield.gov.10y", "2023-12-29"): 2.5553,
                          ("yield.credit.3y", "2023-12-29"): 2.7139}
    assert done.unmapped == {"CGB|30": 1}


def test_semicolon_chinabond_curve_through_an_own_mapping(db, tmp_path):
    mapping_file = tmp_path / "en.toml"
    mapping_file.write_text((MAPPINGS / "chinabond_curve.toml").read_text(encoding="utf-8")
                            .replace('date_column = "date"', 'date_column = "date"\ndelimiter = ";"'),
                            encoding="utf-8")
    path = write(tmp_path, "curve.csv", "curve;date;y_3m;y_6m;y_1y;y_3y;y_5y;y_7y;y_10y;y_30y\n"
                 "ChinaBond Government Bond Yield Curve;2023-12-29;1.9;1.95;2.0825;2.2915;2.4023;"
                 "2.5049;2.5553;2.8300\n")
    from monitor.sources import mapping

    import_report(db, [path], today=dt.date(2024, 1, 5), mapping=mapping.load(mapping_file))
    assert stored(db) == {("yield.gov.1y", "2023-12-29"): 2.0825, ("yield.gov.3y", "2023-12-29"): 2.2915,
                          ("yield.gov.5y", "2023-12-29"): 2.4023, ("yield.gov.7y", "2023-12-29"): 2.5049,
                          ("yield.gov.10y", "2023-12-29"): 2.5553}


BAD_MAPPINGS = [
    ('date_column = "d"\nfoo = 1\n[series]\nv = "yield.gov.1y"\n', "foo: unknown key"),
    ('[series]\nv = "yield.gov.1y"\n', "date_column: missing"),
    ('date_column = "d"\n[series]\nv = "index.hsi.close"\n',
     "series.v: 'index.hsi.close' is not a canonical series name"),
    ('date_column = "d"\n[scale]\nv = -1\n[series]\nv = "yield.gov.1y"\n',
     "scale.v: must be a number > 0"),
    ('date_column = "d"\n[scale]\nw = 100\n[series]\nv = "yield.gov.1y"\n',
     "scale.w: no series reads this column"),
    ('date_column = "d"\ndate_format = "%H:%M"\n[series]\nv = "yield.gov.1y"\n',
     "date_format: '%H:%M' is not a strptime date format"),
    ('date_column = "d"\nencoding = "klingon"\n[series]\nv = "yield.gov.1y"\n',
     "encoding: unknown encoding 'klingon'"),
    ('date_column = "d"\n[series."000300"]\nclose = "index.csi300.close"\n',
     "series.000300: a table needs code_columns"),
    ('date_column = "d"\ncode_columns = ["c"]\n[series]\nv = "yield.gov.1y"\n',
     "series.v: with code_columns, each code is a table"),
    ('date_column = "d"\n[series]\n', "series: missing or empty"),
    ('date_column = "d\n', "not valid TOML"),
]


@pytest.mark.parametrize("text,needle", BAD_MAPPINGS, ids=[b[1][:24] for b in BAD_MAPPINGS])
def test_bad_mapping_is_one_line_naming_file_and_key(tmp_path, capsys, text, needle):
    from monitor.sources import mapping

    path = write(tmp_path, "m.toml", text)
    with pytest.raises(mapping.MappingError) as info:
        mapping.load(path)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value)
    assert "\n" not in str(info.value)
    data = write(tmp_path, "d.csv", "d,v\n2024-01-02,2.1\n")
    db_path = tmp_path / "c.db"
    code = import_cli(db_path, "--mapping", str(path), str(data))
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and needle in err
    assert not db_path.exists() or open_db(db_path).execute(
        "SELECT COUNT(*) FROM observations").fetchone()[0] == 0


def test_missing_column_names_file_and_column_and_writes_nothing(db, tmp_path, capsys):
    good = write(tmp_path, "good.csv", GOOD)
    path = write(tmp_path, "perf.csv", CSINDEX_PERF.replace("amount_yi", "amount"))
    before = table_snapshot(db)
    with pytest.raises(CsvImportError) as info:
        import_report(db, [good, path], today=dt.date(2024, 1, 5),
                      mapping=mapped("csindex_perf.toml"))
    msg = str(info.value)
    assert msg.startswith(f"{good}: column 'code' (mapping csindex_perf.toml) is not in the header")
    with pytest.raises(CsvImportError) as info:
        import_report(db, [path], today=dt.date(2024, 1, 5), mapping=mapped("csindex_perf.toml"))
    msg = str(info.value)
    assert msg.startswith(f"{path}: column 'amount_yi' (mapping csindex_perf.toml) is not in the "
                          "header 'date,code,name,open,high,low,close,amount,pe'") and "\n" not in msg
    assert table_snapshot(db) == before
    code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(tmp_path / "c.db"), "import-csv",
                     "--mapping", str(MAPPINGS / "csindex_perf.toml"), str(path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "perf.csv: column 'amount_yi'" in err


def test_a_mapping_without_the_unit_multiplier_is_refused_with_a_hint(db, tmp_path):
    text = (MAPPINGS / "csindex_perf.toml").read_text(encoding="utf-8").replace(
        "amount_yi = 1e8 ", "# amount_yi = 1e8 ")
    no_scale = write(tmp_path, "noscale.toml", text)
    from monitor.sources import mapping

    path = write(tmp_path, "perf.csv", CSINDEX_PERF)
    with pytest.raises(CsvImportError) as info:
        import_report(db, [path], today=dt.date(2024, 1, 5), mapping=mapping.load(no_scale))
    assert str(info.value) == (
        f"{path}: line 2, column amount_yi, series index.all_a.amount: value 4521.7 is outside the "
        "plausible range 1e+08..1e+14 yuan; it looks like 1e8 yuan (亿元): convert to yuan")


def test_a_date_in_the_wrong_format_names_line_column_and_the_mapping_key(db, tmp_path):
    path = write(tmp_path, "perf.csv", CSINDEX_PERF.replace("2018-06-19,930713", "2018/06/19,930713"))
    with pytest.raises(CsvImportError, match=r"perf.csv: line 5, column date: '2018/06/19' is not a "
                       r"date in the format %Y-%m-%d \(mapping csindex_perf.toml: date_format\)$"):
        import_report(db, [path], today=dt.date(2024, 1, 5), mapping=mapped("csindex_perf.toml"))
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 0


def test_a_gbk_file_without_a_mapping_says_how_to_read_it(db, tmp_path):
    path = write_bytes(tmp_path, "gbk.csv", CSINDEX_EXPORT, "gbk")
    with pytest.raises(CsvImportError, match=r"gbk.csv: not a readable CSV file: .*can't decode "
                       r"byte .*: save it as UTF-8, or import it with --mapping"):
        import_files(db, [path])


def test_every_shipped_mapping_loads_and_names_canonical_series():
    from monitor.sources import mapping

    files = sorted(MAPPINGS.glob("*.toml"))
    assert [f.name for f in files] == ["chinabond_curve.toml", "chinabond_long.toml",
                                       "csindex_export.toml", "csindex_perf.toml",
                                       "wind_edb_chinabond.toml", "wind_index.toml"]
    for f in files:
        m = mapping.load(f)
        assert m.description and m.series()


# -- what an import reports (issue 14 bug 8) ----------------------------------------------------

def test_holdings_count_is_rows_of_the_file_not_fund_reports_and_derived_values(db, tmp_path):
    panel = write(tmp_path, "panel.csv", PANEL)
    dup = HOLDINGS + "2023-12-31,000011,远见成长混合A,600519,50000000\n"  # a second row, same stock
    holdings = write(tmp_path, "holdings.csv", dup)
    done = import_report(db, [holdings, panel], coverage="top10")
    h = done[0]
    assert (h.kind, h.read, h.values, h.written, h.unchanged, h.merged, h.derived) == (
        "holdings", 9, 8, 8, 0, 1, 3)
    assert db.execute("SELECT COUNT(*) FROM fund_holdings").fetchone()[0] == 8
    assert db.execute("SELECT COUNT(*) FROM fund_reports").fetchone()[0] == 6  # not counted
    assert h.summary() == (f"{holdings}: 9 rows read, 8 holdings (fund, stock, report date): "
                           "8 written, 0 unchanged, 1 duplicate rows summed into them; "
                           "3 funds.* values written")
    assert db.execute("SELECT holding_value FROM fund_holdings WHERE report_date = '2023-12-31' AND "
                      "fund_code = '000011' AND stock_code = '600519'").fetchone()[0] == 6.5e8
    again = import_report(db, [holdings, panel], coverage="top10")[0]
    assert (again.written, again.unchanged, again.derived) == (0, 8, 0)
    assert again.changed == 0
    # only a fund's name changed: its two report rows change, no holding does — the import says so
    # (the drop folder's "rows changed" and the run record count them, as before issue 14)
    (tmp_path / "v2").mkdir()  # the same file name: the report rows' source stays the same
    renamed = write(tmp_path / "v2", "holdings.csv", dup.replace("远见成长混合A", "远见成长混合A（更名）"))
    third = import_report(db, [renamed, panel], coverage="top10")[0]
    assert (third.written, third.unchanged, third.reports, third.changed) == (0, 8, 2, 2)


def test_cli_summary_warns_about_weekend_and_holiday_rows_and_prints_coverage(tmp_path, capsys):
    path = write(tmp_path, "w.csv", "date,series,value\n"
                 "2024-01-05,index.csi300.close,3386.35\n"
                 "2024-01-06,index.csi300.close,3390.00\n"  # a Saturday
                 "2024-02-12,index.csi300.close,3390.00\n"  # Spring Festival
                 "2024-01-08,index.csi300.close,3370.10\n"
                 "2024-01-08,yield.gov.3y,2.29\n")
    db_path = tmp_path / "c.db"
    assert import_cli(db_path, str(path)) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"warning: {path}: skipped 2 row(s) dated on 2 day(s) that are not "
                            "XSHG trading days (weekend or exchange holiday): 2024-01-06, "
                            "2024-02-12\n")
    lines = captured.out.splitlines()
    assert lines[0] == f"{path}: 5 rows read, 3 written, 0 unchanged, 2 skipped (non-trading days)"
    assert lines[1] == "coverage of the series imported:"
    assert lines[2].split() == ["series", "first", "last", "rows"]
    assert [line.split() for line in lines[4:]] == [
        ["index.csi300.close", "2024-01-05", "2024-01-08", "2"],
        ["yield.gov.3y", "2024-01-08", "2024-01-08", "1"]]
    assert dict(open_db(db_path).execute("SELECT date, value FROM observations WHERE series = "
                                         "'index.csi300.close'").fetchall()) == {
        "2024-01-05": 3386.35, "2024-01-08": 3370.1}


def test_coverage_counts_what_is_stored_not_only_what_the_file_held(tmp_path, capsys):
    db_path = tmp_path / "c.db"
    first = write(tmp_path, "a.csv", "date,series,value\n2024-01-02,index.csi300.close,3400\n")
    second = write(tmp_path, "b.csv", "date,series,value\n2024-01-03,index.csi300.close,3390\n")
    for path in (first, second):
        assert import_cli(db_path, str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].split() == ["index.csi300.close", "2024-01-02", "2024-01-03", "2"]


def test_panel_rows_on_closed_days_are_skipped_and_panel_coverage_shown(tmp_path, capsys):
    path = write(tmp_path, "panel.csv", "date,code,close,total_mv,is_st\n"
                 "2024-01-02,600519,1685.0,2116700000000,0\n"
                 "2024-01-01,600519,1685.0,2116700000000,0\n"  # New Year's Day
                 "2024-01-03,600519,1676.0,2105400000000,0\n"
                 "2024-01-03,000001,9.1,18100000000,0\n")
    db_path = tmp_path / "c.db"
    assert import_cli(db_path, str(path)) == 0
    captured = capsys.readouterr()
    assert "skipped 1 row(s) dated on 1 day(s)" in captured.err and "2024-01-01" in captured.err
    out = captured.out.splitlines()
    assert out[0] == f"{path}: 4 rows read, 3 written, 0 unchanged, 1 skipped (non-trading days)"
    assert out[-1].split() == ["stock_panel", "(2", "stocks)", "2024-01-02", "2024-01-03", "3"]


def test_skipped_note_names_the_first_five_dates(db, tmp_path):
    weekend = ["2024-01-06", "2024-01-07", "2024-01-13", "2024-01-14", "2024-01-20", "2024-01-21"]
    path = write(tmp_path, "w.csv", "date,series,value\n" + "".join(
        f"{d},index.csi300.close,3400\n" for d in weekend) + "2024-01-22,index.csi300.close,3400\n")
    [done] = import_report(db, [path], today=dt.date(2024, 2, 1))
    assert done.skipped_note() == (
        f"{path}: skipped 6 row(s) dated on 6 day(s) that are not XSHG trading days (weekend or "
        "exchange holiday): 2024-01-06, 2024-01-07, 2024-01-13, 2024-01-14, 2024-01-20, ...")
    assert db.execute("SELECT date FROM observations").fetchall() == [("2024-01-22",)]


# -- the real files through the shipped mappings ------------------------------------------------

def test_real_csindex_chinabond_and_wind_files_through_the_shipped_mappings(real_data, tmp_path,
                                                                           capsys):
    db_path = tmp_path / "real.db"
    files = [("csindex_perf.toml", real_data / "csindex_perf_aitheme" / "csindex_index_daily.csv"),
             ("chinabond_long.toml", real_data / "credit_spread_chinabond_tempest07"
              / "chinabond_cgb_mtn_aaa_yields_daily.csv"),
             ("wind_index.toml", real_data / "wind_index_ohlc_turtle" / "index_ohlc_daily.csv")]
    outs = []
    for mapping_name, path in files:
        assert import_cli(db_path, "--mapping", str(MAPPINGS / mapping_name), str(path)) == 0
        outs.append(capsys.readouterr())
    # CSIndex: the 2018-06-18 (Dragon Boat) rows of the six indices published that day are skipped
    assert outs[0].err == (f"warning: {files[0][1]}: skipped 6 row(s) dated on 1 day(s) that are "
                           "not XSHG trading days (weekend or exchange holiday): 2018-06-18\n")
    assert outs[0].out.splitlines()[0].startswith(f"{files[0][1]} (mapping csindex_perf.toml): "
                                                  "24,452 rows read, ")
    assert outs[0].out.splitlines()[0].endswith(
        "45,248 values of 16 series: 45,248 written, 0 unchanged, 6 skipped (non-trading days), "
        "1,822 rows of 1 code(s) not in the mapping ignored (931160)")
    db = open_db(db_path)
    one = dict(((s, d), v) for s, d, v in db.execute(
        "SELECT series, date, value FROM observations WHERE date IN ('2022-12-30', '2023-12-29', "
        "'2024-02-05')"))
    assert one[("index.csi300.amount", "2022-12-30")] == 148_295_000_000.0  # 1482.95 亿元
    assert one[("index.all_a.amount", "2022-12-30")] == 573_073_000_000.0  # 5730.73 亿元
    assert one[("index.csi300.close", "2022-12-30")] == 3871.6338  # Wind's, imported last
    assert db.execute("SELECT value FROM observation_revisions WHERE series = 'index.csi300.close' "
                      "AND date = '2022-12-30'").fetchone() == (3871.63,)  # CSIndex's, kept
    assert one[("yield.gov.10y", "2023-12-29")] == 2.5553  # percent (PROVENANCE: 2.5553)
    assert one[("yield.credit.3y", "2023-12-29")] == 2.7139
    assert one[("index.microcap.close", "2024-02-05")] == 178625.8125
    assert db.execute("SELECT COUNT(*) FROM observations WHERE date = '2018-06-18'").fetchone()[0] == 0
    coverage = {line.split()[0]: line.split()[1:] for line in outs[2].out.splitlines()[3:]}
    assert coverage["index.microcap.close"] == ["2005-04-05", "2026-06-18", "5,152"]
    assert coverage["index.csi2000.close"] == ["2013-12-31", "2026-06-18", "3,029"]


def test_real_fund_holdings_count_rows_written_not_fund_reports(real_data, tmp_path, capsys):
    """Bug 8 on the real top-10 holdings (two quarters, every fund whose code ends in 0): the
    summary counts the file's holdings; the fund-report rows and the derived funds.* values
    are said apart. The whole 542,901-row file reported 599,991 = 542,901 holdings + 57,066
    fund reports + 24 funds.* values."""
    import pandas as pd

    raw = pd.read_csv(real_data / "fund_top10_holdings_anchor"
                      / "fund_top10_a_share_holdings_2020Q4_2022Q4.csv.gz",
                      dtype={"fund_code": str, "stock_code": str})
    raw = raw[raw["quarter"].isin(["2022-Q3", "2022-Q4"]) & raw["fund_code"].str.endswith("0")
              & (raw["holding_mv_yi"] > 0)]
    holdings = pd.DataFrame({
        "report_date": raw["quarter"].map({"2022-Q3": "2022-09-30", "2022-Q4": "2022-12-31"}),
        "fund_code": raw["fund_code"], "fund_name": raw["fund_name"],
        "stock_code": raw["stock_code"], "holding_value": (raw["holding_mv_yi"] * 1e8).round(2)})
    holdings_path = tmp_path / "holdings.csv"
    holdings.to_csv(holdings_path, index=False)
    wide = real_data / "ashare_stock_panel_liuruojiang" / "total_mv_yi_wide_2014_2024.csv.gz"
    days = pd.read_csv(wide, usecols=[0]).iloc[:, 0]
    lines = {int(days[days <= d].index[-1]) + 1 for d in ("2022-09-30", "2022-12-31")}
    caps = pd.read_csv(wide, skiprows=lambda i: i > 0 and i not in lines, index_col=0)
    panel = caps.stack().rename("total_mv").reset_index()
    panel.columns = ["date", "code", "total_mv"]
    panel = panel.assign(close="", total_mv=(panel["total_mv"] * 1e8).round(0), is_st=0)
    panel_path = tmp_path / "panel.csv"
    panel[["date", "code", "close", "total_mv", "is_st"]].to_csv(panel_path, index=False)

    db_path = tmp_path / "h.db"
    assert import_cli(db_path, str(holdings_path), str(panel_path)) == 0
    out = capsys.readouterr().out.splitlines()
    db = open_db(db_path)
    n, funds = len(holdings), db.execute("SELECT COUNT(*) FROM fund_reports").fetchone()[0]
    positions = len(holdings.drop_duplicates(["report_date", "fund_code", "stock_code"]))
    assert n > 10_000 and funds > 1_000 and positions == n  # no duplicate rows in this source
    assert db.execute("SELECT COUNT(*) FROM fund_holdings").fetchone()[0] == n
    derived = db.execute("SELECT COUNT(*) FROM observations WHERE series LIKE 'funds.%'").fetchone()[0]
    assert derived == 3  # Q4 only: Q3 has no report before it here
    assert out[0] == (f"{holdings_path}: {n:,} rows read, {n:,} holdings (fund, stock, report "
                      f"date): {n:,} written, 0 unchanged; 3 funds.* values written")
    assert out[1] == f"{panel_path}: {len(panel):,} rows read, {len(panel):,} written, 0 unchanged"
    assert "funds.smallcap_count" in "\n".join(out[2:])
