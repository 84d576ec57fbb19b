"""Hot-theme rotation: another theme pulls trading money out of micro-caps (SIGNALS.md section 5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import period_return
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import ALL_A_CLOSE, MICROCAP_CLOSE

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("rotation", theme_days=20, microcap_days=10, largecap_days=20, themes=[])
ALL_A = ALL_A_CLOSE
MICROCAP = MICROCAP_CLOSE
CSI300 = "index.csi300.close"
THEMES = "theme.*.close"


def theme_excess(frame: pd.DataFrame, theme_days: int, themes: list[str] | None = None) -> pd.DataFrame:
    """Return each theme's ``theme_days`` return minus CSI All Share's (fraction), one column per
    theme id (columns ``theme.<id>.close`` renamed to ``<id>``); only ``themes`` when given."""
    cols = [c for c in frame.columns if c.startswith("theme.") and c.endswith(".close")
            and (not themes or c.split(".")[1] in set(themes))]
    market = period_return(frame[ALL_A], theme_days)
    out = {c.split(".")[1]: period_return(frame[c], theme_days) - market for c in cols}
    return pd.DataFrame(out, index=frame.index)


@register("rotation.hot_theme_excess", family=FAMILY, inputs=(ALL_A, THEMES),
          window=lambda p: p["theme_days"] + 1, unit="fraction",
          params=("theme_days", "themes"))
def hot_theme_excess(frame: pd.DataFrame, theme_days: int, themes: list[str]):
    """Largest 20-day excess return of a theme over CSI All Share (fraction); context: the theme.

    The theme universe is every ``theme.*.close`` series present, or the config's ``themes``.
    Look-back: theme_days + 1 closes.
    """
    excess = theme_excess(frame, theme_days, themes)
    if excess.empty:
        nan = pd.Series(float("nan"), index=frame.index)
        return nan, pd.Series(None, index=frame.index, dtype=object)
    best = excess.max(axis=1, skipna=True)
    valid = excess.notna().any(axis=1)
    name = excess.fillna(float("-inf")).idxmax(axis=1).where(valid)
    return best, name


@register("rotation.microcap_excess_10d", family=FAMILY, inputs=(MICROCAP, ALL_A),
          window=lambda p: p["microcap_days"] + 1, unit="fraction", params=("microcap_days",))
def microcap_excess_10d(frame: pd.DataFrame, microcap_days: int) -> pd.Series:
    """Micro-cap ``microcap_days`` (default 10) return minus CSI All Share's (fraction)."""
    return period_return(frame[MICROCAP], microcap_days) - period_return(frame[ALL_A], microcap_days)


@register("rotation.largecap_minus_microcap_20d", family=FAMILY, inputs=(CSI300, MICROCAP),
          window=lambda p: p["largecap_days"] + 1, unit="fraction", params=("largecap_days",))
def largecap_minus_microcap_20d(frame: pd.DataFrame, largecap_days: int) -> pd.Series:
    """CSI 300 ``largecap_days`` (default 20) return minus the micro-cap index's (fraction)."""
    return period_return(frame[CSI300], largecap_days) - period_return(frame[MICROCAP], largecap_days)
