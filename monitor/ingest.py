"""Bringing data in outside the daily fetch: the CSV drop folder and the backfill."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from monitor.calendar import TradingCalendar
from monitor.sources import Source
from monitor.sources.csv_import import CsvImportError, import_files
from storage import observations, runs
from storage.util import dumps, utc_now

log = logging.getLogger("regime_monitor.ingest")
BACKFILL = "backfill"


def drop_folder_files(folder: Path) -> list[Path]:
    """Return the CSV files waiting in ``folder`` (``*.csv``, ``*.csv.gz``), by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and (p.name.endswith(".csv") or p.name.endswith(".csv.gz")))


def import_drop_folder(db: Database, folder: Path, coverage: str = "top10") -> dict[str, str]:
    """Import every waiting file of the drop folder; return {file name: outcome}.

    Good files are imported (each in one transaction) and moved to ``imported/``; a bad file is
    moved to ``rejected/`` next to a ``.error.txt`` holding its one-line reason, and the others
    still go in. A crash before a file is moved only means it is imported again next time, which
    changes nothing (imports are idempotent).
    """
    files = drop_folder_files(folder)
    outcome: dict[str, str] = {}
    if not files:
        return outcome
    try:  # together first: a holdings file may need the panel that arrives with it
        changed = import_files(db, files, coverage=coverage)
        for path in files:
            _move(path, folder / "imported")
            outcome[path.name] = f"imported ({changed[str(path)]} rows changed)"
        return outcome
    except CsvImportError:
        pass
    for path in files:
        try:
            changed = import_files(db, [path], coverage=coverage)
        except CsvImportError as exc:
            target = _move(path, folder / "rejected")
            target.with_name(target.name + ".error.txt").write_text(f"{exc}\n", encoding="utf-8")
            outcome[path.name] = f"rejected: {exc}"
            log.error("drop folder: %s", exc)
            continue
        _move(path, folder / "imported")
        outcome[path.name] = f"imported ({changed[str(path)]} rows changed)"
    return outcome


def _move(path: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    target = into / f"{stamp}-{path.name}"
    shutil.move(str(path), target)
    return target


def month_chunks(calendar: TradingCalendar, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Split the trading days of [start, end] into calendar months: (first, last) trading days."""
    chunks: dict[tuple[int, int], list[dt.date]] = {}
    for day in calendar.days(start, end):
        chunks.setdefault((day.year, day.month), []).append(day)
    return [(days[0], days[-1]) for days in chunks.values()]


def backfill(db: Database, source: Source, calendar: TradingCalendar, start: dt.date, end: dt.date,
             on_chunk: Callable[[dt.date, dt.date, str], None] | None = None) -> dict[str, int]:
    """Fetch [start, end] through ``source`` month by month, each month in its own transaction.

    Resumable: a month already backfilled (an ``ok`` backfill run for it) is skipped, so an
    interrupted backfill continues where it stopped. Returns counts of months done, skipped and
    failed; failures are recorded in ``runs`` with their reasons and do not stop the others.
    """
    counts = {"done": 0, "skipped": 0, "failed": 0, "observations": 0}
    for first, last in month_chunks(calendar, start, end):
        key = f"{first.isoformat()}..{last.isoformat()}"
        if runs.has_success(db, BACKFILL, key):
            counts["skipped"] += 1
            if on_chunk:
                on_chunk(first, last, "skipped")
            continue
        started = utc_now()
        rows = source.fetch(last, calendar.previous(first))
        failures = dict(getattr(source, "failures", {}) or {})
        with db.atomic():
            n = observations.upsert(db, rows)
            status = runs.OK if not failures else (runs.PARTIAL if rows else runs.FAILED)
            error = "; ".join(f"{k}: {v}" for k, v in sorted(failures.items())) or None
            runs.record(db, BACKFILL, key, started, utc_now(), status, error=error,
                        detail=dumps({"observations": n}))
        counts["observations"] += n
        counts["done" if status == runs.OK else "failed"] += 1
        if on_chunk:
            on_chunk(first, last, status)
    return counts
