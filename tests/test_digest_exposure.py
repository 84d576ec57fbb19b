"""The digest's manager-exposure block (issue 16): when a micro-cap warning is new, the PM's most
exposed products with their estimated excess loss if the micro-cap excess over each benchmark
repeated its move in the closest past drawdown (beta x that move), labelled an estimate.

The database is built by hand: the micro-cap history, signals and two finished drawdown episodes
of ``tests.slack_server.fill_history``, benchmark closes, and weekly NAVs whose excess over the
benchmark is exactly ``b`` times the micro-cap excess in every interval, so each product's beta is
``b`` and the estimate can be computed by hand from the closes on the episode's peak and trough.
"""

from __future__ import annotations

import datetime as dt
import io
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.calendar import TradingCalendar
from monitor.delivery import blocks, digest
from monitor.delivery.console import ConsoleNotifier
from monitor.delivery.deliver import prepare
from storage import observations, products
from storage.db import open_db
from tests.conftest import config_from
from tests.slack_server import AS_OF, business_days, fill_history

N_DAYS = 320
# product -> (benchmark, beta by construction, weight, NAVs known only after the digest's day)
PRODUCTS = {
    "Alpha 1000": ("csi1000", 0.8, 0.20, False),
    "Beta 500": ("csi500", 0.3, 0.10, False),
    "Gamma 1000": ("csi1000", -0.1, None, False),
    "Late 1000": ("csi1000", 1.5, 0.05, True),  # the most exposed, but not known on AS_OF
}
CONFIG = config_from("""
[exposure]
digest_top = 2

[[products]]
name = "Alpha 1000"
benchmark = "csi1000"
strategy = "index_enhanced"
weight = 0.20

[[products]]
name = "Beta 500"
benchmark = "csi500"
strategy = "index_enhanced"
weight = 0.10

[[products]]
name = "Gamma 1000"
benchmark = "csi1000"
strategy = "index_enhanced"

[[products]]
name = "Late 1000"
benchmark = "csi1000"
strategy = "index_enhanced"
weight = 0.05
""")


def comp(signal, value, op, threshold, holds):
    return {"signal": signal, "value": value, "op": op, "threshold": threshold,
            "threshold_signal": None, "holds": holds}


def item(rule, kind="firing", severity="warning", comparisons=None):
    return {"rule": rule, "severity": severity, "kind": kind, "since": AS_OF,
            "explain": f"Why {rule} matters.", "values": {}, "context": {},
            "comparisons": comparisons if comparisons is not None
            else [comp("microcap.vol_spike", 1.83, ">=", 1.5, True)]}


ROTATION = [comp("rotation.largecap_minus_microcap_20d", 0.118, ">=", 0.10, True)]
STALE = [{"signal": "index.microcap.close", "value": 6, "op": ">", "threshold": 3,
          "threshold_signal": None, "holds": True, "last": "2024-01-26"}]


def payload(items):
    firing = [i["rule"] for i in items if i["kind"] in ("firing", "repeat")]
    return digest.build(AS_OF, items, firing, [], {"count": 0, "names": []})


def _bench_close(index: str, i: int, n: int) -> float:
    rise = min(max((i - 60) / 30, 0.0), 1.0)  # the benchmarks gain while micro-caps fall (60..90)
    if index == "csi1000":
        return 5000 * (1 + 0.2 * i / n) + 60 * math.sin(i / 5) + 400 * rise
    if index == "csi500":
        return 5500 * (1 + 0.1 * i / n) + 40 * math.cos(i / 6) + 250 * rise
    return 2000 * (1 + 0.3 * i / n) + 30 * math.sin(i / 4)  # csi2000


