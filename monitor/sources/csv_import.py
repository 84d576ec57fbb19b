"""CSV import: the canonical long format and the stock panel (DESIGN.md).

Long format: ``date,series,value`` (optional ``available_at``), values in canonical units.
Stock panel: ``date,code,close,total_mv,is_st`` (close in yuan, total_mv in yuan, is_st 0/1).
Product NAVs: ``date,product,nav`` (optional ``available_at``): the PM's products (issue 16).

Vendor exports (CSIndex, Wind, ChinaBond) come in through a mapping file
(``monitor.sources.mapping``), which turns their rows into the long format.

A file is validated completely before anything is written; the whole import is one transaction,
so a bad file leaves the database unchanged. Errors are one line naming file, line and column.
Rows dated on a day that is not an XSHG trading day (a weekend, an exchange holiday) are skipped,
and the import says so (``FileImport.skipped``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import warnings
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sqlite_utils import Database

from monitor.calendar import CALENDAR_START, TradingCalendar
from monitor.config import NAV_LAG_DAYS
from monitor.sources import holdings
from monitor.sources import mapping as vendor
from signals import series as canonical
from storage import observations, products, runs, stock_panel
from storage.staging import Staging
from storage.util import dumps, utc_now

LONG_COLUMNS = ("date", "series", "value")
PANEL_COLUMNS = ("date", "code", "close", "total_mv", "is_st")
HOLDINGS_COLUMNS = ("report_date", "fund_code", "fund_name", "stock_code", "holding_value")
NAV_COLUMNS = ("date", "product", "nav")
FUNDS_LAG_DAYS = 30  # quarterly fund data: usable this many calendar days after the report date
CHUNK_ROWS = 100_000  # rows validated at a time: the memory an import needs does not grow with the file
EXCERPT_CHARS = 80  # at most this much of a file's content is quoted in an error
SHOWN_DATES = 5  # at most this many skipped dates are named in a warning


class CsvImportError(ValueError):
    """A CSV file cannot be imported; the message names the file and the offending place."""


@dataclass
class FileImport:
    """What the import did with one file (counts are rows of the file unless said otherwise)."""

    path: str
    kind: str = ""  # long | panel | holdings | mapped | navs
    mapping: str | None = None  # the mapping file's name (kind "mapped")
    read: int = 0  # data rows in the file
    values: int = 0  # values to store: rows (long, panel), mapped cells (mapped), positions (holdings)
    written: int = 0  # of ``values``: inserted, or replacing a different stored value
    unchanged: int = 0  # of ``values``: already stored with the same value
    merged: int = 0  # holdings rows added to another row of the same report, fund and stock
    removed: int = 0  # holdings positions stored before and absent from a re-imported fund report
    derived: int = 0  # funds.* observations computed from holdings and written
    reports: int = 0  # holdings: fund report rows (name, type, holding count) written
    skipped: dict[str, int] = field(default_factory=dict)  # non-trading day (ISO) -> rows skipped
    footer: int = 0  # mapped: rows ignored as vendor footers or blank lines
    empty: int = 0  # mapped: cells without a value ("", "--", or a 0 where 0 means unpublished)
    unmapped: dict[str, int] = field(default_factory=dict)  # mapped: code -> rows not in the mapping
    series: set[str] = field(default_factory=set)  # observation series the file holds
    panel: bool = False  # the file holds stock_panel rows
    products: set[str] = field(default_factory=set)  # navs: the products the file holds
    nav_lag_days: int | None = None  # navs: the lag that gave rows without available_at theirs

    @property
    def skipped_rows(self) -> int:
        return sum(self.skipped.values())

    @property
    def changed(self) -> int:
        """Rows the import changed: values written, holdings removed, fund report rows written,
        ``funds.*`` derived."""
        return self.written + self.removed + self.reports + self.derived

    def skipped_note(self) -> str | None:
        """One line naming the file, the count and the first few dates skipped, or None."""
        if not self.skipped:
            return None
        days = sorted(self.skipped)
        shown_days = ", ".join(days[:SHOWN_DATES]) + (", ..." if len(days) > SHOWN_DATES else "")
        return (f"{printable(self.path)}: skipped {self.skipped_rows:,} row(s) dated on "
                f"{len(days)} day(s) that are not XSHG trading days (weekend or exchange holiday): "
                f"{shown_days}")

    def summary(self) -> str:
        """One line: rows read, values written and unchanged, and whatever was skipped."""
        name = printable(self.path) + (f" (mapping {printable(self.mapping)})" if self.mapping else "")
        if self.kind == "mapped":
            text = (f"{name}: {self.read:,} rows read, {self.values:,} values of "
                    f"{len(self.series)} series: {self.written:,} written, "
                    f"{self.unchanged:,} unchanged")
        elif self.kind == "holdings":
            text = (f"{name}: {self.read:,} rows read, {self.values:,} holdings "
                    f"(fund, stock, report date): {self.written:,} written, "
                    f"{self.unchanged:,} unchanged")
            if self.merged:
                text += f", {self.merged:,} duplicate rows summed into them"
            if self.removed:
                text += f", {self.removed:,} older holdings removed"
            text += f"; {self.derived:,} funds.* values written"
        elif self.kind == "navs":
            text = (f"{name}: {self.read:,} rows read, {self.values:,} NAVs of "
                    f"{len(self.products)} product(s): {self.written:,} written, "
                    f"{self.unchanged:,} unchanged")
            if self.nav_lag_days is not None:
                text += (f"; available_at = NAV date + {self.nav_lag_days} XSHG trading day(s) "
                         "(or the import day if earlier) where the file gives none")
        else:
            text = (f"{name}: {self.read:,} rows read, {self.written:,} written, "
                    f"{self.unchanged:,} unchanged")
        if self.skipped:
            text += f", {self.skipped_rows:,} skipped (non-trading days)"
        if self.unmapped:
            codes = sorted(self.unmapped)
            listed = ", ".join(codes[:SHOWN_DATES]) + (", ..." if len(codes) > SHOWN_DATES else "")
            text += (f", {sum(self.unmapped.values()):,} rows of {len(codes)} code(s) not in the "
                     f"mapping ignored ({printable(listed)})")
        if self.empty:
            text += f", {self.empty:,} empty cells"
        if self.footer:
            text += f", {self.footer:,} footer/blank rows ignored"
        return text


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


def _encoding(path: Path, raw: BinaryIO, gz: bool) -> str:
    """The codec of encoding "auto" (``mapping.detect_encoding`` of the file's start); ``raw``
    is rewound."""
    try:
        start = raw.tell()
        sample = (gzip.GzipFile(fileobj=raw) if gz else raw).read(vendor.AUTO_SAMPLE_BYTES)
        raw.seek(start)
    except (OSError, EOFError) as exc:
        raise CsvImportError(f"{_name(path)}: not a readable CSV file: {shown(exc, 160)}") from None
    return vendor.detect_encoding(sample)


def _chunks(path: Path, raw: BinaryIO, chunk_rows: int, layout: vendor.Mapping | None = None
            ) -> Generator[pd.DataFrame, None, None]:
    """Yield the file's rows as string frames of at most ``chunk_rows`` rows (the index counts
    rows from 0 across chunks); the first frame may be empty (a header without rows). A
    ``layout`` (a mapping) gives the encoding, the delimiter and the lines around the header;
    otherwise the file is UTF-8 and comma-separated. Any failure to read (truncated or corrupt
    gzip, bad UTF-8, a CSV syntax error, an I/O error) is a CsvImportError naming the file."""
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    gz = path.name.endswith(".gz") or head == b"\x1f\x8b"
    options: dict = {"encoding": "utf-8"}
    if layout is not None:
        encoding = _encoding(path, raw, gz) if layout.encoding == "auto" else layout.encoding
        before, after = layout.skip_rows, layout.skip_after_header
        options = {"encoding": encoding, "sep": layout.delimiter, "skip_blank_lines": False,
                   "skiprows": [*range(before), *range(before + 1, before + 1 + after)]}
    try:
        # index_col=False: a row with more fields than the header is never taken as an index;
        # pandas then warns that it would drop the extra fields - that is an error here
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(raw, dtype=str, keep_default_na=False, skipinitialspace=True,
                                 compression="gzip" if gz else None, index_col=False,
                                 chunksize=chunk_rows, **options)
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
    except UnicodeDecodeError as exc:
        hint = (f"set encoding in the mapping {layout.name} (auto, utf-8, gbk)" if layout else
                "save it as UTF-8, or import it with --mapping and an encoding")
        raise CsvImportError(f"{_name(path)}: not a readable CSV file: {shown(exc, 120)}: "
                             f"{hint}") from None
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
    if frame[column].dtype.kind == "f":  # already numbers (a mapped file, checked there)
        return frame[column]
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
    if cols[:3] == NAV_COLUMNS and set(cols) <= {*NAV_COLUMNS, "available_at"} and len(cols) <= 4:
        return "navs"
    raise CsvImportError(
        f"{_name(path)}: unrecognised header {shown_repr(','.join(cols))}: expected "
        f"{','.join(LONG_COLUMNS)}[,available_at], {','.join(PANEL_COLUMNS)}, "
        f"{','.join(HOLDINGS_COLUMNS)}[,fund_type] or {','.join(NAV_COLUMNS)}[,available_at]")


def _trading_only(frame: pd.DataFrame, dates: pd.Series, calendar: TradingCalendar | None,
                  result: FileImport) -> tuple[pd.DataFrame, pd.Series]:
    """Drop the rows of ``frame`` whose day (``dates``) is not a trading day of ``calendar``
    (before the calendar's start, ``CALENDAR_START``: a weekend), counting them by day in
    ``result.skipped``; return the rest (``calendar`` None: keep every row)."""
    if calendar is None or frame.empty:
        return frame, dates
    off = ~_open_days(dates, calendar)
    if not off.any():
        return frame, dates
    days_off = dates[off].dt.strftime("%Y-%m-%d")
    if "_line" in frame.columns:  # a mapped file: count its rows, not the values they hold
        days_off = days_off.groupby(frame.loc[off, "_line"].to_numpy()).first()
    for day, n in days_off.value_counts().items():
        result.skipped[str(day)] = result.skipped.get(str(day), 0) + int(n)
    return frame[~off], dates[~off]


def _open_days(dates: pd.Series, calendar: TradingCalendar) -> pd.Series:
    """Whether each day of ``dates`` (Timestamps) is a trading day of ``calendar``; before the
    calendar's start (``CALENDAR_START``), whether it is a weekday."""
    days = pd.DatetimeIndex(pd.unique(dates))
    start = pd.Timestamp(CALENDAR_START)  # before it the calendar knows no holidays: weekends only
    closed = [d for d in days if (d.weekday() >= 5 if d < start
                                  else not calendar.is_trading_day(d.date()))]
    return ~dates.isin(closed)


def _where(frame: pd.DataFrame, i: int) -> str:
    """The line of row ``i`` (and, for a mapped file, the vendor column it came from)."""
    if "_line" in frame.columns:
        return f"line {int(frame.at[i, '_line'])}, column {frame.at[i, '_column']}"
    return f"line {_line(i)}"


def _stated_available(path: Path, frame: pd.DataFrame, dates: pd.Series, default: pd.Series,
                      today: dt.date) -> tuple[pd.Series, pd.Series]:
    """Return (each row's available_at: the file's ``available_at`` where the row gives one,
    else ``default``, as Timestamps; whether the row gave it, bool). A stated day that is no
    YYYY-MM-DD day, more than ten years ahead or before the row's date (``dates``) is a
    CsvImportError naming the line."""
    if "available_at" not in frame.columns:
        return default, pd.Series(False, index=frame.index)
    given = frame["available_at"].str.strip() != ""
    if not given.any():
        return default, given
    stated = _stamps(path, frame.assign(available_at=frame["available_at"].where(
        given, frame["date"])), "available_at", today + dt.timedelta(days=3660))
    early = stated < dates
    if early.any():
        i = early.idxmax()
        raise CsvImportError(f"{_name(path)}: {_where(frame, i)}, column available_at: "
                             f"{stated[i].date()} is before the date {dates[i].date()}")
    return stated.where(given, default), given


def parse_long(path: Path, chunks: Iterator[pd.DataFrame], today: dt.date, work: Staging,
               calendar: TradingCalendar | None = None, result: FileImport | None = None) -> str:
    """Validate a long-format file chunk by chunk into a table of ``work``; return its name.

    The table holds (series, date, value, available_at, explicit, line): values in canonical
    units, ISO days, ``explicit`` 1 where the file gave the row's available_at. Rows dated on a
    day that is not a trading day of ``calendar`` are skipped (counted in ``result``). A chunk
    may carry ``_line`` and ``_column`` (a mapped file): its rows' file lines and vendor columns.
    """
    result = result if result is not None else FileImport(str(path))
    table = work.table(("series", "date", "value", "available_at", "explicit"), ("series", "date"))
    kinds: dict[str, canonical.SeriesKind] = {}
    for frame in chunks:
        dates = _stamps(path, frame, "date", today)
        frame, dates = _trading_only(frame, dates, calendar, result)
        if frame.empty:
            continue
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
                f"{_name(path)}: {_where(frame, i)}, series {name}: value {values[i]:g} is outside "
                f"the plausible range {kind.low:g}..{kind.high:g} {kind.unit}"
                f"{canonical.unit_hint(kind, float(values[names == name].median()))}")
        # the default (a funds.* value: its publication lag) for every row the file dates not
        lagged = names.map({n: k.lagged for n, k in kinds.items()}).to_numpy(dtype=bool)
        available = dates + pd.to_timedelta(np.where(lagged, FUNDS_LAG_DAYS, 0), unit="D")
        available, given = _stated_available(path, frame, dates, available, today)
        explicit = given.to_numpy(dtype=int)
        lines = frame["_line"] if "_line" in frame.columns else frame.index.to_numpy() + 2
        rows = list(zip(names.tolist(), _iso(dates), values.tolist(), _iso(available),
                        explicit.tolist(), np.asarray(lines, dtype=int).tolist(), strict=True))
        work.append(table, rows)
        result.values += len(rows)
        result.series.update(names.unique().tolist())
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


