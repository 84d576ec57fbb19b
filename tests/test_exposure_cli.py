"""`regime-monitor exposure` (issue 16): the ranking and the out-of-sample check on a small
hand-built history whose numbers are checked by hand, its errors, and one end-to-end run on the
real NAVs against the pure functions of signals.exposure.

The hand-built history: 20 weekly NAVs (Fridays 2021-05-07 .. 2021-09-17, all XSHG trading days).
Over the first 16 intervals the benchmark (CSI 500) returns b = 1% x (+ + + + - - - -)...,
micro-cap returns b + m with m = 2% x (+ -)..., CSI 2000 returns b + c with c = 1.5% x (+ + - -)...;
b, m, c are orthogonal with zero mean over 16 intervals. Product A's NAV returns b + 0.5 m (its
excess is half the micro-cap excess: beta 0.5, correlation 1, no CSI 2000 exposure; tracking
correlation sqrt(1/2)); B's b + 0.3 c; E's b + 0.25 m + 0.15 c. Then the indices stay flat for three
weeks while A loses 5%, E 3% and B gains 1% from 2021-09-03 to 2021-09-17: the crash window.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from monitor import cli
from monitor.calendar import TradingCalendar
from signals import exposure as ex
from tests import realdata

FRIDAYS = [dt.date(2021, 5, 7) + dt.timedelta(weeks=i) for i in range(20)]
B, M, C = 0.01, 0.02, 0.015


def walsh(t: int, half_period: int) -> int:
    """+1 for the first ``half_period`` intervals of each period, then -1 (t from 1)."""
    return 1 if ((t - 1) // half_period) % 2 == 0 else -1


def history() -> tuple[list[str], list[str]]:
    """(long-format rows of the index closes, NAV rows) of the hand-built history."""
    closes = {"csi500": [1000.0], "microcap": [2000.0], "csi2000": [1500.0]}
    navs = {"A": [1.0], "B": [2.0], "E": [1.5]}
    for t in range(1, 17):
        b, m, c = B * walsh(t, 4), M * walsh(t, 1), C * walsh(t, 2)
        for name, r in (("csi500", b), ("microcap", b + m), ("csi2000", b + c)):
            closes[name].append(closes[name][-1] * (1 + r))
        for name, r in (("A", b + 0.5 * m), ("B", b + 0.3 * c), ("E", b + 0.25 * m + 0.15 * c)):
            navs[name].append(navs[name][-1] * (1 + r))
    for name in closes:  # the crash weeks: the indices flat
        closes[name] += [closes[name][-1]] * 3
    for name, (w19, w20) in {"A": (0.98, 0.95), "B": (1.005, 1.01), "E": (0.99, 0.97)}.items():
        last = navs[name][-1]
        navs[name] += [last, last * w19, last * w20]
    long = [f"{d},index.{name}.close,{v!r}" for name, values in closes.items()
            for d, v in zip(FRIDAYS, values, strict=True)]
    nav_rows = [f"{d},{name},{v!r}" for name, values in navs.items()
                for d, v in zip(FRIDAYS, values, strict=True)]
    nav_rows += [f"{d},U,1.0" for d in FRIDAYS[:3]]  # stored, not declared
    return long, nav_rows


CONFIG = """
[source]
kind = "csv"
[exposure]
windows_weeks = [13, 16]
rank_window_weeks = 16
[[products]]
name = "A"
benchmark = "csi500"
strategy = "500 enhanced"
weight = 0.1
[[products]]
name = "B"
benchmark = "csi500"
[[products]]
name = "E"
benchmark = "csi500"
[[products]]
name = "D"
benchmark = "csi500"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(config, database) of the hand-built history, imported with import-csv."""
    tmp = tmp_path_factory.mktemp("exposure")
    long, nav_rows = history()
    (tmp / "idx.csv").write_text("date,series,value\n" + "\n".join(long) + "\n", encoding="utf-8")
    (tmp / "navs.csv").write_text("date,product,nav\n" + "\n".join(nav_rows) + "\n", encoding="utf-8")
    config = tmp / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    db = tmp / "h.db"
    assert run(config, db, "import-csv", tmp / "idx.csv", tmp / "navs.csv")[0] == 0
    return config, db


def run(config: Path, db: Path, *args) -> tuple[int, str, str]:
    """Run the command line; return (exit code, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--config", str(config), "--db", str(db), *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def test_the_fridays_are_trading_days():
    cal = TradingCalendar()
    assert all(cal.is_trading_day(d) for d in FRIDAYS)
    # NAV 17 (2021-08-27) becomes known 5 trading days later, on 2021-09-03
    assert cal.days(dt.date(2021, 8, 28), dt.date(2021, 9, 3))[-1] == dt.date(2021, 9, 3)
    assert len(cal.days(dt.date(2021, 8, 28), dt.date(2021, 9, 3))) == 5


def rows_by_product(out: str) -> dict[str, dict]:
    return {r["product"]: r for r in json.loads(out)}


def test_exposure_json_numbers_by_hand(built):
    config, db = built
    code, out, err = run(config, db, "exposure", "--as-of", "2021-09-03", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["product"] for r in rows] == ["A", "E", "B", "D", "U"]  # by micro-cap beta, 16 weeks
    assert [r["rank"] for r in rows] == [1, 2, 3, None, None]
    a, e, b = (rows_by_product(out)[p] for p in "AEB")
    assert (a["first"], a["last"], a["intervals"]) == ("2021-05-07", "2021-08-27", 16)
    assert (a["strategy"], a["weight"], a["benchmark"]) == ("500 enhanced", 0.1, "csi500")
    for w in (13, 16):  # A's excess is exactly half the micro-cap excess
        assert a[f"beta_microcap_{w}w"] == pytest.approx(0.5, abs=1e-9)
        assert a[f"corr_microcap_{w}w"] == pytest.approx(1.0, abs=1e-9)
    assert a["beta_csi2000_16w"] == pytest.approx(0.0, abs=1e-9)
    assert a["corr_csi2000_16w"] == pytest.approx(0.0, abs=1e-6)
    assert a["tracking_corr"] == pytest.approx(math.sqrt(0.5), abs=1e-9)
    assert b["beta_microcap_16w"] == pytest.approx(0.0, abs=1e-9)
    assert b["beta_csi2000_16w"] == pytest.approx(0.3, abs=1e-9)
    assert b["corr_csi2000_16w"] == pytest.approx(1.0, abs=1e-9)
    assert b["tracking_corr"] == pytest.approx(1 / math.sqrt(1 + 0.09 * C**2 / B**2), abs=1e-9)
    var_e = 0.25**2 * M**2 + 0.15**2 * C**2
    assert e["beta_microcap_16w"] == pytest.approx(0.25, abs=1e-9)
    assert e["beta_csi2000_16w"] == pytest.approx(0.15, abs=1e-9)
    assert e["corr_microcap_16w"] == pytest.approx(0.25 * M / math.sqrt(var_e), abs=1e-9)
    assert e["tracking_corr"] == pytest.approx(B / math.sqrt(B**2 + var_e), abs=1e-9)
    # A's excess: +1%, -1%, ... 16 weeks: the curve ends at 0.9999^8, its peak is 1.01
    end = 0.9999**8
    assert a["excess_max_drawdown"] == pytest.approx(end / 1.01 - 1, abs=1e-9)
    assert a["excess_ann_return"] == pytest.approx(end ** (365.25 / 112) - 1, abs=1e-9)
    assert a["excess_calmar"] == pytest.approx(a["excess_ann_return"] / (1 - end / 1.01), abs=1e-6)
    # the flag: tracking < 0.95 and micro-cap correlation >= 0.45 (the defaults)
    assert (a["large_exposure"], e["large_exposure"], b["large_exposure"]) == (True, True, False)
    assert (a["quadrant"], b["quadrant"]) == (ex.QUADRANT_LARGE, ex.QUADRANT_LOOSE_LOW)
    d, u = rows[3], rows[4]
    assert d["quadrant"] == "no NAV known by 2021-09-03" and d["beta_microcap_16w"] is None
    assert (u["quadrant"], u["benchmark"], u["first"], u["last"]) == (
        "not declared (no benchmark)", None, "2021-05-07", "2021-05-21")


def test_exposure_is_point_in_time(built):
    config, db = built
    # on 2021-09-02 the NAV of 2021-08-27 is not known yet (5 trading days): 15 intervals
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-02", "--json")
    a = rows_by_product(out)["A"]
    assert code == 0 and (a["last"], a["intervals"]) == ("2021-08-20", 15)
    # the crash NAVs move A's excess and its drawdown once known: the last one (2021-09-17) on
    # 2021-09-28 (5 trading days, the Mid-Autumn holiday 2021-09-20/21 skipped), not on 09-27
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-27", "--json")
    assert rows_by_product(out)["A"]["last"] == "2021-09-10"
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-28", "--json")
    a = rows_by_product(out)["A"]
    assert (a["last"], a["intervals"]) == ("2021-09-17", 19)
    assert a["excess_max_drawdown"] < -0.05


def test_exposure_table_for_the_terminal(built):
    config, db = built
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-03")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("as of 2021-09-03: ranked by micro-cap beta over the last 16 weekly NAV "
                        "intervals; excess = NAV return - benchmark return between the same NAV "
                        "dates; NAVs point-in-time, known 5 XSHG trading days after their date")
    row = {ln.split()[1]: ln.split() for ln in lines if ln.split()[:1] in (["1"], ["2"], ["3"], ["-"])}
    # #, product, bench, weight, weeks, last NAV, track corr, 4 per window x 2, excess ann, max
    # DD, Calmar, quadrant, flag
    a = row["A"]
    assert a[:7] == ["1", "A", "csi500", "10.0%", "16", "2021-08-27", "0.71"]
    assert a[7:9] == ["1.00", "0.50"] and a[11:15] == ["1.00", "0.50", "0.00", "0.00"]  # 13w, 16w
    assert a[15:17] == [f"{0.9999 ** (8 * 365.25 / 112) - 1:.1%}", f"{0.9999 ** 8 / 1.01 - 1:.1%}"]
    assert a[-2:] == ["loose/high", "LARGE"]
    assert row["B"][-1] == "loose/low"  # no flag
    assert " ".join(row["U"][2:]).endswith("not declared (no benchmark)")
    assert " ".join(row["D"]).endswith("no NAV known yet")
    assert (f"LARGE (the note's flag, quadrant loose/high): track corr < {ex.LOOSE_TRACKING_CORR:g} "
            f"and mc corr 16w >= {ex.LARGE_MICROCAP_CORR:g}") in out


