"""The digest redesign (issue 11): a digest only when something changes, the optional weekly
summary, the regime context line, the headline warning block with its measured skill, and the
scorecards it reads. Pure decisions are table-driven; the cycle is driven with precomputed values."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from monitor.alerting.context import evaluate_context
from monitor.calendar import TradingCalendar
from monitor.compute import SignalValue
from monitor.config import ConfigError, parse_config
from monitor.cycle import digest_key, run_cycle
from monitor.delivery import digest
from monitor.delivery.blocks import limit_problems, render
from monitor.sources.base import Fetched
from storage import alerts, scorecards
from storage.db import open_db

# -- 1. should_send ----------------------------------------------------------------------------


def item(rule: str, severity: str, kind: str) -> dict:
    return {"rule": rule, "severity": severity, "kind": kind}


@pytest.mark.parametrize("name,items,summary_day,expected", [
    ("nothing", [], False, False),
    ("new warning", [item("vol", "warning", "firing")], False, True),
    ("new critical", [item("dd", "critical", "firing")], False, True),
    ("only reminders", [item("vol", "warning", "repeat"), item("dd", "critical", "repeat")],
     False, False),
    ("only info firing", [item("crowded", "info", "firing")], False, False),
    ("info resolved", [item("crowded", "info", "resolved")], False, False),
    ("resolved warning", [item("vol", "warning", "resolved")], False, True),
    ("resolved critical", [item("dd", "critical", "resolved")], False, True),
    ("data_stale firing", [item("data_stale", "warning", "firing")], False, True),
    ("data_stale resolved", [item("data_stale", "warning", "resolved")], False, True),
    ("data_stale reminder", [item("data_stale", "warning", "repeat")], False, False),
    ("reminders ride along with a new warning",
     [item("dd", "critical", "repeat"), item("crowded", "info", "firing"),
      item("vol", "warning", "firing")], False, True),
    ("summary day with nothing", [], True, True),
    ("summary day with reminders", [item("vol", "warning", "repeat")], True, True),
])
def test_should_send(name, items, summary_day, expected):
    assert digest.should_send(items, summary_day) is expected, name
    assert digest.should_send(iter(items), summary_day) is expected  # any iterable


# -- 2. is_summary_day -------------------------------------------------------------------------

D = dt.date


@pytest.mark.parametrize("name,day,enabled,expected", [
    ("Friday before a weekend", D(2024, 1, 19), True, True),
    ("the same Friday, summaries off", D(2024, 1, 19), False, False),
    ("mid-week day", D(2024, 1, 17), True, False),
    ("Thursday before a Friday holiday (Mid-Autumn 2023-09-29)", D(2023, 9, 28), True, True),
    ("Wednesday before Qingming (2024-04-04/05 closed)", D(2024, 4, 3), True, True),
    ("Tuesday 2024-12-31: 2025-01-02 is in the same ISO week", D(2024, 12, 31), True, False),
    ("Thursday before an open Friday", D(2024, 1, 18), True, False),
])
def test_is_summary_day(name, day, enabled, expected):
    cal = TradingCalendar()
    nxt = cal.next(day)
    assert nxt > day and cal.is_trading_day(nxt)
    assert digest.is_summary_day(day, nxt, enabled) is expected, name


def test_is_summary_day_is_pure_on_dates():
    assert digest.is_summary_day(D(2024, 1, 19), D(2024, 1, 22), True)
    assert not digest.is_summary_day(D(2024, 1, 18), D(2024, 1, 19), True)
    assert TradingCalendar().next(D(2023, 9, 28)) == D(2023, 10, 9)


# -- 3. the regime context ---------------------------------------------------------------------

CONTEXT_TOML = """
[[context]]
name = "drawdown_under_way"
when = "microcap.drawdown <= -0.10"
label = "micro-cap drawdown under way"
label_off = "no micro-cap drawdown"

[[context]]
name = "credit_low_base"
when = "credit.spread_pctile_10y <= 0.10"
label = "credit spread at a low base"

