"""The report's "Manager exposure" section (issue 16): the note's four charts, the ranked table and
the out-of-sample evidence, on a small hand-built database; absent without products with NAVs.

The database: two years of synthetic index closes (a deep micro-cap drawdown in 2023) and six
weekly products whose excess over the benchmark is ``b`` times the micro-cap excess plus a little
noise, so the exposure ranks the products as ``b`` does (correlation and beta alike, the noise
being small), and the rank correlation of the evidence can be computed by hand: scipy's Spearman
of ``b`` against each product's excess return over the crash window, from the NAVs and closes as
written.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re

import numpy as np
import pytest
from scipy import stats

from monitor.analysis.report import EXPOSURE_CHARTS, MAX_CHARTS, build_report, write_report
from monitor.calendar import TradingCalendar
from storage import observations, products
from storage.db import open_db
from tests.conftest import config_from
from tests.test_report import _chromium, _dom, _ink, _run_chromium

NOW = dt.datetime(2024, 1, 5, 8, 0, tzinfo=dt.UTC)
FIRST, LAST = dt.date(2022, 1, 3), dt.date(2023, 12, 29)
# name -> (benchmark, b, strategy)
PRODUCTS = {
    "P1 500": ("csi500", 0.9, "500 enhanced"),
    "P2 1000": ("csi1000", 0.7, "1000 enhanced"),
    "P3 500": ("csi500", 0.5, "500 enhanced"),
    "P4 1000": ("csi1000", 0.3, "1000 enhanced"),
    "P5 500": ("csi500", 0.1, "500 enhanced"),
    "P6 1000": ("csi1000", -0.2, "1000 enhanced"),
}
CRASH_SHOCK = {"P3 500": 0.012}  # a weekly excess gain in the crash: not every rank holds
PRODUCTS_TOML = "\n".join(
    f'[[products]]\nname = "{n}"\nbenchmark = "{b}"\nstrategy = "{s}"\n'
    for n, (b, _, s) in PRODUCTS.items())
SECTION = re.compile(r'<section id="exposure">(.*?)</section>', re.S)
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _closes(days: list[dt.date]) -> dict[str, dict[str, float]]:
    """Index id -> ISO day -> close: random walks; micro-caps fall about 40% from day 330 to 370."""
    rng = np.random.default_rng(16)
    n = len(days)
    common = rng.normal(0, 0.007, n)
    rets = {"csi500": 0.0002 + common + rng.normal(0, 0.004, n),
            "csi1000": 0.0002 + 1.1 * common + rng.normal(0, 0.005, n),
            "csi2000": 0.0003 + 1.2 * common + rng.normal(0, 0.007, n),
            "microcap": 0.0012 + 1.1 * common + rng.normal(0, 0.006, n)}
    rets["microcap"][330:370] -= 0.012
    return {k: {d.isoformat(): float(v) for d, v in zip(days, 1000 * np.cumprod(1 + r),
                                                        strict=True)}
            for k, r in rets.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("exposure") / "report.db"
    db = open_db(path)
    days = TradingCalendar().days(FIRST, LAST)
    closes = _closes(days)
    with db.conn:
        observations.upsert(db, [(f"index.{k}.close", d, v, d, "test")
                                 for k, series in closes.items() for d, v in series.items()])
    fridays = [d for d, nxt in zip(days, [*days[1:], None], strict=True)
               if nxt is None or nxt.isocalendar()[:2] != d.isocalendar()[:2]]
    rng = np.random.default_rng(61)
    navs: dict[str, dict[str, float]] = {}
    rows = []
    for name, (bench, b, _) in PRODUCTS.items():
        nav, navs[name] = 1.0, {}
        for k, d in enumerate(fridays):
            if k:
                a, e = fridays[k - 1].isoformat(), d.isoformat()
                r_b = closes[bench][e] / closes[bench][a] - 1
                r_m = closes["microcap"][e] / closes["microcap"][a] - 1
                shock = CRASH_SHOCK.get(name, 0.0) if "2023-03" <= e <= "2023-07" else 0.0
                nav *= 1 + r_b + b * (r_m - r_b) + 0.0005 + shock + rng.normal(0, 0.003)
            navs[name][d.isoformat()] = nav
            rows.append((name, d.isoformat(), nav, (d + dt.timedelta(days=7)).isoformat(), "t"))
    with db.conn:
        products.upsert(db, rows)
    db.close()
    return path, closes, navs


def _window_excess(navs: dict[str, float], bench: dict[str, float], start: str, end: str) -> float:
    """By hand: NAV return minus benchmark return between the last NAV dates on or before
    ``start`` and ``end`` (the benchmark's close on those NAV dates)."""
    a = max(d for d in navs if d <= start)
    e = max(d for d in navs if d <= end)
    return (navs[e] / navs[a] - 1) - (bench[e] / bench[a] - 1)


def _page(path, text: str, **kw) -> str:
    db = open_db(path)
    try:
        return build_report(db, config_from(text), now=NOW, **kw)
    finally:
        db.close()


@pytest.fixture(scope="module")
def page(world) -> str:
    return _page(world[0], PRODUCTS_TOML)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment)))


def _hand_evidence(world, start: str, end: str) -> tuple[float, float]:
    _, closes, navs = world
    b = [v[1] for v in PRODUCTS.values()]
    out = [_window_excess(navs[n], closes[bench], start, end)
           for n, (bench, _, _) in PRODUCTS.items()]
    rho, p = stats.spearmanr(b, out)
    return float(rho), float(p)


def _said(rho: float, p: float) -> str:
    shown = "< 0.001" if p < 0.001 else f"= {p:.2g}"
    return f"Spearman ρ {rho:+.2f} (p {shown}, n {len(PRODUCTS)})"