def test_evidence_ranks_the_crash_by_hand(built):
    config, db = built
    code, out, err = run(config, db, "exposure", "--evidence", "2021-09-06", "2021-09-17", "--json")
    assert code == 0, err
    ev = json.loads(out)
    # measured through the trading day before the window: 2021-09-03, 16 intervals
    assert (ev["measured_through"], ev["start"], ev["end"], ev["window_weeks"]) == (
        "2021-09-03", "2021-09-06", "2021-09-17", 16)
    rows = {r["product"]: r for r in ev["products"]}
    assert [r["product"] for r in ev["products"]] == ["A", "E", "B"]
    assert rows["A"]["excess"] == pytest.approx(-0.05, abs=1e-12)
    assert rows["E"]["excess"] == pytest.approx(-0.03, abs=1e-12)
    assert rows["B"]["excess"] == pytest.approx(0.01, abs=1e-12)
    assert rows["A"]["beta"] == pytest.approx(0.5, abs=1e-9)
    # the more exposed, the more excess lost: a perfect inverse ranking of three products
    for measure in ("correlation", "beta"):
        assert ev[measure]["rho"] == pytest.approx(-1.0) and ev[measure]["n"] == 3
        assert ev[measure]["p"] == pytest.approx(0.0, abs=1e-9)
    code, text, _ = run(config, db, "exposure", "--evidence", "2021-09-06", "2021-09-17")
    assert code == 0
    assert text.splitlines()[0].startswith("out-of-sample check: exposure measured on what was known "
                                           "on 2021-09-03")
    assert any(ln.split()[:4] == ["micro-cap", "beta", "(16w)", "-1.000"] for ln in text.splitlines())
    assert any(ln.split() == ["1", "A", "csi500", "1.00", "0.50", "-5.0%"] for ln in text.splitlines())


