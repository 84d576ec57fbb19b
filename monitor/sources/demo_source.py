"""The demo scenario as a source: each cycle receives what became available that day."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from monitor.sources.base import Fetched


class DemoSource:
    """Serves ``monitor.sources.demo.generate(seed)`` day by day, point-in-time."""

    name = "demo"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._frame: pd.DataFrame | None = None

    def frame(self) -> pd.DataFrame:
        """Return the whole scenario (long format), generated once."""
        if self._frame is None:
            from monitor.sources import demo

            f = demo.generate(seed=self.seed).copy()
            f["date"] = [d.isoformat() for d in f["date"]]
            f["available_at"] = [d.isoformat() for d in f["available_at"]]
            self._frame = f.sort_values(["available_at", "series", "date"]).reset_index(drop=True)
        return self._frame

    def fetch(self, as_of: dt.date, since: dt.date | None) -> Fetched:
        """Return the scenario's rows with ``available_at`` in (since, as_of]; never fails."""
        f = self.frame()
        hi = f["available_at"].searchsorted(as_of.isoformat(), side="right")
        lo = 0 if since is None else f["available_at"].searchsorted(since.isoformat(), side="right")
        part = f.iloc[lo:hi]
        return Fetched(list(zip(part["series"], part["date"], part["value"].astype(float),
                                part["available_at"], ["demo"] * len(part), strict=True)))