[[context]]
name = "crowded_turnover"
when = "turnover.csi2000_share_pctile_1y >= 0.95"
label = "crowded small-cap turnover"
label_off = "small-cap turnover not crowded"
"""


def test_context_entries_evaluate_to_true_false_or_unknown():
    config = parse_config(CONTEXT_TOML)
    values = {"microcap.drawdown": -0.124, "credit.spread_pctile_10y": None,
              "turnover.csi2000_share_pctile_1y": 0.5}
    got = evaluate_context(config.context, values)
    assert [(c["name"], c["holds"]) for c in got] == [
        ("drawdown_under_way", True), ("credit_low_base", None), ("crowded_turnover", False)]
    assert got[0]["label"] == "micro-cap drawdown under way"
    assert got[0]["comparisons"] == [{"signal": "microcap.drawdown", "value": -0.124, "op": "<=",
                                      "threshold": -0.1, "threshold_signal": None, "holds": True}]
    assert got[1]["comparisons"][0]["holds"] is None and got[1]["label_off"] == ""
    json.dumps(got)  # payload data


def test_regime_line_holding_first_and_compact():
    config = parse_config(CONTEXT_TOML)
    values = {"microcap.drawdown": -0.04, "credit.spread_pctile_10y": 0.06,
              "turnover.csi2000_share_pctile_1y": 0.5}
    line = digest.regime_line(evaluate_context(config.context, values))
    assert line == ("Regime: credit spread at a low base (credit.spread_pctile_10y 6.0%) · "
                    "no micro-cap drawdown · small-cap turnover not crowded")
    values.update({"microcap.drawdown": -0.124, "credit.spread_pctile_10y": None})
    line = digest.regime_line(evaluate_context(config.context, values))
    assert line == ("Regime: micro-cap drawdown under way (microcap.drawdown -12.4%) · "
                    "credit spread at a low base: no data · small-cap turnover not crowded")
    # an entry without label_off is left out while it does not hold
    values["credit.spread_pctile_10y"] = 0.5
    line = digest.regime_line(evaluate_context(config.context[1:2], values))
    assert line == "Regime: none of the watched conditions holds"
    assert digest.regime_line([]) is None and digest.regime_line(None) is None


@pytest.mark.parametrize("entry,needle", [
    ('name = "dd"\nwhen = "microcap.drawdown <= -0.10 and"\nlabel = "x"',
     "context (dd).when: unexpected end of expression"),
    ('name = "dd"\nwhen = "microcap.drawdon <= -0.10"\nlabel = "x"',
     "context (dd).when: unknown signal 'microcap.drawdon'"),
    ('name = "dd"\nwhen = "composite.conditions_active >= 3"\nlabel = "x"',
     "context (dd).when: composite.conditions_active counts the rules"),
    ('name = "dd"\nwhen = "a.b() > 1"\nlabel = "x"', "function calls are not supported"),
    ('name = "Drawdown"\nwhen = "microcap.drawdown <= -0.10"\nlabel = "x"', "context[0].name:"),
    ('name = "dd"\nwhen = "microcap.drawdown <= -0.10"', "context[0].label: Field required"),
    ('name = "dd"\nwhen = "microcap.drawdown <= -0.10"\nlabel = ""', "context[0].label:"),
    ('name = "dd"\nwhen = "microcap.drawdown <= -0.10"\nlabel = "x"\ncolour = "red"',
     "context[0].colour: unknown key"),
])
def test_context_config_errors_name_the_entry_and_key(entry, needle):
    with pytest.raises(ConfigError) as info:
        parse_config(f"[[context]]\n{entry}\n", "monitor.toml")
    message = str(info.value)
    assert message.startswith("monitor.toml: ") and "\n" not in message
    assert needle in message


def test_duplicate_context_names_and_weekly_summary_type_are_refused():
    entry = '[[context]]\nname = "dd"\nwhen = "microcap.drawdown <= -0.1"\nlabel = "x"\n'
    with pytest.raises(ConfigError, match=r"context \(dd\).name: duplicate context name 'dd'"):
        parse_config(entry * 2, "x.toml")
    with pytest.raises(ConfigError, match="notify.weekly_summary:"):
        parse_config('[notify]\nweekly_summary = "yes"\n', "x.toml")
    assert parse_config("").notify.weekly_summary is False
    assert parse_config("[notify]\nweekly_summary = true\n").notify.weekly_summary is True


# -- 4. the headline block and its measured skill ----------------------------------------------

RISK_CONTEXT = {
    "base_rate": 0.21, "fit_through": "2024-01-12", "n_obs": 2400,
    "contributions": [
        {"signal": "microcap.vol_spike", "value": 1.8, "z": 1.7, "logodds": 0.42},
        {"signal": "market.return_20d", "value": -0.081, "z": -1.5, "logodds": 0.31},
        {"signal": "credit.spread_chg_20d", "value": 18.5, "z": 1.2, "logodds": 0.12},
        {"signal": "turnover.csi2000_share_drop_60d", "value": -0.05, "z": 0.3, "logodds": 0.05},
        {"signal": "rotation.microcap_excess_10d", "value": 0.02, "z": 0.4, "logodds": -0.2},
    ]}
SCORE = {"caught": 3, "episodes": 12, "chance_mean": 2.9, "p_value": 0.47,
         "false_alarms_per_year": 0.6, "min_lead_days": 3, "start": "2016-01-04",
         "end": "2025-06-24", "computed_at": "2025-06-25T01:00:00+00:00"}


def risk(value=0.34, state="firing", since="2024-01-15", scorecard=None, context=RISK_CONTEXT):
    return digest.risk_block(value, json.dumps(context) if context else None, [
        {"rule": "drawdown_risk", "severity": "warning", "state": state, "since": since,
         "scorecard": scorecard}])


def test_risk_text_when_the_headline_rule_fires():
    assert digest.risk_text(risk()) == (
        "Drawdown risk 34% (base rate 21%), elevated since 2024-01-15 — led by "
        "microcap.vol_spike 1.80, market.return_20d -8.1%, credit.spread_chg_20d 18.5 bp")
    # fewer than three positive contributions: only those; none: no "led by"
    few = dict(RISK_CONTEXT, contributions=RISK_CONTEXT["contributions"][-2:])
    assert digest.risk_text(risk(context=few)).endswith(
        "since 2024-01-15 — led by turnover.csi2000_share_drop_60d -5.0%")
    none = dict(RISK_CONTEXT, contributions=RISK_CONTEXT["contributions"][-1:])
    assert digest.risk_text(risk(context=none)) == (
        "Drawdown risk 34% (base rate 21%), elevated since 2024-01-15")


@pytest.mark.parametrize("state", ["inactive", "pending", "resolved", "no_data"])
def test_risk_text_when_the_headline_rule_is_not_firing(state):
    assert digest.risk_text(risk(0.12, state=state)) == "Drawdown risk 12% (base rate 21%): no alert."


def test_risk_text_without_an_estimate_or_a_base_rate():
    assert digest.risk_text(risk(None, context=None)).startswith("Drawdown risk: no estimate today")
    assert digest.risk_text(risk(0.004, state="inactive", context={})) == "Drawdown risk 0.4%: no alert."


def test_the_most_severe_firing_headline_rule_speaks():
    block = digest.risk_block(0.6, json.dumps(RISK_CONTEXT), [
        {"rule": "risk_warn", "severity": "warning", "state": "firing", "since": "2024-01-10",
         "scorecard": None},
        {"rule": "risk_crit", "severity": "critical", "state": "firing", "since": "2024-01-15",
         "scorecard": SCORE}])
    assert digest.primary_rule(block)["rule"] == "risk_crit"
    assert "elevated since 2024-01-15" in digest.risk_text(block)
    assert digest.top_lines({"risk": block})[1].startswith("Measured 2016-01-04..2025-06-24")


def test_skill_sentence_p_above_and_below_five_percent():
    assert digest.skill_text(SCORE) == (
        "Measured 2016-01-04..2025-06-24: caught 3 of 12 drawdowns ≥3 trading days before half "
        "depth; chance 2.9 (p = 0.47); 0.6 false alarms a year — not shown to beat chance.")
    good = dict(SCORE, caught=9, p_value=0.03)
    assert digest.skill_text(good) == (
        "Measured 2016-01-04..2025-06-24: caught 9 of 12 drawdowns ≥3 trading days before half "
        "depth; chance 2.9 (p = 0.03); 0.6 false alarms a year — better than chance (p ≤ 0.05).")
    assert digest.skill_text(dict(good, p_value=0.05)).endswith("better than chance (p ≤ 0.05).")
    assert digest.skill_text(dict(good, p_value=0.0501)).endswith("not shown to beat chance.")
    assert "(p < 0.01)" in digest.skill_text(dict(good, p_value=0.001))
    no_lead = {k: v for k, v in SCORE.items() if k != "min_lead_days"}
    assert "caught 3 of 12 drawdowns; chance" in digest.skill_text(no_lead)


def test_skill_sentence_without_a_scorecard():
    assert digest.skill_text(None) == "Skill not measured yet: run regime-monitor backtest --record."
    assert digest.top_lines({"risk": risk()}) == [
        digest.risk_text(risk()), "Skill not measured yet: run regime-monitor backtest --record."]
    assert digest.top_lines({"risk": None}) == [] and digest.top_lines({}) == []
    # not firing: one short line, no skill sentence
    assert digest.top_lines({"risk": risk(0.12, state="pending", scorecard=SCORE)}) == [
        "Drawdown risk 12% (base rate 21%): no alert."]


# -- 5. the rendered digest: headline first, context line, reminders folded --------------------

def alert(rule, severity, kind, since="2024-01-10"):
    return {"rule": rule, "severity": severity, "kind": kind, "since": since,
            "explain": f"Why {rule} matters.", "values": {"microcap.vol_spike": 1.8},
            "comparisons": [{"signal": "microcap.vol_spike", "value": 1.8, "op": ">=",
                             "threshold": 1.5, "threshold_signal": None, "holds": True}],
            "context": {}}


def payload(items, active=None, summary=False, with_risk=True):
    config = parse_config(CONTEXT_TOML)
    values = {"microcap.drawdown": -0.124, "credit.spread_pctile_10y": 0.06,
              "turnover.csi2000_share_pctile_1y": 0.5}
    firing = [a["rule"] for a in active] if active is not None else [
        i["rule"] for i in items if i["kind"] != "resolved"]
    return digest.build("2024-01-19", items, firing, [], {"count": 0, "names": []},
                        active=active, context=evaluate_context(config.context, values),
                        risk=risk(scorecard=SCORE) if with_risk else None, summary=summary)


def test_text_digest_opens_with_the_headline_block_then_the_regime_line():
    p = payload([alert("vol", "warning", "firing", "2024-01-19"),
                 alert("drawdown_risk", "warning", "repeat", "2024-01-15")])
    lines = digest.render_text(p).splitlines()
    assert lines[0] == "regime-monitor 2024-01-19: 2 firing (1 new)"
    assert lines[1].startswith("Drawdown risk 34% (base rate 21%), elevated since 2024-01-15")
    assert lines[2].startswith("Measured 2016-01-04..2025-06-24: caught 3 of 12")
    assert lines[3] == ("Regime: micro-cap drawdown under way (microcap.drawdown -12.4%) · "
                        "credit spread at a low base (credit.spread_pctile_10y 6.0%) · "
                        "small-cap turnover not crowded")
    assert lines.index("[WARNING] vol: NEW since 2024-01-19") > 3
    assert "[WARNING] drawdown_risk: STILL FIRING since 2024-01-15" in lines  # <= 3 reminders
    assert not any(ln.startswith("Still firing:") for ln in lines)


def test_more_than_a_few_reminders_fold_into_one_still_firing_line():
    reminders = [alert(f"rule_{n}", "warning", "repeat", f"2024-01-0{n + 2}") for n in range(4)]
    active = [{"rule": i["rule"], "severity": "warning", "since": i["since"]} for i in reminders]
    active.append({"rule": "quiet", "severity": "info", "since": "2023-12-01"})  # no item today
    p = payload([alert("vol", "warning", "firing", "2024-01-19"), *reminders],
                active=[*active, {"rule": "vol", "severity": "warning", "since": "2024-01-19"}])
    text = digest.render_text(p)
    assert "STILL FIRING" not in text
    value = ": micro-cap volatility vs its 120d median 1.80 (>= 1.50)"  # from the reminders
    assert (f"Still firing (5):\n  - rule_0 (since 2024-01-02){value}\n  - rule_1 (since "
            f"2024-01-03){value}\n  - rule_2 (since 2024-01-04){value}\n  - rule_3 (since "
            f"2024-01-05){value}\n  - quiet (since 2023-12-01)") in text  # quiet: no values given
    assert "[WARNING] vol: NEW since 2024-01-19" in text
    bs, fallback = render(p, "digest:2024-01-19", inhibit=True)
    assert limit_problems(bs, fallback) == []
    secs = [b["text"]["text"] for b in bs if b["type"] == "section"]
    assert not any("STILL FIRING" in s for s in secs)
    assert any(s.startswith(":hourglass: *Still firing (5):*\n• rule_0 (since 2024-01-02): micro")
               for s in secs)
    # three reminders or fewer keep their sections; the quiet one is still listed
    p = payload(reminders[:3], active=active)
    secs = [b["text"]["text"] for b in render(p, None)[0] if b["type"] == "section"]
    assert sum("STILL FIRING" in s for s in secs) == 3
    assert any(s.endswith("Still firing (2):*\n• rule_3 (since 2024-01-05)\n• quiet (since "
                          "2023-12-01)") for s in secs)  # not items today: no values given


@pytest.mark.parametrize("holds,expected", [
    (True, "turnover_crowded (since 2023-09-28): CSI 2000 / 中证2000 turnover share, 1y percentile "
           "96.0% (>= 95.0%)"),
    (False, "turnover_crowded (since 2023-09-28): CSI 2000 / 中证2000 turnover share, 1y percentile "
            "80.8% (>= 95.0%; fired there, not cleared yet)"),
])
def test_a_still_firing_alert_whose_condition_lapsed_says_it_has_not_cleared(holds, expected):
    """A rule with a clear condition (hysteresis) fires on while its value is back under the firing
    threshold: the line says so instead of printing a threshold the value visibly misses."""
    comp = {"signal": "turnover.csi2000_share_pctile_1y", "value": 0.96 if holds else 0.808,
            "op": ">=", "threshold": 0.95, "threshold_signal": None, "holds": holds}
    entry = {"rule": "turnover_crowded", "severity": "info", "since": "2023-09-28",
             "comparisons": [comp]}
    assert digest.one_line(entry) == expected
    # folded under a critical alert (kind given) the line is unchanged: that alert is NEW there
    assert digest.one_line(entry, "firing").endswith("(>= 95.0%)")


def test_a_payload_queued_before_the_redesign_still_renders_every_reminder():
    reminders = [alert(f"rule_{n}", "warning", "repeat", f"2024-01-0{n + 2}") for n in range(5)]
    p = payload(reminders)
    old = {k: v for k, v in p.items() if k not in ("active", "context", "risk", "summary")}
    text = digest.render_text(old)
    assert text.splitlines()[0] == "regime-monitor 2024-01-19: 5 firing (0 new)"
    # an old payload has no "active": its reminders are listed, each with its value
    assert ("  - rule_0 (since 2024-01-02): micro-cap volatility vs its 120d median 1.80 (>= "
            "1.50)") in text and "  - rule_4 (since 2024-01-06): " in text
    bs, fallback = render(old, None)
    assert limit_problems(bs, fallback) == [] and "rule_4 (since 2024-01-06)" in json.dumps(bs)


def test_slack_blocks_put_the_headline_first_and_stay_within_limits():
    p = payload([alert("vol", "warning", "firing", "2024-01-19")])
    bs, text = render(p, "digest:2024-01-19", chart="thread")
    assert limit_problems(bs, text) == []
    assert bs[0]["type"] == "header"
    assert bs[1]["type"] == "section" and bs[1]["text"]["text"].startswith(
        "*Drawdown risk 34% (base rate 21%), elevated since 2024-01-15 — led by")
    assert "\n_Measured 2016-01-04..2025-06-24: caught 3 of 12 drawdowns" in bs[1]["text"]["text"]
    regime = [e["text"] for e in bs[2]["elements"] if e["text"].startswith("Regime: ")]
    assert regime == ["Regime: micro-cap drawdown under way (microcap.drawdown -12.4%) · credit "
                      "spread at a low base (credit.spread_pctile_10y 6.0%) · small-cap turnover "
                      "not crowded"]
    assert bs[3]["type"] == "divider" and "*[WARNING] vol: NEW since 2024-01-19*" in bs[4]["text"]["text"]
    # without a headline rule: no headline block
    bs, _ = render(payload([alert("vol", "warning", "firing")], with_risk=False), None)
    assert not bs[1]["type"] == "section"


def test_headline_context_json_is_not_repeated_under_the_alert():
    it = alert("drawdown_risk", "warning", "firing")
    it["context"] = {digest.HEADLINE_SIGNAL: json.dumps(RISK_CONTEXT),
                     "rotation.hot_theme_excess": "930713"}
    it["comparisons"].append({"signal": "rotation.hot_theme_excess", "value": 0.12, "op": ">=",
                              "threshold": 0.1, "threshold_signal": None, "holds": True})
    p = payload([it])
    assert "base_rate" not in digest.render_text(p)
    bs, _ = render(p, None)
    assert "base_rate" not in json.dumps(bs)
    assert "Leading theme: CSI AI / 中证人工智能主题 (930713)" in json.dumps(bs, ensure_ascii=False)


def test_weekly_summary_with_nothing_changed():
    active = [{"rule": "microcap_drawdown", "severity": "critical", "since": "2024-01-08"},
              {"rule": "credit_low_base", "severity": "info", "since": "2023-11-20"}]
    p = payload([], active=active, summary=True)
    assert p["summary"] is True and json.loads(json.dumps(p)) == p
    text = digest.render_text(p)
    assert text.splitlines()[0] == "regime-monitor 2024-01-19: Weekly summary · 2 firing (0 new)"
    assert ("Still firing (2):\n  - microcap_drawdown (since 2024-01-08)\n  - credit_low_base "
            "(since 2023-11-20)") in text
    bs, fallback = render(p, "digest:2024-01-19", chart="thread")
    assert limit_problems(bs, fallback) == []
    assert bs[0]["text"]["text"].startswith("regime-monitor 2024-01-19: Weekly summary")
    quiet = payload([], active=[], summary=True)
    assert "Nothing is firing." in digest.render_text(quiet)
    assert "Nothing is firing." in json.dumps(render(quiet, None)[0])


# -- 6. scorecards -----------------------------------------------------------------------------

def test_scorecards_round_trip_and_idempotence():
    db = open_db(":memory:")
    assert scorecards.latest(db, "drawdown_risk") is None
    score = {"caught": 3, "episodes": 12, "chance_mean": 2.9, "p_value": 0.47,
             "false_alarms_per_year": 0.6}
    with db.atomic():
        assert scorecards.save(db, "drawdown_risk", D(2016, 1, 4), D(2025, 6, 24),
                               "2025-06-25T01:00:00+00:00", score) == 1
        assert scorecards.save(db, "drawdown_risk", "2016-01-04", "2025-06-24",
                               "2025-06-25T01:00:00+00:00", dict(reversed(score.items()))) == 0
    got = scorecards.latest(db, "drawdown_risk")
    assert got == {**score, "rule": "drawdown_risk", "start": "2016-01-04", "end": "2025-06-24",
                   "computed_at": "2025-06-25T01:00:00+00:00"}
    with db.atomic():  # a new measurement replaces the row
        assert scorecards.save(db, "drawdown_risk", "2016-01-04", "2025-07-31",
                               "2025-08-01T01:00:00+00:00", dict(score, caught=4)) == 1
    got = scorecards.latest(db, "drawdown_risk")
    assert got["caught"] == 4 and got["end"] == "2025-07-31"
    assert db.execute("SELECT COUNT(*) FROM scorecards").fetchone()[0] == 1
    assert scorecards.latest(db, "other") is None


@pytest.mark.parametrize("end,shown", [("2024-01-12", True), ("2024-01-16", False),
                                       ("2025-06-24", False)])
def test_the_cycle_shows_only_a_score_measured_before_its_day(tmp_path, end, shown):
    """A digest (live or replayed) carries the headline rule's recorded score only when the
    score's period ended before the digest's day: a replay of 2024-01-16 never quotes a
    backtest over later days."""
    config = parse_config("""
[data_quality]
stale_after_days = 0

[[rules]]
name = "drawdown_risk"
severity = "warning"
when = "risk.drawdown_prob >= 0.4"
explain = "Drawdown risk."
""")
    db = open_db(tmp_path / "score.db")
    with db.atomic():
        scorecards.save(db, "drawdown_risk", "2016-01-04", end, "2025-06-25T01:00:00+00:00",
                        {"caught": 3, "episodes": 12, "chance_mean": 2.9, "p_value": 0.47,
                         "false_alarms_per_year": 0.6})
    day = D(2024, 1, 16)
    pre = {"risk.drawdown_prob": SignalValue(0.5, {"base_rate": 0.2})}
    result = run_cycle(db, config, day, NoFetch(), TradingCalendar(), precomputed=pre)
    [rule] = result.digest["risk"]["rules"]
    assert (rule["scorecard"] is not None) is shown
    if shown:
        assert rule["scorecard"]["end"] == end


# -- 7. the cycle: digests only on changes (precomputed values, no data source) ----------------

CYCLE_TOML = """
[data_quality]
stale_after_days = 0

[notify]
weekly_summary = {weekly}

[[rules]]
name = "vol"
severity = "warning"
when = "microcap.vol_spike >= 1.5"
repeat_every_days = 2
explain = "Volatility spike."

[[rules]]
name = "crowded"
severity = "info"
when = "turnover.csi2000_share_pctile_1y >= 0.95"
explain = "Crowded small-cap turnover."
""" + CONTEXT_TOML

# day: (vol spike, turnover percentile) -> what the day notifies
WEEK = [
    (D(2024, 1, 15), 1.0, 0.50),  # Mon: nothing
    (D(2024, 1, 16), 1.6, 0.50),  # Tue: vol NEW (warning) -> digest
    (D(2024, 1, 17), 1.6, 0.50),  # Wed: vol firing, no reminder yet
    (D(2024, 1, 18), 1.6, 0.97),  # Thu: vol reminder + crowded NEW (info): no digest
    (D(2024, 1, 19), 1.6, 0.50),  # Fri: crowded RESOLVED (info): no digest (summary if weekly)
    (D(2024, 1, 22), 1.0, 0.50),  # Mon: vol RESOLVED (warning) -> digest
]


VOL_COMPARISON = {"signal": "microcap.vol_spike", "value": 1.6, "op": ">=", "threshold": 1.5,
                  "threshold_signal": None, "holds": True}


class NoFetch:
    name = "none"

    def fetch(self, as_of, since):
        return Fetched()


def run_week(tmp_path, weekly: bool):
    config = parse_config(CYCLE_TOML.format(weekly=str(weekly).lower()))
    db = open_db(tmp_path / f"week-{weekly}.db")
    cal = TradingCalendar()
    results = {}
    for day, vol, pctile in WEEK:
        pre = {"microcap.vol_spike": SignalValue(vol),
               "turnover.csi2000_share_pctile_1y": SignalValue(pctile),
               "microcap.drawdown": SignalValue(-0.12),
               "credit.spread_pctile_10y": SignalValue(0.3)}
        results[day] = run_cycle(db, config, day, NoFetch(), cal, precomputed=pre)
    return db, results


def queued(db) -> dict[str, dict]:
    return {k: json.loads(p) for k, p in db.execute("SELECT dedup_key, payload FROM outbox")}


def test_cycle_sends_a_digest_only_when_something_changes(tmp_path):
    db, results = run_week(tmp_path, weekly=False)
    assert sorted(queued(db)) == [digest_key(D(2024, 1, 16)), digest_key(D(2024, 1, 22))]
    # the events are recorded exactly as before: the reminder and the info changes are notified
    notified = db.execute("SELECT date, rule, event FROM alert_events WHERE notified = 1 "
                          "ORDER BY date, rule").fetchall()
    assert notified == [("2024-01-16", "vol", "firing"), ("2024-01-18", "crowded", "firing"),
                        ("2024-01-18", "vol", "repeat"), ("2024-01-19", "crowded", "resolved"),
                        ("2024-01-22", "vol", "resolved")]
    assert results[D(2024, 1, 18)].digest is None and results[D(2024, 1, 19)].digest is None
    runs = dict(db.execute("SELECT as_of, detail FROM runs"))
    assert json.loads(runs["2024-01-18"]) == {"observations": 0, "signals": 5, "events": 2,
                                              "notifications": 2, "digest": 0}
    assert json.loads(runs["2024-01-16"])["digest"] == 1
    sent = queued(db)[digest_key(D(2024, 1, 16))]
    assert sent["summary"] is False and sent["risk"] is None
    assert sent["active"] == [{"rule": "vol", "severity": "warning", "since": "2024-01-16"}]
    assert sent["firing_values"] == {"vol": [VOL_COMPARISON]}
    assert [c["holds"] for c in sent["context"]] == [True, False, False]
    assert digest.render_text(sent).splitlines()[1] == (
        "Regime: micro-cap drawdown under way (microcap.drawdown -12.0%) · small-cap turnover "
        "not crowded")


def test_cycle_weekly_summary_on_the_last_trading_day_of_the_week(tmp_path):
    db, results = run_week(tmp_path, weekly=True)
    out = queued(db)
    assert sorted(out) == [digest_key(D(2024, 1, d)) for d in (16, 19, 22)]
    friday = out[digest_key(D(2024, 1, 19))]
    assert friday["summary"] is True and results[D(2024, 1, 19)].digest == friday
    # the info change of the day rides along; every firing alert is listed with since-when
    assert [(i["rule"], i["kind"]) for i in friday["items"]] == [("crowded", "resolved")]
    assert friday["active"] == [{"rule": "vol", "severity": "warning", "since": "2024-01-16"}]
    assert friday["firing_values"] == {"vol": [VOL_COMPARISON]}
    text = digest.render_text(friday)
    assert text.startswith("regime-monitor 2024-01-19: Weekly summary · 1 firing (0 new)")
    assert ("Still firing (1):\n  - vol (since 2024-01-16): micro-cap volatility vs its 120d "
            "median 1.60 (>= 1.50)") in text
    assert out[digest_key(D(2024, 1, 16))]["summary"] is False


def test_cycle_rerun_keeps_the_decision(tmp_path):
    db, _ = run_week(tmp_path, weekly=False)
    config = parse_config(CYCLE_TOML.format(weekly="false"))
    before = queued(db)
    pre = {"microcap.vol_spike": SignalValue(1.0),
           "turnover.csi2000_share_pctile_1y": SignalValue(0.5),
           "microcap.drawdown": SignalValue(-0.12), "credit.spread_pctile_10y": SignalValue(0.3)}
    result = run_cycle(db, config, D(2024, 1, 22), NoFetch(), TradingCalendar(), precomputed=pre)
    assert result.status == "unchanged" and queued(db) == before


def test_cycle_puts_the_headline_block_with_its_scorecard_into_the_digest(tmp_path):
    text = CYCLE_TOML.format(weekly="false") + """
