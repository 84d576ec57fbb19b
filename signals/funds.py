"""Active-fund small-cap allocation, quarterly (SIGNALS.md section 6).

Crowding of quant strategies in small caps is eased while active funds also hold them; a falling
allocation means that support is leaving. Inputs are the quarterly series ``funds.*`` dated by
report date; they appear in the frame only once available (publication lag), so the latest
change is carried forward until the next report is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signals.lazy import lazy
from signals.registry import family, register

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy", globals(), "np")
    pd = lazy("pandas", globals(), "pd")

FAMILY = family("funds", carry_days=130)
SHARE = "funds.smallcap_share_mean"
VALUE = "funds.smallcap_value_total"


def _latest_change(s, carry_days: int, relative: bool):
    """Change of each report from the previous one, carried forward ``carry_days`` rows; NaN when
    the previous report is more than ``carry_days`` rows earlier (a missed report: no change
    can be measured), so a window of 2 x carry_days + 1 rows always holds both reports.

    ``s``: a Series (returns a Series on its index) or a 1-D numpy array (returns an array): one
    computation in numpy for both, so the daily cycle's last value is the replay's."""
    x = s if isinstance(s, np.ndarray) else s.to_numpy(dtype=float)
    n = len(x)
    at = np.flatnonzero(~np.isnan(x))  # rows holding a report
    reports = x[at]
    change = np.full(len(at), np.nan)
    if len(at) > 1:
        with np.errstate(all="ignore"):
            step = reports[1:] / reports[:-1] - 1.0 if relative else reports[1:] - reports[:-1]
        change[1:] = np.where(np.diff(at) <= carry_days, step, np.nan)
    out = np.full(n, np.nan)
    out[at] = change
    # carried forward: each row takes the last row with a change if at most carry_days earlier
    rows = np.arange(n)
    last = np.maximum.accumulate(np.where(np.isnan(out), -1, rows)) if n else rows
    out = np.where((last >= 0) & (rows - last <= carry_days), out[np.maximum(last, 0)], np.nan)
    return out if isinstance(s, np.ndarray) else pd.Series(out, index=s.index, name=s.name)


@register("funds.smallcap_share_mean_chg", family=FAMILY, inputs=(SHARE,),
          window=lambda p: 2 * p["carry_days"] + 1, unit="fraction points", params=("carry_days",),
          arrays=True)
def smallcap_share_mean_chg(frame: pd.DataFrame, carry_days: int) -> pd.Series:
    """Change of the small-cap funds' mean small-cap share from the previous report (fraction
    points: -0.03 = down 3 percentage points), carried up to ``carry_days`` trading days.
    Allocation falling when <= -0.03. Look-back: 2 x carry_days + 1.
    """
    return _latest_change(frame[SHARE], carry_days, relative=False)


@register("funds.smallcap_value_total_chg", family=FAMILY, inputs=(VALUE,),
          window=lambda p: 2 * p["carry_days"] + 1, unit="fraction", params=("carry_days",),
          arrays=True)
def smallcap_value_total_chg(frame: pd.DataFrame, carry_days: int) -> pd.Series:
    """Relative change of the small-cap funds' total small-cap holding value from the previous
    report (fraction: -0.10 = down 10%), carried up to ``carry_days`` trading days.
    """
    return _latest_change(frame[VALUE], carry_days, relative=True)
