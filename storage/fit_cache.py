"""A cache of model fits kept across runs, in a file of its own beside the history database
(``<history db>.fits.sqlite``), never in the history database itself.

``backtest``, ``backtest --sweep``, ``calibrate`` and ``report`` compute their signal history on a
scratch copy of the database, so without this cache every run refits the regime model for every
month cold. An entry is keyed by everything the fit was computed from (a hash of the returns it
was fitted on, the fit's settings, the warm start and the model/library versions: see
``signals.regime.fit_key``), so a change of data is a cache miss and refits. The cache is only an
optimisation: a file that cannot be opened, read or written (corrupt, locked, read-only folder)
is ignored with a warning and the fits are computed as without it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from sqlite_utils import Database

log = logging.getLogger("regime_monitor.fit_cache")

SUFFIX = ".fits.sqlite"
SCHEMA = "CREATE TABLE IF NOT EXISTS fits (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
TIMEOUT_S = 5.0


def path_for(db: Database) -> Path | None:
    """Return the cache file of the history database ``db``: its path + ``.fits.sqlite``; None for
    an in-memory or temporary database (nothing to keep across runs)."""
    for _, name, file in db.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return Path(file + SUFFIX) if file else None
    return None


class FitCache:
    """Key -> value (text) store in the SQLite file at ``path`` (created with mode 0600 on the
    first write). ``get`` returns None on a miss; every error disables the cache with one warning
    (``disabled`` then says why) instead of failing the computation. ``hits``/``misses``/``puts``
    count the calls (benchmarks, tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.disabled: str | None = None
        self.hits = self.misses = self.puts = 0
        self._conn: sqlite3.Connection | None = None

    def _fail(self, what: str, exc: BaseException) -> None:
        self.disabled = f"{what}: {exc}"
        log.warning("fit cache %s ignored (%s: %s); fits are computed without it", self.path, what, exc)
        self.close()

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        if self.disabled:
            return None
        if self._conn is None:
            if not create and not self.path.exists():
                return None
            try:
                fresh = not self.path.exists()
                conn = sqlite3.connect(self.path, timeout=TIMEOUT_S, isolation_level=None)
                if fresh:
                    os.chmod(self.path, 0o600)
                conn.execute("PRAGMA synchronous = OFF")  # a cache: losing the last entries is harmless
                conn.execute(SCHEMA)
                self._conn = conn
            except (sqlite3.Error, OSError) as exc:
                self._fail("cannot open", exc)
                return None
        return self._conn

    def get(self, key: str) -> str | None:
        """Return the value stored under ``key``, or None (a miss, or the cache is unusable)."""
        conn = self._connection(create=False)
        if conn is None:
            self.misses += 1
            return None
        try:
            row = conn.execute("SELECT value FROM fits WHERE key = ?", [key]).fetchone()
        except sqlite3.Error as exc:
            self._fail("cannot read", exc)
            row = None
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(row[0])

    def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (replacing it); errors disable the cache with a warning."""
        conn = self._connection(create=True)
        if conn is None:
            return
        try:
            conn.execute("INSERT OR REPLACE INTO fits (key, value) VALUES (?, ?)", [key, value])
            self.puts += 1
        except sqlite3.Error as exc:
            self._fail("cannot write", exc)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None


def for_database(db: Database) -> FitCache | None:
    """The fit cache beside the history database ``db`` (see :func:`path_for`), or None."""
    path = path_for(db)
    return FitCache(path) if path is not None else None
