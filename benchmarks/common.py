"""Shared by the benchmark scripts: a row of the table, a group of rows with its baseline, the
printer, the measuring helpers (wall/CPU time, tracemalloc peak, a child process's wall and CPU
time), the load average, and a git worktree of a baseline commit."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024**2
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One printed figure: the measured value, its targets and its ratio to the group's baseline.

    ``below``: absolute target, the value must be under it. ``ratio``: the value's ratio to the
    group's baseline, as the group defines it; ``ratio_max`` / ``ratio_min``: a target on that
    ratio. Every row has at least one target."""

    name: str
    value: float
    unit: str
    below: float | None = None
    ratio: float | None = None
    ratio_max: float | None = None
    ratio_min: float | None = None

    def __post_init__(self) -> None:
        if self.below is None and self.ratio_max is None and self.ratio_min is None:
            raise ValueError(f"benchmark row without a target: {self.name}")
        if self.ratio is None:
            raise ValueError(f"benchmark row without a ratio to its baseline: {self.name}")

    @property
    def passed(self) -> bool:
        return ((self.below is None or self.value < self.below)
                and (self.ratio_max is None or self.ratio <= self.ratio_max)
                and (self.ratio_min is None or self.ratio >= self.ratio_min))


@dataclass
class Group:
    """Rows sharing one baseline; ``baseline`` lines say what it is, what it measured, and how the
    ratio is computed; ``notes`` are printed as footnotes."""

    title: str
    baseline: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _ratio(r: float) -> str:
    return f"{r:.2f}x" if r >= 0.01 else f"{r:.2g}x"  # 2 decimals: 49.98x is not shown as 50.0x


def print_report(groups: list[Group]) -> bool:
    """Print every group as a table (figure, measured, target, ratio, ratio target, PASS/FAIL),
    its baseline above it and its footnotes below; return whether every row passed."""
    width = max(len(r.name) for g in groups for r in g.rows) + 2
    head = (f"{'figure':<{width}}{'measured':>11}{'target':>11}{'ratio':>9}{'ratio tgt':>11}"
            f"{'result':>8}")
    failed = 0
    for group in groups:
        print()
        print(f"== {group.title} ==")
        for line in group.baseline:
            print(textwrap.fill(line, 100, initial_indent="   ", subsequent_indent="     "))
        print(head)
        for r in group.rows:
            target = f"< {_num(r.below)} {r.unit}" if r.below is not None else "-"
            rt = (f"<= {_num(r.ratio_max)}x" if r.ratio_max is not None
                  else f">= {_num(r.ratio_min)}x" if r.ratio_min is not None else "-")
            failed += not r.passed
            print(f"{r.name:<{width}}{_num(r.value) + ' ' + r.unit:>11}{target:>11}"
                  f"{_ratio(r.ratio):>9}{rt:>11}{'PASS' if r.passed else 'FAIL':>8}")
        for note in group.notes:
            print(textwrap.fill(note, 100, initial_indent="   * ", subsequent_indent="     "))
    total = sum(len(g.rows) for g in groups)
    print()
    print(f"{total - failed} of {total} rows PASS" + (f", {failed} FAIL" if failed else ""))
    return failed == 0


def timed(fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def peak_bytes(fn, *args, **kwargs) -> int:
    """Peak bytes allocated (tracemalloc) while ``fn(*args)`` runs, above what was allocated before.

    numpy reports its array buffers to tracemalloc, so they are counted; ``ru_maxrss`` is not used
    because loading the inputs already set a higher process peak."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def load() -> str:
    """The load average (1, 5, 15 min) and the CPU count, as printed at a group's start and end."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def timed_child(cmd: list[str], **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process ``subprocess.run(cmd, check=True,
    **kwargs)``; the CPU time is the children's user + system time (``RUSAGE_CHILDREN``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


@contextlib.contextmanager
def worktree(dest: Path, commit: str) -> Iterator[Path]:
    """``commit`` checked out into a new git worktree at ``dest`` for the block, removed after."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(dest), commit],
                   check=True, capture_output=True)
    try:
        yield dest
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(dest)],
                       capture_output=True)
        shutil.rmtree(dest, ignore_errors=True)
