"""Real data end to end: CSIndex/EastMoney closes and amounts through `import-csv` give the
CSI 2000 turnover share exactly as amount(932000) / amount(000985) of the source file."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from monitor import cli
from monitor.calendar import TradingCalendar
from monitor.compute import compute_history
from storage import signal_values
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG

SERIES = {"932000": "index.csi2000", "000985": "index.all_a"}


def to_canonical_csv(source: pd.DataFrame, path) -> None:
    """Write the EastMoney frame as canonical long CSV (amount already in yuan)."""
    rows = []
    for code, prefix in SERIES.items():
        part = source[source["code"] == code]
        for col in ("close", "amount"):
            rows.append(pd.DataFrame({"date": part["date"], "series": f"{prefix}.{col}",
                                      "value": part[col]}))
    pd.concat(rows).to_csv(path, index=False)


@pytest.fixture(scope="module")
def imported(tmp_path_factory, real_data):
    real = real_data
    src = pd.read_csv(real / "em_index_daily_financialqa" / "index_daily_em.csv",
                      dtype={"code": str})
    src = src[src["code"].isin(list(SERIES)) & (src["date"] >= "2014-01-01")
              & (src["date"] <= "2023-12-31")]
    tmp = tmp_path_factory.mktemp("real")
    csv_path = tmp / "indices.csv"
    to_canonical_csv(src, csv_path)
    db_path = tmp / "real.db"
    assert cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(db_path), "import-csv",
                     str(csv_path)]) == 0
    return src, db_path, tmp


def test_csi2000_share_equals_the_source_ratio_on_every_day(imported):
    src, db_path, _ = imported
    amounts = src.pivot(index="date", columns="code", values="amount")
    expected = (amounts["932000"] / amounts["000985"]).dropna()
    assert len(expected) >= 2400  # ten years of trading days

    db = open_db(db_path)
    cal = TradingCalendar()
    got = compute_history(db, cal, dt.date(2014, 1, 1), dt.date(2023, 12, 31),
                          _params(), names=["turnover.csi2000_share"])["turnover.csi2000_share"]
    got.index = got.index.strftime("%Y-%m-%d")
    # every day of the source is an XSHG trading day, and every one has the share
    assert set(expected.index) <= set(got.index)
    diff = (got.reindex(expected.index) - expected).abs()
    assert diff.max() < 1e-15
    assert np.isfinite(got.reindex(expected.index)).all()
    # spot check by hand: 2023-12-29
    row = src[src["date"] == "2023-12-29"].set_index("code")["amount"]
    assert got["2023-12-29"] == pytest.approx(row["932000"] / row["000985"], rel=1e-15)


def test_the_daily_cycle_stores_the_same_share(imported):
    _, db_path, tmp = imported
    config_path = tmp / "csv.toml"
    config_path.write_text(DEFAULT_CONFIG.read_text().replace('kind = "demo"', 'kind = "csv"'))
    for day in ("2023-12-27", "2023-12-28", "2023-12-29"):
        assert cli.main(["--config", str(config_path), "--db", str(db_path), "once", "--as-of",
                         day]) == 0
    db = open_db(db_path)
    stored = {r["date"]: r["value"] for r in
              signal_values.history(db, "turnover.csi2000_share", dt.date(2023, 12, 27))}
    src = imported[0]
    amounts = src.pivot(index="date", columns="code", values="amount")
    for day, value in stored.items():
        assert value == pytest.approx(amounts.at[day, "932000"] / amounts.at[day, "000985"],
                                      rel=1e-15)
    assert len(stored) == 3


def _params():
    from monitor.config import load_config

    return load_config(DEFAULT_CONFIG).signal_params()
