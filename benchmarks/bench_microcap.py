"""Benchmark: the micro-cap index reconstructed from the real stock panel (signals/microcap.py).

Run:  .venv/bin/python benchmarks/run.py --only microcap   (or this file directly)

Reads the real panel ../shared/data/real/ashare_stock_panel_liuruojiang/*.csv.gz (relative to the
repository root; 2,676 days x 4,911 stocks) and consolidates each frame into one float64 block
(read_csv gives one block per column, which makes every row access slow); loading is not timed.

Baseline: ``reconstruct_loop``, the straightforward per-day pandas loop (for each day: yesterday's
eligible caps, sort, take 400, average their returns), run once; its numbers must equal the
vectorised ones (asserted, rtol 1e-12). Measured against it, in the same process:

* ``reconstruct`` (vectorised, numpy) over the full panel: median wall time of ``repeat`` runs, half
  of them before and half after the loop. Target under 0.5 s; ratio loop / vectorised at least 50x,
  in wall time and in CPU time of the process (``time.process_time``, which moves less on a shared
  machine);
* the daily update (``daily_return`` from the last two rows), against the loop's mean cost per day:
  target under 20 ms;
* peak memory of one vectorised run (``tracemalloc``: the most memory allocated at any moment
  during the run, over the inputs already loaded), against the loop's peak: target under 500 MB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import MB, Group, Row, peak_bytes, print_report, timed  # noqa: E402

from signals import microcap  # noqa: E402

PANEL = ROOT.parent / "shared" / "data" / "real" / "ashare_stock_panel_liuruojiang"
FILES = ("close_raw_wide_2014_2024", "total_mv_yi_wide_2014_2024", "is_st_wide_2014_2024")
MAX_SECONDS = 0.5
MIN_SPEEDUP = 50.0
MAX_DAILY_MS = 20.0
MAX_PEAK_MB = 500.0


def load_panel(folder: Path = PANEL) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return (close, total_mv, is_st) from the panel's gz CSVs as consolidated float64 frames."""
    frames = []
    for name in FILES:
        raw = pd.read_csv(folder / f"{name}.csv.gz", index_col="date", dtype={"date": str})
        frames.append(pd.DataFrame(raw.to_numpy(dtype=np.float64), index=raw.index, columns=raw.columns))
    return frames[0], frames[1], frames[2]


def main(repeat: int = 7) -> list[Group]:
    """Run the benchmark on the real panel; return its group of rows."""
    close, mv, is_st = load_panel()
    inputs_mb = sum(f.to_numpy().nbytes for f in (close, mv, is_st)) / MB
    days, stocks = close.shape

    # half of the vectorised runs before the loop and half after it, so that a change of load on a
    # shared machine during the long loop run affects both sides alike
    walls, cpus = [], []

    def vectorised_runs(count: int):
        result = None
        for _ in range(count):
            wall, cpu, result = timed(microcap.reconstruct, close, mv, is_st)
            walls.append(wall)
            cpus.append(cpu)
        return result

    vectorised_runs(max(repeat // 2, 1))
    loop_s, loop_cpu, loop = timed(microcap.reconstruct_loop, close, mv, is_st)
    vec = vectorised_runs(max(repeat - repeat // 2, 1))
    np.testing.assert_allclose(vec.to_numpy(), loop.to_numpy(), rtol=1e-12, atol=1e-15)
    assert vec.loc["2014-03-01":].notna().all()
    vec_s, vec_cpu = statistics.median(walls), statistics.median(cpus)
    peak = peak_bytes(microcap.reconstruct, close, mv, is_st) / MB
    loop_peak = peak_bytes(microcap.reconstruct_loop, close, mv, is_st) / MB

    ld = microcap.listed_days(close)
    daily = []
    for _ in range(repeat):
        seconds, _, value = timed(microcap.daily_return, close.iloc[-2], close.iloc[-1], mv.iloc[-2],
                                  mv.iloc[-1], is_st.iloc[-2], ld.iloc[-2])
        daily.append(seconds)
    assert value == vec.iloc[-1]
    daily_ms, loop_day_ms = statistics.median(daily) * 1e3, loop_s / days * 1e3

    runs = len(walls)
    group = Group(
        f"micro-cap reconstruction, real panel {days:,} days x {stocks:,} stocks",
        [f"baseline: the per-day pandas loop (reconstruct_loop), run once: {loop_s:.3g} s wall, "
         f"{loop_cpu:.3g} s CPU, {loop_day_ms:.3g} ms/day, peak {loop_peak:.3g} MB; same numbers as "
         "the vectorised run (asserted)",
         "ratio: time rows loop / this (speedup; daily update: loop's mean ms per day / this), "
         "memory row this / loop"],
        notes=[f"vectorised runs: {min(walls):.3g} to {max(walls):.3g} s; half before, half after the "
               "loop, so a change of load on a shared machine hits both sides alike",
               f"peak memory is allocated over the inputs already in memory ({inputs_mb:.0f} MB, "
               "3 float64 frames, loaded from the gz CSVs before timing)"])
    group.rows = [
        Row(f"reconstruct (vectorised), wall, median of {runs}", vec_s, "s", below=MAX_SECONDS,
            ratio=loop_s / vec_s, ratio_min=MIN_SPEEDUP),
        Row(f"reconstruct (vectorised), CPU time, median of {runs}", vec_cpu, "s", below=MAX_SECONDS,
            ratio=loop_cpu / vec_cpu, ratio_min=MIN_SPEEDUP),
        Row(f"daily update (daily_return, last day), median of {repeat}", daily_ms, "ms",
            below=MAX_DAILY_MS, ratio=loop_day_ms / daily_ms),
        Row("peak memory of one reconstruct run (tracemalloc)", peak, "MB", below=MAX_PEAK_MB,
            ratio=peak / loop_peak),
    ]
    return [group]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    sys.exit(0 if print_report(main(ap.parse_args().repeat)) else 1)
