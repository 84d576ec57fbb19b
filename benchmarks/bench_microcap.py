"""Benchmark: the micro-cap index reconstructed from the real stock panel (signals/microcap.py).

Run:  .venv/bin/python benchmarks/bench_microcap.py [--repeat N]

Reads the real panel ../shared/data/real/ashare_stock_panel_liuruojiang/*.csv.gz (relative to the
repository root; 2,676 days x 4,911 stocks) and consolidates each frame into one float64 block
(read_csv gives one block per column, which makes every row access slow); loading is not timed. Then,
side by side in the same process:

* ``reconstruct`` (vectorised, numpy) over the full panel: median wall time of ``repeat`` runs, half of
  them before and half after the loop (target 0.5 s);
* ``reconstruct_loop``, the straightforward per-day pandas loop (for each day: yesterday's eligible
  caps, sort, take 400, average their returns), run once; its numbers must equal the vectorised ones
  (asserted, rtol 1e-12) and it must be at least 50x slower (target: vectorised / loop <= 0.02). The
  ratio of CPU times (``time.process_time``) is shown too: on a shared machine it moves less;
* peak memory of one vectorised run, measured with ``tracemalloc`` (numpy reports its array buffers
  to it): the most memory allocated at any moment during the run, over the inputs already loaded
  (target 2 GB). ``ru_maxrss`` is not used: loading the CSVs already set a higher process peak;
* the daily update (``daily_return`` from the last two rows), for information.

``main()`` returns the rows ``(name, measured, target, unit)`` (target None = information only; every
target is an upper bound) and prints them with the ratio measured / target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signals import microcap  # noqa: E402

PANEL = ROOT.parent / "shared" / "data" / "real" / "ashare_stock_panel_liuruojiang"
FILES = ("close_raw_wide_2014_2024", "total_mv_yi_wide_2014_2024", "is_st_wide_2014_2024")
MAX_SECONDS = 0.5
MIN_SPEEDUP = 50.0
MAX_PEAK_BYTES = 2 * 1024**3


def load_panel(folder: Path = PANEL) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return (close, total_mv, is_st) from the panel's gz CSVs as consolidated float64 frames."""
    frames = []
    for name in FILES:
        raw = pd.read_csv(folder / f"{name}.csv.gz", index_col="date", dtype={"date": str})
        frames.append(pd.DataFrame(raw.to_numpy(dtype=np.float64), index=raw.index, columns=raw.columns))
    return frames[0], frames[1], frames[2]


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def peak_bytes(fn, *args) -> int:
    """Peak bytes allocated (tracemalloc) while ``fn(*args)`` runs, above what was allocated before."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn(*args)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def print_table(rows) -> bool:
    """Print the rows with measured / target; return whether every target is met."""
    print(f"{'benchmark':<66} {'measured':>12} {'target':>12} {'ratio':>7}")
    for name, value, target, unit in rows:
        shown = f"{value:.4g} {unit}"
        if target is None:
            print(f"{name:<66} {shown:>12} {'-':>12} {'-':>7}")
        else:
            print(f"{name:<66} {shown:>12} {f'{target:.4g} {unit}':>12} {value / target:>7.2f}")
    ok = all(target is None or value <= target for _, value, target, _ in rows)
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return ok


def main(repeat: int = 7) -> list[tuple[str, float, float | None, str]]:
    """Run the benchmark on the real panel; return rows (name, measured, target, unit)."""
    start = time.perf_counter()
    close, mv, is_st = load_panel()
    load_s = time.perf_counter() - start
    inputs_gb = sum(f.to_numpy().nbytes for f in (close, mv, is_st)) / 1024**3
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
    peak = peak_bytes(microcap.reconstruct, close, mv, is_st)

    ld = microcap.listed_days(close)
    daily = []
    for _ in range(repeat):
        seconds, _, value = timed(microcap.daily_return, close.iloc[-2], close.iloc[-1], mv.iloc[-2],
                                  mv.iloc[-1], is_st.iloc[-2], ld.iloc[-2])
        daily.append(seconds)
    assert value == vec.iloc[-1]

    runs = len(walls)
    rows = [
        (f"reconstruct, full panel {days:,} d x {stocks:,} stocks, median of {runs}", vec_s,
         MAX_SECONDS, "s"),
        ("  fastest of the runs", min(walls), None, "s"),
        ("  slowest of the runs", max(walls), None, "s"),
        ("per-day pandas loop (reconstruct_loop), same numbers asserted", loop_s, None, "s"),
        ("vectorised / loop time (at least 50x faster)", vec_s / loop_s, 1 / MIN_SPEEDUP, "x"),
        ("  speedup loop / vectorised", loop_s / vec_s, None, "x"),
        ("  speedup in CPU time of the process (info, shared machines)", loop_cpu / vec_cpu, None, "x"),
        ("peak memory allocated by one reconstruct run (tracemalloc)", peak / 1024**3,
         MAX_PEAK_BYTES / 1024**3, "GB"),
        ("  inputs already in memory (3 float64 frames)", inputs_gb, None, "GB"),
        (f"daily update (daily_return, last day), median of {repeat}", statistics.median(daily) * 1e3,
         None, "ms"),
        ("loading the three gz CSVs + consolidating (not timed above)", load_s, None, "s"),
    ]
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    sys.exit(0 if print_table(main(ap.parse_args().repeat)) else 1)