def test_evidence_with_an_earlier_as_of(built):
    config, db = built
    code, out, _ = run(config, db, "exposure", "--evidence", "2021-09-06", "2021-09-17",
                       "--as-of", "2021-09-02", "--json")
    assert code == 0 and json.loads(out)["measured_through"] == "2021-09-02"


def test_evidence_record_is_stored_and_read_for_the_digest(built, tmp_path):
    """``--record`` stores the check as the ranking's record (the digest's sentence reads it);
    without ``--evidence`` it is refused and nothing is written."""
    from monitor.analysis.exposure import recorded_evidence
    from monitor.delivery import digest
    from storage.db import open_db

    config, built_db = built
    db = tmp_path / "copy.db"
    assert run(config, built_db, "backup", db)[0] == 0  # a consistent copy (WAL included)
    code, _, err = run(config, db, "exposure", "--record", "--as-of", "2021-09-03")
    assert code == 1 and "--record needs --evidence START END" in err
    assert recorded_evidence(open_db(str(db))) is None
    code, _, err = run(config, db, "exposure", "--evidence", "2021-09-06", "2021-09-17", "--record")
    assert code == 0, err
    record = recorded_evidence(open_db(str(db)))
    assert record is not None
    assert (record["start"], record["end"], record["measured_through"]) == (
        "2021-09-06", "2021-09-17", "2021-09-03")
    assert record["beta"]["rho"] == pytest.approx(-1.0) and record["beta"]["n"] == 3
    assert digest.record_text(record) == (
        "Ranking tested: β on 2021-09-03 vs excess in 2021-09-06→2021-09-17: Spearman ρ -1.00 "
        "(p < 0.01, n 3) — the more exposed lost more — better than chance.")


