"""Recorded AKShare frames (akshare 1.19.5): the real column names, dtypes and units of each function.

Column lists are copied from the installed akshare 1.19.5 source (the ``temp_df.columns = [...]`` /
``rename`` / selection of each function). Values are those published for 2024-01-02 .. 2024-01-05
(CSIndex, EastMoney and ChinaBond values as re-published in ../shared/data/real; the spot list of
2024-01-05 from the reference panel's closes and caps), except where a comment says they are
illustrative. Each function returns a fresh frame, so tests may modify it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

DAYS = ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")

# --- stock_zh_index_hist_csindex (csindex.com.cn) -------------------------------------------------
CSINDEX_COLUMNS = ["日期", "指数代码", "指数中文全称", "指数中文简称", "指数英文全称", "指数英文简称", "开盘",
                   "最高", "最低", "收盘", "涨跌", "涨跌幅", "成交量", "成交金额", "样本数量", "滚动市盈率"]
# code: (full name, short name, English full name, English short name, constituents,
#        [(open, high, low, close, amount in 亿元, rolling P/E)] per day of DAYS)
CSINDEX_DATA = {
    "000300": ("沪深300指数", "沪深300", "CSI 300 Index", "CSI 300", 300, [
        (3426.27, 3426.27, 3386.35, 3386.35, 1840.96, 10.57),
        (3379.75, 3392.85, 3362.66, 3378.30, 1650.99, 10.57),
        (3375.02, 3375.02, 3323.86, 3347.05, 1655.12, 10.50),
        (3341.31, 3372.54, 3313.55, 3329.11, 1822.52, 10.45)]),
    "000905": ("中证小盘500指数", "中证500", "CSI Smallcap 500 Index", "CSI 500", 500, [
        (5431.48, 5439.48, 5409.46, 5409.46, 1068.40, 21.86),
        (5398.29, 5428.52, 5373.83, 5401.40, 998.84, 21.83),
        (5395.14, 5395.14, 5331.89, 5355.32, 910.11, 21.64),
        (5347.07, 5373.68, 5260.59, 5281.87, 1010.85, 21.34)]),
    "000852": ("中证1000指数", "中证1000", "CSI 1000 Index", "CSI 1000", 1000, [
        (5891.17, 5891.23, 5854.59, 5854.75, 1413.52, 34.73),
        (5838.55, 5861.41, 5785.25, 5824.04, 1311.79, 34.55),
        (5814.94, 5814.94, 5753.47, 5783.02, 1126.43, 34.31),
        (5779.76, 5796.76, 5652.13, 5675.81, 1266.83, 33.67)]),
    "932000": ("中证2000指数", "中证2000", "CSI 2000 Index", "CSI 2000", 2000, [
        (2402.23, 2413.30, 2395.23, 2402.03, 2328.19, 51.20),
        (2395.52, 2404.11, 2371.29, 2389.21, 2274.51, 50.93),
        (2385.66, 2385.91, 2371.61, 2382.00, 1994.49, 50.77),
        (2381.73, 2389.58, 2324.11, 2334.87, 2130.70, 49.77)]),
    "000985": ("中证全指指数", "中证全指", "CSI All Share Index", "CSI All Share", 5092, [
        (4421.16, 4421.16, 4390.83, 4390.83, 7698.27, 13.62),
        (4381.09, 4395.63, 4352.73, 4376.82, 7186.54, 13.60),
        (4371.91, 4371.91, 4322.58, 4344.00, 6561.39, 13.52),
        (4339.09, 4358.88, 4273.72, 4292.79, 7163.49, 13.39)]),
    "930713": ("中证人工智能主题指数", "CS人工智", "CSI Artificial Intelligence Theme Index", "CSI AI", 80, [
        (2623.53, 2625.59, 2565.25, 2565.37, 245.18, 44.60),
        (2552.86, 2554.87, 2478.54, 2493.99, 286.66, 43.24),
        (2492.44, 2492.98, 2448.59, 2462.33, 242.37, 42.68),
        (2458.06, 2469.24, 2398.81, 2413.08, 238.84, 41.96)]),
    "H30184": ("中证全指半导体产品与设备指数", "半导体", "CSI All Share Semiconductor Products & Equipment "
               "Index", "CSI Semiconductor", 120, [
        (5005.33, 5005.33, 4912.91, 4912.91, 232.63, 54.10),
        (4897.21, 4922.45, 4799.69, 4821.91, 233.49, 53.18),
        (4816.15, 4819.21, 4721.10, 4752.80, 213.15, 52.48),
        (4740.16, 4788.87, 4640.24, 4670.21, 199.49, 51.63)]),
}


def csindex(symbol: str) -> pd.DataFrame:
    """``stock_zh_index_hist_csindex(symbol, start_date, end_date)``; 成交金额 in 亿元 (1e8 yuan);
    成交量 as published (not used; illustrative); 日期 as ``datetime.date`` (akshare ``.dt.date``)."""
    full, short, en_full, en_short, count, days = CSINDEX_DATA[symbol]
    rows, prev = [], None
    for day, (o, h, lo, c, amount, pe) in zip(DAYS, days, strict=True):
        change = 0.0 if prev is None else round(c - prev, 2)
        pct = 0.0 if prev is None else round((c / prev - 1) * 100, 2)
        rows.append([dt.date.fromisoformat(day), symbol, full, short, en_full, en_short, o, h, lo, c,
                     change, pct, round(amount * 7.1, 2), amount, count, pe])
        prev = c
    return pd.DataFrame(rows, columns=CSINDEX_COLUMNS)


# --- index_zh_a_hist (EastMoney) -------------------------------------------------------------------
EM_INDEX_COLUMNS = ["日期", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "振幅", "涨跌幅", "涨跌额",
                    "换手率"]
EM_INDEX_DATA = {  # code: [(open, close, high, low, volume 手, amount yuan)]
    "000300": [(3426.27, 3386.35, 3426.27, 3386.35, 116180726, 184096097448.7),
               (3379.75, 3378.30, 3392.85, 3362.66, 105613851, 165099018642.5),
               (3375.02, 3347.05, 3375.02, 3323.86, 106721013, 165512262698.6),
               (3341.31, 3329.11, 3372.54, 3313.55, 126400574, 182251664948.1)],
    "932000": [(2402.23, 2402.03, 2413.30, 2395.23, 224661806, 232819372032.0),
               (2395.52, 2389.21, 2404.11, 2371.29, 219521364, 227450896384.0),
               (2385.66, 2382.00, 2385.91, 2371.61, 192773673, 199449464832.0),
               (2381.73, 2334.87, 2389.58, 2324.11, 207748032, 213069553664.0)],
    "000985": [(4421.16, 4390.83, 4421.16, 4390.83, 673663501, 769827165163.0),
               (4381.09, 4376.82, 4395.63, 4352.73, 636569579, 718653622383.0),
               (4371.91, 4344.00, 4371.91, 4322.58, 576956283, 656138728296.0),
               (4339.09, 4292.79, 4358.88, 4273.72, 647034572, 716348885351.0)],
}


def em_index(symbol: str) -> pd.DataFrame:
    """``index_zh_a_hist(symbol, period, start_date, end_date)``: 成交额 in yuan, 日期 a string."""
    rows, prev = [], None
    for day, (o, c, h, lo, vol, amount) in zip(DAYS, EM_INDEX_DATA[symbol], strict=True):
        base = prev or o
        rows.append([day, o, c, h, lo, vol, amount, round((h - lo) / base * 100, 2),
                     round((c / base - 1) * 100, 2), round(c - base, 2), 0.52])
        prev = c
    return pd.DataFrame(rows, columns=EM_INDEX_COLUMNS)


# --- stock_zh_a_hist (EastMoney), adjust="hfq" -----------------------------------------------------
STOCK_HIST_COLUMNS = ["日期", "股票代码", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "振幅",
                      "涨跌幅", "涨跌额", "换手率"]


def stock_hist(symbol: str = "600519") -> pd.DataFrame:
    """``stock_zh_a_hist(symbol, "daily", start, end, adjust="hfq")`` for 600519: amounts are the real
    ones in yuan (volume in 手); the back-adjusted prices are the raw closes (1685.01, 1694.00,
    1669.00, 1663.36) times an illustrative factor 6.2, not EastMoney's exact adjustment."""
    raw = [(1715.00, 1685.01, 1718.19, 1678.10, 32156, 5440082548.08),
           (1681.11, 1694.00, 1695.22, 1676.32, 20229, 3411400667.33),
           (1693.00, 1669.00, 1693.00, 1662.93, 21551, 3603970147.13),
           (1661.33, 1663.36, 1678.66, 1652.11, 20243, 3373155626.70)]
    rows, prev = [], None
    for day, (o, c, h, lo, vol, amount) in zip(DAYS, raw, strict=True):
        f = 6.2
        base = (prev or o) * f
        rows.append([dt.date.fromisoformat(day), symbol, o * f, c * f, h * f, lo * f, vol, amount,
                     round((h - lo) * f / base * 100, 2), round((c * f / base - 1) * 100, 2),
                     round(c * f - base, 2), round(vol * 100 / 1256197800 * 100, 2)])
        prev = c
    return pd.DataFrame(rows, columns=STOCK_HIST_COLUMNS)


