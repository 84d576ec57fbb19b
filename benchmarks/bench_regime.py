"""Benchmark: the regime model's share of a replay or backtest, against the span and the fit cache.

Run:  .venv/bin/python benchmarks/run.py --only regime   (or this file directly)

What is timed: ``monitor.compute.history`` of ``regime.stress_prob`` alone on a scratch copy of a
synthetic history (micro-cap and CSI All Share closes, a two-regime excess return, ending
2024-12-31), exactly what `replay` and `backtest` compute for that signal: the daily cycle's
monthly refits on an expanding window (a cold fit, then warm EM month after month) and each day
filtered under its month's fit. statsmodels is imported before the clock starts (the same fixed
cost for every span). Each figure is one child process per run (nothing shared between runs),
median of N runs, the configurations in turn, round after round.

Baseline: the code before issue 15 (commit fc32b43, ``BEFORE15``), checked out with
`git worktree add` into a temporary folder and run in the same benchmark with the same venv
(``PYTHONPATH`` pointing at it). Its monthly filter restarted from the first day for every month
(months x days), and every backtest refitted every month cold because it works on a scratch copy.

Group "regime model vs span" (issue 15 goal 3): 10 and 20 years (the last years of one 20-year
path), ratio = the 20-year figure / the 10-year figure of the same code, at most 2.2 (linear in the
span). Rows: cold (every fit estimated), cached (the fits read from the cache), and cold without the
time spent estimating (``regime.fit``): the filter and the schedule, the part issue 15 made linear.
The estimation runs warm EM over the whole expanding window each month, to convergence: its cost
per fit depends on the data (how many EM steps the month needs) more than on the window's length
at these spans, so it is the part that can push the ratio past 2.2; only the cache removes it.
Group "backtest's regime part, cold vs cached" (goal 1):
11 years (2014-2024), ratio = BEFORE15's figure / this (a speed-up); cached = the fits of an
earlier run read from the cache file beside the history database (``storage.fit_cache``), as
every backtest after the first does.
The values of every configuration are checked equal to BEFORE15's within 1e-12 (the largest
difference is printed: a few values are one rounding step apart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import Group, Row, load, print_report, worktree  # noqa: E402

BASELINE_COMMIT = "fc32b43"
RUNS = 3
MAX_SPAN_RATIO = 2.2
MIN_CACHED_SPEEDUP = 3.0
MAX_CACHED_S = 5.0
MAX_VALUE_DIFF = 1e-12
"""Largest difference (probability) from BEFORE15's values the group accepts: the refactored
filter and model compute the same numbers, a few of them one rounding step apart (5.6e-17 seen)."""
SIGNAL = "regime.stress_prob"


# --- the child: one timing in one tree ---------------------------------------------------------------


def child(tree: str, years: int, mode: str, work: str) -> None:
    """Print JSON {seconds, hash, fits}: the regime history over ``years`` in the tree on
    PYTHONPATH (``mode``: "cold", or "cached" with the cache file in ``work``)."""
    import datetime as dt

    import numpy as np

    t_import = time.perf_counter()
    from statsmodels.tsa.regime_switching import markov_regression  # noqa: F401  (before the clock)

    import_s = time.perf_counter() - t_import

    import monitor
    from monitor.analysis.replay import scratch_copy
    from monitor.calendar import TradingCalendar
    from monitor.compute import history
    from monitor.config import load_config
    from storage import observations
    from storage.db import open_db

    if not monitor.__file__.startswith(tree):
        raise RuntimeError(f"imported {monitor.__file__}, not the tree at {tree}")
    end = dt.date(2024, 12, 31)
    start = dt.date(end.year - years + 1, 1, 1)
    cal = TradingCalendar()
    tag = hashlib.sha1(tree.encode()).hexdigest()[:8]
    src_path = Path(work) / f"src-{tag}-{years}y.db"
    if not src_path.exists():  # deterministic: the same data in both trees, every span the last
        # years of one 20-year path (a shorter span is a sub-span of the longer one)
        all_days = cal.days(dt.date(end.year - 19, 1, 1), end)
        rng = np.random.default_rng(15)
        n = len(all_days)
        state = np.zeros(n, int)
        s = 0
        for i in range(n):
            if rng.random() < (0.01 if s == 0 else 0.05):
                s = 1 - s
            state[i] = s
        base = rng.normal(0.0003, 0.012, n)
        excess = np.where(state == 1, rng.normal(-0.002, 0.025, n), rng.normal(0.0005, 0.006, n))
        days = cal.days(start, end)
        keep = len(days)
        rows = []
        micro = base + excess
        for name, r in (("index.all_a.close", base[-keep:]), ("index.microcap.close", micro[-keep:])):
            closes = 5000 * np.exp(np.cumsum(r))
            rows += [(name, d.isoformat(), float(v), d.isoformat(), "bench")
                     for d, v in zip(days, closes, strict=True)]
        db = open_db(src_path)
        with db.atomic():
            observations.upsert(db, rows)
        db.close()
    params = load_config(Path(tree) / "config" / "monitor.toml").signal_params()
    src = open_db(src_path)
    db = scratch_copy(src, Path(work) / f"scratch-{tag}.db", end)
    src.close()
    days = cal.days(start, end)
    kwargs = {}
    cache = None
    if mode == "cached":
        from storage.fit_cache import FitCache

        cache = FitCache(Path(work) / f"regime-{years}y.fits.sqlite")
        kwargs["fit_cache"] = cache
    from signals import regime

    estimating = [0.0]
    real_fit = regime.fit

    def timed_fit(*args, **kw):  # the estimation's share (current_fit calls the module's fit)
        t = time.perf_counter()
        try:
            return real_fit(*args, **kw)
        finally:
            estimating[0] += time.perf_counter() - t

    regime.fit = timed_fit
    t0 = time.perf_counter()
    values = history(db, cal, days[0], days[-1], params, names=[SIGNAL], **kwargs)[0][SIGNAL]
    seconds = time.perf_counter() - t0
    fits = db.execute("SELECT count(*) FROM regime_fits").fetchone()[0]
    db.close()
    arr = np.ascontiguousarray(values.to_numpy(), dtype="<f8")
    print(json.dumps({"seconds": seconds, "rest": seconds - estimating[0],
                      "hash": hashlib.sha256(arr.tobytes()).hexdigest(), "values": arr.tolist(),
                      "fits": fits, "hits": cache.hits if cache else 0, "n": int(values.count()),
                      "import_s": import_s}))


# --- the parent --------------------------------------------------------------------------------------


class Tree:
    def __init__(self, name: str, path: Path, work: Path) -> None:
        self.name, self.path, self.work = name, path, work
        self.env = {**os.environ, "PYTHONPATH": str(path)}

    def run(self, years: int, mode: str) -> dict:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(self.path),
                              str(years), mode, str(self.work)], env=self.env, cwd=self.work,
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main(runs: int = RUNS) -> list[Group]:
    """Time the regime history here and at BEFORE15: 10 and 20 years cold, 11 years cold and cached."""
    load_start = load()
    results: dict[tuple[str, int, str], list[dict]] = {}
    configs = [("now", 10, "cold"), ("before", 10, "cold"), ("now", 20, "cold"), ("before", 20, "cold"),
               ("now", 11, "cold"), ("before", 11, "cold"), ("now", 11, "cached"), ("now", 20, "cached"),
               ("now", 10, "cached")]
    with tempfile.TemporaryDirectory(prefix="bench-regime-") as tmp:
        work = Path(tmp)
        with worktree(work / "baseline", BASELINE_COMMIT) as base_path:
            trees = {"now": Tree("now", ROOT, work), "before": Tree("before", base_path, work)}
            for years in (10, 11, 20):  # fill the caches (and build the databases): untimed
                trees["now"].run(years, "cached")
            for _ in range(runs):
                for tree, years, mode in configs:
                    results.setdefault((tree, years, mode), []).append(trees[tree].run(years, mode))
    load_end = load()
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    rest = {k: statistics.median(r["rest"] for r in v) for k, v in results.items()}
    # the largest difference from BEFORE15's values of the same span (NaN where theirs is NaN)
    diff = 0.0
    for (_tree, years, _mode), rs in results.items():
        ref = np.array(results[("before", years, "cold")][0]["values"], dtype=float)
        for r in rs:
            got = np.array(r["values"], dtype=float)
            if got.shape != ref.shape or not np.array_equal(np.isnan(got), np.isnan(ref)):
                diff = math.inf
            else:
                diff = max(diff, float(np.nanmax(np.abs(got - ref), initial=0.0)))
    equal = diff <= MAX_VALUE_DIFF
    same = (("identical (bit for bit)" if diff == 0.0 else
             f"equal within {MAX_VALUE_DIFF:g} (largest difference {diff:.2g})") if equal else
            f"NOT equal (largest difference {diff:.2g})")
    hits = {k: v[-1]["hits"] for k, v in results.items()}
    fits = {k: v[-1]["fits"] for k, v in results.items()}
    per_fit = {y: (med[("now", y, "cold")] - rest[("now", y, "cold")]) / fits[("now", y, "cold")] * 1e3
               for y in (10, 20)}  # ms of estimation per monthly fit
    n = {y: results[("now", y, "cold")][-1]["n"] for y in (10, 11, 20)}
    import_s = statistics.median(r["import_s"] for r in results[("now", 11, "cached")])
    span_now = med[("now", 20, "cold")] / med[("now", 10, "cold")]
    span_before = med[("before", 20, "cold")] / med[("before", 10, "cold")]
    span_cached = med[("now", 20, "cached")] / med[("now", 10, "cached")]
    span_rest = rest[("now", 20, "cold")] / rest[("now", 10, "cold")]
    span_rest_before = rest[("before", 20, "cold")] / rest[("before", 10, "cold")]
    span = Group(
        "regime model vs span: regime.stress_prob history on a scratch copy (synthetic; replay path)",
        [f"baseline: the same code's 10-year figure: now {med[('now', 10, 'cold')]:.3g} s cold, "
         f"{med[('now', 10, 'cached')]:.3g} s cached; BEFORE15 ({BASELINE_COMMIT}, worktree, same run) "
         f"{med[('before', 10, 'cold')]:.3g} s cold",
         "ratio: this / the 10-year figure of the same code (at most 2.2: linear in the span)"],
        [Row(f"now, 10y ({n[10]:,} days), cold fits, median of {runs}", med[("now", 10, "cold")], "s",
             below=60.0, ratio=1.0),
         Row(f"now, 20y ({n[20]:,} days), cold fits, median of {runs}", med[("now", 20, "cold")], "s",
             below=120.0, ratio=span_now, ratio_max=MAX_SPAN_RATIO),
         Row(f"now, 20y, fits from the cache, median of {runs}", med[("now", 20, "cached")], "s",
             below=MAX_CACHED_S * 2, ratio=span_cached, ratio_max=MAX_SPAN_RATIO),
         Row("now, 20y, all but the estimation (filter, schedule), cold", rest[("now", 20, "cold")], "s",
             below=10.0, ratio=span_rest, ratio_max=MAX_SPAN_RATIO)],
        [f"BEFORE15 in the same run: 10y {med[('before', 10, 'cold')]:.3g} s, 20y "
         f"{med[('before', 20, 'cold')]:.3g} s: 20y / 10y = {span_before:.2f}x (each month filtered "
         f"from the series start); now 20y / 10y = {span_now:.2f}x cold, {span_cached:.2f}x cached",
         f"all but the estimation (filter and schedule; the time outside regime.fit): now 10y "
         f"{rest[('now', 10, 'cold')]:.3g} s, 20y {rest[('now', 20, 'cold')]:.3g} s ({span_rest:.2f}x); "
         f"BEFORE15 10y {rest[('before', 10, 'cold')]:.3g} s, 20y {rest[('before', 20, 'cold')]:.3g} s "
         f"({span_rest_before:.2f}x)",
         f"values against BEFORE15's (every run, every mode): {same}",
         f"monthly fits: 10y {fits[('now', 10, 'cold')]}, 20y {fits[('now', 20, 'cold')]} "
         f"({fits[('now', 20, 'cold')] / fits[('now', 10, 'cold')]:.2f}x: the first year has no "
         "fit in either span); estimation per fit: 10y "
         f"{per_fit[10]:.2f} ms, 20y {per_fit[20]:.2f} ms "
         "(warm EM to convergence on the expanding window: the steps a month needs depend on the data)",
         f"load average at the start: {load_start}; at the end: {load_end}"])
    before11, cold11, cached11 = (med[("before", 11, "cold")], med[("now", 11, "cold")],
                                  med[("now", 11, "cached")])
    cache = Group(
        "backtest's regime part, cold vs cached fits: 11 years 2014-2024 (synthetic), scratch copy",
        [f"baseline: BEFORE15 ({BASELINE_COMMIT}, worktree, same run), which refitted every month "
         f"cold on every backtest: {before11:.3g} s, median of {runs}",
         "ratio: baseline / this (a speed-up)"],
        [Row(f"now, cold (first run: fits estimated, cache filled), median of {runs}", cold11, "s",
             below=60.0, ratio=before11 / cold11, ratio_min=1.0),
         Row(f"now, cached (every later run: {hits[('now', 11, 'cached')]} fits read), median of {runs}",
             cached11, "s", below=MAX_CACHED_S, ratio=before11 / cached11, ratio_min=MIN_CACHED_SPEEDUP)],
        [f"values against BEFORE15's: {same}; a changed data point misses the "
         "cache from the first fit that reads it (tests/test_fit_cache.py)",
         f"statsmodels is imported before the clock in every child ({import_s:.3g} s, median of the "
         f"cached 11y runs): a cached backtest does not import it at all, so the saving a user sees "
         f"is larger than shown",
         f"load average at the start: {load_start}; at the end: {load_end}"])
    if not equal:
        raise RuntimeError(f"regime values differ from BEFORE15: {same}")
    return [span, cache]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=RUNS)
    sys.exit(0 if print_report(main(ap.parse_args().repeat)) else 1)
