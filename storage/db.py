"""Opening the SQLite database: owner-only file, WAL journal, schema migrated."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


def is_locked(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite's "database is locked/busy" (another connection held the lock
    beyond the busy timeout): the operation can be tried again later."""
    import sqlite3

    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(exc) or "database is busy" in str(exc)


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """Run the block in one write transaction opened with ``BEGIN IMMEDIATE``; yield ``db``.

    The write lock is taken first (waiting up to the connection's busy timeout), so every read
    in the block sees the state the block's writes apply to, and the block cannot fail later on
    a lock another writer took meanwhile. COMMIT on success, ROLLBACK on any exception. Nested
    ``db.atomic()`` blocks inside become savepoints. Raises StorageError when ``db`` is already
    in a transaction (the lock could not be taken up front).
    """
    if db.conn.in_transaction:
        raise StorageError("immediate(): the connection is already in a transaction")
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.rollback()
        raise
    try:
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.rollback()
        raise


def quick_check(path: str | Path) -> str | None:
    """Return the first line ``PRAGMA quick_check`` reports for the database file at ``path``
    when the file is damaged (or not a database), else None.

    Opened read-only: a missing file, or one this process cannot open or read right now (no
    permission, locked), is not judged here and gives None - the first real use reports it.
    """
    import sqlite3

    p = Path(path)
    if not p.exists():
        return None
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        row = con.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None
    finally:
        con.close()
    first = str(row[0]) if row else "no answer"
    return None if first == "ok" else first.splitlines()[0]


def open_readonly(path: str | Path) -> Database:
    """Open the existing database at ``path`` for reading only (no file is created, nothing is
    migrated or written); return a sqlite-utils ``Database``. Raises StorageError naming the
    file when it does not exist or cannot be opened."""
    import sqlite3

    p = Path(path)
    if not p.is_file():
        raise StorageError(f"no database at {p}")
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        con.execute("PRAGMA busy_timeout = 10000")
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {p}: {exc}") from exc
    return Database(con)


def backup(db: Database, dest: str | Path) -> int:
    """Copy the database ``db`` to the new file ``dest`` with SQLite's online backup API (a
    consistent snapshot, taken while other connections may write); return its size in bytes.

    ``dest`` is created owner-only (0600) and never overwritten: raises StorageError naming it
    when it exists or cannot be written; a partial copy is removed. The copy is checked with
    ``PRAGMA quick_check``.
    """
    import sqlite3

    target = Path(dest)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise StorageError(f"backup destination {target} exists: choose a new file name (a "
                           "backup never overwrites)") from None
    except OSError as exc:
        raise StorageError(f"cannot create the backup {target}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        out = sqlite3.connect(target)
        try:
            db.conn.backup(out)
            row = out.execute("PRAGMA quick_check").fetchone()
        finally:
            out.close()
        if not row or row[0] != "ok":
            raise StorageError(f"the backup {target} fails its quick_check: {row and row[0]}")
    except BaseException as exc:
        for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm"),
                         Path(f"{target}-journal")):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"cannot write the backup {target}: {exc}") from exc
        raise
    return target.stat().st_size


def file_of(db: Database) -> str:
    """Return the path of the file behind ``db``'s main database, or ``":memory:"`` for an
    in-memory (or temporary) database."""
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main":
            return row[2] or ":memory:"
    return ":memory:"


def fast_unsafe_writes(db: Database) -> None:
    """Turn off fsync for ``db`` (``PRAGMA synchronous = OFF``) and keep its rollback journal in
    memory instead of the write-ahead log (``journal_mode = MEMORY``: a transaction still rolls
    back; a replay commits once a day, thousands of times): for scratch databases only, where speed
    matters more than durability and no other connection reads meanwhile (``open_db`` turns WAL
    on again when the file is opened later; a replay does when it is done). Returns None."""
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA journal_mode = MEMORY")


def copy_known(db: Database, source: Database, end: str) -> None:
    """Copy into the (empty, migrated) ``db`` the observations and stock panel rows of ``source``
    available by ``end`` (ISO day), and the earlier values of revised observations
    (``observation_revisions``) known by then when both databases keep them; nothing else (no
    alerts, events, fits or runs). One transaction; ``source`` must be a file. Returns None."""
    from storage import observations

    src = source.execute("PRAGMA database_list").fetchall()[0][2]
    with db.atomic():
        db.execute("ATTACH DATABASE ? AS src", [src])
        db.execute("INSERT INTO observations SELECT * FROM src.observations WHERE available_at <= ?",
                   [end])
        db.execute("INSERT INTO stock_panel SELECT * FROM src.stock_panel WHERE available_at <= ?",
                   [end])
        if observations.has_revisions(db) and observations.has_revisions(source):
            # the values known before a revision, for the days before it
            db.execute(f"INSERT INTO {observations.REVISIONS} SELECT * FROM "
                       f"src.{observations.REVISIONS} WHERE available_at <= ?", [end])
    db.execute("DETACH DATABASE src")
