"""Manager exposure on the real private-fund NAVs (issue 16 must-shows; PROVENANCE.md section 11).

The figures asserted are the ones computed here (benchmarks/exposure_study.py prints them), not the
source note's; the note's averages are printed beside them by the study. Spot checks recompute a
product's figures straight from the CSV rows, without signals.exposure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks import exposure_study as study
from signals import exposure as ex
from tests.realdata import NAV_FILE, navs

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def loaded(real_data):
    return study.load(real_data)


@pytest.fixture(scope="module")
def note(loaded):
    return study.note_2023(*loaded)


@pytest.fixture(scope="module")
def crash(loaded):
    return study.crash_evidence(*loaded)


def test_nav_loader_import_format_and_benchmarks(real_data):
    long, meta = navs(real_data)
    assert list(long.columns) == ["date", "product", "nav"]
    assert not long.duplicated(["product", "date"]).any()  # one series per product name
    assert len(meta) == 181 and long["product"].nunique() == 181  # 173 names, 5 in several folders
    assert {"聚宽 (500增强)", "聚宽 (1000增强)", "聚宽 (300增强)"} <= set(meta.index)
    enh500 = meta[meta["strategy"] == "csi500_enhanced"]
    assert len(enh500) == 44 and (enh500["benchmark"] == "csi500").all()
    assert (enh500["file_benchmark"] == "000852").sum() == 7  # recomputed against CSI 500
    assert (meta.loc[meta["strategy"] == "csi1000_enhanced", "benchmark"] == "csi1000").all()
    assert (long["nav"] > 0).all() and long["date"].str.match(r"^\d{4}-\d\d-\d\d$").all()


def test_default_thresholds_are_the_2023_medians(loaded):
    th = study.thresholds_2023(*loaded)
    assert th["n"] == 29
    assert th["median_corr_microcap_52w"] == pytest.approx(0.4505, abs=1e-4)
    assert th["median_tracking_corr"] == pytest.approx(0.9575, abs=1e-4)
    assert ex.LARGE_MICROCAP_CORR == round(th["median_corr_microcap_52w"], 2)
    assert ex.LOOSE_TRACKING_CORR == round(th["median_tracking_corr"], 2)


def test_note_2023_statistics_recomputed(note):
    per, summary = note
    s500, s1000 = summary.loc["csi500_enhanced"], summary.loc["csi1000_enhanced"]
    assert (s500["products"], s1000["products"]) == (16, 9)
    # computed here (the note: 500-enh 43.65% / 45.31%, 1000-enh 36.05% / 45.03%)
    assert s500["mean_corr_csi2000"] == pytest.approx(0.4407, abs=5e-4)
    assert s500["mean_corr_microcap"] == pytest.approx(0.3116, abs=5e-4)
    assert s1000["mean_corr_csi2000"] == pytest.approx(0.4879, abs=5e-4)
    assert s1000["mean_corr_microcap"] == pytest.approx(0.4840, abs=5e-4)
    assert (per["intervals"] >= ex.MIN_INTERVALS).all() and (per["excess_max_drawdown"] <= 0).all()
    rel = study.note_relations(per).set_index("corr_microcap vs")
    mdd = rel.loc["excess_max_drawdown"]
    # no relation between micro-cap correlation and excess max drawdown across these products in 2023
    assert mdd["n"] == 25
    assert mdd["rho"] == pytest.approx(-0.0600, abs=5e-4) and mdd["p"] == pytest.approx(0.776, abs=2e-3)


def test_crash_out_of_sample_evidence(crash):
    rows, ev = crash
    ev = ev.set_index("exposure")
    assert len(rows) == 29 and (ev["n"] == 29).all()
    assert set(rows["benchmark"]) == {"csi500", "csi1000"}
    # exposure measured through 2023-12-29 did not rank the Jan-Feb 2024 excess: rho ~ 0
    beta, corr = ev.loc["beta_microcap_52w"], ev.loc["corr_microcap_52w"]
    assert bool(beta["primary"]) and beta["rho"] == pytest.approx(0.0148, abs=5e-4)
    assert beta["p"] == pytest.approx(0.939, abs=2e-3)
    assert corr["rho"] == pytest.approx(-0.0581, abs=5e-4) and corr["p"] == pytest.approx(0.765, abs=2e-3)
    assert (rows["crash_excess"] < 0).sum() == 26  # all but three products lost excess in the crash


def test_crash_evidence_as_known_with_the_nav_lag(loaded):
    """Measured as a PM knew it on 2023-12-29 (5-trading-day NAV lag: NAVs dated <= 2023-12-22)."""
    rows, ev = study.crash_evidence(*loaded, measured_through=study.KNOWN_THROUGH_WITH_LAG)
    ev = ev.set_index("exposure")
    assert len(rows) == 29
    assert ev.loc["beta_microcap_52w", "rho"] == pytest.approx(-0.0025, abs=5e-4)
    assert ev.loc["corr_microcap_52w", "rho"] == pytest.approx(-0.0749, abs=5e-4)


def _raw(real_data) -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series]:
    raw = pd.read_csv(real_data / NAV_FILE, dtype={"benchmark": str})
    em = pd.read_csv(real_data / "em_index_daily_financialqa" / "index_daily_em.csv", dtype={"code": str})
    wind = pd.read_csv(real_data / "wind_index_ohlc_turtle" / "index_ohlc_daily.csv")

    def close(frame):
        return pd.Series(frame["close"].to_numpy(), index=pd.to_datetime(frame["date"])).sort_index()

    return (raw, close(em[em["code"] == "000905"]), close(em[em["code"] == "000852"]),
            close(wind[wind["code"] == "8841431.WI"]))


def test_spot_checks_from_the_csv_rows(real_data, note, crash):
    raw, csi500, csi1000, micro = _raw(real_data)
    # 念空 (500-enhanced, file benchmark 000905): NAV 1.026 on 2023-12-29 -> 0.816 on 2024-02-08
    nk = raw[raw["product"] == "念空"].set_index("date")["nav"]
    want = nk["2024-02-08"] / nk["2023-12-29"] - csi500["2024-02-08"] / csi500["2023-12-29"]
    rows = crash[0].set_index("product")
    assert rows.loc["念空", "crash_excess"] == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(-0.1533, abs=1e-4)
    # 茂源 (1000-enhanced) in Jan-Nov 2023: correlation of weekly excess with micro-cap excess, by hand
    my = raw[(raw["product"] == "茂源") & (raw["date"] >= "2023-01-01") & (raw["date"] <= "2023-11-30")]
    nav = pd.Series(my["nav"].to_numpy(), index=pd.to_datetime(my["date"])).sort_index()
    assert nav.index.to_series().diff().dt.days.dropna().between(1, 21).all()
    assert nav.index.to_period("W-SUN").duplicated().sum() == 6  # month-end NAVs mid-week: thinned
    nav = nav.groupby(nav.index.to_period("W-SUN")).tail(1)  # the last NAV of each week
    b = csi1000.reindex(nav.index, method="ffill")
    m = micro.reindex(nav.index, method="ffill")
    excess = nav.pct_change() - b.pct_change()
    mexcess = m.pct_change() - b.pct_change()
    per = note[0].set_index("product")
    assert per.loc["茂源", "corr_microcap"] == pytest.approx(excess.corr(mexcess), abs=1e-12)
    assert per.loc["茂源", "corr_microcap"] == pytest.approx(0.8450, abs=1e-4)


def test_crash_excess_agrees_with_the_reports_own_excess_curve(real_data, crash):
    """Where the report's benchmark is the one used here, its own excess curve (a ratio to the
    benchmark, rebased) moved like this module's excess over the crash window."""
    raw, *_ = _raw(real_data)
    rows = crash[0].set_index("product")
    mine, theirs = [], []
    for name, r in rows.iterrows():
        g = raw[(raw["product"] == name.split(" (")[0]) & raw["strategy"].eq(r["strategy"])]
        code = {"csi500": "000905", "csi1000": "000852"}[r["benchmark"]]
        v = g[g["benchmark"] == code].set_index("date")["vendor_excess"].dropna()
        if {"2023-12-29", "2024-02-08"} <= set(v.index):
            mine.append(r["crash_excess"])
            theirs.append(v["2024-02-08"] / v["2023-12-29"] - 1)
    assert len(mine) >= 15
    assert np.corrcoef(mine, theirs)[0, 1] > 0.95
    assert all(math.copysign(1, a) == math.copysign(1, b) for a, b in zip(mine, theirs, strict=True)
               if abs(a) > 0.02)
