"""Hostile input, fuzzed: CSV files, config files, rule expressions and CLI arguments each get a
clear one-line error, leave the database unchanged and never execute anything."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import math
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import signals
from monitor import cli
from monitor.alerting import expr
from monitor.calendar import TradingCalendar
from monitor.config import (
    COMPOSITE,
    Config,
    ConfigError,
    RuleConfig,
    load_config,
    parse_config,
)
from monitor.sources.csv_import import CsvImportError, import_files
from storage import silences
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG, ROOT, table_snapshot

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def one_line(msg: str) -> bool:
    return "\n" not in msg and "\r" not in msg and "\u2028" not in msg


# -- no code runs -------------------------------------------------------------------------------

_WATCH: dict[int, list[str]] = {}  # thread id -> what it did while watched
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_RUNS = ("exec", "compile", "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn",
         "os.spawn", "os.fork", "os.remove", "os.rename", "os.mkdir", "shutil.rmtree",
         "ctypes.dlopen", "socket.connect", "builtins.input")


def _audit(name: str, args: tuple) -> None:
    if not _WATCH or (events := _WATCH.get(threading.get_ident())) is None:
        return
    if name in _RUNS:
        events.append(f"{name} {args!r:.200}")
    elif name == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS):
            events.append(f"open for writing {path!r}")


sys.addaudithook(_audit)  # inert unless a test runs code under `nothing_runs()`


@contextlib.contextmanager
def nothing_runs():
    """Fail if the block executes code (exec/compile/os.system/subprocess) or writes a file."""
    events: list[str] = []
    _WATCH[threading.get_ident()] = events
    try:
        yield
    finally:
        del _WATCH[threading.get_ident()]
    assert events == [], f"parsing hostile input did something: {events[:5]}"


# -- CSV: random cells --------------------------------------------------------------------------

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
        assert one_line(msg) and msg.startswith(str(path))
        assert table_snapshot(db) == before
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for row in db.execute("SELECT value FROM observations"):
        assert row[0] == row[0] and abs(row[0]) < 1e15  # finite, plausible


# -- CSV: generated faults that must be refused -------------------------------------------------

TODAY = dt.date.today()
# canonical series -> (plausible values in the canonical unit, wrong units as (name, divisor));
# the ranges keep the wrong unit outside the plausible range and its hint unambiguous
CANONICAL = {
    "index.all_a.amount": (st.floats(1e11, 9e11), [("1e8 yuan", 1e8), ("1e4 yuan", 1e4)]),
    "index.csi2000.amount": (st.floats(2e10, 5e11), [("1e8 yuan", 1e8), ("1e4 yuan", 1e4)]),
    "theme.930713.amount": (st.floats(1e9, 5e11), [("1e8 yuan", 1e8)]),
    "index.csi300.close": (st.floats(2000, 6000), []),
    "theme.H30184.close": (st.floats(500, 9000), []),
    "yield.gov.3y": (st.floats(1.0, 5.0), [("fraction", 100.0)]),
    "yield.credit.3y": (st.floats(2.0, 6.0), [("fraction", 100.0)]),
    "funds.smallcap_count": (st.integers(0, 500).map(float), []),
}
NOT_NUMBERS = st.one_of(
    st.sampled_from(["", "  ", "abc", "N/A", "-", "—", "3400元", "1.2.3", "12%", "1,234", "(12)",
                     "0x10", "1_000", "１２３", "nan", "NaN", "inf", "-inf", "Infinity", "1e400",
                     "TRUE", "None", "'; DROP TABLE observations; --", "=cmd|' /C calc'!A0",
                     "__import__('os')", "\"3400\"", "3 400"]),
    st.tuples(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=5),
              st.sampled_from("abcdfghxyzABCDXYZ元亿万%$€/#@!?"),
              st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=5),
              ).map("".join))
KINDS = ["dup", "future", "unit", "text", "valid"]
PAST_TRADING_DAYS = TradingCalendar().days(TODAY - dt.timedelta(days=4000),
                                           TODAY - dt.timedelta(days=1))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


@st.composite
def long_files(draw):
    """(kind, rows [series, date, value], expected message parts, the rows before the fault)."""
    kind = draw(st.sampled_from(KINDS))
    names = draw(st.lists(st.sampled_from(sorted(CANONICAL)), min_size=1, max_size=3, unique=True))
    if kind == "unit":
        assume(any(CANONICAL[n][1] for n in names))
    rows = []
    for name in names:
        # trading days only: import-csv skips rows dated on a closed day (issue 14, bug 8)
        days = draw(st.lists(st.sampled_from(PAST_TRADING_DAYS), min_size=1, max_size=5,
                             unique=True))
        for d in days:
            value = draw(CANONICAL[name][0])
            rows.append([name, d.isoformat(), repr(value)])
    rows = draw(st.permutations(rows))  # unsorted dates, interleaved series
    clean = [list(r) for r in rows]
    expect: list[str] = []
    if kind == "dup":
        j = draw(st.integers(0, len(rows) - 1))
        copy = [rows[j][0], rows[j][1], repr(draw(CANONICAL[rows[j][0]][0]))]
        at = draw(st.integers(0, len(rows)))
        rows.insert(at, copy)
        first = min(i for i, r in enumerate(rows) if r[:2] == copy[:2])
        expect = [f"line {first + 2}: duplicate date {copy[1]} for series {copy[0]}"]
    elif kind == "future":
        j = draw(st.integers(0, len(rows) - 1))
        rows[j][1] = (TODAY + dt.timedelta(days=draw(st.integers(1, 3000)))).isoformat()
        expect = [f"line {j + 2}, column date: {rows[j][1]} is in the future"]
    elif kind == "unit":
        name = draw(st.sampled_from([n for n in names if CANONICAL[n][1]]))
        unit, divisor = draw(st.sampled_from(CANONICAL[name][1]))
        for r in rows:
            if r[0] == name:
                r[2] = repr(float(r[2]) / divisor)
        if unit == "fraction":
            expect = [f"series {name}: median", "cannot be a yield in percent",
                      "it looks like a fraction"]
        else:
            first = min(i for i, r in enumerate(rows) if r[0] == name)
            expect = [f"line {first + 2}, series {name}: value", "outside the plausible range",
                      f"it looks like {unit}"]
    elif kind == "text":
        j = draw(st.integers(0, len(rows) - 1))
        rows[j][2] = draw(NOT_NUMBERS)
        expect = [f"line {j + 2}, column value:", "is not a number"]
    return kind, rows, expect, clean


@FUZZ
@given(case=long_files())
def test_fuzzed_faults_are_refused_and_valid_files_stored(tmp_path, case):
    kind, rows, expect, clean = case
    event(f"csv fault: {kind}")
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = Path(tmp)
        db = open_db(folder / "db.sqlite")
        # the database already holds other values for the same series and dates: a partial write
        # of the refused file would show, and so would a write of the good file imported with it
        write_csv(folder / "base.csv", ["date", "series", "value"],
                  [[d, n, repr(float(v) * 1.25 + 1)] for n, d, v in clean])
        import_files(db, [folder / "base.csv"], today=TODAY)
        good = folder / "good.csv"
        write_csv(good, ["date", "series", "value"], [["2020-01-02", "index.csi500.close", "5000"]])
        path = folder / "fuzz.csv"
        write_csv(path, ["date", "series", "value"], [[d, n, v] for n, d, v in rows])
        before = table_snapshot(db)
        if kind == "valid":
            import_files(db, [good, path], today=TODAY)
            stored = db.execute("SELECT series, date, value FROM observations WHERE series != "
                                "'index.csi500.close'").fetchall()
            assert sorted(stored) == sorted((n, d, float(v)) for n, d, v in rows)
            return
        with pytest.raises(CsvImportError) as info:
            import_files(db, [good, path], today=TODAY)
        msg = str(info.value)
        assert one_line(msg) and msg.startswith(f"{path}: "), msg
        for part in expect:
            assert part in msg, (kind, msg)
        assert table_snapshot(db) == before


def _load(db) -> list[tuple]:
    return db.execute("SELECT series, date, value, available_at, source FROM observations "
                      "ORDER BY series, date").fetchall()


LONG_ROWS = [
    ("2024-01-02", "index.csi2000.amount", "45000000000"),
    ("2024-01-03", "index.csi2000.amount", "47000000000"),
    ("2024-01-04", "index.csi2000.amount", "46000000000"),
    ("2024-01-02", "yield.gov.3y", "2.31"),
    ("2024-01-03", "yield.gov.3y", "2.29"),
    ("2023-09-28", "funds.smallcap_count", "120"),
    ("2023-12-29", "funds.smallcap_count", "118"),
    ("2024-01-02", "index.csi300.close", "3386.35"),
    ("2024-01-03", "index.csi300.close", "3370.1"),
]
PANEL_ROWS = [
    ("2024-01-02", "600519", "1685.0", "2116700000000", "0"),
    ("2024-01-03", "600519", "1676.0", "2105400000000", "0"),
    ("2024-01-02", "000001", "", "18300000000", "1"),
    ("2024-01-03", "000001", "9.1", "18100000000", "1"),
]


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_unsorted_dates_are_stored_exactly_like_sorted_ones(tmp_path, order):
    """Dates need not be sorted (exports are often newest first): the stored rows are the same."""
    stored = {}
    for variant in ("sorted", order):
        folder = tmp_path / variant
        folder.mkdir()
        long, panel = list(LONG_ROWS), list(PANEL_ROWS)
        if variant == "sorted":
            long.sort(key=lambda r: (r[1], r[0]))
            panel.sort(key=lambda r: (r[1], r[0]))
        elif variant == "reversed":
            long.sort(key=lambda r: r[0], reverse=True)
            panel.sort(key=lambda r: r[0], reverse=True)
        else:
            random.Random(7).shuffle(long)
            random.Random(7).shuffle(panel)
        write_csv(folder / "long.csv", ["date", "series", "value"], long)
        write_csv(folder / "panel.csv", ["date", "code", "close", "total_mv", "is_st"], panel)
        db = open_db(folder / "db.sqlite")
        changed = import_files(db, [folder / "long.csv", folder / "panel.csv"],
                               today=dt.date(2024, 1, 5))
        assert list(changed.values()) == [len(LONG_ROWS), len(PANEL_ROWS)]
        stored[variant] = (_load(db), db.execute(
            "SELECT date, code, close, total_mv, is_st, available_at, source FROM stock_panel "
            "ORDER BY date, code").fetchall())
    assert stored[order] == stored["sorted"]
    assert ("funds.smallcap_count", "2023-09-28", 120.0, "2023-10-28", "csv:long.csv") in \
        stored["sorted"][0]


PANEL_HEADER = ["date", "code", "close", "total_mv", "is_st"]
PANEL_FAULTS = {  # the unsorted panel with one fault -> what the error names
    "dup": ([*PANEL_ROWS, ("2024-01-02", "600519", "1690.0", "2116700000000", "0")],
            "line 2: duplicate date 2024-01-02 for code 600519"),
    "future": ([*PANEL_ROWS[:3], ("2999-01-02", "000001", "9.1", "18100000000", "1")],
               "line 5, column date: 2999-01-02 is in the future"),
    "unit": ([(d, c, cl, str(float(mv) / 1e8), st_) for d, c, cl, mv, st_ in PANEL_ROWS],
             "column total_mv: median 10618.5 is too small for yuan; convert 1e8 yuan (亿元)"),
    "text close": ([*PANEL_ROWS[:1], ("2024-01-03", "600519", "1676元", "2105400000000", "0"),
                    *PANEL_ROWS[2:]], "line 3, column close: '1676元' is not a number"),
    "text is_st": ([*PANEL_ROWS[:3], ("2024-01-03", "000001", "9.1", "18100000000", "yes")],
                   "line 5, column is_st: 'yes' is not a number"),
    "text code": ([*PANEL_ROWS[:3], ("2024-01-03", "00000l", "9.1", "18100000000", "1")],
                  "line 5, column code: '00000l' is not a 6-digit stock code"),
}


@pytest.mark.parametrize("fault", sorted(PANEL_FAULTS))
def test_stock_panel_faults_are_refused_and_change_nothing(tmp_path, fault):
    rows, needle = PANEL_FAULTS[fault]
    db = open_db(tmp_path / "db.sqlite")
    write_csv(tmp_path / "old.csv", PANEL_HEADER,
              [(d, c, "1.5", "3000000000", "0") for d, c, *_ in PANEL_ROWS])
    import_files(db, [tmp_path / "old.csv"], today=dt.date(2024, 1, 5))
    before = table_snapshot(db)
    path = tmp_path / "panel.csv"
    write_csv(path, PANEL_HEADER, rows)
    with pytest.raises(CsvImportError) as info:
        import_files(db, [path], today=dt.date(2024, 1, 5))
    msg = str(info.value)
    assert one_line(msg) and msg.startswith(f"{path}: ") and needle in msg, msg
    assert table_snapshot(db) == before


def test_stock_codes_in_unicode_digits_are_refused(tmp_path):
    path = tmp_path / "panel.csv"
    write_csv(path, PANEL_HEADER, [("2024-01-02", "600519", "1685.0", "2116700000000", "0"),
                                   ("2024-01-02", "６００５１９", "1685.0", "2116700000000", "0")])
    with pytest.raises(CsvImportError, match="is not a 6-digit stock code"):
        import_files(open_db(tmp_path / "db.sqlite"), [path], today=dt.date(2024, 1, 5))


# -- CSV: huge files ----------------------------------------------------------------------------

# trading days: an import skips the others (weekends, exchange holidays)
BIG_DAYS = TradingCalendar().days(dt.date(2005, 1, 4), dt.date(2024, 12, 31))[:4000]
BIG_SERIES = ["index.all_a.amount", "index.csi2000.amount", "index.csi300.close", "yield.gov.3y",
              *(f"theme.t{k:02d}.close" for k in range(46))]
BIG_ROWS = len(BIG_DAYS) * len(BIG_SERIES)  # 200,000


def big_value(series: str, i: int, k: int, revised: bool) -> str:
    if series.endswith(".amount"):
        return f"{(5e11 if 'all_a' in series else 4e10) * (1.5 if revised else 1) + i * 1e7:.0f}"
    if series == "yield.gov.3y":
        return f"{2 + (i % 100) / 100 + (0.5 if revised else 0):.2f}"
    return f"{1000 + k + i * 0.01 + (1 if revised else 0):.2f}"


def write_big(path: Path, revised: bool = False, fault=None) -> None:
    """The long file of BIG_SERIES over BIG_DAYS (rows by date, then series); ``fault(row_index,
    [date, series, value])`` may change one row."""
    with path.open("w") as f:
        f.write("date,series,value\n")
        r = 0
        for i, day in enumerate(BIG_DAYS):
            for k, series in enumerate(BIG_SERIES):
                row = [day.isoformat(), series, big_value(series, i, k, revised)]
                if fault is not None:
                    fault(r, row)
                f.write(",".join(row) + "\n")
                r += 1


@pytest.fixture(scope="module")
def big_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    path = folder / "big.csv"
    write_big(path)
    db = open_db(folder / "big.db")
    changed = import_files(db, [path], today=TODAY)
    return db, path, changed, table_snapshot(db)


def test_huge_valid_file_is_imported_completely(big_db):
    db, path, changed, _ = big_db
    assert changed == {str(path): BIG_ROWS}
    want = sorted((s, d.isoformat(), float(big_value(s, i, k, False)), d.isoformat(), "csv:big.csv")
                  for i, d in enumerate(BIG_DAYS) for k, s in enumerate(BIG_SERIES))
    assert _load(db) == want


N = BIG_ROWS - 1 - 3 * len(BIG_SERIES) - 7  # a row near the end (of series BIG_SERIES[-8])


def _text(r, row):
    if r == N:
        row[2] = "12.3.4"


def _future(r, row):
    if r == N:
        row[0] = (TODAY + dt.timedelta(days=10)).isoformat()


def _unit(r, row):  # one amount in 1e8 yuan (亿元)
    if r == N - (N % len(BIG_SERIES)):
        row[2] = "8123.4"


def _dup(r, row):  # the date of the same series' next row
    if r == N:
        row[0] = BIG_DAYS[N // len(BIG_SERIES) + 1].isoformat()


HUGE_FAULTS = {
    "text": (_text, N, "column value: '12.3.4' is not a number"),
    "future": (_future, N, f"column date: {TODAY + dt.timedelta(days=10)} is in the future"),
    "unit": (_unit, N - (N % len(BIG_SERIES)),
             "series index.all_a.amount: value 8123.4 is outside the plausible range"),
    "dup": (_dup, N, f"duplicate date {BIG_DAYS[N // len(BIG_SERIES) + 1]} for series "
                     f"{BIG_SERIES[N % len(BIG_SERIES)]}"),
}


@pytest.mark.parametrize("fault", sorted(HUGE_FAULTS))
def test_huge_file_with_one_bad_line_near_the_end_changes_nothing(big_db, tmp_path, fault):
    db, _, _, before = big_db
    change, row, needle = HUGE_FAULTS[fault]
    path = tmp_path / "revised.csv"
    write_big(path, revised=True, fault=change)  # every other value differs from the stored one
    with pytest.raises(CsvImportError) as info:
        import_files(db, [path], today=TODAY)
    msg = str(info.value)
    assert one_line(msg) and msg.startswith(f"{path}: line {row + 2}"), msg
    assert row + 2 > BIG_ROWS - 200 and needle in msg
    assert table_snapshot(db) == before


# -- rule expressions ---------------------------------------------------------------------------

MALICIOUS = ["__import__('os').system('touch {t}') > 0", "open('{t}', 'w') > 1",
             "__import__('pathlib').Path('{t}').touch() > 0", "exec(\"open('{t}', 'w')\") > 0",
             "eval(\"open('{t}', 'w')\") > 0", "(lambda: open('{t}', 'w'))() > 0",
             "microcap.drawdown.__class__.__init__.__globals__['os'].system('touch {t}') > 0",
             "microcap.drawdown > 0 or __import__('os').system('touch {t}')",
             "f'{{open(\"{t}\", \"w\")}}' > 0", "`touch {t}` > 1",
             "microcap.drawdown > 0; import os; os.system('touch {t}')",
             "microcap.drawdown > 0 and [open('{t}', 'w')]", "a.__class__ > 1", "x[0] > 1",
             "a if b else c", "{{}} > 1", "'str' > 1", "a.b() > 1", "a ** 2 > 1", "not",
             "(" * 500 + "a > 1" + ")" * 500, "microcap.drawdown > 0 #" + "x" * 3000]


def toml_str(text: str) -> str:
    """A TOML basic string holding ``text`` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def rule_file(folder: Path, when: str) -> Path:
    path = folder / "monitor.toml"
    path.write_text(f'[[rules]]\nname = "r"\nwhen = {toml_str(when)}\nexplain = "x"\n',
                    encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8"))["rules"][0]["when"] == when
    return path


@pytest.mark.parametrize("when", MALICIOUS)
def test_malicious_rule_expressions_are_refused_not_run(tmp_path, capsys, when):
    target = tmp_path / "pwned"
    when = when.format(t=target)
    path = rule_file(tmp_path, when)
    with nothing_runs(), pytest.raises(ConfigError) as info:
        load_config(path)
    assert one_line(str(info.value)) and str(info.value).startswith(f"{path}: rules[0] (r).when: ")
    assert not target.exists()
    assert cli.main(["--config", str(path), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"regime-monitor: error: {path}: rules[0] (r).when:")
    assert not target.exists() and sorted(os.listdir(tmp_path)) == ["monitor.toml"]


KNOWN = sorted(set(signals.REGISTRY) - {COMPOSITE})
TARGET = "{target}"  # replaced by a path inside the example's own directory
GOOD_PARTS = [*KNOWN[:8], "microcap.drawdown", "market.return_20d", "0.1", "-0.03", "15", "1e-3",
              ".5", "<", "<=", ">", ">=", "==", "!=", "and", "or", "not", "(", ")", "unknown.name"]
HOSTILE_PARTS = ["__import__", "__import__('os')", ".__class__", ".__globals__", "a.__dict__",
                 f"os.system('touch {TARGET}')", f"open('{TARGET}', 'w')", "()", "(", "[", "]",
                 "[0]", "lambda", "lambda: 1", "lambda x: x", "a.b", "a.b.c()", "x[0]",
                 "f'{1}'", f"f\"{{open('{TARGET}','w')}}\"", "`id`", f"`touch {TARGET}`", ";",
                 "; import os", "**", "exec", "eval", "getattr", "\\", "\n", "\t", "#", "{}",
                 ":", "'", '"', "=", "!", "&", "|", "~", "@", "$", "None", "True", "nan", "inf",
                 "１", "ａ", "\u2028", "\x00", "..", "1.2.3", "0x10", "1_0", "_", "__", "a.1b",
                 "and", "if", "else", "for", "in", "is"]


@st.composite
def expressions(draw):
    shape = draw(st.sampled_from(["mixed", "valid", "valid+hostile", "long"]))
    comparison = st.tuples(st.sampled_from(KNOWN), st.sampled_from(["<", "<=", ">", ">=", "==",
                                                                      "!="]),
                           st.sampled_from(["0", "0.1", "-0.03", "15", "1e-3"])).map(" ".join)
    if shape == "mixed":
        parts = draw(st.lists(st.sampled_from(GOOD_PARTS + HOSTILE_PARTS), min_size=1, max_size=12))
    else:
        joined = draw(st.lists(comparison, min_size=1, max_size=4))
        parts = [joined[0]]
        for c in joined[1:]:
            parts += [draw(st.sampled_from(["and", "or", "and not"])), c]
        if shape != "valid":
            at = draw(st.integers(0, len(parts)))
            parts.insert(at, draw(st.sampled_from(HOSTILE_PARTS)))
        if shape == "long":
            parts = parts * draw(st.integers(50, 200))
    sep = draw(st.sampled_from([" ", "", "  "]))
    return sep.join(parts)


@FUZZ
@given(when=expressions())
def test_fuzzed_rule_expressions_are_parsed_or_refused_never_run(tmp_path, when):
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = Path(tmp)
        target = folder / "pwned"
        when = when.replace(TARGET, str(target))
        path = rule_file(folder, when)
        try:
            parsed = expr.parse(when)
        except expr.ExprError:
            parsed = None
        try:
            with nothing_runs():
                config = load_config(path)
        except ConfigError as exc:
            msg = str(exc)
            event("expression refused: " + ("malformed" if parsed is None else "unknown name"))
            assert one_line(msg), msg
            if parsed is None:
                assert msg.startswith(f"{path}: rules[0] (r).when: "), msg
            else:  # a well-formed expression over names that are not signals
                assert not parsed.names <= set(KNOWN), msg
                assert msg.startswith(f"{path}: rules[0] (r): "), msg
        else:
            event("expression accepted")
            assert parsed is not None and parsed.names <= set(KNOWN)
            assert config.rules[0].when_expr == parsed
        assert not target.exists() and sorted(os.listdir(folder)) == ["monitor.toml"]


# -- config files: nested tables, unknown keys, wrong types -------------------------------------

# the shape of config/monitor.toml: table -> key -> (type, valid values)
SCHEMA: dict[str, dict[str, tuple[str, list]]] = {
    "schedule": {"cron": ("str", ["0 20 * * mon-fri", "30 19 * * *"]),
                 "timezone": ("str", ["Asia/Shanghai", "UTC"]),
                 "misfire_grace_seconds": ("int", [60, 21600]),
                 "catch_up_max_days": ("int", [0, 60])},
    "calendar": {"extra_closed": ("datelist", [[], [dt.date(2024, 2, 9)]])},
    "storage": {"path": ("str", ["var/regime-monitor.db", "x.db"])},
    "source": {"kind": ("choice", ["demo", "csv", "akshare"]), "demo_seed": ("int", [1, 20231201]),
               "drop_folder": ("str", ["", "drop"]),
               "drop_folder_coverage": ("choice", ["top10", "full"])},
    "source.akshare": {"delay_seconds": ("float", [0.0, 1.5]), "timeout_seconds": ("float", [20.0]),
                       "cross_section_timeout_seconds": ("float", [300.0]),
                       "retries": ("int", [0, 2]), "backoff_seconds": ("float", [2.0]),
                       "max_consecutive_failures": ("int", [3]),
                       "start_date": ("date", [dt.date(2014, 1, 1)]),
                       "themes": ("themes", [{"930713": "index", "600519": "stock"}]),
                       "holdings_job": ("bool", [True, False]),
                       "holdings_cron": ("str", ["30 1 * * *"]),
                       "holdings_max_missing_share": ("float", [0.01, 0.5])},
    "notify": {"console": ("bool", [True, False]), "inhibit": ("bool", [True]),
               "retry_base_seconds": ("int", [1, 30]), "retry_max_seconds": ("int", [3600])},
    "notify.slack": {"channel": ("str", ["#risk"]), "api_url": ("str", ["https://slack.test/api/"]),
                     "timeout_seconds": ("int", [30]), "chart": ("bool", [True, False])},
    "data_quality": {"stale_after_days": ("int", [0, 3]),
                     "required": ("strlist", [[], ["index.csi300.close"]])},
    "episodes": {"drawdown_min_depth": ("float", [0.1]), "rotation_rule": ("str", ["", "r0"])},
    "signals.turnover": {"mean_days": ("sigint", [20]), "pctile_days": ("sigint", [250])},
    "signals.credit": {"tenor": ("sigstr", ["3y"]), "lag_days": ("sigint", [60])},
    "rules[0]": {"name": ("str", ["r0"]), "severity": ("choice", ["info", "warning", "critical"]),
                 "when": ("str", ["microcap.drawdown <= -0.10"]), "for_days": ("int", [1, 2]),
                 "clear_when": ("str", ["microcap.drawdown > -0.05"]), "clear_days": ("int", [3]),
                 "repeat_every_days": ("int", [0, 5]), "explain": ("str", ["why"])},
}
REQUIRED = {"rules[0]": ("name", "when", "explain")}
A_DATE, A_TABLE, A_LIST = dt.date(2024, 1, 2), {"a": 1}, [1, "x"]
# values of the wrong type, refused although pydantic's lax mode would coerce them (the config is strict)
WRONG = {
    "int": ["x", "", "12 days", 1.5, A_DATE, A_TABLE, A_LIST, float("inf")],
    "sigint": ["20", 20.0, True, A_DATE, A_TABLE, A_LIST],
    "float": ["x", "", "1,5", A_DATE, A_TABLE, A_LIST, [1.0]],
    "str": [1, 1.5, True, A_DATE, A_TABLE, A_LIST, ["x"]],
    "sigstr": [3, True, A_LIST],
    "choice": [1, True, "x", "", "DEMO", A_TABLE, A_LIST],
    "bool": ["maybe", "", 2, 0.5, A_DATE, A_TABLE, A_LIST],
    "date": ["x", "2024-13-01", "", 1.5, A_TABLE, A_LIST, True],
    "datelist": ["2024-01-02", 1, A_TABLE, ["x"], [A_TABLE]],
    "strlist": ["index.csi300.close", 1, A_TABLE, [1], [A_DATE]],
    "themes": [1, "x", A_LIST, {"930713": 1}, {"930713": "fund"}],
}
KEY_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)


def _model_keys(model, prefix: str = "") -> dict[str, set[str]]:
    """Every table's keys in the pydantic models ("" is the top level)."""
    out: dict[str, set[str]] = {prefix.rstrip("."): set(model.model_fields)}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
            out.update(_model_keys(field.annotation, f"{prefix}{name}."))
    return out


MODEL_KEYS = {**_model_keys(Config), "rules[0]": set(RuleConfig.model_fields)}


def test_schema_of_the_config_fuzz_matches_the_models():
    for table, fields in SCHEMA.items():
        if table.startswith("signals."):
            assert set(fields) <= set(signals.FAMILY_PARAMS[table.split(".")[1]])
        else:
            assert set(fields) <= MODEL_KEYS[table], table


def _put(data: dict, table: str, key: str | None, value) -> None:
    """Set ``table``'s ``key`` (the table itself when key is None) in the document ``data``."""
    parts = table.replace("[0]", "").split(".")
    if key is None:
        parts, key = parts[:-1], parts[-1]
    node = data
    for part in parts:
        node = node[part][0] if part == "rules" else node.setdefault(part, {})
    node[key] = value


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_str(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(data: dict, prefix: str = "") -> str:
    """``data`` as TOML with [table] and [[array]] headers, like config/monitor.toml."""
    lines, tables = [], []
    for k, v in data.items():
        is_array = isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
        (tables if isinstance(v, dict) or is_array else lines).append((k, v))
    out = "".join(f"{toml_str(k)} = {toml_value(v)}\n" for k, v in lines)
    for k, v in tables:
        name = f"{prefix}{toml_str(k)}"
        for item in v if isinstance(v, list) else [v]:
            out += f"\n[[{name}]]\n" if isinstance(v, list) else f"\n[{name}]\n"
            out += toml_document(item, f"{name}.")
    return out


def _base_rule(data: dict) -> None:
    rules = data.setdefault("rules", [{}])
    for key in ("name", "when", "explain"):
        rules[0].setdefault(key, SCHEMA["rules[0]"][key][1][0])


@st.composite
def faulty_configs(draw):
    """(valid TOML text, the same with one fault, the dotted key it must name, message part)."""
    data: dict = {}
    for table in draw(st.lists(st.sampled_from(sorted(SCHEMA)), max_size=7, unique=True)):
        fields = SCHEMA[table]
        if table == "rules[0]":
            _base_rule(data)
        for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=len(fields),
                                 unique=True)):
            _put(data, table, key, draw(st.sampled_from(fields[key][1])))
    if "rules" in data and draw(st.booleans()):
        data["rules"].append({"name": "r1", "when": "market.return_20d <= -0.08", "explain": "y"})
    if "rules" not in data and data.get("episodes", {}).get("rotation_rule"):
        data["episodes"]["rotation_rule"] = ""
    valid = toml_document(data)
    fault = draw(st.sampled_from(["unknown key", "wrong type", "table of wrong type"]))
    table = draw(st.sampled_from(sorted(SCHEMA) + ([""] if fault == "unknown key" else [])))
    if table == "rules[0]":
        _base_rule(data)
    if fault == "unknown key":
        key = draw(KEY_TEXT.filter(lambda k: k not in MODEL_KEYS.get(table, ())
                                   and k not in SCHEMA.get(table, {})))
        if table == "":
            data[key] = draw(st.sampled_from([1, "x", A_LIST, A_TABLE]))
            return valid, data, key, "unknown key"
        if table.startswith("signals."):
            assume(key not in signals.FAMILY_PARAMS[table.split(".")[1]])
            _put(data, table, key, 1)
            return valid, data, f"{table}.{key}", "unknown parameter"
        _put(data, table, key, draw(st.sampled_from([1, "x", True, A_LIST, A_TABLE])))
        return valid, data, f"{table}.{key}", "unknown key"
    if fault == "wrong type":
        key = draw(st.sampled_from(sorted(SCHEMA[table])))
        _put(data, table, key, draw(st.sampled_from(WRONG[SCHEMA[table][key][0]])))
        return valid, data, f"{table}.{key}", ""
    if table == "rules[0]":
        table = draw(st.sampled_from(["rules", "rules[0]"]))
    if table == "rules":
        wrong = [1, "x", A_TABLE]
    elif table == "rules[0]":
        data["rules"][0] = draw(st.sampled_from([1, "x", A_LIST]))
        return valid, data, "rules[0]", ""
    else:
        wrong = [1, "x", True, A_DATE, A_LIST]
    _put(data, table, None, draw(st.sampled_from(wrong)))
    return valid, data, table, ""