@pytest.fixture(scope="module")
def world():
    """The database, the closes as written (index id -> {ISO day: close}) and the episodes."""
    db = open_db(":memory:")
    fill_history(db, AS_OF, N_DAYS)
    days = business_days(dt.date.fromisoformat(AS_OF), N_DAYS)
    closes = {"microcap": dict(observations.values_between(
        db, "index.microcap.close", days[0].isoformat(), AS_OF))}
    rows = []
    for index in ("csi1000", "csi500", "csi2000"):
        closes[index] = {d.isoformat(): _bench_close(index, i, N_DAYS) for i, d in enumerate(days)}
        rows += [(f"index.{index}.close", d, v, d, "test") for d, v in closes[index].items()]
    observations.upsert(db, rows)
    # NAV dates: the last XSHG trading day of each week (the closes read on those very days)
    calendar = TradingCalendar()
    trading = [d for d in days if calendar.is_trading_day(d)]
    fridays = [d for d, nxt in zip(trading, [*trading[1:], None], strict=True)
               if nxt is None or nxt.isocalendar()[:2] != d.isocalendar()[:2]]
    nav_rows = []
    for name, (bench, beta, _, late) in PRODUCTS.items():
        nav = 1.0
        for k, d in enumerate(fridays):
            if k:
                a, b = fridays[k - 1].isoformat(), d.isoformat()
                r_b = closes[bench][b] / closes[bench][a] - 1
                r_m = closes["microcap"][b] / closes["microcap"][a] - 1
                nav *= 1 + r_b + beta * (r_m - r_b)  # excess = beta x micro-cap excess, exactly
            known = (dt.date(2024, 3, 1) if late else d + dt.timedelta(days=7)).isoformat()
            nav_rows.append((name, d.isoformat(), nav, known, "test"))
    products.upsert(db, nav_rows)
    episodes = {"close": {"peak": days[60].isoformat(), "trough": days[90].isoformat()},
                "other": {"peak": days[200].isoformat(), "trough": days[210].isoformat()}}
    return db, closes, episodes


def hand_move(closes, bench, ep):
    mc, bc = closes["microcap"], closes[bench]
    return (mc[ep["trough"]] / mc[ep["peak"]] - 1) - (bc[ep["trough"]] / bc[ep["peak"]] - 1)


def test_new_drawdown_warning_gets_the_most_exposed_products_with_hand_computed_estimates(world):
    db, closes, eps = world
    got = prepare(db, payload([item("volatility_spike")]), CONFIG)
    block = got["exposure"]
    ep = block["episode"]
    assert (ep["peak"], ep["trough"], ep["close"]) == (eps["close"]["peak"],
                                                       eps["close"]["trough"], True)
    listed = block["products"]
    # digest_top = 2 of the products known on the day, by beta; "Late 1000" (beta 1.5) is not
    # known yet (its NAVs become available after AS_OF) and must not appear
    assert [p["product"] for p in listed] == ["Alpha 1000", "Beta 500"]
    for p in listed:
        bench, beta, weight, _ = PRODUCTS[p["product"]]
        move = hand_move(closes, bench, eps["close"])
        assert p["benchmark"] == bench and p["weight"] == weight
        assert p["beta"] == pytest.approx(beta, abs=1e-9)
        assert p["move"] == pytest.approx(move, abs=1e-12)
        assert p["estimate"] == pytest.approx(beta * move, abs=1e-9)
        assert abs(p["estimate"]) > 1e-3  # a real number, not a vacuous zero
    # the book: weight x estimate over every known product with a weight (Gamma has none)
    book = block["book"]
    expected = sum(w * b * hand_move(closes, bench, eps["close"])
                   for name, (bench, b, w, late) in PRODUCTS.items() if w is not None and not late)
    assert book["n"] == 2 and book["weight"] == pytest.approx(0.30)
    assert book["estimate"] == pytest.approx(expected, abs=1e-9)
    # the closest episode is attached to the alert as before
    assert got["items"][0]["closest_episode"]["peak"] == eps["close"]["peak"]


def test_a_critical_state_alert_counts_as_a_micro_cap_warning(world):
    db, _, _ = world
    dd = item("microcap_drawdown", severity="critical",
              comparisons=[comp("microcap.drawdown", -0.152, "<=", -0.10, True)])
    assert "exposure" in prepare(db, payload([dd]), CONFIG)


