"""Vendor export layouts for ``import-csv --mapping FILE``: a small TOML file says where the
dates and values of a CSIndex, Wind or ChinaBond export are, which canonical series each value
goes to, and the unit multiplier into the canonical unit (README "Bring your own data";
examples in ``config/mappings/``).

Two shapes of file are covered:

* **wide**: one row per day, one column per series (a ChinaBond curve table: ``y_1y, y_3y ...``);
  ``[series]`` maps a column to a series: ``y_1y = "yield.gov.1y"``;
* **tall**: one row per instrument and day, the instrument named by ``code_columns`` (a CSIndex
  or Wind index export with a ``code`` column, a ChinaBond long table keyed by curve and tenor);
  ``[series."<code>"]`` maps, for the rows of that code, a column to a series:
  ``[series."000300"] close = "index.csi300.close"``. With several code columns the code is their
  cells joined with ``|`` (``"CGB|1"``).

A mapped file becomes long-format rows (date, series, value in the canonical unit) that go
through the same validation as a long-format file (plausible units, duplicates, dates).
"""

from __future__ import annotations

import codecs
import datetime as dt
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from signals import series as canonical

DEFAULT_MISSING = ("", "--", "-", "N/A", "n/a", "NA", "#N/A", "nan", "NaN", "null")
KEYS = {"description", "encoding", "delimiter", "skip_rows", "skip_after_header", "date_column",
        "date_format", "code_columns", "ignore_prefixes", "missing_values", "zero_is_missing",
        "scale", "series"}
AUTO_SAMPLE_BYTES = 1 << 20  # encoding "auto" decides on this much of the (decompressed) file