def test_the_ranking_is_shown_with_its_record_known_on_the_day(built, tmp_path):
    """Under the ranked products the terminal says whether the ranking has beaten chance (the
    digest's sentence): untested before a record; the record once its window's last NAVs
    (2021-09-17) are known, on 2021-09-28 (5 trading days), not on 2021-09-27."""
    config, built_db = built
    db = tmp_path / "copy.db"
    assert run(config, built_db, "backup", db)[0] == 0
    untested = ("Ranking not tested against a past crash yet: regime-monitor exposure --evidence "
                "START END --record.")
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-28")
    assert code == 0 and out.splitlines()[-1] == untested
    assert run(config, db, "exposure", "--evidence", "2021-09-06", "2021-09-17", "--record")[0] == 0
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-28")
    assert code == 0 and out.splitlines()[-1] == (
        "Ranking tested: β on 2021-09-03 vs excess in 2021-09-06→2021-09-17: Spearman ρ -1.00 "
        "(p < 0.01, n 3) — the more exposed lost more — better than chance.")
    code, out, _ = run(config, db, "exposure", "--as-of", "2021-09-27")
    assert code == 0 and out.splitlines()[-1] == untested


@pytest.mark.parametrize("config_text,args,message", [
    ("[source]\nkind = \"csv\"\n", ["--as-of", "2021-09-03"], "no products declared: add [[products]]"),
    (CONFIG, ["--as-of", "2021-05-10"], "no NAV of a declared product is known by 2021-05-10"),
    (CONFIG + '[[products]]\nname = "U"\nbenchmark = "csi1000"\n', ["--as-of", "2021-09-03"],
     "no index.csi1000.close known between"),
    (CONFIG, ["--evidence", "2021-09-17", "2021-09-06"], "the evidence window ends (2021-09-06) "
     "before it starts (2021-09-17)"),
    (CONFIG, ["--evidence", "2021-09-06", "2021-09-17", "--as-of", "2021-09-06"],
     "is not before the window's start 2021-09-06"),
    (CONFIG, ["--evidence", "1990-01-01", "1990-02-01"], "no trading day before 1990-01-01"),
])
def test_errors_are_one_line(built, tmp_path, config_text, args, message):
    _, db = built
    config = tmp_path / "c.toml"
    config.write_text(config_text, encoding="utf-8")
    code, out, err = run(config, db, "exposure", *args)
    assert code == 1 and out == ""
    assert err.startswith("regime-monitor: error: ") and message in err and err.count("\n") == 1, err


def test_no_navs_imported_and_no_database(built, tmp_path):
    config, _ = built
    long, _ = history()
    (tmp_path / "idx.csv").write_text("date,series,value\n" + "\n".join(long) + "\n", encoding="utf-8")
    db = tmp_path / "closes.db"
    assert run(config, db, "import-csv", tmp_path / "idx.csv")[0] == 0
    code, _, err = run(config, db, "exposure")
    assert code == 1 and "no product NAVs imported: import a date,product,nav file" in err
    code, _, err = run(config, tmp_path / "none.db", "exposure")
    assert code == 1 and "no database at" in err and not (tmp_path / "none.db").exists()


