"""Small helpers shared by the storage modules."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any


def utc_now() -> str:
    """Return the current UTC time as an ISO-8601 string with seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def inserted_id(cursor: Any) -> int:
    """Return the rowid of the row the INSERT on ``cursor`` (an sqlite3 cursor) just wrote; raise
    RuntimeError when there is none (the statement inserted nothing)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise RuntimeError("the INSERT wrote no row")
    return int(rowid)


def clean_float(value: Any) -> float | None:
    """Return ``value`` as a float, or None for None/NaN/inf (SQLite NULL)."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def dumps(obj: Any) -> str:
    """Return canonical JSON (sorted keys, NaN as null) so equal content gives equal text."""
    return json.dumps(_nan_to_none(obj), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _nan_to_none(obj: Any) -> Any:
    kind = type(obj)  # the common exact types first (a replay writes thousands of these a run)
    if kind is str or kind is int or obj is None:
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind is dict:
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj
