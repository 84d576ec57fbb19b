"""The HTML report: built from a demo history, self-contained, escaped, and rendered by headless
Chromium (Debian ``chromium``, installed by ``.ci/run``) with charts that are not blank; on a
freshly imported database of the real data (import-csv only, no cycle: signals computed, alerts
simulated, nothing on stderr); its first screen screenshotted, imported and replayed.

The demo runs the default config's settings with this file's own rules (:data:`RULES`), so what
the report shows does not move when the default rules are retuned."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from monitor.analysis.report import (
    MAX_CHARTS,
    backtest_kind,
    build_report,
    firing_spans,
    rule_role,
    trust_sentence,
    warning_marks,
    write_report,
)
from monitor.config import Config, RuleConfig, load_config
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG, config_from

# a headline rule (silent in this demo: the risk model needs more history), a state alert, four
# warnings (hot_theme_rotation also makes the rotation episodes) and an info rule
RULES = r'''
[[rules]]
name = "drawdown_risk"
severity = "warning"
when = "risk.drawdown_prob >= 0.40"
clear_when = "risk.drawdown_prob < 0.32"
clear_days = 5
repeat_every_days = 5
explain = "The drawdown-risk model puts the chance of a 10% micro-cap drawdown within 20 days at 40% or more."

[[rules]]
name = "microcap_drawdown"
severity = "critical"
when = "microcap.drawdown <= -0.10"
clear_when = "microcap.drawdown > -0.05"
clear_days = 3
repeat_every_days = 5
explain = "The micro-cap index is 10% or more below its peak."

[[rules]]
name = "market_stress_liquidity"
severity = "warning"
when = "market.return_20d <= -0.08 and market.amount_ratio_20_120 <= 0.75"
for_days = 2
clear_days = 3
explain = "The whole market is falling while turnover dries up."

[[rules]]
name = "hot_theme_rotation"
severity = "warning"
when = """(rotation.hot_theme_excess >= 0.10 and rotation.microcap_excess_10d <= -0.03) \
  or rotation.largecap_minus_microcap_20d >= 0.10"""
for_days = 2
clear_when = "rotation.microcap_excess_10d > 0 and rotation.largecap_minus_microcap_20d < 0.05"
clear_days = 3
explain = "Another theme is drawing trading money out of micro-caps."

[[rules]]
name = "volatility_spike"
severity = "warning"
when = "microcap.vol_spike >= 1.5"
clear_when = "microcap.vol_spike < 1.2"
clear_days = 3
explain = "Micro-cap volatility is at least 1.5 times its recent norm."

[[rules]]
name = "turnover_crowded"
severity = "info"
when = "turnover.csi2000_share_pctile_1y >= 0.95"
for_days = 3
clear_when = "turnover.csi2000_share_pctile_1y < 0.80"
clear_days = 3
explain = "CSI 2000's share of market turnover is at a one-year extreme."

[[rules]]
name = "stress_regime"
severity = "warning"
when = "regime.stress_prob >= 0.8"
for_days = 3
clear_when = "regime.stress_prob < 0.5"
clear_days = 3
explain = "The regime model puts the market in its high-variance regime for three days running."
'''


def report_config_text() -> str:
    """The default config with its rules (the last tables of the file) replaced by :data:`RULES`."""
    settings, found, _ = DEFAULT_CONFIG.read_text(encoding="utf-8").partition("\n[[rules]]")
    assert found, "the default config has no [[rules]] table"
    return settings + "\n" + RULES


def report_config() -> Config:
    return config_from(report_config_text())


FIRST = dt.date(2018, 1, 2)
LAST = dt.date(2019, 4, 30)  # ~320 trading days: a drawdown fires and resolves, a rotation spell
CHROMIUM = Path("/usr/bin/chromium")
NOW = dt.datetime(2026, 12, 3, 20, 5, tzinfo=dt.UTC)  # when the report says it was generated
# rows as monitor.analysis.backtest.to_records gives them; the first has no `kind` (inferred: a state
# alert), the info row comes before the union rows (the table groups them by kind)
HEADLINE_ROW = {"rule": "drawdown_risk", "kind": "warning", "days": 322, "episodes": 1, "caught": 1,
                "chance_mean": 0.21, "p_value": 0.01, "false_alarms_per_year": 0.0,
                "share_in_alert": 0.12}
BACKTEST = [
    {"rule": "microcap_drawdown", "days": 322, "episodes": 1, "caught": 1, "lead_trough_median": 72.0,
     "lead_half_median": 20.5, "false_alarms": 0, "false_alarms_per_year": 0.0, "share_in_alert": 0.61},
    {"rule": "turnover_crowded", "kind": "info", "days": 322, "episodes": 1, "caught": 0,
     "share_in_alert": 0.05},
    {"rule": "volatility_spike", "kind": "warning", "days": 322, "episodes": 1, "caught": 0,
     "chance_mean": 0.4, "p_value": 1.0, "false_alarms_per_year": 0.8, "share_in_alert": 0.031,
     "lead_q25": -6.0, "lead_median": 2.5, "lead_q75": 10.0},
    {"rule": "any warning", "kind": "union", "days": 322, "episodes": 1, "caught": 1,
     "chance_mean": 0.55, "p_value": 0.3, "false_alarms": 3, "false_alarms_per_year": 2.345,
     "share_in_alert": 0.8},
    {"rule": "any rule", "days": 322, "episodes": 1, "caught": 1, "lead_trough_median": None,
     "lead_half_median": 30, "false_alarms": 3, "false_alarms_per_year": 2.345, "share_in_alert": 0.8},
    HEADLINE_ROW,
]
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
SECTION = re.compile(r'<section id="([^"]+)">(.*?)</section>', re.S)
SECTIONS = ["overview", "rules", "signals", "matrix", "alerts", "episodes", "backtest"]


@pytest.fixture(scope="module")
def demo_db(demo_history) -> Path:
    """The demo run through the daily cycle FIRST..LAST under :func:`report_config` (built by
    replay, which equals the live run: tests/test_replay.py); read only."""
    return demo_history(report_config(), FIRST, LAST)


@pytest.fixture(scope="module")
def built(demo_db) -> tuple[str, float]:
    db = open_db(demo_db)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = build_report(db, report_config(), now=NOW, backtest_rows=BACKTEST)
    seconds = time.perf_counter() - started
    db.close()
    assert not [str(w.message) for w in caught], "warnings leaked from building the report"
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

def _sections(page: str) -> dict[str, str]:
    return dict(SECTION.findall(page))


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment)).replace("&amp;", "&")


def test_report_has_every_section_and_is_fast(page, built, demo_db):
    assert built[1] < 15, f"report build took {built[1]:.1f} s"
    assert page.startswith("<!DOCTYPE html>")
    d = _dom(page)
    assert set(SECTIONS) <= d.ids
    assert [sid for sid, _ in SECTION.findall(page)] == SECTIONS
    # header: period, database, counts
    assert f"{FIRST} to {LAST}" in page
    assert str(demo_db) in page
    assert "trading days" in page and "firings" in page and "resolutions" in page
    assert "Signals: stored by the daily cycle. Alerts: recorded by the daily cycle." in page
    assert 'class="missing"' not in page
    # the overview, one chart per rule with stored values and the episode chart, within the limit
    config = report_config()
    db = open_db(demo_db)
    with_values = {r[0] for r in db.execute(
        "SELECT DISTINCT signal FROM signal_values WHERE value IS NOT NULL AND date BETWEEN ? AND ?",
        [FIRST.isoformat(), LAST.isoformat()])}
    changes = db.execute("SELECT COUNT(*) FROM alert_events WHERE event IN ('firing', 'resolved')"
                         ).fetchone()[0]
    others = db.execute("SELECT COUNT(*) FROM alert_events WHERE event NOT IN ('firing', 'resolved')"
                        ).fetchone()[0]
    db.close()
    charted = [r for r in config.rules if r.names & with_values]
    assert 0 < len(charted) < len(config.rules)  # drawdown_risk has no values in this demo
    assert len(IMG.findall(page)) == len(charted) + 2 <= MAX_CHARTS
    for rule in config.rules:
        assert f'id="rule-{rule.name}"' in page
    # every signal read by a rule is charted (named in the alt text) or said to have no values
    for name in {n for r in config.rules for n in r.names}:
        assert name in page
    assert ("no chart, its signals have no value in this period (risk.drawdown_prob)"
            in _text(_sections(page)["signals"]))
    # the alert timeline: firings and resolutions only, the demo's first firing among them
    alerts = _sections(page)["alerts"]
    assert others > 0 and alerts.count("<tr class=\"ev-") == changes > 0
    assert re.search(r"2018-03-29</td><td>microcap_drawdown</td><td>.*?</td><td>fired</td>", alerts)
    assert "<td>resolved</td>" in alerts and "pending" not in _text(alerts).replace(
        "pending and repeat notifications are not listed", "")
    assert "repeat" not in _text(alerts).replace("pending and repeat notifications", "")
    # the warnings per drawdown: the state alert fired during the 2018 decline, so many trading
    # days after its peak (2018-01-31); the headline rule never fired (a blank cell)
    from monitor.calendar import TradingCalendar

    after = len(TradingCalendar(config.calendar.extra_closed).days(dt.date(2018, 1, 31),
                                                                   dt.date(2018, 3, 29))) - 1
    matrix = _sections(page)["matrix"]
    row = re.search(r'<tr><td class="nowrap">2018-01-31 → 2018-07-11</td>.*?</tr>', matrix).group(0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    heads = re.findall(r"<th>([^<]*)</th>", matrix)
    assert len(cells) == len(heads) == len(config.rules) + 3  # episode, depth, rules, any warning
    by_rule = {h.split(" (")[0].replace("\u200b", ""): c for h, c in zip(heads, cells, strict=True)}
    assert by_rule["microcap_drawdown"] == f"{after} d after" and after > 30
    assert by_rule["drawdown_risk"] == ""
    assert heads[2] == "drawdown_\u200brisk (headline warning)"
    # episodes: the 2018 drawdown and at least one rotation spell
    assert "2018-01-31" in page and "Rotation episodes" in page
    assert "No rotation episode" not in page
    # the backtest table: readable headers, the trust sentence's first, then in key order (kind
    # aside; the same days for every row said once; the lead quartiles in one column),
    # percentages, missing values "–"
    backtest = _sections(page)["backtest"]
    assert ("<th>rule</th><th>drawdowns</th><th>caught</th><th>chance (mean caught)</th>"
            "<th>p (vs chance)</th><th>false alarms / yr</th><th>days in alert</th>"
            "<th>lead to trough (median days)</th><th>lead to half depth (median days)</th>"
            "<th>false alarms</th><th>lead to half depth, days (q25 / median / q75)</th></tr>"
            ) in backtest
    assert "<th>kind</th>" not in backtest and "Scored over 322 trading days" in backtest
    assert '<td class="num">-6 / 2.5 / 10</td>' in backtest
    assert '<td class="num">2.3</td>' in backtest and "<td>–</td>" in backtest
    assert '<td class="num">61.0%</td>' in backtest and '<td class="num">61%</td>' not in backtest
    assert '<td class="num">3.1%</td>' in backtest and '<td class="num">0.3</td>' in backtest
    assert '<td class="num">0.55</td>' not in backtest and '<td class="num">0.6</td>' in backtest
    # grouped by kind: warnings, the union rows, state alerts, info
    groups = re.findall(r'<tr class="group"><th colspan="11">([^<]+)</th></tr>', backtest)
    assert groups == ["Warnings", "Any warning (union rows)", "State alerts", "Info"]
    order = [re.search(rf"<td>{re.escape(r['rule'])}</td>", backtest).start() for r in BACKTEST]
    assert order[2] < order[5] < order[3] < order[4] < order[0] < order[1]
    # the headline rule's row in bold
    assert '<tr class="headline"><td>drawdown_risk</td>' in backtest


def test_first_section_is_the_overview(page, demo_db):
    first_id, overview = SECTION.findall(page)[0]
    assert first_id == "overview"
    assert page.index('id="overview"') < page.index('id="rules"')
    # its chart is the page's first image, with a title naming the period and a caption
    assert overview.count("<img ") == 1
    assert page.index(IMG.findall(page)[0]) > page.index('id="overview"')
    assert f"{FIRST} to {LAST}" in overview
    text = _text(overview)
    assert "Shaded: drawdown episodes of at least 10%, peak to trough" in text
    assert "state alerts (microcap.drawdown) and info rules are not marked" in text
    # the headline rule is named in the caption, did not fire in this demo (the risk model has
    # too little history), and its backtest row is the trust box's first sentence
    assert "large red markers for the headline rule(s) drawdown_risk (reading risk.drawdown_prob" in text
    assert "drawdown_risk (headline) fired 0 time(s)." in text
    assert ("drawdown_risk (headline): caught 1 of 1 drawdowns ≥3 trading days before half depth; "
            "chance 0.2 (p = 0.01); 0.0 false alarms a year; in alert 12.0% of days — better than "
            "chance (p = 0.01).") in text
    config = report_config()
    roles = {r.name: rule_role(r) for r in config.rules}
    # every stored drawdown episode is listed with its depth
    db = open_db(demo_db)
    eps = [dict(zip(("peak", "trough", "depth"), r, strict=True)) for r in db.execute(
        "SELECT peak, trough, depth FROM episodes WHERE kind = 'drawdown' ORDER BY start")]
    firings = dict(db.execute("SELECT rule, COUNT(*) FROM alert_events WHERE event = 'firing' "
                              "GROUP BY rule").fetchall())
    db.close()
    assert len(eps) == 2
    assert f"Drawdowns ({len(eps)}, peak → trough):" in text
    for e in eps:
        assert f"{e['peak']} → {e['trough']} ({e['depth'] * 100:.1f}%" in text
    assert re.search(r"2018-01-31 → 2018-07-11 \(-23\.\d%\)", text)
    # the state alert fired but is not marked; the warnings that fired are, with their counts
    assert roles["microcap_drawdown"] == "state" and firings["microcap_drawdown"] == 2
    assert "microcap_drawdown" not in text
    fired = {n: c for n, c in firings.items() if roles.get(n) == "warning"}
    assert fired
    for name, count in fired.items():
        assert f"{name} {count}×" in text
    # the trust box follows the chart: the "any warning" row's sentence
    assert overview.index("<img ") < overview.index('id="trust"')
    assert ("any warning: caught 1 of 1 drawdowns ≥3 trading days before half depth; chance 0.6 "
            "(p = 0.3); 2.3 false alarms a year; in alert 80.0% of days — not shown to beat "
            "chance.") in text


def _headline_config(rule_name: str):
    """The default config with ``rule_name`` reading risk.drawdown_prob, the only headline rule
    (any other is left out); built without validation."""
    config = report_config()
    rules = [RuleConfig(name=r.name, severity="critical", when="risk.drawdown_prob >= 0.5",
                        clear_when="risk.drawdown_prob < 0.3", explain="headline")
             if r.name == rule_name else r for r in config.rules if rule_role(r) != "headline"]
    return config.model_copy(update={"rules": rules})


def test_overview_marks_the_headline_rule(demo_db):
    config = _headline_config("stress_regime")
    db = open_db(demo_db)
    events = [dict(zip(("rule", "date", "event", "to_state"), r, strict=True)) for r in db.execute(
        "SELECT rule, date, event, to_state FROM alert_events ORDER BY date, id")]
    rows = [{"rule": "stress_regime", "kind": "warning", "episodes": 2, "caught": 1,
             "chance_mean": 0.2, "p_value": 0.01, "false_alarms_per_year": 0.0,
             "share_in_alert": 0.14},
            {"rule": "any warning", "kind": "union", "episodes": 2}]
    page = build_report(db, config, now=NOW, backtest_rows=rows)
    db.close()
    first, last = FIRST.isoformat(), LAST.isoformat()

    def fired(name):
        return [e["date"] for e in events if e["rule"] == name and e["event"] == "firing"
                and first <= e["date"] <= last]

    marks = warning_marks(config.rules, events, first, last)
    assert marks.headline == {"stress_regime": fired("stress_regime")}
    assert len(marks.headline_days) == 1
    assert marks.spells["stress_regime"] == firing_spans(
        [e for e in events if e["rule"] == "stress_regime"], first, last)
    others = {r.name: fired(r.name) for r in config.rules if rule_role(r) == "warning"}
    assert marks.other == {n: d for n, d in others.items() if d} != {}
    assert "microcap_drawdown" not in marks.other and fired("microcap_drawdown")
    overview = _text(_sections(page)["overview"])
    assert f"stress_regime (headline) fired 1 time(s): {marks.headline_days[0]}" in overview
    assert "large red markers for the headline rule(s) stress_regime" in overview
    assert (f"1 headline warning firing(s) and {len(marks.other_days)} other warning firing(s) "
            "marked") in page
    assert ("stress_regime (headline): caught 1 of 2 drawdowns ≥3 trading days before half "
            "depth; chance 0.2 (p = 0.01); 0.0 false alarms a year; in alert 14.0% of days — better "
            "than chance (p = 0.01).") in overview
    assert ("any warning: caught – of 2 drawdowns ≥3 trading days before half depth; chance – "
            "(p = –); – false alarms a year; in alert – of days — not compared with chance.") in overview
    assert "No rule of this config reads" not in overview
    # the headline rule's row is bold in the backtest table
    assert '<tr class="headline"><td>stress_regime</td>' in page


def test_trust_box_without_backtest_or_headline(demo_db):
    db = open_db(demo_db)
    config = report_config()
    no_headline = config.model_copy(update={"rules": [r for r in config.rules
                                                      if rule_role(r) != "headline"]})
    kwargs = {"start": dt.date(2019, 1, 2), "end": LAST}
    pages = {"none": build_report(db, config, now=NOW, **kwargs),
             "empty": build_report(db, config, now=NOW, backtest_rows=[], **kwargs),
             "no row": build_report(db, config, now=NOW, backtest_rows=BACKTEST[:4], **kwargs),
             "no headline": build_report(db, no_headline, now=NOW, backtest_rows=BACKTEST, **kwargs)}
    db.close()
    text = {k: _text(_sections(v)["overview"]) for k, v in pages.items()}
    assert "No backtest results were given for this report" in text["none"]
    assert "The backtest returned no rows" in text["empty"]
    assert "drawdown_risk (headline): not in the backtest rows." in text["no row"]
    assert "any warning: caught 1 of 1 drawdowns" in text["no row"]
    # without a headline rule: said in the caption and in the trust box; its row is not picked
    assert "(no rule reads risk.drawdown_prob, so no headline marker)" in text["no headline"]
    assert "No rule of this config reads risk.drawdown_prob" in text["no headline"]
    assert "drawdown_risk" not in text["no headline"]


def test_trust_sentence():
    row = {"rule": "risk_warning", "kind": "warning", "episodes": 12, "caught": 3,
           "chance_mean": 2.94, "p_value": 0.47, "false_alarms_per_year": 0.6,
           "share_in_alert": 0.14}
    assert trust_sentence(row) == (
        "caught 3 of 12 drawdowns ≥3 trading days before half depth; chance 2.9 (p = 0.47); "
        "0.6 false alarms a year; in alert 14.0% of days — not shown to beat chance")
    assert trust_sentence({**row, "p_value": 0.3}).endswith("— not shown to beat chance")
    assert trust_sentence({**row, "p_value": 0.01}).endswith("— better than chance (p = 0.01)")
    assert trust_sentence({**row, "p_value": 0.05}).endswith("— better than chance (p = 0.05)")
    assert trust_sentence({**row, "p_value": 0.0001}).endswith("(p < 0.001)")
    assert trust_sentence({"rule": "x"}) == (
        "caught – of – drawdowns ≥3 trading days before half depth; chance – (p = –); – false "
        "alarms a year; in alert – of days — not compared with chance")
    assert "chance – (p = –)" in trust_sentence({**row, "chance_mean": None, "p_value": float("nan")})


def _rule(name: str, when: str, severity: str = "warning") -> RuleConfig:
    return RuleConfig(name=name, severity=severity, when=when, explain="test")


def test_warning_marks_and_roles():
    rules = [_rule("headline", "risk.drawdown_prob >= 0.6 and market.return_20d < 0"),
             _rule("headline_quiet", "risk.drawdown_prob >= 0.9", "critical"),
             _rule("spike", "microcap.vol_spike >= 1.5"),
             _rule("state", "microcap.drawdown <= -0.10", "critical"),
             _rule("crowded", "turnover.csi2000_share_pctile_1y >= 0.95", "info"),
             _rule("info_prob", "risk.drawdown_prob >= 0.5", "info"),
             _rule("gated", "risk.drawdown_prob >= 0.5 and microcap.drawdown > -0.05")]
    # as the backtest's kinds: a rule reading microcap.drawdown is a state alert, whatever else
    assert [rule_role(r) for r in rules] == ["headline", "headline", "warning", "state", "info",
                                             "info", "state"]
    # a clear_when reading the signals does not make a rule headline or state
    clear_only = RuleConfig(name="c", when="microcap.vol_spike >= 1.5", explain="x",
                            clear_when="risk.drawdown_prob < 0.2 and microcap.drawdown > 0")
    assert rule_role(clear_only) == "warning"

    def ev(rule, date, event, to_state):
        return {"rule": rule, "date": date, "event": event, "to_state": to_state}

    events = [
        ev("headline", "2019-12-20", "firing", "firing"),  # before the period: a spell, no mark
        ev("headline", "2020-01-06", "resolved", "resolved"),
        ev("spike", "2020-01-07", "pending", "pending"),
        ev("spike", "2020-01-08", "firing", "firing"),
        ev("state", "2020-01-08", "firing", "firing"),
        ev("crowded", "2020-01-09", "firing", "firing"),
        ev("info_prob", "2020-01-09", "firing", "firing"),
        ev("data_stale", "2020-01-09", "firing", "firing"),
        ev("headline", "2020-02-03", "pending", "pending"),
        ev("headline", "2020-02-04", "firing", "firing"),
        ev("headline", "2020-02-11", "repeat", "firing"),  # a repeat is not a new mark
        ev("spike", "2020-02-12", "resolved", "resolved"),
        ev("headline", "2020-02-20", "resolved", "resolved"),
        ev("headline", "2020-03-02", "firing", "firing"),  # still firing at the end
        ev("spike", "2020-03-03", "firing", "firing"),
        ev("headline", "2020-04-01", "resolved", "resolved"),  # after the period
        ev("spike", "2020-04-01", "firing", "firing"),
    ]
    marks = warning_marks(rules, events, "2020-01-01", "2020-03-31")
    assert marks.headline == {"headline": ["2020-02-04", "2020-03-02"], "headline_quiet": []}
    assert marks.spells == {"headline": [("2020-01-01", "2020-01-06"), ("2020-02-04", "2020-02-20"),
                                         ("2020-03-02", None)],
                            "headline_quiet": []}
    assert marks.other == {"spike": ["2020-01-08", "2020-03-03"]}
    assert marks.headline_days == ["2020-02-04", "2020-03-02"]
    assert marks.other_days == ["2020-01-08", "2020-03-03"]
    # nothing for the state alert, the info rules or a rule that is not configured
    marked = {*marks.headline, *marks.other, *marks.spells}
    assert not marked & {"state", "crowded", "info_prob", "data_stale", "gated"}
    assert warning_marks([], events, "2020-01-01", "2020-03-31").headline == {}


def test_roles_are_the_backtest_kinds():
    from monitor.analysis import backtest

    rules = [*load_config(DEFAULT_CONFIG).rules, *report_config().rules,
             _rule("h", "risk.drawdown_prob >= 0.6"), _rule("hi", "risk.drawdown_prob >= 0.6", "info")]
    for rule in rules:
        role = rule_role(rule)
        assert backtest.rule_kind(rule) == ("warning" if role == "headline" else role)
    assert [rule_role(r) for r in rules[-2:]] == ["headline", "info"]


def test_backtest_kind():
    roles = {"h": "headline", "w": "warning", "s": "state", "i": "info"}
    assert [backtest_kind({"rule": n}, roles) for n in ("h", "w", "s", "i", "any warning",
                                                          "any rule", "unknown")] == \
        ["warning", "warning", "state", "info", "union", "union", "other"]
    assert backtest_kind({"rule": "h", "kind": "union"}, roles) == "union"


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
    text = report_config_text().replace(
        'explain = "Micro-cap volatility is at least',
        'explain = "<script>alert(1)</script> & \\"quoted\\" Micro-cap volatility is at least')
    config = config_from(text)
    db = open_db(demo_db)
    page = build_report(db, config, now=NOW, title="Risk <b>review</b>",
                        backtest_rows=[{"rule": "<img src=x onerror=alert(2)>", "caught": 1}],
                        start=dt.date(2019, 1, 2), end=LAST)
    db.close()
    assert "<script>" not in page and "<b>review" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "<title>Risk &lt;b&gt;review&lt;/b&gt;</title>" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "2019-01-02 to 2019-04-30" in page


def test_hostile_explain_and_theme_are_escaped(demo_db, tmp_path):
    """A rule's explain and a rotation episode's theme name holding markup and "&" are shown as
    text: the templates escape every value (no script element, no raw "&")."""
    import shutil as _shutil
    import sqlite3

    copy = tmp_path / "hostile.db"
    _shutil.copy(demo_db, copy)
    con = sqlite3.connect(copy)
    with con:
        changed = con.execute("UPDATE episodes SET detail = json_set(detail, '$.theme', ?) "
                              "WHERE kind = 'rotation'", ["<script>alert('t')</script> R&D"]).rowcount
    con.close()
    assert changed >= 1
    text = report_config_text().replace(
        'explain = "Micro-cap volatility is at least',
        'explain = "<script>alert(3)</script> A&B Micro-cap volatility is at least')
    db = open_db(copy)
    page = build_report(db, config_from(text), now=NOW)
    db.close()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(3)&lt;/script&gt; A&amp;B Micro-cap volatility" in page
    assert "<td>&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt; R&amp;D</td>" in page
    assert " A&B " not in page and " R&D<" not in page


def test_generated_time_is_the_given_clock(tmp_path):
    db = open_db(tmp_path / "empty.db")
    shanghai = dt.timezone(dt.timedelta(hours=8))
    page = build_report(db, load_config(DEFAULT_CONFIG), now=dt.datetime(2026, 1, 5, 9, 30, tzinfo=shanghai))
    db.close()
    assert "Generated 2026-01-05 01:30 UTC from the database" in page


def test_templates_ship_with_the_package():
    """The templates are package data: found through importlib.resources (as in an installed
    wheel), every one matched by pyproject's package-data globs, loaded with autoescaping."""
    import fnmatch
    import importlib.resources
    import tomllib

    from monitor.analysis import report

    folder = importlib.resources.files("monitor.analysis").joinpath("templates")
    names = sorted(f.name for f in folder.iterdir() if f.is_file())
    assert {"report.html", "overview.html", "sections.html", "macros.html", "style.css.html"} <= set(names)
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["monitor.analysis"]
    for name in names:
        assert any(fnmatch.fnmatch(f"templates/{name}", g) for g in globs), name
    env = report._environment()
    for name in names:
        assert env.get_template(name) is not None
        assert "|safe" not in folder.joinpath(name).read_text(encoding="utf-8").replace(" ", "")
    assert env.autoescape("report.html") is True