# -- the real data ---------------------------------------------------------------------------------

ENHANCED = ("csi300_enhanced", "csi500_enhanced", "csi1000_enhanced")


@pytest.mark.realdata
def test_real_navs_end_to_end_match_the_pure_functions(real_data, tmp_path):
    long, meta = realdata.navs(real_data)
    long.to_csv(tmp_path / "navs.csv", index=False)
    closes = realdata.indices(real_data, "2016-01-01", "2024-03-31")
    closes = closes[closes["series"].str.endswith(".close")]
    realdata.write_csv(closes, tmp_path / "idx.csv")
    enhanced = meta[meta["strategy"].isin(ENHANCED)]
    config = tmp_path / "c.toml"
    config.write_text('[source]\nkind = "csv"\n' + "".join(
        f'[[products]]\nname = {json.dumps(name)}\nbenchmark = "{r["benchmark"]}"\n'
        f'strategy = "{r["strategy"]}"\n' for name, r in enhanced.iterrows()), encoding="utf-8")
    db = tmp_path / "real.db"
    assert run(config, db, "import-csv", tmp_path / "idx.csv", tmp_path / "navs.csv")[0] == 0
    code, out, err = run(config, db, "exposure", "--as-of", "2023-12-29", "--json")
    assert code == 0, err
    rows = json.loads(out)

    # the same by the pure functions, the point-in-time cut made here: a NAV is known 5 XSHG
    # trading days after its date, so on 2023-12-29 the NAVs dated up to 2023-12-22
    as_of, cal = dt.date(2023, 12, 29), TradingCalendar()
    cutoff = pd.Timestamp(cal.previous(as_of, 5))
    assert cutoff == pd.Timestamp("2023-12-22")
    series = {p: pd.Series(g["nav"].to_numpy(), index=pd.to_datetime(g["date"].to_numpy()))
              for p, g in long.groupby("product")}
    known = {p: s.loc[:cutoff] for p, s in series.items() if not s.loc[:cutoff].empty}
    index = realdata.index_closes(real_data, "2016-01-01", "2024-03-31")
    items = [ex.Product(n, r["benchmark"], r["strategy"]) for n, r in enhanced.iterrows()]
    want = ex.exposure_table(known, items, index, as_of)
    ranked = [r for r in rows if r["rank"] is not None]
    assert [r["product"] for r in ranked] == list(want["product"])
    assert len(ranked) == 29
    numeric = [c for c in want.columns if want[c].dtype.kind == "f"]
    for got, (_, w) in zip(ranked, want.iterrows(), strict=True):
        for col in numeric:
            if math.isnan(w[col]):
                assert got[col] is None, (got["product"], col)
            else:
                assert got[col] == pytest.approx(w[col], rel=1e-9, abs=1e-12), (got["product"], col)
        assert got["large_exposure"] == bool(w["large_exposure"]) and got["quadrant"] == w["quadrant"]
    not_declared = {r["product"] for r in rows if r["quadrant"] == "not declared (no benchmark)"}
    assert not_declared == set(known) - set(enhanced.index)  # with a NAV known by then
    assert len(not_declared) == 42

    code, out, err = run(config, db, "exposure", "--evidence", "2024-01-02", "2024-02-08", "--json")
    assert code == 0, err
    ev = json.loads(out)
    assert ev["measured_through"] == "2023-12-29"
    outcome = {}
    for p in items:
        if p.name in set(want["product"]):
            moved = ex.window_excess(series[p.name], index[p.benchmark], dt.date(2024, 1, 2),
                                     dt.date(2024, 2, 8))
            if moved is not None:
                outcome[p.name] = moved
    outcome_s = pd.Series(outcome, dtype=float)
    for measure, col in (("correlation", "corr_microcap_52w"), ("beta", "beta_microcap_52w")):
        expect = ex.rank_evidence(want.set_index("product")[col], outcome_s)
        assert ev[measure]["n"] == expect["n"] == 29
        assert ev[measure]["rho"] == pytest.approx(expect["rho"], abs=1e-12)
        assert ev[measure]["p"] == pytest.approx(expect["p"], abs=1e-12)
    got = {r["product"]: r["excess"] for r in ev["products"] if r["excess"] is not None}
    assert got == pytest.approx(outcome, abs=1e-12)