def parse_panel(path: Path, chunks: Iterator[pd.DataFrame], today: dt.date, work: Staging,
                calendar: TradingCalendar | None = None, result: FileImport | None = None) -> str:
    """Validate a stock-panel file chunk by chunk into a table of ``work``; return its name.

    The table holds (date, code, close, total_mv, is_st, line): ISO days, yuan, 0/1. Rows dated
    on a day that is not a trading day of ``calendar`` are skipped (counted in ``result``).
    """
    result = result if result is not None else FileImport(str(path))
    table = work.table(("date", "code", "close", "total_mv", "is_st"), ("date", "code"))
    for frame in chunks:
        stamps = _stamps(path, frame, "date", today)
        frame, stamps = _trading_only(frame, stamps, calendar, result)
        if frame.empty:
            continue
        dates = stamps.dt.date
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
        result.values += len(rows)
        result.panel = True
    dup = work.first_duplicate(table)
    if dup:
        (day, code), line = dup
        raise CsvImportError(f"{_name(path)}: line {line}: duplicate date {day} for code {code}")
    median = work.median(table, "total_mv")
    if median is not None and median < 1e7:
        raise CsvImportError(f"{_name(path)}: column total_mv: median {median:g} is too small "
                             "for yuan; convert 1e8 yuan (亿元) to yuan")
    return table


def nav_available(dates: pd.Series, lag_days: int, calendar: TradingCalendar, today: dt.date
                  ) -> pd.Series:
    """Return, per NAV date of ``dates`` (Timestamps), the day the NAV becomes known: the
    ``lag_days``-th XSHG trading day after it (a weekday before ``CALENDAR_START``), or ``today``
    (the import day) when that is earlier, since a NAV in hand is known. Timestamps."""
    out = {}
    for stamp in pd.unique(dates):
        day = pd.Timestamp(stamp).date()
        known = day
        if lag_days and day < CALENDAR_START:
            known = np.busday_offset(np.datetime64(day, "D"), lag_days, roll="backward").item()
        elif lag_days:
            for _ in range(lag_days):
                known = calendar.next(known)
        out[stamp] = pd.Timestamp(min(known, today))
    return dates.map(out)


def parse_navs(path: Path, chunks: Iterator[pd.DataFrame], today: dt.date, work: Staging,
               calendar: TradingCalendar | None = None, result: FileImport | None = None,
               lag_days: int = NAV_LAG_DAYS) -> str:
    """Validate a product-NAV file (``date,product,nav[,available_at]``) chunk by chunk into a
    table of ``work``; return its name.

    The table holds (product, date, nav, available_at, explicit, line): ISO days, ``explicit`` 1
    where the file gave the row's available_at; otherwise it is ``nav_available`` (``lag_days``
    XSHG trading days of ``calendar`` after the NAV date). NAV dates are the vendor's and are kept
    whether or not they are trading days. Every problem is a CsvImportError naming the line: a
    date that is no YYYY-MM-DD day or is in the future, an empty product, a NAV that is not a
    positive number, an available_at before the date, the same product and date twice.
    """
    result = result if result is not None else FileImport(str(path))
    calendar = calendar or TradingCalendar()
    table = work.table(("product", "date", "nav", "available_at", "explicit"), ("product", "date"))
    for frame in chunks:
        dates = _stamps(path, frame, "date", today)
        names = frame["product"].str.strip()
        empty = names == ""
        if empty.any():
            i = empty.idxmax()
            raise CsvImportError(f"{_name(path)}: line {_line(i)}, column product: empty product "
                                 "name")
        unprintable = ~names.map(str.isprintable)
        if unprintable.any():
            i = unprintable.idxmax()
            raise CsvImportError(f"{_name(path)}: line {_line(i)}, column product: "
                                 f"{shown_repr(names[i])} has control characters")
        navs = _numbers(path, frame, "nav")
        if (navs <= 0).any():
            i = (navs <= 0).idxmax()
            raise CsvImportError(f"{_name(path)}: line {_line(i)}, column nav: {navs[i]:g} is not a "
                                 "positive NAV")
        available, given = _stated_available(
            path, frame, dates, nav_available(dates, lag_days, calendar, today), today)
        rows = list(zip(names.tolist(), _iso(dates), navs.tolist(), _iso(available),
                        given.to_numpy(dtype=int).tolist(),
                        (frame.index.to_numpy() + 2).astype(int).tolist(), strict=True))
        work.append(table, rows)
        result.values += len(rows)
        result.products.update(names.unique().tolist())
        if not given.all():
            result.nav_lag_days = lag_days
    dup = work.first_duplicate(table)
    if dup:
        (name, day), line = dup
        raise CsvImportError(f"{_name(path)}: line {line}: duplicate date {day} for product "
                             f"{shown_repr(name)}")
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


