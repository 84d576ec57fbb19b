"""The CLI bugs a new user hit (issue 14), each reproduced on a real SQLite file through the real
command line (``cli.main`` or the console script in a process).

1. `outbox --all --json` carries the message (payload and text); 2. a read-only command on a
missing database says so and creates nothing; 4. signal windows are validated; 5. a closed pipe
ends a command quietly; 6. silences: no --until in the past, an ended silence is not "in force";
9. a Slack channel without its token is said by `config check`; 10. outbox rows sent have no next
attempt, outbox lists oldest first, `alerts --rule/--since`, rule errors name the rule, `config
check` says "no reminders". (3 and the daemon's side of 9 are in tests/test_daemon.py.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from monitor import cli
from monitor.config import ConfigError, load_config, parse_config
from storage import outbox, silences
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, copy_db
from tests.procs import command

START, END = dt.date(2018, 1, 2), dt.date(2018, 4, 27)


@pytest.fixture
def history(demo_history, tmp_path) -> Path:
    """A copy of the demo scenario's daily cycles Jan-Apr 2018 under the classic rules (digests
    queued, none sent)."""
    return copy_db(demo_history(load_config(CLASSIC_CONFIG), START, END), tmp_path / "h.db")


def run(capsys, *args: str, config: Path = CLASSIC_CONFIG) -> tuple[int, str, str]:
    code = cli.main(["--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- 1 and 10: the outbox ------------------------------------------------------------------------

def test_outbox_json_carries_the_message_and_sent_rows_have_no_next_attempt(history, capsys):
    db = open_db(history)
    queued = outbox.list_rows(db, include_sent=True)
    assert [r["as_of"] for r in queued] == ["2018-03-29"]  # microcap_drawdown fired
    first = queued[0]["id"]
    outbox.mark_sent(db, first, "console", "2026-12-06T20:00:00+00:00")
    later = {**json.loads(queued[0]["payload"]), "as_of": "2018-04-02"}  # a second one, queued
    with db.atomic():
        outbox.enqueue(db, "digest:2018-04-02", "digest", "2018-04-02", json.dumps(later),
                       now="2026-12-06T20:01:00+00:00")
    db.close()
    code, out, err = run(capsys, "--db", str(history), "outbox", "--all", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # oldest first
    sent = rows[0]
    assert sent["id"] == first and sent["sent_at"] == "2026-12-06T20:00:00+00:00"
    assert sent["next_attempt_at"] is None  # delivered: no attempt planned
    assert [r["next_attempt_at"] for r in rows[1:]] == ["2026-12-06T20:01:00+00:00"]  # queued
    for r in rows:
        assert r["payload"]["as_of"] == r["as_of"]
        assert r["as_of"] in r["text"] and "microcap_drawdown" in r["text"]
    code, out, _ = run(capsys, "--db", str(history), "outbox", "--all")
    lines = out.splitlines()
    sent_line = next(ln for ln in lines if ln.split()[:1] == [str(first)])
    assert "2026-12-06T20:00:00+00:00" in sent_line
    assert sent_line.split()[4] == "-"  # the next_attempt_at column is blank
    ids = [int(ln.split()[0]) for ln in lines[2:]]
    assert ids == sorted(ids) and len(ids) == len(rows)


# -- 2: a read-only command on a missing database -----------------------------------------------

READ_ONLY = [["alerts"], ["alerts", "--all"], ["signals"], ["outbox", "--all"], ["episodes"],
             ["silence", "list"], ["silence", "expire", "1"], ["status"], ["backtest"],
             ["calibrate", "--until", "2018-04-27"], ["report", "--out", "r.html"],
             ["replay", "--start", "2018-01-02", "--end", "2018-01-05", "--scratch", "s.db"],
             ["backup", "copy.db"]]


@pytest.mark.parametrize("argv", READ_ONLY, ids=[" ".join(a) for a in READ_ONLY])
def test_a_read_only_command_on_a_missing_database_says_so_and_creates_nothing(
        tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope" / "x.db"
    code, out, err = run(capsys, "--db", str(missing), *argv)
    assert code == 1 and out == ""
    assert err == (f"regime-monitor: error: no database at {missing}: check --db or [storage] "
                   "path (`once`, `backfill`, `import-csv` or `demo` create it)\n")
    assert sorted(os.listdir(tmp_path)) == []  # no folder, no database, no output file


# -- 4: windows and positive parameters are validated -------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("[signals.turnover]\nmean_days = -5\n",
     "signals.turnover.mean_days: must be a whole number of trading days from 1 to 10000, got -5"),
    ("[signals.turnover]\nmean_days = 0\n", "signals.turnover.mean_days: must be a whole number"),
    ("[signals.volatility]\nvol_days = 0\n", "signals.volatility.vol_days: must be a whole"),
    ("[signals.market]\nlong_days = 100000\n", "signals.market.long_days: must be a whole"),
    ("[signals.credit]\npctile_days = -1\n", "signals.credit.pctile_days: must be a whole"),
    ("[signals.risk]\nhorizon_days = 0\n", "signals.risk.horizon_days: must be a whole"),
    ("[signals.risk]\ndrawdown = 1.5\n",
     "signals.risk.drawdown: must be a fraction between 0 and 1 (e.g. 0.10 for 10%), got 1.5"),
    ("[signals.risk]\ndrawdown = 0.0\n", "signals.risk.drawdown: must be a fraction"),
    ("[signals.risk]\nl2 = -1.0\n", "signals.risk.l2: must be 0 or more, got -1.0"),
    ("[signals.risk]\nl2 = inf\n", "signals.risk.l2: must be a finite number, got inf"),
    ("[signals.credit]\ntenor = '4y'\n", "signals.credit.tenor: must be a tenor with yield "
                                         "series: 1y, 3y, 5y, 7y or 10y, got '4y'"),
])
def test_bad_signal_windows_are_refused_by_config_check_and_once(tmp_path, capsys, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    for argv in (["config", "check"], ["--db", str(tmp_path / "h.db"), "once"]):
        code, out, err = run(capsys, *argv, config=path)
        assert code == 1 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"regime-monitor: error: {path}: {needle}")
    assert not (tmp_path / "h.db").exists()


def test_zero_ridge_penalty_and_one_day_windows_are_accepted():
    config = parse_config("[signals.risk]\nl2 = 0\n[signals.turnover]\nmean_days = 1\n")
    assert config.signal_params()["risk"]["l2"] == 0
    assert config.signal_params()["turnover"]["mean_days"] == 1


# -- 5: a closed pipe ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv,buffered", [
    (["alerts", "--all"], True), (["alerts", "--all"], False), (["config", "check"], True),
    (["status"], True), (["--help"], True)], ids=["alerts", "alerts-unbuffered", "config-check",
                                                  "status", "help"])
def test_a_closed_pipe_ends_the_command_quietly(history, argv, buffered):
    """As `regime-monitor config check | head` when head has gone: the reader end is closed before
    the process writes anything, so every write fails (deterministic). Buffered (Python's default
    for a pipe), the output is written at the end: that flush used to fail after the command had
    returned, printing "Exception ignored ... BrokenPipeError" and exiting 120."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([*command(), "--config", str(CLASSIC_CONFIG), "--db", str(history),
                                 *argv], stdout=write, stderr=subprocess.PIPE, text=True,
                                env=env, timeout=60)
    finally:
        os.close(write)
    assert result.stderr == ""
    # 128 + SIGPIPE, as the shell reports a Unix tool stopped by it; click prints --help itself
    # and ends a closed pipe there with 1, quietly too
    assert result.returncode == (1 if argv == ["--help"] else cli.EXIT_PIPE)


