"""The live micro-cap index: continued day by day from stored market-cap cross-sections."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from monitor.calendar import TradingCalendar
from monitor.cycle import run_cycle
from monitor.sources.base import Fetched, FetchedPanel
from storage.db import open_db
from tests.conftest import table_snapshot

CAL = TradingCalendar()
DAYS = CAL.days(dt.date(2024, 1, 2), dt.date(2024, 2, 8))  # 26 trading days
CODES = ["000001", "000002", "600003"]


class CrossSections:
    """A source whose only live data is the daily cross-section (as stock_zh_a_spot_em gives)."""

    name = "akshare"

    def __init__(self, panels: dict[dt.date, pd.DataFrame]):
        self.panels = panels

    def fetch(self, as_of, since):
        return Fetched()

    def fetch_cross_section(self, as_of):
        return FetchedPanel(self.panels.get(as_of, pd.DataFrame()))


def panel(day: dt.date, closes: list[float], caps: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"date": day.isoformat(), "code": CODES, "close": closes, "total_mv": caps,
                         "is_st": [0, 0, 1], "available_at": day.isoformat(), "source": "test"})


def test_microcap_close_continues_from_the_cross_sections(tmp_path, default_config):
    db = open_db(tmp_path / "live.db")
    history_days, d1, d2 = DAYS[:-2], DAYS[-2], DAYS[-1]
    with db.atomic():  # 24 days of stored panel (all listed >= 20 days) and yesterday's close
        for day in history_days:
            db.conn.executemany("INSERT INTO stock_panel VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [tuple(r) for r in panel(day, [10, 20, 5], [2e9, 3e9, 1e9])
                                 .itertuples(index=False)])
        db.execute("INSERT INTO observations VALUES ('index.microcap.close', ?, 1000.0, ?, 't', 't')",
                   [history_days[-1].isoformat(), history_days[-1].isoformat()])
    source = CrossSections({
        d1: panel(d1, [11, 19, 9], [2.2e9, 2.85e9, 1.8e9]),  # +10%, -5%; 600003 is ST: excluded
        # d2: 000002 does a 2-for-1 split: close halves, cap unchanged -> 0%, not -50%
        d2: panel(d2, [11.55, 9.5, 9], [2.31e9, 2.85e9, 1.8e9]),
    })
    run_cycle(db, default_config, d1, source, CAL)
    close = dict(db.execute("SELECT date, value FROM observations WHERE series = 'index.microcap.close'"))
    assert close[d1.isoformat()] == pytest.approx(1000 * (1 + (0.10 - 0.05) / 2))  # 1025
    before = table_snapshot(db, exclude=("runs",))
    assert run_cycle(db, default_config, d1, source, CAL).status in ("unchanged", "partial", "ok")
    assert table_snapshot(db, exclude=("runs",)) == before  # a re-run changes nothing
    run_cycle(db, default_config, d2, source, CAL)
    close = dict(db.execute("SELECT date, value FROM observations WHERE series = 'index.microcap.close'"))
    assert close[d2.isoformat()] == pytest.approx(1025 * (1 + (0.05 + 0.0) / 2))
    stored = db.execute("SELECT COUNT(*) FROM stock_panel WHERE date = ?", [d2.isoformat()]).fetchone()
    assert stored == (3,)


def test_missing_yesterday_is_reported_not_invented(tmp_path, default_config):
    db = open_db(tmp_path / "live.db")
    d1 = DAYS[-1]
    result = run_cycle(db, default_config, d1, CrossSections({d1: panel(d1, [1, 2, 3], [1e9] * 3)}), CAL)
    assert "index.microcap" in result.failures and "cannot continue" in result.failures["index.microcap"]
    assert db.execute("SELECT COUNT(*) FROM observations WHERE series = 'index.microcap.close'"
                      ).fetchone() == (0,)
