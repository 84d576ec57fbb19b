"""Manager exposure (issue 16), the I/O edge: the products' NAVs and the index closes loaded
point-in-time from the database, handed to the pure functions of ``signals.exposure``.

Everything returned for a day ``as_of`` uses only what was known that day: NAVs whose
``available_at`` (``exposure.nav_lag_days`` XSHG trading days after the NAV date, unless the
import file said when) is on or before ``as_of``, and index closes available by then.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlite_utils import Database

from monitor.calendar import TradingCalendar
from monitor.config import Config
from signals import exposure as ex
from storage import observations, products

LOOKBACK_DAYS = 15
"""Index closes are read from this many calendar days before a product's first NAV, so the
benchmark has a close on or before it whatever the holidays."""
NOT_DECLARED = "not declared (no benchmark)"


class ExposureError(ValueError):
    """Exposure cannot be measured (nothing declared, nothing imported, an index missing); the
    message is one line saying what to do."""


def close_series(benchmark: str) -> str:
    """Return the canonical observation series of an index id's close (``csi500`` ->
    ``index.csi500.close``)."""
    return f"index.{benchmark}.close"


def declared(config: Config) -> list[ex.Product]:
    """Return the config's ``[[products]]`` as ``signals.exposure.Product``, in config order."""
    return [ex.Product(p.name, p.benchmark, p.strategy, p.weight) for p in config.products]


def _navs(db: Database, config: Config, as_of: dt.date | None) -> dict[str, pd.Series]:
    """The declared products' NAVs known by ``as_of``; ExposureError when none is."""
    if not config.products:
        raise ExposureError("no products declared: add [[products]] tables (name, benchmark) to "
                            "the config (README: Manager exposure)")
    stored = products.names(db)
    if not stored:
        raise ExposureError("no product NAVs imported: import a date,product,nav file with "
                            "`regime-monitor import-csv` (README: Manager exposure)")
    names = [p.name for p in config.products]
    navs = products.load(db, as_of, names)
    if not navs:
        known = "any day" if as_of is None else str(as_of)
        missing = [n for n in names if n not in stored]
        hint = (f"; declared but never imported: {', '.join(missing[:5])}"
                + (", ..." if len(missing) > 5 else "") if missing else "")
        raise ExposureError(f"no NAV of a declared product is known by {known} (a NAV is known "
                            f"exposure.nav_lag_days = {config.exposure.nav_lag_days} XSHG "
                            f"trading days after its date){hint}")
    return navs


def _closes(db: Database, config: Config, ids: Sequence[str], first: dt.date, through: dt.date,
            known_by: dt.date | None = None) -> dict[str, pd.Series]:
    """Index id -> daily close (points, DatetimeIndex) dated from ``first`` - ``LOOKBACK_DAYS``
    to ``through``, as known on ``known_by`` (default ``through``); ExposureError naming the
    first index with no close."""
    calendar = TradingCalendar(config.calendar.extra_closed)
    days = calendar.days(first - dt.timedelta(days=LOOKBACK_DAYS), through)
    if not days:
        raise ExposureError(f"no trading day between {first} and {through}")
    series = [close_series(i) for i in ids]
    frame = observations.load_frame(db, series, days, known_by or through)
    out: dict[str, pd.Series] = {}
    for index_id, name in zip(ids, series, strict=True):
        close = frame[name].dropna()
        if close.empty:
            raise ExposureError(f"no {name} known between {days[0]} and {through}: import the "
                                f"index closes (`regime-monitor import-csv`, series {name})")
        out[index_id] = close
    return out


def exposure_report(db: Database, config: Config, as_of: dt.date) -> pd.DataFrame:
    """Return ``signals.exposure.exposure_table`` of the declared products as known on
    ``as_of`` (its fixed columns; one row per product with a NAV known by then, most exposed
    first), measured with the ``[exposure]`` settings. Raises ExposureError (one line) when no
    product is declared, no NAV is imported or known by ``as_of``, or an index close needed is
    missing."""
    items = declared(config)
    navs = _navs(db, config, as_of)
    first = min(s.index[0] for s in navs.values()).date()
    closes = _closes(db, config, ex.needed_indices(items, navs), first, as_of)
    e = config.exposure
    return ex.exposure_table(navs, items, closes, as_of, windows=tuple(e.windows_weeks),
                             rank_window=e.rank_window_weeks,
                             large_microcap_corr=e.large_microcap_corr,
                             loose_tracking_corr=e.loose_tracking_corr)