# -- 6: silences -----------------------------------------------------------------------------------

def test_a_silence_ending_in_the_past_is_refused_and_an_ended_one_is_not_in_force(history,
                                                                                     capsys):
    code, out, err = run(capsys, "--db", str(history), "silence", "add", "microcap_drawdown",
                         "--until", "2020-01-01", "--reason", "typo")
    assert code == 1 and out == ""
    today = dt.date.today()
    assert err.startswith("regime-monitor: error: --until 2020-01-01 is in the past (today is ")
    db = open_db(history)
    ended = silences.add(db, "microcap_drawdown", dt.date(2020, 1, 1), "added long ago")
    db.close()
    later = today + dt.timedelta(days=40)
    code, out, err = run(capsys, "--db", str(history), "silence", "add", "volatility_spike",
                         "--until", later.isoformat(), "--reason", "known event")
    assert code == 0, err
    code, out, _ = run(capsys, "--db", str(history), "silence", "list", "--json")
    listed = json.loads(out)
    assert [(s["matcher"], s["until"], s["state"]) for s in listed] == [
        ("volatility_spike", later.isoformat(), "in force")]
    code, out, _ = run(capsys, "--db", str(history), "silence", "list", "--all", "--json")
    every = json.loads(out)
    assert [(s["id"], s["state"]) for s in every] == [(ended, "ended"), (ended + 1, "in force")]


