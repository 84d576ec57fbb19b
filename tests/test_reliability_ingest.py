"""Issue 12, items 1, 4, 10, 11 and 13 (file names): the drop folder and the CSV import under
hostile or unlucky input - no secret leaks, no stopped cycle, no revision leaking into the past,
bounded memory, no raw control characters on the terminal."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from monitor import cli
from monitor.calendar import TradingCalendar
from monitor.compute import compute_day, history
from monitor.sources.csv_import import CsvImportError, import_files
from monitor.sources.demo_source import DemoSource
from monitor.sources.ingest import import_drop_folder
from storage import observations
from storage.db import open_db
from tests.conftest import CLASSIC_CONFIG, DEFAULT_CONFIG, table_snapshot

TOKEN = "xoxb-1111111111-2222222222-FAKEtokenFAKEtoken"
HOOK = "https://hooks.slack.com/services/T0FAKE/B0FAKE/FAKEwebhookPATHfake"
GOOD = "date,series,value\n2024-01-02,index.csi300.close,3386.35\n"
OLD = 1_000_000_000.0  # an mtime long past (2001), in seconds since the epoch


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", HOOK)


def settled(*paths: Path) -> None:
    """Give ``paths`` an mtime long past (a file that stopped changing)."""
    for p in paths:
        os.utime(p, (OLD, OLD), follow_symlinks=False)


def everything_written(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*")
                   if p.is_file() and not p.is_symlink())


# -- item 1: the token never leaks through the drop folder ---------------------------------------

def test_symlinks_in_the_drop_folder_are_never_read(tmp_path, secrets, caplog):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.env"
    secret.write_text(f"SLACK_BOT_TOKEN={TOKEN},SLACK_WEBHOOK_URL={HOOK},x\n")
    valid = tmp_path / "valid.csv"  # a valid CSV behind a link: still not read
    valid.write_text(GOOD)
    (inbox / "feed.csv").symlink_to(secret)
    (inbox / "env.csv").symlink_to("/proc/self/environ")
    (inbox / "valid.csv").symlink_to(valid)
    with caplog.at_level(logging.DEBUG):
        outcome = import_drop_folder(db, inbox, now=OLD + 3600)
    assert set(outcome) == {"feed.csv", "env.csv", "valid.csv"}
    for what in outcome.values():
        assert what.startswith("rejected: ") and "symbolic link" in what, what
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 0
    written = everything_written(inbox)
    assert TOKEN not in written and HOOK not in written and "FAKEwebhook" not in written
    assert TOKEN not in caplog.text and "FAKEwebhook" not in caplog.text
    # the links were moved aside (as links), their targets untouched
    assert secret.read_text().startswith("SLACK_BOT_TOKEN=") and valid.read_text() == GOOD
    assert len([p for p in (inbox / "rejected").iterdir() if p.is_symlink()]) == 3


def test_non_regular_files_are_rejected_unread(tmp_path):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.mkfifo(inbox / "pipe.csv")  # reading it would block the cycle for ever
    outcome = import_drop_folder(db, inbox, now=OLD + 3600)
    assert outcome["pipe.csv"].startswith("rejected: ") and "not a regular file" in outcome["pipe.csv"]


def test_file_content_in_errors_is_redacted_and_short(tmp_path, secrets, caplog, capsys):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    leak = f"SLACK_BOT_TOKEN={TOKEN}\x00SLACK_WEBHOOK_URL={HOOK}\x00" + "A=" + "b" * 5000 + "\n"
    (inbox / "env.csv").write_text(leak + "1\n")
    settled(inbox / "env.csv")
    with caplog.at_level(logging.DEBUG):
        outcome = import_drop_folder(db, inbox, now=OLD + 3600)
    what = outcome["env.csv"]
    assert what.startswith("rejected: ") and "unrecognised header" in what
    assert TOKEN not in what and "FAKEwebhook" not in what and "\x00" not in what
    assert len(what) < 400, len(what)
    [err] = (inbox / "rejected").glob("*.error.txt")
    assert TOKEN not in err.read_text() and "FAKEwebhook" not in err.read_text()
    assert TOKEN not in caplog.text and "FAKEwebhook" not in caplog.text
    # the CLI the same way
    bad = tmp_path / "env2.csv"
    bad.write_text(leak)
    assert cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(tmp_path / "c.db"),
                     "import-csv", str(bad)]) == 1
    out = capsys.readouterr()
    assert TOKEN not in out.err + out.out and "FAKEwebhook" not in out.err + out.out
    assert "[redacted]" in out.err


def test_import_csv_of_proc_self_environ_prints_no_secret(tmp_path):
    env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "SLACK_WEBHOOK_URL": HOOK}
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(DEFAULT_CONFIG),
                           "--db", str(tmp_path / "p.db"), "import-csv", "/proc/self/environ"],
                          capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert proc.returncode == 1, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr and "FAKEwebhook" not in proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_files_the_drop_folder_writes_are_owner_only(tmp_path):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "good.csv").write_text(GOOD)
    (inbox / "bad.csv").write_text("date,series,value\n2024-01-02,index.csi300.close,abc\n")
    for p in inbox.iterdir():
        p.chmod(0o644)
    settled(*inbox.iterdir())
    import_drop_folder(db, inbox, now=OLD + 3600)
    written = [p for p in inbox.rglob("*") if p.is_file()]
    assert len(written) == 3  # imported/good, rejected/bad and its .error.txt
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


# -- item 4: a bad file never stops the cycle; a file being written waits --------------------------

def half_gzip(path: Path) -> None:
    data = gzip.compress(("date,series,value\n" + "".join(
        f"2024-01-{d:02d},index.csi300.close,{3000 + d}\n" for d in range(2, 30))).encode())
    path.write_bytes(data[: len(data) // 2])


UNREADABLE = {
    "half.csv.gz": (half_gzip, "Compressed file ended before"),
    "notgz.csv.gz": (lambda p: p.write_bytes(b"date,series,value\n"), "Not a gzipped file"),
    "badzlib.csv.gz": (lambda p: p.write_bytes(gzip.compress(GOOD.encode())[:12] + b"\xff" * 40),
                       "rror"),
    "latin1.csv": (lambda p: p.write_bytes("date,series,value\n2024-01-02,th\xe9me,1\n".encode("latin-1")),
                   "can't decode byte 0xe9"),
    "quote.csv": (lambda p: p.write_text('date,series,value\n"2024-01-02,index.csi300.close,1\n'),
                  "not a readable CSV file"),
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_files_are_rejected_with_the_reason(tmp_path, name):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make, reason = UNREADABLE[name]
    make(inbox / name)
    (inbox / "ok.csv").write_text(GOOD)
    settled(*inbox.iterdir())
    outcome = import_drop_folder(db, inbox, now=OLD + 3600)
    assert outcome[name].startswith("rejected: ") and reason in outcome[name], outcome[name]
    assert outcome["ok.csv"].startswith("imported (1 rows")
    assert "\n" not in outcome[name]
    [err] = (inbox / "rejected").glob("*.error.txt")
    assert reason in err.read_text()


def test_half_written_gzip_does_not_stop_the_cycle(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    half_gzip(inbox / "feed.csv.gz")
    settled(inbox / "feed.csv.gz")
    config = tmp_path / "c.toml"
    config.write_text(CLASSIC_CONFIG.read_text().replace('drop_folder = ""', f'drop_folder = "{inbox}"'))
    assert cli.main(["--config", str(config), "--db", str(tmp_path / "d.db"), "once", "--as-of",
                     "2024-01-05"]) == 0
    db = open_db(tmp_path / "d.db")
    assert db.execute("SELECT job, as_of, status FROM runs WHERE job = 'cycle'").fetchall() == [
        ("cycle", "2024-01-05", "ok")]
    assert [p.name.split("-", 1)[1] for p in (inbox / "rejected").glob("*.gz")] == ["feed.csv.gz"]


def test_a_file_still_being_written_waits_until_it_settles(tmp_path):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rows = [f"2024-01-{d:02d},index.csi300.close,{3000 + d}\n" for d in range(2, 30)]
    feed = inbox / "feed.csv"
    feed.write_text("date,series,value\n" + "".join(rows[:10]))  # the writer is not done
    t = feed.stat().st_mtime
    assert import_drop_folder(db, inbox, settle_seconds=5, now=t + 1) == {}
    assert feed.exists() and db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 0
    with feed.open("a") as f:
        f.write("".join(rows[10:]))
    t = feed.stat().st_mtime
    # float seconds from st_mtime: checked clear of the 5 s boundary, on both sides
    assert import_drop_folder(db, inbox, settle_seconds=5, now=t + 4.9) == {}
    assert import_drop_folder(db, inbox, settle_seconds=5, now=t + 5.05) == {  # 8 weekend days
        "feed.csv": "imported (20 rows changed); 8 row(s) skipped: not XSHG trading days"}
    assert db.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 20


def test_temporary_and_hidden_files_wait_for_their_rename(tmp_path):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("feed.csv.part", "feed.csv.tmp", ".feed.csv", "feed.csv.gz.part"):
        (inbox / name).write_text(GOOD)
    settled(*inbox.iterdir())
    assert import_drop_folder(db, inbox, now=OLD + 3600) == {}
    (inbox / "feed.csv.part").rename(inbox / "feed.csv")
    assert import_drop_folder(db, inbox, now=OLD + 3600) == {"feed.csv": "imported (1 rows changed)"}


# -- item 10: a revision takes the import day; earlier days keep the old value --------------------

def test_a_revision_takes_the_import_day_and_is_kept_apart(tmp_path):
    db = open_db(tmp_path / "r.db")
    first = tmp_path / "first.csv"
    first.write_text("date,series,value\n2024-01-02,yield.gov.3y,2.31\n2024-01-03,yield.gov.3y,2.29\n")
    import_files(db, [first], today=dt.date(2024, 1, 3))
    rev = tmp_path / "rev.csv"
    rev.write_text("date,series,value\n2024-01-02,yield.gov.3y,2.41\n2024-01-03,yield.gov.3y,2.29\n")
    assert import_files(db, [rev], today=dt.date(2024, 3, 1)) == {str(rev): 1}
    assert db.execute("SELECT date, value, available_at FROM observations ORDER BY date").fetchall() == [
        ("2024-01-02", 2.41, "2024-03-01"), ("2024-01-03", 2.29, "2024-01-03")]
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]

    def seen(as_of):
        return observations.load_frame(db, ["yield.gov.3y"], days, as_of)["yield.gov.3y"].tolist()

    assert seen(dt.date(2024, 1, 2))[0] == 2.31
    assert seen(dt.date(2024, 2, 29)) == [2.31, 2.29]  # the day before the import: the old value
    assert seen(dt.date(2024, 3, 1)) == [2.41, 2.29]
    # the same file again changes nothing; a file that says when the value was known is believed
    assert import_files(db, [rev], today=dt.date(2024, 3, 2)) == {str(rev): 0}
    told = tmp_path / "told.csv"
    told.write_text("date,series,value,available_at\n2024-01-03,yield.gov.3y,2.19,2024-01-04\n")
    import_files(db, [told], today=dt.date(2024, 3, 5))
    assert db.execute("SELECT available_at FROM observations WHERE date = '2024-01-03'").fetchone() == (
        "2024-01-04",)
    assert seen(dt.date(2024, 1, 3)) == [2.31, 2.29] and seen(dt.date(2024, 1, 4)) == [2.31, 2.19]


def test_replay_before_and_after_a_revision(tmp_path, classic_config):
    """A replay over the revision: every day before the import is exactly as before it."""
    from monitor.analysis.replay import replay

    start, end = dt.date(2018, 1, 2), dt.date(2018, 4, 27)
    db = open_db(tmp_path / "src.db")
    observations.upsert(db, DemoSource(classic_config.source.demo_seed).fetch(end, None).rows)
    db.conn.commit()  # replay reads the source through another connection
    before = replay(db, classic_config, start, end, tmp_path / "a.db").values
    cal = TradingCalendar()
    day, imported = dt.date(2018, 2, 1), dt.date(2018, 3, 1)
    old = db.execute("SELECT value FROM observations WHERE series = 'yield.credit.3y' AND date = ?",
                     [day.isoformat()]).fetchone()[0]
    gov = db.execute("SELECT value FROM observations WHERE series = 'yield.gov.3y' AND date = ?",
                     [day.isoformat()]).fetchone()[0]
    rev = tmp_path / "rev.csv"
    rev.write_text(f"date,series,value\n{day},yield.credit.3y,{old + 1.5}\n")
    import_files(db, [rev], today=imported)
    after = replay(db, classic_config, start, end, tmp_path / "b.db").values
    earlier = after.index < pd.Timestamp(imported)
    pd.testing.assert_frame_equal(after[earlier], before[earlier])
    # the day itself, replayed, still shows the spread as known then
    assert after.at[pd.Timestamp(day), "credit.spread_bp"] == pytest.approx((old - gov) * 100)
    # a 20-day change measured after the import uses the revised value
    later = cal.days(day, end)[20]
    assert later >= imported
    spread_now = after.at[pd.Timestamp(later), "credit.spread_bp"]
    assert after.at[pd.Timestamp(later), "credit.spread_chg_20d"] == pytest.approx(
        spread_now - (old + 1.5 - gov) * 100)
    assert before.at[pd.Timestamp(later), "credit.spread_chg_20d"] == pytest.approx(
        spread_now - (old - gov) * 100)
    # replay/backtest (the vectorised history) and the daily cycle agree on every signal,
    # on the revised day, the day before the import, the import day and after it
    params = classic_config.signal_params()
    for when in (day, cal.days(day, imported)[-2], imported, later):
        live = compute_day(db, cal, when, params)
        for name, got in after.loc[pd.Timestamp(when)].items():
            want = live[name].value
            assert (got == pytest.approx(want, rel=1e-12)) if want is not None else got != got, (
                when, name, got, want)


def test_a_revised_microcap_close_reaches_the_regime_model_only_from_the_import_day(
        tmp_path, classic_config):
    """The regime model's fits and filter in replay/backtest read a revised input as the daily
    cycle did on each day: the old value before the import day."""
    end = dt.date(2019, 11, 29)
    db = open_db(tmp_path / "src.db")
    observations.upsert(db, DemoSource(classic_config.source.demo_seed).fetch(end, None).rows)
    day, imported = dt.date(2019, 10, 9), dt.date(2019, 11, 1)
    old = db.execute("SELECT value FROM observations WHERE series = 'index.microcap.close' AND "
                     "date = ?", [day.isoformat()]).fetchone()[0]
    rev = tmp_path / "rev.csv"
    rev.write_text(f"date,series,value\n{day},index.microcap.close,{old * 0.95}\n")
    import_files(db, [rev], today=imported)
    cal, params = TradingCalendar(), classic_config.signal_params()
    values = history(db, cal, dt.date(2019, 6, 3), end, params)[0]
    for when in cal.days(day, imported)[:3] + [imported]:
        live = compute_day(db, cal, when, params)
        for name, got in values.loc[pd.Timestamp(when)].items():
            want = live[name].value
            assert (got == pytest.approx(want, rel=1e-12)) if want is not None else got != got, (
                when, name, got, want)


# -- item 11: streaming import, all-or-nothing across chunks ------------------------------------

def write_many(path: Path, bad_last: bool = False) -> int:
    days = TradingCalendar().days(dt.date(2010, 1, 4), dt.date(2023, 12, 29))
    series = [f"theme.t{k}.close" for k in range(20)]
    n = 0
    with path.open("w") as f:
        f.write("date,series,value\n")
        for i, d in enumerate(days):
            for k, s in enumerate(series):
                f.write(f"{d},{s},{1000 + k + i * 0.01:.2f}\n")
                n += 1
        if bad_last:
            f.write(f"{days[3]},{series[5]},1234\n")  # a duplicate in the very last chunk
    return n


def test_streaming_import_across_chunks_is_complete_and_all_or_nothing(tmp_path):
    db = open_db(tmp_path / "s.db")
    path = tmp_path / "many.csv"
    n = write_many(path)
    assert path.stat().st_size > 2_000_000
    assert import_files(db, [path], today=dt.date(2024, 1, 2), chunk_rows=1000) == {str(path): n}
    assert db.execute("SELECT COUNT(*), SUM(value) FROM observations").fetchone() == (
        n, pytest.approx(sum(pd.read_csv(path)["value"])))
    before = table_snapshot(db)
    bad = tmp_path / "bad.csv"
    write_many(bad, bad_last=True)
    bad.write_text(bad.read_text().replace("1000.00", "1000.50"))  # a revision in the first chunk
    with pytest.raises(CsvImportError, match=rf"bad.csv: line {3 * 20 + 5 + 2}: duplicate date"):
        import_files(db, [bad], today=dt.date(2024, 1, 2), chunk_rows=1000)
    assert table_snapshot(db) == before


# -- item 13: control characters in names and errors are escaped ---------------------------------

def test_control_characters_in_file_names_are_escaped(tmp_path, caplog, capsys):
    db = open_db(tmp_path / "d.db")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    name = "evil\x1b[2J\nname.csv"
    (inbox / name).write_text("date,series,value\n2024-01-02,index.csi300.close,a\x1b[31mb\n")
    settled(inbox / name)
    with caplog.at_level(logging.DEBUG):
        outcome = import_drop_folder(db, inbox, now=OLD + 3600)
    [(key, what)] = outcome.items()
    for text in (key, what, caplog.text.rstrip("\n"), *[p.read_text() for p in
                                                        (inbox / "rejected").glob("*.error.txt")]):
        assert "\x1b" not in text and "\n" not in text.rstrip("\n"), repr(text)
    assert "evil\\x1b[2J\\nname.csv" in what and "'a\\x1b[31mb'" in what
    good = tmp_path / "ok\x1b[2J.csv"
    good.write_text(GOOD)
    assert cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(tmp_path / "c.db"),
                     "import-csv", str(good)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "ok\\x1b[2J.csv: 1 rows read, 1 written" in out
