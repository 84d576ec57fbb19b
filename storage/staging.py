"""A scratch SQLite file where an import's validated rows wait between validation and the write.

Memory does not grow with the imported file: rows are appended in file order to plain tables
(no index while they arrive), duplicates are found once at the end with one index built by
SQLite's external sorter, and the rows are read back in file order in batches.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE_KIB = 32 * 1024  # page cache (and the index sort's memory) of the scratch file, KiB


class Staging:
    """A scratch database in a private temporary directory, removed by ``close``."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="regime-monitor-import-")
        self.conn = sqlite3.connect(Path(self._dir.name) / "work.db", isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}",
                       "temp_store = FILE"):
            self.conn.execute(f"PRAGMA {pragma}")
        self._keys: dict[str, tuple[str, ...]] = {}
        self._columns: dict[str, tuple[str, ...]] = {}

    def table(self, columns: Sequence[str], key: Sequence[str]) -> str:
        """Create a table with ``columns`` (names, untyped) and a ``line`` column last; ``key``
        names the columns no two rows may share (``first_duplicate``). Return its name."""
        name = f"t{len(self._keys) + 1}"
        self.conn.execute(f"CREATE TABLE {name} ({', '.join(columns)}, line INTEGER NOT NULL)")
        self._keys[name] = tuple(key)
        self._columns[name] = tuple(columns)
        return name

    def append(self, table: str, rows: Sequence[tuple]) -> None:
        """Append ``rows`` (the table's columns, the file's line number last) in this order."""
        if rows:
            marks = ",".join("?" * len(rows[0]))
            self.conn.execute("BEGIN")  # one transaction per batch, not one per row
            self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            self.conn.execute("COMMIT")

    def first_duplicate(self, table: str) -> tuple[tuple, int] | None:
        """Return (key values, first line) of the rows sharing a key whose first occurrence comes
        earliest in the file, or None when every key is unique. Builds the key's index."""
        key = ", ".join(self._keys[table])
        self.conn.execute(f"CREATE INDEX {table}_key ON {table} ({key}, line)")
        row = self.conn.execute(
            f"SELECT {key}, MIN(line) AS first FROM {table} GROUP BY {key} HAVING COUNT(*) > 1 "
            "ORDER BY first LIMIT 1").fetchone()
        return None if row is None else (tuple(row[:-1]), row[-1])

    def median(self, table: str, column: str, where: str = "1", args: Sequence = ()) -> float | None:
        """Return the median of the non-null ``column`` over the rows matching ``where``
        (None: no such value)."""
        n = self.conn.execute(f"SELECT COUNT({column}) FROM {table} WHERE {where}", args).fetchone()[0]
        if not n:
            return None
        sql = (f"SELECT {column} FROM {table} WHERE {where} AND {column} IS NOT NULL "
               f"ORDER BY {column} LIMIT ? OFFSET ?")
        mid = [r[0] for r in self.conn.execute(sql, [*args, 2 - n % 2, (n - 1) // 2])]
        return float(sum(mid) / len(mid))

    def rows(self, table: str, columns: Sequence[str], size: int) -> Iterator[list[tuple]]:
        """Yield the table's ``columns`` in file order, ``size`` rows at a time."""
        cur = self.conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
        while batch := cur.fetchmany(size):
            yield batch

    def close(self) -> None:
        self.conn.close()
        self._dir.cleanup()