def _mapped_header(path: Path, layout: vendor.Mapping, header: pd.DataFrame) -> None:
    """Check that the header of ``path`` has every column ``layout`` reads."""
    header.columns = [str(c).strip() for c in header.columns]
    present = set(header.columns)
    for col in layout.columns():
        if col not in present:
            raise CsvImportError(
                f"{_name(path)}: column {shown_repr(col)} (mapping {printable(layout.name)}) is not "
                f"in the header {shown_repr(','.join(header.columns), 160)}; check skip_rows, "
                "delimiter and encoding")


def _validate(path: Path, raw: BinaryIO, today: dt.date, work: Staging, chunk_rows: int,
              layout: vendor.Mapping | None, calendar: TradingCalendar | None, result: FileImport,
              nav_lag_days: int = NAV_LAG_DAYS) -> tuple[str, str | pd.DataFrame]:
    """Read and validate one file; return (kind, the name of a table of ``work``, or the holdings
    frame for kind ``holdings``). ``layout``: the mapping the file is read with (None: one of
    the canonical formats, recognised by its header)."""
    chunks = _chunks(path, raw, chunk_rows, layout)
    try:
        return _validate_chunks(path, chunks, today, work, layout, calendar, result, nav_lag_days)
    finally:
        chunks.close()  # while the file is open: an abandoned reader is closed here, not by gc


