"""Manager exposure on the real private-fund NAVs (issue 16): the figures of the closing note.

Run:  .venv/bin/python benchmarks/exposure_study.py

Reads ../shared/data/real (quant_fund_nav_euclid NAVs, EastMoney CSI closes, Wind micro-cap close;
PROVENANCE.md sections 11 and the index files) through tests/realdata.py and prints:

1. the quadrant thresholds' basis: the cross-sectional medians of the 52-week micro-cap correlation
   and tracking correlation of the index-enhanced products as of 2023-12-29 (data through 2023 only);
2. the source note's 2023 statistics recomputed (NAV dates 2023-01-01..2023-11-30, weekly): mean
   correlation of the 500- and 1000-enhanced products' excess with CSI 2000 excess and with micro-cap
   excess, beside the note's averages; and across products the Spearman rank correlation of the
   micro-cap correlation with the excess max drawdown (and annualised excess, Calmar) of the same
   window;
3. the out-of-sample check: exposure measured on NAVs and closes dated <= 2023-12-29 (the defaults of
   signals.exposure: 52-week window, decided before looking at 2024) against the excess return over
   2024-01-02..2024-02-08, across every index-enhanced product that has both: Spearman rho, p, n for
   correlation- and beta-based exposure (primary: the 52-week micro-cap beta the exposure table ranks
   by; the other rows are shown, not chosen among), and the per-product rows.

The functions are imported by tests/test_realdata_exposure.py, which asserts the same figures.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from signals import exposure as ex  # noqa: E402
from tests.realdata import index_closes, navs  # noqa: E402

NOTE_START, NOTE_END = dt.date(2023, 1, 1), dt.date(2023, 11, 30)
NOTE_AVERAGES = {  # the source note, Jan-Nov 2023: (corr with CSI 2000 excess, with micro-cap excess)
    "csi500_enhanced": (0.4365, 0.4531),
    "csi1000_enhanced": (0.3605, 0.4503),
}
MEASURED_THROUGH = dt.date(2023, 12, 29)
# the same, as a PM knew it on 2023-12-29 with the default NAV lag of 5 XSHG trading days: the NAVs
# dated <= 2023-12-22 (22, 25, 26, 27, 28, 29 December)
KNOWN_THROUGH_WITH_LAG = dt.date(2023, 12, 22)
CRASH_START, CRASH_END = dt.date(2024, 1, 2), dt.date(2024, 2, 8)
ENHANCED = ("csi300_enhanced", "csi500_enhanced", "csi1000_enhanced")


def load(real: Path) -> tuple[dict[str, pd.Series], pd.DataFrame, dict[str, pd.Series]]:
    """(product -> NAV Series, product metadata (strategy, category, benchmark), index closes)."""
    long, meta = navs(real)
    series = {p: pd.Series(g["nav"].to_numpy(), index=pd.to_datetime(g["date"].to_numpy()))
              for p, g in long.groupby("product")}
    return series, meta, index_closes(real, "2017-01-01", "2024-12-31")


def enhanced_products(meta: pd.DataFrame) -> list[ex.Product]:
    """The index-enhanced products as ``Product``s (benchmark by strategy, PROVENANCE.md)."""
    rows = meta[meta["strategy"].isin(ENHANCED)]
    return [ex.Product(name, r["benchmark"], r["strategy"]) for name, r in rows.iterrows()]


def thresholds_2023(series: dict[str, pd.Series], meta: pd.DataFrame,
                    closes: dict[str, pd.Series]) -> dict[str, float]:
    """Cross-sectional medians, as of 2023-12-29, of the index-enhanced products' 52-week micro-cap
    correlation and tracking correlation (products with a value), and their count."""
    table = ex.exposure_table(series, enhanced_products(meta), closes, MEASURED_THROUGH)
    have = table.dropna(subset=["corr_microcap_52w", "tracking_corr"])
    return {"n": len(have), "median_corr_microcap_52w": float(have["corr_microcap_52w"].median()),
            "median_tracking_corr": float(have["tracking_corr"].median())}


def note_2023(series: dict[str, pd.Series], meta: pd.DataFrame,
              closes: dict[str, pd.Series]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per 500/1000-enhanced product over NAV dates NOTE_START..NOTE_END (weekly): intervals, corr of
    the excess with CSI 2000 and micro-cap excess, excess annualised return, max drawdown, Calmar;
    and per strategy the mean correlations beside the note's averages (products with at least
    MIN_INTERVALS usable intervals)."""
    rows = []
    lo, hi = pd.Timestamp(NOTE_START), pd.Timestamp(NOTE_END)
    for p in enhanced_products(meta):
        if p.strategy not in NOTE_AVERAGES:
            continue
        nav = series[p.name].loc[lo:hi]
        if len(nav) < 2:
            continue
        frame = ex.interval_frame(ex.weekly_navs(nav), p.benchmark, closes, p.name)
        usable = frame[frame["days"] <= ex.MAX_INTERVAL_DAYS]
        c2000 = ex.corr_beta(usable["excess"], usable["csi2000_excess"])
        cmicro = ex.corr_beta(usable["excess"], usable["microcap_excess"])
        if math.isnan(cmicro[0]):
            continue
        rows.append({"product": p.name, "strategy": p.strategy, "benchmark": p.benchmark,
                     "intervals": cmicro[2], "corr_csi2000": c2000[0], "corr_microcap": cmicro[0],
                     **ex.excess_performance(frame)})
    per = pd.DataFrame(rows)
    summary = per.groupby("strategy").agg(products=("product", "size"),
                                          mean_corr_csi2000=("corr_csi2000", "mean"),
                                          mean_corr_microcap=("corr_microcap", "mean"))
    summary["note_corr_csi2000"] = [NOTE_AVERAGES[s][0] for s in summary.index]
    summary["note_corr_microcap"] = [NOTE_AVERAGES[s][1] for s in summary.index]
    return per, summary


