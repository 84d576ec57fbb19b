"""The micro-cap index reconstructed from a stock panel (SIGNALS.md section 7).

Recipe. On each trading day t, rank the eligible stocks by total market cap at the close of t-1; the
members are the ``n`` (default 400) smallest; the index return on t is the equal-weighted mean of the
members' returns from the close of t-1 to the close of t.

Inputs are wide DataFrames with the same index (trading days, ascending) and the same columns (stock
codes): ``close`` = unadjusted close in yuan (NaN = no trade that day), ``total_mv`` = total market
cap (any unit, the same for every cell; only ratios and the ranking are used), ``is_st`` = 1/0 ST flag
(NaN where there is no price). All functions here are pure: no I/O, inputs are never modified.

Choices (each one is tested in ``tests/test_microcap.py``):

* Traded on a day = the close is finite and > 0.
* Eligible on t = traded on both t-1 and t; total market cap at t-1 finite and > 0; NOT ST at t-1
  (the flag of t-1 is used, so membership is fixed by what was known at the close of t-1; the flag is
  ST when > 0.5, a missing flag counts as not ST); listed for at least ``min_listed_days`` trading days
  by t-1 (see below). Being traded on t is the only information from day t used for membership: a
  stock suspended on t cannot be held from t-1 to t, and the next smallest takes its place.
* Listed days = number of trading days (panel rows) from the stock's first finite close in the panel
  up to and including the day, suspensions included: 1 on the first trading day, 0 before it. It is a
  proxy for "IPO limit-up streak not yet opened". The panel's first row counts as day 1 for every stock
  already trading then, so a reconstruction has a warm-up of ``min_listed_days`` days (NaN returns)
  at the start of the panel.
* Fewer than ``n`` eligible stocks: all eligible stocks are members; none: the return is NaN.
* Ties in market cap at the n-th place: the stock in the earlier column wins (stable order).
* Splits and bonus shares (the split rule). Implied shares = total_mv / close. With
  ``rc = close_t / close_t-1`` and ``rm = mv_t / mv_t-1``, shares changed when
  ``|rm / rc - 1| > SHARE_CHANGE_TOL`` (1%, well above the rounding noise of a cap stored to 0.01 yi;
  smaller changes are option exercises or bond conversions, for which the close ratio is right).
  When shares changed, the return is whichever of ``rc - 1`` and ``rm - 1`` is smaller in absolute
  value: a split or bonus issue (close halves, cap unchanged) takes the cap ratio, a share issuance at
  market (cap jumps, close unchanged) takes the close ratio. Otherwise, or when mv_t is missing, the
  return is ``rc - 1``. Cash dividends are not adjusted (a price index). On the real 2014-2024 panel
  the rule brings 2,880 of the 2,898 raw one-day falls of more than 30% back within the 20% price
  limit (568 member-days of the reconstruction are corrected; every member-day return stays within
  +-20.2%). Known limitation: a share record dated one day before the price adjustment (002255 on
  2015-07-01, 601100 on 2020-07-01; neither was a member) is not caught.

Daily update. ``daily_return`` needs only the last two rows of the panel plus the listed-day counts of
t-1 (``listed_days`` for a history, ``update_listed_days`` to roll them forward one day), and gives
exactly (bit for bit) the value ``reconstruct`` gives for that day, provided the Series are in the
panel's column order (e.g. rows of the same frames): both pick the same members and add the same
per-stock returns (``stock_returns``) in the same order. ``reconstruct`` gets there faster by ranking
only a few hundred candidates a day (see the comment above ``_panel_pass``); the slow per-day pandas
``reconstruct_loop`` is kept as the reference for tests and benchmarks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

SHARE_CHANGE_TOL = 0.01  # implied shares moved by more than 1% between t-1 and t


def _traded(close: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(close) & (close > 0)


def stock_returns(c0: np.ndarray, c1: np.ndarray, m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """Return each stock's t-1 -> t return (fraction), split and bonus days corrected (the split rule).

    Arrays of equal shape: unadjusted closes ``c0`` (t-1), ``c1`` (t) and total caps ``m0``, ``m1``.
    When the implied shares (cap / close) moved by more than SHARE_CHANGE_TOL, the smaller in absolute
    value of the close ratio and the cap ratio (a positive finite one) is used, else the close ratio
    (module doc). Elementwise, so identical numbers for any array shape (the daily update relies on
    it). NaN where a close is missing.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = c1 / c0
        rm = m1 / m0
        moved = rm / rc  # implied shares t / t-1
        moved -= 1.0
        changed = np.flatnonzero(np.abs(moved, out=moved) > SHARE_CHANGE_TOL)  # NaN: not changed
        rc_c, rm_c = rc[changed], rm[changed]
        use_cap = (rm_c > 0) & (rm_c < np.inf) & (np.abs(rm_c - 1.0) < np.abs(rc_c - 1.0))
        rc[changed] = np.where(use_cap, rm_c, rc_c)
        rc -= 1.0
        return rc


