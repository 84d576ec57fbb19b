"""CSV import: the canonical long format and the stock panel (DESIGN.md).

Long format: ``date,series,value`` (optional ``available_at``), values in canonical units.
Stock panel: ``date,code,close,total_mv,is_st`` (close in yuan, total_mv in yuan, is_st 0/1).

A file is validated completely before anything is written; the whole import is one transaction,
so a bad file leaves the database unchanged. Errors are one line naming file, line and column.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sqlite_utils import Database

from monitor.sources import holdings
from signals import series as canonical
from storage import observations, runs, stock_panel
from storage.staging import Staging
from storage.util import dumps, utc_now

LONG_COLUMNS = ("date", "series", "value")
PANEL_COLUMNS = ("date", "code", "close", "total_mv", "is_st")
HOLDINGS_COLUMNS = ("report_date", "fund_code", "fund_name", "stock_code", "holding_value")
FUNDS_LAG_DAYS = 30  # quarterly fund data: usable this many calendar days after the report date
CHUNK_ROWS = 100_000  # rows validated at a time: the memory an import needs does not grow with the file
EXCERPT_CHARS = 80  # at most this much of a file's content is quoted in an error


class CsvImportError(ValueError):
    """A CSV file cannot be imported; the message names the file and the offending place."""


def printable(text: str) -> str:
    """Return ``text`` with control and format characters escaped (``\\x1b``, ``\\n``,
    ``\\u202e``): a file name or a file's content printed to a terminal or a log cannot move
    the cursor, clear the screen or start a new line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def shown(text: object, limit: int = EXCERPT_CHARS) -> str:
    """Return ``text`` as it may appear in an error: secrets redacted (``monitor.delivery.redact``),
    control characters escaped, cut to ``limit`` characters (an excerpt, never a whole file)."""
    from monitor.delivery import redact

    out = printable(redact(str(text)))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def shown_repr(text: object, limit: int = EXCERPT_CHARS) -> str:
    """``shown`` of ``text``, quoted like ``repr``."""
    return "'" + shown(text, limit).replace("'", "\\'") + "'"


def _name(path: Path) -> str:
    return printable(str(path))


def open_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading (binary); raise CsvImportError when it cannot be opened."""
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise CsvImportError(f"{_name(path)}: no such file") from None
    except OSError as exc:
        raise CsvImportError(f"{_name(path)}: cannot open: {shown(exc.strerror or exc)}") from None


def _chunks(path: Path, raw: BinaryIO, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Yield the file's rows as string frames of at most ``chunk_rows`` rows (the index counts
    rows from 0 across chunks); the first frame may be empty (a header without rows). Any
    failure to read (truncated or corrupt gzip, bad UTF-8, a CSV syntax error, an I/O error) is
    a CsvImportError naming the file."""
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    gz = path.name.endswith(".gz") or head == b"\x1f\x8b"
    try:
        # index_col=False: a row with more fields than the header is never taken as an index;
        # pandas then warns that it would drop the extra fields - that is an error here
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(raw, dtype=str, keep_default_na=False, skipinitialspace=True,
                                 compression="gzip" if gz else None, encoding="utf-8",
                                 index_col=False, chunksize=chunk_rows)
            with reader:
                first = True
                for chunk in reader:
                    if first:
                        first = False
                        if not chunk.empty:  # the header first, on its own
                            yield chunk.iloc[:0]
                    yield chunk
                if first:
                    yield pd.DataFrame(columns=reader._engine.names)  # a header, no rows
    except pd.errors.ParserWarning:
        raise CsvImportError(f"{_name(path)}: a row has more fields than the header") from None
    except CsvImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the reading fails with, the file is bad
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        raise CsvImportError(f"{_name(path)}: not a readable CSV file: {shown(reason, 160)}") from None


def _line(i: int) -> int:
    return int(i) + 2  # header is line 1