@FUZZ
@given(case=faulty_configs())
def test_fuzzed_nested_configs_refuse_unknown_keys_and_wrong_types(case):
    valid, data, where, needle = case
    event(f"config fault: {needle or 'wrong type'}")
    parse_config(valid, "fuzz.toml")  # the document before the fault is valid
    with pytest.raises(ConfigError) as info:
        parse_config(toml_document(data), "fuzz.toml")
    msg = str(info.value)
    assert one_line(msg), msg
    prefix = f"fuzz.toml: {named(where, data)}"
    assert msg.startswith(prefix) and msg[len(prefix)] in ":[.", (where, msg)
    assert needle in msg, msg


def named(where: str, data: dict) -> str:
    """``where`` as errors write it: ``rules[0]`` followed by the rule's name when it has one."""
    rules = data.get("rules")
    first = rules[0] if isinstance(rules, list) and rules else None
    name = first.get("name") if isinstance(first, dict) else None
    if where.startswith("rules[0]") and isinstance(name, str) and name:
        return where.replace("rules[0]", f"rules[0] ({name})", 1)
    return where


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
    """Arbitrary values (nested tables, arrays of tables, nulls dropped) anywhere at the top."""
    def drop_none(v):
        if isinstance(v, dict):
            return {k: drop_none(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_none(x) for x in v if x is not None]
        return v

    data = drop_none(data)
    text = toml_document(data)
    assert tomllib.loads(text) == data
    try:
        parse_config(text, "fuzz.toml")
    except ConfigError as exc:
        assert one_line(str(exc)) and str(exc).startswith("fuzz.toml: ")


LAX = ['[schedule]\ncatch_up_max_days = true', '[schedule]\ncatch_up_max_days = "5"',
       '[source]\ndemo_seed = "12"', '[source.akshare]\nretries = "3"',
       '[source.akshare]\nstart_date = 0', '[source.akshare]\nholdings_job = "yes"',
       '[notify]\nconsole = "no"', '[notify]\nconsole = 0', '[notify.slack]\nchart = "off"',
       '[episodes]\ndrawdown_min_depth = "0.1"',
       '[[rules]]\nname = "r"\nwhen = "microcap.drawdown < 0"\nexplain = "x"\nfor_days = "2"']


@pytest.mark.parametrize("text", LAX)
def test_wrong_types_that_pydantic_would_coerce_are_refused(text):
    with pytest.raises(ConfigError):
        parse_config(text, "lax.toml")


@pytest.mark.parametrize("text", ['[schedule]\n"a\\nb" = 1', '"top\\nkey" = 1',
                                  '[signals."a\\nb"]\nx = 1', '[signals.turnover]\n"x\\ny" = 1'])
def test_unknown_keys_with_a_newline_still_give_one_line(text):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "nl.toml")
    assert one_line(str(info.value))


