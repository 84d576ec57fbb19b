"""Config validation: unknown keys, malformed rules and unknown signals name the culprit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor import cli
from monitor.config import ConfigError, load_config, parse_config
from tests.conftest import CLASSIC_CONFIG, DEFAULT_CONFIG

RULE = """
[[rules]]
name = "r"
when = "{when}"
explain = "why"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_default_config_is_valid_and_every_rule_has_an_explanation():
    config = load_config(DEFAULT_CONFIG)
    assert config.source.kind == "demo"
    assert config.rules
    assert all(len(r.explain) > 40 for r in config.rules)
    assert all(c.label for c in config.context)


@pytest.mark.parametrize("text,needle", [
    ("[schedule]\ncron = '0 20 * * mon-fri'\ncolour = 'red'\n", "schedule.colour: unknown key"),
    ("[storage]\npath = 'x.db'\n[notify.slack]\ntoken = 'xoxb-secret'\n",
     "notify.slack.token: unknown key"),
    ("[sauce]\nkind = 'demo'\n", "sauce: unknown key"),
    (RULE.format(when="market.return_20d <= -0.08 and"),
     "rules[0] (r).when: unexpected end of expression at column 31"),
    (RULE.format(when="__import__('os').system('x') > 1"), "rules[0] (r).when:"),
    (RULE.format(when="market.return_twenty <= 1"), "unknown signal 'market.return_twenty'"),
    ("[signals.turnover]\nmean_days = 'twenty'\n", "signals.turnover.mean_days: expected int"),
    ("[signals.turnover]\nwindow = 20\n", "signals.turnover.window: unknown parameter"),
    ("[signals.nosuch]\nx = 1\n", "signals.nosuch: unknown signal family"),
    ("[schedule]\ncron = 'every evening'\n", "schedule: invalid cron"),
    ("[source]\nkind = 'bloomberg'\n", "source.kind:"),
    (RULE.format(when="microcap.vol_spike >= 1.5") + "for_days = 0\n", "rules[0] (r).for_days:"),
    ("[schedule\ncron=1", "not valid TOML"),
])
def test_bad_configs_fail_with_one_line_naming_the_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert needle in message


@pytest.mark.parametrize("text,needle", [
    ("[schedule]\ncolour = 'red'\n", "schedule.colour: unknown key"),
    (RULE.format(when="a.b() > 1"), "function calls are not supported"),
    (RULE.format(when="nosuch.signal > 1"), "unknown signal 'nosuch.signal'"),
])
@pytest.mark.parametrize("command", [["config", "check"], ["run"]])
def test_config_check_and_run_refuse_bad_configs(tmp_path, capsys, text, needle, command):
    path = write(tmp_path, text)
    args = ["--config", str(path), "--db", str(tmp_path / "x.db"), *command]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert needle in err and str(path) in err
    assert not (tmp_path / "x.db").exists()


def test_config_check_prints_the_resolved_config(capsys):
    # a fixed config (the default config's rules change): the printing is under test
    assert cli.main(["config", "check", str(CLASSIC_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert "schedule: cron '0 20 * * mon-fri' in Asia/Shanghai" in out
    assert "source: demo" in out
    assert re.search(r"storage: .*regime-monitor\.db", out)
    assert "microcap_drawdown [critical] when 'microcap.drawdown <= -0.1'" in out
    assert "a digest when a warning or critical alert fires or resolves\n" in out
    assert "context (0): none" in out


def test_config_check_prints_the_context_and_the_weekly_summary(capsys, tmp_path):
    assert cli.main(["config", "check", str(DEFAULT_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert ("context (3): drawdown_under_way when 'microcap.drawdown <= -0.1', credit_low_base "
            "when 'credit.spread_pctile_10y <= 0.1', turnover_crowded when "
            "'turnover.csi2000_share_pctile_1y >= 0.95'") in out
    assert "weekly summary" not in out
    path = tmp_path / "weekly.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("weekly_summary = false",
                                                       "weekly_summary = true"))
    assert cli.main(["config", "check", str(path)]) == 0
    assert "; weekly summary on the last trading day of each week" in capsys.readouterr().out


def test_secrets_are_never_read_from_or_printed_with_the_config(capsys, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    text = DEFAULT_CONFIG.read_text().replace('# channel = "#micro-cap-risk"',
                                              'channel = "#micro-cap-risk"')
    config = parse_config(text)
    assert config.notify.slack.channel == "#micro-cap-risk"
    assert "xoxb" not in config.model_dump_json()


def test_duplicate_rule_names_are_refused():
    text = RULE.format(when="microcap.vol_spike >= 1.5") * 2
    with pytest.raises(ConfigError, match=r"rules\[1\] \(r\)\.name: duplicate rule name 'r'"):
        parse_config(text, "x.toml")


def test_every_default_parameter_is_in_the_default_config():
    """The default config documents every signal parameter of every family."""
    import tomllib

    import signals

    data = tomllib.loads(DEFAULT_CONFIG.read_text())
    for family, params in signals.FAMILY_PARAMS.items():
        for key, value in params.items():
            assert data["signals"][family][key] == value, f"signals.{family}.{key}"


def test_a_config_saved_in_gbk_is_refused_with_one_line(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_bytes('[storage]\npath = "var/监控.db"\n'.encode("gbk"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 22): save the config as UTF-8"