def _stamps(path: Path, frame: pd.DataFrame, column: str, today: dt.date) -> pd.Series:
    """Return ``frame[column]`` parsed as YYYY-MM-DD days (Timestamps at midnight); a value that
    is no such day, or is after ``today``, is a CsvImportError naming its line."""
    parsed = pd.to_datetime(frame[column], format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        i = bad.idxmax()
        raise CsvImportError(f"{_name(path)}: line {_line(i)}, column {column}: "
                             f"{shown_repr(frame.at[i, column])} is not a YYYY-MM-DD date")
    future = parsed > pd.Timestamp(today)
    if future.any():
        i = future.idxmax()
        raise CsvImportError(f"{_name(path)}: line {_line(i)}, column {column}: "
                             f"{shown(frame.at[i, column])} is in the future")
    return parsed


def _dates(path: Path, frame: pd.DataFrame, column: str, today: dt.date) -> pd.Series:
    """``_stamps`` as ``datetime.date`` values."""
    return _stamps(path, frame, column, today).dt.date


def _iso(stamps: pd.Series) -> list[str]:
    """Return the days of ``stamps`` as ISO strings (YYYY-MM-DD)."""
    return stamps.to_numpy().astype("datetime64[D]").astype(str).tolist()


def _numbers(path: Path, frame: pd.DataFrame, column: str, allow_empty: bool = False) -> pd.Series:
    raw = frame[column].str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.fillna(0.0))
    if allow_empty:
        bad &= raw != ""
    if bad.any():
        i = bad.idxmax()
        raise CsvImportError(f"{_name(path)}: line {_line(i)}, column {column}: "
                             f"{shown_repr(frame.at[i, column])} is not a number")
    return values.astype(float)


def _header(path: Path, frame: pd.DataFrame) -> str:
    cols = tuple(str(c).strip() for c in frame.columns)
    frame.columns = list(cols)
    if cols[:3] == LONG_COLUMNS and set(cols) <= {*LONG_COLUMNS, "available_at"}:
        return "long"
    if cols == PANEL_COLUMNS:
        return "panel"
    if cols[:5] == HOLDINGS_COLUMNS and set(cols) <= {*HOLDINGS_COLUMNS, "fund_type"}:
        return "holdings"
    raise CsvImportError(
        f"{_name(path)}: unrecognised header {shown_repr(','.join(cols))}: expected "
        f"{','.join(LONG_COLUMNS)}[,available_at], {','.join(PANEL_COLUMNS)} or "
        f"{','.join(HOLDINGS_COLUMNS)}[,fund_type]")


def parse_long(path: Path, chunks: Iterator[pd.DataFrame], today: dt.date, work: Staging) -> str:
    """Validate a long-format file chunk by chunk into a table of ``work``; return its name.

    The table holds (series, date, value, available_at, explicit, line): values in canonical
    units, ISO days, ``explicit`` 1 where the file gave the row's available_at.
    """
    table = work.table(("series", "date", "value", "available_at", "explicit"), ("series", "date"))
    kinds: dict[str, canonical.SeriesKind] = {}
    for frame in chunks:
        dates = _stamps(path, frame, "date", today)
        values = _numbers(path, frame, "value")
        names = frame["series"].str.strip()
        for name in names.unique():
            if name not in kinds:
                kind = canonical.kind_of(name)
                if kind is None:
                    i = names.eq(name).idxmax()
                    raise CsvImportError(f"{_name(path)}: line {_line(i)}, column series: "
                                         f"{shown_repr(name)} is not a canonical series name "
                                         "(see README: bring your own data)")
                kinds[name] = kind
        low = names.map({n: k.low for n, k in kinds.items()})
        high = names.map({n: k.high for n, k in kinds.items()})
        outside = (values < low) | (values > high)
        if outside.any():
            i = outside.idxmax()
            name, kind = names[i], kinds[names[i]]
            raise CsvImportError(
                f"{_name(path)}: line {_line(i)}, series {name}: value {values[i]:g} is outside "
                f"the plausible range {kind.low:g}..{kind.high:g} {kind.unit}"
                f"{canonical.unit_hint(kind, float(values[names == name].median()))}")
        if "available_at" in frame.columns:
            given = frame["available_at"].str.strip() != ""
            available = _stamps(path, frame.assign(available_at=frame["available_at"].where(
                given, frame["date"])), "available_at", today + dt.timedelta(days=3660))
            early = available < dates
            if early.any():
                i = early.idxmax()
                raise CsvImportError(f"{_name(path)}: line {_line(i)}, column available_at: "
                                     f"{available[i].date()} is before the date {dates[i].date()}")
            explicit = given.to_numpy(dtype=int)
        else:
            lagged = names.map({n: k.lagged for n, k in kinds.items()}).to_numpy(dtype=bool)
            available = dates + pd.to_timedelta(np.where(lagged, FUNDS_LAG_DAYS, 0), unit="D")
            explicit = np.zeros(len(frame), dtype=int)
        rows = list(zip(names.tolist(), _iso(dates), values.tolist(), _iso(available),
                        explicit.tolist(), (frame.index.to_numpy() + 2).tolist(), strict=True))
        work.append(table, rows)
    dup = work.first_duplicate(table)
    if dup:
        (name, day), line = dup
        raise CsvImportError(f"{_name(path)}: line {line}: duplicate date {day} for series {name}")
    for name, kind in sorted(kinds.items()):
        if kind.unit == "percent":
            median = work.median(table, "value", "series = ?", [name])
            if median is not None and abs(median) < 0.2:
                raise CsvImportError(f"{_name(path)}: series {name}: median {median:g} cannot be a "
                                     f"yield in percent{canonical.unit_hint(kind, median)}")
    return table