def _validate_chunks(path: Path, chunks: Iterator[pd.DataFrame], today: dt.date, work: Staging,
                     layout: vendor.Mapping | None, calendar: TradingCalendar | None,
                     result: FileImport, nav_lag_days: int = NAV_LAG_DAYS
                     ) -> tuple[str, str | pd.DataFrame]:
    header = next(chunks)
    if layout is not None:
        _mapped_header(path, layout, header)
        kind = "mapped"
    else:
        kind = _header(path, header)
    result.kind = kind
    result.mapping = layout.name if layout is not None else None

    def rows() -> Iterator[pd.DataFrame]:
        for frame in chunks:
            frame.columns = list(header.columns)
            if not frame.empty:
                result.read += len(frame)
                yield frame.fillna("") if layout is not None else frame

    if kind == "holdings":
        frames = list(rows())  # one quarter's holdings: read whole (bounded by the fund count)
        if not frames:
            raise CsvImportError(f"{_name(path)}: no data rows")
        return kind, parse_holdings(path, pd.concat(frames), today)
    if kind == "mapped":
        assert layout is not None
        tally = vendor.Tally()
        try:
            open_day = None if calendar is None else (lambda d: _open_days(d, calendar).to_numpy())
            long_rows = vendor.chunks(layout, Path(_name(path)), rows(), today, tally,
                                      CsvImportError, open_day)
            table = parse_long(path, long_rows, today, work, calendar, result)
        except KeyError as exc:  # a footer row with fewer fields is read, a column is not
            raise CsvImportError(f"{_name(path)}: column {exc} missing") from None
        result.footer, result.empty, result.unmapped = tally.footer, tally.empty, tally.unmapped
        if not result.read:
            raise CsvImportError(f"{_name(path)}: no data rows")
        if not result.values and not result.skipped:
            raise CsvImportError(
                f"{_name(path)}: no value for any series of mapping {printable(layout.name)} "
                f"(codes found: {shown(', '.join(sorted(tally.unmapped)) or 'none')})")
        return "long", table
    if kind == "navs":
        table = parse_navs(path, rows(), today, work, calendar, result, nav_lag_days)
    else:
        parse = parse_long if kind == "long" else parse_panel
        table = parse(path, rows(), today, work, calendar, result)
    if not result.read:
        raise CsvImportError(f"{_name(path)}: no data rows")
    return kind, table


