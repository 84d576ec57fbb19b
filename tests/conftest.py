"""Shared fixtures: real SQLite files in tmp dirs, configs, and the real data in ../shared."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.config import Config, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = Path(os.environ.get("REGIME_MONITOR_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
DEFAULT_CONFIG = ROOT / "config" / "monitor.toml"
CLASSIC_CONFIG = ROOT / "config" / "note_conditions.toml"
"""The note's conditions as separate alerts (the pre-issue-11 default, shipped as an opt-in config):
a fixed rule set for tests of the alert machinery, which fires often on the demo scenario."""


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real third-party data folder. Missing: a failure in CI, a visible skip elsewhere."""
    if not (REAL_DATA / "PROVENANCE.md").exists():
        if os.environ.get("CI"):
            pytest.fail(f"real data folder {REAL_DATA} is missing (CI must have ../shared)")
        pytest.skip(f"real data folder {REAL_DATA} not found (set REGIME_MONITOR_REAL_DATA)")
    return REAL_DATA


@pytest.fixture
def default_config() -> Config:
    return load_config(DEFAULT_CONFIG)


@pytest.fixture
def classic_config() -> Config:
    return load_config(CLASSIC_CONFIG)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


class RecordingNotifier:
    """A notifier that keeps what it was asked to send (for tests of what gets delivered)."""

    destination = "test"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, payload: dict, dedup_key: str) -> None:
        self.sent.append((dedup_key, payload))


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


DemoHistory = Callable[[Config, dt.date, dt.date], Path]


@pytest.fixture(scope="session")
def demo_observations(tmp_path_factory) -> Path:
    """A database holding the whole demo scenario's observations (every row with the day it became
    available, as the daily fetches store them), and nothing else. Built once per session (once
    per xdist worker); read only: tests that write get a copy (:func:`copy_db`)."""
    from monitor.sources.demo import DEMO_END
    from monitor.sources.demo_source import DemoSource
    from storage import observations
    from storage.db import open_db

    path = tmp_path_factory.mktemp("demo-observations") / "observations.db"
    seed = load_config(DEFAULT_CONFIG).source.demo_seed
    db = open_db(path)
    with db.atomic():
        observations.upsert(db, DemoSource(seed).fetch(DEMO_END, None).rows)
    db.close()
    return path


@pytest.fixture(scope="session")
def demo_history(demo_observations, tmp_path_factory) -> DemoHistory:
    """``demo_history(config, start, end)``: the path of a database holding the demo scenario run
    through the daily cycle for every trading day in [start, end] under ``config``, as the daemon
    would, built by replay (``monitor.analysis.replay``: the signals of the whole period in one
    vectorised pass, then the daemon's own ``run_cycle`` for each day; replay equals the live run,
    ``tests/test_replay.py``). Nothing is delivered: digests stay in the outbox, unsent. Built once
    per session for each (config, start, end); read only: tests that write get a copy
    (:func:`copy_db`). Tests of the live day-by-day path itself build their own."""
    from monitor.analysis.replay import replay
    from storage.db import open_db

    built: dict[tuple[str, dt.date, dt.date], Path] = {}

    def get(config: Config, start: dt.date, end: dt.date) -> Path:
        key = (config.model_dump_json(), start, end)
        if key not in built:
            path = tmp_path_factory.mktemp("demo-history") / "demo.db"
            source = open_db(demo_observations)
            result = replay(source, config, start, end, path)
            result.db.close()
            source.close()
            built[key] = path
        return built[key]

    return get


def copy_db(path: Path, dest: Path) -> Path:
    """Copy the SQLite database at ``path`` (a closed one: its -wal folded in) to ``dest``; return
    ``dest``."""
    shutil.copy(path, dest)
    return dest


def config_from(text: str) -> Config:
    """Parse a TOML config text (tests)."""
    return parse_config(text, "<test>")


def table_snapshot(db, exclude: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Return every row of every table (sorted), to compare database states exactly."""
    out = {}
    for name in db.table_names():
        if name in exclude:
            continue
        out[name] = sorted(db.execute(f"SELECT * FROM [{name}]").fetchall(), key=repr)
    return out


@pytest.fixture(scope="module")
def permissions_apply(tmp_path_factory) -> None:
    """Skip when a read-only file cannot be made read-only for a child process (see
    ``tests.procs.OBEY_MODES``)."""
    import subprocess
    import sys

    from tests.procs import OBEY_MODES

    probe = tmp_path_factory.mktemp("probe") / "read-only"
    probe.write_text("x")
    probe.chmod(0o400)
    try:
        result = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}, 'a')"],
                                capture_output=True, timeout=30, preexec_fn=OBEY_MODES)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run a process that obeys file modes: {exc}")
    if result.returncode == 0:
        pytest.skip("file modes are not enforced for this user (root without capability drop)")
