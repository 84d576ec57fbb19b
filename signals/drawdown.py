"""Micro-cap drawdown, absolute and relative to CSI 300 (SIGNALS.md section 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.common import drawdown
from signals.lazy import lazy
from signals.registry import family, register
from signals.series import MICROCAP_CLOSE

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("drawdown")
MICROCAP = MICROCAP_CLOSE
CSI300 = "index.csi300.close"


@register("microcap.drawdown", family=FAMILY, inputs=(MICROCAP,), window=lambda p: None,
          unit="fraction", arrays=True)
def microcap_drawdown(frame: pd.DataFrame) -> pd.Series:
    """Micro-cap close / its running maximum - 1 (fraction, <= 0; -0.10 = 10% below the peak).

    Look-back: all history (the running maximum is expanding).
    """
    return drawdown(frame[MICROCAP])


@register("microcap.rel_drawdown_csi300", family=FAMILY, inputs=(MICROCAP, CSI300),
          window=lambda p: None, unit="fraction", arrays=True)
def rel_drawdown_csi300(frame: pd.DataFrame) -> pd.Series:
    """Drawdown of the ratio micro-cap / CSI 300 from its running maximum (fraction, <= 0).

    Look-back: all history.
    """
    return drawdown(frame[MICROCAP] / frame[CSI300])
