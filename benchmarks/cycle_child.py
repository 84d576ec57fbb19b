"""Child process of bench_cycle.py: one tree's daily cycle, timed in-process, on request.

Run as ``PYTHONPATH=<tree> python benchmarks/cycle_child.py DIR YEARS`` with the working
directory outside the trees: it imports the code of ``<tree>`` (the current checkout or a git
worktree of a baseline commit), builds DIR/histYEARSy.db (the synthetic history of
``bench_cycle``: every canonical series, ``YEARS`` years ending END, the previous day's cycle
run), prints ``ready <monitor package path> <db path>``, then answers each input line ``run`` with
the wall and CPU milliseconds of one daily cycle (``run_cycle`` for END on a fresh copy of the
database, on a fresh connection: nothing kept) and each line ``steady`` with the same figures for
the steady state (on a fresh copy, the previous day's cycle run first, untimed, on the same
connection, as consecutive cycles run: whatever a tree keeps between cycles is kept), and exits
at end of input. Only APIs present in every compared tree are used.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import numpy as np

END = dt.date(2024, 12, 31)
LEVELS = {
    "index.csi300.close": 3800, "index.csi500.close": 6000, "index.csi1000.close": 6500,
    "index.csi2000.close": 2500, "index.all_a.close": 5000, "index.microcap.close": 5000,
    "index.csi300.amount": 2.5e11, "index.csi500.amount": 1.5e11,
    "index.csi1000.amount": 1.5e11, "index.csi2000.amount": 1.2e11,
    "index.all_a.amount": 9e11, "yield.gov.1y": 2.0, "yield.gov.3y": 2.4, "yield.gov.5y": 2.6,
    "yield.credit.1y": 2.5, "yield.credit.3y": 3.0, "yield.credit.5y": 3.3,
    "theme.930713.close": 1500, "theme.930713.amount": 3e10, "theme.H30184.close": 4000,
    "theme.H30184.amount": 4e10, "theme.600519.close": 1700, "theme.600519.amount": 5e9,
}


def config_for(tree: Path):
    """The tree's shipped config with the CSV source (no network, no demo data)."""
    from monitor.config import SourceConfig, load_config

    return load_config(tree / "config" / "monitor.toml").model_copy(
        update={"source": SourceConfig(kind="csv")})


def build(path: Path, years: int, calendar, config, seed: int = 7) -> int:
    """Write ``years`` of synthetic daily observations ending END and run the cycle of the day
    before (steady state); return the row count."""
    from monitor.cycle import run_cycle
    from monitor.sources import CsvSource
    from storage import observations
    from storage.db import open_db

    days = calendar.days(dt.date(END.year - years + 1, 1, 1), END)
    rng = np.random.default_rng(seed)
    rows = []
    for name, level in LEVELS.items():
        if name.startswith("yield."):
            path_ = level + np.cumsum(rng.normal(0, 0.01, len(days)))
        else:
            path_ = level * np.exp(np.cumsum(rng.normal(0, 0.015, len(days))))
        rows += [(name, d.isoformat(), float(v), d.isoformat(), "bench")
                 for d, v in zip(days, path_, strict=True)]
    db = open_db(path)
    with db.atomic():
        observations.upsert(db, rows)
    run_cycle(db, config, calendar.previous(END), CsvSource(), calendar)  # the day before
    db.close()
    return len(rows)


def time_cycle(base: Path, config, calendar, tag: str, steady: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds of one daily cycle for END, in-process, on a fresh copy of ``base``;
    ``steady``: after the previous day's cycle on the same connection (not timed)."""
    from monitor.cycle import run_cycle
    from monitor.sources import CsvSource
    from storage.db import open_db

    path = base.with_name(f"{base.stem}-{tag}.db")
    shutil.copy(base, path)
    db = open_db(path)
    try:
        if steady:
            run_cycle(db, config, calendar.previous(END), CsvSource(), calendar)
        start, cpu = time.perf_counter(), time.process_time()
        run_cycle(db, config, END, CsvSource(), calendar)
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        db.close()
        path.unlink(missing_ok=True)


def main(folder: str, years: str) -> None:
    import monitor
    from monitor.calendar import TradingCalendar

    tree = Path(monitor.__file__).resolve().parent.parent
    calendar, config = TradingCalendar(), config_for(tree)
    base = Path(folder) / f"hist{years}y.db"
    build(base, int(years), calendar, config)
    time_cycle(base, config, calendar, "warm")  # first use: lazy imports, caches
    print("ready", Path(monitor.__file__).resolve(), base, flush=True)
    for i, line in enumerate(sys.stdin):
        if line.strip() in ("run", "steady"):
            wall, cpu = time_cycle(base, config, calendar, f"run{i}", line.strip() == "steady")
            print(f"{wall * 1e3:.6f} {cpu * 1e3:.6f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
