"""Real data: the credit spread from the two ChinaBond yield files equals the published spread."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import signals
from monitor.calendar import TradingCalendar
from monitor.compute import compute_history
from monitor.sources.csv_import import import_files
from storage.db import open_db
from tests import realdata

PARAMS = signals.resolved_params()  # the defaults of SIGNALS.md


@pytest.fixture(scope="module")
def credit_db(tmp_path_factory, real_data):
    tmp = tmp_path_factory.mktemp("credit")
    db = open_db(tmp / "credit.db")
    import_files(db, [realdata.write_csv(realdata.yields(real_data, "2008-04-22", "2024-06-30", (3,)),
                                         tmp / "yields.csv")])
    return db


def test_spread_bp_equals_the_published_spread_on_every_common_day(credit_db, real_data):
    published = pd.read_csv(real_data / "credit_spread_chinabond_tempest07" /
                            "mtn_aaa_minus_cgb_spread_daily.csv")
    published = published[(published["tenor_years"] == 3) & (published["date"] <= "2024-06-30")]
    published = published.set_index("date")["spread_bp"]
    cal = TradingCalendar()
    got = compute_history(credit_db, cal, dt.date(2008, 4, 22), dt.date(2024, 6, 28),
                          PARAMS,
                          names=["credit.spread_bp"])["credit.spread_bp"].dropna()
    got.index = got.index.strftime("%Y-%m-%d")
    common = got.index.intersection(published.index)
    # every exchange trading day with both legs published is compared; ChinaBond's weekend
    # make-up working days are not exchange trading days and are dropped on alignment
    assert len(common) >= 3900
    weekend = [d for d in published.index if not cal.is_trading_day(dt.date.fromisoformat(d))]
    assert set(common) == set(published.index) - set(weekend)
    diff = (got[common] - published[common]).abs()
    assert diff.max() < 0.01, diff.idxmax()
    # a value checked by hand: 2018-02-26, the 2018 maximum of 171.32 bp (PROVENANCE.md)
    assert got["2018-02-26"] == pytest.approx(171.32, abs=0.01)


def test_ten_year_percentile_and_late_2023_low_base(credit_db):
    cal = TradingCalendar()
    hist = compute_history(credit_db, cal, dt.date(2016, 1, 1), dt.date(2024, 6, 28), PARAMS,
                           names=["credit.spread_pctile_10y", "credit.spread_chg_20d"])
    pct = hist["credit.spread_pctile_10y"]
    assert pct.dropna().between(0, 1).all()
    # needs 80% of 2,520 days: the MTN 3y leg starts 2008-04-22, so the percentile exists from 2016
    assert pct.first_valid_index().year == 2016
    # the note: late 2023 spreads (~42-47 bp) sit near the ten-year floor
    late_2023 = pct["2023-10-01":"2023-12-29"]
    assert late_2023.median() <= 0.10
