"""The canonical input series of SIGNALS.md: names, units and plausibility bounds.

Used to validate imports: a series name must be canonical, and values must be plausible in the
canonical unit (an amount in 1e8 yuan instead of yuan is refused, not silently stored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INDEX_IDS = ("csi300", "csi500", "csi1000", "csi2000", "all_a", "microcap")
TENORS = ("1y", "3y", "5y")


@dataclass(frozen=True)
class SeriesKind:
    pattern: re.Pattern[str]
    unit: str
    low: float  # smallest plausible value
    high: float  # largest plausible value
    lagged: bool = False  # available only after a publication lag


KINDS = (
    SeriesKind(re.compile(r"^index\.(csi300|csi500|csi1000|csi2000|all_a)\.amount$"), "yuan",
               1e8, 1e14),
    SeriesKind(re.compile(r"^index\.(csi300|csi500|csi1000|csi2000|all_a|microcap)\.close$"),
               "points", 1.0, 1e7),
    SeriesKind(re.compile(r"^theme\.[A-Za-z0-9_]+\.close$"), "points", 0.01, 1e7),
    SeriesKind(re.compile(r"^theme\.[A-Za-z0-9_]+\.amount$"), "yuan", 1e5, 1e14),
    SeriesKind(re.compile(r"^yield\.(gov|credit)\.(1y|3y|5y|7y|10y)$"), "percent", -2.0, 20.0),
    SeriesKind(re.compile(r"^funds\.smallcap_count$"), "count", 0, 1e5, lagged=True),
    SeriesKind(re.compile(r"^funds\.smallcap_share_mean$"), "fraction", 0.0, 1.0, lagged=True),
    SeriesKind(re.compile(r"^funds\.smallcap_value_total$"), "yuan", 0.0, 1e14, lagged=True),
)


def kind_of(series: str) -> SeriesKind | None:
    """Return the canonical kind of ``series``, or None when the name is not canonical."""
    for kind in KINDS:
        if kind.pattern.match(series):
            return kind
    return None


def canonical_kind(series: str) -> SeriesKind:
    """Return the canonical kind of ``series``; raise ValueError when the name is not canonical
    (for names the code builds itself, where a miss is a bug)."""
    kind = kind_of(series)
    if kind is None:
        raise ValueError(f"{series!r} is not a canonical series name (signals.series.KINDS)")
    return kind


def unit_hint(kind: SeriesKind, median: float) -> str:
    """Return a hint about the probable wrong unit of a series whose median is ``median``."""
    if kind.unit == "yuan" and median < kind.low:
        for factor, name in ((1e8, "1e8 yuan (亿元)"), (1e4, "1e4 yuan (万元)"), (1e3, "1e3 yuan")):
            if kind.low <= median * factor <= kind.high:
                return f"; it looks like {name}: convert to yuan"
    if kind.unit == "percent" and abs(median) < 0.2:
        return "; it looks like a fraction: yields are stored in percent"
    return ""


# The canonical names of the index series every part of the project reads (one home: sources
# write them, signals read them, the report and the chart plot them).
MICROCAP_CLOSE = "index.microcap.close"
ALL_A_CLOSE = "index.all_a.close"
ALL_A_AMOUNT = "index.all_a.amount"
CSI300_CLOSE = "index.csi300.close"
CSI300_AMOUNT = "index.csi300.amount"
CSI2000_AMOUNT = "index.csi2000.amount"


# -- display names (one home: the digest, the status view and the report read them) ------------

INDEX_NAMES = {
    "csi300": "CSI 300 / 沪深300",
    "csi500": "CSI 500 / 中证500",
    "csi1000": "CSI 1000 / 中证1000",
    "csi2000": "CSI 2000 / 中证2000",
    "all_a": "CSI All Share / 中证全指",
    "microcap": "Wind Micro-cap / 万得微盘股",
}
"""Readable names of the index ids of ``index.<id>.*``, English / Chinese."""

THEME_NAMES = {
    "930651": "CSI Computer / 中证计算机主题",
    "930713": "CSI AI / 中证人工智能主题",
    "930851": "CSI Cloud & Big Data / 中证云计算与大数据",
    "931071": "CSI AI Industry / 中证人工智能产业",
    "931160": "CSI Telecom Equipment / 中证通信设备主题",
    "H30184": "CSI Semiconductor / 中证全指半导体",
    "H30590": "CSI Robotics / 中证机器人",
    "600519": "Kweichow Moutai / 贵州茅台",
}
"""Readable names of the theme ids of ``theme.<id>.*`` (an id not listed is shown as is)."""

SIGNAL_NAMES = {
    "turnover.csi2000_share": "CSI 2000 / 中证2000 turnover share",
    "turnover.csi2000_share_20d": "CSI 2000 / 中证2000 turnover share, 20d mean",
    "turnover.csi2000_share_pctile_1y": "CSI 2000 / 中证2000 turnover share, 1y percentile",
    "turnover.csi2000_vs_csi300": "CSI 2000 / CSI 300 turnover ratio",
    "turnover.csi2000_share_drop_60d": "CSI 2000 / 中证2000 turnover share vs its 60d high",
    "market.amount_ratio_20_120": "market turnover, 20d / 120d mean",
    "market.return_20d": "CSI All Share / 中证全指 20d return",
    "microcap.vol_20d": "micro-cap 20d volatility",
    "csi300.vol_20d": "CSI 300 / 沪深300 20d volatility",
    "csi500.vol_20d": "CSI 500 / 中证500 20d volatility",
    "csi1000.vol_20d": "CSI 1000 / 中证1000 20d volatility",
    "csi2000.vol_20d": "CSI 2000 / 中证2000 20d volatility",
    "microcap.vol_ratio_csi300": "micro-cap / CSI 300 volatility",
    "microcap.vol_spike": "micro-cap volatility vs its 120d median",
    "microcap.drawdown": "micro-cap drawdown from peak",
    "microcap.rel_drawdown_csi300": "micro-cap vs CSI 300 / 沪深300, drawdown",
    "credit.spread_bp": "AAA credit spread",
    "credit.spread_pctile_10y": "credit spread, 10y percentile",
    "credit.spread_chg_20d": "credit spread, 20d change",
    "credit.spread_pctile_10y_lag60": "credit spread percentile, 60d ago",
    "rotation.hot_theme_excess": "hottest theme's 20d excess return",
    "rotation.microcap_excess_10d": "micro-cap 10d excess return",
    "rotation.largecap_minus_microcap_20d": "CSI 300 / 沪深300 minus micro-cap, 20d",
    "funds.smallcap_share_mean_chg": "funds' small-cap share, change",
    "funds.smallcap_value_total_chg": "funds' small-cap holdings, change",
    "regime.stress_prob": "stress-regime probability",
    "risk.drawdown_prob": "drawdown probability",
}
"""Readable names of the registered signals (short enough for a phone; the id is shown beside)."""


def display_name(name: str) -> str | None:
    """Return the readable name of a signal, an input series (``index.csi2000.close`` ->
    "CSI 2000 / 中证2000 close") or a theme id, or None when there is none."""
    if name in SIGNAL_NAMES:
        return SIGNAL_NAMES[name]
    if name in THEME_NAMES:
        return THEME_NAMES[name]
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "index" and parts[1] in INDEX_NAMES:
        return f"{INDEX_NAMES[parts[1]]} {parts[2]}"
    if len(parts) == 3 and parts[0] == "theme" and parts[1] in THEME_NAMES:
        return f"{THEME_NAMES[parts[1]]} {parts[2]}"
    if len(parts) == 3 and parts[0] == "yield":
        return f"{'AAA MTN' if parts[1] == 'credit' else 'treasury'} {parts[2]} yield"
    return None


def labelled(name: str) -> str:
    """Return ``name`` with its readable name beside it, e.g. ``CSI 2000 / 中证2000 turnover
    share vs its 60d high (turnover.csi2000_share_drop_60d)``; the bare name when it has none."""
    readable = display_name(name)
    return f"{readable} ({name})" if readable else name
