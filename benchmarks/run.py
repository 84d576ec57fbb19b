"""Benchmarks: every figure with its target, its ratio to a stated baseline, and PASS/FAIL.

Run:  .venv/bin/python benchmarks/run.py [--only GROUP ...] [--repeat N]

GROUP is one of microcap, cycle, regime, replay, query, cli, tuning, import (default: all but
import, in that order; import takes many minutes and about 10 GB of temporary disk, so it runs only
when named). Each group prints its baseline (what every ratio in it is measured against), a table -
figure, measured value, absolute target, ratio to the baseline, target on that ratio, PASS/FAIL -
and footnotes.
The command exits non-zero if any row fails. The groups live in:

* bench_microcap.py: the micro-cap index reconstructed from the real stock panel, against the
  per-day pandas loop;
* bench_cycle.py: one daily cycle at 2, 5 and 10 years of stored history, against 2 years; the
  regime model's fit and filter, against a cold fit;
* bench_replay.py: the replay of the real data over 1, 5, 10 and 11 years, against 1 year; the
  10-year signal-history query from SQLite, against a naive pandas read of the whole table;
* bench_regime.py: the regime model's share of a replay/backtest (synthetic) at 10 and 20 years,
  against the 10-year figure (linear in the span), and cold vs cached fits over 2014-2024, against
  the code before issue 15 (commit fc32b43, in a temporary git worktree);
* bench_cli.py: `demo`, `--help` and `signals` as a user runs them (child processes), against the
  code before issue 14 (commit 47b993d, checked out in a temporary git worktree);
* bench_tuning.py: `backtest`, a 20-point `backtest --sweep` and `replay` of the real data
  2014-2024 as child processes, against a notebook-style pandas baseline the benchmark implements
  (and the code before issue 15, commit fc32b43, in a temporary git worktree, in the footnotes);
* bench_import.py: `import-csv` of a 100 MB and a 1 GB long-format CSV in a child process (wall
  time, rows/s, peak RSS), against the pre-fix import (commit 5606ec9) on the 100 MB file.

Every group also measures the peak memory (tracemalloc; import: the child's peak RSS) of each of
its configurations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_report  # noqa: E402

GROUPS = ("microcap", "cycle", "regime", "replay", "query", "cli", "tuning", "import")
DEFAULT = GROUPS[:-1]  # import (minutes, a 1 GB file) only with --only import


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=GROUPS, metavar="GROUP",
                    help=f"run only these groups ({', '.join(GROUPS)})")
    ap.add_argument("--repeat", type=int, default=7,
                    help="timed runs of the vectorised reconstruction and of the in-process cycle")
    args = ap.parse_args()
    wanted = set(args.only or DEFAULT)
    start = time.perf_counter()
    groups = []
    if "microcap" in wanted:
        import bench_microcap

        groups += bench_microcap.main(args.repeat)
    if "cycle" in wanted:
        import bench_cycle

        groups += bench_cycle.main(args.repeat)
    if "regime" in wanted:
        import bench_regime

        groups += bench_regime.main()
    if wanted & {"replay", "query"}:
        import bench_replay

        groups += bench_replay.main(tuple(g for g in ("replay", "query") if g in wanted))
    if "cli" in wanted:
        import bench_cli

        groups += bench_cli.main(quick_runs=args.repeat)
    if "tuning" in wanted:
        import bench_tuning

        groups += bench_tuning.main()
    if "import" in wanted:
        import bench_import

        groups += bench_import.main()
    ok = print_report(groups)
    print(f"benchmark run took {time.perf_counter() - start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