def _smallest(caps: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    """Return a boolean mask of the ``n`` smallest eligible caps per row (ties: earlier column)."""
    if n >= caps.shape[1]:
        return eligible.copy()
    kth = np.partition(caps, n - 1, axis=1)[:, n - 1 : n]  # the n-th smallest (inf: fewer eligible)
    less = caps < kth  # ineligible caps are +inf, never below kth
    equal = (caps == kth) & eligible
    need = n - less.sum(axis=1)
    members = less | equal
    over = np.flatnonzero(equal.sum(axis=1) > need)  # rows with a tie across the n-th place
    if over.size:
        tied = equal[over]
        keep = tied & (np.cumsum(tied, axis=1) <= need[over, None])
        members[over] = less[over] | keep
    return members


def _eligible(traded0, traded1, m0, st0, listed_ok0) -> np.ndarray:
    """Eligibility of each stock (elementwise over any layout; see the module doc)."""
    with np.errstate(invalid="ignore"):
        return traded0 & traded1 & listed_ok0 & (m0 > 0) & (m0 < np.inf) & ~(st0 > 0.5)


def _mean_by_day(days: int, rows: np.ndarray, rets: np.ndarray) -> np.ndarray:
    """Equal-weighted mean of ``rets`` per day ``rows``; NaN for a day without members.

    ``np.bincount`` adds each day's returns one after the other in the order given (always the stock
    columns' order within a day): the same sum whether the arrays hold one day or the whole panel.
    """
    total = np.bincount(rows, weights=rets, minlength=days)
    count = np.bincount(rows, minlength=days)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _day_return(c0, c1, m0, m1, st0, listed_ok0, n: int) -> float:
    """The index return of one day from 1-D per-stock arrays of t-1 and t (the daily update)."""
    eligible = _eligible(_traded(c0), _traded(c1), m0, st0, listed_ok0)[None, :]
    caps = np.where(eligible, m0[None, :], np.inf)
    cols = np.flatnonzero(_smallest(caps, eligible, n)[0])
    rets = stock_returns(c0[cols], c1[cols], m0[cols], m1[cols])
    return float(_mean_by_day(1, np.zeros(len(cols), dtype=np.intp), rets)[0])


BLOCK_LEVELS = 3  # blocks of 2**3 = 8 days (one 64-bit word of booleans) for the bounds of the panel path
ROW_CHUNK = 128  # stocks per slab in the first pass over the panel (a slab's temporaries stay in cache)
MAX_CANDIDATES = 1.5  # days with more than 1.5 x n candidates (no bound, or a crash inside a block)
# are ranked in a second, wider array, so that the main one stays narrow
_ALL_TRUE = np.frombuffer(b"\x01" * 8, dtype=np.uint64)[0]  # eight True bytes read as one word

# The panel path (``reconstruct``), in stock-major arrays (stocks x days, C order: the layout of a
# consolidated DataFrame, so no copy). Day t-1 is column t-1 of ``c``/``m``/``st``; "day" below
# means the t-1 of a return.
#  1. ``_panel_pass``, ROW_CHUNK stocks at a time (contiguous rows: the temporaries stay in cache):
#     a loose eligibility ``loose`` (a superset of ``_eligible``: it skips the finiteness of the
#     closes and the sign of the cap, which sound data always pass) and, per block of 2**BLOCK_LEVELS
#     days, each stock's key = its largest cap over the block if loosely eligible all block long.
#  2. ``_fast_members``: the n-th smallest key of a block bounds the n-th smallest cap of each of its
#     days (at least n stocks are loosely eligible all block long at or below it); candidates =
#     loosely eligible stocks at or below the bound (a few hundred a day); the n smallest candidates
#     of every day are found at once in a days x width array (ties: lower stock column first).
#  3. Checks, then ``_plain_members`` for the days that fail them. If a day's chosen stocks are all
#     truly eligible and it had at least n candidates (or no bound), they are exactly the members of
#     ``_smallest`` over the true eligibility: each of them is eligible; and every eligible stock with a
#     smaller cap (or an equal cap and a lower column) is a loosely eligible stock under the bound, so
#     a candidate, so chosen. Other days (fewer than n candidates under a bound, or a chosen stock not
#     truly eligible: neither happens with sound data) are ranked on their own, exactly as the daily
#     update does. A bound never changes a value, only how fast it is found: no look-ahead.


def _pairwise(a: np.ndarray, levels: int, ufunc: np.ufunc) -> np.ndarray:
    """Reduce blocks of 2**levels adjacent columns with ``ufunc`` (the last block may be shorter)."""
    for _ in range(levels):
        width = a.shape[1]
        half = width // 2
        out = np.empty((a.shape[0], width - half), dtype=a.dtype)
        ufunc(a[:, 0 : 2 * half : 2], a[:, 1 : 2 * half : 2], out=out[:, :half])
        if width % 2:
            out[:, half] = a[:, -1]
        a = out
    return a


def _panel_pass(c: np.ndarray, m: np.ndarray, st: np.ndarray, young: int,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1: (loose eligibility padded with True to whole blocks, float32 block keys, first rows).

    ``first`` is each stock's first row with a close > 0 (exact unless a +inf close comes first;
    ``_exact_first`` fixes that).
    """
    stocks, days = c.shape[0], c.shape[1] - 1
    block = 2**BLOCK_LEVELS
    blocks = -(-days // block)
    loose = np.ones((stocks, blocks * block), dtype=bool)
    key = np.empty((stocks, blocks), dtype=np.float32)  # a bound only needs float32
    first = np.empty(stocks, dtype=np.int64)
    for lo in range(0, stocks, ROW_CHUNK):
        rows = slice(lo, lo + ROW_CHUNK)
        with np.errstate(invalid="ignore"):
            positive = c[rows] > 0  # traded, except for a +inf close
        first[rows] = _first_traded_row(positive.T)
        ok = loose[rows, :days]
        np.logical_and(positive[:, :-1], positive[:, 1:], out=ok)
        with np.errstate(invalid="ignore"):
            np.greater(ok, st[rows, :-1] > 0.5, out=ok)  # ok and not ST (True > False only)
        if young:  # not listed long enough: the first min - 1 days from the first trade
            row = np.repeat(np.arange(ok.shape[0]), young)
            col = (first[rows][:, None] + np.arange(young)[None, :]).ravel()
            inside = col < days
            ok[row[inside], col[inside]] = False
        whole_block = loose[rows].view(np.uint64) == _ALL_TRUE  # a block's 8 booleans as one word
        with np.errstate(invalid="ignore", over="ignore"):  # NaN cap: NaN key, ranked last; huge: inf
            key[rows] = np.where(whole_block, _pairwise(m[rows, :-1], BLOCK_LEVELS, np.maximum), np.inf)
    return loose, key, first


def _exact_first(c: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``first`` (first row with a close > 0) made exact: the first row with a finite close > 0."""
    seen = first < c.shape[1]
    wrong = np.flatnonzero(seen)[~np.isfinite(c[seen.nonzero()[0], first[seen]])]
    if wrong.size:
        first = first.copy()
        first[wrong] = _first_traded_row(_traded(c[wrong]).T)
    return first


def _fast_members(m: np.ndarray, loose: np.ndarray, key: np.ndarray, n: int,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 2: (stocks, days) chosen, stock-major, and a mask of the days left to the plain path."""
    stocks, days = m.shape[0], m.shape[1] - 1
    biggest = np.finfo(np.float64).max
    if n < stocks:
        # keys are float32 (rounded to nearest): widen by a few float32 ulps (a bound, not exact)
        bound = np.partition(np.ascontiguousarray(key.T), n - 1, axis=1)[:, n - 1].astype(np.float64)
        bound *= 1.0 + 2.0**-20
        bound[~(bound < np.inf)] = biggest  # no bound (fewer than n keys): every finite cap
    else:
        bound = np.full(key.shape[1], biggest)
    bound = np.repeat(bound, 2**BLOCK_LEVELS)[:days]
    with np.errstate(invalid="ignore"):
        candidate = np.less_equal(m[:, :-1], bound[None, :])  # a NaN or +inf cap never is
    candidate &= loose[:, :days]
    found: npt.NDArray[np.signedinteger] = np.flatnonzero(candidate).astype(
        np.int32 if m.size < 2**31 else np.int64)
    day = found % days  # stock-major order
    per_day = np.bincount(day, minlength=days)
    plain = (per_day < n) & (bound < biggest)  # too few candidates under a real bound (a safety net)
    if plain.any():
        keep = ~plain[day]
        found, day = found[keep], day[keep]
        per_day[plain] = 0
    # each candidate's rank among its day's candidates (stocks ascending): a running count down the
    # stocks, one row at a time (np.cumsum along axis 0 is several times slower)
    rank = np.empty(candidate.shape, dtype=np.int16 if stocks < 2**15 else np.int32)
    running = np.zeros(days, dtype=rank.dtype)
    for row, out in zip(candidate, rank, strict=True):
        out[:] = running
        running += row
    # rank every day's candidates at once in a days x width array of their caps (+inf padded), by
    # the same rule as a single day; the few days with many candidates (no bound, or a crash inside
    # a block) in a second, wider array, so that the first stays narrow
    wide = per_day > max(MAX_CANDIDATES * n, 1)
    day_cell = np.zeros(days, dtype=found.dtype)  # where each day's row starts in the flat buffer
    shapes, size = [], 0
    for group in (~wide & ~plain, wide):
        group_days = np.flatnonzero(group)
        width = max(int(per_day[group_days].max(initial=0)), 1)
        day_cell[group_days] = size + np.arange(len(group_days), dtype=found.dtype) * width
        shapes.append((size, len(group_days), width))
        size += len(group_days) * width
    cell = day_cell[day]
    cell += np.take(rank.ravel(), found)
    dense = np.full(size, np.inf)
    dense[cell] = np.take(m.ravel(), found + found // days)  # m has one more column than candidate
    picked = np.zeros(size, dtype=bool)
    for start, rows, width in shapes:
        block = dense[start : start + rows * width].reshape(rows, width)
        picked[start : start + rows * width] = _smallest(block, np.isfinite(block), n).ravel()
    stock, day = np.divmod(found[np.take(picked, cell)], days)
    return stock, day, plain


def _plain_members(c: np.ndarray, m: np.ndarray, st: np.ndarray, listed_from: np.ndarray,
                   days: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: (stocks, days) of the members of the given days, each ranked on its own, exactly."""
    c0, c1, m0, st0 = c[:, days].T, c[:, days + 1].T, m[:, days].T, st[:, days].T
    eligible = _eligible(_traded(c0), _traded(c1), m0, st0, days[:, None] >= listed_from[None, :])
    sub_day, stock = np.nonzero(_smallest(np.where(eligible, m0, np.inf), eligible, n))
    return stock, days[sub_day]


def _panel_returns(c: np.ndarray, m: np.ndarray, st: np.ndarray, min_listed_days: int,
                   n: int) -> np.ndarray:
    """The index return of every day but the first (fraction), from stock-major arrays."""
    days = c.shape[1] - 1
    young = max(min_listed_days, 1) - 1
    loose, key, first = _panel_pass(c, m, st, young)
    listed_from = _exact_first(c, first) + young  # listed at t-1 <=> t-1 >= this
    stock, day, plain = _fast_members(m, loose, key, n)
    at = stock * (days + 1) + day  # flat positions of the members at t-1 (ascending)
    c_flat, m_flat = c.ravel(), m.ravel()
    c0, c1, m0 = np.take(c_flat, at), np.take(c_flat, at + 1), np.take(m_flat, at)
    with np.errstate(invalid="ignore"):
        sound = np.isfinite(c0) & np.isfinite(c1) & (m0 > 0) & (day >= listed_from[stock])
    if not sound.all():  # a chosen stock that is not truly eligible: rank its day on its own
        plain[day[~sound]] = True
        keep = ~plain[day]
        stock, day, at, c0, c1, m0 = stock[keep], day[keep], at[keep], c0[keep], c1[keep], m0[keep]
    rets = stock_returns(c0, c1, m0, np.take(m_flat, at + 1))
    if plain.any():  # each day's members come from one place only, stocks ascending
        p_stock, p_day = _plain_members(c, m, st, listed_from, np.flatnonzero(plain), n)
        p_rets = stock_returns(c[p_stock, p_day], c[p_stock, p_day + 1], m[p_stock, p_day],
                               m[p_stock, p_day + 1])
        day, rets = np.concatenate((day, p_day)), np.concatenate((rets, p_rets))
    return _mean_by_day(days, day, rets)


def _check_panel(close: pd.DataFrame, *others: pd.DataFrame) -> None:
    for other in others:
        if other.shape != close.shape or not (other.index.equals(close.index)
                                              and other.columns.equals(close.columns)):
            raise ValueError("close, total_mv and is_st must have the same index and columns")
    if not close.index.is_monotonic_increasing or not close.index.is_unique:
        raise ValueError("the panel index (trading days) must be unique and ascending")


def _check_params(n: int, min_listed_days: int) -> None:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if min_listed_days < 0:
        raise ValueError(f"min_listed_days must be >= 0, got {min_listed_days}")


def _first_traded_row(traded: np.ndarray) -> np.ndarray:
    """Row of each column's first traded day; the row count for columns never traded."""
    first = traded.argmax(axis=0)
    first[~traded.any(axis=0)] = traded.shape[0]
    return first


def reconstruct(close: pd.DataFrame, total_mv: pd.DataFrame, is_st: pd.DataFrame, n: int = 400,
                min_listed_days: int = 20) -> pd.Series:
    """Return the daily return of the micro-cap index reconstructed from a stock panel.

    Returns a float Series (fraction, 0.01 = +1%) indexed by the panel's trading days, named
    ``microcap_return``: the equal-weighted mean t-1 -> t return of the ``n`` smallest eligible stocks
    by total market cap at t-1 (module doc: eligibility, split rule, ties). The first day is NaN, and
    so is any day without an eligible stock (e.g. the first ``min_listed_days`` days of the panel).
    Uses only rows <= t for the value of day t.
    """
    _check_panel(close, total_mv, is_st)
    _check_params(n, min_listed_days)
    out = np.full(len(close), np.nan)
    if len(close) >= 2:
        # stock-major (stocks x days, C order): views, no copy, for consolidated float64 frames
        c = np.ascontiguousarray(close.to_numpy(dtype=np.float64).T)
        m = np.ascontiguousarray(total_mv.to_numpy(dtype=np.float64).T)
        st = is_st.to_numpy(dtype=np.float64).T
        out[1:] = _panel_returns(c, m, st, min_listed_days, n)
    return pd.Series(out, index=close.index, name="microcap_return")


def listed_days(close: pd.DataFrame) -> pd.DataFrame:
    """Return the listed-day count of every stock on every day (int, trading days).

    Count = panel rows from the stock's first finite close > 0 up to and including the day (1 on the
    first trading day, suspensions included, 0 before the first trade). Same shape as ``close``.
    """
    c = close.to_numpy(dtype=np.float64)
    first = _first_traded_row(_traded(c))
    counts = np.arange(len(close))[:, None] - first[None, :] + 1
    return pd.DataFrame(np.maximum(counts, 0), index=close.index, columns=close.columns)


def update_listed_days(listed_days_prev: pd.Series, close_today: pd.Series) -> pd.Series:
    """Return today's listed-day counts (int, trading days) from yesterday's and today's closes.

    A stock already listed counts one more day (suspended or not); one trading for the first time
    today counts 1; others stay 0. Indexed like ``close_today`` (stocks new to the panel start at 0).
    ``update_listed_days(listed_days(close).iloc[t - 1], close.iloc[t])`` equals
    ``listed_days(close).iloc[t]``.
    """
    prev = listed_days_prev.reindex(close_today.index).fillna(0).to_numpy(dtype=np.int64)
    traded = _traded(close_today.to_numpy(dtype=np.float64))
    today = np.where(prev > 0, prev + 1, traded.astype(np.int64))
    return pd.Series(today, index=close_today.index, name=close_today.name)


def daily_return(close_prev: pd.Series, close_today: pd.Series, mv_prev: pd.Series, mv_today: pd.Series,
                 st_prev: pd.Series, listed_days_prev: pd.Series, n: int = 400,
                 min_listed_days: int = 20) -> float:
    """Return today's micro-cap index return (fraction) from the last two days of the panel only.

    Inputs are per-stock Series for t-1 (``close_prev``, ``mv_prev``, ``st_prev`` and
    ``listed_days_prev``, the counts of ``listed_days`` / ``update_listed_days`` at t-1) and for t
    (``close_today``, ``mv_today``); all are aligned to ``close_today``'s index (a stock missing from a
    Series counts as missing data). NaN when no stock is eligible. Equal, bit for bit, to
    ``reconstruct(...)`` on day t when the Series are rows of the same panel.
    """
    _check_params(n, min_listed_days)
    stocks = close_today.index

    def row(s: pd.Series) -> np.ndarray:
        return s.reindex(stocks).to_numpy(dtype=np.float64)

    listed_ok0 = np.nan_to_num(row(listed_days_prev), nan=0.0) >= max(min_listed_days, 1)
    return _day_return(row(close_prev), row(close_today), row(mv_prev), row(mv_today), row(st_prev),
                       listed_ok0, n)


def continue_microcap(prev: pd.DataFrame, today: pd.DataFrame, listed_days_prev: pd.Series,
                      n: int = 400, min_listed_days: int = 20) -> tuple[float, pd.Series]:
    """Continue the micro-cap index by one day from two consecutive cross-sections.

    ``prev`` / ``today``: frames with code, close, total_mv, is_st (the AKShare adapter's
    ``cross_section_frame`` rows or the stored stock_panel); ``listed_days_prev``: listed-day
    counts of the previous day by code. Returns (today's index return as a fraction, NaN when no
    stock is eligible; today's listed-day counts, int trading days by code), with
    ``daily_return`` / ``update_listed_days`` on the codes of both days in ascending order.
    """
    p, t = prev.set_index("code"), today.set_index("code")
    codes = t.index.union(p.index)
    close_today = t["close"].reindex(codes).astype(float)
    listed_prev = listed_days_prev.reindex(codes).fillna(0)
    ret = daily_return(p["close"].reindex(codes).astype(float), close_today,
                       p["total_mv"].reindex(codes).astype(float),
                       t["total_mv"].reindex(codes).astype(float),
                       p["is_st"].reindex(codes).astype(float), listed_prev, n=n,
                       min_listed_days=min_listed_days)
    return ret, update_listed_days(listed_prev, close_today)


def index_level(returns: pd.Series, base: float = 1000.0) -> pd.Series:
    """Return the index level (points) compounding daily returns (fraction) from ``base``.

    level_t = base * prod_{s <= t} (1 + r_s); a NaN return leaves the level unchanged, so the first
    day (NaN return) is ``base``. Same index as ``returns``.
    """
    growth = (1.0 + returns.astype(np.float64).fillna(0.0)).cumprod()
    return (base * growth).rename("microcap_level")


def reconstruct_loop(close: pd.DataFrame, total_mv: pd.DataFrame, is_st: pd.DataFrame, n: int = 400,
                     min_listed_days: int = 20) -> pd.Series:
    """Slow reference for ``reconstruct``: a straightforward per-day pandas loop (tests, benchmarks).

    For each day: take yesterday's caps of the eligible stocks, sort them, take the ``n`` smallest and
    average their returns. Returns the same Series as ``reconstruct`` (fraction) up to float rounding
    of the mean (~1e-16).
    """
    _check_panel(close, total_mv, is_st)
    _check_params(n, min_listed_days)
    traded = (close > 0) & close.abs().lt(np.inf)  # NaN compares False
    first_row = pd.Series(np.where(traded.any(), traded.to_numpy().argmax(axis=0), len(close)),
                          index=close.columns)
    out = pd.Series(np.nan, index=close.index, name="microcap_return")
    for t in range(1, len(close)):
        c0, c1 = close.iloc[t - 1], close.iloc[t]
        m0, m1 = total_mv.iloc[t - 1], total_mv.iloc[t]
        listed = (t - 1) - first_row + 1
        eligible = (traded.iloc[t - 1] & traded.iloc[t] & (listed >= min_listed_days)
                    & (m0 > 0) & m0.abs().lt(np.inf) & ~(is_st.iloc[t - 1] > 0.5))
        caps = m0[eligible].sort_values(kind="stable")
        members = caps.index[:n]
        if len(members) == 0:
            continue
        rc = c1[members] / c0[members]
        rm = m1[members] / m0[members]
        cap_ok = (rm > 0) & rm.abs().lt(np.inf)
        changed = cap_ok & ((rm / rc - 1.0).abs() > SHARE_CHANGE_TOL)
        use_cap = changed & ((rm - 1.0).abs() < (rc - 1.0).abs())
        out.iloc[t] = (rc.where(~use_cap, rm) - 1.0).mean()
    return out
