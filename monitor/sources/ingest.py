"""Bringing data in outside the daily fetch: the CSV drop folder and the backfill."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sqlite_utils import Database

from monitor.calendar import TradingCalendar
from monitor.config import NAV_LAG_DAYS
from monitor.sources import Source
from monitor.sources.csv_import import CsvImportError, FileImport, import_report, printable, shown
from storage import observations, runs
from storage.util import dumps, utc_now

log = logging.getLogger("regime_monitor.ingest")
BACKFILL = "backfill"


SETTLE_SECONDS = 10.0  # a dropped file is imported once it has not changed for this long
WAITING_SUFFIXES = (".part", ".tmp")  # still being written: imported once renamed


def drop_folder_files(folder: Path) -> list[Path]:
    """Return the entries of ``folder`` named like CSV files (``*.csv``, ``*.csv.gz``), by name.

    Names ending ``.part`` or ``.tmp`` or starting with ``.`` are files still being written and
    are not listed (write to ``x.csv.part``, then rename to ``x.csv``). The entries are not
    followed or opened: a symbolic link or another non-regular entry is listed too (it is
    rejected, never read, by ``import_drop_folder``).
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and not p.name.endswith(WAITING_SUFFIXES)
                  and (p.name.endswith(".csv") or p.name.endswith(".csv.gz")))


