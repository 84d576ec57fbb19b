"""The NAVs of the PM's products (``product_navs``, issue 16). Every read is point-in-time.

One conflict rule, as for observations: a NAV written again for the same (product, date) with the
same value changes nothing (a re-import writes 0); a different value replaces it and takes the
row's ``available_at``, or ``revised_from`` (the import day) when that is later, so a revision
never reaches days before it was known. The value it replaces stays in ``product_nav_revisions``
(a trigger of m008) and point-in-time reads of earlier days still see it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pandas as pd
from sqlite_utils import Database

from storage.observations import known_on_sql
from storage.util import utc_now

NavRow = tuple[str, str, float, str, str]  # product, date ISO, nav, available_at ISO, source
REVISIONS = "product_nav_revisions"

_UPSERT = """
INSERT INTO product_navs (product, date, nav, available_at, source, imported_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (product, date) DO UPDATE SET
    nav = excluded.nav,
    available_at = CASE WHEN ?7 IS NULL THEN excluded.available_at
                        ELSE max(excluded.available_at, ?7) END,
    source = excluded.source, imported_at = excluded.imported_at
WHERE product_navs.nav IS NOT excluded.nav
"""


def upsert(db: Database, rows: Iterable[NavRow], revised_from: str | None = None, *,
           now: str | None = None) -> int:
    """Insert new NAVs and replace changed ones; return the number of rows inserted or changed
    (an unchanged NAV is left alone and not counted). A changed NAV becomes available at the
    later of its row's ``available_at`` and ``revised_from`` (ISO day: when the revision became
    known, e.g. the import day; None: the row's own). ``now`` (ISO UTC) is stored as
    ``imported_at`` (None: the wall clock). Call inside the caller's transaction."""
    now = now or utc_now()
    # rowcount: the rows the statement inserted or changed (sqlite3_changes), not the
    # trigger's copies of replaced NAVs
    params = ((p, d, v, a, src, now, revised_from) for p, d, v, a, src in rows)
    return db.conn.executemany(_UPSERT, params).rowcount


def load(db: Database, as_of: dt.date | None, products: Sequence[str] | None = None
         ) -> dict[str, pd.Series]:
    """Return product -> NAV Series (float, any positive scale, indexed by the NAV dates as
    Timestamps named ``date``, ascending) of every product (or of ``products``) with at least one
    NAV. With ``as_of``, only NAVs with ``available_at <= as_of`` are read, and a NAV revised
    after ``as_of`` is read as it was known then; None reads the current values. Products with no
    NAV known by ``as_of`` are absent."""
    if as_of is None:
        sql = "SELECT product, date, nav FROM product_navs"
        args: list = []
    else:
        sql = known_on_sql("product_navs", REVISIONS, "product", "nav", "?1")
        args = [as_of.isoformat()]
    rows = db.execute(f"SELECT product, date, nav FROM ({sql}) ORDER BY product, date",
                      args).fetchall()
    wanted = None if products is None else set(products)
    out: dict[str, pd.Series] = {}
    if not rows:
        return out
    frame = pd.DataFrame(rows, columns=["product", "date", "nav"])
    for name, part in frame.groupby("product", sort=True):
        if wanted is not None and name not in wanted:
            continue
        index = pd.DatetimeIndex(pd.to_datetime(part["date"].to_numpy(), format="%Y-%m-%d"),
                                 name="date")
        out[str(name)] = pd.Series(part["nav"].to_numpy(dtype=float), index=index, name=str(name))
    return out


def coverage(db: Database, products: Sequence[str] | None = None
             ) -> list[tuple[str, str, str, int, str]]:
    """Return, per product stored (or per name of ``products``, in that order, if stored),
    ``(product, first date, last date, NAVs stored, latest available_at)``: ISO days; revisions
    not counted. Sorted by product when ``products`` is None."""
    rows = db.execute("SELECT product, MIN(date), MAX(date), COUNT(*), MAX(available_at) "
                      "FROM product_navs GROUP BY product ORDER BY product").fetchall()
    found = {r[0]: (r[0], r[1], r[2], int(r[3]), r[4]) for r in rows}
    names = list(found) if products is None else [p for p in products if p in found]
    return [found[p] for p in names]


def names(db: Database) -> list[str]:
    """Return every product with at least one stored NAV, sorted."""
    return [r[0] for r in db.execute("SELECT DISTINCT product FROM product_navs ORDER BY product")]
