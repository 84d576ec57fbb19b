"""Turning the real third-party files of ../shared/data/real into canonical long frames.

Tests and benchmarks only: the data is never copied into the repository. Each function returns a
DataFrame ``date (ISO str), series, value`` in canonical units, ready for ``import-csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

EM_CODES = {"000300": "index.csi300", "000905": "index.csi500", "000852": "index.csi1000",
            "932000": "index.csi2000", "000985": "index.all_a"}
THEMES = ("930713", "930651", "930851", "931071", "H30184", "H30590")


def _long(frame: pd.DataFrame, date: str, series: str, value: str) -> pd.DataFrame:
    return pd.DataFrame({"date": frame[date].astype(str), "series": frame[series],
                         "value": frame[value].astype(float)})


def indices(real: Path, start: str = "2014-01-01", end: str = "2023-12-31") -> pd.DataFrame:
    """CSI 300/500/1000/2000 and CSI All Share closes and amounts (EastMoney, amount in yuan),
    plus the Wind micro-cap index 8841431.WI close."""
    em = pd.read_csv(real / "em_index_daily_financialqa" / "index_daily_em.csv",
                     dtype={"code": str})
    em = em[em["code"].isin(list(EM_CODES)) & (em["date"] >= start) & (em["date"] <= end)]
    parts = []
    for col in ("close", "amount"):
        part = em.assign(series=em["code"].map(EM_CODES) + f".{col}")
        parts.append(_long(part, "date", "series", col))
    wind = pd.read_csv(real / "wind_index_ohlc_turtle" / "index_ohlc_daily.csv")
    wind = wind[(wind["code"] == "8841431.WI") & (wind["date"] >= start) & (wind["date"] <= end)]
    parts.append(_long(wind.assign(series="index.microcap.close"), "date", "series", "close"))
    return pd.concat(parts, ignore_index=True)


def themes(real: Path, start: str = "2014-01-01", end: str = "2023-12-31") -> pd.DataFrame:
    """CSIndex theme indices (close, amount in yuan) and Kweichow Moutai 600519 (forward-adjusted
    close, amount in yuan) as ``theme.<id>`` series. 931160 is left out (unreliable early
    history, PROVENANCE.md)."""
    cs = pd.read_csv(real / "csindex_perf_aitheme" / "csindex_index_daily.csv", dtype={"code": str})
    cs = cs[cs["code"].isin(THEMES) & (cs["date"] >= start) & (cs["date"] <= end)]
    cs = cs.assign(amount=cs["amount_yi"] * 1e8)
    with_amount = cs[cs["amount"] > 0]  # a few rows publish amount 0: unknown, not zero trading
    parts = [_long(cs.assign(series="theme." + cs["code"] + ".close"), "date", "series", "close"),
             _long(with_amount.assign(series="theme." + with_amount["code"] + ".amount"), "date",
                   "series", "amount")]
    mt = pd.read_csv(real / "baostock_index_amount_zechen" / "moutai_600519_qfq_daily.csv")
    mt = mt[(mt["date"] >= start) & (mt["date"] <= end)]
    parts += [_long(mt.assign(series="theme.600519.close"), "date", "series", "close"),
              _long(mt.assign(series="theme.600519.amount"), "date", "series", "amount")]
    return pd.concat(parts, ignore_index=True)


def yields(real: Path, start: str = "2008-01-01", end: str = "2024-06-30",
           tenors: tuple[int, ...] = (1, 3, 5)) -> pd.DataFrame:
    """ChinaBond treasury (CGB) and AAA MTN yields in percent as yield.gov/credit.<n>y."""
    y = pd.read_csv(real / "credit_spread_chinabond_tempest07" / "chinabond_cgb_mtn_aaa_yields_daily.csv")
    y = y[y["tenor_years"].isin(tenors) & (y["date"] >= start) & (y["date"] <= end)]
    curve = y["curve"].map({"CGB": "yield.gov", "MTN_AAA": "yield.credit"})
    return _long(y.assign(series=curve + "." + y["tenor_years"].astype(str) + "y"), "date", "series",
                 "yield_pct")


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


NAV_FILE = Path("quant_fund_nav_euclid") / "private_quant_nav_weekly.csv"
# benchmark per strategy: 500-enhanced against CSI 500 even where the report used 000852 (PROVENANCE.md)
STRATEGY_BENCHMARK = {"csi500_enhanced": "csi500", "csi1000_enhanced": "csi1000",
                      "csi300_enhanced": "csi300"}
FILE_BENCHMARK = {"000905": "csi500", "000852": "csi1000", "000300": "csi300"}


def navs(real: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The private quant products' NAVs (PROVENANCE.md section 11) in the documented import format:
    ``date (ISO str), product, nav`` (rebased NAV), and a frame indexed by product with ``strategy``,
    ``category``, ``benchmark`` (csi300|csi500|csi1000: by strategy for index-enhanced products, the
    report's own index otherwise) and ``file_benchmark`` (the report's index code).

    A manager name that appears in several source folders (e.g. 聚宽 in 500增强 and 1000增强: different
    products) is suffixed with its folder, ``聚宽 (1000增强)``, so each product name is one NAV series.
    """
    raw = pd.read_csv(real / NAV_FILE, dtype={"benchmark": str, "product": str, "date": str})
    folders = raw.groupby("product")["category"].nunique()
    shared = raw["product"].isin(folders[folders > 1].index)
    raw["product"] = raw["product"].where(~shared, raw["product"] + " (" + raw["category"] + ")")
    meta = raw.groupby("product").agg(strategy=("strategy", "first"), category=("category", "first"),
                                      file_benchmark=("benchmark", "first"))
    meta["benchmark"] = meta["strategy"].map(STRATEGY_BENCHMARK).fillna(
        meta["file_benchmark"].map(FILE_BENCHMARK))
    long = raw[["date", "product", "nav"]].sort_values(["product", "date"], ignore_index=True)
    return long, meta[["strategy", "category", "benchmark", "file_benchmark"]]


def index_closes(real: Path, start: str = "2014-01-01", end: str = "2024-12-31") -> dict[str, pd.Series]:
    """``indices`` closes as ``signals.exposure`` takes them: index id (csi300, csi500, csi1000,
    csi2000, all_a, microcap) -> close Series on a DatetimeIndex."""
    frame = indices(real, start, end)
    frame = frame[frame["series"].str.endswith(".close")]
    return {name.split(".")[1]: pd.Series(g["value"].to_numpy(), index=pd.to_datetime(g["date"].to_numpy()))
            .sort_index() for name, g in frame.groupby("series")}