def test_section_has_four_charts_the_ranked_table_and_the_evidence(world, page):
    section = SECTION.search(page)
    assert section is not None, "no Manager exposure section"
    body = section.group(1)
    assert '<a href="#exposure">Manager exposure</a>' in page
    assert page.index('id="episodes"') < page.index('id="exposure"') < page.index('id="backtest"')
    # four charts, not blank
    import matplotlib.image as mpimg

    pngs = IMG.findall(body)
    assert len(pngs) == EXPOSURE_CHARTS == 4 and len(IMG.findall(page)) <= MAX_CHARTS
    for b64 in pngs:
        share, colours = _ink(mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png"))
        assert share > 0.03 and colours > 20
    text = _text(body)
    for alt in ("excess annualised return vs micro-cap correlation",
                "excess max drawdown vs micro-cap correlation",
                "excess Calmar ratio vs micro-cap correlation",
                "tracking correlation vs micro-cap correlation, flag thresholds drawn"):
        assert f'alt="{alt}' in body
    # the ranked table: most exposed (largest b) first
    ranked = re.findall(r"<tr[^>]*><td class=\"num\">(\d+)</td><td>([^<]+)</td>", body)
    assert [name for _, name in ranked[:len(PRODUCTS)]] == list(PRODUCTS)
    assert "micro-cap β 52w" in text and "excess max DD" in text and "quadrant" in text
    # the evidence: the deepest drawdown of the period by default, exposure measured before it
    window = re.search(r"Crash window (\d{4}-\d\d-\d\d) → (\d{4}-\d\d-\d\d) \(the deepest", text)
    assert window is not None, text
    start, end = window.groups()
    assert "2023-" in start and start < end
    rho, p = _hand_evidence(world, start, end)
    assert rho < -0.5  # the more exposed lost more in the crash, by construction
    assert f"Correlation-based exposure: {_said(rho, p)}" in text
    assert f"Beta-based exposure: {_said(rho, p)}" in text
    measured = re.search(r"measured on the NAVs known on (\d{4}-\d\d-\d\d)", text).group(1)
    assert measured < start


def test_a_given_crash_window_is_used(world):
    start, end = dt.date(2023, 3, 1), dt.date(2023, 4, 28)
    page = _page(world[0], PRODUCTS_TOML, crash=(start, end))
    text = _text(SECTION.search(page).group(1))
    assert f"Crash window {start} → {end} (given with --crash)" in text
    rho, p = _hand_evidence(world, start.isoformat(), end.isoformat())
    assert f"Beta-based exposure: {_said(rho, p)}" in text


def test_the_evidence_uses_only_the_navs_known_on_the_reports_last_day(world):
    """A report ending 2023-05-02 scores the crash window 2023-03-01 .. 2023-04-28 with the NAVs
    known by then (each NAV is known 7 days after its date): the window ends at the 2023-04-21
    NAV, not at the 2023-04-28 one published on 2023-05-05 (no look-ahead)."""
    start, end, last = "2023-03-01", "2023-04-28", dt.date(2023, 5, 2)
    page = _page(world[0], PRODUCTS_TOML, crash=(dt.date.fromisoformat(start),
                                                 dt.date.fromisoformat(end)), end=last)
    text = _text(SECTION.search(page).group(1))
    known = "2023-04-21"  # the last NAV date known on 2023-05-02
    rho, p = _hand_evidence(world, start, known)
    assert f"Beta-based exposure: {_said(rho, p)}" in text
    assert (rho, p) != _hand_evidence(world, start, end)  # the later NAV would change the score


def test_absent_without_products_or_navs(world):
    no_products = _page(world[0], "")
    declared_only = _page(world[0], '[[products]]\nname = "Unknown"\nbenchmark = "csi500"\n')
    for page in (no_products, declared_only):
        assert 'id="exposure"' not in page and "Manager exposure" not in page
        assert 'id="episodes"' in page and 'id="backtest"' in page


def test_renders_in_headless_chromium(world, page, tmp_path):
    binary = _chromium()
    url = write_report(tmp_path / "report.html", page).resolve().as_uri()
    dom = _run_chromium(binary, tmp_path, "--dump-dom", url=url).stdout
    rendered = _dom(dom)
    assert "exposure" in rendered.ids and "exposure-evidence" in rendered.ids
    section = SECTION.search(dom)
    assert section is not None and len(IMG.findall(section.group(1))) == 4
    assert len(rendered.img_src) == len(IMG.findall(page))


def test_a_crash_window_must_start_before_it_ends(world):
    from monitor.analysis.report import compose
    from monitor.cycle import CycleError

    db = open_db(world[0])
    try:
        with pytest.raises(CycleError, match="crash window's start is not before its end"):
            compose(db, config_from(PRODUCTS_TOML), now=NOW,
                    crash=(dt.date(2023, 5, 1), dt.date(2023, 5, 1)))
    finally:
        db.close()


def test_navs_without_an_index_close_say_why(world, tmp_path):
    """Declared products with NAVs but no CSI 2000 close: the section says what is missing."""
    import shutil

    path = tmp_path / "no2000.db"
    shutil.copy(world[0], path)
    db = open_db(path)
    with db.conn:
        db.execute("DELETE FROM observations WHERE series = 'index.csi2000.close'")
    db.close()
    text = _text(SECTION.search(_page(path, PRODUCTS_TOML)).group(1))
    assert "6 declared product(s) have NAVs known on 2023-12-29, but their exposure cannot be " \
           "measured: no index.csi2000.close known" in text
    assert "Evidence" not in text