@pytest.mark.parametrize("items", [
    [item("data_stale", comparisons=STALE)],
    [item("hot_theme_rotation", comparisons=ROTATION)],
    [item("volatility_spike", severity="info")],
    [item("volatility_spike", kind="repeat")],
    [item("volatility_spike", kind="resolved")],
    [],
], ids=["data_stale", "rotation", "info", "reminder", "resolution", "summary"])
def test_no_block_without_a_new_drawdown_kind_warning(world, items):
    db, _, _ = world
    got = prepare(db, payload(items), CONFIG)
    assert "exposure" not in got
    assert "Most exposed products" not in digest.render_text(got)


def test_no_block_without_products_or_known_navs(world):
    db, _, _ = world
    p = payload([item("volatility_spike")])
    assert "exposure" not in prepare(db, p, config_from(""))  # none declared
    assert "exposure" not in prepare(db, p)  # delivery without a config
    only_late = config_from('[[products]]\nname = "Late 1000"\nbenchmark = "csi1000"\n')
    assert "exposure" not in prepare(db, p, only_late)  # declared, no NAV known on AS_OF
    nothing = open_db(":memory:")
    fill_history(nothing, AS_OF, N_DAYS)
    assert "exposure" not in prepare(nothing, p, CONFIG)  # declared, never imported


def test_console_plain_text_and_blocks_carry_the_same_lines(world):
    db, closes, eps = world
    got = prepare(db, payload([item("volatility_spike")]), CONFIG)
    c = digest.content(got)
    alpha = hand_move(closes, "csi1000", eps["close"])
    assert c.exposure_title == (
        "Most exposed products — estimate, not a forecast: β × the micro-cap excess move over "
        f"each benchmark in the closest past drawdown ({eps['close']['peak']}→"
        f"{eps['close']['trough']}, micro-cap -23.1%)")
    assert c.exposure[0] == (f"Alpha 1000 (CSI 1000): β 0.80 × {alpha * 100:+.1f}% → est. excess "
                             f"{0.8 * alpha * 100:+.1f}% · 20% of the book").replace("+-", "-")
    assert c.exposure[1].startswith("Beta 500 (CSI 500): β 0.30 × ")
    assert c.exposure[2].startswith("Book: est. excess ")
    assert c.exposure[3].startswith("β: beta of the product's excess return")
    text = digest.render_text(got)
    out = io.StringIO()
    ConsoleNotifier(out).send(got, "k")
    blocks_, fallback = blocks.render(got, "k")
    mrkdwn = "\n".join(b["text"]["text"] for b in blocks_ if b["type"] == "section")
    for line in [c.exposure_title, *c.exposure]:
        assert line in text and line in out.getvalue()
        assert blocks.escape(line) in fallback and blocks.escape(line) in mrkdwn
    assert "estimate" in text and blocks.limit_problems(blocks_, fallback) == []
    # after the alert's section, before nothing else is lost: the alert is still there
    assert text.index("[WARNING] volatility_spike") < text.index("Most exposed products")


def test_a_far_episode_is_no_analogue_the_block_gives_the_sensitivity_instead():
    """A past drawdown farther than digest.MAX_EPISODE_DISTANCE is not repeated (the digest's one
    rule for "close"): no estimate from its move, each product's excess per -10% micro-cap
    excess instead (beta x -10%), labelled an estimate."""
    rows = [{"product": "P", "benchmark": "csi500", "strategy": "", "weight": 0.2,
             "last": "2024-01-26", "beta_microcap_52w": 0.5}]
    far = {"peak": "2015-06-12", "trough": "2015-09-15", "end": "2016-01-01", "depth": -0.45,
           "distance": 1.37, "close": False}
    block = digest.exposure_block(rows, far, {"csi500": -0.2}, top=3, rank_window=52)
    assert block["products"][0]["estimate"] is None and block["products"][0]["move"] is None
    assert block["book"] is None
    title, lines = digest.exposure_lines(block)
    assert title == ("Most exposed products (no close past drawdown to repeat, nearest 1.37 apart "
                     "— estimate, not a forecast: excess per -10.0% micro-cap excess)")
    assert lines[0] == "P (CSI 500): β 0.50 → est. excess -5.0% · 20% of the book"
    assert not any(ln.startswith("Book") for ln in lines)
    none_title, none_lines = digest.exposure_lines(
        digest.exposure_block(rows, None, {}, top=3, rank_window=52))
    assert none_title.startswith("Most exposed products (no past drawdown to repeat")
    assert none_lines[0] == "P (CSI 500): β 0.50 → est. excess -5.0% · 20% of the book"
    # the same product and move with a close episode: the estimate repeats the move
    close = {**far, "distance": 0.8, "close": True}
    lines = digest.exposure_lines(digest.exposure_block(rows, close, {"csi500": -0.2}, top=3,
                                                        rank_window=52))[1]
    assert lines[0] == "P (CSI 500): β 0.50 × -20.0% → est. excess -10.0% · 20% of the book"
    assert lines[1] == ("Book: est. excess -2.0% (weighted over the 1 product(s) with a weight, "
                        "20% of the book)")
    # a product without a finite beta is not listed; nothing listed: no block
    assert digest.exposure_block([{**rows[0], "beta_microcap_52w": float("nan")}], far,
                                 {"csi500": -0.2}, top=3, rank_window=52) is None