def undeclared(db: Database, config: Config, as_of: dt.date | None) -> list[tuple[str, str, str, int]]:
    """Return the stored products not declared in ``[[products]]`` that have a NAV known by
    ``as_of`` (None: any): ``(product, first NAV date, last NAV date, NAVs)`` (ISO days), sorted.
    Their exposure is not measured: they have no benchmark."""
    names = {p.name for p in config.products}
    navs = products.load(db, as_of, [n for n in products.names(db) if n not in names])
    return [(n, s.index[0].date().isoformat(), s.index[-1].date().isoformat(), len(s))
            for n, s in sorted(navs.items())]


def exposure_columns(config: Config) -> tuple[str, str]:
    """Return the correlation and beta columns of ``exposure_table`` that rank the products:
    ``corr_microcap_<w>w`` and ``beta_microcap_<w>w`` for ``exposure.rank_window_weeks``."""
    w = config.exposure.rank_window_weeks
    return f"corr_microcap_{w}w", f"beta_microcap_{w}w"


def _number(value: Any) -> float | None:
    """``value`` as a float, None for NaN/None."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def crash_evidence(db: Database, config: Config, measured_through: dt.date | None, start: dt.date,
                   end: dt.date, known_by: dt.date | None = None) -> dict[str, Any]:
    """The out-of-sample check of the exposure measure: the exposure of each declared product
    measured on what was known on ``measured_through`` (``exposure_report``; None: the XSHG
    trading day before ``start``, so nothing of the window is seen), against its excess
    return over [``start``, ``end``] (``signals.exposure.window_excess``: from its last NAV dated
    before ``start`` to its last on or before ``end``, NAVs and closes as known on ``known_by``,
    None: everything stored).

    Returns ``{"measured_through", "start", "end" (ISO), "window_weeks", "correlation": {"rho",
    "p", "n"}, "beta": {...}, "products": [{"product", "benchmark", "corr", "beta", "excess"}]}``:
    Spearman rank correlations (``signals.exposure.rank_evidence``) of the correlation-based and
    the beta-based exposure (``exposure.rank_window_weeks``) with the window's excess return
    (fraction), over the products that have both; products most exposed (beta) first, ``None``
    where a value is missing. Raises ExposureError as ``exposure_report`` does, or when ``end``
    is not after ``start``, ``measured_through`` is not before ``start`` or, by default, there
    is no trading day before ``start``.
    """
    if end <= start:
        raise ExposureError(f"the evidence window ends ({end}) before it starts ({start}) or "
                            "on that day")
    if measured_through is None:
        try:
            measured_through = TradingCalendar(config.calendar.extra_closed).previous(start)
        except ValueError:
            raise ExposureError(f"no trading day before {start} to measure the exposure on "
                                "(the XSHG calendar's first sessions)") from None
    if measured_through >= start:
        raise ExposureError(f"exposure measured through {measured_through} is not before the "
                            f"window's start {start}: the check would see the window")
    table = exposure_report(db, config, measured_through)
    corr_col, beta_col = exposure_columns(config)
    navs = products.load(db, known_by, list(table["product"]))
    wanted = sorted({str(b) for b in table["benchmark"]})
    first = min(s.index[0] for s in navs.values()).date() if navs else start
    closes = (_closes(db, config, wanted, min(first, start), end, known_by or dt.date.max)
              if wanted else {})
    outcome: dict[str, float] = {}
    for product, benchmark in zip(table["product"], table["benchmark"], strict=True):
        if product in navs:
            moved = ex.window_excess(navs[product], closes[benchmark], start, end)
            if moved is not None and not math.isnan(moved):
                outcome[product] = moved
    result = pd.Series(outcome, dtype=float)
    exposure = table.set_index("product")
    rows = [{"product": p, "benchmark": b, "corr": _number(c), "beta": _number(bt),
             "excess": outcome.get(p)}
            for p, b, c, bt in zip(table["product"], table["benchmark"], table[corr_col],
                                   table[beta_col], strict=True)]
    return {"measured_through": measured_through.isoformat(), "start": start.isoformat(),
            "end": end.isoformat(), "window_weeks": config.exposure.rank_window_weeks,
            "correlation": ex.rank_evidence(exposure[corr_col].astype(float), result),
            "beta": ex.rank_evidence(exposure[beta_col].astype(float), result),
            "products": rows}


# -- what `regime-monitor exposure` prints --------------------------------------------------------

def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: NaN -> None, numpy scalars -> Python, dates -> ISO."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def report_rows(db: Database, config: Config, as_of: dt.date, table: pd.DataFrame
                ) -> list[dict[str, Any]]:
    """Return the rows ``exposure`` shows for ``table`` (``exposure_report`` on ``as_of``), as
    JSON-ready dicts of its columns (NaN -> None, dates ISO), ranked from 1, most exposed first;
    then one row per declared product with no NAV known by ``as_of`` and per stored product not
    declared (``quadrant`` says which: ``no NAV known by <as_of>``, ``NOT_DECLARED``; no
    metrics)."""
    rows = [{"rank": i + 1, **{k: _plain(v) for k, v in r.items()}}
            for i, r in enumerate(table.to_dict("records"))]
    columns = list(table.columns)
    shown = set(table["product"])
    for p in config.products:
        if p.name not in shown:
            rows.append({**dict.fromkeys(columns), "rank": None, "product": p.name,
                         "benchmark": p.benchmark, "strategy": p.strategy, "weight": p.weight,
                         "quadrant": f"no NAV known by {as_of}", "large_exposure": False})
    for name, first, last, _ in undeclared(db, config, as_of):
        rows.append({**dict.fromkeys(columns), "rank": None, "product": name, "first": first,
                     "last": last, "quadrant": NOT_DECLARED, "large_exposure": False})
    return rows


def _fmt(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec`` for the terminal, ``-`` when it is missing (None)."""
    return "-" if value is None else format(value, spec)