def note_relations(per: pd.DataFrame) -> pd.DataFrame:
    """Across the products of ``note_2023``: Spearman of the micro-cap correlation with the excess
    max drawdown, annualised excess and Calmar (rho, p, n)."""
    rows = []
    for outcome in ("excess_max_drawdown", "excess_ann_return", "excess_calmar"):
        ev = ex.rank_evidence(per.set_index("product")["corr_microcap"], per.set_index("product")[outcome])
        rows.append({"corr_microcap vs": outcome, **ev})
    return pd.DataFrame(rows)


def crash_evidence(series: dict[str, pd.Series], meta: pd.DataFrame, closes: dict[str, pd.Series],
                   measured_through: dt.date = MEASURED_THROUGH) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exposure as of ``measured_through`` (data dated <= it) against the excess over CRASH_START..
    CRASH_END: per-product rows (index-enhanced products with a 52-week micro-cap beta and a window
    excess) and Spearman rho/p/n per exposure measure."""
    products = enhanced_products(meta)
    table = ex.exposure_table(series, products, closes, measured_through)
    bench = {p.name: p.benchmark for p in products}
    table["crash_excess"] = [ex.window_excess(series[n], closes[bench[n]], CRASH_START, CRASH_END)
                             for n in table["product"]]
    table["crash_excess"] = table["crash_excess"].astype(float)
    rows = table.dropna(subset=["beta_microcap_52w", "crash_excess"]).reset_index(drop=True)
    outcome = rows.set_index("product")["crash_excess"]
    measures = ["beta_microcap_52w", "corr_microcap_52w", "beta_microcap_26w", "corr_microcap_26w",
                "beta_csi2000_52w", "corr_csi2000_52w"]
    ev = pd.DataFrame([{"exposure": m, "primary": m == "beta_microcap_52w",
                        **ex.rank_evidence(rows.set_index("product")[m], outcome)} for m in measures])
    return rows, ev


def flag_test(flagged: pd.Series, others: pd.Series) -> str:
    """The chance baseline of the flagged-vs-others difference in crash excess: the two-sided
    Mann-Whitney U test's p (scipy), or why there is none (a group with no product)."""
    if flagged.empty or others.empty:
        return "no test (a group is empty)"
    from scipy.stats import mannwhitneyu

    return f"Mann-Whitney U two-sided p {mannwhitneyu(flagged, others).pvalue:.3f}"