def test_empty_database_gives_a_page_without_charts(tmp_path):
    db = open_db(tmp_path / "empty.db")
    page = build_report(db, load_config(DEFAULT_CONFIG), now=NOW)
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
    assert set(SECTIONS) <= rendered.ids
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
    # the first screen (1400 x 900) shows the overview chart: the index line (#1f4e79) and the
    # drawdown shading (#c0392b at 16% on white, about (247, 225, 223)) in its top 900 pixels
    top = rgb[:900]
    line = (np.abs(top - np.array([31, 78, 121])) <= 12).all(axis=-1)
    shade = (np.abs(top - np.array([247, 225, 223])) <= 5).all(axis=-1)
    assert line.sum() > 400, f"no index line on the first screen ({line.sum()} pixels)"
    assert shade.sum() > 5000, f"no drawdown shading on the first screen ({shade.sum()} pixels)"
    assert line[:, :700].sum() > 100 and line[:, 700:].sum() > 100  # drawn across the width
    # the first screen on its own (a replayed database), saved beside the report
    first, share, colours = _first_screen(binary, tmp_path, report, "replayed")
    assert share > 0.05, f"first screen is blank ({share:.2%} non-white pixels)"
    assert colours > 50, f"first screen has only {colours} colours"


# -- which rule fired how long before which drawdown ------------------------------------------

