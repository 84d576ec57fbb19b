"""Active-fund small-cap allocation from holdings (signals.fund_allocation, SIGNALS.md section 6).

Hand-computed fixtures for shares, the two-consecutive-reports rule, mean and total; the name and
type filter; share-class merging; point-in-time availability; and the real anchor top-10 holdings
2020-Q4 .. 2022-Q4 with the liuruojiang market-cap panel.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from monitor.calendar import TradingCalendar
from signals import fund_allocation as fa
from storage.db import open_db
from storage.observations import load_frame, upsert

YI = 1e8  # yuan per 亿元
T1, T2 = pd.Timestamp("2023-03-31"), pd.Timestamp("2023-06-30")
CAPS = pd.DataFrame(  # total market cap, yuan; S3 crosses 10 bn between the two reports; S4 unknown
    {"S1": [5e9, 5e9], "S2": [50e9, 50e9], "S3": [8e9, 12e9]}, index=[T1, T2])


def holdings(rows: list[tuple]) -> pd.DataFrame:
    """(report date, fund code, fund name, stock code, value in 1e8 yuan) -> holdings frame (yuan)."""
    f = pd.DataFrame(rows, columns=["report_date", "fund_code", "fund_name", "stock_code", "value_yi"])
    return f.assign(holding_value=f.pop("value_yi") * YI)


# Three funds, two reports. Shares:          T1           T2
#   000001 甲成长混合A      S1 40, S2 60 -> 0.40 | S1 50, S2 50, S4 100 (cap unknown) -> 0.50
#   000002 乙价值股票       S1 20, S2 80 -> 0.20 | S1 35, S3 35 (now 12 bn), S2 30      -> 0.35
#   000003 丙精选灵活配置混合 S3 90, S2 10 -> 0.90 | S1 60, S2 40                         -> 0.60
# Small-cap funds at T2: 000001 and 000003 (000002 was 0.20 at T1) -> count 2, mean 0.55,
# total 50 + 60 = 110 yi. Unknown-cap value share at T2: 100 / 400.
BASE = [
    (T1, "000001", "甲成长混合A", "S1", 40), (T1, "000001", "甲成长混合A", "S2", 60),
    (T1, "000002", "乙价值股票", "S1", 20), (T1, "000002", "乙价值股票", "S2", 80),
    (T1, "000003", "丙精选灵活配置混合", "S3", 90), (T1, "000003", "丙精选灵活配置混合", "S2", 10),
    (T2, "000001", "甲成长混合A", "S1", 50), (T2, "000001", "甲成长混合A", "S2", 50),
    (T2, "000001", "甲成长混合A", "S4", 100),
    (T2, "000002", "乙价值股票", "S1", 35), (T2, "000002", "乙价值股票", "S3", 35),
    (T2, "000002", "乙价值股票", "S2", 30),
    (T2, "000003", "丙精选灵活配置混合", "S1", 60), (T2, "000003", "丙精选灵活配置混合", "S2", 40),
]


def series(rows=BASE, caps=CAPS, fund_types=None, lag=fa.QUARTERLY_PUBLICATION_LAG_DAYS,
           coverage="top10") -> pd.DataFrame:
    return fa.allocation_series(holdings(rows), caps, fund_types, coverage=coverage,
                                publication_lag_days=lag).set_index("date")


# --- per-fund shares -----------------------------------------------------------------------------

def test_fund_shares_by_hand():
    got = fa.fund_smallcap_shares(holdings(BASE), CAPS).set_index(["report_date", "fund_code"])
    expected = {
        (T1, "000001"): (40, 100, 0.40, 0, 0), (T1, "000002"): (20, 100, 0.20, 0, 0),
        (T1, "000003"): (90, 100, 0.90, 0, 0), (T2, "000001"): (50, 100, 0.50, 1, 100),
        (T2, "000002"): (35, 100, 0.35, 0, 0), (T2, "000003"): (60, 100, 0.60, 0, 0),
    }
    assert list(got.index) == sorted(expected)
    for key, (small, stock, share, n_unknown, unknown) in expected.items():
        row = got.loc[key]
        assert row["smallcap_value"] == pytest.approx(small * YI)
        assert row["stock_value"] == pytest.approx(stock * YI)
        assert row["smallcap_share"] == pytest.approx(share)
        assert row["unknown_cap_count"] == n_unknown
        assert row["unknown_cap_value"] == pytest.approx(unknown * YI)


def test_small_cap_means_strictly_below_10bn_on_the_report_date():
    caps = pd.Series({"S1": 9_999_999_999.0, "S2": 10e9})  # one report date: caps by stock code
    rows = [(T1, "000001", "甲混合", "S1", 30), (T1, "000001", "甲混合", "S2", 70)]
    got = fa.fund_smallcap_shares(holdings(rows), caps)
    assert got["smallcap_share"].tolist() == [pytest.approx(0.30)]


def test_all_caps_unknown_gives_nan_share_not_zero():
    rows = [(T1, "000001", "甲混合", "S9", 10)]
    got = fa.fund_smallcap_shares(holdings(rows), CAPS).iloc[0]
    assert got["stock_value"] == 0 and np.isnan(got["smallcap_share"])
    assert got["unknown_cap_count"] == 1 and got["unknown_cap_value"] == pytest.approx(10 * YI)


def test_market_cap_shapes_agree_and_weekend_report_dates_use_the_last_row_before():
    q4 = pd.Timestamp("2022-12-31")  # a Saturday: caps from Friday 2022-12-30
    rows = [(q4, "000001", "甲混合", "S1", 40), (q4, "000001", "甲混合", "S2", 60)]
    daily = pd.DataFrame({"S1": [20e9, 5e9, 30e9], "S2": [50e9, 50e9, 1e9]},
                         index=["2022-12-29", "2022-12-30", "2023-01-03"])
    multi = pd.Series([5e9, 50e9], index=pd.MultiIndex.from_tuples([(q4, "S1"), (q4, "S2")]))
    for caps in (daily, multi, pd.Series({"S1": 5e9, "S2": 50e9})):
        assert fa.fund_smallcap_shares(holdings(rows), caps)["smallcap_share"].iloc[0] == \
            pytest.approx(0.40)
    stale = daily.loc[["2022-12-29"]].set_axis(["2022-12-20"])
    with pytest.raises(ValueError, match="no row within"):
        fa.fund_smallcap_shares(holdings(rows), stale)


def test_negative_or_missing_values_are_refused():
    rows = [(T1, "000001", "甲混合", "S1", -1.0)]
    with pytest.raises(ValueError, match=">= 0"):
        fa.fund_smallcap_shares(holdings(rows), CAPS)


# --- the quarterly series ------------------------------------------------------------------------

def test_series_by_hand():
    s = series()
    assert list(s.index) == [T1, T2]
    assert s["funds_active"].tolist() == [3, 3]
    # first report: no previous one -> NaN (not 0)
    assert s.loc[T1, ["funds_smallcap", "smallcap_share_mean", "smallcap_value_total"]].isna().all()
    assert s.loc[T2, "funds_smallcap"] == 2
    assert s.loc[T2, "smallcap_share_mean"] == pytest.approx((0.50 + 0.60) / 2)
    assert s.loc[T2, "smallcap_value_total"] == pytest.approx((50 + 60) * YI)
    assert s["unknown_cap_value_share"].tolist() == pytest.approx([0.0, 100 / 400])
    assert (s["coverage"] == "top10").all()


def test_two_consecutive_reports_are_needed_and_the_threshold_is_strict():
    rows = [r for r in BASE if r[1] != "000003"] + [
        (T1, "000003", "丙精选灵活配置混合", "S1", 90), (T1, "000003", "丙精选灵活配置混合", "S2", 10),
        (T2, "000003", "丙精选灵活配置混合", "S1", 30), (T2, "000003", "丙精选灵活配置混合", "S2", 70),
        # a fund new at T2 with a high share: no previous report -> not a small-cap fund
        (T2, "000004", "丁新锐混合", "S1", 100),
    ]
    s = series(rows)
    assert s.loc[T2, "funds_active"] == 4
    assert s.loc[T2, "funds_smallcap"] == 1  # 000001 only: 000003 is exactly 0.30 at T2
    assert s.loc[T2, "smallcap_share_mean"] == pytest.approx(0.50)
    assert s.loc[T2, "smallcap_value_total"] == pytest.approx(50 * YI)


def test_no_small_cap_fund_gives_count_0_total_0_and_mean_nan():
    rows = [r for r in BASE if r[1] == "000002"]
    s = series(rows)
    assert s.loc[T2, "funds_smallcap"] == 0 and s.loc[T2, "smallcap_value_total"] == 0
    assert np.isnan(s.loc[T2, "smallcap_share_mean"])


def test_a_report_without_active_funds():
    etf = [(T1, "510300", "华泰柏瑞沪深300ETF", "S1", 100)]
    s = series(etf + [r for r in BASE if r[0] == T2])
    assert s["funds_active"].tolist() == [0, 3]
    assert np.isnan(s.loc[T1, "unknown_cap_value_share"])
    assert s.loc[T2, "funds_smallcap"] == 0  # a previous report exists, without active funds
    assert series(etf)["funds_active"].tolist() == [0]


def test_passive_funds_are_left_out_and_fund_types_take_precedence():
    etf = [(d, "510300", "华泰柏瑞沪深300ETF", "S1", 100) for d in (T1, T2)]
    s = series(BASE + etf)
    assert s["funds_active"].tolist() == [3, 3] and s.loc[T2, "funds_smallcap"] == 2
    # by type: 000003 is an index fund, the ETF is declared a stock fund
    s = series(BASE + etf, fund_types={"000003": "指数型-股票", "510300": "股票型"})
    assert s["funds_active"].tolist() == [3, 3]
    assert s.loc[T2, "funds_smallcap"] == 2  # 000001 (0.4, 0.5) and 510300 (1.0, 1.0)
    assert s.loc[T2, "smallcap_value_total"] == pytest.approx((50 + 100) * YI)


def test_share_classes_count_once_and_their_slices_add_up():
    # C class: its own slice (values 1/10 of A's); H class: repeats A's values (counted once)
    c = [(d, "000010", "甲成长混合C", s, v / 10) for d, code, _, s, v in BASE if code == "000001"]
    h = [(d, "960001", "甲成長混合H", s, v) for d, code, _, s, v in BASE if code == "000001"]
    s = series(BASE + c + h)
    assert s["funds_active"].tolist() == [3, 3]
    assert s["fund_codes_active"].tolist() == [5, 5]
    assert s.loc[T2, "funds_smallcap"] == 2
    assert s.loc[T2, "smallcap_share_mean"] == pytest.approx(0.55)
    assert s.loc[T2, "smallcap_value_total"] == pytest.approx((50 + 5 + 60) * YI)

    merged = fa.merge_share_classes(holdings(BASE + c + h))
    one = merged[(merged["report_date"] == T2) & (merged["stock_code"] == "S1")]
    assert one["fund_code"].tolist() == ["000001", "000002", "000003"]
    assert one.iloc[0]["member_codes"] == "000001,000010,960001"
    assert one.iloc[0]["holding_value"] == pytest.approx(55 * YI)


def test_a_fund_stays_linked_when_a_lower_code_class_appears():
    # At T1 only the A class 519001; at T2 a new C class 012345 is the smallest code.
    rows = [(T1, "519001", "戊成长混合A", "S1", 80), (T1, "519001", "戊成长混合A", "S2", 20),
            (T2, "519001", "戊成长混合A", "S1", 70), (T2, "519001", "戊成长混合A", "S2", 30),
            (T2, "012345", "戊成长混合C", "S1", 7), (T2, "012345", "戊成长混合C", "S2", 3)]
    s = series(rows)
    assert s.loc[T2, "funds_active"] == 1 and s.loc[T2, "funds_smallcap"] == 1
    assert s.loc[T2, "smallcap_value_total"] == pytest.approx(77 * YI)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="coverage"):
        series(coverage="top-10")
    for lag in (-1, 1.5, True):
        with pytest.raises(ValueError, match="publication_lag_days"):
            series(lag=lag)


# --- point in time -------------------------------------------------------------------------------

def test_available_at_is_report_date_plus_lag():
    for lag in (0, 21, fa.QUARTERLY_PUBLICATION_LAG_DAYS, fa.ANNUAL_PUBLICATION_LAG_DAYS):
        s = series(lag=lag)
        assert (s["available_at"] == s.index + pd.Timedelta(days=lag)).all()


def test_observations_carry_coverage_and_skip_nan():
    s = fa.allocation_series(holdings(BASE), CAPS, coverage="full", publication_lag_days=62)
    obs = fa.to_observations(s)
    assert obs == [
        ("funds.smallcap_count", "2023-06-30", 2.0, "2023-08-31", "holdings:full"),
        ("funds.smallcap_share_mean", "2023-06-30", pytest.approx(0.55), "2023-08-31", "holdings:full"),
        ("funds.smallcap_value_total", "2023-06-30", pytest.approx(110 * YI), "2023-08-31",
         "holdings:full"),
    ]


def test_a_consumer_filtering_available_at_never_sees_a_report_before_its_lag(db_path):
    lag = fa.QUARTERLY_PUBLICATION_LAG_DAYS
    q3, q4 = pd.Timestamp("2022-09-30"), pd.Timestamp("2022-12-31")  # 2022-12-31 is a Saturday
    rows = [(d, "000001", "甲成长混合A", s, v) for d in (q3, q4) for s, v in (("S1", 40), ("S2", 60))]
    caps = pd.DataFrame({"S1": [5e9, 5e9], "S2": [50e9, 50e9]}, index=[q3, q4])
    frame = fa.allocation_series(holdings(rows), caps, coverage="top10", publication_lag_days=lag)
    obs = fa.to_observations(frame)
    assert {o[1] for o in obs} == {"2022-12-30"}  # dated by the last trading day of the quarter
    published = (q4 + pd.Timedelta(days=lag)).date()
    assert {o[3] for o in obs} == {published.isoformat()}

    # the plain rule on the rows ...
    day = dt.date(2022, 12, 1)
    while day <= dt.date(2023, 3, 31):
        seen = [o for o in obs if o[3] <= day.isoformat()]
        assert len(seen) == (3 if day >= q4.date() + dt.timedelta(days=lag) else 0)
        day += dt.timedelta(days=1)

    # ... and through storage, as the cycle reads them
    db = open_db(db_path)
    assert upsert(db, obs) == 3
    cal = TradingCalendar()
    days = cal.days(dt.date(2022, 12, 1), dt.date(2023, 2, 28))
    names = list(fa.SERIES.values())
    before = load_frame(db, names, days, published - dt.timedelta(days=1))
    after = load_frame(db, names, days, published)
    assert before.isna().all().all()
    assert after.loc["2022-12-30", "funds.smallcap_count"] == 1.0
    assert after.loc["2022-12-30", "funds.smallcap_share_mean"] == pytest.approx(0.40)


# --- the active-equity filter and share classes --------------------------------------------------

ACTIVE_NAMES = [  # names from the anchor top-10 holdings file
    ("华夏成长混合", True),
    ("中欧医疗健康混合A", True),
    ("兴全趋势投资混合(LOF)", True),  # a LOF that is a mixed fund
    ("平安医疗健康灵活配置混合", True),
    ("华商高端装备制造股票", True),
    ("长江量化消费精选股票C", True),  # active quant
    ("招商品质发现混合A", True),  # contains the string 商品
    ("华泰柏瑞量化增强混合A", True),  # 增强 without an index benchmark (a documented limit)
    ("嘉实研究增强灵活配置混合", True),
    ("富国沪深300基本面精选股票A", True),
    ("创金合信同顺创业板精选股票A", True),
    ("景顺长城策略精选", True),  # no type word, no index
    ("国新国证新锐灵活配置混合", True),  # 国新国证 is the manager
    ("匯添富價值精選混合型證券投資基金 O", True),
    ("宝盈祥瑞养老混合A", True),
    ("国泰中证500ETF", False),
    ("华夏中证科创创业50交易型开放式指数证券投资基金", False),
    ("易方达沪深300医药卫生ETF联接C", False),
    ("博道沪深300指数增强C", False),
    ("华安沪深300增强A", False),  # enhanced index without 指数
    ("南方中证500量化增强股票A", False),
    ("工银创业板ET", False),  # truncated ETF
    ("华安中证银行A", False),  # index fund, name shortened
    ("申万菱信深证成指（LOF）A", False),
    ("华宝消费龙头（LOF）C", False),  # index LOF without 指数
    ("国联安双力中小板综指 (LOF)", False),
    ("南方中证互联网指数（LOF）", False),
    ("中欧双利债券A", False),
    ("华泰紫金丰和偏债混合发起A", False),
    ("汇添富全球医疗保健混合(QDII)美元现钞", False),
    ("华夏聚丰稳健目标风险混合（FOF）C", False),
    ("工银瑞信优选对冲策略灵活配置混合C", False),
    ("富国绝对收益多策略定期开放混合C", False),
    ("嘉实对冲套利定期开放混合", False),
    ("华夏现金增利货币A", False),
]


@pytest.mark.parametrize(("name", "active"), ACTIVE_NAMES)
def test_active_equity_by_name(name, active):
    assert fa.is_active_equity(name) is active


@pytest.mark.parametrize(("fund_type", "active"), [
    ("股票型", True), ("混合型-偏股", True), ("混合型-灵活", True), ("混合型-平衡", True),
    ("普通股票型基金", True), ("偏股混合型基金", True), ("灵活配置型基金", True),
    ("混合型-偏债", False), ("混合型-绝对收益", False), ("指数型-股票", False),
    ("指数型-海外股票", False), ("债券型-长债", False), ("债券型-混合债", False), ("货币型", False),
    ("QDII", False), ("QDII-指数", False), ("FOF", False), ("商品（不含QDII）", False),
    ("REITs", False), ("被动指数型基金", False), ("增强指数型基金", False), ("股票多空", False),
])
def test_fund_type_takes_precedence_over_the_name(fund_type, active):
    assert fa.is_active_equity("华夏成长混合", fund_type) is active
    assert fa.is_active_equity("华安沪深300增强A", fund_type) is active


@pytest.mark.parametrize("missing", [None, "", "  ", float("nan")])
def test_missing_fund_type_falls_back_to_the_name(missing):
    assert fa.is_active_equity("华夏成长混合", missing) is True
    assert fa.is_active_equity("华安沪深300增强A", missing) is False


@pytest.mark.parametrize(("a", "b"), [
    ("中欧医疗健康混合A", "中欧医疗健康混合C"),
    ("中欧新趋势混合(LOF) -E", "中欧新趋势混合（LOF）A"),
    ("融通通慧混合A/B", "融通通慧混合C"),
    ("华夏大盘精选混合", "华夏大盘精选混合A"),
    ("汇添富价值精选混合A", "匯添富價值精選混合型證券投資基金 O"),
    ("汇丰晋信大盘股票A", "滙豐晉信大盤股票型證券投資基金 H"),
    ("东方红新源三年持有期混合型证券投资基金B", "东方红新源三年持有混合B"),
    ("易方达全球成长精选混合（QDII）A（人民币份额）", "易方达全球成长精选混合（QDII）C（美元现汇份额）"),
    ("富兰克林国海潜力组合混合A 人民币", "富兰克林国海潜力组合混合H 人民币"),
    ("华宝中证100ETF联接A", "华宝中证100ETF联接C"),
])
def test_share_classes_of_one_fund_have_one_key(a, b):
    assert fa.share_class_key(a) == fa.share_class_key(b)


@pytest.mark.parametrize(("a", "b"), [
    ("汇添富价值精选混合A", "汇添富中盘价值精选混合A"),
    ("汇丰晋信大盘股票A", "汇丰晋信大盘波动精选股票A"),
    ("华宝中证100ETF", "华宝中证100ETF联接A"),
    ("华宝中证100指数A", "华宝中证1000指数A"),
])
def test_different_funds_keep_different_keys(a, b):
    assert fa.share_class_key(a) != fa.share_class_key(b)


def test_class_key_keeps_etf_lof_and_qdii():
    assert fa.share_class_key("国泰中证500ETF") == "国泰中证500ETF"
    assert fa.share_class_key("兴全趋势投资混合(LOF)") == "兴全趋势投资混合(LOF)"
    assert fa.share_class_key("国富大中华精选混合QDII美元") == "国富大中华精选混合QDII"
    assert fa.share_class_key("中欧医疗健康混合C") == "中欧医疗健康混合"


# --- real data -----------------------------------------------------------------------------------

HOLDINGS_FILE = "fund_top10_holdings_anchor/fund_top10_a_share_holdings_2020Q4_2022Q4.csv.gz"
MV_FILE = "ashare_stock_panel_liuruojiang/total_mv_yi_wide_2014_2024.csv.gz"


@pytest.fixture(scope="module")
def real(real_data):
    """The anchor top-10 holdings (yuan, quarter-end report dates) and the market-cap panel
    (yuan), each loaded once; and the allocation series computed from them."""
    raw = pd.read_csv(real_data / HOLDINGS_FILE, dtype={"fund_code": str, "stock_code": str})
    ym = raw["quarter"].str.extract(r"^(\d{4})-Q([1-4])$").astype(int)
    report = pd.PeriodIndex.from_fields(year=ym[0], quarter=ym[1], freq="Q").end_time.normalize()
    # 121 rows (funds with a negative 基金规模 in the source, e.g. 华安中证银行C 2022-Q2) have a
    # negative holding_mv_yi: a source artifact, read as 0 (the class's size is unknown).
    hold = pd.DataFrame({"report_date": report, "fund_code": raw["fund_code"],
                         "fund_name": raw["fund_name"], "stock_code": raw["stock_code"],
                         "holding_value": raw["holding_mv_yi"].clip(lower=0) * YI})
    mv = pd.read_csv(real_data / MV_FILE, index_col=0)
    mv.index = pd.to_datetime(mv.index)
    # caps from the last trading day on or before each quarter end; a stock suspended that day
    # keeps its last traded cap (last close x shares)
    caps = (mv.loc["2020-06-01":"2023-01-31"] * YI).ffill()
    result = fa.allocation_series(hold, caps, coverage="top10",
                                  publication_lag_days=fa.QUARTERLY_PUBLICATION_LAG_DAYS)
    return raw, hold, caps, result


@pytest.mark.realdata
def test_real_loading_sanity(real):
    raw, hold, _, _ = real
    moutai = raw[(raw["quarter"] == "2022-Q4") & (raw["stock_code"] == "600519")]
    assert moutai["holding_mv_yi"].sum() == pytest.approx(1573.33, abs=0.005)
    assert moutai["fund_code"].nunique() == 2507
    assert hold["report_date"].nunique() == 9
    assert (raw["holding_mv_yi"] < 0).sum() == 121


@pytest.mark.realdata
def test_real_allocation_series_2020q4_2022q4(real):
    _, _, _, s = real
    table = s.assign(date=s["date"].dt.date, smallcap_value_total_yi=s["smallcap_value_total"] / YI)
    print("\n" + table[["date", "funds_active", "fund_codes_active", "funds_smallcap",
                        "smallcap_share_mean", "smallcap_value_total_yi",
                        "unknown_cap_value_share"]].to_string(index=False, float_format="%.4f"))

    assert len(s) == 9
    assert s["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2020-12-31", "2021-03-31", "2021-06-30", "2021-09-30", "2021-12-31",
        "2022-03-31", "2022-06-30", "2022-09-30", "2022-12-31"]
    assert (s["coverage"] == "top10").all()
    assert (s["available_at"] == s["date"] + pd.Timedelta(days=30)).all()
    assert s["funds_active"].between(2000, 6000).all()  # merged funds, thousands
    assert (s["fund_codes_active"] > s["funds_active"]).all()  # A/C classes were merged
    # first report: no previous one -> NaN; later: some small-cap funds
    assert s.loc[0, ["funds_smallcap", "smallcap_share_mean", "smallcap_value_total"]].isna().all()
    later = s.iloc[1:]
    assert (later["funds_smallcap"] > 0).all()
    assert (later["funds_smallcap"] < later["funds_active"]).all()
    assert later["smallcap_share_mean"].between(fa.SHARE_THRESHOLD, 1.0).all()
    assert (later["smallcap_value_total"] > 0).all()
    assert s["unknown_cap_value_share"].between(0.0, 0.05).all()  # e.g. 601166 has no cap
    assert len(fa.to_observations(s)) == 3 * 8


@pytest.mark.realdata
def test_real_fund_shares_are_fractions_and_classes_merge(real):
    _, hold, caps, _ = real
    q4 = hold[hold["report_date"] == "2022-12-31"]
    merged = fa.merge_share_classes(q4)
    shares = fa.fund_smallcap_shares(merged, caps)["smallcap_share"].dropna()
    assert len(shares) > 5000 and shares.between(0.0, 1.0).all()
    # 中欧医疗健康混合 A (003095) and C (003096): one fund whose 300015 holding is A's + C's slice
    row = merged[(merged["fund_code"] == "003095") & (merged["stock_code"] == "300015")]
    assert row["member_codes"].tolist() == ["003095,003096"]
    assert row["holding_value"].iloc[0] == pytest.approx((29.8055 + 34.4608) * YI)
    assert not (merged["fund_code"] == "003096").any()