def import_report(db: Database, paths: list[Path], today: dt.date | None = None,
                  coverage: str = "top10", *, mapping: vendor.Mapping | None = None,
                  calendar: TradingCalendar | None = None, chunk_rows: int = CHUNK_ROWS,
                  opener: Callable[[Path], BinaryIO] = open_file,
                  clock: Callable[[], str] = utc_now,
                  nav_lag_days: int = NAV_LAG_DAYS) -> list[FileImport]:
    """Validate every file, then write them all in one transaction; return what was done with
    each file (``FileImport``: rows read, values written and unchanged, rows skipped).

    Files are read ``chunk_rows`` rows at a time (opened with ``opener``); the validated rows wait
    in a scratch SQLite file, so memory stays bounded whatever the file size. A value that
    changes a stored one takes ``today`` (the import day) as its available_at, unless the file
    has an ``available_at`` for that row; the value it replaces stays visible to the days before.
    With ``mapping`` (``monitor.sources.mapping.load``), every file is a vendor export read
    through it. Rows of daily files (long, panel, mapped) dated on a day that is not a trading
    day of ``calendar`` (default: the XSHG calendar) are skipped and counted.
    Fund-holdings files become the ``funds.*`` allocation series (computed with the market caps of
    the stock panel, so import the panel first or in the same call); ``coverage`` says whether they
    hold the top-10 or the full holdings, and is stored with the values (``source``).
    Product-NAV files (``date,product,nav``) go to ``product_navs``; a row without available_at
    becomes known ``nav_lag_days`` XSHG trading days after its date (``exposure.nav_lag_days``)
    or on ``today`` if earlier; a changed NAV is known from ``today`` at the earliest.
    Raises CsvImportError (nothing written) when any file is invalid or unreadable.
    """
    today = today or dt.date.today()
    calendar = calendar or TradingCalendar()
    work = Staging()
    try:
        parsed: list[tuple[Path, str, str | pd.DataFrame, FileImport]] = []
        for path in paths:
            result = FileImport(str(path))
            with opener(path) as raw:
                kind, rows = _validate(Path(path), raw, today, work, chunk_rows, mapping, calendar,
                                       result, nav_lag_days)
            parsed.append((Path(path), kind, rows, result))
        parsed.sort(key=lambda p: p[1] == "holdings")  # the panel's caps first
        _write(db, parsed, today, coverage, work, chunk_rows, clock)
        return [p[3] for p in sorted(parsed, key=lambda p: paths.index(p[0]))]
    finally:
        work.close()