def test_episode_leads():
    """Leads in trading days from the credited firing to the peak: a spell already running on
    the peak counts from its start; else the first firing from ``lookback`` days before the peak
    to the trough; repeats are not firings; nothing outside that window."""
    from monitor.analysis.report import Lead, episode_leads

    days = [f"2020-01-{d:02d}" for d in range(1, 32)]  # 31 "trading days"

    def ev(rule, date, event, to_state):
        return {"rule": rule, "date": date, "event": event, "to_state": to_state}

    events = [
        ev("early", "2020-01-03", "firing", "firing"),  # still firing on the peak (01-10)
        ev("before", "2020-01-02", "firing", "firing"),  # resolved before the peak ...
        ev("before", "2020-01-04", "resolved", "resolved"),
        ev("before", "2020-01-07", "pending", "pending"),
        ev("before", "2020-01-08", "firing", "firing"),  # ... fires again 2 days before it
        ev("before", "2020-01-09", "resolved", "resolved"),
        ev("after", "2020-01-12", "repeat", "firing"),  # a repeat is not a firing
        ev("after", "2020-01-14", "firing", "firing"),  # during the decline: 4 days after
        ev("after", "2020-01-16", "resolved", "resolved"),
        ev("late", "2020-01-20", "firing", "firing"),  # after the trough (01-15): nothing
        ev("far", "2020-01-01", "firing", "firing"),  # more than lookback days before the peak
        ev("far", "2020-01-02", "resolved", "resolved"),
    ]
    episodes = [{"start": "2020-01-10", "peak": "2020-01-10", "trough": "2020-01-15"},
                {"start": "2020-01-25", "peak": None, "trough": "2020-01-28"}]
    leads = episode_leads(events, episodes, ["early", "before", "after", "late", "far"], days,
                          lookback=5)
    assert leads == {
        (0, "early"): Lead("2020-01-03", 7, True),
        (0, "before"): Lead("2020-01-08", 2, False),
        (0, "after"): Lead("2020-01-14", -4, False),
        (1, "late"): Lead("2020-01-20", 5, True),  # still firing on the second peak (01-25)
        (1, "early"): Lead("2020-01-03", 22, True),
    }


