"""Benchmark: the speed a user feels at the command line: `demo`, `--help` and `signals`.

Run:  .venv/bin/python benchmarks/run.py --only cli   (or this file directly)

Each figure is the wall time of a child process (interpreter start and imports included), as a
user types the command: `regime-monitor demo` (the whole offline scenario, shipped config, a fresh
database), `regime-monitor --help`, and `regime-monitor signals` on the database that tree's demo
left. Median of N runs; the two trees are timed in turn, run after run, so that a change of load
on a shared machine hits them alike.

Baseline: the code before issue 14 (commit 47b993d), checked out with `git worktree add` into a
temporary folder and run in the same benchmark with the same interpreter and venv
(``PYTHONPATH`` pointing at that tree, the current directory outside both trees). Its demo ran
every one of the 1,699 days cycle by cycle (about 70 s on 2 idle cores); it is run
``BASELINE_DEMO_RUNS`` time(s) only. Ratio: baseline / this (a speed-up; higher is better).

Targets (issue 14): the demo under 15 s and at least 3x faster, `--help` under 0.3 s, a read-only
command under 0.7 s and at least 1.5x faster.
These are wall times on 2 cores: on a loaded machine they stretch (the load average at the start
and the end is printed, and the CPU time of the children beside it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import Group, Row, load, print_report, timed_child, worktree  # noqa: E402

BASELINE_COMMIT = "47b993d"
DEMO_RUNS = 3
BASELINE_DEMO_RUNS = 1
QUICK_RUNS = 7  # --help and signals
MAX_DEMO_S = 15.0
MAX_HELP_S = 0.3
MAX_SIGNALS_S = 0.7
MIN_DEMO_SPEEDUP = 3.0
MIN_SIGNALS_SPEEDUP = 1.5
LAUNCH = "import sys; from monitor.cli import main; sys.exit(main())"


class Tree:
    """One checkout of the code, run through the same interpreter with PYTHONPATH set to it."""

    def __init__(self, name: str, path: Path, work: Path) -> None:
        self.name, self.path, self.work = name, path, work
        self.db = work / f"demo-{name}.db"
        self.env = {**os.environ, "PYTHONPATH": str(path)}
        self.cpu: dict[str, list[float]] = {}

    def check(self) -> None:
        """Fail unless this tree's own code is the one imported."""
        out = subprocess.run([sys.executable, "-c", "import monitor; print(monitor.__file__)"],
                             env=self.env, cwd=self.work, capture_output=True, text=True,
                             check=True).stdout.strip()
        if not out.startswith(str(self.path)):
            raise RuntimeError(f"{self.name}: imported {out}, not the tree at {self.path}")

    def time(self, what: str, *args: str) -> float:
        """Wall seconds of one `regime-monitor ARGS` in a child process (CPU time kept)."""
        wall, cpu = timed_child([sys.executable, "-c", LAUNCH, *args], env=self.env,
                                cwd=self.work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.cpu.setdefault(what, []).append(cpu)
        return wall

    def demo(self) -> float:
        return self.time("demo", "--config", str(self.path / "config" / "monitor.toml"),
                         "--db", str(self.db), "demo")

    def help(self) -> float:
        return self.time("help", "--help")

    def signals(self) -> float:
        return self.time("signals", "--config", str(self.path / "config" / "monitor.toml"),
                         "--db", str(self.db), "signals")


def main(demo_runs: int = DEMO_RUNS, quick_runs: int = QUICK_RUNS) -> list[Group]:
    """Time `demo`, `--help` and `signals` here and at the baseline commit."""
    load_start = load()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        with worktree(work / "baseline", BASELINE_COMMIT) as base_path:
            now, base = Tree("now", ROOT, work), Tree("baseline", base_path, work)
            for tree in (now, base):
                tree.check()
            demo: dict[str, list[float]] = {"now": [], "baseline": []}
            for i in range(max(demo_runs, BASELINE_DEMO_RUNS)):  # in turn: the same load for both
                if i < demo_runs:
                    demo["now"].append(now.demo())
                if i < BASELINE_DEMO_RUNS:
                    demo["baseline"].append(base.demo())
            quick: dict[tuple[str, str], list[float]] = {}
            for _ in range(quick_runs):
                for tree in (now, base):
                    quick.setdefault((tree.name, "help"), []).append(tree.help())
                    quick.setdefault((tree.name, "signals"), []).append(tree.signals())
    load_end = load()
    med = {k: statistics.median(v) for k, v in quick.items()}
    d_now, d_base = statistics.median(demo["now"]), statistics.median(demo["baseline"])
    cpu = {(t.name, w): statistics.median(v) for t in (now, base) for w, v in t.cpu.items()}
    rows = [
        Row(f"`demo` (whole scenario), median of {demo_runs}", d_now, "s", below=MAX_DEMO_S,
            ratio=d_base / d_now, ratio_min=MIN_DEMO_SPEEDUP),
        Row(f"`--help`, median of {quick_runs}", med[("now", "help")], "s", below=MAX_HELP_S,
            ratio=med[("baseline", "help")] / med[("now", "help")]),
        Row(f"`signals` on the demo database, median of {quick_runs}", med[("now", "signals")],
            "s", below=MAX_SIGNALS_S, ratio=med[("baseline", "signals")] / med[("now", "signals")],
            ratio_min=MIN_SIGNALS_SPEEDUP),
    ]
    return [Group(
        "the command line as a user feels it (child processes, start-up included)",
        [f"baseline: commit {BASELINE_COMMIT} (before issue 14) in a git worktree, same venv: "
         f"`demo` {d_base:.3g} s (median of {BASELINE_DEMO_RUNS}), `--help` "
         f"{med[('baseline', 'help')]:.3g} s, `signals` {med[('baseline', 'signals')]:.3g} s",
         "ratio: baseline / this (a speed-up)"],
        rows,
        [f"load average at the start: {load_start}; at the end: {load_end}",
         f"CPU time of the children (median; wall time on idle cores is close to it): `demo` "
         f"{cpu[('now', 'demo')]:.3g} s (baseline {cpu[('baseline', 'demo')]:.3g} s), `--help` "
         f"{cpu[('now', 'help')]:.3g} s ({cpu[('baseline', 'help')]:.3g} s), `signals` "
         f"{cpu[('now', 'signals')]:.3g} s ({cpu[('baseline', 'signals')]:.3g} s)",
         "every demo run builds a fresh database (the command removes the old one first)",
         "`--help` has an absolute target only: it was already fast before (click alone; the CLI "
         "has more commands now), its ratio is shown for reference"])]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-runs", type=int, default=DEMO_RUNS)
    ap.add_argument("--repeat", type=int, default=QUICK_RUNS)
    args = ap.parse_args()
    sys.exit(0 if print_report(main(args.demo_runs, args.repeat)) else 1)
