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
        scorecards.save(db, "drawdown_risk", "2016-01-04", "2025-06-24", "2025-06-25T01:00:00+00:00",
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
    assert lines[2] == ("Measured 2016-01-04..2025-06-24: caught 3 of 12 drawdowns; chance 2.9 "
                        "(p = 0.47); 0.6 false alarms a year — not shown to beat chance.")
    assert alerts.get_all(db)["drawdown_risk"]["state"] == "firing"
