"""The regime fits kept across runs (issue 15): ``storage.fit_cache`` beside the history database,
keyed by the data each fit was made on; and the replay's regime history filtered in one pass.

Cached fits must be the fits a fresh computation makes (so every value is equal), a changed data
point must refit, the history database must stay untouched, and a corrupt or unusable cache file
must only cost a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor import compute
from monitor.analysis.evidence import gather
from monitor.analysis.replay import scratch_copy
from monitor.calendar import TradingCalendar
from monitor.compute import history
from monitor.config import parse_config
from signals import regime
from storage import fit_cache, observations
from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG

START, END = dt.date(2022, 1, 4), dt.date(2023, 6, 30)
MIN_OBS = 120
SIGNAL = "regime.stress_prob"
CAL = TradingCalendar()


def _observations(seed: int = 5) -> list[tuple]:
    """Micro-cap and CSI All Share closes over [START, END] with a stress spell (synthetic)."""
    days = CAL.days(START, END)
    rng = np.random.default_rng(seed)
    n = len(days)
    stress = np.zeros(n, bool)
    stress[150:175] = stress[300:315] = True
    base = rng.normal(0.0003, 0.01, n)
    excess = np.where(stress, rng.normal(-0.003, 0.03, n), rng.normal(0.0004, 0.005, n))
    rows = []
    for name, r in (("index.all_a.close", base), ("index.microcap.close", base + excess)):
        closes = 5000 * np.exp(np.cumsum(r))
        rows += [(name, d.isoformat(), float(v), d.isoformat(), "test")
                 for d, v in zip(days, closes, strict=True)]
    return rows


@pytest.fixture(scope="module")
def params():
    text = DEFAULT_CONFIG.read_text().replace("min_obs = 250 ", f"min_obs = {MIN_OBS} ")
    config = parse_config(text)
    assert config.signal_params()["regime"]["min_obs"] == MIN_OBS
    return config.signal_params()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hist") / "history.db"
    db = open_db(path)
    with db.atomic():
        observations.upsert(db, _observations())
    db.close()
    return path


def _regime(source: Path, tmp: Path, params, cache, tag: str) -> tuple[pd.Series, list]:
    """The regime history on a scratch copy (as backtest computes it) and the fits it stored."""
    src = open_db(source)
    db = scratch_copy(src, tmp / f"scratch-{tag}.db", END)
    src.close()
    days = CAL.days(START, END)
    values = history(db, CAL, days[0], days[-1], params, names=[SIGNAL], fit_cache=cache)[0][SIGNAL]
    sql = "SELECT valid_from, fit_through, fit_json FROM regime_fits ORDER BY valid_from"
    fits = db.execute(sql).fetchall()
    db.close()
    return values, fits


@pytest.fixture(scope="module")
def fresh(source, params, tmp_path_factory):
    """The regime history and fits computed without any cache."""
    return _regime(source, tmp_path_factory.mktemp("fresh"), params, None, "fresh")


@pytest.fixture(scope="module")
def filled(source, params, tmp_path_factory):
    """A cache file filled by one cold run: (its path, that run's values and fits, the cache)."""
    tmp = tmp_path_factory.mktemp("filled")
    cache = fit_cache.FitCache(tmp / "filled.fits.sqlite")
    got = _regime(source, tmp, params, cache, "cold")
    cache.close()
    return tmp / "filled.fits.sqlite", got, cache


def _copy_of(filled, tmp_path: Path) -> fit_cache.FitCache:
    shutil.copy(filled[0], tmp_path / "c.fits.sqlite")
    return fit_cache.FitCache(tmp_path / "c.fits.sqlite")


def test_cached_fits_equal_fresh_fits(source, params, fresh, filled, tmp_path) -> None:
    values, fits = fresh
    assert values.notna().sum() > 150 and len(fits) >= 8
    cold = filled[1]
    assert filled[2].hits == 0 and filled[2].puts == len(fits)  # one entry per monthly fit
    cache = _copy_of(filled, tmp_path)
    warm = _regime(source, tmp_path, params, cache, "warm")
    assert cache.hits == len(fits) and cache.puts == 0  # every fit from the cache
    for got in (cold, warm):
        pd.testing.assert_series_equal(got[0], values)  # exactly equal values
        assert got[1] == fits  # the same fits (parameters to the last bit) stored
    # a second cache object on the same file (the next run) also hits
    again = fit_cache.FitCache(tmp_path / "c.fits.sqlite")
    pd.testing.assert_series_equal(_regime(source, tmp_path, params, again, "again")[0], values)
    assert again.hits == len(fits) and again.misses == 0


def test_a_changed_data_point_refits(source, params, fresh, filled, tmp_path) -> None:
    cache = _copy_of(filled, tmp_path)  # a fresh FitCache on a copy: its counters start at 0
    changed = tmp_path / "changed.db"
    shutil.copy(source, changed)
    db = open_db(changed)
    day = "2022-11-15"  # after the first fit: the fits from December on read it
    (value,) = db.execute("SELECT value FROM observations WHERE series = 'index.microcap.close' "
                          "AND date = ?", [day]).fetchone()
    db.execute("UPDATE observations SET value = ? WHERE series = 'index.microcap.close' AND date = ?",
               [value * 1.001, day])
    db.conn.commit()
    db.close()
    hits_before = cache.hits
    got, fits = _regime(changed, tmp_path, params, cache, "changed")
    later = [f for f in fits if f[0] > day]
    earlier = [f for f in fits if f[0] <= day]
    assert later and earlier
    assert cache.hits - hits_before == len(earlier)  # the fits made before the change: reused
    assert cache.puts == len(later)  # every fit made after it: a miss, refitted
    want, want_fits = _regime(changed, tmp_path, params, None, "changed-fresh")
    pd.testing.assert_series_equal(got, want)
    assert fits == want_fits
    assert not got.equals(fresh[0])


def _snapshot(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_backtest_evidence_uses_the_cache_and_leaves_the_history_untouched(source, params, tmp_path,
                                                                            fresh) -> None:
    path = tmp_path / "history.db"
    shutil.copy(source, path)
    config = parse_config(DEFAULT_CONFIG.read_text().replace("min_obs = 250 ", f"min_obs = {MIN_OBS} "))
    before = _snapshot(path)
    db = open_db(path)
    cache_file = fit_cache.path_for(db)
    assert cache_file == Path(f"{path}.fits.sqlite") and not cache_file.exists()
    first = gather(db, config, START, END)
    assert cache_file.exists()
    (entries,) = sqlite3.connect(cache_file).execute("SELECT count(*) FROM fits").fetchone()
    assert entries == len(fresh[1])
    second = gather(db, config, START, END)
    db.close()
    assert _snapshot(path) == before  # no fit, no table, nothing written into the history
    pd.testing.assert_frame_equal(first.values, second.values)
    np.testing.assert_array_equal(first.values[SIGNAL].to_numpy(), fresh[0].to_numpy())


@pytest.mark.parametrize("kind", ["garbage", "directory", "bad entry"])
def test_a_corrupt_cache_is_ignored_with_a_warning(source, params, fresh, filled, tmp_path, caplog,
                                                   kind) -> None:
    path = tmp_path / "c.fits.sqlite"
    if kind == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif kind == "directory":
        path.mkdir()
    else:  # a readable file whose entries do not decode: each a miss, then overwritten
        shutil.copy(filled[0], path)
        conn = sqlite3.connect(path)
        conn.execute("UPDATE fits SET value = '{not json'")
        conn.commit()
        conn.close()
    cache = fit_cache.FitCache(path)
    with caplog.at_level(logging.WARNING, logger="regime_monitor.fit_cache"):
        values, fits = _regime(source, tmp_path, params, cache, kind.replace(" ", "-"))
    pd.testing.assert_series_equal(values, fresh[0])
    assert fits == fresh[1]
    if kind == "bad entry":
        assert cache.hits == len(fits) and cache.puts == len(fits) and not cache.disabled
    else:
        assert cache.disabled and "ignored" in caplog.text
        assert len([r for r in caplog.records if r.name == "regime_monitor.fit_cache"]) == 1


def test_cache_file_basics(tmp_path) -> None:
    assert fit_cache.path_for(open_db(":memory:")) is None
    assert fit_cache.for_database(open_db(":memory:")) is None
    cache = fit_cache.FitCache(tmp_path / "x.fits.sqlite")
    assert cache.get("k") is None and not (tmp_path / "x.fits.sqlite").exists()  # reading creates nothing
    cache.put("k", "v")
    cache.put("k", "w")
    assert cache.get("k") == "w" and (tmp_path / "x.fits.sqlite").stat().st_mode & 0o777 == 0o600
    cache.close()


def test_fit_key_covers_data_and_inputs() -> None:
    y = np.arange(300, dtype=float) / 100
    key = regime.fit_key(y, dt.date(2024, 1, 31), dt.date(2024, 2, 1), 250, None)
    assert key == regime.fit_key(y.copy(), dt.date(2024, 1, 31), dt.date(2024, 2, 1), 250, None)
    y2 = y.copy()
    y2[17] = np.nextafter(y2[17], 1.0)  # one bit of one return
    others = [regime.fit_key(y2, dt.date(2024, 1, 31), dt.date(2024, 2, 1), 250, None),
              regime.fit_key(y[:-1], dt.date(2024, 1, 31), dt.date(2024, 2, 1), 250, None),
              regime.fit_key(y, dt.date(2024, 1, 30), dt.date(2024, 2, 1), 250, None),
              regime.fit_key(y, dt.date(2024, 1, 31), dt.date(2024, 2, 2), 250, None),
              regime.fit_key(y, dt.date(2024, 1, 31), dt.date(2024, 2, 1), 251, None),
              regime.fit_key(y, dt.date(2024, 1, 31), dt.date(2024, 2, 1), 250, (0.9,) * 6)]
    assert len({key, *others}) == 7


def test_regime_history_equals_the_per_run_filter(source, params, fresh, tmp_path) -> None:
    """The replay's regime history (all runs of days filtered in one pass) equals filtering each
    run of days under its fit from the series start, as before issue 15."""
    src = open_db(source)
    db = scratch_copy(src, tmp_path / "s.db", END)
    src.close()
    days = CAL.days(START, END)
    frame = observations.load_frame(db, ["index.all_a.close", "index.microcap.close"], days, END)
    p = params["regime"]
    batched = compute._regime_history(db, frame, days, p)
    excess = regime.microcap_excess_returns(frame)
    want = pd.Series(np.nan, index=pd.DatetimeIndex(pd.to_datetime(days)))
    runs = compute._runs_of_fits(days, lambda day: compute._regime_fit(db, frame.loc[:pd.Timestamp(day)],
                                                                       day, p))
    assert sum(f is not None for f, _ in runs) >= 8
    for f, group in runs:
        if f is not None:
            stamps = pd.DatetimeIndex(pd.to_datetime(group))
            want[stamps] = regime.filtered_stress_prob(excess.loc[:stamps[-1]], f).reindex(stamps).to_numpy()
    np.testing.assert_array_equal(batched.to_numpy(), want.to_numpy())
    np.testing.assert_array_equal(batched.to_numpy(), fresh[0].to_numpy())
    db.close()

