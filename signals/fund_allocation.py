"""Active-fund small-cap allocation from fund holdings (SIGNALS.md section 6): pure functions.

From holdings (one row per fund, report date and stock) and the stocks' total market caps this
builds the quarterly inputs ``funds.smallcap_count``, ``funds.smallcap_share_mean`` and
``funds.smallcap_value_total`` that the ``funds`` signal family consumes.

Definitions (parameters below):

* A fund's **small-cap share** at a report date = value of its holdings in stocks with total market
  cap < ``SMALL_CAP_YUAN`` / value of its stock holdings. Stocks whose market cap is unknown on the
  report date are left out of both numerator and denominator; their count and value are reported.
* **Small-cap funds** at report date t = active equity funds whose share > ``SHARE_THRESHOLD`` at t
  and at the previous report date of the input (two consecutive reports). A fund absent from the
  previous report is not a small-cap fund at t. The first report date of the input has no previous
  report: its ``funds_smallcap``, ``smallcap_share_mean`` and ``smallcap_value_total`` are NaN (not
  0, which would read as "every small-cap fund left"), and ``to_observations`` emits nothing for it.
* ``coverage`` records what the holdings cover: ``"top10"`` (quarterly reports disclose only the
  ten largest holdings, so a share is that of the top-10 holdings) or ``"full"`` (semi-annual and
  annual reports). It goes into the source label of every observation, e.g. ``holdings:top10``.
* ``available_at`` = report date + ``publication_lag_days`` calendar days. Quarterly reports are
  due within 15 working days of quarter end (up to ~27 calendar days after the October holidays:
  ``QUARTERLY_PUBLICATION_LAG_DAYS`` = 30, as the README's default for ``funds.*``); semi-annual
  reports within two months and annual reports within three (``SEMIANNUAL_...`` = 62,
  ``ANNUAL_...`` = 91), so full-holdings series need the longer lags.

Active-equity filter (``is_active_equity``): see its docstring. Share classes (A/C/E/H/... classes of
one fund, which hold one portfolio) are merged into one fund per report date: see
``share_class_key`` and ``merge_share_classes``.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
import pandas as pd

SMALL_CAP_YUAN = 10e9  # a small cap: total market cap below 10 bn yuan
SHARE_THRESHOLD = 0.30  # a small-cap fund: small-cap share above 30% in two consecutive reports
COVERAGES = ("top10", "full")
# Publication lags (calendar days after the report date) for ``publication_lag_days``: quarterly
# reports are due within 15 working days (after the October and New Year holidays that is up to
# ~27 calendar days), semi-annual reports within two months, annual reports within three.
QUARTERLY_PUBLICATION_LAG_DAYS = 30
SEMIANNUAL_PUBLICATION_LAG_DAYS = 62
ANNUAL_PUBLICATION_LAG_DAYS = 91
MAX_CAP_STALENESS_DAYS = 7  # a wide market-cap frame needs a row this close to each report date
SERIES = {
    "funds_smallcap": "funds.smallcap_count",
    "smallcap_share_mean": "funds.smallcap_share_mean",
    "smallcap_value_total": "funds.smallcap_value_total",
}
HOLDINGS_COLUMNS = ("report_date", "fund_code", "fund_name", "stock_code", "holding_value")

# --- names ---------------------------------------------------------------------------------------

# Traditional characters seen in the names of Hong Kong mutual-recognition classes (H/O classes,
# codes 96xxxx), e.g. 匯添富價值精選混合型證券投資基金 O, mapped so those classes merge with their fund.
_TRADITIONAL = str.maketrans({
    "證": "证", "匯": "汇", "滙": "汇", "價": "价", "豐": "丰", "晉": "晋", "選": "选", "資": "资",
    "業": "业", "領": "领", "盤": "盘", "開": "开", "實": "实", "華": "华", "銀": "银", "長": "长",
    "興": "兴", "國": "国", "優": "优", "勢": "势", "時": "时", "產": "产", "機": "机", "會": "会",
    "創": "创", "經": "经", "環": "环", "寶": "宝", "廣": "广", "東": "东", "動": "动", "質": "质",
    "穩": "稳", "藍": "蓝", "籌": "筹", "債": "债", "貨": "货", "幣": "币", "數": "数", "聯": "联",
    "發": "发", "現": "现", "鈔": "钞", "結": "结", "構": "构", "靈": "灵", "活": "活", "配": "配",
    "置": "置", "進": "进", "億": "亿", "號": "号", "萬": "万", "歐": "欧", "灣": "湾", "區": "区",
    "醫": "医", "療": "疗", "藥": "药", "費": "费", "壽": "寿", "樂": "乐", "紅": "红", "線": "线",
})


def normalize_name(name: str) -> str:
    """Return ``name`` in NFKC form (full-width letters and brackets folded), traditional
    characters of the HK classes simplified, spaces removed and letters upper-cased."""
    text = unicodedata.normalize("NFKC", str(name)).translate(_TRADITIONAL)
    return re.sub(r"\s+", "", text).upper()


_INDEX_WORDS = re.compile(r"指数|成指|综指|ETF|ET$")  # "ET$": names truncated from "...ETF"
_INDEX_BENCHMARK = re.compile(r"沪深\d+|中证|上证|深证|创业板|科创\d+|MSCI|中小板|巨潮|(?<!国新)国证")
_ACTIVE_TYPE_WORDS = re.compile(r"混合|股票|灵活|配置")
_NAME_EXCLUDE = re.compile(
    r"联接"  # feeder funds (ETF联接): they hold the ETF, any stocks are the ETF's basket
    r"|债"  # bond funds, convertible-bond funds, 偏债 mixed funds
    r"|货币"  # money market
    r"|QDII"  # overseas funds
    r"|FOF|基金中基金"  # funds of funds
    r"|对冲|绝对收益|套利"  # market-neutral / absolute return: stock longs hedged with futures
    r"|黄金|REIT"  # gold, REITs (not 商品: 招商品质发现混合 contains it)
)
_TYPE_EXCLUDE = re.compile(
    r"指数|ETF|联接|债|货币|QDII|FOF|基金中基金|对冲|绝对收益|多空|套利|商品|黄金|REIT|理财|其他|其它")
_TYPE_INCLUDE = re.compile(r"股票|偏股|灵活|平衡|混合")


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and np.isnan(value):
        return False
    return str(value).strip() != ""


@lru_cache(maxsize=65536)
def _active_by_type(fund_type: str) -> bool:
    t = normalize_name(fund_type)
    return not _TYPE_EXCLUDE.search(t) and bool(_TYPE_INCLUDE.search(t))


@lru_cache(maxsize=65536)
def _active_by_name(fund_name: str) -> bool:
    n = normalize_name(fund_name)
    if _INDEX_WORDS.search(n) or _NAME_EXCLUDE.search(n):
        return False
    if "增强" in n and _INDEX_BENCHMARK.search(n):
        return False  # enhanced index fund without the word 指数 (华安沪深300增强, 南方中证500量化增强股票)
    has_type_word = bool(_ACTIVE_TYPE_WORDS.search(n))
    if _INDEX_BENCHMARK.search(n) and not has_type_word:
        return False  # named after an index and not a 股票/混合 fund (华安中证银行, 东吴中证新兴)
    if "LOF" in n and not has_type_word:
        return False  # index LOF whose name lacks 指数 (申万菱信深证成指(LOF), 华宝消费龙头(LOF))
    return True


def is_active_equity(fund_name: str, fund_type: str | None = None) -> bool:
    """Return True for an active equity fund (the funds SIGNALS.md section 6 counts).

    **With ``fund_type``** (e.g. AKShare ``fund_name_em`` 基金类型 or a Wind type), the type alone
    decides: active = it names a stock or mixed fund (股票 / 偏股 / 灵活 / 平衡 / 混合: 股票型,
    混合型-偏股, 混合型-灵活, 混合型-平衡, Wind 普通股票型 / 偏股混合型 / 灵活配置型 / 平衡混合型) and
    nothing excluded (指数 / ETF / 联接 / 债 (incl. 混合型-偏债) / 货币 / QDII / FOF / 对冲 / 绝对收益 /
    多空 / 套利 / 商品 / 黄金 / REIT / 理财 / 其他). So 指数型-股票, 债券型-*, 混合型-偏债,
    混合型-绝对收益, QDII, FOF are not active equity.

    **Without a type** (the holdings file has no type column) the name decides, after NFKC folding,
    upper-casing and removing spaces. A fund is *not* active equity when its name contains

    * 指数, 成指, 综指, ETF, or ends in "ET" (a truncated "ETF"): index funds and ETFs, including
      指数增强 funds (enhanced index funds track a benchmark with a small tracking-error budget; they
      are not an allocation decision);
    * 增强 together with an index benchmark (沪深300, 中证, 上证, 深证, 创业板, MSCI, ...):
      enhanced index funds that omit 指数. 增强 alone is kept (量化增强混合, 研究增强灵活配置混合,
      增强回报混合 are active funds);
    * 联接 (feeder funds of ETFs), 债 (bond and convertible-bond funds, 偏债 mixed funds), 货币,
      QDII, FOF / 基金中基金, 对冲 / 绝对收益 / 套利 (market-neutral funds: their stock longs are
      hedged), 黄金 / 商品 / REIT;
    * an index benchmark without any of 混合 / 股票 / 灵活 / 配置 (华安中证银行, 东吴中证新兴: index
      funds whose names are shortened);
    * LOF without any of 混合 / 股票 / 灵活 / 配置: an index LOF whose name lacks 指数 (申万菱信深证成指
      (LOF)). A LOF that is a 股票 / 混合 fund is kept (兴全合润混合(LOF)).

    Everything else is kept: 股票, 混合, 灵活配置, 成长, 价值, 量化 (active quant funds), and names
    without a type word (景顺长城策略精选, 交银瑞思). Limits: a 偏债 or 平衡 mixed fund whose name does
    not say so is kept, and an enhanced index fund named like an active one (华泰柏瑞量化增强混合) is
    kept; pass ``fund_type`` to classify those.
    """
    if _present(fund_type):
        return _active_by_type(str(fund_type))
    return _active_by_name(str(fund_name))


_CLASS_TAIL = re.compile(
    r"(?:\((?:人民币|美元现汇|美元现钞|美元|港币)?份额\)"  # (人民币份额)
    r"|人民币份额|美元现汇份额|美元现钞份额|人民币|美元现汇|美元现钞|美元|港币"  # currency classes
    r"|(?<=[^A-Z])[A-Z](?:[/\\][A-Z])?"  # a class letter (A, C, E, H, I, O, A/B), not the F of ETF
    r"|[-_/\\])$"  # separators left behind ("混合 - A/B")
)


@lru_cache(maxsize=65536)
def share_class_key(fund_name: str) -> str:
    """Return the fund's name without its share-class marks: funds with one key are one portfolio.

    Rule: ``normalize_name``; then repeatedly strip from the end a class letter (A, C, E, H, I, O,
    A/B, ...; one upper-case letter not preceded by a letter, so "ETF", "QDII" and "(LOF)" stay), a
    currency class (人民币, 美元现汇, 美元现钞, 美元, (人民币份额) ...) and separators; finally spell
    variants alike: "证券投资基金" and "发起式" dropped, "混合型/股票型/指数型" -> "混合/股票/指数",
    "持有期" -> "持有", "定期开放" -> "定开", a trailing "基金" dropped.
    Example: 中欧医疗健康混合A, 中欧医疗健康混合C -> 中欧医疗健康混合; 富国全球消费精选混合型证券投资基金
    (QDII)美元现汇 -> 富国全球消费精选混合(QDII); 匯添富價值精選混合型證券投資基金 O -> 汇添富价值精选混合.
    """
    key = normalize_name(fund_name)
    while True:
        stripped = _CLASS_TAIL.sub("", key)
        if stripped == key:
            break
        key = stripped
    key = key.replace("证券投资基金", "").replace("发起式", "")
    key = re.sub(r"(混合|股票|指数)型", r"\1", key)
    key = key.replace("持有期", "持有").replace("定期开放", "定开")
    key = re.sub(r"基金$", "", key)
    while True:  # class marks that stood before the words just removed
        stripped = _CLASS_TAIL.sub("", key)
        if stripped == key:
            return key
        key = stripped


# --- holdings and market caps --------------------------------------------------------------------


def _clean_holdings(holdings: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in HOLDINGS_COLUMNS if c not in holdings.columns]
    if missing:
        raise ValueError(f"holdings lack column(s) {missing}; need {list(HOLDINGS_COLUMNS)}")
    h = holdings.loc[:, list(HOLDINGS_COLUMNS)].copy()
    h["report_date"] = pd.to_datetime(h["report_date"]).dt.normalize()
    for col in ("fund_code", "stock_code"):
        h[col] = h[col].astype(str)
    h["fund_name"] = h["fund_name"].astype(str)
    h["holding_value"] = pd.to_numeric(h["holding_value"], errors="raise").astype(float)
    bad = h["holding_value"].isna() | (h["holding_value"] < 0)
    if bad.any():
        raise ValueError(f"holding_value must be present and >= 0 (yuan): {int(bad.sum())} row(s) are not")
    return h


def _caps_for(h: pd.DataFrame, caps: pd.Series | pd.DataFrame) -> np.ndarray:
    """Return the market cap (yuan) of each holdings row's stock on its report date (NaN: unknown).

    ``caps``: a Series indexed by stock code (one report date), a Series indexed by (report date,
    stock code), or a wide frame (rows = dates, columns = stock codes) of which the last row on or
    before each report date is used (at most ``MAX_CAP_STALENESS_DAYS`` earlier, e.g. the last
    trading day of the quarter).
    """
    if h.empty:
        return np.empty(0)
    if isinstance(caps, pd.DataFrame):
        wide = caps.copy()
        wide.index = pd.to_datetime(wide.index).normalize()
        wide = wide.sort_index()
        wide.columns = wide.columns.astype(str)
        dates = pd.DatetimeIndex(sorted(h["report_date"].unique()))
        pos = wide.index.searchsorted(dates, side="right") - 1
        rows = {}
        for date, i in zip(dates, pos, strict=True):
            if i < 0 or (date - wide.index[i]).days > MAX_CAP_STALENESS_DAYS:
                raise ValueError(f"market caps have no row within {MAX_CAP_STALENESS_DAYS} days on or "
                                 f"before report date {date.date()}")
            rows[date] = wide.iloc[i]
        long = pd.concat(rows, names=["report_date", "stock_code"])
    elif isinstance(caps, pd.Series) and caps.index.nlevels == 2:
        long = caps.copy()
        long.index = pd.MultiIndex.from_arrays(
            [pd.to_datetime(long.index.get_level_values(0)).normalize(),
             long.index.get_level_values(1).astype(str)], names=["report_date", "stock_code"])
    elif isinstance(caps, pd.Series):
        by_code = caps.copy()
        by_code.index = by_code.index.astype(str)
        if by_code.index.has_duplicates:
            raise ValueError("market caps: duplicate stock codes")
        return by_code.reindex(h["stock_code"]).to_numpy(dtype=float)
    else:
        raise TypeError("market caps must be a Series or a wide DataFrame (yuan)")
    if long.index.has_duplicates:
        raise ValueError("market caps: duplicate (report date, stock code)")
    key = pd.MultiIndex.from_arrays([h["report_date"], h["stock_code"]])
    return long.reindex(key).to_numpy(dtype=float)


def fund_smallcap_shares(holdings: pd.DataFrame, market_cap_on_report_date: pd.Series | pd.DataFrame
                         ) -> pd.DataFrame:
    """Return one row per (report_date, fund_code) with the fund's small-cap share.

    ``holdings``: long frame ``report_date, fund_code, fund_name, stock_code, holding_value`` (yuan).
    ``market_cap_on_report_date``: total market cap in yuan (see ``_caps_for`` for the accepted
    shapes). Columns returned: ``report_date, fund_code, fund_name, smallcap_value, stock_value,
    smallcap_share, unknown_cap_count, unknown_cap_value`` (values in yuan). ``stock_value`` is the
    value of the holdings whose cap is known; a stock with unknown cap (missing / NaN) is excluded
    from both ``smallcap_value`` and ``stock_value`` and counted in ``unknown_cap_*``.
    ``smallcap_share`` = smallcap_value / stock_value, NaN when stock_value is 0.
    """
    h = _clean_holdings(holdings)
    cap = _caps_for(h, market_cap_on_report_date)
    known = ~np.isnan(cap)
    value = h["holding_value"].to_numpy()
    h["stock_value"] = np.where(known, value, 0.0)
    h["smallcap_value"] = np.where(known & (cap < SMALL_CAP_YUAN), value, 0.0)
    h["unknown_cap_value"] = np.where(known, 0.0, value)
    h["unknown_cap_count"] = (~known).astype(int)
    out = h.groupby(["report_date", "fund_code"], sort=True).agg(
        fund_name=("fund_name", "first"), smallcap_value=("smallcap_value", "sum"),
        stock_value=("stock_value", "sum"), unknown_cap_count=("unknown_cap_count", "sum"),
        unknown_cap_value=("unknown_cap_value", "sum")).reset_index()
    out["smallcap_share"] = out["smallcap_value"] / out["stock_value"].where(out["stock_value"] > 0)
    return out[["report_date", "fund_code", "fund_name", "smallcap_value", "stock_value",
                "smallcap_share", "unknown_cap_count", "unknown_cap_value"]]


def merge_share_classes(holdings: pd.DataFrame) -> pd.DataFrame:
    """Return the holdings with the share classes of each fund merged into one fund per report date.

    Classes are the codes whose names have one ``share_class_key`` at a report date. The merged fund
    takes the smallest of their codes (``fund_code``; ``member_codes`` lists all, comma-separated)
    and the name of that code. Per stock, the merged value is the sum of the classes' *distinct*
    values: classes that report their own slice of the portfolio (the anchor top-10 file: value =
    weight x class net assets, e.g. 中欧医疗健康混合A 29.8 + C 34.5 yi of 300015) add up to the whole
    fund, while classes that repeat one value (HK-recognition H/O classes there, or sources that list
    the whole fund's holdings under every class code) count once. Weights are equal across classes,
    so the fund's small-cap share is that of any of its classes.
    """
    h = _clean_holdings(holdings)
    h["class_key"] = h["fund_name"].map(share_class_key)
    funds = h[["report_date", "class_key", "fund_code", "fund_name"]].drop_duplicates(
        ["report_date", "class_key", "fund_code"]).sort_values(["report_date", "class_key", "fund_code"])
    grouped = funds.groupby(["report_date", "class_key"], sort=False)
    firsts = grouped.agg(kept_code=("fund_code", "first"), kept_name=("fund_name", "first"),
                         member_codes=("fund_code", ",".join))
    h = h.join(firsts, on=["report_date", "class_key"])
    distinct = h.drop_duplicates(["report_date", "kept_code", "stock_code", "holding_value"])
    merged = distinct.groupby(["report_date", "kept_code", "stock_code"], sort=True).agg(
        fund_name=("kept_name", "first"), holding_value=("holding_value", "sum"),
        member_codes=("member_codes", "first")).reset_index()
    merged = merged.rename(columns={"kept_code": "fund_code"})
    return merged[["report_date", "fund_code", "fund_name", "stock_code", "holding_value",
                   "member_codes"]]


# --- the quarterly series ------------------------------------------------------------------------


def _active_mask(h: pd.DataFrame, fund_types: Mapping[str, str] | pd.Series | None) -> pd.Series:
    types = {str(k): v for k, v in fund_types.items()} if fund_types is not None else {}
    pairs = h[["fund_code", "fund_name"]].drop_duplicates()
    verdict = {(c, n): is_active_equity(n, types.get(c))
               for c, n in zip(pairs["fund_code"], pairs["fund_name"], strict=True)}
    keys = zip(h["fund_code"], h["fund_name"], strict=True)
    return pd.Series([verdict[k] for k in keys], index=h.index, dtype=bool)


def _previous_shares(shares: pd.DataFrame, prev: pd.DataFrame) -> pd.Series:
    """Return each fund's share at the previous report, found through any of its class codes.

    The fund at the previous report is the one that contained the fund's kept code; when that code
    was absent, the one that contained another of its codes (smallest first). NaN: not present.
    """
    prev_by_code = (prev.assign(code=prev["member_codes"].str.split(","))
                    .explode("code").drop_duplicates("code").set_index("code")["smallcap_share"])
    members = shares[["fund_code", "member_codes"]].assign(code=shares["member_codes"].str.split(","))
    members = members.explode("code")
    members["rank"] = (members["code"] != members["fund_code"]).astype(int)
    members = members.sort_values(["fund_code", "rank", "code"])
    members["prev_share"] = members["code"].map(prev_by_code)
    found = members.dropna(subset=["prev_share"]).drop_duplicates("fund_code")
    return shares["fund_code"].map(found.set_index("fund_code")["prev_share"])


def allocation_series(holdings: pd.DataFrame, market_caps: pd.Series | pd.DataFrame,
                      fund_types: Mapping[str, str] | pd.Series | None = None, *, coverage: str,
                      publication_lag_days: int) -> pd.DataFrame:
    """Return the active funds' small-cap allocation, one row per report date of ``holdings``.

    Steps: keep the active equity funds (``is_active_equity``; ``fund_types``: fund_code -> type,
    taking precedence over the name), merge share classes (``merge_share_classes``), compute each
    fund's share (``fund_smallcap_shares``), then per report date t (previous = the previous report
    date in the input):

    * ``date`` (the report date), ``funds_active`` (merged funds passing the filter),
      ``fund_codes_active`` (their codes before merging share classes);
    * ``funds_smallcap``: funds with share > ``SHARE_THRESHOLD`` at t and at the previous report;
    * ``smallcap_share_mean``: mean share at t of those funds (fraction; NaN when there are none);
    * ``smallcap_value_total``: their small-cap holdings value at t (yuan; 0 when there are none);
    * the first report date has no previous report: those three are NaN there;
    * ``coverage``, ``available_at`` = date + ``publication_lag_days`` calendar days,
      ``unknown_cap_value_share`` = holdings value of the active funds in stocks of unknown cap /
      their whole holdings value at t.
    """
    if coverage not in COVERAGES:
        raise ValueError(f"coverage must be one of {COVERAGES}, got {coverage!r}")
    if isinstance(publication_lag_days, bool) or not isinstance(publication_lag_days, int | np.integer) \
            or publication_lag_days < 0:
        raise ValueError(f"publication_lag_days must be an int >= 0, got {publication_lag_days!r}")
    h = _clean_holdings(holdings)
    dates = pd.DatetimeIndex(sorted(h["report_date"].unique()))
    active = h[_active_mask(h, fund_types)]
    codes_active = active.groupby("report_date")["fund_code"].nunique()
    merged = merge_share_classes(active)
    shares = fund_smallcap_shares(merged, market_caps)
    shares = shares.merge(merged[["report_date", "fund_code", "member_codes"]].drop_duplicates(
        ["report_date", "fund_code"]), on=["report_date", "fund_code"], how="left")

    rows = []
    for i, date in enumerate(dates):
        now = shares[shares["report_date"] == date]
        held = now["stock_value"].sum() + now["unknown_cap_value"].sum()
        row = {
            "date": date, "funds_active": len(now), "fund_codes_active": int(codes_active.get(date, 0)),
            "funds_smallcap": np.nan, "smallcap_share_mean": np.nan, "smallcap_value_total": np.nan,
            "coverage": coverage,
            "available_at": date + pd.Timedelta(days=int(publication_lag_days)),
            "unknown_cap_value_share": now["unknown_cap_value"].sum() / held if held > 0 else np.nan,
        }
        if i > 0:
            prev_share = _previous_shares(now, shares[shares["report_date"] == dates[i - 1]])
            small = now[(now["smallcap_share"] > SHARE_THRESHOLD) & (prev_share > SHARE_THRESHOLD)]
            row["funds_smallcap"] = float(len(small))
            row["smallcap_share_mean"] = float(small["smallcap_share"].mean()) if len(small) else np.nan
            row["smallcap_value_total"] = float(small["smallcap_value"].sum())
        rows.append(row)
    columns = ["date", "funds_active", "fund_codes_active", "funds_smallcap", "smallcap_share_mean",
               "smallcap_value_total", "coverage", "available_at", "unknown_cap_value_share"]
    return pd.DataFrame(rows, columns=columns)


def to_observations(series_frame: pd.DataFrame,
                    trading_day: Callable[[dt.date], dt.date] | None = None
                    ) -> list[tuple[str, str, float, str, str]]:
    """Return ``(series, date ISO, value, available_at ISO, source)`` rows of ``allocation_series``.

    Series ``funds.smallcap_count`` / ``funds.smallcap_share_mean`` / ``funds.smallcap_value_total``
    (count, fraction, yuan); source ``holdings:<coverage>``. NaN values (the first report date, a
    mean without funds) give no row. Observations are dated by the last trading day on or before
    the report date (``trading_day``; default: the XSHG calendar), because storage reads values by
    trading day only and quarter ends often fall on weekends (2022-12-31). ``available_at`` is the
    frame's (report date + publication lag), unchanged.
    """
    if trading_day is None:
        from monitor.calendar import TradingCalendar

        trading_day = TradingCalendar().last_on_or_before
    out = []
    for rec in series_frame.to_dict("records"):
        day = trading_day(pd.Timestamp(rec["date"]).date()).isoformat()
        available = pd.Timestamp(rec["available_at"]).date().isoformat()
        source = f"holdings:{rec['coverage']}"
        for column, series in SERIES.items():
            value = rec[column]
            if value is not None and not pd.isna(value):
                out.append((series, day, float(value), available, source))
    return out