def parse_panel(path: Path, chunks: Iterator[pd.DataFrame], today: dt.date, work: Staging) -> str:
    """Validate a stock-panel file chunk by chunk into a table of ``work``; return its name.

    The table holds (date, code, close, total_mv, is_st, line): ISO days, yuan, 0/1.
    """
    table = work.table(("date", "code", "close", "total_mv", "is_st"), ("date", "code"))
    for frame in chunks:
        dates = _dates(path, frame, "date", today)
        codes = frame["code"].str.strip()
        bad = ~codes.str.fullmatch(r"[0-9]{6}")
        if bad.any():
            i = bad.idxmax()
            raise CsvImportError(f"{_name(path)}: line {_line(i)}, column code: "
                                 f"{shown_repr(codes[i])} is not a 6-digit stock code")
        close = _numbers(path, frame, "close", allow_empty=True)
        total_mv = _numbers(path, frame, "total_mv", allow_empty=True)
        is_st = _numbers(path, frame, "is_st")
        if (~is_st.isin([0.0, 1.0])).any():
            i = (~is_st.isin([0.0, 1.0])).idxmax()
            raise CsvImportError(f"{_name(path)}: line {_line(i)}, column is_st: must be 0 or 1")
        rows = [(d.isoformat(), c, None if np.isnan(cl) else float(cl),
                 None if np.isnan(mv) else float(mv), int(st), _line(i))
                for i, d, c, cl, mv, st in zip(frame.index, dates, codes, close, total_mv, is_st,
                                               strict=True)]
        work.append(table, rows)
    dup = work.first_duplicate(table)
    if dup:
        (day, code), line = dup
        raise CsvImportError(f"{_name(path)}: line {line}: duplicate date {day} for code {code}")
    median = work.median(table, "total_mv")
    if median is not None and median < 1e7:
        raise CsvImportError(f"{_name(path)}: column total_mv: median {median:g} is too small "
                             "for yuan; convert 1e8 yuan (亿元) to yuan")
    return table


def parse_holdings(path: Path, frame: pd.DataFrame, today: dt.date) -> pd.DataFrame:
    """Validate a fund-holdings frame; return it typed (report_date as Timestamp, values in yuan)."""
    dates = _dates(path, frame, "report_date", today)
    value = _numbers(path, frame, "holding_value")
    if (value < 0).any():
        i = (value < 0).idxmax()
        raise CsvImportError(f"{_name(path)}: line {_line(i)}, column holding_value: negative value")
    for col in ("fund_code", "stock_code"):
        bad = ~frame[col].str.strip().str.fullmatch(r"[0-9]{6}")
        if bad.any():
            i = bad.idxmax()
            raise CsvImportError(f"{_name(path)}: line {_line(i)}, column {col}: "
                                 f"{shown_repr(frame.at[i, col])} is not a 6-digit code")
    if value.median() < 1e4:
        raise CsvImportError(f"{_name(path)}: column holding_value: median {value.median():g} is "
                             "too small for yuan; convert 1e8 yuan (亿元) to yuan")
    out = pd.DataFrame({"report_date": pd.to_datetime(dates), "fund_code": frame["fund_code"].str.strip(),
                        "fund_name": frame["fund_name"].str.strip(),
                        "stock_code": frame["stock_code"].str.strip(), "holding_value": value})
    if "fund_type" in frame.columns:
        out["fund_type"] = frame["fund_type"].str.strip().replace("", None)
    return out


