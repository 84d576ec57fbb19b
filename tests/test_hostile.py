"""Hostile input, fuzzed: CSV files, config files, rule expressions and CLI arguments each get a
clear one-line error, leave the database unchanged and never execute anything."""

from __future__ import annotations

import string
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import cli
from monitor.config import ConfigError, parse_config
from monitor.sources.csv_import import CsvImportError, import_files
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG, table_snapshot

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SERIES = ["index.csi300.close", "index.all_a.amount", "yield.gov.3y", "theme.930713.close",
          "funds.smallcap_count", "index.hsi.close", "", "x" * 300, "index.csi300.close;DROP TABLE"]
CELLS = st.one_of(
    st.sampled_from(["2024-01-02", "2023-12-29", "2999-01-01", "2024-02-30", "", "NaN", "inf", "-1",
                     "1e308", "3386.35", "8e11", "0.0231", "'; DROP TABLE observations; --",
                     "=cmd|' /C calc'!A0", "\x00", "２０２４-01-02"]),
    st.text(string.printable, max_size=12))


@st.composite
def csv_files(draw):
    header = draw(st.sampled_from(["date,series,value", "date,series,value,available_at",
                                   "date,code,close,total_mv,is_st", "series,date,value", "",
                                   "date,series"]))
    ncol = max(1, header.count(",") + 1)
    rows = draw(st.lists(st.lists(st.one_of(CELLS, st.sampled_from(SERIES)), min_size=ncol,
                                  max_size=ncol), max_size=8))
    return header + "\n" + "\n".join(",".join(r) for r in rows) + "\n"


@FUZZ
@given(text=csv_files())
def test_fuzzed_csv_gives_one_line_error_or_valid_rows(tmp_path, text):
    db = open_db(tmp_path / "fuzz.db")
    path = tmp_path / "fuzz.csv"
    path.write_text(text, encoding="utf-8")
    before = table_snapshot(db)
    try:
        import_files(db, [path])
    except CsvImportError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(str(path))
        assert table_snapshot(db) == before
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for row in db.execute("SELECT value FROM observations"):
        assert row[0] == row[0] and abs(row[0]) < 1e15  # finite, plausible


def test_huge_file_is_read_and_refused_cleanly(tmp_path):
    db = open_db(tmp_path / "huge.db")
    path = tmp_path / "huge.csv"
    with path.open("w") as f:
        f.write("date,series,value\n")
        for i in range(200_000):
            f.write(f"2024-01-02,index.csi300.close,{3000 + i}\n")  # all the same date
    with pytest.raises(CsvImportError, match="duplicate date 2024-01-02"):
        import_files(db, [path])
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 0


MALICIOUS = ["__import__('os').system('touch /tmp/pwned') > 0", "a.__class__ > 1", "open('x') > 1",
             "(lambda: 1)() > 0", "x[0] > 1", "a if b else c", "1 > 0; import os",
             "microcap.vol_spike.__globals__ > 1", "eval('1') > 0", "`id` > 1", "a ** 2 > 1",
             "{} > 1", "'str' > 1", "a.b() > 1", "not", "(" * 500 + "a > 1" + ")" * 500]


@pytest.mark.parametrize("when", MALICIOUS)
def test_malicious_rule_expressions_are_refused_not_run(tmp_path, when):
    text = '[[rules]]\nname = "r"\nwhen = """' + when + '"""\nexplain = "x"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "evil.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("evil.toml: rules[0]")
    assert not (tmp_path / "pwned").exists()


VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                                st.floats(allow_nan=False), st.text(max_size=20)),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                          st.text(string.ascii_lowercase + "_.", min_size=1, max_size=12), inner,
                          max_size=3), max_leaves=8)
KEYS = st.sampled_from(["schedule", "storage", "source", "notify", "signals", "rules", "calendar",
                        "episodes", "data_quality", "cron", "kind", "path", "when", "x"])


@FUZZ
@given(data=st.dictionaries(KEYS, VALUES, max_size=4))
def test_fuzzed_configs_give_one_line_errors(data):
    import json

    text = "\n".join(f"{k} = {json.dumps(v)}" for k, v in data.items()
                     if not isinstance(v, dict) and v is not None and not isinstance(v, list))
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        text = ""
    try:
        parse_config(text, "fuzz.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml: ")


ARGS = st.lists(st.one_of(st.sampled_from(
    ["once", "--as-of", "2024-13-45", "signals", "--since", "x", "alerts", "--all", "silence",
     "add", "expire", "-1", "0", "list", "replay", "--start", "--end", "2024-01-02", "backtest",
     "--sweep", "a.b=1:0:0", "r.x=1:2:0.0000001", "calibrate", "--until", "report", "--out",
     "episodes", "--kind", "nope", "import-csv", "/nonexistent.csv", "config", "check", "--json",
     "outbox", "notify", "test", "--", "-v"]), st.text(string.printable, max_size=8)), max_size=6)


@FUZZ
@given(argv=ARGS)
def test_fuzzed_cli_arguments_exit_cleanly(tmp_path, capsys, argv):
    db = tmp_path / "cli.db"
    args = ["--config", str(DEFAULT_CONFIG), "--db", str(db), *argv]
    if argv[:1] in (["run"], ["demo"]):
        return
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse: usage errors exit 2 with one line
        code = exc.code
    err = capsys.readouterr().err
    assert isinstance(code, int)
    assert "Traceback" not in err
    if code:
        assert err.strip(), "a failing command says why"
