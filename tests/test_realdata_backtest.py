"""Real data: the backtest of the default rules 2016-2023, and a walk-forward calibration
(thresholds from data up to 2019-12-31, scored on 2020-2023). Prints the tables (-s)."""

from __future__ import annotations

import datetime as dt
import time
import tomllib

import pandas as pd
import pytest

from monitor import backtest, cli, expr
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
    lines = out.splitlines()
    any_row = next(line for line in lines if line.startswith("any warning"))
    caught, episodes = map(int, any_row.split()[2].split("/"))
    assert episodes >= 6 and 0 <= caught <= episodes
    # the state alert is reported apart, after "any warning"; info rules last
    heading = lines.index("state alerts (restate a drawdown under way; not warnings)")
    assert lines.index(any_row) < heading and lines[heading + 1].startswith("microcap_drawdown")
    assert lines.index('info rules (not part of "any warning")') > heading
    # every row has its chance baseline; the verdict sentences name rows by name
    first = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    assert all(line.count("(p=") == 2 for line in lines[first:heading])
    for line in lines:
        if ": not shown to beat chance (p = " in line:
            p = float(line.split("(p = ")[1].split(")")[0].split(";")[0])
            assert p > 0.05, line

    # the same scores as data, and the cost of the baselines (printed with -s)
    config = load_config(DEFAULT_CONFIG)
    evidence = gather(open_db(real_db), config, dt.date(2016, 1, 1), dt.date(2023, 12, 31))
    started = time.perf_counter()
    rows = backtest.score(config, evidence.values, evidence.episodes, evidence.close, draws=0)
    plain = time.perf_counter() - started
    started = time.perf_counter()
    rows = backtest.score(config, evidence.values, evidence.episodes, evidence.close)
    full = time.perf_counter() - started
    with capsys.disabled():
        print(f"scoring {len(rows)} rows over {rows[0].days} days: {plain:.2f} s without baselines, "
              f"{full:.2f} s with 2 x {backtest.DRAWS} draws")
    assert full < 10
    by = {r.rule: r for r in rows}
    assert by["microcap_drawdown"].kind == "state" and by[backtest.ANY].kind == "union"
    assert (by[backtest.ANY].caught, by[backtest.ANY].episodes) == (caught, episodes)
    for r in rows:
        assert 0 <= r.caught <= r.warned <= r.episodes == episodes
        assert r.hits + r.late + r.false_alarms + r.unjudged == r.firings
        assert 0 < r.p_value <= 1 and 0 < r.shift_p <= 1


def test_walk_forward_calibration(real_db, capsys):
    config = load_config(DEFAULT_CONFIG)
    db = open_db(real_db)
    evidence = gather(db, config, dt.date(2014, 1, 2), dt.date(2019, 12, 31))
    snippet = backtest.calibrate(config, evidence.values, evidence.close, dt.date(2019, 12, 31))
    proposed = tomllib.loads(snippet)["rules"]
    data = config.model_dump()
    by_name = {r["name"]: r for r in proposed}
    data["rules"] = [by_name.get(r["name"], r) for r in data["rules"]]
    calibrated = Config.model_validate(data)
    after = gather(db, calibrated, dt.date(2020, 1, 1), dt.date(2023, 12, 31))
    rows_default = backtest.score(config, after.values, after.episodes, after.close)
    rows_calibrated = backtest.score(calibrated, after.values, after.episodes, after.close)
    with capsys.disabled():
        print("\nthresholds calibrated on 2014-2019 (caught - 1 x false alarms/yr):\n" + snippet)
        print("2020-2023 with the default thresholds:\n"
              + backtest.table(rows_default, legend=False))
        print("2020-2023 with the thresholds calibrated up to 2019-12-31:\n"
              + backtest.table(rows_calibrated, legend=False))
    assert {r.rule for r in rows_calibrated} == {r.rule for r in rows_default}
    # an explain that states a threshold states the new one
    drawdown = calibrated.rule("microcap_drawdown")
    threshold = expr.comparisons(drawdown.when_expr)[0].right.value
    if threshold != -0.10:
        assert "10%" not in drawdown.explain
        assert f"{backtest._plain(abs(threshold) * 100)}%" in drawdown.explain
