"""Benchmark: the tuning loop against a notebook: `backtest`, `backtest --sweep` and `replay` of the
real data 2014-2024, side by side with what a PM would write in pandas instead.

Run:  .venv/bin/python benchmarks/run.py --only tuning   (or this file directly)

Baseline, the notebook (``notebook`` below, run as a child process, imports included): read the
canonical long CSV of the real data (``tests/realdata.py``: the indices, Wind micro-cap, themes and
ChinaBond yields, exactly what `import-csv` reads), pivot it, compute the note's turnover,
volatility, credit, rotation and drawdown indicators in one vectorised pandas pass, and fit one
two-state ``MarkovRegression`` (switching mean and variance) on the micro-cap excess returns.

Measured, each a child process as a user types it (interpreter start-up included), on a database
that tree's own `import-csv` of the same CSV built once in setup, shipped config with
``source.kind = "csv"``:
* `regime-monitor backtest --start 2014-01-01 --end 2024-12-31`, the median of the runs after the
  first (the PM's second and later runs; the first one, which fills the regime fit cache, is
  printed in a footnote);
* `backtest --sweep drawdown_risk.risk.drawdown_prob=0.30:0.49:0.01` (20 points) over the same span;
* `regime-monitor replay --start 2014-01-01 --end 2024-12-31` into a scratch file.
Median of ``RUNS``; the commands are timed in turn, run after run, so that a change of load on a
shared machine hits them alike.

Rows: backtest / notebook <= 2, sweep / backtest <= 1.2, replay / notebook <= 3 (issue 15). The
same commands are run from a git worktree of the code before issue 15 (commit ``BEFORE``, same
venv, ``PYTHONPATH`` pointing there) in the same run: the "before" figures in the footnotes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import Group, Row, load, print_report, timed_child, worktree  # noqa: E402

BEFORE = "fc32b43"  # the code before issue 15
START, END = "2014-01-01", "2024-12-31"
SWEEP = "drawdown_risk.risk.drawdown_prob=0.30:0.49:0.01"  # 20 points
RUNS = 3
BEFORE_RUNS = 1
MAX_BACKTEST_RATIO = 2.0
MAX_SWEEP_RATIO = 1.2
MAX_REPLAY_RATIO = 3.0
REAL = ROOT.parent / "shared" / "data" / "real"


def notebook(path: str, start: str, end: str) -> None:
    """The baseline: what a PM writes in a notebook, in one vectorised pass (prints a check line)."""
    import numpy as np
    import pandas as pd
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    long = pd.read_csv(path)
    wide = long.pivot(index="date", columns="series", values="value")
    wide.index = pd.to_datetime(wide.index)
    wide = wide.sort_index().loc[:end].ffill()
    trading = pd.to_datetime(long.loc[long["series"] == "index.all_a.close", "date"])
    d = wide.loc[start:]
    d = d[d.index.isin(trading)]
    ind = pd.DataFrame(index=d.index)
    # turnover: CSI 2000 share of the market's amount, its percentile and its fall from the high
    share = d["index.csi2000.amount"] / d["index.all_a.amount"]
    s20 = share.rolling(20).mean()
    ind["share_pctile"] = s20.rolling(250).rank(pct=True)
    ind["share_drop"] = s20 / s20.rolling(60).max() - 1
    # volatility: micro-cap 20-day volatility, against its median and against CSI 300's
    mc = d["index.microcap.close"]
    vol = mc.pct_change().rolling(20).std() * np.sqrt(252)
    ind["vol_spike"] = vol / vol.rolling(120).median()
    ind["vol_ratio"] = vol / (d["index.csi300.close"].pct_change().rolling(20).std() * np.sqrt(252))
    # credit: the 3y AAA spread, its 10-year percentile and its 20-day change
    spread = (wide["yield.credit.3y"] - wide["yield.gov.3y"]) * 100
    ind["spread_pctile"] = spread.rolling(2520, min_periods=2016).rank(pct=True).reindex(d.index)
    ind["spread_chg"] = (spread - spread.shift(20)).reindex(d.index)
    # rotation: the hottest theme's 20-day excess return, the micro-cap's 10-day excess return
    themes = d.filter(regex=r"^theme\..*\.close$")
    ind["hot_theme"] = themes.pct_change(20).sub(d["index.all_a.close"].pct_change(20), axis=0).max(axis=1)
    ind["microcap_excess_10d"] = mc.pct_change(10) - d["index.all_a.close"].pct_change(10)
    # drawdown from the running high
    ind["drawdown"] = mc / mc.cummax() - 1
    # one Markov-switching fit on the daily micro-cap excess returns (percent)
    y = (mc.pct_change() - d["index.all_a.close"].pct_change()).dropna() * 100
    res = MarkovRegression(y.to_numpy(), k_regimes=2, trend="c", switching_variance=True).fit(disp=0)
    high = int(np.argmax(res.params[2:4]))
    ind["stress_prob"] = pd.Series(res.filtered_marginal_probabilities[:, high], index=y.index)
    print(len(ind), int(ind.notna().all(axis=1).sum()), round(float(res.llf), 3))


def _csv(tmp: Path) -> Path:
    """The canonical long CSV of the real data (what `import-csv` reads)."""
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from tests import realdata

    frame = pd.concat([realdata.indices(REAL, START, END), realdata.themes(REAL, START, END),
                       realdata.yields(REAL, "2008-04-22", END)])
    return realdata.write_csv(frame, tmp / "real.csv")


class Tuning:
    """One tree's commands on its own database (imported in setup) and config."""

    def __init__(self, tree, csv: Path) -> None:
        self.tree = tree
        self.config = tree.work / f"monitor-{tree.name}.toml"
        text = (tree.path / "config" / "monitor.toml").read_text()
        self.config.write_text(text.replace('kind = "demo"', 'kind = "csv"', 1))
        self.db = tree.work / f"real-{tree.name}.db"
        self.scratch = tree.work / f"replay-{tree.name}.db"
        self.times: dict[str, list[float]] = {}
        self.tree.time("import", *self._g(), "import-csv", str(csv))

    def _g(self) -> list[str]:
        return ["--config", str(self.config), "--db", str(self.db)]

    def run(self, what: str) -> float:
        args = {"backtest": ["backtest", "--start", START, "--end", END],
                "sweep": ["backtest", "--start", START, "--end", END, "--sweep", SWEEP],
                "replay": ["replay", "--start", START, "--end", END, "--scratch", str(self.scratch)]}
        wall = self.tree.time(what, *self._g(), *args[what])
        self.times.setdefault(what, []).append(wall)
        return wall


