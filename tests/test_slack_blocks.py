"""The Slack digest without Slack: Block Kit JSON against Slack's limits, inhibition, folding of
alerts that do not fit, the closest historical episode (hand-computed), and the chart PNG."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from monitor.config import load_config
from monitor.delivery import blocks, chart, digest
from monitor.delivery.blocks import MAX_BLOCKS, limit_problems, render
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, DEFAULT_CONFIG
from tests.slack_server import AS_OF, all_firing_payload, fill_history

KEY = f"digest:{AS_OF}"
EPISODE = {"kind": "drawdown", "start": "2023-02-07", "peak": "2023-02-07", "trough": "2023-03-21",
           "end": "2023-06-13", "depth": -0.231, "theme": None, "reference_date": "2023-02-07",
           "distance": 0.712, "signals": 14}
BOTH_KINDS = {"drawdown": EPISODE, "rotation": EPISODE}  # every alert of the fixture gets EPISODE


# The rendering is tested on a fixed rule set (ten rules, microcap_drawdown critical), not on the
# changing default config; the default config's own digest is checked against the limits too.


@pytest.fixture
def classic_config():
    return load_config(CLASSIC_CONFIG)


@pytest.fixture
def payload(classic_config):
    return digest.attach_closest(all_firing_payload(classic_config), BOTH_KINDS)


def sections(bs: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in bs if b["type"] == "section"]


def all_text(bs: list[dict]) -> str:
    return json.dumps(bs, ensure_ascii=False)


# -- 1. every default rule firing: the rendered JSON validates against Slack's limits -----------

@pytest.mark.parametrize("inhibit", [True, False])
@pytest.mark.parametrize("where", ["thread", "report", None])
def test_every_rule_firing_fits_slack_limits(payload, classic_config, inhibit, where):
    bs, text = render(payload, KEY, chart=where, inhibit=inhibit)
    assert limit_problems(bs, text) == []
    assert len(bs) <= MAX_BLOCKS
    json.dumps(bs)  # serialisable as is
    header = bs[0]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    n = len(classic_config.rules)
    assert header["text"]["text"] == f"regime-monitor {AS_OF}: {n} firing ({n} new)"
    if not inhibit:  # one section per alert, in severity order
        secs = sections(bs)
        assert len(secs) == n
        assert secs[0].startswith(f":rotating_light: *[CRITICAL] microcap_drawdown: NEW since {AS_OF}*")
        for rule, sec in zip([i["rule"] for i in payload["items"]], secs, strict=True):
            assert f"] {rule}: NEW" in sec
            assert "_Why it matters: " in sec
            assert f"silence add {rule} --until" in all_text(bs)
    assert text.startswith(f"regime-monitor {AS_OF}:") and len(text) <= 40000
    assert KEY in all_text(bs)


def test_alert_section_shows_values_against_thresholds_in_units(payload):
    bs, _ = render(payload, KEY, inhibit=False)
    text = "\n".join(sections(bs))
    # readable names beside the signal ids (signals.series.SIGNAL_NAMES)
    assert ("micro-cap drawdown from peak (microcap.drawdown) = -15.2% (threshold &lt;= -10.0%: "
            "met)") in text
    assert ("credit spread, 20d change (credit.spread_chg_20d) = 18.5 bp (threshold &gt;= 15.0 "
            "bp: met)") in text
    assert ("market turnover, 20d / 120d mean (market.amount_ratio_20_120) = 0.71 (threshold "
            "&lt;= 0.75: met)") in text
    assert "Leading theme: CSI AI / 中证人工智能主题 (930713)" in text
    ctx = all_text(bs)
    assert (":mag: Closest past drawdown: drawdown from the 2023-02-07 peak: -23.1% to "
            "2023-03-21, recovered 2023-06-13 (distance 0.71 over 14 signals)") in ctx


@pytest.mark.parametrize("inhibit", [True, False])
def test_the_default_config_all_firing_fits_slack_limits(inhibit):
    config = load_config(DEFAULT_CONFIG)
    p = digest.attach_closest(all_firing_payload(config), BOTH_KINDS)
    bs, text = render(p, KEY, chart="thread", inhibit=inhibit)
    assert limit_problems(bs, text) == []
    n = len(config.rules)
    assert bs[0]["text"]["text"] == f"regime-monitor {AS_OF}: {n} firing ({n} new)"
    for rule in config.rules:
        assert rule.name in all_text(bs), rule.name


def test_kinds_are_labelled_and_resolved_has_no_silence_line(classic_config):
    p = all_firing_payload(classic_config)
    kinds = ["firing", "repeat", "resolved"]
    items = [dict(i, kind=kinds[n % 3]) for n, i in enumerate(p["items"])]
    p = digest.build(AS_OF, items, [], [], p["composite"])
    bs, text = render(p, KEY, inhibit=False)
    secs = sections(bs)
    assert any(": STILL FIRING since" in s for s in secs)
    resolved = [s for s in secs if ": RESOLVED, had fired since" in s]
    assert resolved and all(s.startswith(":white_check_mark:") for s in resolved)
    for item in p["items"]:
        silence = f"silence add {item['rule']} --until"
        assert (silence in all_text(bs)) == (item["kind"] != "resolved"), item["rule"]
    assert limit_problems(bs, text) == []


# -- 2. inhibition -----------------------------------------------------------------------------

def test_firing_critical_folds_lower_severity_into_one_line(payload):
    bs, _ = render(payload, KEY, inhibit=True)
    secs = sections(bs)
    assert len(secs) == 1 and "[CRITICAL] microcap_drawdown" in secs[0]
    folds = [e["text"] for b in bs if b["type"] == "context" for e in b["elements"]
             if "Folded under the critical alert" in e["text"]]
    assert len(folds) == 1
    others = [i for i in payload["items"] if i["severity"] != "critical"]
    for item in others:  # one line each, with its value
        line = next(ln for ln in folds[0].splitlines()
                    if f"• {item['rule']} ({item['severity']}, NEW): " in ln)
        assert "(&gt;=" in line or "(&lt;=" in line, line
    # the fold line sits right under the critical alert's section
    critical_at = next(n for n, b in enumerate(bs) if b["type"] == "section"
                       and "[CRITICAL]" in b["text"]["text"])
    assert "Folded under" in all_text(bs[critical_at + 1:critical_at + 2])


def test_no_inhibition_without_a_firing_critical_alert(payload):
    items = [dict(i, kind="resolved") if i["severity"] == "critical" else i for i in payload["items"]]
    p = {**payload, "items": items}
    bs, _ = render(p, KEY, inhibit=True)
    assert len(sections(bs)) == len(items)
    assert "Folded under" not in all_text(bs)


def _text_sections(text: str) -> list[str]:
    """The rules that get their own section in the plain-text digest."""
    return [ln.split("] ", 1)[1].split(":", 1)[0] for ln in text.splitlines()
            if ln.startswith("[") and "] " in ln]


@pytest.mark.parametrize("enabled", [True, False])
def test_slack_fallback_and_console_show_the_same_inhibited_content(payload, enabled):
    """Inhibition is one stage (monitor.delivery.inhibit): the blocks, their plain-text fallback
    and the console show the same alerts in sections and the same folded ones."""
    import io

    from monitor.delivery.console import ConsoleNotifier
    from monitor.delivery.inhibit import inhibit

    stage = inhibit(payload, enabled)
    bs, fallback = render(payload, KEY, inhibit=enabled)
    stream = io.StringIO()
    ConsoleNotifier(stream, inhibit=enabled).send(payload, KEY)
    console = stream.getvalue()
    in_blocks = [r for r in (i["rule"] for i in payload["items"])
                 if any(f"] {r}: " in s for s in sections(bs))]
    assert in_blocks == [i["rule"] for i in stage.shown]
    assert _text_sections(console) == _text_sections(fallback) == in_blocks
    if enabled:
        assert stage.source["rule"] == "microcap_drawdown" and len(stage.folded) == 9
        for item in stage.folded:
            label = f"{item['rule']} ({item['severity']}, NEW)"
            assert label in console and label in fallback
        assert console.count("Folded under the critical alert") == 1
    else:
        assert stage.source is None and not stage.folded and len(in_blocks) == 10
        assert "Folded under" not in console + fallback


def test_the_text_fold_line_sits_under_the_critical_alert(payload):
    lines = digest.render_text(payload).splitlines()
    head = next(n for n, ln in enumerate(lines) if ln.startswith("[CRITICAL] microcap_drawdown"))
    block = lines[head:]
    fold = next(n for n, ln in enumerate(block) if "Folded under the critical alert" in ln)
    assert all(ln.startswith("  ") for ln in block[1:fold + 1])  # inside the critical's block


# -- 3. too much for one message ---------------------------------------------------------------

def test_many_long_alerts_are_folded_into_a_summary_line(payload):
    base = payload["items"][1]
    huge = "Because " + "liquidity & <crowding> " * 400  # > 3000 characters once escaped
    items = [dict(base, rule=f"rule_{n:02d}", explain=huge, severity="warning",
                  comparisons=base["comparisons"] * 30) for n in range(40)]
    p = digest.build(AS_OF, items, [i["rule"] for i in items], [], {"count": 0, "names": []})
    bs, text = render(p, KEY, chart="thread", inhibit=True)
    assert limit_problems(bs, text) == []
    assert len(bs) <= MAX_BLOCKS
    summary = [s for s in sections(bs) if s.startswith("…and ")]
    assert len(summary) == 1
    shown = sum(1 for s in sections(bs) if ": NEW since" in s)
    assert summary[0].startswith(f"…and {40 - shown} more alert(s)")
    assert "rule_39 (warning, NEW)" in summary[0]
    assert "&lt;crowding&gt;" in all_text(bs) and "<crowding>" not in all_text(bs)
    first = sections(bs)[0]  # too many values: the list is cut, the explanation stays
    assert "more value(s)" in first and "_Why it matters: Because liquidity" in first
    assert len(text) <= 40000


def test_limit_checker_catches_violations():
    bad = [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}},
           {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}},
           {"type": "context", "elements": [{"type": "mrkdwn", "text": "z"}] * 11}]
    problems = limit_problems(bad + [{"type": "divider"}] * 48, "t" * 40001)
    assert len(problems) == 5, problems


# -- 4. the closest historical episode (hand-computed) -----------------------------------------

EPISODES = [
    # a: peak 2020-01-10, finished: distance sqrt(((1-0)/1)^2 + ((2-2)/2)^2) / 2) = sqrt(0.5)
    {"kind": "drawdown", "start": "2020-01-10", "peak": "2020-01-10", "trough": "2020-03-01",
     "end": "2020-06-01", "depth": -0.25, "detail": "{}"},
    # b: rotation from 2021-03-01: sqrt((0.5^2 + (2/2)^2) / 2) = sqrt(0.625)
    {"kind": "rotation", "start": "2021-03-01", "peak": None, "trough": None, "end": "2021-03-05",
     "depth": -0.04, "detail": '{"theme": "930713"}'},
    # c: identical to today but still open: not history
    {"kind": "drawdown", "start": "2023-05-05", "peak": "2023-05-05", "trough": "2023-06-01",
     "end": None, "depth": -0.3, "detail": "{}"},
    # d: identical, but ended on the digest's day: not before it
    {"kind": "drawdown", "start": "2022-01-04", "peak": "2022-01-04", "trough": "2022-02-01",
     "end": "2024-02-05", "depth": -0.2, "detail": "{}"},
    # e: only signal c known that day (not usable today): shares no signal
    {"kind": "drawdown", "start": "2019-01-04", "peak": "2019-01-04", "trough": "2019-02-01",
     "end": "2019-03-01", "depth": -0.5, "detail": "{}"},
]
VALUES_ON = {
    "2020-01-10": {"a": 0.0, "b": 2.0},
    "2021-03-01": {"a": 1.5, "b": 0.0, "c": 9.0},
    "2023-05-05": {"a": 1.0, "b": 2.0},
    "2022-01-04": {"a": 1.0, "b": 2.0},
    "2019-01-04": {"c": 1.0},
}
TODAY = {"a": 1.0, "b": 2.0, "c": None}
SCALE = {"a": 1.0, "b": 2.0, "c": 1.0}


def test_closest_episode_hand_computed():
    got = digest.closest_episode(TODAY, EPISODES, VALUES_ON, SCALE, "2024-02-05")
    assert got["kind"] == "drawdown" and got["peak"] == "2020-01-10"
    assert got["distance"] == pytest.approx(math.sqrt(0.5), abs=1e-3)
    assert got["signals"] == 2 and got["reference_date"] == "2020-01-10"
    assert got["depth"] == -0.25 and got["end"] == "2020-06-01"
    # without a, b is the only candidate
    got = digest.closest_episode(TODAY, EPISODES[1:], VALUES_ON, SCALE, "2024-02-05")
    assert got["kind"] == "rotation" and got["theme"] == "930713"
    assert got["distance"] == pytest.approx(math.sqrt(0.625), abs=1e-3)


def test_closest_episode_scaling_changes_the_answer():
    # b's difference in signal b (2.0) weighs little when b's history is very dispersed
    scale = {"a": 1.0, "b": 100.0}
    got = digest.closest_episode(TODAY, EPISODES[:2], VALUES_ON, scale, "2024-02-05")
    assert got["kind"] == "rotation"  # sqrt((0.25 + 0.0004) / 2) < sqrt(0.5 / 2)


def test_closest_episode_ties_go_to_the_most_recent_and_nothing_usable_gives_none():
    eps = [dict(EPISODES[0]), dict(EPISODES[0], start="2021-01-11", peak="2021-01-11")]
    values = {"2020-01-10": {"a": 0.0, "b": 2.0}, "2021-01-11": {"a": 0.0, "b": 2.0}}
    assert digest.closest_episode(TODAY, eps, values, SCALE, "2024-02-05")["peak"] == "2021-01-11"
    assert digest.closest_episode({"a": None}, eps, values, SCALE, "2024-02-05") is None
    assert digest.closest_episode(TODAY, eps, values, {"a": 0.0, "b": 0.0}, "2024-02-05") is None
    assert digest.closest_episode(TODAY, [], values, SCALE, "2024-02-05") is None


def test_closest_episode_from_a_database():
    from monitor.delivery.deliver import closest_for, signal_scales

    db = open_db(":memory:")
    fill_history(db)
    got = closest_for(db, AS_OF)
    # the first drawdown's peak was written to look like today: it wins
    eps = {e["start"]: e for e in __import__("storage.episodes").episodes.list_episodes(db)}
    assert got["kind"] == "drawdown" and got["depth"] == -0.231
    assert got["peak"] == min(s for s, e in eps.items() if e["kind"] == "drawdown")
    assert got["signals"] >= 10 and 0 < got["distance"] < 1
    scales = signal_scales(db, AS_OF)
    assert all(v > 0 for v in scales.values()) and "microcap.drawdown" in scales
    # nothing finished before the first day of history
    assert closest_for(db, "2000-01-03") is None


def test_closest_episode_skips_a_rotation_spell_not_yet_known_to_be_over():
    # point-in-time: a spell whose last day is within ROTATION_MERGE_GAP_DAYS cycle days of the
    # digest day was still open then (the condition could resume), whatever the table says now
    from monitor.delivery.deliver import closest_for
    from signals.episodes import ROTATION_MERGE_GAP_DAYS
    from storage import episodes, signal_values

    db = open_db(":memory:")
    days = [d.date().isoformat() for d in pd.bdate_range("2024-01-01", periods=30)]
    signal_values.upsert(db, [(s, d, float(i % 7) + (s == "b"), None)
                              for i, d in enumerate(days) for s in ("a", "b")])
    episodes.replace_kind(db, "rotation", [{"start": days[5], "peak": None, "trough": None,
                                            "end": days[10], "depth": -0.05, "detail": "{}"}])
    gap = ROTATION_MERGE_GAP_DAYS
    assert closest_for(db, days[10 + gap], "rotation") is None
    got = closest_for(db, days[10 + gap + 1], "rotation")
    assert got is not None and got["start"] == days[5]


# -- 5. the chart ------------------------------------------------------------------------------

def test_chart_png_from_a_database(classic_config):
    db = open_db(":memory:")
    fill_history(db)
    p = all_firing_payload(classic_config)
    data = chart.load(db, p)
    assert len(data.close) == chart.DAYS and str(data.close.index[-1].date()) == AS_OF
    assert data.drawdown.iloc[-1] == pytest.approx(-0.152, abs=0.01)
    drawn = [x.signal for x in data.panels]
    assert drawn[0] == "microcap.drawdown"  # drawn on the drawdown panel, not counted
    assert len(drawn) == 1 + chart.MAX_SIGNAL_PANELS and data.omitted > 0
    png, alt = chart.chart_png(db, p)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and 20_000 < len(png) < 2_000_000
    assert AS_OF in alt and "-15.2%" in alt


def test_chart_panels_and_nothing_to_plot(classic_config):
    p = all_firing_payload(classic_config)
    panels, omitted = chart.panels_for(p, limit=100)
    keys = [(x.signal, x.op, x.threshold) for x in panels]
    assert len(keys) == len(set(keys))
    assert omitted == 0
    assert chart.load(open_db(":memory:"), p) is None  # no micro-cap history: no chart


def test_chart_render_with_a_threshold_signal():
    idx = pd.bdate_range("2024-01-01", periods=30)
    s = pd.Series(range(30), index=idx, dtype=float)
    data = chart.ChartData("2024-02-09", s + 100, s * -0.01, [
        chart.Panel("microcap.vol_20d", ">=", None, "csi300.vol_20d", ("r",))],
        {"microcap.vol_20d": s / 100, "csi300.vol_20d": s[::-1] / 100})
    assert chart.render(data).startswith(b"\x89PNG")


def test_blocks_module_is_pure_and_escapes():
    assert blocks.escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    assert blocks.clip("abcdef", 4) == "abc…" and blocks.clip("abc", 4) == "abc"


# -- 6. the redesigned digest: headline block, regime line, reminders folded -------------------

@pytest.mark.parametrize("inhibit", [True, False])
@pytest.mark.parametrize("summary", [True, False])
def test_every_rule_reminding_with_headline_and_context_fits_slack_limits(classic_config, inhibit,
                                                                          summary):
    p = all_firing_payload(classic_config, kind="repeat")
    active = [{"rule": i["rule"], "severity": i["severity"], "since": "2024-01-02"}
              for i in p["items"]]
    context = [{"name": f"c{n}", "label": "x" * 80, "label_off": "y" * 80, "holds": n % 3 == 0,
                "comparisons": [{"signal": "microcap.drawdown", "value": -0.12, "op": "<=",
                                 "threshold": -0.1, "threshold_signal": None, "holds": True}]}
               for n in range(20)]
    risk = digest.risk_block(0.34, json.dumps({"base_rate": 0.21, "contributions": [
        {"signal": "microcap.vol_spike", "value": 1.8, "z": 1.7, "logodds": 0.42}]}), [
        {"rule": "drawdown_risk", "severity": "warning", "state": "firing", "since": "2024-01-15",
         "scorecard": None}])
    p = digest.build(AS_OF, p["items"], p["firing"], [], p["composite"], active=active,
                     context=context, risk=risk, summary=summary)
    bs, text = render(p, KEY, chart="thread", inhibit=inhibit)
    assert limit_problems(bs, text) == []
    assert bs[1]["text"]["text"].startswith("*Drawdown risk 34% (base rate 21%), elevated since")
    still = [s for s in sections(bs) if s.startswith(":hourglass: *Still firing (")]
    reminded = [s for s in sections(bs) if ": STILL FIRING since" in s]
    folds = [e["text"] for b in bs if b["type"] == "context" for e in b["elements"]
             if "Folded under the critical alert" in e["text"]]
    if inhibit:  # the critical reminder keeps its section, the others fold under it
        assert len(reminded) == 1 and "microcap_drawdown" in reminded[0] and not still
        assert len(folds) == 1
    else:  # more than three reminders: no section each, one Still firing line
        assert not reminded and not folds
        assert len(still) == 1 and "microcap_drawdown (since 2024-01-02)" in still[0]
    for rule in (i["rule"] for i in p["items"]):
        assert sum(rule in t for t in [*still, *reminded, *folds]) == 1, rule
    assert ("Weekly summary" in bs[0]["text"]["text"]) == summary