[[rules]]
name = "drawdown_risk"
severity = "warning"
when = "risk.drawdown_prob >= 0.30"
explain = "The composite probability of a 10% micro-cap drawdown within 20 trading days is high."
"""
    config = parse_config(text)
    db = open_db(tmp_path / "risk.db")
    with db.atomic():
        # a score measured before the digests' days (a later one is not shown: look-ahead)
        scorecards.save(db, "drawdown_risk", "2016-01-04", "2023-12-29", "2024-01-02T01:00:00+00:00",
                        {k: SCORE[k] for k in ("caught", "episodes", "chance_mean", "p_value",
                                               "false_alarms_per_year")})
    cal = TradingCalendar()
    ctx = json.dumps(RISK_CONTEXT)
    for day, prob in ((D(2024, 1, 15), 0.34), (D(2024, 1, 16), 0.36)):
        pre = {"microcap.vol_spike": SignalValue(1.0 if day.day == 15 else 1.6),
               digest.HEADLINE_SIGNAL: SignalValue(prob, ctx)}
        run_cycle(db, config, day, NoFetch(), cal, precomputed=pre)
    out = queued(db)
    first, second = out[digest_key(D(2024, 1, 15))], out[digest_key(D(2024, 1, 16))]
    assert first["risk"]["value"] == 0.34 and first["risk"]["base_rate"] == 0.21
    assert first["risk"]["rules"][0]["state"] == "firing"
    assert first["risk"]["rules"][0]["since"] == "2024-01-15"
    assert first["risk"]["rules"][0]["scorecard"]["p_value"] == 0.47
    item = next(i for i in first["items"] if i["rule"] == "drawdown_risk")
    assert digest.HEADLINE_SIGNAL not in item["context"]  # shown in the top line instead
    lines = digest.render_text(second).splitlines()
    assert lines[1] == ("Drawdown risk 36% (base rate 21%), elevated since 2024-01-15 — led by "
                        "microcap.vol_spike 1.80, market.return_20d -8.1%, credit.spread_chg_20d 18.5 bp")
    assert lines[2] == ("Measured 2016-01-04..2023-12-29: caught 3 of 12 drawdowns; chance 2.9 "
                        "(p = 0.47); 0.6 false alarms a year — not shown to beat chance.")
    assert alerts.get_all(db)["drawdown_risk"]["state"] == "firing"


# -- 8. issue 14: what a PM reads in ten seconds ----------------------------------------------
# One content model (digest.content) for the console, the plain-text fallback and the Slack
# blocks; the micro-cap level and its drawdown; readable names; a copyable silence line; counts
# that match the body; inhibition that never hides a NEW alert behind a critical reminder; the
# closest past episode like with like and only when close; data_stale with its last day and age.

import html  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402

from monitor.alerting import rules as rule_eval  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.delivery.console import ConsoleNotifier  # noqa: E402
from monitor.delivery.inhibit import inhibit as inhibition  # noqa: E402
from storage import observations  # noqa: E402
from tests.conftest import DEFAULT_CONFIG  # noqa: E402


def comp(signal, value, op, threshold, holds):
    return {"signal": signal, "value": value, "op": op, "threshold": threshold,
            "threshold_signal": None, "holds": holds}


VOL = [comp("microcap.vol_spike", 2.37, ">=", 1.5, True)]
DD = [comp("microcap.drawdown", -0.226, "<=", -0.10, True)]
STRESS = [comp("regime.stress_prob", 1.0, ">=", 0.8, True)]
EXODUS = [comp("turnover.csi2000_share_drop_60d", -0.181, "<=", -0.15, True)]
CREDIT = [comp("credit.spread_pctile_10y", 0.036, "<=", 0.10, True)]
# hot_theme_rotation through its large-cap branch (the issue's 2024-01-31): theme excess 6.2%
ROT_LARGECAP = [comp("rotation.hot_theme_excess", 0.062, ">=", 0.10, False),
                comp("rotation.microcap_excess_10d", -0.123, "<=", -0.03, True),
                comp("rotation.largecap_minus_microcap_20d", 0.174, ">=", 0.10, True)]
VALUES = {"volatility_spike": VOL, "microcap_drawdown": DD, "stress_regime": STRESS,
          "turnover_exodus": EXODUS, "credit_low_base": CREDIT, "hot_theme_rotation": ROT_LARGECAP}
SEV = {"microcap_drawdown": "critical"}


def it(rule, kind, since="2024-01-22", **extra):
    return {"rule": rule, "severity": SEV.get(rule, "warning"), "kind": kind, "since": since,
            "explain": f"Why {rule} matters.", "comparisons": VALUES[rule], "values": {},
            "context": extra.pop("context", {}), **extra}


def act(rule, since="2024-01-22"):
    return {"rule": rule, "severity": SEV.get(rule, "warning"), "since": since}


MICROCAP = {"close": 226067.31, "date": "2024-01-31", "peak": "2024-01-02",
            "peak_close": 292089.0, "drawdown": 226067.31 / 292089.0 - 1}


def pm_payload(items, active, summary=False, as_of="2024-01-31"):
    firing = [a["rule"] for a in active]
    return digest.build(as_of, items, firing, [], {"count": 0, "names": []}, active=active,
                        summary=summary, microcap=MICROCAP,
                        firing_values={a["rule"]: VALUES.get(a["rule"], []) for a in active})


SCENARIOS = {
    # the issue's "6 firing (1 new)": one NEW alert, five firing without an item today
    "six firing, one new": pm_payload(
        [it("hot_theme_rotation", "firing", "2024-01-31")],
        [act("microcap_drawdown"), act("stress_regime"), act("volatility_spike"),
         act("turnover_exodus", "2024-01-26"), act("credit_low_base", "2023-07-10"),
         act("hot_theme_rotation", "2024-01-31")]),
    "critical reminder, a new warning, reminders": pm_payload(
        [it("microcap_drawdown", "repeat"), it("volatility_spike", "firing", "2024-01-31"),
         it("stress_regime", "repeat"), it("turnover_exodus", "resolved")],
        [act("microcap_drawdown"), act("volatility_spike", "2024-01-31"), act("stress_regime")]),
    "critical new with new warnings": pm_payload(
        [it("microcap_drawdown", "firing", "2024-01-31"),
         it("volatility_spike", "firing", "2024-01-31"), it("stress_regime", "firing", "2024-01-31"),
         it("credit_low_base", "resolved")],
        [act("microcap_drawdown", "2024-01-31"), act("volatility_spike", "2024-01-31"),
         act("stress_regime", "2024-01-31")]),
    "more than three reminders": pm_payload(
        [it(r, "repeat") for r in ("stress_regime", "volatility_spike", "turnover_exodus",
                                   "credit_low_base")]
        + [it("hot_theme_rotation", "firing", "2024-01-31")],
        [act(r) for r in ("stress_regime", "volatility_spike", "turnover_exodus",
                          "credit_low_base")] + [act("hot_theme_rotation", "2024-01-31")]),
    "weekly summary, nothing changed": pm_payload(
        [], [act("microcap_drawdown"), act("credit_low_base", "2023-07-10")], summary=True),
    "weekly summary, nothing firing": pm_payload([], [], summary=True),
    "data stale with a note": {**pm_payload(
        [{"rule": "data_stale", "severity": "warning", "kind": "firing", "since": "2024-01-31",
          "explain": "Inputs are stale.", "values": {}, "context": {}, "comparisons": [
              {"signal": "index.csi300.close", "value": 29, "op": "<=", "threshold": 3,
               "threshold_signal": None, "holds": False, "last": "2023-12-01",
               "unit": "trading days"}]}],
        [act("volatility_spike"), act("data_stale", "2024-01-31")]),
        "notes": ["The daily cycle failed (2024-01-30): <boom> & co"]},
}


def blocks_lines(bs: list[dict]) -> list[str]:
    """The plain lines of Slack blocks: emoji, bullets, bold/italic/code marks and entities off;
    the footer (chart, dedup key) left out."""
    out = []
    for b in bs[:-1]:
        texts = ([b["text"]["text"]] if b["type"] in ("header", "section")
                 else [e["text"] for e in b.get("elements", [])])
        for t in texts:
            for ln in t.split("\n"):
                ln = re.sub(r"^:[a-z_]+: ", "", ln).removeprefix("• ")
                ln = re.sub(r"^([*_])(.*)\1$", r"\2", ln).replace("`", "")
                out.append(html.unescape(ln))
    return [ln for ln in out if ln]


def text_lines(text: str) -> list[str]:
    return [ln.strip().removeprefix("- ") for ln in text.splitlines() if ln.strip()
            and not set(ln) <= {"-"}]


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("inhibit", [True, False])
def test_console_fallback_and_slack_show_the_same_content(name, inhibit):
    p = SCENARIOS[name]
    stream = io.StringIO()
    ConsoleNotifier(stream, inhibit=inhibit).send(p, "digest:2024-01-31")
    bs, fallback = render(p, "digest:2024-01-31", chart="thread", inhibit=inhibit)
    assert limit_problems(bs, fallback) == []
    text = digest.render_text(p, inhibit=inhibit)
    fallback_plain = html.unescape(fallback).removesuffix("\n\n(id digest:2024-01-31)")
    assert fallback_plain == text
    assert text_lines(stream.getvalue()) == text_lines(text)
    assert blocks_lines(bs) == text_lines(text), name


def counted(text: str) -> dict[str, set[str]]:
    """Which rules the body shows as NEW, STILL FIRING, RESOLVED (sections and folded lines) and
    in the still-firing list, read back from the plain text."""
    out: dict[str, set[str]] = {"NEW": set(), "STILL FIRING": set(), "RESOLVED": set(),
                                "listed": set()}
    listing = False
    for ln in text.splitlines():
        if m := re.match(r"\[\w+\] (\w+): (NEW|STILL FIRING|RESOLVED)", ln):
            out[m.group(2)].add(m.group(1))
        elif m := re.match(r"\s+- (\w+) \(\w+, (NEW|STILL FIRING|RESOLVED)\): ", ln):
            out[m.group(2)].add(m.group(1))
        elif ln.startswith("Still firing ("):
            listing = True
        elif listing and (m := re.match(r"  - (\w+) \(since [\d-]+\)", ln)):
            out["listed"].add(m.group(1))
    return out


# scenario -> (headline, rules with a section or folded line as NEW, the still-firing list)
COUNTS = {
    "six firing, one new": ("6 firing (1 new)", {"hot_theme_rotation"},
                            {"microcap_drawdown", "stress_regime", "volatility_spike",
                             "turnover_exodus", "credit_low_base"}),
    "critical reminder, a new warning, reminders": ("3 firing (1 new), 1 resolved",
                                                    {"volatility_spike"}, set()),
    "critical new with new warnings": ("3 firing (3 new), 1 resolved",
                                       {"microcap_drawdown", "volatility_spike", "stress_regime"},
                                       set()),
    "more than three reminders": ("5 firing (1 new)", {"hot_theme_rotation"},
                                  {"stress_regime", "volatility_spike", "turnover_exodus",
                                   "credit_low_base"}),
    "weekly summary, nothing changed": ("Weekly summary · 2 firing (0 new)", set(),
                                        {"microcap_drawdown", "credit_low_base"}),
    "weekly summary, nothing firing": ("Weekly summary · 0 firing (0 new)", set(), set()),
    "data stale with a note": ("2 firing (1 new)", {"data_stale"}, {"volatility_spike"}),
}


@pytest.mark.parametrize("name", list(COUNTS))
@pytest.mark.parametrize("inhibit", [True, False])
def test_the_headline_counts_match_what_the_body_shows(name, inhibit):
    p = SCENARIOS[name]
    title, new, listed = COUNTS[name]
    text = digest.render_text(p, inhibit=inhibit)
    assert text.splitlines()[0] == f"regime-monitor 2024-01-31: {title}"
    seen = counted(text)
    assert seen["NEW"] == new
    assert seen["listed"] == listed
    firing = seen["NEW"] | seen["STILL FIRING"] | seen["listed"]
    assert firing == set(p["firing"]) and len(firing) == p["counts"]["firing"]
    assert len(seen["RESOLVED"]) == p["counts"]["resolved"]
    # every counted alert has at least a one-line value: a threshold on its line or under it
    for rule in firing | seen["RESOLVED"]:
        lines = text.splitlines()
        at = next(n for n, ln in enumerate(lines) if re.search(rf"\b{rule}\b", ln))
        assert re.search(r"(>=|<=) -?\d|trading days? old", "\n".join(lines[at:at + 2])), (
            rule, lines[at])


# (critical source kind, lower-severity item kind) -> folded under the critical alert?
@pytest.mark.parametrize("source,kind,folded", [
    ("firing", "firing", True),    # the same new event: folded, one line with its value
    ("firing", "repeat", True),
    ("firing", "resolved", True),
    ("repeat", "firing", False),   # a NEW alert is never hidden behind a critical reminder
    ("repeat", "repeat", True),
    ("repeat", "resolved", True),
    ("resolved", "firing", False),  # a resolved critical inhibits nothing
])
def test_inhibition_table(source, kind, folded):
    p = pm_payload([it("microcap_drawdown", source), it("volatility_spike", kind)],
                   [act("microcap_drawdown"), act("volatility_spike")])
    stage = inhibition(p, True)
    assert [i["rule"] for i in stage.folded] == (["volatility_spike"] if folded else [])
    text = digest.render_text(p)
    label = {"firing": "NEW", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[kind]
    if folded:
        assert (f"    - volatility_spike (warning, {label}): micro-cap volatility vs its 120d "
                "median 2.37 (>= 1.50)") in text
        assert "[WARNING] volatility_spike" not in text
    else:
        assert f"[WARNING] volatility_spike: {label}" in text
    assert inhibition(p, False).folded == []


@pytest.mark.parametrize("closes,as_of,expected", [
    # hand-computed: peak 120 on 2023-09-12, last 74.40 -> 74.4 / 120 - 1 = -38.0%
    ([("2023-09-11", 100.0), ("2023-09-12", 120.0), ("2023-09-13", 110.0), ("2024-02-08", 74.4)],
     "2024-02-08", "Wind Micro-cap / 万得微盘股 74.40: -38.0% from its 2023-09-12 peak"),
    # the peak is the latest of equal highs; a missing close is skipped; order does not matter
    ([("2024-01-05", 90.0), ("2024-01-03", 100.0), ("2024-01-04", 100.0), ("2024-01-08", None)],
     "2024-01-08", "Wind Micro-cap / 万得微盘股 90.00 on 2024-01-05: -10.0% from its 2024-01-04 peak"),
    ([("2024-01-03", 100.0), ("2024-01-04", 1234.5)], "2024-01-04",
     "Wind Micro-cap / 万得微盘股 1,234.50: at its peak (2024-01-04)"),
])
def test_microcap_line_hand_computed(closes, as_of, expected):
    state = digest.microcap_state(closes)
    assert digest.microcap_text(state, as_of) == expected
    assert digest.microcap_state([]) is None and digest.microcap_text(None, as_of) is None


def test_microcap_line_is_point_in_time_in_the_cycle(tmp_path):
    """The cycle reads only the closes available on the digest's day: a close published the next
    morning and a later, higher peak are not in that day's digest."""
    config = parse_config(CYCLE_TOML.format(weekly="false"))
    db = open_db(tmp_path / "mc.db")
    closes = {"2024-01-10": 100.0, "2024-01-11": 120.0, "2024-01-12": 108.0, "2024-01-15": 96.0,
              "2024-01-16": 90.0, "2024-01-17": 130.0}
    rows = [("index.microcap.close", d, v, d if d != "2024-01-16" else "2024-01-17", "test")
            for d, v in closes.items()]
    with db.atomic():
        observations.upsert(db, rows)
    cal = TradingCalendar()
    for day, vol in ((D(2024, 1, 15), 1.0), (D(2024, 1, 16), 1.6)):
        run_cycle(db, config, day, NoFetch(), cal, precomputed={
            "microcap.vol_spike": SignalValue(vol), "microcap.drawdown": SignalValue(-0.2)})
    sent = queued(db)[digest_key(D(2024, 1, 16))]
    # on 2024-01-16 its own close (published 01-17) is unknown: the last is 96 on 01-15
    assert sent["microcap"] == {"close": 96.0, "date": "2024-01-15", "peak": "2024-01-11",
                                "peak_close": 120.0, "drawdown": pytest.approx(-0.2)}
    assert digest.render_text(sent).splitlines()[1] == (
        "Wind Micro-cap / 万得微盘股 96.00 on 2024-01-15: -20.0% from its 2024-01-11 peak")


