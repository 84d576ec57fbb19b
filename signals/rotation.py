"""Hot-theme rotation: another theme pulls trading money out of micro-caps (SIGNALS.md section 5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import period_return
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import ALL_A_CLOSE, MICROCAP_CLOSE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("rotation", theme_days=20, microcap_days=10, largecap_days=20, themes=[])
ALL_A = ALL_A_CLOSE
MICROCAP = MICROCAP_CLOSE
CSI300 = "index.csi300.close"
THEMES = "theme.*.close"


def theme_excess(frame, theme_days: int, themes: list[str] | None = None):
    """Return each theme's ``theme_days`` return minus CSI All Share's (fraction), one column per
    theme id (columns ``theme.<id>.close`` renamed to ``<id>``); only ``themes`` when given.
    A DataFrame for a DataFrame; for a mapping of numpy arrays, a dict id -> array."""
    table = isinstance(frame, pd.DataFrame)
    cols = [c for c in (frame.columns if table else frame) if c.startswith("theme.")
            and c.endswith(".close") and (not themes or c.split(".")[1] in set(themes))]
    market = period_return(frame[ALL_A], theme_days)
    out = {c.split(".")[1]: period_return(frame[c], theme_days) - market for c in cols}
    return pd.DataFrame(out, index=frame.index) if table else out


def _hottest(excess, ids: list[str]):
    """(largest excess per row, its theme id: the first on ties; NaN where no theme has one)
    for a (rows, themes) array."""
    valid = ~np.isnan(excess).all(axis=1)
    best = np.fmax.reduce(excess, axis=1)
    pick = np.where(np.isnan(excess), -np.inf, excess).argmax(axis=1)
    return best, np.where(valid, np.array(ids, dtype=object)[pick], np.nan)


@register("rotation.hot_theme_excess", family=FAMILY, inputs=(ALL_A, THEMES),
          window=lambda p: p["theme_days"] + 1, unit="fraction",
          params=("theme_days", "themes"), arrays=True)
def hot_theme_excess(frame: pd.DataFrame, theme_days: int, themes: list[str]):
    """Largest 20-day excess return of a theme over CSI All Share (fraction); context: the theme.

    The theme universe is every ``theme.*.close`` series present, or the config's ``themes``.
    Look-back: theme_days + 1 closes.
    """
    excess = theme_excess(frame, theme_days, themes)
    if isinstance(excess, dict):  # numpy arrays (the daily cycle's last value)
        rows = len(frame[ALL_A])
        if not excess:
            return np.full(rows, np.nan), np.full(rows, None, dtype=object)
        return _hottest(np.column_stack(list(excess.values())), list(excess))
    if excess.empty:
        nan = pd.Series(float("nan"), index=frame.index)
        return nan, pd.Series(None, index=frame.index, dtype=object)
    best, name = _hottest(excess.to_numpy(dtype=float), list(excess.columns))
    return pd.Series(best, index=frame.index), pd.Series(name, index=frame.index, dtype=object)


@register("rotation.microcap_excess_10d", family=FAMILY, inputs=(MICROCAP, ALL_A),
          window=lambda p: p["microcap_days"] + 1, unit="fraction", params=("microcap_days",),
          arrays=True)
def microcap_excess_10d(frame: pd.DataFrame, microcap_days: int) -> pd.Series:
    """Micro-cap ``microcap_days`` (default 10) return minus CSI All Share's (fraction)."""
    return period_return(frame[MICROCAP], microcap_days) - period_return(frame[ALL_A], microcap_days)


@register("rotation.largecap_minus_microcap_20d", family=FAMILY, inputs=(CSI300, MICROCAP),
          window=lambda p: p["largecap_days"] + 1, unit="fraction", params=("largecap_days",),
          arrays=True)
def largecap_minus_microcap_20d(frame: pd.DataFrame, largecap_days: int) -> pd.Series:
    """CSI 300 ``largecap_days`` (default 20) return minus the micro-cap index's (fraction)."""
    return period_return(frame[CSI300], largecap_days) - period_return(frame[MICROCAP], largecap_days)