# -- a freshly imported database (real data) ------------------------------------------------

IMPORT_FIRST, IMPORT_LAST = "2021-01-01", "2022-12-31"
REPORT_START, REPORT_END = "2022-01-01", "2022-12-31"


@pytest.fixture(scope="module")
def imported(real_data, tmp_path_factory) -> tuple[Path, object]:
    """A fresh database holding only what ``import-csv`` wrote: the real indices, themes and
    yields of IMPORT_FIRST..IMPORT_LAST (no cycle, no replay); and the imported frame."""
    import pandas as pd

    from monitor import cli
    from tests import realdata

    tmp = tmp_path_factory.mktemp("imported")
    frame = pd.concat([realdata.indices(real_data, IMPORT_FIRST, IMPORT_LAST),
                       realdata.themes(real_data, IMPORT_FIRST, IMPORT_LAST),
                       realdata.yields(real_data, IMPORT_FIRST, IMPORT_LAST)])
    csv = realdata.write_csv(frame, tmp / "real.csv")
    path = tmp / "imported.db"
    with contextlib.redirect_stdout(io.StringIO()) as said:  # the coverage table
        code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(path), "import-csv", str(csv)])
    assert code == 0, said.getvalue()
    assert "index.microcap.close" in said.getvalue()
    return path, frame