class MappingError(ValueError):
    """A mapping file is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class Target:
    """One value of a row: the rows of ``code`` (None: every row), their ``column``, stored as
    ``series`` after multiplying by ``scale`` (into the series' canonical unit)."""

    code: str | None
    column: str
    series: str
    scale: float


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping file (``load``)."""

    path: Path
    description: str
    encoding: str  # "auto" (UTF-8 with or without BOM, else GB18030) or a Python codec name
    delimiter: str
    skip_rows: int  # lines before the header line
    skip_after_header: int  # lines between the header and the first data row
    date_column: str
    date_format: str  # strptime format of the date cells
    code_columns: tuple[str, ...]  # empty: a wide file
    ignore_prefixes: tuple[str, ...]  # a row whose date cell starts with one of these is a footer
    missing_values: frozenset[str]  # cells meaning "no value"
    zero_is_missing: frozenset[str]  # columns where 0 means "not published"
    targets: tuple[Target, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.path.name

    def columns(self) -> list[str]:
        """Every column the data file must have."""
        cols = [self.date_column, *self.code_columns]
        cols += [t.column for t in self.targets if t.column not in cols]
        return list(dict.fromkeys(cols))

    def series(self) -> list[str]:
        return sorted({t.series for t in self.targets})


def _fail(path: Path, where: str, problem: str) -> MappingError:
    return MappingError(f"{path}: {where}: {problem}")


def _text(path: Path, data: dict, key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise _fail(path, key, f"must be a string, not {value!r}")
    return value


def _count(path: Path, data: dict, key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, key, f"must be a whole number >= 0, not {value!r}")
    return value


def _strings(path: Path, data: dict, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = data.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, f"must be a list of strings, not {value!r}")
    return tuple(value)


def _series_name(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str) or canonical.kind_of(value) is None:
        raise _fail(path, where, f"{value!r} is not a canonical series name (README: bring your "
                                 "own data)")
    return value


def load(path: Path) -> Mapping:
    """Read and check the mapping file ``path``; raise MappingError (one line naming the file
    and the key) when it is unreadable or wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"{path}: no such mapping file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {str(exc).splitlines()[0]}") from None
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (known: {', '.join(sorted(KEYS))})")
    encoding = _text(path, data, "encoding", "auto")
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise _fail(path, "encoding", f"unknown encoding {encoding!r} (e.g. auto, utf-8, "
                                          "gbk)") from None
    delimiter = _text(path, data, "delimiter", ",")
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise _fail(path, "delimiter", f"must be one character, not {delimiter!r}")
    if "date_column" not in data:
        raise _fail(path, "date_column", "missing (the column holding the dates)")
    date_format = _text(path, data, "date_format", "%Y-%m-%d")
    try:
        sample = dt.date(2024, 1, 2).strftime(date_format)
        if dt.datetime.strptime(sample, date_format).date() != dt.date(2024, 1, 2):
            raise ValueError
    except ValueError:
        raise _fail(path, "date_format", f"{date_format!r} is not a strptime date format naming "
                                         "year, month and day (e.g. %Y-%m-%d, %Y%m%d)") from None
    codes = _strings(path, data, "code_columns")
    scale = data.get("scale", {})
    if not isinstance(scale, dict):
        raise _fail(path, "scale", "must be a table: column = multiplier")
    for col, factor in scale.items():
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor > 0 \
                or not np.isfinite(factor):
            raise _fail(path, f"scale.{col}", f"must be a number > 0, not {factor!r}")
    table = data.get("series")
    if not isinstance(table, dict) or not table:
        raise _fail(path, "series", "missing or empty (which column goes to which series)")
    targets: list[Target] = []
    for key, value in table.items():
        if codes:
            if not isinstance(value, dict) or not value:
                raise _fail(path, f"series.{key}", "with code_columns, each code is a table: "
                                                   "column = series")
            for col, name in value.items():
                targets.append(Target(key, col, _series_name(path, f"series.{key}.{col}", name),
                                      float(scale.get(col, 1.0))))
        else:
            if isinstance(value, dict):
                raise _fail(path, f"series.{key}", "a table needs code_columns (the column naming "
                                                   "the instrument)")
            targets.append(Target(None, key, _series_name(path, f"series.{key}", value),
                                  float(scale.get(key, 1.0))))
    for col in scale:
        if all(t.column != col for t in targets):
            raise _fail(path, f"scale.{col}", "no series reads this column")
    seen: set[tuple[str | None, str]] = set()
    for t in targets:
        if (t.code, t.series) in seen:
            where = f"series.{t.code}.{t.column}" if t.code is not None else f"series.{t.column}"
            raise _fail(path, where, f"series {t.series} is mapped twice for the same rows")
        seen.add((t.code, t.series))
    zero = _strings(path, data, "zero_is_missing")
    for col in zero:
        if all(t.column != col for t in targets):
            raise _fail(path, "zero_is_missing", f"no series reads column {col!r}")
    return Mapping(
        path=path, description=_text(path, data, "description", ""), encoding=encoding,
        delimiter=delimiter, skip_rows=_count(path, data, "skip_rows"),
        skip_after_header=_count(path, data, "skip_after_header"),
        date_column=_text(path, data, "date_column", ""), date_format=date_format,
        code_columns=codes, ignore_prefixes=_strings(path, data, "ignore_prefixes"),
        missing_values=frozenset(_strings(path, data, "missing_values", DEFAULT_MISSING)),
        zero_is_missing=frozenset(zero), targets=tuple(targets))


def detect_encoding(sample: bytes) -> str:
    """The codec of a file starting with ``sample`` for encoding "auto": ``utf-8-sig`` when it
    is UTF-8 (with or without a byte-order mark), else ``gb18030`` (GBK's superset, what Excel
    and Wind save on Chinese Windows)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "gb18030"


@dataclass
class Tally:
    """What the mapping did with a file's rows (for the import summary)."""

    footer: int = 0  # rows ignored as vendor footers or blank lines
    unmapped: dict[str, int] = field(default_factory=dict)  # code -> rows whose code is not mapped
    empty: int = 0  # mapped cells without a value (blank, "--", a 0 in a zero_is_missing column)