def _fmt(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def main() -> int:
    real = Path(os.environ.get("REGIME_MONITOR_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
    start = time.perf_counter()
    series, meta, closes = load(real)
    print(f"load: {len(series)} products, {len(closes)} index closes, "
          f"{time.perf_counter() - start:.2f} s; loadavg {open('/proc/loadavg').read().strip()}")

    th = thresholds_2023(series, meta, closes)
    print("\n1. Quadrant thresholds: cross-sectional medians as of 2023-12-29 (index-enhanced, 52 weeks)")
    print(f"   products {th['n']}, median corr_microcap_52w {th['median_corr_microcap_52w']:.4f} "
          f"(default large_microcap_corr {ex.LARGE_MICROCAP_CORR}), median tracking_corr "
          f"{th['median_tracking_corr']:.4f} (default loose_tracking_corr {ex.LOOSE_TRACKING_CORR})")

    per, summary = note_2023(series, meta, closes)
    print(f"\n2. The note's 2023 statistics recomputed (NAV dates {NOTE_START}..{NOTE_END}, weekly, "
          f"excess over the strategy's benchmark)")
    print(_fmt(summary.reset_index()))
    print("\n   per product:")
    print(_fmt(per.sort_values(["strategy", "corr_microcap"], ascending=[True, False])))
    print("\n   across products (Spearman):")
    print(_fmt(note_relations(per)))

    rows, ev = crash_evidence(series, meta, closes)
    print(f"\n3. Out of sample: exposure on data <= {MEASURED_THROUGH} vs excess over "
          f"{CRASH_START}..{CRASH_END} (Spearman; a negative rho = more exposure, worse excess)")
    print(_fmt(ev))
    moves = {f"{i} over {b}": ex.window_excess(closes[i], closes[b], CRASH_START, CRASH_END)
             for i in (ex.MICROCAP, ex.CSI2000) for b in ("csi500", "csi1000")}
    print("   the window's index excess (same convention): "
          + ", ".join(f"{k} {v:.4f}" for k, v in moves.items() if v is not None))
    flagged = rows[rows["large_exposure"]]["crash_excess"]
    others = rows[~rows["large_exposure"]]["crash_excess"]
    print(f"   large_exposure flag (thresholds {ex.LARGE_MICROCAP_CORR} / {ex.LOOSE_TRACKING_CORR}): "
          f"flagged n={len(flagged)} mean crash excess {flagged.mean():.4f} (median {flagged.median():.4f});"
          f" others n={len(others)} mean {others.mean():.4f} (median {others.median():.4f}); "
          f"{flag_test(flagged, others)}")
    _, ev_lag = crash_evidence(series, meta, closes, KNOWN_THROUGH_WITH_LAG)
    print(f"\n   as known on {MEASURED_THROUGH} with the default 5-trading-day NAV lag (NAVs dated <= "
          f"{KNOWN_THROUGH_WITH_LAG}):")
    print(_fmt(ev_lag))
    print("\n   per product (most exposed first):")
    cols = ["product", "benchmark", "intervals", "tracking_corr", "corr_microcap_52w", "beta_microcap_52w",
            "corr_microcap_26w", "beta_microcap_26w", "large_exposure", "crash_excess"]
    print(_fmt(rows[cols]))
    print(f"\ntotal {time.perf_counter() - start:.2f} s; loadavg {open('/proc/loadavg').read().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
