"""Raw fund holdings per report (``fund_reports`` + ``fund_holdings``).

A fund's report is stored whole: writing it again replaces its stock rows, and an identical
rewrite changes nothing. A fund recorded in ``fund_reports`` with 0 holdings was fetched and held
no SH/SZ A-share, which is different from a fund not fetched yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import pandas as pd
from sqlite_utils import Database

from storage.util import utc_now

COLUMNS = ("report_date", "fund_code", "fund_name", "stock_code", "holding_value", "fund_type")


class FundWrite(NamedTuple):
    """What storing one fund's report changed."""

    written: int  # holdings (stock rows) inserted or changed
    removed: int  # holdings stored before and absent from the report now
    report: int  # 1 when the report's own row (name, type, holding count, source) was written

    @property
    def total(self) -> int:
        """Every row changed."""
        return self.written + self.removed + self.report


def store_fund(db: Database, coverage: str, report_date: str, fund_code: str, fund_name: str,
               fund_type: str | None, holdings: Iterable[tuple[str, float]], source: str) -> FundWrite:
    """Store one fund's report (``holdings``: (stock code, value in yuan), one row per stock);
    return what changed (``FundWrite``).

    Call inside the caller's transaction.
    """
    new = dict(holdings)
    before = db.conn.total_changes
    db.execute(
        "INSERT INTO fund_reports (coverage, report_date, fund_code, fund_name, fund_type, holdings, "
        "source, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (coverage, report_date, "
        "fund_code) DO UPDATE SET fund_name = excluded.fund_name, fund_type = excluded.fund_type, "
        "holdings = excluded.holdings, source = excluded.source WHERE fund_reports.fund_name IS NOT "
        "excluded.fund_name OR fund_reports.fund_type IS NOT excluded.fund_type OR "
        "fund_reports.holdings IS NOT excluded.holdings OR fund_reports.source IS NOT excluded.source",
        [coverage, report_date, fund_code, fund_name, fund_type, len(new), source, utc_now()])
    old = dict(db.execute("SELECT stock_code, holding_value FROM fund_holdings WHERE coverage = ? AND "
                          "report_date = ? AND fund_code = ?", [coverage, report_date, fund_code]))
    report = db.conn.total_changes - before
    gone = [code for code in old if code not in new]
    if gone:
        db.conn.executemany("DELETE FROM fund_holdings WHERE coverage = ? AND report_date = ? AND "
                            "fund_code = ? AND stock_code = ?",
                            [(coverage, report_date, fund_code, c) for c in gone])
    changed = [(coverage, report_date, fund_code, c, float(v)) for c, v in new.items()
               if old.get(c) != v]
    db.conn.executemany(
        "INSERT INTO fund_holdings (coverage, report_date, fund_code, stock_code, holding_value) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (coverage, report_date, fund_code, stock_code) DO UPDATE "
        "SET holding_value = excluded.holding_value", changed)
    return FundWrite(len(changed), len(gone), report)


def fetched_funds(db: Database, coverage: str, report_date: str) -> set[str]:
    """Return the fund codes whose report for ``report_date`` is stored."""
    return {r[0] for r in db.execute("SELECT fund_code FROM fund_reports WHERE coverage = ? AND "
                                     "report_date = ?", [coverage, report_date])}


def report_dates(db: Database, coverage: str) -> list[str]:
    """Return the ISO report dates with at least one stored fund report, oldest first."""
    return [r[0] for r in db.execute("SELECT DISTINCT report_date FROM fund_reports WHERE coverage = ? "
                                     "ORDER BY report_date", [coverage])]


def load(db: Database, coverage: str, report_dates: Iterable[str]) -> pd.DataFrame:
    """Return the stored holdings of ``report_dates`` as ``COLUMNS`` (report_date a Timestamp,
    holding_value in yuan, fund_type None when unknown)."""
    dates = list(report_dates)
    marks = ",".join("?" * len(dates))
    rows = db.execute(
        "SELECT h.report_date, h.fund_code, r.fund_name, h.stock_code, h.holding_value, r.fund_type "
        "FROM fund_holdings h JOIN fund_reports r ON r.coverage = h.coverage AND "
        "r.report_date = h.report_date AND r.fund_code = h.fund_code "
        f"WHERE h.coverage = ? AND h.report_date IN ({marks}) "
        "ORDER BY h.report_date, h.fund_code, h.stock_code", [coverage, *dates]).fetchall()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["report_date"] = pd.to_datetime(frame["report_date"])
    frame["holding_value"] = frame["holding_value"].astype(float)
    return frame


def first_source(db: Database, coverage: str, report_date: str) -> str | None:
    """Return the smallest (alphabetically) source label of the fund reports stored for
    ``report_date`` (ISO) under ``coverage``, or None when none is stored."""
    row = db.execute("SELECT MIN(source) FROM fund_reports WHERE coverage = ? AND report_date = ?",
                     [coverage, report_date]).fetchone()
    return row[0] if row and row[0] else None