def _validate(path: Path, raw: BinaryIO, today: dt.date, work: Staging, chunk_rows: int
              ) -> tuple[str, str | pd.DataFrame]:
    """Read and validate one file; return (kind, the name of a table of ``work``, or the holdings
    frame for kind ``holdings``)."""
    chunks = _chunks(path, raw, chunk_rows)
    header = next(chunks)
    kind = _header(path, header)
    seen = [0]

    def rows() -> Iterator[pd.DataFrame]:
        for frame in chunks:
            frame.columns = list(header.columns)
            if not frame.empty:
                seen[0] += len(frame)
                yield frame

    if kind == "holdings":
        frames = list(rows())  # one quarter's holdings: read whole (bounded by the fund count)
        if not frames:
            raise CsvImportError(f"{_name(path)}: no data rows")
        return kind, parse_holdings(path, pd.concat(frames), today)
    parse = parse_long if kind == "long" else parse_panel
    table = parse(path, rows(), today, work)
    if not seen[0]:
        raise CsvImportError(f"{_name(path)}: no data rows")
    return kind, table


def import_files(db: Database, paths: list[Path], today: dt.date | None = None,
                 coverage: str = "top10", *, chunk_rows: int = CHUNK_ROWS,
                 opener: Callable[[Path], BinaryIO] = open_file,
                 clock: Callable[[], str] = utc_now) -> dict[str, int]:
    """Validate every file, then write them all in one transaction; return rows changed per file
    (keyed by ``str(path)``).

    Files are read ``chunk_rows`` rows at a time (opened with ``opener``); the validated rows wait
    in a scratch SQLite file, so memory stays bounded whatever the file size. A value that
    changes a stored one takes ``today`` (the import day) as its available_at, unless the file
    has an ``available_at`` for that row; the value it replaces stays visible to the days before.
    Fund-holdings files become the ``funds.*`` allocation series (computed with the market caps of
    the stock panel, so import the panel first or in the same call); ``coverage`` says whether they
    hold the top-10 or the full holdings, and is stored with the values (``source``).
    Raises CsvImportError (nothing written) when any file is invalid or unreadable.
    """
    today = today or dt.date.today()
    work = Staging()
    try:
        parsed: list[tuple[Path, str, str | pd.DataFrame]] = []
        for path in paths:
            with opener(path) as raw:
                kind, rows = _validate(Path(path), raw, today, work, chunk_rows)
            parsed.append((Path(path), kind, rows))
        parsed.sort(key=lambda p: p[1] == "holdings")  # the panel's caps first
        return _write(db, parsed, today, coverage, work, chunk_rows, clock)
    finally:
        work.close()


def _write(db: Database, parsed: list[tuple[Path, str, str | pd.DataFrame]], today: dt.date,
           coverage: str, work: Staging, chunk_rows: int, clock: Callable[[], str]) -> dict[str, int]:
    """Write the validated files in one transaction (``clock()``: ISO UTC now, for the run's
    record and the rows' ``fetched_at``); return rows changed per file."""
    started = clock()
    changed: dict[str, int] = {}
    with observations.large_write(db), db.atomic():
        for path, kind, rows in parsed:
            label = f"csv:{printable(path.name)}"
            if isinstance(rows, pd.DataFrame):  # kind "holdings": the validated frame
                try:
                    changed[str(path)] = holdings.import_frame(db, rows, coverage, label)
                except holdings.HoldingsError as exc:
                    raise CsvImportError(f"{_name(path)}: {shown(exc, 300)}") from None
            elif kind == "long":
                n = 0
                for batch in work.rows(rows, ("series", "date", "value", "available_at", "explicit"),
                                       chunk_rows):
                    # a revision is known from the import day, unless the file says when
                    for explicit in (0, 1):
                        part = [(s, d, v, a, label) for s, d, v, a, e in batch if e == explicit]
                        if part:
                            n += observations.upsert(
                                db, part, revised_from=None if explicit else today.isoformat(),
                                now=started)
                changed[str(path)] = n
            else:
                n = 0
                for batch in work.rows(rows, ("date", "code", "close", "total_mv", "is_st", "date"),
                                       chunk_rows):
                    n += stock_panel.upsert(db, [(*r, label) for r in batch])
                changed[str(path)] = n
        if any(changed.values()):
            runs.record(db, "import", today.isoformat(), started, clock(), "ok",
                        detail=dumps({"files": {printable(k): v for k, v in changed.items()}}))
    return changed