def _unfit(path: Path, st: os.stat_result) -> str | None:
    """Return why the drop folder will not read the entry ``path`` (lstat ``st``), or None."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link: not followed, not read"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file: not read"
    return None


def _open_no_follow(path: Path) -> BinaryIO:
    """Open ``path`` for reading without following a symbolic link and only if it is a regular
    file (checked on the open descriptor); raise CsvImportError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        reason = "a symbolic link: not followed, not read" if exc.errno == errno.ELOOP else \
            f"cannot open: {shown(exc.strerror or exc)}"
        raise CsvImportError(f"{printable(str(path))}: {reason}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CsvImportError(f"{printable(str(path))}: not a regular file: not read")
    return os.fdopen(fd, "rb")


def import_drop_folder(db: Database, folder: Path, coverage: str = "top10",
                       settle_seconds: float = SETTLE_SECONDS, now: float | None = None,
                       clock: Callable[[], str] = utc_now,
                       calendar: TradingCalendar | None = None,
                       nav_lag_days: int = NAV_LAG_DAYS) -> dict[str, str]:
    """Import the settled files of the drop folder; return {file name (escaped): outcome}.

    A file is imported once it has stopped changing: its mtime at least ``settle_seconds``
    before ``now`` (seconds since the epoch; default: the wall clock, for callers that do not
    pass it; ``clock()``: ISO UTC now, for the import's records); a younger file waits for a
    later cycle and is not in the result. Good files are imported (each in one transaction) and
    moved to ``imported/``; a bad or unreadable file (wrong content, truncated or corrupt gzip,
    bad UTF-8, a symbolic link or non-regular entry, which is never read) is moved to
    ``rejected/`` next to a ``.error.txt`` holding its one-line reason (secrets redacted, control
    characters escaped), and the others still go in. Rows dated on a day that is not a trading
    day of ``calendar`` (default XSHG) are skipped, and the outcome says how many. A product NAV
    file's rows without ``available_at`` become known ``nav_lag_days`` XSHG trading days after
    their date (``exposure.nav_lag_days``), as with ``import-csv``. Never raises
    for a file's content: the cycle
    goes on. Files written here are owner-only (0600). A crash before a file is moved only means
    it is imported again next time, which changes nothing (imports are idempotent).
    """
    now = time.time() if now is None else now
    outcome: dict[str, str] = {}
    files: list[Path] = []
    for path in drop_folder_files(folder):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        reason = _unfit(path, st)
        if reason is not None:
            _reject(folder, path, f"{printable(str(path))}: {reason}", outcome, clock)
        elif st.st_mtime_ns / 1e9 > now - settle_seconds:
            log.info("drop folder: %s changed %.1f s ago: waiting until it settles",
                     printable(path.name), max(0.0, now - st.st_mtime_ns / 1e9))
        else:
            files.append(path)
    if not files:
        return outcome
    try:  # together first: a holdings file may need the panel that arrives with it
        done = import_report(db, files, coverage=coverage, calendar=calendar,
                             opener=_open_no_follow, clock=clock, nav_lag_days=nav_lag_days)
        for path, result in zip(files, done, strict=True):
            _move(path, folder / "imported", clock)
            outcome[printable(path.name)] = _imported(result)
        return outcome
    except CsvImportError:
        pass
    for path in files:
        try:
            [result] = import_report(db, [path], coverage=coverage, calendar=calendar,
                                     opener=_open_no_follow, clock=clock,
                                     nav_lag_days=nav_lag_days)
        except CsvImportError as exc:
            _reject(folder, path, str(exc), outcome, clock)
            continue
        _move(path, folder / "imported", clock)
        outcome[printable(path.name)] = _imported(result)
    return outcome


def _imported(result: FileImport) -> str:
    """The outcome of an imported drop-folder file; rows skipped on non-trading days are said
    (and logged as a warning)."""
    text = f"imported ({result.changed} rows changed)"
    note = result.skipped_note()
    if note:
        log.warning("drop folder: %s", note)
        text += f"; {result.skipped_rows} row(s) skipped: not XSHG trading days"
    return text


def _reject(folder: Path, path: Path, reason: str, outcome: dict[str, str],
            clock: Callable[[], str] = utc_now) -> None:
    """Move ``path`` to ``rejected/`` with its reason beside it (``<name>.error.txt``, 0600)."""
    reason = shown(reason, 500)
    target = _move(path, folder / "rejected", clock)
    fd = os.open(target.with_name(target.name + ".error.txt"),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{reason}\n")
    outcome[printable(path.name)] = f"rejected: {reason}"
    log.error("drop folder: %s", reason)


def _move(path: Path, into: Path, clock: Callable[[], str] = utc_now) -> Path:
    """Rename ``path`` (never following it) into the directory ``into``, its name prefixed with
    ``clock()`` (ISO UTC now) as YYYYMMDDTHHMMSS; return the new path.

    ``into`` is created owner-only; a regular file moved is made owner-only (0600).
    """
    if into.is_symlink():
        raise OSError(f"{printable(str(into))} is a symbolic link: not written to")
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = dt.datetime.fromisoformat(clock()).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    target = into / f"{stamp}-{path.name}"
    n = 1
    while os.path.lexists(target) or os.path.lexists(f"{target}.error.txt"):
        n += 1
        target = into / f"{stamp}.{n}-{path.name}"
    os.rename(path, target)
    if stat.S_ISREG(target.lstat().st_mode):
        os.chmod(target, 0o600, follow_symlinks=False)
    return target


def month_chunks(calendar: TradingCalendar, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Split the trading days of [start, end] into calendar months: (first, last) trading days."""
    chunks: dict[tuple[int, int], list[dt.date]] = {}
    for day in calendar.days(start, end):
        chunks.setdefault((day.year, day.month), []).append(day)
    return [(days[0], days[-1]) for days in chunks.values()]


def backfill(db: Database, source: Source, calendar: TradingCalendar, start: dt.date, end: dt.date,
             on_chunk: Callable[[dt.date, dt.date, str], None] | None = None, *,
             clock: Callable[[], str] = utc_now, today: dt.date | None = None) -> dict[str, int]:
    """Fetch [start, end] through ``source`` month by month, each month in its own transaction.

    Resumable: a month already backfilled (an ``ok`` backfill run for it) is skipped, so an
    interrupted backfill continues where it stopped. Returns counts of months done, skipped and
    failed; failures are recorded in ``runs`` with their reasons and do not stop the others.
    ``clock()`` (ISO UTC now) stamps the run records and the rows' ``fetched_at``. A fetched
    value that changes a stored one is known from ``today`` (the backfill's day, default the
    local date, as ``import-csv``), the stored one before it (``observations.upsert``).
    """
    revised_from = (today or dt.date.today()).isoformat()
    counts = {"done": 0, "skipped": 0, "failed": 0, "observations": 0}
    for first, last in month_chunks(calendar, start, end):
        key = f"{first.isoformat()}..{last.isoformat()}"
        if runs.has_success(db, BACKFILL, key):
            counts["skipped"] += 1
            if on_chunk:
                on_chunk(first, last, "skipped")
            continue
        started = clock()
        got = source.fetch(last, calendar.previous(first))
        rows, failures = got.rows, got.failures
        with db.atomic():
            n = observations.upsert(db, rows, revised_from, now=started)
            status = runs.OK if not failures else (runs.PARTIAL if rows else runs.FAILED)
            error = "; ".join(f"{k}: {v}" for k, v in sorted(failures.items())) or None
            runs.record(db, BACKFILL, key, started, clock(), status, error=error,
                        detail=dumps({"observations": n}))
        counts["observations"] += n
        counts["done" if status == runs.OK else "failed"] += 1
        if on_chunk:
            on_chunk(first, last, status)
    return counts