@pytest.mark.parametrize("intervals, shown", [(13, "P (CSI 500, 13 weeks of NAVs): β 0.50"),
                                                (51, "P (CSI 500, 51 weeks of NAVs): β 0.50"),
                                                (52, "P (CSI 500): β 0.50"),
                                                (300, "P (CSI 500): β 0.50")])
def test_a_beta_on_fewer_weeks_than_the_window_says_how_many(intervals, shown):
    """A product with a short history is ranked on the weeks it has (at least 13): its line says
    so, so a β "over the last 52 NAV intervals" is never read as a year of data it lacks."""
    rows = [{"product": "P", "benchmark": "csi500", "intervals": intervals,
             "beta_microcap_52w": 0.5}]
    block = digest.exposure_block(rows, None, {}, top=3, rank_window=52)
    assert block["products"][0]["weeks"] == min(intervals, 52)
    assert digest.exposure_lines(block)[1][0] == f"{shown} → est. excess -5.0%"


@pytest.mark.parametrize("beta, text", [
    (None, "Ranking not tested against a past crash yet: regime-monitor exposure --evidence "
           "START END --record."),
    ({"rho": 0.0148, "p": 0.9393, "n": 29},
     "Ranking tested: β on 2023-12-29 vs excess in 2024-01-02→2024-02-08: Spearman ρ +0.01 "
     "(p 0.94, n 29) — not shown to beat chance."),
    ({"rho": -0.62, "p": 0.004, "n": 20},
     "Ranking tested: β on 2023-12-29 vs excess in 2024-01-02→2024-02-08: Spearman ρ -0.62 "
     "(p < 0.01, n 20) — the more exposed lost more — better than chance."),
    ({"rho": 0.55, "p": 0.03, "n": 20},
     "Ranking tested: β on 2023-12-29 vs excess in 2024-01-02→2024-02-08: Spearman ρ +0.55 "
     "(p 0.03, n 20) — the opposite of the ranking (p ≤ 0.05)."),
    ({"rho": None, "p": None, "n": 2},
     "Ranking tested on 2024-01-02→2024-02-08: too few products to rank (n 2)."),
])
def test_the_rankings_record_is_one_sentence_with_its_p_value(beta, text):
    record = None if beta is None else {"start": "2024-01-02", "end": "2024-02-08",
                                        "measured_through": "2023-12-29", "beta": beta}
    rows = [{"product": "P", "benchmark": "csi500", "beta_microcap_52w": 0.5}]
    block = digest.exposure_block(rows, None, {}, top=3, rank_window=52, record=record)
    assert digest.exposure_lines(block)[1][-1] == text


def test_a_close_revised_after_the_digests_day_is_not_used(world):
    db, closes, eps = world
    first = prepare(db, payload([item("volatility_spike")]), CONFIG)
    before = first["exposure"]
    trough = eps["close"]["trough"]
    observations.upsert(db, [("index.csi1000.close", trough, closes["csi1000"][trough] * 1.5,
                              "2024-03-01", "revision")], revised_from="2024-03-01")
    after = prepare(db, payload([item("volatility_spike")]), CONFIG)["exposure"]
    assert after["products"] == before["products"]  # as known on AS_OF
    # a month later, the same alert and episode (no signal values stored for that day)
    later = {k: v for k, v in first.items() if k != "exposure"} | {"as_of": "2024-03-04"}
    listed = {p["product"]: p for p in prepare(db, later, CONFIG)["exposure"]["products"]}
    assert "Late 1000" in listed  # its NAVs are known by now too
    assert listed["Alpha 1000"]["move"] < before["products"][0]["move"] - 0.3  # the revision