def test_silence_line_has_a_real_date_and_runs_as_copied(tmp_path, capsys):
    assert digest.silence_command("stress_regime", "2024-02-09") == (
        'regime-monitor silence add stress_regime --until 2024-02-16 --reason '
        '"seen in the 2024-02-09 digest"')
    assert "YYYY" not in digest.render_text(SCENARIOS["six firing, one new"])
    from monitor import cli

    today = dt.date.today().isoformat()
    line = digest.silence_command("volatility_spike", today)
    argv = shlex.split(line)
    assert argv[:3] == ["regime-monitor", "silence", "add"]
    db = str(tmp_path / "s.db")
    code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", db, *argv[1:]])
    out, err = capsys.readouterr()
    assert code == 0, err
    until = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    assert until in out


@pytest.mark.parametrize("extra,expected", [
    ({"value": 6, "last": "2024-01-05"},
     "Wind Micro-cap / 万得微盘股 close (index.microcap.close): last value 2024-01-05, 6 trading "
     "days old (limit 3)"),
    ({"value": 1, "last": "2024-01-11"},
     "Wind Micro-cap / 万得微盘股 close (index.microcap.close): last value 2024-01-11, 1 trading "
     "day old (limit 3)"),
    ({"value": None, "last": None},
     "Wind Micro-cap / 万得微盘股 close (index.microcap.close): no value stored (limit 3)"),
    # a payload queued before issue 14 (no "last"): no "n/a (threshold ...)" either
    ({"value": None}, "Wind Micro-cap / 万得微盘股 close (index.microcap.close): no recent value "
                      "(limit 3)"),
])
def test_data_stale_shows_last_date_and_age_not_na(extra, expected):
    c = {"signal": "index.microcap.close", "op": "<=", "threshold": 3, "threshold_signal": None,
         "holds": False, **extra}
    assert digest.comparison_text(c, digest.DATA_STALE) == expected
    assert "n/a" not in digest.short_value(c, digest.DATA_STALE)