# -- CLI arguments ------------------------------------------------------------------------------

# printable text without line breaks (paths with a newline have their own test below)
ARG_CHARS = string.printable.translate(str.maketrans("", "", "\n\r\x0b\x0c"))
TOKENS = st.lists(st.one_of(st.sampled_from(
    ["once", "--as-of", "2024-13-45", "signals", "--since", "x", "alerts", "--all", "silence",
     "add", "expire", "-1", "0", "1", "99", "list", "--reason", "all", "r", "replay", "--start",
     "--end", "2024-01-02", "backtest", "--sweep", "a.b=1:0:0", "r.x=1:2:0.0000001", "calibrate",
     "--until", "report", "--out", "episodes", "--kind", "nope", "import-csv", "missing.csv",
     "bad.csv", "good.csv", "config", "check", "evil.toml", "binary.toml", "--json", "outbox",
     "notify", "test", "holdings", "--report-date", "--coverage", "--", "-v"]),
    st.text(ARG_CHARS, max_size=8)), max_size=6)
# files of the example's folder (see _cli_folder); "cli.db" is the database itself
FILES = ["good.csv", "bad.csv", "missing.csv", ".", "binary.toml", "evil.toml", "cli.db"]
CONFIGS = ["evil.toml", "binary.toml", "missing.toml", ".", "good.csv"]
# dates that parse but are no trading day or out of range (commands fail before any work), and
# text that is no date (argparse refuses it)
DATES = ["2024-01-06", "2024-01-07", "2999-01-01", "0001-01-01", "1970-01-01", "2024-12-31"]
NOT_DATES = ["2024-13-45", "2024-02-30", "x", "", "2024-1-2"]
TEXT = st.text(ARG_CHARS, max_size=8)