def test_the_block_carries_the_rankings_recorded_check(world):
    """prepare() reads the ranking's record from the database (``exposure --evidence --record``),
    as known on the digest's day: the check of a window whose last NAVs were not known by then
    is not shown (no look-ahead)."""
    from monitor.analysis.exposure import record_evidence

    db = world[0]
    assert prepare(db, payload([item("volatility_spike")]), CONFIG)["exposure"]["record"] is None
    evidence = {"measured_through": "2023-12-29", "start": "2024-01-02", "end": "2024-02-08",
                "window_weeks": 52, "correlation": {"rho": -0.06, "p": 0.76, "n": 29},
                "beta": {"rho": 0.0148, "p": 0.9393, "n": 29}, "products": []}
    try:
        assert record_evidence(db, evidence, now="2024-02-09T00:00:00Z") == 1
        # the digest of AS_OF (2024-02-05) predates the window's end: not shown
        early = prepare(db, payload([item("volatility_spike")]), CONFIG)
        assert early["exposure"]["record"] is None
        assert digest.exposure_lines(early["exposure"])[1][-1].startswith(
            "Ranking not tested against a past crash yet")
        # a later digest (the same alert and episode) shows it
        later = {k: v for k, v in early.items() if k != "exposure"} | {"as_of": "2024-03-04"}
        block = prepare(db, later, CONFIG)["exposure"]
        assert block["record"] == {"start": "2024-01-02", "end": "2024-02-08",
                                   "measured_through": "2023-12-29",
                                   "beta": {"rho": 0.0148, "p": 0.9393, "n": 29}}
        assert digest.exposure_lines(block)[1][-1].endswith("— not shown to beat chance.")
    finally:
        db.execute("DELETE FROM scorecards")


FINITE = st.floats(-3, 3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(FINITE, st.just(float("nan"))),
                          st.sampled_from(["csi500", "csi1000"]),
                          st.one_of(st.none(), st.floats(0, 0.2))), max_size=8),
       st.dictionaries(st.sampled_from(["csi500", "csi1000"]), st.one_of(st.none(), FINITE)),
       st.integers(0, 5))
def test_block_invariants(products_, moves, top):
    """Whatever the rows: at most ``top`` listed, in the given (most exposed first) order, only
    finite betas, each estimate beta x its benchmark's move (None without a move), and the book
    the weight-summed estimates of every row with a weight and an estimate."""
    rows = [{"product": f"p{i}", "benchmark": b, "strategy": "", "weight": w, "last": None,
             "beta_microcap_52w": beta} for i, (beta, b, w) in enumerate(products_)]
    ep = {"peak": "2020-01-02", "trough": "2020-02-03", "depth": -0.2, "distance": 0.5,
          "close": True}
    block = digest.exposure_block(rows, ep, moves, top=top, rank_window=52)
    finite = [r for r in rows if math.isfinite(r["beta_microcap_52w"])]
    if not finite or top == 0:
        assert block is None
        return
    listed = block["products"]
    assert [p["product"] for p in listed] == [r["product"] for r in finite[:top]]
    for p, r in zip(listed, finite, strict=False):
        move = moves.get(r["benchmark"])
        assert p["move"] == move
        assert p["estimate"] == (None if move is None else r["beta_microcap_52w"] * move)
    book = [(r["weight"], r["beta_microcap_52w"] * moves[r["benchmark"]]) for r in finite
            if r["weight"] is not None and moves.get(r["benchmark"]) is not None]
    if book:
        assert block["book"]["n"] == len(book)
        assert block["book"]["estimate"] == pytest.approx(sum(w * e for w, e in book))
    else:
        assert block["book"] is None
    title, lines = digest.exposure_lines(block)
    assert "estimate" in title and len(lines) == len(listed) + (1 if book else 0) + 2
