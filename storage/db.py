"""Opening the SQLite database: owner-only file, WAL journal, schema migrated."""

from __future__ import annotations

import os
from pathlib import Path

from sqlite_utils import Database

from storage import schema


class StorageError(RuntimeError):
    """A database could not be opened or written; the message names the file."""


def _writable_sidecars(p: Path) -> None:
    """Give a writable database's -wal and -shm files back their owner-only write permission.

    SQLite creates them with the database file's mode, and a connection that could only read
    (the file was read-only) leaves them behind: read-only once the file is writable again, they
    would make every later write fail with "attempt to write a readonly database".
    """
    for side in (Path(f"{p}-wal"), Path(f"{p}-shm")):
        if side.exists() and not os.access(side, os.W_OK):
            side.chmod(0o600)


def open_db(path: str | Path, *, migrate: bool = True) -> Database:
    """Open (creating if needed) the database at ``path``; return a sqlite-utils ``Database``.

    The file is created with mode 0600, journal_mode is WAL, and pending migrations are applied.
    ``":memory:"`` gives an in-memory database (tests).
    """
    if str(path) == ":memory:":
        db = Database(memory=True)
    else:
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.exists():
                fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            elif os.access(p, os.W_OK):
                _writable_sidecars(p)
            db = Database(p)
            db.execute("PRAGMA busy_timeout = 10000")
            db.enable_wal()
        except (OSError, Exception) as exc:  # sqlite3.Error included
            raise StorageError(f"cannot open database {p}: {exc}") from exc
    db.execute("PRAGMA foreign_keys = ON")
    if migrate:
        schema.apply(db)
    return db
