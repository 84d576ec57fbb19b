"""`regime-monitor status` on a hand-built database: each rule's state, its values against the
firing and the clearing condition (with the days counted so far), the data coverage of every
series (first and last day, rows, age in XSHG trading days, stale), and the rules lacking inputs.

The database is written through the storage functions (as the cycle writes it), so every number
below is known by construction.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from monitor import cli
from monitor.alerting.lifecycle import AlertState
from monitor.calendar import TradingCalendar
from storage import alerts, observations, runs, signal_values, silences
from storage.db import open_db
from storage.util import dumps

CONFIG = """
[[rules]]
name = "crowded"
severity = "info"
when = "turnover.csi2000_share_pctile_1y >= 0.95"
clear_when = "turnover.csi2000_share_pctile_1y < 0.70"
clear_days = 3
explain = "Turnover is crowded into small caps."

[[rules]]
name = "vol"
when = "microcap.vol_spike >= 1.5"
for_days = 2
clear_days = 2
explain = "Micro-cap volatility spikes."

[[rules]]
name = "funds_drop"
severity = "info"
when = "funds.smallcap_share_mean_chg <= -0.03"
explain = "Funds leave small caps."

[[rules]]
name = "theme"
when = "rotation.hot_theme_excess >= 0.10"
explain = "A hot theme pulls money away."
"""
LAST_DAY = "2024-03-01"  # the last cycle
JUDGED_ON = "2024-03-05"  # `--as-of`: two trading days later (2024-03-04 and 2024-03-05)


@pytest.fixture
def status_db(tmp_path: Path) -> tuple[Path, Path]:
    """(config, database): the four rules above after the cycle of 2024-03-01."""
    config = tmp_path / "status.toml"
    config.write_text(CONFIG, encoding="utf-8")
    path = tmp_path / "h.db"
    cal = TradingCalendar()
    db = open_db(path)
    rows = []
    for day in cal.days(dt.date(2024, 1, 2), dt.date(2024, 3, 1)):  # 38 trading days
        rows.append(("index.microcap.close", day.isoformat(), 1000.0, day.isoformat(), "test"))
        rows.append(("index.csi300.close", day.isoformat(), 3500.0, day.isoformat(), "test"))
    for day in cal.days(dt.date(2024, 1, 2), dt.date(2024, 2, 26)):  # 34 trading days
        rows.append(("index.csi2000.amount", day.isoformat(), 2.0e10, day.isoformat(), "test"))
        rows.append(("index.all_a.amount", day.isoformat(), 9.0e11, day.isoformat(), "test"))
    with db.atomic():
        observations.upsert(db, rows)
        signal_values.upsert(db, [
            ("turnover.csi2000_share_pctile_1y", LAST_DAY, 0.78, None),
            ("microcap.vol_spike", LAST_DAY, 1.72, None),
            ("funds.smallcap_share_mean_chg", LAST_DAY, None, None),
            ("rotation.hot_theme_excess", LAST_DAY, None, None),
        ])
        states = {
            # firing since 2024-02-20, the value between the two thresholds: neither side holds
            "crowded": AlertState("firing", since="2024-02-20", true_count=5, clear_count=0),
            "vol": AlertState("pending", since=LAST_DAY, true_count=1),  # 1 of 2 days
            "funds_drop": AlertState("no_data", since="2024-01-02"),
            "theme": AlertState("no_data", since="2024-01-02"),
        }
        for name, state in states.items():
            alerts.save(db, {"rule": name, "severity": "info" if name != "vol" else "warning",
                             "state": state.state, "state_json": state.to_json(),
                             "prev_state_json": AlertState().to_json(),
                             "last_evaluated": LAST_DAY, "since": state.since,
                             "last_values": dumps({})})
        runs.record(db, "cycle", LAST_DAY, "2024-03-01T12:00:00+00:00",
                    "2024-03-01T12:00:05+00:00", runs.OK)
    db.close()
    return config, path


def status(capsys, config: Path, path: Path, *extra: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(config), "--db", str(path), "status", "--as-of", JUDGED_ON,
                     *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_shows_both_thresholds_the_days_counted_and_the_coverage(status_db, capsys):
    config, path = status_db
    code, out, err = status(capsys, config, path)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[:2] == [f"database: {path}",
                         f"last cycle: {LAST_DAY} ok (finished 2024-03-01T12:00:05+00:00)"]
    start = lines.index("rules:")
    assert lines[start + 1:start + 12] == [
        f"  crowded [info]: FIRING since 2024-02-20; values of {LAST_DAY}",
        "    fires when turnover.csi2000_share_pctile_1y >= 0.95 for 1 trading day: not met",
        "        turnover.csi2000_share_pctile_1y = 78.0% (>= 95.0%: not met)",
        "    clears when turnover.csi2000_share_pctile_1y < 0.7 for 3 trading days: not met, "
        "0 of 3 trading days so far",
        "        turnover.csi2000_share_pctile_1y = 78.0% (< 70.0%: not met)",
        f"  vol [warning]: pending since {LAST_DAY}; values of {LAST_DAY}",
        "    fires when microcap.vol_spike >= 1.5 for 2 trading days: met, 1 of 2 trading days "
        "so far",
        "        microcap.vol_spike = 1.72 (>= 1.50: met)",
        "    clears when the firing condition no longer holds for 2 trading days: not met",
        f"  funds_drop [info]: no_data since 2024-01-02; values of {LAST_DAY}",
        "    fires when funds.smallcap_share_mean_chg <= -0.03 for 1 trading day: no data",
    ]
    assert ("    lacks input: funds.smallcap_share_mean (no observation stored)" in lines)
    assert ("    lacks input: index.all_a.close, theme.*.close (no observation stored)" in lines)
    assert ("  data_stale [warning] (built in): not evaluated yet; fires when a required series "
            "is more than 3 trading days old") in lines
    table = lines[lines.index(f"data coverage (age in XSHG trading days on {JUDGED_ON}):") + 1:]
    rows = {ln.split()[0]: ln.split() for ln in table[2:6]}
    assert rows["index.all_a.amount"] == ["index.all_a.amount", "2024-01-02", "2024-02-26", "34",
                                          "6", "STALE", "crowded"]
    assert rows["index.csi2000.amount"][1:7] == ["2024-01-02", "2024-02-26", "34", "6", "STALE",
                                                 "crowded"]
    assert rows["index.microcap.close"][1:] == ["2024-01-02", LAST_DAY, "38", "2", "vol"]
    assert rows["index.csi300.close"][1:] == ["2024-01-02", LAST_DAY, "38", "2", "-"]
    assert ("rules lacking inputs: funds_drop (funds.smallcap_share_mean); theme "
            "(index.all_a.close, theme.*.close)") in lines
    assert ("rules reading stale series: crowded (index.all_a.amount, index.csi2000.amount)"
            in lines)
    assert f"calendar: XSHG holidays known to {TradingCalendar().coverage_end} (judged on " \
           f"{JUDGED_ON})" in lines


def test_status_json_has_the_same_numbers(status_db, capsys):
    config, path = status_db
    code, out, _ = status(capsys, config, path, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["last_cycle"]["as_of"] == LAST_DAY and data["last_cycle"]["status"] == "ok"
    assert data["judged_on"] == JUDGED_ON
    crowded = data["rules"][0]
    assert (crowded["rule"], crowded["state"], crowded["since"]) == ("crowded", "firing",
                                                                     "2024-02-20")
    assert crowded["values"] == {"turnover.csi2000_share_pctile_1y": 0.78}
    assert crowded["fire"]["holds"] is False and crowded["fire"]["held"] is None
    assert [(c["op"], c["threshold"], c["holds"]) for c in crowded["fire"]["comparisons"]] == [
        (">=", 0.95, False)]
    assert crowded["clear"]["holds"] is False
    assert (crowded["clear"]["days"], crowded["clear"]["held"]) == (3, 0)
    assert [(c["op"], c["threshold"], c["holds"]) for c in crowded["clear"]["comparisons"]] == [
        ("<", 0.70, False)]
    vol = data["rules"][1]
    assert (vol["fire"]["holds"], vol["fire"]["held"], vol["fire"]["days"]) == (True, 1, 2)
    assert vol["clear"]["condition"] == "not (microcap.vol_spike >= 1.5)"
    assert vol["clear"]["holds"] is False
    assert data["rules_lacking_inputs"] == {"funds_drop": ["funds.smallcap_share_mean"],
                                            "theme": ["index.all_a.close", "theme.*.close"]}
    assert data["rules_with_stale_inputs"] == {
        "crowded": ["index.all_a.amount", "index.csi2000.amount"]}
    series = {s["series"]: s for s in data["series"]}
    assert series["index.all_a.amount"] == {
        "series": "index.all_a.amount", "first": "2024-01-02", "last": "2024-02-26",
        "observations": 34, "age_trading_days": 6, "required": True, "stale": True,
        "rules": ["crowded"]}
    assert series["index.csi300.close"]["required"] is False
    assert series["index.csi300.close"]["stale"] is False
    assert series["index.microcap.close"]["age_trading_days"] == 2
    assert data["calendar"]["holidays_known_to"] == TradingCalendar().coverage_end.isoformat()


def test_status_after_the_clear_condition_started_counting(status_db, capsys):
    """The firing alert's value falls below the clear threshold: the clear side is met and
    counts its first day."""
    config, path = status_db
    db = open_db(path)
    with db.atomic():
        signal_values.upsert(db, [("turnover.csi2000_share_pctile_1y", LAST_DAY, 0.65, None)])
        state = AlertState("firing", since="2024-02-20", true_count=5, clear_count=1)
        alerts.save(db, {**alerts.get_all(db)["crowded"], "state_json": state.to_json()})
    db.close()
    code, out, _ = status(capsys, config, path)
    assert code == 0
    assert ("    clears when turnover.csi2000_share_pctile_1y < 0.7 for 3 trading days: met, "
            "1 of 3 trading days so far") in out.splitlines()
    assert "        turnover.csi2000_share_pctile_1y = 65.0% (< 70.0%: met)" in out.splitlines()


def test_status_names_the_silence_in_force_for_a_rule(status_db, capsys):
    config, path = status_db
    db = open_db(path)
    silences.add(db, "crowded", dt.date(2024, 3, 4), "ended before the day judged on")
    kept = silences.add(db, "crowded", dt.date(2024, 3, 8), "index rebalancing week")
    db.close()
    code, out, _ = status(capsys, config, path)
    assert code == 0
    assert (f"  crowded [info]: FIRING since 2024-02-20 (silenced until 2024-03-08: index "
            f"rebalancing week); values of {LAST_DAY}") in out.splitlines()
    code, out, _ = status(capsys, config, path, "--json")
    rules = {r["rule"]: r for r in json.loads(out)["rules"]}
    assert rules["crowded"]["silenced"] == {"id": kept, "until": "2024-03-08",
                                            "reason": "index rebalancing week"}
    assert rules["vol"]["silenced"] is None


def test_status_of_a_missing_database_creates_nothing(tmp_path, capsys):
    config = tmp_path / "status.toml"
    config.write_text(CONFIG, encoding="utf-8")
    missing = tmp_path / "nope" / "x.db"
    code, out, err = status(capsys, config, missing)
    assert code == 1 and out == ""
    assert err == (f"regime-monitor: error: no database at {missing}: check --db or [storage] "
                   "path (`once`, `backfill`, `import-csv` or `demo` create it)\n")
    assert not (tmp_path / "nope").exists()
