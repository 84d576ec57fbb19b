"""CSV import: the canonical long format and the stock panel (DESIGN.md).

Long format: ``date,series,value`` (optional ``available_at``), values in canonical units.
Stock panel: ``date,code,close,total_mv,is_st`` (close in yuan, total_mv in yuan, is_st 0/1).

A file is validated completely before anything is written; the whole import is one transaction,
so a bad file leaves the database unchanged. Errors are one line naming file, line and column.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sqlite_utils import Database

from monitor import holdings
from monitor import series as canonical
from storage import observations, runs
from storage.util import dumps, utc_now

LONG_COLUMNS = ("date", "series", "value")
PANEL_COLUMNS = ("date", "code", "close", "total_mv", "is_st")
HOLDINGS_COLUMNS = ("report_date", "fund_code", "fund_name", "stock_code", "holding_value")
FUNDS_LAG_DAYS = 30  # quarterly fund data: usable this many calendar days after the report date


class CsvImportError(ValueError):
    """A CSV file cannot be imported; the message names the file and the offending place."""


def _read(path: Path) -> pd.DataFrame:
    try:
        # index_col=False: a row with more fields than the header is never taken as an index;
        # pandas then warns that it would drop the extra fields - that is an error here
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                               compression="infer", index_col=False)
    except pd.errors.ParserWarning:
        raise CsvImportError(f"{path}: a row has more fields than the header") from None
    except FileNotFoundError:
        raise CsvImportError(f"{path}: no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CsvImportError(f"{path}: not a readable CSV file: {first}") from None


def _line(i: int) -> int:
    return int(i) + 2  # header is line 1


def _dates(path: Path, frame: pd.DataFrame, column: str, today: dt.date) -> pd.Series:
    parsed = pd.to_datetime(frame[column], format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        i = bad.idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}, column {column}: "
                             f"{frame.at[i, column]!r} is not a YYYY-MM-DD date")
    future = parsed > pd.Timestamp(today)
    if future.any():
        i = future.idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}, column {column}: "
                             f"{frame.at[i, column]} is in the future")
    return parsed.dt.date


def _numbers(path: Path, frame: pd.DataFrame, column: str, allow_empty: bool = False) -> pd.Series:
    raw = frame[column].str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.fillna(0.0))
    if allow_empty:
        bad &= raw != ""
    if bad.any():
        i = bad.idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}, column {column}: "
                             f"{frame.at[i, column]!r} is not a number")
    return values.astype(float)


def _header(path: Path, frame: pd.DataFrame) -> str:
    cols = tuple(c.strip() for c in frame.columns)
    frame.columns = list(cols)
    if cols[:3] == LONG_COLUMNS and set(cols) <= {*LONG_COLUMNS, "available_at"}:
        return "long"
    if cols == PANEL_COLUMNS:
        return "panel"
    if cols[:5] == HOLDINGS_COLUMNS and set(cols) <= {*HOLDINGS_COLUMNS, "fund_type"}:
        return "holdings"
    raise CsvImportError(
        f"{path}: unrecognised header {','.join(cols)!r}: expected "
        f"{','.join(LONG_COLUMNS)}[,available_at], {','.join(PANEL_COLUMNS)} or "
        f"{','.join(HOLDINGS_COLUMNS)}[,fund_type]")


def parse_long(path: Path, frame: pd.DataFrame, today: dt.date) -> list[observations.ObservationRow]:
    """Validate a long-format frame; return observation rows (canonical units)."""
    dates = _dates(path, frame, "date", today)
    values = _numbers(path, frame, "value")
    names = frame["series"].str.strip()
    for name in names.unique():
        if canonical.kind_of(name) is None:
            i = names.eq(name).idxmax()
            raise CsvImportError(f"{path}: line {_line(i)}, column series: {name!r} is not a "
                                 "canonical series name (see README: bring your own data)")
    dup = pd.DataFrame({"s": names, "d": dates}).duplicated(keep=False)
    if dup.any():
        i = dup.idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}: duplicate date {dates[i]} for series "
                             f"{names[i]}")
    for name, vals in values.groupby(names):
        kind = canonical.kind_of(name)
        median = float(vals.median())
        outside = (vals < kind.low) | (vals > kind.high)
        if outside.any():
            i = outside.idxmax()
            raise CsvImportError(
                f"{path}: line {_line(i)}, series {name}: value {vals[i]:g} is outside the "
                f"plausible range {kind.low:g}..{kind.high:g} {kind.unit}"
                f"{canonical.unit_hint(kind, median)}")
        if kind.unit == "percent" and abs(median) < 0.2:
            raise CsvImportError(f"{path}: series {name}: median {median:g} cannot be a yield in "
                                 f"percent{canonical.unit_hint(kind, median)}")
    if "available_at" in frame.columns:
        available = _dates(path, frame.assign(available_at=frame["available_at"].where(
            frame["available_at"].str.strip() != "", frame["date"])), "available_at",
            today + dt.timedelta(days=3660))
        early = pd.Series([a < d for a, d in zip(available, dates, strict=True)], index=frame.index)
        if early.any():
            i = early.idxmax()
            raise CsvImportError(f"{path}: line {_line(i)}, column available_at: "
                                 f"{available[i]} is before the date {dates[i]}")
    else:
        lag = dt.timedelta(days=FUNDS_LAG_DAYS)
        available = pd.Series([d + lag if canonical.kind_of(n).lagged else d
                               for n, d in zip(names, dates, strict=True)], index=frame.index)
    label = f"csv:{path.name}"
    return [(n, d.isoformat(), float(v), a.isoformat(), label)
            for n, d, v, a in zip(names, dates, values, available, strict=True)]


def parse_panel(path: Path, frame: pd.DataFrame, today: dt.date) -> list[tuple]:
    """Validate a stock-panel frame; return rows (date, code, close, total_mv, is_st, ...)."""
    dates = _dates(path, frame, "date", today)
    codes = frame["code"].str.strip()
    bad = ~codes.str.fullmatch(r"[0-9]{6}")
    if bad.any():
        i = bad.idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}, column code: {codes[i]!r} is not a "
                             "6-digit stock code")
    close = _numbers(path, frame, "close", allow_empty=True)
    total_mv = _numbers(path, frame, "total_mv", allow_empty=True)
    is_st = _numbers(path, frame, "is_st")
    if (~is_st.isin([0.0, 1.0])).any():
        i = (~is_st.isin([0.0, 1.0])).idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}, column is_st: must be 0 or 1")
    if total_mv.median() < 1e7:
        raise CsvImportError(f"{path}: column total_mv: median {total_mv.median():g} is too small "
                             "for yuan; convert 1e8 yuan (亿元) to yuan")
    dup = pd.DataFrame({"c": codes, "d": dates}).duplicated(keep=False)
    if dup.any():
        i = dup.idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}: duplicate date {dates[i]} for code "
                             f"{codes[i]}")
    label = f"csv:{path.name}"
    return [(d.isoformat(), c, None if np.isnan(cl) else float(cl),
             None if np.isnan(mv) else float(mv), int(st), d.isoformat(), label)
            for d, c, cl, mv, st in zip(dates, codes, close, total_mv, is_st, strict=True)]


def parse_holdings(path: Path, frame: pd.DataFrame, today: dt.date) -> pd.DataFrame:
    """Validate a fund-holdings frame; return it typed (report_date as Timestamp, values in yuan)."""
    dates = _dates(path, frame, "report_date", today)
    value = _numbers(path, frame, "holding_value")
    if (value < 0).any():
        i = (value < 0).idxmax()
        raise CsvImportError(f"{path}: line {_line(i)}, column holding_value: negative value")
    for col in ("fund_code", "stock_code"):
        bad = ~frame[col].str.strip().str.fullmatch(r"[0-9]{6}")
        if bad.any():
            i = bad.idxmax()
            raise CsvImportError(f"{path}: line {_line(i)}, column {col}: "
                                 f"{frame.at[i, col]!r} is not a 6-digit code")
    if value.median() < 1e4:
        raise CsvImportError(f"{path}: column holding_value: median {value.median():g} is too small "
                             "for yuan; convert 1e8 yuan (亿元) to yuan")
    out = pd.DataFrame({"report_date": pd.to_datetime(dates), "fund_code": frame["fund_code"].str.strip(),
                        "fund_name": frame["fund_name"].str.strip(),
                        "stock_code": frame["stock_code"].str.strip(), "holding_value": value})
    if "fund_type" in frame.columns:
        out["fund_type"] = frame["fund_type"].str.strip().replace("", None)
    return out


def import_files(db: Database, paths: list[Path], today: dt.date | None = None,
                 coverage: str = "top10") -> dict[str, int]:
    """Validate every file, then write them all in one transaction; return rows changed per file.

    Fund-holdings files become the ``funds.*`` allocation series (computed with the market caps of
    the stock panel, so import the panel first or in the same call); ``coverage`` says whether they
    hold the top-10 or the full holdings, and is stored with the values (``source``).
    Raises CsvImportError (nothing written) when any file is invalid.
    """
    today = today or dt.date.today()
    parsed: list[tuple[Path, str, object]] = []
    for path in paths:
        frame = _read(path)
        kind = _header(path, frame)
        if frame.empty:
            raise CsvImportError(f"{path}: no data rows")
        if kind == "long":
            rows = parse_long(path, frame, today)
        elif kind == "panel":
            rows = parse_panel(path, frame, today)
        else:
            rows = parse_holdings(path, frame, today)
        parsed.append((path, kind, rows))
    parsed.sort(key=lambda p: p[1] == "holdings")  # the panel's caps first
    started = utc_now()
    changed: dict[str, int] = {}
    with db.atomic():
        for path, kind, rows in parsed:
            if kind == "long":
                changed[str(path)] = observations.upsert(db, rows)
            elif kind == "holdings":
                try:
                    changed[str(path)] = holdings.import_frame(db, rows, coverage, f"csv:{path.name}")
                except holdings.HoldingsError as exc:
                    raise CsvImportError(f"{path}: {exc}") from None
            else:
                before = db.conn.total_changes
                db.conn.executemany(
                    "INSERT INTO stock_panel (date, code, close, total_mv, is_st, available_at, "
                    "source) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (date, code) DO UPDATE SET "
                    "close = excluded.close, total_mv = excluded.total_mv, is_st = excluded.is_st, "
                    "source = excluded.source WHERE stock_panel.close IS NOT excluded.close OR "
                    "stock_panel.total_mv IS NOT excluded.total_mv OR "
                    "stock_panel.is_st IS NOT excluded.is_st", rows)
                changed[str(path)] = db.conn.total_changes - before
        if any(changed.values()):
            runs.record(db, "import", today.isoformat(), started, utc_now(), "ok",
                        detail=dumps({"files": changed}))
    return changed
