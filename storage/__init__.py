"""SQLite storage: the schema, its migrations and plain functions taking ``db``."""

import sys

if "sqlite_utils" not in sys.modules and "pandas" not in sys.modules and "numpy" not in sys.modules:
    # sqlite-utils imports pandas and numpy, when installed, only to add their scalar types to the
    # column types of tables it creates from Python values. Storage creates its tables in SQL
    # (storage/schema.py), so both are hidden while it loads: the commands that only read the
    # history then start without them (about half a second). They import normally afterwards.
    sys.modules["pandas"] = sys.modules["numpy"] = None  # type: ignore[assignment]
    try:
        import sqlite_utils  # noqa: F401
    finally:
        del sys.modules["pandas"], sys.modules["numpy"]