@st.composite
def commands(draw):
    """A subcommand with hostile options (the failing paths; nothing that runs a whole cycle)."""
    pick = draw(st.sampled_from(["import-csv", "config", "silence add", "silence expire",
                                 "silence list", "signals", "backtest", "calibrate", "replay",
                                 "report", "once", "backfill", "holdings", "episodes", "notify"]))
    text = st.one_of(st.sampled_from(DATES), st.sampled_from(DATES), st.sampled_from(NOT_DATES),
                     TEXT)
    if pick == "import-csv":
        argv = ["import-csv", *draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=3))]
        argv += draw(st.sampled_from([[], ["--coverage", "full"], ["--coverage", "x"]]))
    elif pick == "config":
        argv = ["config", "check", *draw(st.lists(st.sampled_from(CONFIGS), max_size=1))]
    elif pick == "silence add":
        argv = ["silence", "add", draw(st.sampled_from(["nope", "", "microcap_drawdown ", "ALL"])),
                "--until", draw(text), "--reason", draw(st.sampled_from(["", " ", "x"]))]
    elif pick == "silence expire":
        argv = ["silence", "expire", draw(st.sampled_from(["2", "0", "-1", "x", "99", "1e3", "٣"]))]
    elif pick == "silence list":
        argv = ["silence", "list", *draw(st.lists(st.sampled_from(["--all", "--json", "-x"]),
                                                  max_size=2))]
    elif pick == "signals":
        argv = ["signals", draw(st.sampled_from(["nope", "composite", "microcap.drawdown.x"])),
                "--since", draw(text)]
    elif pick == "backtest":
        argv = ["backtest", "--start", draw(text), "--sweep", draw(st.one_of(TEXT, st.sampled_from(
            ["a.b=1:0:0", "r.x=1:2:0.0000001", "microcap_drawdown.for_days=3:1:1",
             "microcap_drawdown.microcap.drawdown=nan:1:1", "nope.for_days=1:2:1"])))]
    elif pick == "calibrate":
        argv = ["calibrate", "--until", draw(text), "--quantile",
                draw(st.sampled_from(["nan", "inf", "1", "0.5", "x", "-0"]))]
    elif pick == "replay":
        argv = ["replay", "--start", draw(text), "--end", draw(text)]
        argv += draw(st.sampled_from([[], ["--scratch", "scratch.db"], ["--config", "evil.toml"]]))
    elif pick == "report":
        argv = ["report", "--out", "r.html", "--start", draw(text), "--end", draw(text)]
    elif pick == "once":
        argv = ["once", "--as-of", draw(text)]
    elif pick == "backfill":
        argv = ["backfill", "--start", "2024-01-05", "--end", draw(st.sampled_from(DATES[:2]))]
    elif pick == "holdings":
        argv = ["holdings", "--report-date", draw(text)]
    elif pick == "episodes":
        argv = ["episodes", "--kind", draw(st.sampled_from(["drawdown", "x", ""]))]
    else:
        argv = ["notify", "test"]
    prefix = draw(st.sampled_from([[], ["-v"], *(["--config", c] for c in CONFIGS)]))
    return prefix + argv + (draw(st.lists(TEXT, max_size=1)) if draw(st.booleans()) else [])