STALE_TOML = """
[data_quality]
stale_after_days = 3
required = ["index.microcap.close", "index.csi300.close"]

[[rules]]
name = "vol"
severity = "info"
when = "microcap.vol_spike >= 1.5"
explain = "Volatility spike."
"""


def test_cycle_data_stale_digest_names_the_last_day_and_age(tmp_path):
    """Bug 7: a series fresh until 2024-01-05 and one last seen 2023-12-01 (outside the
    lookback), checked on 2024-01-12. Trading days after 2024-01-05 up to 01-12: 8, 9, 10, 11,
    12 = 5; after 2023-12-01: 20 in December (4-8, 11-15, 18-22, 25-29) + 9 in January (2-5,
    8-12; 1 January closed) = 29."""
    config = parse_config(STALE_TOML)
    db = open_db(tmp_path / "stale.db")
    with db.atomic():
        observations.upsert(db, [("index.microcap.close", "2024-01-05", 100.0, "2024-01-05", "t"),
                                 ("index.csi300.close", "2023-12-01", 3500.0, "2023-12-01", "t")])
    run_cycle(db, config, D(2024, 1, 12), NoFetch(), TradingCalendar(),
              precomputed={"microcap.vol_spike": SignalValue(1.0)})
    sent = queued(db)[digest_key(D(2024, 1, 12))]
    text = digest.render_text(sent)
    assert "n/a" not in text
    assert ("  CSI 300 / 沪深300 close (index.csi300.close): last value 2023-12-01, 29 trading days "
            "old (limit 3)") in text
    assert ("  Wind Micro-cap / 万得微盘股 close (index.microcap.close): last value 2024-01-05, 5 "
            "trading days old (limit 3)") in text
    assert "Closest past" not in text  # a data problem has no market analogue


