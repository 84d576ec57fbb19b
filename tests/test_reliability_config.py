"""Issue 12, items 12 and 13 (config part): a hostile config fails in one line; ``notify.console``
is read.

- A deeply nested TOML value used to end in a 3,000-line ``RecursionError`` traceback; it is now
  the one-line ``ConfigError`` every other bad config gets, from the parser and from the CLI.
- ``notify.console = false`` used to be accepted and ignored (digests still printed); now, with no
  Slack destination, digests are kept in the outbox (destination ``none``) and printed nowhere.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest

from monitor import cli
from monitor.calendar import TradingCalendar
from monitor.config import ConfigError, parse_config
from monitor.cycle import run_cycle
from monitor.delivery import StoredOnlyNotifier, make_notifier
from monitor.delivery.console import ConsoleNotifier
from monitor.delivery.deliver import deliver_due
from monitor.sources.demo_source import DemoSource
from storage import outbox
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,                     # arrays: RecursionError in tomllib
    "a = " + "{b = " * 3000 + "1" + "}" * 3000,          # inline tables
    "[notify]\nconsole = " + "[" * 50 + "]" * 50,        # parses, but nested past any setting
])
def test_deep_nesting_is_a_one_line_config_error(text):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "deep.toml")
    message = str(info.value)
    assert message.startswith("deep.toml: ") and "\n" not in message
    assert "nested" in message


def test_deep_nesting_through_the_cli_prints_one_line(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000, encoding="utf-8")
    code = cli.main(["--config", str(path), "config", "check"])
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err and "RecursionError" not in captured.err
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "nested too deeply" in lines[0]


def _config(console: bool):
    text = CLASSIC_CONFIG.read_text(encoding="utf-8")
    assert "console = true" in text
    return parse_config(text.replace("console = true", f"console = {str(console).lower()}"))


def test_console_false_stores_digests_without_printing(tmp_path, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    stream = io.StringIO()
    assert isinstance(make_notifier(_config(True), stream), ConsoleNotifier)
    config = _config(False)
    notifier = make_notifier(config, stream)
    assert isinstance(notifier, StoredOnlyNotifier)
    db = open_db(tmp_path / "m.db")
    calendar = TradingCalendar(config.calendar.extra_closed)
    source = DemoSource(config.source.demo_seed)
    queued = 0
    for day in calendar.days(dt.date(2018, 1, 2), dt.date(2018, 4, 27)):
        result = run_cycle(db, config, day, source, calendar)
        queued += result.digest is not None
    assert queued > 0  # the classic rules fire on the demo scenario in these months
    sent = deliver_due(db, notifier, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert sent == queued
    assert stream.getvalue() == ""
    rows = outbox.list_rows(db, include_sent=True)
    assert len(rows) == queued and {r["destination"] for r in rows} == {"none"}