# --- bond_china_yield (ChinaBond historyQuery) -----------------------------------------------------
BOND_COLUMNS = ["曲线名称", "日期", "3月", "6月", "1年", "3年", "5年", "7年", "10年", "30年"]
GOV, MTN, BANK = "中债国债收益率曲线", "中债中短期票据收益率曲线(AAA)", "中债商业银行普通债收益率曲线(AAA)"
BOND_DATA = {  # (curve, day): (1y, 3y, 5y) real; 3m/6m/7y/10y/30y illustrative except gov 10y
    (GOV, "2024-01-02"): (2.1166, 2.3420, 2.4374),
    (GOV, "2024-01-03"): (2.1416, 2.3381, 2.4212),
    (GOV, "2024-01-04"): (2.1541, 2.3269, 2.4089),
    (GOV, "2024-01-05"): (2.1091, 2.2931, 2.3903),
    (MTN, "2024-01-02"): (2.5178, 2.7134, 2.9351),
    (MTN, "2024-01-03"): (2.5385, 2.7437, 2.9464),
    (MTN, "2024-01-04"): (2.5453, 2.7377, 2.9385),
    (MTN, "2024-01-05"): (2.5397, 2.7213, 2.9198),
    (BANK, "2024-01-02"): (2.4805, 2.6601, 2.8012),
    (BANK, "2024-01-03"): (2.4990, 2.6812, 2.8105),
    (BANK, "2024-01-04"): (2.5102, 2.6759, 2.8033),
    (BANK, "2024-01-05"): (2.5031, 2.6602, 2.7868),
}


