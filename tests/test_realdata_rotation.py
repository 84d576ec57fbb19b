"""Real data: hot-theme rotation episodes 2019-2023 on CSIndex theme indices, CSI 300 and 600519."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from monitor.alerting import rules
from monitor.calendar import TradingCalendar
from monitor.compute import compute_history
from monitor.config import load_config
from monitor.sources.csv_import import import_files
from signals.episodes import rotation_episodes
from storage.db import open_db
from tests import realdata
from tests.conftest import DEFAULT_CONFIG

NAMES = ["rotation.hot_theme_excess", "rotation.microcap_excess_10d",
         "rotation.largecap_minus_microcap_20d"]


@pytest.fixture(scope="module")
def spells(tmp_path_factory, real_data):
    tmp = tmp_path_factory.mktemp("rotation")
    db = open_db(tmp / "rot.db")
    frame = pd.concat([realdata.indices(real_data, "2018-06-01", "2023-12-31"),
                       realdata.themes(real_data, "2018-06-01", "2023-12-31")])
    import_files(db, [realdata.write_csv(frame, tmp / "indices.csv")])
    config = load_config(DEFAULT_CONFIG)
    cal = TradingCalendar()
    start, end = dt.date(2019, 1, 2), dt.date(2023, 12, 29)
    values = compute_history(db, cal, start, end, config.signal_params(), names=NAMES)
    # the hot theme's name (context) comes from the same function
    import signals

    sig = signals.REGISTRY["rotation.hot_theme_excess"]
    themes = [c for c in frame["series"].unique() if c.startswith("theme.") and c.endswith(".close")]
    from storage import observations

    wide = observations.load_frame(db, ["index.all_a.close", *themes],
                                   cal.days(dt.date(2018, 6, 1), end), end)
    _, hot = sig.compute(wide, config.signal_params()["rotation"])
    condition = rules.condition_history(config.rule("hot_theme_rotation"), values)
    micro = observations.load_frame(db, ["index.microcap.close"], cal.days(start, end), end)
    return rotation_episodes(condition, values["rotation.hot_theme_excess"], hot.reindex(values.index),
                             micro["index.microcap.close"])


def test_rotation_episodes_2019_2023(spells):
    print("\nRotation episodes 2019-2023 (rule hot_theme_rotation, default thresholds):")
    for e in spells:
        print(f"  {e.start} .. {e.end or e.last_day}  theme {e.theme}  peak excess "
              f"{e.theme_excess_peak:+.1%}  micro-cap drawdown {e.microcap_drawdown:+.1%}")
    assert spells
    for e in spells:
        assert e.microcap_drawdown <= 0
    # the note's 'core assets' rally: Dec 2020 - Feb 2021, micro-caps lagging
    core = [e for e in spells if dt.date(2020, 12, 1) <= e.start <= dt.date(2021, 2, 28)]
    assert core, "no rotation episode in the Dec 2020 - Feb 2021 'core assets' rally"