# -- 9: a Slack channel without its token -----------------------------------------------------

def test_config_check_says_loudly_that_the_channel_gets_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    path = tmp_path / "slack.toml"
    path.write_text('[notify.slack]\nchannel = "#pm-desk"\n', encoding="utf-8")
    code, out, err = run(capsys, "config", "check", str(path))
    assert code == 0
    warning = ("notify.slack.channel is '#pm-desk' but $SLACK_BOT_TOKEN is not set: digests go "
               "to the console only, not to that channel; export $SLACK_BOT_TOKEN (README "
               "\"Slack\")")
    assert err == f"regime-monitor: warning: {warning}\n"
    assert f"WARNING: {warning}" in out.splitlines()
    assert any(ln.startswith("notify: console (NOT Slack: $SLACK_BOT_TOKEN is not set)")
               for ln in out.splitlines())
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    code, out, err = run(capsys, "config", "check", str(path))
    assert code == 0 and err == "" and "WARNING" not in out


# -- 10: alerts filters, rule names in errors, the reminder wording ----------------------------

def test_alerts_rule_and_since_filter_the_events_and_the_active_alerts(history, capsys):
    code, out, _ = run(capsys, "--db", str(history), "alerts", "--all", "--json")
    every = json.loads(out)
    code, out, _ = run(capsys, "--db", str(history), "alerts", "--all", "--json", "--rule",
                       "microcap_drawdown", "--since", "2018-03-01")
    some = json.loads(out)
    expected = [e for e in every if e["rule"] == "microcap_drawdown" and e["date"] >= "2018-03-01"]
    assert some == expected and some and len(some) < len(every)
    assert some[0]["date"] == "2018-03-29" and some[0]["event"] == "firing"
    code, out, _ = run(capsys, "--db", str(history), "alerts", "--json", "--rule",
                       "microcap_drawdown")
    active = json.loads(out)
    assert [(a["rule"], a["state"], a["since"]) for a in active] == [
        ("microcap_drawdown", "firing", "2018-03-29")]
    code, out, _ = run(capsys, "--db", str(history), "alerts", "--json")
    unfiltered = json.loads(out)
    code, out, _ = run(capsys, "--db", str(history), "alerts", "--json", "--since", "2018-03-30")
    since = json.loads(out)
    assert code == 0 and since == [a for a in unfiltered if a["since"] >= "2018-03-30"]
    assert "microcap_drawdown" in {a["rule"] for a in unfiltered}  # the filter removed it
    assert "microcap_drawdown" not in {a["rule"] for a in since}
    code, out, err = run(capsys, "--db", str(history), "alerts", "--rule", "nope")
    assert code == 1 and err.startswith("regime-monitor: error: --rule 'nope': no such rule")


def test_rule_errors_name_the_rule():
    text = ('[[rules]]\nname = "first"\nwhen = "microcap.vol_spike >= 1.5"\nexplain = "x"\n'
            '[[rules]]\nname = "second_rule"\nwhen = "microcap.vol_spike >= 2"\nexplain = "y"\n'
            'for_days = 0\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "m.toml")
    assert str(info.value).startswith("m.toml: rules[1] (second_rule).for_days: ")


def test_config_check_says_no_reminders_instead_of_repeat_every_never(tmp_path, capsys):
    path = tmp_path / "m.toml"
    path.write_text('[[rules]]\nname = "a"\nwhen = "microcap.vol_spike >= 1.5"\nexplain = "x"\n'
                    '[[rules]]\nname = "b"\nwhen = "microcap.vol_spike >= 2"\nexplain = "y"\n'
                    'repeat_every_days = 5\n', encoding="utf-8")
    code, out, _ = run(capsys, "config", "check", str(path))
    assert code == 0 and "never" not in out
    assert "  a [warning] when 'microcap.vol_spike >= 1.5' for 1d, clear when " \
           "'not (microcap.vol_spike >= 1.5)' for 1d, no reminders" in out.splitlines()
    assert "  b [warning] when 'microcap.vol_spike >= 2' for 1d, clear when " \
           "'not (microcap.vol_spike >= 2)' for 1d, reminder every 5d while firing" in out.splitlines()