def bond_china_yield(start_date: str = "20240102", end_date: str = "20240105") -> pd.DataFrame:
    """``bond_china_yield(start_date, end_date)``: every curve of the page, yields in percent, sorted
    by 日期 (``datetime.date``) as akshare does; only the days inside [start_date, end_date]."""
    lo = dt.datetime.strptime(start_date, "%Y%m%d").date()
    hi = dt.datetime.strptime(end_date, "%Y%m%d").date()
    rows = []
    for (curve, day), (y1, y3, y5) in BOND_DATA.items():
        d = dt.date.fromisoformat(day)
        if lo <= d <= hi:
            rows.append([curve, d, round(y1 - 0.35, 4), round(y1 - 0.2, 4), y1, y3, y5, round(y5 + 0.1, 4),
                         round(y5 + 0.12, 4), round(y5 + 0.4, 4)])
    frame = pd.DataFrame(rows, columns=BOND_COLUMNS)
    return frame.sort_values(by="日期", kind="stable").reset_index(drop=True)


# --- stock_zh_a_spot_em (EastMoney spot list) ------------------------------------------------------
SPOT_COLUMNS = ["序号", "代码", "名称", "最新价", "涨跌幅", "涨跌额", "成交量", "成交额", "振幅", "最高",
                "最低", "今开", "昨收", "量比", "换手率", "市盈率-动态", "市净率", "总市值", "流通市值",
                "涨速", "5分钟涨跌", "60日涨跌幅", "年初至今涨跌幅"]
# code, name, 最新价 (yuan; NaN = suspended), 昨收, 总市值 (yuan) - closes and caps of 2024-01-05
SPOT_DATA = [
    ("600519", "贵州茅台", 1663.36, 1669.00, 2089509000000.0),
    ("000001", "平安银行", 9.27, 9.11, 179893000000.0),
    ("300750", "宁德时代", 150.90, 151.20, 663815000000.0),
    ("688981", "中芯国际", 50.58, 51.88, 401940000000.0),
    ("002857", "三晖电气", 16.27, 16.48, 2083000000.0),
    ("000020", "深华发Ａ", 12.61, 12.97, 3571000000.0),  # full-width Ａ as EastMoney writes it
    ("603389", "*ST亚振", 3.02, 3.10, 793000000.0),
    ("300029", "ST天龙", 4.15, 4.20, 830000000.0),
    ("600242", "退市中昌", 0.41, 0.42, 180000000.0),
    ("000004", "国华网安", np.nan, 12.80, 1695000000.0),  # suspended: 最新价 "-" -> NaN
    ("830799", "艾融软件", 21.50, 22.01, 2260000000.0),  # Beijing SE: left out
]


def spot() -> pd.DataFrame:
    """``stock_zh_a_spot_em()``: 最新价 / 昨收 in yuan, 总市值 / 流通市值 / 成交额 in yuan."""
    rows = []
    for i, (code, name, price, prev, mv) in enumerate(SPOT_DATA, start=1):
        pct = np.nan if np.isnan(price) else round((price / prev - 1) * 100, 2)
        rows.append([i, code, name, price, pct, np.nan if np.isnan(price) else round(price - prev, 2),
                     0.0 if np.isnan(price) else 125000.0, 0.0 if np.isnan(price) else 1.9e8, 2.1,
                     price, price, price, prev, 1.0, 0.8, 25.0, 3.1, mv, mv * 0.95, 0.0, 0.0, -5.2, -1.4])
    return pd.DataFrame(rows, columns=SPOT_COLUMNS)