ARGS = st.one_of(TOKENS, commands(), commands())
ENV = ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL", "REGIME_MONITOR_CONFIG")


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory) -> Path:
    """A database with observations and a silence, closed (its WAL checkpointed)."""
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "cli.db"
    db = open_db(path)
    write_csv(folder / "seed.csv", ["date", "series", "value"], [list(r) for r in LONG_ROWS])
    import_files(db, [folder / "seed.csv"], today=dt.date(2024, 1, 5))
    silences.add(db, "all", dt.date(2030, 1, 1), "seed")
    db.conn.close()
    return path


def _cli_folder(folder: Path, cli_db: Path) -> Path:
    db = folder / "cli.db"
    shutil.copy(cli_db, db)
    (folder / "bad.csv").write_text("date,series,value\n2024-01-02,index.csi300.close,x\n")
    (folder / "good.csv").write_text("date,series,value\n2024-01-08,index.csi300.close,3400\n")
    rule_file(folder, "__import__('os').system('touch pwned') > 0").rename(folder / "evil.toml")
    (folder / "binary.toml").write_bytes(b"\xff\xfe\x00[schedule]\x00\x81")
    return db


def _snapshot(path: Path) -> dict:
    db = open_db(path)
    try:
        return table_snapshot(db)
    finally:
        db.conn.close()


