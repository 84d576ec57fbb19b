"""The live source: AKShare (the optional extra ``pip install 'regime-monitor[live]'``).

AKShare changes its functions often, so one exact version is pinned (``AKSHARE_VERSION``, the
``live`` extra in pyproject.toml). Everything below was read from that version's installed source:

============================  ==================================  ==============================
data                          function (akshare 1.19.5)           columns used -> canonical unit
============================  ==================================  ==============================
CSI index history             ``stock_zh_index_hist_csindex``     日期, 收盘 (points), 成交金额
                              (csindex.com.cn index-perf)         (1e8 yuan, 亿元: x 1e8)
  fallback                    ``index_zh_a_hist`` (EastMoney)     日期, 收盘, 成交额 (yuan)
single-stock theme proxy      ``stock_zh_a_hist`` (EastMoney,     日期, 收盘 (yuan, back-adjusted
                              ``adjust="hfq"``)                   后复权), 成交额 (yuan)
ChinaBond curves              ``bond_china_yield``                曲线名称, 日期, 1年 / 3年 / 5年
                              (windows shorter than one year)     (percent)
daily cross-section           ``stock_zh_a_spot_em``              代码, 名称, 最新价 (yuan),
                                                                  总市值 (yuan)
fund types                    ``fund_name_em``                    基金代码, 基金简称, 基金类型
fund holdings                 ``fund_portfolio_hold_em``          股票代码, 持仓市值 (1e4 yuan,
                                                                  万元: x 1e4), 季度
============================  ==================================  ==============================

Units. AKShare does not convert: 成交金额 of CSIndex is the site's 亿元 figure (CSI 300 about 1,800
a day in 2024); EastMoney's 成交额 and 总市值 are in yuan; fund_portfolio_hold_em renames the page's
"持仓市值（万元）" (or "（万元人民币）") header to 持仓市值, so the column exists only when the page says
万元. After the conversion a unit is *established* only when the series' median lies in a plausible
range for it (index amounts 1e9..1e13 yuan a day, theme amounts 1e7..1e13, yields with a median of
at least 0.2 percent, closes inside the canonical bounds of ``signals.series``); otherwise the
series is refused with an error naming it. EastMoney caps some whole-market amounts at exactly
1e12 yuan (000985, 2014-12 .. 2015-04): such amounts are dropped, the closes kept.

The polite-call machinery lives in ``monitor.sources.polite`` (``PoliteCaller``): calls are made
one at a time with ``delay_seconds`` between them (the upstream sites ban aggressive
clients). Each call runs in a daemon worker thread and is abandoned after ``timeout_seconds``
(``cross_section_timeout_seconds`` for the ~55 pages of the spot list): AKShare calls ``requests``
without a timeout except in ``stock_zh_a_hist`` (which also gets ``timeout=``), and a
``ThreadPoolExecutor`` would block the interpreter's exit on a hung socket. An abandoned call may
still finish in the background. A failed call is retried ``retries`` times, waiting
``backoff_seconds``, then twice as long after each further failure. After
``max_consecutive_failures`` failed calls in a row the remaining calls of the fetch are not
attempted (the upstream is unreachable), and after one failed call the next ones get a single
attempt until one succeeds: without network a fetch ends within about 15 seconds with the default
settings (akshare's own ``request_with_retry`` retries the EastMoney list endpoints 3 times).

One failing series never blocks the others: ``fetch`` returns a ``Fetched`` with the rows it got
and the ``failures`` {series group or data set: one-line reason} (``fetch_cross_section`` a
``FetchedPanel``; the interfaces are in ``monitor.sources.base``); ``self.failures`` keeps the
last calls' failures for inspection. Nothing is printed and no traceback escapes, except
``AkshareUnavailable`` when akshare is not installed.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from monitor.sources.base import Fetched, FetchedPanel
from monitor.sources.holdings import quarter_end
from monitor.sources.polite import (  # noqa: F401  (the error types, re-exported)
    CallFailed,
    CallTimeout,
    PoliteCaller,
    Skipped,
    SourceError,
    describe,
)
from signals import series as canonical
from storage.observations import ObservationRow

log = logging.getLogger("regime_monitor.akshare")

AKSHARE_VERSION = "1.19.5"  # keep equal to the pin of the ``live`` extra in pyproject.toml
INSTALL_HINT = "pip install 'regime-monitor[live]'"
SHANGHAI = ZoneInfo("Asia/Shanghai")

INDICES = {"000300": "csi300", "000905": "csi500", "000852": "csi1000", "932000": "csi2000",
           "000985": "all_a"}
CURVES = {"gov": "中债国债收益率曲线", "credit": "中债中短期票据收益率曲线(AAA)"}
TENORS = {"1y": "1年", "3y": "3年", "5y": "5年"}
BOND_WINDOW_DAYS = 360  # bond_china_yield: end_date - start_date must stay under one year
INDEX_AMOUNT_RANGE = (1e9, 1e13)  # plausible median daily amount of an index in yuan
THEME_AMOUNT_RANGE = (1e7, 1e13)  # ... of a theme index or a single stock
EM_AMOUNT_CAP = 1e12  # EastMoney's capped whole-market amount: not a real value
YIELD_MIN_MEDIAN = 0.2  # a median yield below 0.2 is a fraction, not percent
SPOT_MV_RANGE = (1e8, 1e12)  # plausible median total market cap of an A-share in yuan
SPOT_FINAL = dt.time(15, 30)  # the spot list holds the day's close from then on ...
SPOT_OPEN = dt.time(9, 15)  # ... until the next session's call auction
A_SHARE = re.compile(r"^(60|68|00|30)\d{4}$")  # SH/SZ A-shares; Beijing SE (4/8/92...) excluded
QUARTER = re.compile(r"(\d{4})\s*年\s*([1-4])\s*季度")
PANEL_COLUMNS = ("date", "code", "close", "total_mv", "is_st", "available_at", "source")
HOLDINGS_COLUMNS = ("report_date", "fund_code", "fund_name", "stock_code", "holding_value",
                    "fund_type")


class AkshareUnavailable(RuntimeError):
    """akshare is not installed (or does not import): the ``live`` extra is missing."""





class SchemaError(SourceError):
    """A frame lacks a column (renamed or removed upstream)."""


class UnitError(SourceError):
    """The unit of a series cannot be established."""


class NoData(SourceError):
    """A call answered without any row for a period that has trading days."""



@dataclass(frozen=True)
class HistSpec:
    """Where the date, close and amount of a daily history are, and the amount's unit."""

    function: str
    date: str
    close: str
    amount: str
    amount_to_yuan: float
    amount_unit: str


