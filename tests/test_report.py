"""The HTML report: built from a demo history, self-contained, escaped, and rendered by headless
Chromium (Debian ``chromium``, installed by ``.ci/run``) with charts that are not blank."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from monitor.config import load_config
from monitor.daemon import Service
from monitor.report import MAX_CHARTS, build_report, firing_spans, write_report
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG, RecordingNotifier, config_from

FIRST = dt.date(2018, 1, 2)
LAST = dt.date(2019, 4, 30)  # ~320 trading days: a drawdown fires and resolves, a rotation spell
CHROMIUM = Path("/usr/bin/chromium")
BACKTEST = [
    {"rule": "microcap_drawdown", "episodes": 1, "caught": 1, "lead_trough_median": 72.0,
     "lead_half_median": 20.5, "false_alarms": 0, "false_alarms_per_year": 0.0, "share_in_alert": 0.61},
    {"rule": "any", "episodes": 1, "caught": 1, "lead_trough_median": None, "lead_half_median": 30,
     "false_alarms": 3, "false_alarms_per_year": 2.345, "share_in_alert": 0.8},
]
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "demo.db"
    service = Service(load_config(DEFAULT_CONFIG), path, notifier=RecordingNotifier())
    for day in service.calendar.days(FIRST, LAST):
        service.run_day(day)
    service.close()
    return path


@pytest.fixture(scope="module")
def built(demo_db) -> tuple[str, float]:
    db = open_db(demo_db)
    started = time.perf_counter()
    page = build_report(db, load_config(DEFAULT_CONFIG), backtest_rows=BACKTEST)
    seconds = time.perf_counter() - started
    db.close()
    return page, seconds


@pytest.fixture(scope="module")
def page(built) -> str:
    return built[0]


def _pngs(page: str) -> list[np.ndarray]:
    import matplotlib.image as mpimg

    return [mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png") for b64 in IMG.findall(page)]


def _ink(img: np.ndarray) -> tuple[float, int]:
    """Return the share of pixels that are not (near) white, and the number of distinct colours."""
    rgb = img[..., :3]
    if rgb.dtype != np.uint8:
        rgb = np.round(rgb * 255).astype(np.uint8)
    share = float((rgb < 245).any(axis=-1).mean())
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours = len(np.unique(packed))
    return share, colours


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.img_src: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if tag == "img":
            self.img_src.append(a.get("src") or "")
        if a.get("id"):
            self.ids.add(a["id"])


def _dom(text: str) -> _Dom:
    d = _Dom()
    d.feed(text)
    return d


# -- content ----------------------------------------------------------------------------------

def test_report_has_every_section_and_is_fast(page, built, demo_db):
    assert built[1] < 15, f"report build took {built[1]:.1f} s"
    assert page.startswith("<!DOCTYPE html>")
    d = _dom(page)
    assert {"rules", "signals", "alerts", "episodes", "backtest"} <= d.ids
    # header: period, database, counts
    assert f"{FIRST} to {LAST}" in page
    assert str(demo_db) in page
    assert "trading days" in page and "alert events" in page
    # one chart per rule (10) plus the micro-cap episode chart, within the limit
    config = load_config(DEFAULT_CONFIG)
    assert len(IMG.findall(page)) == len(config.rules) + 1 <= MAX_CHARTS
    for rule in config.rules:
        assert f'id="rule-{rule.name}"' in page
    # every signal read by a rule is charted (named in the alt text)
    for name in {n for r in config.rules for n in r.names}:
        assert name in page
    # the alert timeline holds the demo's first firing and its resolution
    assert re.search(r"2018-03-29</td><td>microcap_drawdown</td>.*?firing</td><td>inactive → firing",
                     page)
    assert "firing → resolved" in page
    # episodes: the 2018 drawdown and at least one rotation spell
    assert "2018-01-31" in page and "Rotation episodes" in page
    assert "No rotation episode" not in page
    # the backtest table: its header in key order and formatted values
    assert ("<th>rule</th><th>episodes</th><th>caught</th><th>lead_trough_median</th>"
            "<th>lead_half_median</th><th>false_alarms</th><th>false_alarms_per_year</th>"
            "<th>share_in_alert</th>") in page
    assert '<td class="num">2.35</td>' in page and "<td>–</td>" in page


def test_embedded_charts_are_not_blank(page):
    images = _pngs(page)
    assert images
    for i, img in enumerate(images):
        assert img.shape[0] > 150 and img.shape[1] > 800, img.shape
        share, colours = _ink(img)
        assert share > 0.01, f"chart {i} is blank ({share:.2%} non-white pixels)"
        assert colours > 20, f"chart {i} has only {colours} colours"


def test_no_external_resources(page):
    assert not re.search(r"""(?:src|href|srcset|action|poster)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""",
                         page, re.I)
    assert not re.search(r"https?://", page)
    assert "url(" not in page and "@import" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert all(src.startswith("data:image/png;base64,") for src in _dom(page).img_src)


def test_text_from_config_and_rows_is_escaped(demo_db):
    text = DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
        'explain = "Micro-cap volatility is at least',
        'explain = "<script>alert(1)</script> & \\"quoted\\" Micro-cap volatility is at least')
    config = config_from(text)
    db = open_db(demo_db)
    page = build_report(db, config, title="Risk <b>review</b>",
                        backtest_rows=[{"rule": "<img src=x onerror=alert(2)>", "caught": 1}],
                        start=dt.date(2019, 1, 2), end=LAST)
    db.close()
    assert "<script>" not in page and "<b>review" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "<title>Risk &lt;b&gt;review&lt;/b&gt;</title>" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "2019-01-02 to 2019-04-30" in page


def test_empty_database_gives_a_page_without_charts(tmp_path):
    db = open_db(tmp_path / "empty.db")
    page = build_report(db, load_config(DEFAULT_CONFIG))
    assert "holds no signal values" in page and "<img" not in page
    assert "</html>" in page


def test_write_report(tmp_path, page):
    path = write_report(tmp_path / "out" / "report.html", page)
    assert path.read_text(encoding="utf-8") == page
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


@pytest.mark.parametrize("events, spans", [
    ([], []),
    ([("2020-01-02", "pending"), ("2020-01-03", "firing"), ("2020-01-10", "firing"),
      ("2020-01-15", "resolved")], [("2020-01-03", "2020-01-15")]),
    # still firing at the end of the period: open
    ([("2020-01-03", "firing"), ("2020-02-03", "firing")], [("2020-01-03", None)]),
    # started before the period: clipped to its first day
    ([("2019-12-02", "firing"), ("2020-01-07", "resolved"), ("2020-03-02", "firing"),
      ("2020-03-04", "inactive")], [("2020-01-01", "2020-01-07"), ("2020-03-02", "2020-03-04")]),
    # resolved on the period's first day: not firing in the period at all
    ([("2019-12-02", "firing"), ("2020-01-01", "resolved")], []),
    # resolved after the period: open at its end
    ([("2020-06-01", "firing"), ("2021-01-04", "resolved")], [("2020-06-01", None)]),
])
def test_firing_spans(events, spans):
    rows = [{"date": d, "to_state": s} for d, s in events]
    assert firing_spans(rows, "2020-01-01", "2020-12-31") == spans


# -- headless Chromium ------------------------------------------------------------------------

def _chromium() -> str:
    found = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    if not found:
        reason = f"Debian chromium is not installed ({CHROMIUM} missing; apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _run_chromium(binary: str, tmp: Path, *extra: str, url: str) -> subprocess.CompletedProcess:
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
            f"--user-data-dir={tmp / 'profile'}", *extra, url]
    env = {**os.environ, "HOME": str(tmp)}
    result = subprocess.run(args, capture_output=True, text=True, timeout=180, env=env, check=False)
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    return result


def test_renders_in_headless_chromium(tmp_path, page):
    import matplotlib.image as mpimg

    binary = _chromium()
    report = write_report(tmp_path / "report.html", page)
    url = report.resolve().as_uri()

    dom = _run_chromium(binary, tmp_path, "--dump-dom", url=url).stdout
    rendered, source = _dom(dom), _dom(page)
    assert rendered.tags.get("table", 0) == source.tags["table"] >= 5
    assert len(rendered.img_src) == len(source.img_src) == len(IMG.findall(page))
    assert all(src.startswith("data:image/png;base64,") for src in rendered.img_src)
    assert {"rules", "signals", "alerts", "episodes", "backtest"} <= rendered.ids
    assert "microcap_drawdown" in dom

    shot = tmp_path / "shot.png"
    _run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1400,3000", url=url)
    assert shot.exists() and shot.stat().st_size > 10_000
    img = mpimg.imread(shot)
    assert img.shape[:2] == (3000, 1400), img.shape
    share, colours = _ink(img)
    assert share > 0.01, f"screenshot is blank ({share:.2%} non-white pixels)"
    assert colours > 50, f"screenshot has only {colours} colours"
    # the charts were decoded and painted: the firing shading of the critical rule's chart
    # (#c0392b at 18% on white, about (244, 219, 217)) appears in the screenshot
    rgb = np.round(img[..., :3] * 255).astype(int)
    near = (np.abs(rgb - np.array([244, 219, 217])) <= 6).all(axis=-1)
    assert near.sum() > 500, "no chart shading in the screenshot"