@settings(FUZZ, max_examples=100)
@given(argv=ARGS)
def test_fuzzed_cli_arguments_exit_cleanly(tmp_path, capsys, monkeypatch, cli_db, argv):
    if argv[:1] in (["run"], ["demo"]):
        return
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)  # relative outputs (report --out, replay's scratch) land here
        db = _cli_folder(folder, cli_db)
        before = _snapshot(db)
        capsys.readouterr()
        try:
            code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(db), *argv])
        except SystemExit as exc:  # argparse: usage errors exit 2 with one line
            code = exc.code
        err = capsys.readouterr().err
        event(f"cli exit {code}")
        assert isinstance(code, int)
        assert "Traceback" not in err
        if code:
            assert err.endswith("\n") and err.count("\n") == 1, err
            assert err.startswith("regime-monitor: error: "), err
            assert _snapshot(db) == before
        assert not (folder / "pwned").exists()


@pytest.mark.parametrize("argv", [["import-csv", "good.csv", "bad.csv"], ["config", "check",
                                                                          "evil.toml"],
                                  ["once", "--as-of", "2024-13-45"], ["silence", "expire", "99"],
                                  ["silence", "add", "nope", "--until", "2030-01-01", "--reason",
                                   "x"], ["backtest", "--sweep", "a.b=1:0:0"]])