CSINDEX = HistSpec("stock_zh_index_hist_csindex", "日期", "收盘", "成交金额", 1e8, "1e8 yuan (亿元)")
EM_INDEX = HistSpec("index_zh_a_hist", "日期", "收盘", "成交额", 1.0, "yuan")
EM_STOCK = HistSpec("stock_zh_a_hist", "日期", "收盘", "成交额", 1.0, "yuan")


def require(frame: Any, function: str, columns: Iterable[str]) -> pd.DataFrame:
    """Check that ``frame`` is a DataFrame with ``columns``; raise SchemaError naming the first missing."""
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(f"akshare {function}: returned {type(frame).__name__}, not a DataFrame")
    for column in columns:
        if column not in frame.columns:
            got = ", ".join(str(c) for c in frame.columns) or "no columns"
            raise SchemaError(f"akshare {function}: column {column!r} missing (got: {got})")
    return frame


def _norm(text: object) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(text))).upper()


def _ymd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _dates(values: pd.Series) -> pd.Series:
    """Parse dates (date objects, 'YYYY-MM-DD' or 'YYYYMMDD' strings) to Timestamps; NaT if not."""
    text = values.astype(str).str.strip().str.replace(r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3", regex=True)
    return pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")


def bond_windows(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Split [start, end] into windows of at most BOND_WINDOW_DAYS days (under one year each)."""
    out = []
    while start <= end:
        last = min(end, start + dt.timedelta(days=BOND_WINDOW_DAYS - 1))
        out.append((start, last))
        start = last + dt.timedelta(days=1)
    return out


def _median_in(values: pd.Series, low: float, high: float) -> tuple[bool, float]:
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.empty:
        return True, float("nan")
    median = float(finite.median())
    return low <= median <= high, median


def history_rows(prefix: str, frame: Any, spec: HistSpec, start: dt.date, end: dt.date,
                 amount_range: tuple[float, float]) -> tuple[list[ObservationRow], list[str]]:
    """Turn a daily history frame into ``<prefix>.close`` / ``.amount`` rows dated in [start, end].

    Returns (rows, notes). Raises SchemaError for a missing column and UnitError when the close or
    the amount is implausible in the canonical unit (points / yuan) after the conversion.
    """
    require(frame, spec.function, (spec.date, spec.close, spec.amount))
    dates = _dates(frame[spec.date])
    close = pd.to_numeric(frame[spec.close], errors="coerce").astype(float)
    amount = pd.to_numeric(frame[spec.amount], errors="coerce").astype(float) * spec.amount_to_yuan
    inside = (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))
    dates, close, amount = dates[inside], close[inside], amount[inside]
    notes = []
    close_kind = canonical.canonical_kind(f"{prefix}.close")
    amount_kind = canonical.canonical_kind(f"{prefix}.amount")
    good = close[np.isfinite(close)]
    bad = good[(good < close_kind.low) | (good > close_kind.high)]
    if len(bad):
        raise UnitError(f"{prefix}.close: cannot establish the unit of akshare {spec.function} "
                        f"{spec.close!r}: {bad.iloc[0]:g} is outside {close_kind.low:g}..{close_kind.high:g} "
                        "points")
    if spec is EM_INDEX:
        capped = amount == EM_AMOUNT_CAP
        if capped.any():
            notes.append(f"{prefix}.amount: dropped {int(capped.sum())} amounts capped at 1e12 yuan "
                         f"by {spec.function}")
            amount = amount.mask(capped)
    ok, median = _median_in(amount, *amount_range)
    if not ok:
        raise UnitError(f"{prefix}.amount: cannot establish the unit of akshare {spec.function} "
                        f"{spec.amount!r}: median {median:.4g} yuan after x{spec.amount_to_yuan:g} "
                        f"({spec.amount_unit}) is outside {amount_range[0]:g}..{amount_range[1]:g}")
    label = f"akshare:{spec.function}"
    rows: list[ObservationRow] = []
    for day, c, a in zip(dates, close, amount, strict=True):
        iso = day.date().isoformat()
        if np.isfinite(c) and c > 0:
            rows.append((f"{prefix}.close", iso, float(c), iso, label))
        if np.isfinite(a) and amount_kind.low <= a <= amount_kind.high:
            rows.append((f"{prefix}.amount", iso, float(a), iso, label))
        elif np.isfinite(a) and a > 0:
            notes.append(f"{prefix}.amount: dropped the implausible {a:g} yuan of {iso}")
    return rows, notes


def yield_rows(frame: pd.DataFrame, curve: str, start: dt.date, end: dt.date) -> list[ObservationRow]:
    """Rows ``yield.<curve>.<tenor>`` (percent) of one curve of a bond_china_yield frame."""
    function = "bond_china_yield"
    names = frame["曲线名称"].map(_norm)
    part = frame[names == _norm(CURVES[curve])]
    if part.empty and not frame.empty:
        got = ", ".join(sorted({str(n) for n in frame["曲线名称"]}))
        raise SchemaError(f"akshare {function}: curve {CURVES[curve]!r} missing (got: {got})")
    dates = _dates(part["日期"])
    inside = (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))
    rows: list[ObservationRow] = []
    label = f"akshare:{function}"
    for tenor, column in TENORS.items():
        name = f"yield.{curve}.{tenor}"
        kind = canonical.canonical_kind(name)
        values = pd.to_numeric(part[column], errors="coerce").astype(float)[inside]
        finite = values[np.isfinite(values)]
        if finite.empty:
            continue
        median = float(finite.median())
        if abs(median) < YIELD_MIN_MEDIAN or ((finite < kind.low) | (finite > kind.high)).any():
            raise UnitError(f"{name}: cannot establish the unit of akshare {function} {column!r}: "
                            f"median {median:g} is not a yield in percent")
        for day, value in zip(dates[inside], values, strict=True):
            if np.isfinite(value):
                iso = day.date().isoformat()
                rows.append((name, iso, float(value), iso, label))
    return rows


def is_st_name(name: object) -> bool:
    """True for ST / *ST names and delisting-arrangement names (退): excluded from the micro-caps."""
    text = _norm(name)
    return "ST" in text or "退" in text


def cross_section_frame(frame: Any, day: dt.date, min_stocks: int = 2000) -> pd.DataFrame:
    """Turn a ``stock_zh_a_spot_em`` frame into stock_panel rows of ``day`` (``PANEL_COLUMNS``).

    close = 最新价 in yuan (NaN: no trade, e.g. suspended), total_mv = 总市值 in yuan, is_st = 1 when
    the name holds ST or 退. SH/SZ A-shares only (codes 60/68/00/30; the Beijing exchange is left
    out, as in the reference panel). Raises SourceError when columns are missing, the market caps
    are not in yuan or fewer than ``min_stocks`` stocks came back (a truncated list).
    """
    function = "stock_zh_a_spot_em"
    require(frame, function, ("代码", "名称", "最新价", "总市值"))
    codes = frame["代码"].astype(str).str.strip().str.zfill(6)
    keep = codes.str.match(A_SHARE.pattern)
    part = pd.DataFrame({
        "code": codes[keep],
        "close": pd.to_numeric(frame.loc[keep, "最新价"], errors="coerce").astype(float),
        "total_mv": pd.to_numeric(frame.loc[keep, "总市值"], errors="coerce").astype(float),
        "is_st": frame.loc[keep, "名称"].map(is_st_name).astype(int),
    }).drop_duplicates("code").sort_values("code", kind="stable")
    if len(part) < min_stocks:
        raise NoData(f"akshare {function}: only {len(part)} SH/SZ A-shares (expected at least "
                     f"{min_stocks}): a truncated list")
    part.loc[~(part["close"] > 0), "close"] = np.nan
    part.loc[~(part["total_mv"] > 0), "total_mv"] = np.nan
    ok, median = _median_in(part["total_mv"], *SPOT_MV_RANGE)
    if not ok:
        raise UnitError(f"stock_panel.total_mv: cannot establish the unit of akshare {function} "
                        f"'总市值': median {median:.4g} is not a market cap in yuan")
    iso = day.isoformat()
    part.insert(0, "date", iso)
    part["available_at"] = iso
    part["source"] = f"akshare:{function}"
    return part.reset_index(drop=True)[list(PANEL_COLUMNS)]


class AkshareSource:
    """Daily observations, the cross-section and the fund holdings from AKShare (module doc).

    ``cross_checks_calendar``: a day for which every index fetch succeeded but none returned data
    is a closed day (the cycle records it as such), not a trading day with missing data.

    ``settings`` is the ``[source.akshare]`` config (``monitor.config.AkshareConfig``), ``calendar``
    a ``TradingCalendar``; ``ak`` any object with AKShare's functions as attributes (tests pass a
    fake), default: ``akshare`` imported at the first call. ``sleep`` and ``clock`` (an aware
    datetime) can be replaced in tests.
    """

    name = "akshare"
    cross_checks_calendar = True
    min_cross_section = 2000  # fewer SH/SZ A-shares in the spot list means a truncated answer

    def __init__(self, settings: Any, calendar: Any = None, ak: Any = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self.calendar = calendar
        self._ak = ak
        self._clock = clock or (lambda: dt.datetime.now(SHANGHAI))
        self.polite = PoliteCaller(settings, "akshare", "AKShare", sleep=sleep)
        self.failures: dict[str, str] = {}
        self.notes: list[str] = []

    # --- the calls ---------------------------------------------------------------------------

    @property
    def ak(self) -> Any:
        if self._ak is None:
            try:
                import akshare
            except Exception as exc:  # ImportError, or a broken install failing at import
                raise AkshareUnavailable(
                    f"the AKShare source needs the optional 'live' extra: {INSTALL_HINT} "
                    f"({describe(exc)})") from None
            version = getattr(akshare, "__version__", "?")
            if version != AKSHARE_VERSION:
                log.warning("akshare %s is installed but regime-monitor was written against %s: "
                            "columns may differ (%s)", version, AKSHARE_VERSION, INSTALL_HINT)
            self._ak = akshare
        return self._ak

    def _call(self, function: str, deadline: float | None = None, **kwargs: Any) -> Any:
        """Return ``ak.<function>(**kwargs)``, called politely (``monitor.sources.polite``: the
        delay, retries and a ``deadline`` in seconds, default ``timeout_seconds``); raises
        SourceError."""
        self.polite.check_open(function)
        fn = getattr(self.ak, function, None)
        if fn is None:
            raise CallFailed(f"akshare {function}: no such function in the installed akshare "
                             f"(pinned: {AKSHARE_VERSION})")
        return self.polite.call(function, fn, deadline, **kwargs)

    def _has_trading_days(self, start: dt.date, end: dt.date) -> bool:
        if self.calendar is None:
            return any(d.weekday() < 5 for d in pd.date_range(start, end).date)
        return bool(self.calendar.days(start, end))

    def _note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("akshare: %s", text)

    # --- daily observations ------------------------------------------------------------------

    def fetch(self, as_of: dt.date, since: dt.date | None) -> Fetched:
        """Return the rows dated in (since, as_of] (from ``start_date`` when ``since`` is None)
        and the failures of the series left out (also kept in ``self.failures``).

        Values are in canonical units with ``available_at`` = their date (published that evening).
        """
        self.failures, self.notes = {}, []
        self.polite.reset()
        start = self.settings.start_date if since is None else since + dt.timedelta(days=1)
        if start > as_of:
            return Fetched()
        rows: list[ObservationRow] = []
        for code, name in INDICES.items():
            rows += self._history(f"index.{name}", code, "index", start, as_of, INDEX_AMOUNT_RANGE)
        for theme, kind in self.settings.themes.items():
            rows += self._history(f"theme.{theme}", theme, kind, start, as_of, THEME_AMOUNT_RANGE)
        rows += self._yields(start, as_of)
        return Fetched(rows, dict(self.failures))

    def _history(self, prefix: str, code: str, kind: str, start: dt.date, end: dt.date,
                 amount_range: tuple[float, float]) -> list[ObservationRow]:
        s, e = _ymd(start), _ymd(end)
        if kind == "stock":
            attempts = [(EM_STOCK, lambda: self._call(
                EM_STOCK.function, symbol=code, period="daily", start_date=s, end_date=e, adjust="hfq",
                timeout=self.settings.timeout_seconds))]
        else:
            attempts = [
                (CSINDEX, lambda: self._call(CSINDEX.function, symbol=code, start_date=s, end_date=e)),
                (EM_INDEX, lambda: self._call(EM_INDEX.function, symbol=code, period="daily",
                                              start_date=s, end_date=e)),
            ]
        errors: list[str] = []
        for spec, call in attempts:
            try:
                rows, notes = history_rows(prefix, call(), spec, start, end, amount_range)
                if not rows and self._has_trading_days(start, end):
                    raise NoData(f"akshare {spec.function}: no {code} rows for {start}..{end}")
            except SourceError as exc:
                errors.append(str(exc))
                continue
            for note in notes:
                self._note(note)
            if errors:
                self._note(f"{prefix}: {errors[0]}; used the fallback {spec.function}")
            return rows
        if all(e.endswith("(upstream unreachable?)") for e in errors):
            errors = errors[:1]
        self.failures[f"{prefix}.*"] = "; ".join(errors)
        return []

    def _yields(self, start: dt.date, end: dt.date) -> list[ObservationRow]:
        function = "bond_china_yield"
        rows: list[ObservationRow] = []
        got = dict.fromkeys(CURVES, False)
        for lo, hi in bond_windows(start, end):
            pending = [c for c in CURVES if f"yield.{c}.*" not in self.failures]
            if not pending:
                break
            try:
                frame = require(self._call(function, start_date=_ymd(lo), end_date=_ymd(hi)), function,
                                ("曲线名称", "日期", *TENORS.values()))
            except SourceError as exc:
                for curve in pending:
                    self.failures[f"yield.{curve}.*"] = str(exc)
                break
            for curve in pending:
                try:
                    part = yield_rows(frame, curve, lo, hi)
                except SourceError as exc:
                    self.failures[f"yield.{curve}.*"] = str(exc)
                    continue
                got[curve] = got[curve] or bool(part)
                rows += part
        for curve, ok in got.items():
            key = f"yield.{curve}.*"
            if not ok and key not in self.failures and self._has_trading_days(start, end):
                self.failures[key] = f"akshare {function}: no {CURVES[curve]} rows for {start}..{end}"
        # a failed later window must not leave a curve's earlier windows in: all or nothing
        return [r for r in rows if f"yield.{r[0].split('.')[1]}.*" not in self.failures]

    # --- the daily cross-section -------------------------------------------------------------

    def spot_session(self) -> dt.date | None:
        """Return the session whose close the spot list shows now, or None during trading hours."""
        now = self._clock().astimezone(SHANGHAI)
        today = now.date()
        if self.calendar is not None and not self.calendar.is_trading_day(today):
            return self.calendar.last_on_or_before(today)
        if self.calendar is None and today.weekday() >= 5:
            return today - dt.timedelta(days=today.weekday() - 4)
        if now.time() >= SPOT_FINAL:
            return today
        if now.time() < SPOT_OPEN:
            if self.calendar is not None:
                return self.calendar.previous(today)
            return today - dt.timedelta(days=3 if today.weekday() == 0 else 1)
        return None

    def _begin(self, key: str) -> None:
        self.failures.pop(key, None)
        self.polite.forget_stale_failures()  # an old run of failures says nothing about the upstream now

    def fetch_cross_section(self, as_of: dt.date) -> FetchedPanel:
        """Return the stock_panel rows (``PANEL_COLUMNS``) of trading day ``as_of`` as a
        ``FetchedPanel`` (frame, failures: ``stock_panel`` -> why it is empty).

        ``stock_zh_a_spot_em`` is a live snapshot without a date: it gives the close of the latest
        session only, after 15:30 Shanghai time (and before the next session's 09:15). For any other
        day (history: ``import-csv``) or during trading hours the frame is empty and
        ``failures['stock_panel']`` says why.
        """
        self._begin("stock_panel")
        empty = pd.DataFrame(columns=list(PANEL_COLUMNS))
        session = self.spot_session()
        if session != as_of:
            when = ("during trading hours" if session is None
                    else f"it shows the latest session {session}")
            self.failures["stock_panel"] = (f"akshare stock_zh_a_spot_em: no cross-section for {as_of}: "
                                            f"the spot list has no date and {when}")
            return FetchedPanel(empty, {"stock_panel": self.failures["stock_panel"]})
        try:
            frame = self._call("stock_zh_a_spot_em", deadline=self.settings.cross_section_timeout_seconds)
            return FetchedPanel(cross_section_frame(frame, as_of, self.min_cross_section))
        except SourceError as exc:
            self.failures["stock_panel"] = str(exc)
            return FetchedPanel(empty, {"stock_panel": str(exc)})

    # --- the fund holdings -------------------------------------------------------------------

    def fund_types(self) -> pd.DataFrame:
        """Return ``fund_name_em`` as (fund_code, fund_name, fund_type); raises SourceError."""
        function = "fund_name_em"
        frame = require(self._call(function), function, ("基金代码", "基金简称", "基金类型"))
        return pd.DataFrame({"fund_code": frame["基金代码"].astype(str).str.strip().str.zfill(6),
                             "fund_name": frame["基金简称"].astype(str).str.strip(),
                             "fund_type": frame["基金类型"].astype(str).str.strip()})

    def active_funds(self) -> pd.DataFrame:
        """Return the active equity funds of ``fund_name_em``, one share class per portfolio, as
        (fund_code, fund_name, fund_type) sorted by code; raises SourceError.

        Active: ``signals.fund_allocation.is_active_equity`` on name and type. Share classes:
        the first name (the A class before C), then the lowest code, per ``share_class_key``
        (holdings are per portfolio, so one class is fetched).
        """
        from signals.fund_allocation import is_active_equity, share_class_key

        types = self.fund_types()
        active = [is_active_equity(n, t) for n, t in zip(types["fund_name"], types["fund_type"],
                                                            strict=True)]
        types = types[active].assign(key=lambda f: f["fund_name"].map(share_class_key))
        return (types.sort_values(["fund_name", "fund_code"]).drop_duplicates("key")
                .drop(columns="key").sort_values("fund_code").reset_index(drop=True))

    def holdings_of(self, fund_code: str, report_date: dt.date, top: int | None = 10) -> pd.DataFrame:
        """Return fund ``fund_code``'s SH/SZ A-share holdings at quarter end ``report_date`` as
        (stock_code, holding_value in yuan), the ``top`` largest (None: all); empty when the fund
        reported none. One ``fund_portfolio_hold_em(symbol, date=year)`` call; raises SourceError
        (``Skipped`` when the upstream looks unreachable)."""
        if not quarter_end(report_date):
            raise ValueError(f"{report_date} is not a quarter end")
        part = self._holdings_of(fund_code, (report_date.year, (report_date.month - 1) // 3 + 1))
        # per fund, so the bounds are wide: a tiny fund's top holdings can be worth a few 万元
        ok, median = _median_in(part["holding_value"], 1e3, 1e11) if len(part) else (True, 0.0)
        if not ok:
            raise UnitError("fund_holdings.holding_value: cannot establish the unit of akshare "
                            f"fund_portfolio_hold_em '持仓市值' of fund {fund_code}: median {median:.4g} "
                            "yuan after x1e4 (万元)")
        return part.nlargest(top, "holding_value", keep="first") if top is not None else part

    def fetch_holdings(self, report_date: dt.date, funds: Iterable[str] | None = None,
                       top: int | None = 10) -> pd.DataFrame:
        """Return the stock holdings of the active equity funds at quarter end ``report_date``.

        Columns ``HOLDINGS_COLUMNS``: report_date (Timestamp), fund_code, fund_name, stock_code,
        holding_value (yuan), fund_type (``fund_name_em`` 基金类型). Funds: ``active_funds()``, or
        only ``funds`` when given. One ``fund_portfolio_hold_em`` call per fund (thousands: the
        daemon's quarterly job, ``monitor.sources.holdings.run_holdings_job``, does this resumably). SH/SZ
        A-share holdings only; ``top``: the largest N per fund (10: the quarterly reports'
        coverage, so that every fund has the same; None: all). Failed funds are left out and
        counted in ``failures['fund_holdings']``.
        """
        if not quarter_end(report_date):
            raise ValueError(f"{report_date} is not a quarter end")
        self._begin("fund_holdings")
        empty = pd.DataFrame(columns=list(HOLDINGS_COLUMNS))
        try:
            if funds is not None:
                wanted = {str(f).zfill(6) for f in funds}
                types = self.fund_types()
                types = types[types["fund_code"].isin(wanted)]
            else:
                types = self.active_funds()
        except SourceError as exc:
            self.failures["fund_holdings"] = str(exc)
            return empty
        parts, failed = [], []
        for i, fund in enumerate(types.itertuples(index=False), start=1):
            try:
                part = self.holdings_of(fund.fund_code, report_date, top)
            except Skipped as exc:
                failed.append((fund.fund_code, str(exc)))
                break
            except SourceError as exc:
                failed.append((fund.fund_code, str(exc)))
                continue
            parts.append(part.assign(fund_code=fund.fund_code, fund_name=fund.fund_name,
                                     fund_type=fund.fund_type))
            if i % 100 == 0:
                log.info("akshare holdings %s: %d of %d funds", report_date, i, len(types))
        if failed:
            self.failures["fund_holdings"] = (f"{len(failed)} of {len(types)} funds failed or not "
                                              f"fetched; first: {failed[0][0]}: {failed[0][1]}")
        if not parts:
            return empty
        out = pd.concat(parts, ignore_index=True)
        out["report_date"] = pd.Timestamp(report_date)
        return out[list(HOLDINGS_COLUMNS)]

    def _holdings_of(self, fund: str, quarter: tuple[int, int]) -> pd.DataFrame:
        function = "fund_portfolio_hold_em"
        frame = self._call(function, symbol=fund, date=str(quarter[0]))
        if isinstance(frame, pd.DataFrame) and frame.empty:
            return pd.DataFrame({"stock_code": [], "holding_value": []})
        require(frame, function, ("股票代码", "持仓市值", "季度"))
        labels = frame["季度"].astype(str)
        parsed = labels.str.extract(QUARTER)
        if parsed[0].isna().all():
            raise SchemaError(f"akshare {function}: column '季度' value {labels.iloc[0]!r} is not like "
                              "'2024年2季度股票投资明细'")
        this = (parsed[0] == str(quarter[0])) & (parsed[1] == str(quarter[1]))
        codes = frame["股票代码"].astype(str).str.strip()  # no zfill: HK codes have 5 digits (00700)
        value = pd.to_numeric(frame["持仓市值"], errors="coerce").astype(float) * 1e4  # 万元 -> yuan
        keep = this & codes.str.match(A_SHARE.pattern) & np.isfinite(value) & (value > 0)
        return (pd.DataFrame({"stock_code": codes[keep], "holding_value": value[keep]})
                .drop_duplicates("stock_code"))