def _q(text: str, limit: int = 60) -> str:
    """``text`` quoted for an error: escaped like ``repr`` (no control characters), cut short."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _clean_numbers(cells: pd.Series) -> pd.Series:
    """Strip blanks and thousands separators ("1,234.5") before the numbers are parsed."""
    return cells.str.replace(",", "", regex=False).str.replace(" ", "", regex=False)


def to_long(mapping: Mapping, source: Path, frame: pd.DataFrame, first_line: int, tally: Tally,
            today: dt.date, error: type[ValueError],
            open_day: Callable[[pd.Series], np.ndarray] | None = None) -> pd.DataFrame:
    """Turn one chunk of a vendor file into long rows: columns ``date`` (ISO), ``series``,
    ``value`` (float, canonical unit: the cell times its column's ``scale``), ``_line`` (the file
    line) and ``_column`` (the vendor column). ``frame`` holds the file's cells as strings, its
    first row on file line ``first_line``. A date or a number that cannot be read, or a future
    date, raises ``error`` naming ``source``, the line and the column. ``open_day(dates)`` says
    which rows are dated on a trading day: empty cells are counted on those only (the caller
    skips the others)."""
    lines = np.arange(first_line, first_line + len(frame))
    frame = frame.reset_index(drop=True)
    dates_raw = frame[mapping.date_column].str.strip()
    blank = frame.apply(lambda c: c.str.strip() == "").all(axis=1)
    footer = blank.copy()
    for prefix in mapping.ignore_prefixes:
        footer |= dates_raw.str.startswith(prefix)
    tally.footer += int(footer.sum())
    keep = ~footer.to_numpy()
    frame, dates_raw, lines = frame[keep].reset_index(drop=True), dates_raw[keep].reset_index(
        drop=True), lines[keep]
    if frame.empty:
        return pd.DataFrame({"date": [], "series": [], "value": [], "_line": [], "_column": []})
    col = mapping.date_column
    dates = pd.to_datetime(dates_raw, format=mapping.date_format, errors="coerce")
    if dates.isna().any():
        i = int(dates.isna().to_numpy().argmax())
        raise error(f"{source}: line {lines[i]}, column {col}: {_q(dates_raw[i])} is not a date in "
                    f"the format {mapping.date_format} (mapping {mapping.name}: date_format)")
    future = dates > pd.Timestamp(today)
    if future.any():
        i = int(future.to_numpy().argmax())
        raise error(f"{source}: line {lines[i]}, column {col}: {dates[i].date()} is in the future")
    iso = dates.dt.strftime("%Y-%m-%d").to_numpy()
    day_open = np.ones(len(frame), dtype=bool) if open_day is None else open_day(dates)
    if mapping.code_columns:
        code = frame[mapping.code_columns[0]].str.strip()
        for extra in mapping.code_columns[1:]:
            code = code + "|" + frame[extra].str.strip()
        known = {t.code for t in mapping.targets}
        for c, n in code[~code.isin(known)].value_counts().items():
            tally.unmapped[str(c)] = tally.unmapped.get(str(c), 0) + int(n)
    parts = []
    for t in mapping.targets:
        rows = np.ones(len(frame), dtype=bool) if t.code is None else (code == t.code).to_numpy()
        if not rows.any():
            continue
        cells = frame[t.column].to_numpy()[rows]
        cells = pd.Series(cells).str.strip()
        missing = cells.isin(mapping.missing_values).to_numpy().copy()
        numbers = pd.to_numeric(_clean_numbers(cells).where(~missing, "0"), errors="coerce")
        bad = numbers.isna().to_numpy() | ~np.isfinite(numbers.fillna(0.0).to_numpy())
        if bad.any():
            i = int(bad.argmax())
            raise error(f"{source}: line {lines[rows][i]}, column {t.column}: {_q(cells[i])} is not "
                        "a number")
        values = numbers.to_numpy(dtype=float)
        if t.column in mapping.zero_is_missing:
            missing |= values == 0.0
        tally.empty += int((missing & day_open[rows]).sum())
        if t.scale != 1.0:  # 1482.95 x 1e8 is 148295000000, not 148295000000.00003
            values = np.array([float(f"{v * t.scale:.15g}") for v in values])
        ok = ~missing
        parts.append(pd.DataFrame({"date": iso[rows][ok], "series": t.series, "value": values[ok],
                                   "_line": lines[rows][ok], "_column": t.column}))
    if not parts:
        return pd.DataFrame({"date": [], "series": [], "value": [], "_line": [], "_column": []})
    return pd.concat(parts, ignore_index=True)


def chunks(mapping: Mapping, source: Path, reader: Iterator[pd.DataFrame], today: dt.date,
           tally: Tally, error: type[ValueError],
           open_day: Callable[[pd.Series], np.ndarray] | None = None) -> Iterator[pd.DataFrame]:
    """``to_long`` of every chunk of ``reader`` (the data rows as string frames, in file order;
    the header's columns already checked)."""
    line = mapping.skip_rows + 1 + mapping.skip_after_header + 1
    for frame in reader:
        if frame.empty:
            continue
        yield to_long(mapping, source, frame, line, tally, today, error, open_day)
        line += len(frame)