def test_cli_process_errors_are_one_line_on_stderr(tmp_path, cli_db, argv):
    """The real process (logging configured on stderr, no pytest capture): still one line."""
    db = _cli_folder(tmp_path, cli_db)
    before = _snapshot(db)
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(DEFAULT_CONFIG),
                             "--db", str(db), *argv], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode in (1, 2), result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("regime-monitor: error: "), \
        result.stderr
    assert _snapshot(db) == before
    assert not (tmp_path / "pwned").exists()


def _cli(folder: Path, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(folder / "cli.db"), *argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["replay", "--start", "2024-01-02", "--end", "2024-01-04", "--scratch", "cli.db"],
    ["report", "--no-backtest", "--out", "cli.db"],
    ["report", "--no-backtest", "--out", "."],
    ["silence", "expire", "99999999999999999999999"],
], ids=["replay-scratch-is-the-db", "report-out-is-the-db", "report-out-is-a-folder",
        "silence-id-overflow"])
def test_cli_outputs_never_replace_the_database_and_fail_in_one_line(tmp_path, capsys, monkeypatch,
                                                                    cli_db, argv):
    monkeypatch.chdir(tmp_path)
    db = _cli_folder(tmp_path, cli_db)
    before = _snapshot(db)
    code, err = _cli(tmp_path, argv, capsys)
    assert code and err.count("\n") == 1 and err.startswith("regime-monitor: error: "), err
    assert _snapshot(db) == before


@pytest.mark.parametrize("argv", [["config", "check", "a\nb.toml"], ["import-csv", "a\nb.csv"]])
def test_cli_paths_with_a_newline_still_give_one_line(tmp_path, capsys, monkeypatch, cli_db, argv):
    monkeypatch.chdir(tmp_path)
    _cli_folder(tmp_path, cli_db)
    code, err = _cli(tmp_path, argv, capsys)
    assert code == 1 and err.count("\n") == 1, err