def import_files(db: Database, paths: list[Path], today: dt.date | None = None,
                 coverage: str = "top10", *, chunk_rows: int = CHUNK_ROWS,
                 opener: Callable[[Path], BinaryIO] = open_file,
                 clock: Callable[[], str] = utc_now, mapping: vendor.Mapping | None = None,
                 calendar: TradingCalendar | None = None) -> dict[str, int]:
    """``import_report``, returning only the values written per file (keyed by ``str(path)``):
    for a holdings file, the holdings written plus the ``funds.*`` values derived from them."""
    done = import_report(db, paths, today, coverage, mapping=mapping, calendar=calendar,
                         chunk_rows=chunk_rows, opener=opener, clock=clock)
    return {r.path: r.changed for r in done}


def _write(db: Database, parsed: list[tuple[Path, str, str | pd.DataFrame, FileImport]],
           today: dt.date, coverage: str, work: Staging, chunk_rows: int,
           clock: Callable[[], str]) -> None:
    """Write the validated files in one transaction (``clock()``: ISO UTC now, for the run's
    record and the rows' ``fetched_at``), counting in each file's ``FileImport``."""
    started = clock()
    with observations.large_write(db), db.atomic():
        for path, kind, rows, result in parsed:
            label = f"csv:{printable(path.name)}"
            if isinstance(rows, pd.DataFrame):  # kind "holdings": the validated frame
                try:
                    done = holdings.import_frame(db, rows, coverage, label, today.isoformat())
                except holdings.HoldingsError as exc:
                    raise CsvImportError(f"{_name(path)}: {shown(exc, 300)}") from None
                result.values, result.written, result.removed = (done.positions, done.written,
                                                                 done.removed)
                result.merged, result.derived = len(rows) - done.positions, done.derived
                result.reports = done.reports
                result.unchanged = done.positions - done.written
                result.series.update(done.series)
            elif kind in ("long", "navs"):
                store, key, value = ((observations.upsert, "series", "value") if kind == "long"
                                     else (products.upsert, "product", "nav"))
                n = 0
                for batch in work.rows(rows, (key, "date", value, "available_at", "explicit"),
                                       chunk_rows):
                    # a revision is known from the import day, unless the file says when
                    for explicit in (0, 1):
                        part = [(k, d, v, a, label) for k, d, v, a, e in batch if e == explicit]
                        if part:
                            n += store(db, part, revised_from=None if explicit else today.isoformat(),
                                       now=started)
                result.written, result.unchanged = n, result.values - n
            else:
                n = 0
                for batch in work.rows(rows, ("date", "code", "close", "total_mv", "is_st", "date"),
                                       chunk_rows):
                    n += stock_panel.upsert(db, [(*r, label) for r in batch])
                result.written, result.unchanged = n, result.values - n
        changed = {printable(r.path): r.changed for *_, r in parsed}
        if any(changed.values()):
            runs.record(db, "import", today.isoformat(), started, clock(), "ok",
                        detail=dumps({"files": changed}))


def nav_coverage_rows(db: Database, done: list[FileImport], declared: Collection[str] = ()
                      ) -> list[dict]:
    """Return the stored NAV coverage of every product the files of ``done`` held: one row per
    product (``product``, ``first`` and ``last`` NAV date, ``navs`` stored, ``known_through``: the
    latest available_at, ``declared``: yes when in ``declared`` (the config's products), else no),
    sorted by product."""
    names = sorted(set().union(*(r.products for r in done))) if done else []
    return [{"product": p, "first": lo, "last": hi, "navs": f"{n:,}", "known_through": known,
             "declared": "yes" if p in declared else "no (no benchmark)"}
            for p, lo, hi, n, known in products.coverage(db, names)]


def coverage_rows(db: Database, done: list[FileImport]) -> list[dict]:
    """Return the stored coverage of every series the files of ``done`` held: one row per
    series (``series``, ``first`` and ``last`` day, ``rows`` stored), sorted by series, then one
    row ``stock_panel`` (rows and stocks) when a file held panel rows."""
    names = sorted(set().union(*(r.series for r in done))) if done else []
    rows = [{"series": s, "first": lo or "-", "last": hi or "-", "rows": f"{n:,}"}
            for s, lo, hi, n in observations.coverage(db, names)]
    if any(r.panel for r in done):
        lo, hi, n, stocks = stock_panel.coverage(db)
        rows.append({"series": f"stock_panel ({stocks:,} stocks)", "first": lo or "-",
                     "last": hi or "-", "rows": f"{n:,}"})
    return rows