def _pct(value: Any) -> str:
    return _fmt(value, ".1%")


def _num(value: Any) -> str:
    return _fmt(value, ".2f")


SHORT_QUADRANT = {ex.QUADRANT_LARGE: "loose/high", ex.QUADRANT_TIGHT_HIGH: "tight/high",
                  ex.QUADRANT_LOOSE_LOW: "loose/low", ex.QUADRANT_TIGHT_LOW: "tight/low",
                  ex.QUADRANT_UNKNOWN: "n/a"}
"""The quadrant in the terminal table: tracking / micro-cap correlation."""


TEXT_ALIGN = ("right", "left", "left", "right", "right", "left")
"""Column alignment of ``text_table`` (the rest: numbers right, quadrant and flag left)."""


def text_align(headers: list[str]) -> tuple[str, ...]:
    """Return tabulate's ``colalign`` for ``text_table``'s ``headers``."""
    return (*TEXT_ALIGN, *["right"] * (len(headers) - len(TEXT_ALIGN) - 2), "left", "left")


def text_table(rows: list[dict[str, Any]], config: Config) -> tuple[list[str], list[list[str]]]:
    """Return (headers, cells) of ``report_rows`` for the terminal (two-line headers): fractions
    as percentages with one decimal, correlations, betas and Calmar ratios with two, the
    quadrant short (tracking/micro-cap: ``loose/high``), ``LARGE`` in the flag column; a row
    without metrics says why in the quadrant column."""
    windows = config.exposure.windows_weeks
    headers = ["#", "product", "bench", "weight", "weeks", "last NAV", "track\ncorr"]
    for w in windows:
        headers += [f"mc corr\n{w}w", f"mc beta\n{w}w", f"2000\ncorr {w}w", f"2000\nbeta {w}w"]
    headers += ["excess\nann", "excess\nmax DD", "excess\nCalmar", "quadrant\ntrack/mc", "flag"]
    cells = []
    for r in rows:
        line = ["-" if r["rank"] is None else str(r["rank"]), r["product"], r["benchmark"] or "-",
                _pct(r["weight"]), "-" if r["intervals"] is None else str(r["intervals"]),
                r["last"] or "-", _num(r["tracking_corr"])]
        for w in windows:
            line += [_num(r[f"corr_microcap_{w}w"]), _num(r[f"beta_microcap_{w}w"]),
                     _num(r[f"corr_csi2000_{w}w"]), _num(r[f"beta_csi2000_{w}w"])]
        quadrant = r["quadrant"] or "-"
        if r["rank"] is None and quadrant.startswith("no NAV known"):
            quadrant = "no NAV known yet"
        line += [_pct(r["excess_ann_return"]), _pct(r["excess_max_drawdown"]),
                 _num(r["excess_calmar"]), SHORT_QUADRANT.get(quadrant, quadrant),
                 "LARGE" if r["large_exposure"] else ""]
        cells.append(line)
    return headers, cells


def header_line(config: Config, as_of: dt.date) -> str:
    """The one line above the table: the day, the ranking window, what excess means, and the
    NAVs' point-in-time lag."""
    e = config.exposure
    return (f"as of {as_of}: ranked by micro-cap beta over the last {e.rank_window_weeks} weekly "
            "NAV intervals; excess = NAV return - benchmark return between the same NAV dates; "
            f"NAVs point-in-time, known {e.nav_lag_days} XSHG trading days after their date")


