"""Fund holdings: stored per report, turned into the quarterly ``funds.*`` observations.

Two ways in, one computation:

* ``import_frame``: a holdings CSV (``import-csv``), any number of report dates;
* ``run_holdings_job``: the daemon's quarterly job, fetching the active funds' top-10 holdings of
  the latest published quarter through the live source, resumable fund by fund.

Both store the raw holdings (``storage.holdings``) and then compute a report's allocation from
the stored holdings of that report and of the report before it (the "two consecutive reports"
rule of SIGNALS.md), with market caps from ``stock_panel``. So quarters can arrive one at a time,
in any order: storing a report also recomputes the report after it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from sqlite_utils import Database

from monitor.sources.base import HoldingsSource
from monitor.sources.polite import Skipped, SourceError
from signals import fund_allocation as fa
from storage import holdings as stored
from storage import observations, runs, stock_panel
from storage.util import dumps, utc_now

log = logging.getLogger("regime_monitor.holdings")

CAP_CARRY_DAYS = 30  # a suspended stock's last market cap stays usable this many calendar days
JOB = "holdings"
LIVE_COVERAGE = "top10"


class HoldingsError(ValueError):
    """Holdings cannot be turned into allocation values; one line naming what is missing."""


# --- report dates ----------------------------------------------------------------------------------

def quarter_end(day: dt.date) -> bool:
    """True when ``day`` is a quarter end (a fund report date)."""
    return (day.month, day.day) in {(3, 31), (6, 30), (9, 30), (12, 31)}


def quarter_end_of(year: int, quarter: int) -> dt.date:
    month = 3 * quarter
    return dt.date(year, month, 31 if month in (3, 12) else 30)


def previous_report(report: dt.date, coverage: str) -> dt.date:
    """Return the report date before ``report``: the previous quarter end for top-10 holdings,
    the previous half-year end for full holdings."""
    step = 1 if coverage == "top10" else 2
    index = report.year * 4 + (report.month - 1) // 3 - step
    return quarter_end_of(index // 4, index % 4 + 1)


def next_report(report: dt.date, coverage: str) -> dt.date:
    """Return the report date after ``report`` (the inverse of ``previous_report``)."""
    step = 1 if coverage == "top10" else 2
    index = report.year * 4 + (report.month - 1) // 3 + step
    return quarter_end_of(index // 4, index % 4 + 1)


def publication_lag_days(report: dt.date, coverage: str) -> int:
    """Return the calendar days after ``report`` from which its holdings are public."""
    if coverage == "top10":
        return fa.QUARTERLY_PUBLICATION_LAG_DAYS
    return fa.SEMIANNUAL_PUBLICATION_LAG_DAYS if report.month == 6 else fa.ANNUAL_PUBLICATION_LAG_DAYS


def due_report(today: dt.date) -> dt.date:
    """Return the latest quarter end whose top-10 holdings are published by ``today``
    (quarter end + ``QUARTERLY_PUBLICATION_LAG_DAYS``)."""
    index = today.year * 4 + (today.month - 1) // 3
    for back in range(1, 4):
        i = index - back
        quarter = quarter_end_of(i // 4, i % 4 + 1)
        if quarter + dt.timedelta(days=fa.QUARTERLY_PUBLICATION_LAG_DAYS) <= today:
            return quarter
    raise AssertionError("unreachable: a quarter ended at least 91 days ago")


# --- the computation -------------------------------------------------------------------------------

def market_caps(db: Database, report: dt.date) -> pd.Series:
    """Return each stock's latest total market cap (yuan) on or before ``report`` from
    ``stock_panel``, at most ``CAP_CARRY_DAYS`` earlier (suspended stocks keep their last cap)."""
    caps = stock_panel.caps_between(
        db, (report - dt.timedelta(days=CAP_CARRY_DAYS)).isoformat(), report.isoformat())
    if not caps:
        raise HoldingsError(f"no stock_panel market caps within {CAP_CARRY_DAYS} days before report "
                            f"date {report}: import the stock panel first")
    return pd.Series(caps, dtype=float)


def allocation_observations(db: Database, report: dt.date, coverage: str, source: str,
                            available_at: dt.date) -> list[observations.ObservationRow]:
    """Return the ``funds.*`` rows of ``report`` from the stored holdings of ``report`` and of the
    report before it (none when that one is not stored: the first report has no values).

    Rows are dated by the last trading day on or before ``report`` (``fa.to_observations``),
    available from ``available_at``, with source ``holdings:<coverage>;<source>``.
    """
    present = set(stored.report_dates(db, coverage))
    dates = [d for d in (previous_report(report, coverage), report) if d.isoformat() in present]
    if report not in dates:
        return []
    frame = stored.load(db, coverage, [d.isoformat() for d in dates])
    if frame.empty:
        return []
    caps = pd.concat({pd.Timestamp(d): market_caps(db, d) for d in dates},
                     names=["report_date", "stock_code"])
    types = frame.dropna(subset=["fund_type"]).drop_duplicates("fund_code").set_index("fund_code")
    series = fa.allocation_series(frame.drop(columns="fund_type"), caps,
                                  types["fund_type"] if not types.empty else None,
                                  coverage=coverage, publication_lag_days=0)
    series = series[series["date"] == pd.Timestamp(report)]
    series["available_at"] = pd.Timestamp(available_at)
    return [(s, d, v, a, f"{src};{source}") for s, d, v, a, src in fa.to_observations(series)]


@dataclass
class HoldingsWrite:
    """What ``import_frame`` changed."""

    positions: int = 0  # distinct (report date, fund, stock) holdings in the frame
    written: int = 0  # of them, inserted or changed
    removed: int = 0  # stored holdings absent from a re-imported fund report
    reports: int = 0  # fund report rows (name, type, count) written
    derived: int = 0  # funds.* observations inserted or changed
    series: set[str] = field(default_factory=set)  # funds.* series computed


def _store_frame(db: Database, holdings: pd.DataFrame, coverage: str, source: str,
                 out: HoldingsWrite) -> None:
    has_type = "fund_type" in holdings.columns
    for (report, fund), part in holdings.groupby(["report_date", "fund_code"], sort=True):
        fund_type = None
        if has_type:
            known = part["fund_type"].dropna()
            fund_type = str(known.iloc[0]) if len(known) else None
        rows = part.groupby("stock_code", sort=True)["holding_value"].sum()  # duplicates summed
        done = stored.store_fund(db, coverage, pd.Timestamp(report).date().isoformat(), str(fund),
                                 str(part["fund_name"].iloc[0]), fund_type, rows.items(), source)
        out.positions += len(rows)
        out.written += done.written
        out.removed += done.removed
        out.reports += done.report


def import_frame(db: Database, holdings: pd.DataFrame, coverage: str, source: str,
                 revised_from: str | None = None) -> HoldingsWrite:
    """Store ``holdings`` (columns ``fa.HOLDINGS_COLUMNS`` + optional ``fund_type``) and upsert the
    allocation of each of its report dates and of the stored report after each; return what
    changed (``HoldingsWrite``: holdings, fund reports and derived ``funds.*`` values counted
    apart). Values are available ``publication_lag_days`` after their report date; a value that
    changes a stored one is available from ``revised_from`` (ISO day: the import day) when that
    is later (``observations.upsert``), so a re-import never reaches days before it.

    Call inside the caller's transaction; raises HoldingsError.
    """
    out = HoldingsWrite()
    _store_frame(db, holdings, coverage, source, out)
    reports = {pd.Timestamp(d).date() for d in holdings["report_date"].unique()}
    present = set(stored.report_dates(db, coverage))
    affected = sorted(reports | {n for r in reports
                                 if (n := next_report(r, coverage)).isoformat() in present})
    for report in affected:
        available = report + dt.timedelta(days=publication_lag_days(report, coverage))
        label = source if report in reports else _report_source(db, coverage, report)
        rows = allocation_observations(db, report, coverage, label, available)
        out.series.update(r[0] for r in rows)
        out.derived += observations.upsert(db, rows, revised_from)
    return out


def _report_source(db: Database, coverage: str, report: dt.date) -> str:
    return stored.first_source(db, coverage, report.isoformat()) or "stored"


# --- the quarterly job -----------------------------------------------------------------------------

@dataclass
class HoldingsOutcome:
    """What one run of the quarterly job did."""

    report_date: dt.date
    status: str  # ok | partial | failed | done (already complete, nothing to do)
    funds: int = 0  # active funds in the source's list
    fetched: int = 0  # fund reports stored by this run
    missing: dict[str, int] = field(default_factory=dict)  # report date -> funds still not stored
    changed: int = 0  # database rows changed
    error: str | None = None

    def line(self) -> str:
        """Return a one-line summary for the log and the CLI."""
        text = (f"holdings {self.report_date}: {self.status}, {self.fetched} fund reports fetched "
                f"of {self.funds} active funds, {self.changed} rows changed")
        if self.missing:
            text += "; missing " + ", ".join(f"{d}: {n}" for d, n in self.missing.items())
        return text + (f"; {self.error}" if self.error else "")


def run_holdings_job(db: Database, source: HoldingsSource, today: dt.date, *,
                     report_date: dt.date | None = None, max_missing_share: float = 0.01,
                     top: int = 10, batch: int = 50, clock: Callable[[], str] = utc_now) -> HoldingsOutcome:
    """Fetch and store the top-10 holdings of the active funds for ``report_date`` (default: the
    latest published quarter, ``due_report``) and upsert its ``funds.*`` observations.

    Resumable: funds already stored for the quarter are not fetched again, and fetched funds are
    committed ``batch`` at a time. Until a run has completed the previous quarter (the first run,
    or a resumed one), its missing funds are fetched first, because a quarter's values need the
    report before it. The observations are
    written once at most ``max_missing_share`` of the active funds are missing for both quarters
    (status ``ok``); otherwise the run is ``partial`` and the next run fetches the rest. Values
    are available from max(quarter end + 30 days, ``today``): never before this system knew them.
    A run is recorded in ``runs`` (job ``holdings``, ``as_of`` the quarter end), its start and
    end stamped by ``clock()`` (ISO UTC now).

    ``source`` is a ``monitor.sources.base.HoldingsSource`` (``active_funds()`` and
    ``holdings_of(fund_code, report_date, top)``: the AKShare source).
    """
    report = report_date or due_report(today)
    outcome = HoldingsOutcome(report, "done")
    if report_date is None and runs.has_success(db, JOB, report.isoformat()):
        return outcome
    started = clock()
    coverage = LIVE_COVERAGE
    label = "akshare:fund_portfolio_hold_em"
    def finish(status: str, written: int) -> None:
        outcome.status = status
        with db.atomic():
            runs.record(db, JOB, report.isoformat(), started, clock(), status, error=outcome.error,
                        detail=_detail(outcome, written))

    try:
        funds = source.active_funds()
        outcome.funds = len(funds)
        prev = previous_report(report, coverage)
        # the previous quarter too, until a run has completed it (the first run, or a resumed one)
        targets = [report] if runs.has_success(db, JOB, prev.isoformat()) else [prev, report]
        reasons: list[str] = []
        for quarter in targets:
            if not _fetch_quarter(db, source, funds, quarter, top, batch, label, outcome, reasons):
                break  # the upstream looks unreachable: the next run resumes
        wanted = set(funds["fund_code"])
        for quarter in targets:
            missing = len(wanted - stored.fetched_funds(db, coverage, quarter.isoformat()))
            if missing:
                outcome.missing[quarter.isoformat()] = missing
        outcome.error = "; ".join(reasons) or None
        allowed = max_missing_share * len(wanted)
        if outcome.funds and all(n <= allowed for n in outcome.missing.values()):
            available = max(report + dt.timedelta(days=publication_lag_days(report, coverage)), today)
            rows = allocation_observations(db, report, coverage, label, available)
            with db.atomic():  # the values and their run row together
                outcome.changed += observations.upsert(db, rows)
                finish(runs.OK, len(rows))
        else:
            if not outcome.funds:
                outcome.error = "the source's active-fund list is empty"
            finish(runs.PARTIAL, 0)
    except (SourceError, HoldingsError) as exc:
        outcome.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finish(runs.FAILED, 0)
    log.info("%s", outcome.line())
    return outcome


def _fetch_quarter(db: Database, source: HoldingsSource, funds: pd.DataFrame, quarter: dt.date,
                   top: int, batch: int, label: str, outcome: HoldingsOutcome, reasons: list[str]) -> bool:
    """Fetch the ``funds`` not stored yet for ``quarter`` and store them ``batch`` at a time
    (counted in ``outcome``; the first failure's reason appended to ``reasons``). Return False
    when the source gave up on the upstream (``Skipped``)."""

    done = stored.fetched_funds(db, LIVE_COVERAGE, quarter.isoformat())
    pending: list[tuple] = []
    reachable = True
    for fund in funds.itertuples(index=False):
        if fund.fund_code in done:
            continue
        try:
            pending.append((fund, source.holdings_of(fund.fund_code, quarter, top)))
        except Skipped as exc:
            reasons.append(str(exc))
            reachable = False
            break
        except SourceError as exc:
            if not reasons:
                reasons.append(f"{fund.fund_code}: {exc}")
        if len(pending) >= batch:
            _store_fetched(db, quarter, pending, label, outcome)
            pending = []
    _store_fetched(db, quarter, pending, label, outcome)
    return reachable


def _store_fetched(db: Database, quarter: dt.date, fetched: list[tuple], label: str,
                   outcome: HoldingsOutcome) -> None:
    with db.atomic():
        for fund, part in fetched:
            rows = zip(part["stock_code"], part["holding_value"], strict=True)
            outcome.changed += stored.store_fund(db, LIVE_COVERAGE, quarter.isoformat(), fund.fund_code,
                                                 fund.fund_name, fund.fund_type, rows, label).total
    outcome.fetched += len(fetched)


def _detail(outcome: HoldingsOutcome, observations_written: int) -> str:
    return dumps({"funds": outcome.funds, "fetched": outcome.fetched, "missing": outcome.missing,
                  "observations": observations_written})