# --- fund_name_em / fund_portfolio_hold_em (天天基金) ----------------------------------------------
FUND_NAME_COLUMNS = ["基金代码", "拼音缩写", "基金简称", "基金类型", "拼音全称"]
FUND_NAMES = [
    ("000001", "HXCZHH", "华夏成长混合", "混合型-偏股", "HUAXIACHENGZHANGHUNHE"),
    ("519674", "YHCXCZHHA", "银河创新成长混合A", "混合型-偏股", "YINHECHUANGXINCHENGZHANGHUNHEA"),
    ("014143", "YHCXCZHHC", "银河创新成长混合C", "混合型-偏股", "YINHECHUANGXINCHENGZHANGHUNHEC"),
    ("005669", "QHKYGYSYHYGP", "前海开源公用事业股票", "股票型", "QIANHAIKAIYUANGONGYONGSHIYEHANGYEGUPIAO"),
    ("161725", "ZSZZBJZSLOFA", "招商中证白酒指数(LOF)A", "指数型-股票", "ZHAOSHANGZHONGZHENGBAIJIUZHISHU"),
    ("110011", "YFDYZJXHHQDII", "易方达优质精选混合(QDII)", "QDII-混合偏股", "YIFANGDAYOUZHIJINGXUAN"),
    ("000003", "ZHKZZZQA", "中海可转债债券A", "债券型-混合二级", "ZHONGHAIKEZHUANZHAIZHAIQUANA"),
]


def fund_names() -> pd.DataFrame:
    """``fund_name_em()``: one row per share class."""
    return pd.DataFrame([list(r) for r in FUND_NAMES], columns=FUND_NAME_COLUMNS)


HOLD_COLUMNS = ["序号", "股票代码", "股票名称", "占净值比例", "持股数", "持仓市值", "季度"]
# fund: [(stock code, name, % of NAV, shares 万股 (illustrative), value 万元, quarter label)]
HOLDINGS = {
    "000001": [
        ("300395", "菲利华", 9.38, 530.10, 29528.00, "2022年4季度股票投资明细"),
        ("300593", "新雷能", 8.82, 1321.40, 27765.00, "2022年4季度股票投资明细"),
        ("002025", "航天电器", 5.31, 262.80, 16716.00, "2022年4季度股票投资明细"),
        ("603259", "药明康德", 3.75, 146.20, 11805.00, "2022年4季度股票投资明细"),
        ("688281", "华秦科技", 2.61, 30.10, 8216.00, "2022年4季度股票投资明细"),
        ("00700", "腾讯控股", 2.40, 26.00, 7550.00, "2022年4季度股票投资明细"),  # HK: left out
        ("300395", "菲利华", 9.10, 520.00, 31210.00, "2022年3季度股票投资明细"),
        ("300593", "新雷能", 8.95, 1300.00, 30700.00, "2022年3季度股票投资明细"),
    ],
    "519674": [
        ("603986", "兆易创新", 9.71, 1374.60, 141659.00, "2022年4季度股票投资明细"),
        ("300661", "圣邦股份", 9.63, 826.30, 140492.00, "2022年4季度股票投资明细"),
        ("688536", "思瑞浦", 8.57, 420.40, 125028.00, "2022年4季度股票投资明细"),
        ("688981", "中芯国际", 8.25, 2845.00, 120359.00, "2022年4季度股票投资明细"),
    ],
    "005669": [
        ("002129", "TCL中环", 6.11, 2070.00, 103161.00, "2022年4季度股票投资明细"),
        ("300750", "宁德时代", 5.77, 245.00, 97421.00, "2022年4季度股票投资明细"),
    ],
}


def fund_holdings(symbol: str, date: str = "2022") -> pd.DataFrame:
    """``fund_portfolio_hold_em(symbol, date)``: 持仓市值 in 万元 (renamed by akshare from
    "持仓市值（万元）"), 持股数 in 万股, 占净值比例 in percent, 季度 the page's section label; every
    quarter of year ``date`` (latest first, as akshare concatenates). Empty frame for other funds."""
    rows = [r for r in HOLDINGS.get(symbol, []) if r[5].startswith(f"{date}年")]
    if not rows:
        return pd.DataFrame(columns=HOLD_COLUMNS)
    return pd.DataFrame([[i, *r] for i, r in enumerate(rows, start=1)], columns=HOLD_COLUMNS)