def legend(config: Config) -> list[str]:
    """The lines under the table: the abbreviations and the large-exposure flag's definition."""
    e = config.exposure
    w = e.rank_window_weeks
    return [
        "mc / 2000 corr, beta: correlation and beta of the product's weekly excess with the "
        "micro-cap (CSI 2000) excess over the same benchmark, last N weeks; track corr: NAV vs "
        f"benchmark return and excess ann / max DD / Calmar: the excess over the last {w} weeks; "
        "the benchmark is read at its last close on or before each NAV date",
        f"LARGE (the note's flag, quadrant loose/high): track corr < {e.loose_tracking_corr:g} and "
        f"mc corr {w}w >= {e.large_microcap_corr:g}: the product tracks its benchmark loosely "
        "while its excess follows micro-caps",
    ]


def evidence_text(result: dict[str, Any]) -> list[str]:
    """Return the terminal lines of ``crash_evidence``'s result (``evidence_json``): what was
    checked, the Spearman rho, two-sided p and n of each exposure measure, how to read rho, and
    the products (rank, benchmark, correlation, beta, excess in the window as a percentage)."""
    from tabulate import tabulate

    w = result["window_weeks"]
    lines = [f"out-of-sample check: exposure measured on what was known on "
             f"{result['measured_through']} (micro-cap correlation and beta over {w} weekly NAV "
             f"intervals) against each product's excess return over its benchmark from "
             f"{result['start']} to {result['end']}"]
    measures = [[f"micro-cap {label} ({w}w)", _fmt(result[key]["rho"], ".3f"),
                 _fmt(result[key]["p"], ".3g"), result[key]["n"]]
                for label, key in (("correlation", "correlation"), ("beta", "beta"))]
    lines += tabulate(measures, headers=["exposure measure", "Spearman rho", "p (two-sided)", "n"],
                      tablefmt="simple", disable_numparse=True,
                      colalign=("left", "right", "right", "right")).splitlines()
    lines.append("a negative rho: the products measured as more exposed lost more excess in the "
                 "window")
    cells = [[str(i + 1), r["product"], r["benchmark"], _num(r["corr"]), _num(r["beta"]),
              _pct(r["excess"])] for i, r in enumerate(result["products"])]
    lines += tabulate(cells, headers=["#", "product", "bench", f"mc corr {w}w", f"mc beta {w}w",
                                      "excess in window"],
                      tablefmt="simple", disable_numparse=True,
                      colalign=("right", "left", "left", "right", "right", "right")).splitlines()
    return lines


def evidence_json(evidence: dict[str, Any]) -> dict[str, Any]:
    """``crash_evidence``'s result with NaN as None (JSON-ready)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return _plain(value)

    return clean(evidence)


# -- the ranking's record (shown in the digest) ---------------------------------------------------

RECORD_KEY = "exposure ranking"
"""The ``scorecards`` row holding the last recorded out-of-sample check of the ranking."""


def record_evidence(db: Database, evidence: dict[str, Any], now: str | None = None) -> int:
    """Store ``evidence`` (a :func:`crash_evidence` result) as the ranking's record in the
    ``scorecards`` table (key ``RECORD_KEY``, one row, replaced by the next record), so the
    digest can show beside the exposed products whether the ranking has ever been shown to beat
    chance. ``now``: UTC ISO timestamp (default: the clock). Returns the rows changed."""
    from storage import scorecards
    from storage.util import utc_now

    data = evidence_json(evidence)
    score = {k: data[k] for k in ("measured_through", "window_weeks", "correlation", "beta")}
    with db.atomic():
        return scorecards.save(db, RECORD_KEY, data["start"], data["end"], now or utc_now(), score)


def recorded_evidence(db: Database, config: Config | None = None, as_of: dt.date | None = None
                      ) -> dict[str, Any] | None:
    """Return the ranking's last record (:func:`record_evidence`: ``start``, ``end``,
    ``measured_through``, ``window_weeks``, ``beta`` and ``correlation`` as ``{"rho", "p",
    "n"}``, ``computed_at``), or None when it was never recorded. With ``config`` and ``as_of``:
    None too when the check's window could not be measured on ``as_of``, its last NAVs (dated
    ``end``) not known yet (``exposure.nav_lag_days`` XSHG trading days after their date): a
    view of an earlier day does not show the check of a later crash."""
    from storage import scorecards

    record = scorecards.latest(db, RECORD_KEY)
    if record is None or config is None or as_of is None:
        return record
    lag = config.exposure.nav_lag_days
    try:
        known = (as_of if lag == 0
                 else TradingCalendar(config.calendar.extra_closed).previous(as_of, lag))
    except ValueError:  # as_of before the calendar's first sessions: nothing was known
        return None
    return record if dt.date.fromisoformat(record["end"]) <= known else None