def _drawdowns(close: list[tuple[str, float]], min_depth: float) -> list[tuple]:
    """(peak, trough, recovery or None, depth) of every decline of at least min_depth from a
    running peak until the close regains it (this test's own reading of the definition)."""
    out, peak, trough = [], None, None
    for day, value in close:
        if peak is None or value >= peak[1]:
            if trough is not None and trough[1] / peak[1] - 1 <= -min_depth:
                out.append((peak[0], trough[0], day, trough[1] / peak[1] - 1))
            peak, trough = (day, value), None
        elif trough is None or value < trough[1]:
            trough = (day, value)
    if trough is not None and trough[1] / peak[1] - 1 <= -min_depth:
        out.append((peak[0], trough[0], None, trough[1] / peak[1] - 1))
    return out


def test_report_on_a_freshly_imported_database(imported, tmp_path):
    """`regime-monitor report` on a database that only import-csv has written: nothing on
    stderr (matplotlib's first-run font cache message included: a fresh MPLCONFIGDIR), the
    header's period is the backtest's, the signals are computed point-in-time and the alerts
    simulated (said plainly, with what to run), the drawdown episodes come from the closes, every
    chart has something on it; then its first screen in headless Chromium is not blank."""
    import sys

    from tests.procs import command

    path, frame = imported
    out = tmp_path / "imported.html"
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "HOME": str(tmp_path)}
    started = time.perf_counter()
    result = subprocess.run([*command(), "--config", str(DEFAULT_CONFIG), "--db", str(path), "report",
                             "--start", REPORT_START, "--end", REPORT_END, "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"stderr not empty: {result.stderr[:2000]}"
    assert result.stdout == f"report written to {out}\n"
    page = out.read_text(encoding="utf-8")
    text = _text(page)

    db = open_db(path)
    close = db.execute("SELECT date, value FROM observations WHERE series = 'index.microcap.close' "
                       "ORDER BY date").fetchall()
    db.close()
    assert len(close) == (frame["series"] == "index.microcap.close").sum()
    in_period = [d for d, _ in close if REPORT_START <= d <= REPORT_END]
    first, last, n = in_period[0], in_period[-1], len(in_period)
    # the header's period is the backtest's, said in both places
    assert f"Period: {first} to {last} ({n} trading days); the backtest covers the same period" in text
    assert f"Scored from {first} to {last} ({n} trading days): the period of this report." in text
    assert f"Scored over {n} trading days." in text
    # what is there and what is missing, plainly
    assert "Signals: computed point-in-time from the observations (no cycle has run)." in text
    assert "Alerts: simulated over the computed signals (no cycle has run)." in text
    assert "No cycle has run on this database yet" in text
    assert f"regime-monitor replay --start {first} --end {last}" in text
    assert "no stored values" not in text and "holds no signal values" not in text
    # the drawdown episodes of the imported closes, each a row of the per-episode matrix
    expected = [e for e in _drawdowns(close, 0.10) if e[0] <= last and (e[2] is None or e[2] >= first)]
    assert len(expected) >= 3
    matrix = _sections(page)["matrix"]
    rows = re.findall(r'<tr><td class="nowrap">(\S+) → (\S+)</td><td class="num">([^<]+)</td>', matrix)
    assert [(p, t, f"{d * 100:.1f}%") for p, t, _, d in expected] == rows
    assert f"Drawdowns ({len(expected)}, peak → trough)" in text
    assert re.search(r'<td class="lead-(early|late)">\d+ d (before|after)</td>', matrix)
    assert re.search(r'<td class="lead-early">already firing \(\d+ d\)</td>', matrix)
    # the matrix's green cells beside their chance baseline (the trust sentences)
    assert re.search(r"Against chance \(.*?\): .*?caught \d+ of \d+ drawdowns.*?; chance .*?"
                     r"false alarms a year; in alert .*? of days", _text(matrix))
    # the timeline: simulated firings and resolutions only
    alerts = _sections(page)["alerts"]
    assert re.search(r"\d+ firing\(s\) and \d+ resolution\(s\)", alerts)
    assert "<td>fired</td>" in alerts and "<td>resolved</td>" in alerts
    assert "<td>pending</td>" not in alerts and "<td>repeat</td>" not in alerts
    # every chart drawn has ink on it; a rule without values is said, not drawn empty
    images = _pngs(page)
    assert len(images) >= 3
    for i, img in enumerate(images):
        share, colours = _ink(img)
        assert share > 0.01 and colours > 20, f"chart {i}: {share:.2%} ink, {colours} colours"
    assert "fund_allocation_falling" in text and "their input series are missing" in text
    print(f"\nreport on the freshly imported database: {seconds:.1f} s, {len(page):,} bytes, "
          f"{len(images)} charts", file=sys.stderr)

    shot, share, colours = _first_screen(_chromium(), tmp_path, out, "imported")
    assert share > 0.05, f"first screen is blank ({share:.2%} non-white pixels)"
    assert colours > 50, f"first screen has only {colours} colours"


def test_one_day_period_leaks_no_warning(demo_observations):
    """A period of one day on a database with observations only: no warning (matplotlib's
    identical x limits), the page still made."""
    from monitor.analysis.report import compose

    db = open_db(demo_observations)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = compose(db, report_config(), now=NOW, start=dt.date(2018, 3, 1),
                       end=dt.date(2018, 3, 1), backtest_rows=False)
    db.close()
    assert not [str(w.message) for w in caught]
    assert "Period: <b>2018-03-01 to 2018-03-01</b> (1 trading days)" in page
    assert "No cycle has run on this database yet" in page


def test_backtest_covers_the_header_period(demo_db, demo_observations, tmp_path):
    """Years of closes and one month of stored signals (a daemon started last month on a
    backfilled history): the header's period is that month, and the backtest is scored over the
    same month (it used to cover every close), said in both places."""
    import sqlite3

    from monitor.analysis.report import compose

    path = tmp_path / "month.db"
    shutil.copy(demo_observations, path)
    con = sqlite3.connect(path)
    with con:
        con.execute("ATTACH DATABASE ? AS replayed", [str(demo_db)])
        copied = con.execute("INSERT INTO signal_values SELECT * FROM replayed.signal_values "
                             "WHERE date BETWEEN '2018-06-01' AND '2018-06-29'").rowcount
    con.close()
    db = open_db(path)
    closes = db.execute("SELECT MIN(date), MAX(date) FROM observations "
                        "WHERE series = 'index.microcap.close'").fetchone()
    n = db.execute("SELECT COUNT(DISTINCT date) FROM signal_values").fetchone()[0]
    page = compose(db, report_config(), now=NOW)
    db.close()
    assert copied > 0 and n == 20 and closes[0] < "2018-06-01" and closes[1] > "2018-12-31"
    text = _text(page)
    assert f"Period: 2018-06-01 to 2018-06-29 ({n} trading days); the backtest covers the same period" in text
    assert f"Scored from 2018-06-01 to 2018-06-29 ({n} trading days): the period of this report." in text
    assert f"Scored over {n} trading days." in text
    assert "Signals: stored by the daily cycle." in text


def test_a_start_after_the_end_is_refused(demo_observations):
    from monitor.analysis.report import compose
    from monitor.cycle import CycleError

    db = open_db(demo_observations)
    with pytest.raises(CycleError, match="no days from 2018-03-02 to 2018-03-01: the start is after the end"):
        compose(db, report_config(), now=NOW, start=dt.date(2018, 3, 2), end=dt.date(2018, 3, 1))
    db.close()


def _first_screen(binary: str, tmp: Path, html_path: Path, name: str) -> tuple[Path, float, int]:
    """Screenshot the page's first screen (1400 x 900) with headless Chromium into ``tmp``;
    return its path, its share of non-white pixels and its number of distinct colours (the
    PNG decoded with matplotlib), printed with the path."""
    import sys

    import matplotlib.image as mpimg

    shot = tmp / f"first-screen-{name}.png"
    _run_chromium(binary, tmp, f"--screenshot={shot}", "--window-size=1400,900",
                  url=html_path.resolve().as_uri())
    img = mpimg.imread(shot)
    assert img.shape[:2] == (900, 1400), img.shape
    share, colours = _ink(img)
    print(f"\nfirst screen ({name}): {shot} ({shot.stat().st_size:,} bytes, {share:.1%} non-white, "
          f"{colours} colours)", file=sys.stderr)
    return shot, share, colours
