"""The review CLI on a real database: signals, alerts, silences, outbox.

The module's database is built by `demo --end 2019-12-31` with the classic rule set
(config/note_conditions.toml: the note's conditions as warnings), which fires often on the demo
scenario. The demo command itself is tested in tests/test_demo.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from monitor import cli
from tests.conftest import CLASSIC_CONFIG, DEFAULT_CONFIG, ROOT


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    code, out, err = run("--db", str(path), "demo", "--end", "2019-12-31")
    assert code == 0, err
    return path


def invoke(*args: str):
    """Run the command line in click's CliRunner; return its Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(cli.cli, list(args), prog_name="regime-monitor")


def run(*args, config=CLASSIC_CONFIG):
    result = invoke("--config", str(config), *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_signals_latest_and_history(demo_db):
    code, out, _ = run("--db", str(demo_db), "signals", "--json")
    rows = json.loads(out)
    names = {r["signal"] for r in rows}
    assert {"turnover.csi2000_share", "microcap.drawdown", "composite.conditions_active"} <= names
    assert all(r["date"] == "2019-12-31" for r in rows)
    code, out, _ = run("--db", str(demo_db), "signals", "microcap.vol_spike", "--since",
                       "2019-12-01", "--json")
    hist = json.loads(out)
    assert [r["date"] for r in hist][:2] == ["2019-12-02", "2019-12-03"] and len(hist) == 22
    code, out, err = run("--db", str(demo_db), "signals", "no.such")
    assert code == 1 and "unknown signal 'no.such'" in err


def test_alerts_and_history(demo_db):
    code, out, _ = run("--db", str(demo_db), "alerts", "--all", "--json")
    events = json.loads(out)
    assert events[0]["date"] <= events[-1]["date"]
    first_fire = next(e for e in events if e["event"] == "firing")
    assert first_fire["rule"] == "microcap_drawdown" and first_fire["date"] == "2018-03-29"
    assert first_fire["signal_values"]["microcap.drawdown"] <= -0.10
    code, out, _ = run("--db", str(demo_db), "alerts", "--json")
    active = {(a["rule"], a["state"]) for a in json.loads(out)}
    from storage.db import open_db

    expected = set(open_db(demo_db).execute(
        "SELECT rule, state FROM alerts WHERE state IN ('pending', 'firing', 'no_data')"
    ).fetchall())
    assert active == expected
    assert all(state != "resolved" for _, state in active)


def test_silence_add_list_expire(demo_db):
    code, out, _ = run("--db", str(demo_db), "silence", "add", "volatility_spike",
                       "--until", "2099-01-31", "--reason", "known event")
    assert code == 0 and out.startswith("silence 1: volatility_spike muted until 2099-01-31")
    code, out, _ = run("--db", str(demo_db), "silence", "list", "--json")
    assert [(s["id"], s["matcher"]) for s in json.loads(out)] == [(1, "volatility_spike")]
    code, _, err = run("--db", str(demo_db), "silence", "add", "nope", "--until",
                       "2099-01-31", "--reason", "x")
    assert code == 1 and "unknown rule 'nope'" in err
    assert run("--db", str(demo_db), "silence", "expire", "1")[0] == 0
    code, _, err = run("--db", str(demo_db), "silence", "expire", "1")
    assert code == 1 and "no active silence with id 1" in err
    code, out, _ = run("--db", str(demo_db), "silence", "list", "--all", "--json")
    assert json.loads(out)[0]["expired_at"] is not None


def test_outbox_lists_delivered_digests(demo_db):
    code, out, _ = run("--db", str(demo_db), "outbox", "--all", "--json")
    rows = json.loads(out)
    assert rows and all(r["sent_at"] and r["destination"] == "console" for r in rows)
    assert len({r["dedup_key"] for r in rows}) == len(rows)


BAD_ARGUMENTS = [
    (["once", "--as-of", "2024-13-01"], "is not a YYYY-MM-DD date"),
    (["silence", "expire", "zero"], "is not an integer"),
    (["frobnicate"], "invalid choice"),
    ([], "Missing command"),
    (["silence"], "Missing command"),
    (["import-csv"], "Missing argument"),
    (["silence", "add", "x", "--reason", "r"], "Missing option '--until'"),
]


@pytest.mark.parametrize("args,needle", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line(args, needle):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr
    assert result.stderr.startswith("regime-monitor: error: ") and result.stdout == ""


@pytest.mark.parametrize("args,needle", BAD_ARGUMENTS[:3])
def test_main_raises_system_exit_2_on_a_bad_argument(capsys, args, needle):
    """``main`` (the console script) raises SystemExit(2) for a bad argument, as argparse did."""
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_help_lists_every_command_and_imports_no_heavy_library():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in cli.cli.commands:
        assert f"  {name} " in result.stdout, name
    from monitor.analysis.backtest import DRAWS, SEED

    text = " ".join(invoke("backtest", "--help").stdout.split())  # the library's defaults, shown
    assert f"[default: {DRAWS}]" in text and f"[default: {SEED}]" in text
    probe = ("import sys; from monitor import cli; code = cli.main(['--help']); "
             "heavy = {'pandas', 'numpy', 'matplotlib', 'statsmodels', 'slack_sdk'} & set(sys.modules); "
             "print(code, sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.splitlines()[-1] == "0 []"


def test_progress_bar_is_drawn_only_on_a_terminal(monkeypatch):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, drawn in ((Tty(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with cli._progress(5, "replay") as step:
            for _ in range(5):
                step()
        text = stream.getvalue()
        assert ("replay" in text and "100%" in text) is drawn
        assert text == "" or drawn


def test_replay_backtest_sweep_calibrate_and_report_commands(demo_db, tmp_path):
    import tomllib

    code, out, _ = run("--db", str(demo_db), "replay", "--start", "2018-01-02", "--end",
                       "2018-06-29", "--scratch", str(tmp_path / "r.db"))
    assert code == 0 and "nothing was sent" in out and "microcap_drawdown" in out
    code, out, _ = run("--db", str(demo_db), "backtest", "--json", "--draws", "200")
    rows = json.loads(out)["rows"]
    assert code == 0
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=["warning", "union", "state", "info"].index)
    assert [r["rule"] for r in rows if r["kind"] == "union"] == ["any warning"]
    assert [r["rule"] for r in rows if r["kind"] == "state"] == ["microcap_drawdown"]
    assert all(0 <= r["share_in_alert"] <= 1 and r["caught"] <= r["warned"] <= r["episodes"]
               and 0 < r["p_value"] <= 1 and 0 < r["shift_p"] <= 1 for r in rows)
    assert all("episodes_detail" in r for r in rows)
    code, again, _ = run("--db", str(demo_db), "backtest", "--json", "--draws", "200",
                         "--seed", "20231201")
    assert again == out  # the default seed, deterministic
    code, out, _ = run("--db", str(demo_db), "backtest", "--draws", "200", "--seed", "1",
                       "--record")
    assert code == 0 and "chance baselines: 200 draws, seed 1" in out
    assert "digests: " in out and "a year" in out and "recorded" in out
    from storage import scorecards
    from storage.db import open_db

    card = scorecards.latest(open_db(demo_db), "any warning")
    assert card is not None and card["min_lead_days"] == 3 and 0 < card["p_value"] <= 1
    assert card["caught"] == next(r["caught"] for r in rows if r["rule"] == "any warning")
    assert "state alerts (restate a drawdown under way; not warnings)" in out
    assert "any warning" in out and "chance (p)" in out
    code, out, _ = run("--db", str(demo_db), "backtest", "--draws", "50", "--sweep",
                       "volatility_spike.microcap.vol_spike=1.2:2.0:0.4")
    assert code == 0
    assert sum(line.strip().startswith(("1.2", "1.6", "2")) for line in out.splitlines()) == 3
    assert "volatility_spike chance" in out.splitlines()[0]
    code, _, err = run("--db", str(demo_db), "backtest", "--sweep", "nosuch.x=1:2:1")
    assert code == 1 and "nosuch" in err and err.count("\n") == 1
    for bad in (["--draws", "0"], ["--draws", "x"], ["--seed", "-1"]):
        result = invoke("--db", str(demo_db), "backtest", *bad)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
    before = DEFAULT_CONFIG.read_text()
    code, out, _ = run("--db", str(demo_db), "calibrate", "--until", "2019-06-28",
                       "--draws", "50", "--penalty", "0.5")
    assert code == 0 and tomllib.loads(out)["rules"]
    assert "to maximise caught - 0.5 x false alarms per year" in out
    assert DEFAULT_CONFIG.read_text() == before  # never writes the config
    result = invoke("--db", str(demo_db), "calibrate", "--until", "2019-06-28", "--penalty", "-1")
    assert result.exit_code == 2
    assert "must be a finite number >= 0" in result.stderr
    report = tmp_path / "report.html"
    code, out, _ = run("--db", str(demo_db), "report", "--out", str(report))
    assert code == 0 and report.exists()
    html = report.read_text()
    assert "data:image/png;base64," in html and "any warning" in html