def _notebook_time(work: Path, csv: Path, cpu: list[float]) -> float:
    wall, cpu_s = timed_child([sys.executable, str(Path(__file__).resolve()), "--notebook",
                               str(csv), START, END], cwd=work, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    cpu.append(cpu_s)
    return wall


def main(runs: int = RUNS, before_runs: int = BEFORE_RUNS) -> list[Group]:
    """Time the notebook, backtest, sweep and replay here and at commit BEFORE, in turn."""
    from bench_cli import Tree

    load_start = load()
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        work = Path(tmp)
        csv = _csv(work)
        with worktree(work / "before", BEFORE) as base_path:
            now_tree, base_tree = Tree("now", ROOT, work), Tree("before", base_path, work)
            for tree in (now_tree, base_tree):
                tree.check()
            now, base = Tuning(now_tree, csv), Tuning(base_tree, csv)
            cold = {"now": now.run("backtest"), "before": base.run("backtest")}  # fills caches
            for tun in (now, base):
                tun.times["backtest"].clear()
                tun.tree.cpu["backtest"].clear()
            nb: list[float] = []
            nb_cpu: list[float] = []
            for i in range(max(runs, before_runs)):  # in turn: the same load for all
                nb.append(_notebook_time(work, csv, nb_cpu))
                for what in ("backtest", "sweep", "replay"):
                    if i < runs:
                        now.run(what)
                    if i < before_runs:
                        base.run(what)
    load_end = load()
    med = {(t, w): statistics.median(v) for t, tun in (("now", now), ("before", base))
           for w, v in tun.times.items()}
    cpu = {(t.name, w): statistics.median(v) for t in (now_tree, base_tree)
           for w, v in t.cpu.items()}
    notebook_s = statistics.median(nb)
    bt, sw, rp = med[("now", "backtest")], med[("now", "sweep")], med[("now", "replay")]
    b_bt, b_sw, b_rp = (med[("before", w)] for w in ("backtest", "sweep", "replay"))
    rows = [
        Row(f"`backtest` {START[:4]}-{END[:4]} (after its first run), median of {runs}", bt, "s",
            ratio=bt / notebook_s, ratio_max=MAX_BACKTEST_RATIO),
        Row(f"`backtest --sweep` 20 points, median of {runs} (ratio: / backtest)", sw, "s",
            ratio=sw / bt, ratio_max=MAX_SWEEP_RATIO),
        Row(f"`replay` {START[:4]}-{END[:4]}, median of {runs}", rp, "s", ratio=rp / notebook_s,
            ratio_max=MAX_REPLAY_RATIO),
    ]
    return [Group(
        "the tuning loop against a notebook (real data 2014-2024, child processes, start-up "
        "included)",
        [f"baseline: the notebook (read the canonical CSV, the note's indicators in one pandas "
         f"pass, one MarkovRegression fit, imports included): {notebook_s:.3g} s, median of "
         f"{len(nb)} ({statistics.median(nb_cpu):.3g} s CPU)",
         "ratio: this / the notebook; the sweep row: sweep / one backtest"],
        rows,
        [f"load average at the start: {load_start}; at the end: {load_end}",
         f"before (commit {BEFORE}, same run, {before_runs} run(s) each): backtest {b_bt:.3g} s "
         f"({b_bt / notebook_s:.2f}x the notebook), sweep {b_sw:.3g} s ({b_sw / b_bt:.2f}x its "
         f"backtest), replay {b_rp:.3g} s ({b_rp / notebook_s:.2f}x the notebook)",
         f"first backtest of each tree (fills the regime fit cache where there is one): now "
         f"{cold['now']:.3g} s, before {cold['before']:.3g} s",
         f"CPU time of the children (median): backtest {cpu[('now', 'backtest')]:.3g} s (before "
         f"{cpu[('before', 'backtest')]:.3g} s), sweep {cpu[('now', 'sweep')]:.3g} s "
         f"({cpu[('before', 'sweep')]:.3g} s), replay {cpu[('now', 'replay')]:.3g} s "
         f"({cpu[('before', 'replay')]:.3g} s)",
         "every tree imports the same CSV into its own database once (`import-csv`); the replay "
         "scratch file is recreated by each run"])]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--notebook":
        notebook(*sys.argv[2:])
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--before-runs", type=int, default=BEFORE_RUNS)
    args = ap.parse_args()
    sys.exit(0 if print_report(main(args.runs, args.before_runs)) else 1)