# hot_theme_rotation as configured: (theme excess, micro-cap 10d excess, large-cap minus micro-cap)
@pytest.mark.parametrize("values,leading", [
    ((0.062, -0.123, 0.174), False),  # the large-cap branch, theme excess small: no theme named
    ((-0.04, 0.01, 0.12), False),     # the large-cap branch, theme excess negative
    ((0.12, -0.05, 0.02), True),      # the theme branch: its theme leads
    ((0.15, -0.05, 0.12), True),      # both branches: the theme branch holds too
])
def test_hot_theme_rotation_names_a_leading_theme_only_through_its_theme_branch(values, leading):
    config = load_config(DEFAULT_CONFIG)
    rule = config.rule("hot_theme_rotation")
    ev = rule_eval.evaluate(rule, dict(zip(
        ["rotation.hot_theme_excess", "rotation.microcap_excess_10d",
         "rotation.largecap_minus_microcap_20d"], values, strict=True)))
    assert ev.when is True
    item = {"rule": rule.name, "severity": rule.severity, "kind": "firing", "since": "2024-01-31",
            "explain": rule.explain, "comparisons": ev.comparisons, "values": ev.values,
            "context": {"rotation.hot_theme_excess": "600519"}}
    text = digest.render_text(digest.build("2024-01-31", [item], [rule.name], [],
                                           {"count": 1, "names": [rule.name]}))
    assert ("  Leading theme: Kweichow Moutai / 贵州茅台 (600519)" in text) is leading
    assert ("600519" in text) is leading


@pytest.mark.parametrize("rule,comparisons,kind", [
    ("drawdown_risk", [comp("risk.drawdown_prob", 0.45, ">=", 0.4, True)], "drawdown"),
    ("microcap_drawdown", DD, "drawdown"),
    ("volatility_spike", VOL, "drawdown"),
    ("hot_theme_rotation", ROT_LARGECAP, "rotation"),
    ("data_stale", [{"signal": "index.microcap.close", "value": 5, "op": "<=", "threshold": 3,
                     "threshold_signal": None, "holds": False, "last": "2024-01-05"}], None),
])
def test_episode_kind_like_with_like(rule, comparisons, kind):
    assert digest.episode_kind({"rule": rule, "comparisons": comparisons}) == kind


# today a=1, b=2 (scales 1 and 2). Drawdown on 2020-01-10 at a=0, b=2:
# sqrt(((1-0)/1)^2 + 0) / 2) = sqrt(0.5) = 0.707 (close). Rotation from 2021-03-01 at a=3.5, b=2:
# sqrt((2.5^2 + 0) / 2) = 1.768 (not close: > 1.0).
LIKE_EPISODES = [
    {"kind": "drawdown", "start": "2020-01-10", "peak": "2020-01-10", "trough": "2020-03-01",
     "end": "2020-06-01", "depth": -0.25, "detail": "{}"},
    {"kind": "rotation", "start": "2021-03-01", "peak": None, "trough": None, "end": "2021-03-12",
     "depth": -0.04, "detail": '{"theme": "930713"}'},
]
LIKE_VALUES = {"2020-01-10": {"a": 0.0, "b": 2.0}, "2021-03-01": {"a": 3.5, "b": 2.0}}


def test_closest_episode_by_kind_and_only_when_close():
    today, scale = {"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}
    dd = digest.closest_episode(today, LIKE_EPISODES, LIKE_VALUES, scale, "2024-02-05",
                                kind="drawdown")
    rot = digest.closest_episode(today, LIKE_EPISODES, LIKE_VALUES, scale, "2024-02-05",
                                 kind="rotation")
    assert (dd["kind"], dd["close"]) == ("drawdown", True)
    assert dd["distance"] == pytest.approx(math.sqrt(0.5), abs=1e-3)
    assert (rot["kind"], rot["close"]) == ("rotation", False)
    assert rot["distance"] == pytest.approx(math.sqrt(2.5 ** 2 / 2), abs=1e-3)
    assert digest.MAX_EPISODE_DISTANCE == 1.0
    payload = pm_payload([it("volatility_spike", "firing", "2024-02-05"),
                          it("hot_theme_rotation", "firing", "2024-02-05")],
                         [act("volatility_spike", "2024-02-05"),
                          act("hot_theme_rotation", "2024-02-05")], as_of="2024-02-05")
    payload = digest.attach_closest(payload, {"drawdown": dd, "rotation": rot})
    text = digest.render_text(payload)
    assert ("  Closest past drawdown: drawdown from the 2020-01-10 peak: -25.0% to 2020-03-01, "
            "recovered 2020-06-01 (distance 0.71 over 2 signals)") in text
    assert ("  Closest past rotation: none close (nearest 1.77 apart, close means <= 1.00)"
            in text)
    assert "930713" not in text  # the far rotation is not named
    none = digest.attach_closest(payload, {"drawdown": None, "rotation": None})
    assert "  Closest past drawdown: none to compare with" in digest.render_text(none)


def test_delivery_attaches_the_closest_episode_of_each_alerts_kind(tmp_path):
    from monitor.delivery.deliver import prepare
    from tests.slack_server import AS_OF, fill_history

    db = open_db(":memory:")
    fill_history(db)  # a close drawdown episode and a rotation spell, both finished
    p = digest.build(AS_OF, [it("volatility_spike", "firing", AS_OF),
                             it("hot_theme_rotation", "firing", AS_OF),
                             it("turnover_exodus", "resolved")],
                     ["volatility_spike", "hot_theme_rotation"], [], {"count": 0, "names": []})
    got = {i["rule"]: i.get("closest_episode", "absent") for i in prepare(db, p)["items"]}
    assert got["volatility_spike"]["kind"] == "drawdown"
    assert got["volatility_spike"]["depth"] == -0.231 and got["volatility_spike"]["close"]
    assert got["hot_theme_rotation"]["kind"] == "rotation"
    assert got["turnover_exodus"] == "absent"  # a resolution gets no analogue


def test_readable_names_for_every_signal_and_index():
    import signals
    from signals.series import INDEX_IDS, INDEX_NAMES, SIGNAL_NAMES, display_name, labelled

    assert set(SIGNAL_NAMES) == set(signals.REGISTRY)
    assert set(INDEX_NAMES) == set(INDEX_IDS)
    assert all(len(n) <= 60 for n in SIGNAL_NAMES.values())
    assert display_name("index.csi2000.amount") == "CSI 2000 / 中证2000 amount"
    assert labelled("turnover.csi2000_share_drop_60d") == (
        "CSI 2000 / 中证2000 turnover share vs its 60d high (turnover.csi2000_share_drop_60d)")
    assert labelled("no.such") == "no.such" and display_name("no.such") is None
    text = digest.render_text(SCENARIOS["six firing, one new"])
    assert "CSI 300 / 沪深300 minus micro-cap, 20d (rotation.largecap_minus_microcap_20d)" in text


def test_the_issue_digest_reads_on_a_phone():
    """The issue's 2024-01-31 digest: short lines up top, every alert with a value, and no more
    than 20 lines."""
    text = digest.render_text(SCENARIOS["six firing, one new"])
    lines = text.splitlines()
    assert lines[0] == "regime-monitor 2024-01-31: 6 firing (1 new)"
    assert lines[1] == "Wind Micro-cap / 万得微盘股 226,067.31: -22.6% from its 2024-01-02 peak"
    assert len(lines) <= 20, text
    assert "Why it matters" in text and text.count("Why it matters") == 1  # the NEW alert only
