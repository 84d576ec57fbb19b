"""Helpers shared by the tests that run regime-monitor as real processes (daemon, crash, ops):
the command line, polling, and snapshots of the domain tables to compare runs."""

from __future__ import annotations

import collections
import ctypes
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

# the tables a run writes, and their columns that legitimately differ between equal runs
TABLES = ("observations", "signal_values", "alerts", "alert_events", "episodes", "outbox",
          "regime_fits", "runs")
VOLATILE = {"observations": {"imported_at"}, "alert_events": {"id"}, "episodes": {"id"},
            "outbox": {"id", "created_at", "next_attempt_at"},
            "runs": {"id", "started", "finished"}}


def command() -> list[str]:
    """The console script of the running interpreter's environment (or ``python -m``)."""
    script = Path(sys.executable).parent / "regime-monitor"
    if script.exists():
        return [str(script)]
    found = shutil.which("regime-monitor")
    return [found] if found else [sys.executable, "-m", "monitor.cli"]


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=10)


def domain_snapshot(path: Path, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple]]:
    """Every row of the domain tables, without the volatile columns, sorted."""
    con = connect(path)
    try:
        out = {}
        for table in tables:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info([{table}])")
                    if r[1] not in VOLATILE.get(table, ())]
            rows = con.execute(f"SELECT {', '.join(f'[{c}]' for c in cols)} FROM [{table}]")
            out[table] = sorted(rows.fetchall(), key=repr)
        return out
    finally:
        con.close()


def differences(got: dict[str, list], want: dict[str, list]) -> list[str]:
    """Return one line per table whose rows differ (as multisets), with a sample of each side."""
    out = []
    for table in want:
        a, b = collections.Counter(got.get(table, [])), collections.Counter(want[table])
        if a != b:
            extra, missing = list((a - b).elements()), list((b - a).elements())
            out.append(f"{table}: {len(extra)} unexpected row(s) {extra[:2]!r}, {len(missing)} "
                       f"missing {missing[:2]!r}")
    return out


def frozen_snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, read from the main file alone (``immutable``: no -wal or -shm
    is opened, created or removed)."""
    con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: sorted(con.execute(f"SELECT * FROM [{n}]").fetchall(), key=repr) for n in names}
    finally:
        con.close()


def integrity(path: Path) -> list[str]:
    """Return the lines of ``PRAGMA integrity_check`` (``['ok']`` for a sound file)."""
    con = connect(path)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


PR_CAPBSET_DROP = 24
FILE_CAPABILITIES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def drop_file_capabilities() -> None:
    """preexec_fn: root ignores file modes. Drop the capabilities that let it from the bounding
    set, so that the exec'd process (still uid 0, the files' owner) obeys them like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in FILE_CAPABILITIES:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


OBEY_MODES = drop_file_capabilities if os.geteuid() == 0 else None  # preexec_fn for read-only tests
