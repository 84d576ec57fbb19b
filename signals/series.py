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
