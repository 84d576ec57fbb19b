"""Real data: the backtest of the default rules 2016-2023, and a walk-forward calibration
(thresholds from data up to 2019-12-31, scored on 2020-2023). Prints the tables (-s)."""

from __future__ import annotations

import datetime as dt
import tomllib

import pandas as pd
import pytest

from monitor import backtest, cli
from monitor.config import Config, load_config
from monitor.evaluation import gather
from monitor.sources.csv_import import import_files
from storage.db import open_db
from tests import realdata
from tests.conftest import DEFAULT_CONFIG


@pytest.fixture(scope="module")
def real_db(tmp_path_factory, real_data):
    tmp = tmp_path_factory.mktemp("backtest")
    frame = pd.concat([realdata.indices(real_data, "2014-01-01", "2023-12-31"),
                       realdata.themes(real_data, "2014-01-01", "2023-12-31"),
                       realdata.yields(real_data, "2008-04-22", "2023-12-31")])
    path = tmp / "real.db"
    import_files(open_db(path), [realdata.write_csv(frame, tmp / "real.csv")])
    return path


def test_backtest_default_rules_2016_2023(real_db, capsys):
    code = cli.main(["--config", str(DEFAULT_CONFIG), "--db", str(real_db), "backtest", "--start",
                     "2016-01-01", "--end", "2023-12-31"])
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + out)
    assert code == 0
    any_row = next(line for line in out.splitlines() if line.startswith("any rule"))
    caught, episodes = map(int, any_row.split()[2].split("/"))
    assert episodes >= 6 and caught >= 1


def test_walk_forward_calibration(real_db, capsys):
    config = load_config(DEFAULT_CONFIG)
    db = open_db(real_db)
    evidence = gather(db, config, dt.date(2014, 1, 2), dt.date(2019, 12, 31))
    snippet = backtest.calibrate(config, evidence.values, dt.date(2019, 12, 31))
    proposed = tomllib.loads(snippet)["rules"]
    data = config.model_dump()
    by_name = {r["name"]: r for r in proposed}
    data["rules"] = [by_name.get(r["name"], r) for r in data["rules"]]
    calibrated = Config.model_validate(data)
    after = gather(db, calibrated, dt.date(2020, 1, 1), dt.date(2023, 12, 31))
    rows_default = backtest.score(config, after.values, after.episodes, after.close)
    rows_calibrated = backtest.score(calibrated, after.values, after.episodes, after.close)
    with capsys.disabled():
        print("\nthresholds calibrated on 2014-2019 (quantile 0.95):\n" + snippet)
        print("2020-2023 with the default thresholds:\n" + backtest.table(rows_default))
        print("2020-2023 with the thresholds calibrated up to 2019-12-31:\n"
              + backtest.table(rows_calibrated))
    assert {r.rule for r in rows_calibrated} == {r.rule for r in rows_default}
