"""The signal registry: every indicator is one pure function plus one registration.

A signal function takes a wide DataFrame (index = consecutive trading days ending at the day being
computed, columns = the canonical input series it declares, NaN where a value is missing or not yet
available) and keyword parameters, and returns a float Series on the same index. A value at day t
may depend only on rows <= t. The cycle stores the last value; replay may use the whole Series.

``window`` is how many trading days of input the last value needs (``None``: all history).

A function registered with ``arrays=True`` also accepts, instead of the DataFrame, a mapping of
its input series to 1-D numpy arrays (the same rows) and then returns arrays: it is written with
the helpers of ``signals.common``, which take either. The daily cycle computes such a signal's
last value that way (``Signal.last_value``), without pandas' per-operation overhead; the value is
the one the DataFrame gives on the same rows (tests/test_incremental.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signals.lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas", globals(), "pd")


SignalFunc = Callable[..., "pd.Series | tuple[pd.Series, pd.Series]"]


@dataclass(frozen=True)
class Signal:
    """One registered indicator."""

    name: str
    family: str
    inputs: tuple[str, ...]  # series names; may be glob patterns (theme.*.close) or templates
    # over the family's parameters (yield.gov.{tenor})
    window: Callable[[Mapping[str, Any]], int | None]
    func: SignalFunc
    unit: str
    doc: str = ""
    params: tuple[str, ...] = field(default=())  # family parameters the function takes
    state: str | None = None  # a cached model the caller supplies as ``fit=`` (e.g. "regime_fit")
    # the function also takes a mapping of 1-D numpy arrays for ``frame`` (written with the
    # helpers of signals.common), so the daily cycle can compute its last value without pandas
    arrays: bool = False

    def window_days(self, params: Mapping[str, Any]) -> int | None:
        """Return the look-back in trading days for ``params`` (None = expanding)."""
        return self.window(params)

    def resolve_inputs(self, available: Iterable[str], params: Mapping[str, Any]) -> list[str]:
        """Return the concrete input series, expanding glob patterns against ``available``."""
        out: list[str] = []
        avail = sorted(set(available))
        for pattern in self.inputs:
            if "{" in pattern:  # a template over the family's parameters, e.g. yield.gov.{tenor}
                pattern = pattern.format(**params)
            if any(ch in pattern for ch in "*?["):
                matches = [s for s in avail if fnmatch.fnmatchcase(s, pattern)]
                allowed = params.get("themes") if "themes" in self.params else None
                if allowed:
                    matches = [s for s in matches if s.split(".")[1] in set(allowed)]
                out.extend(matches)
            else:
                out.append(pattern)
        return out

    def compute(self, frame: pd.DataFrame, params: Mapping[str, Any],
                state: Any = None) -> tuple[pd.Series, pd.Series | None]:
        """Run the function on ``frame`` (with ``state`` as ``fit=`` for stateful signals);
        return (values, context or None)."""
        kwargs = {k: params[k] for k in self.params}
        if self.state is not None:
            kwargs["fit"] = state
        result = self.func(frame, **kwargs)
        if isinstance(result, tuple):
            return result[0], result[1]
        return result, None

    def last_value(self, columns: Mapping[str, Any], params: Mapping[str, Any],
                   state: Any = None) -> tuple[float, Any]:
        """Return (value, context or None) on the last row, computed on numpy arrays: ``columns``
        maps each input series to a 1-D float array of its trailing window (the same rows as the
        ``frame`` of :meth:`compute`, oldest first); ``state`` as in :meth:`compute`. The same
        function as :meth:`compute` (one definition); only for signals registered with
        ``arrays=True``. Value NaN when not computable; context as the function gives it (None or
        NaN when there is none)."""
        if not self.arrays:
            raise TypeError(f"signal {self.name!r} is not registered with arrays=True")
        import numpy as np

        kwargs = {k: params[k] for k in self.params}
        if self.state is not None:
            kwargs["fit"] = state
        with np.errstate(all="ignore"):
            result = self.func(columns, **kwargs)
        values, context = result if isinstance(result, tuple) else (result, None)
        if not len(values):
            return float("nan"), None
        return float(values[-1]), None if context is None else context[-1]


REGISTRY: dict[str, Signal] = {}
FAMILY_PARAMS: dict[str, dict[str, Any]] = {}


def family(name: str, **defaults: Any) -> str:
    """Declare a family of signals and its default parameters; return the family name."""
    FAMILY_PARAMS[name] = dict(defaults)
    return name


def register(
    name: str,
    *,
    family: str,
    inputs: Iterable[str],
    window: Callable[[Mapping[str, Any]], int | None],
    unit: str,
    params: Iterable[str] = (),
    state: str | None = None,
    arrays: bool = False,
) -> Callable[[SignalFunc], SignalFunc]:
    """Decorator that registers ``func`` as signal ``name``. ``arrays``: ``func`` also accepts a
    mapping of numpy arrays as its frame (see :meth:`Signal.last_value`)."""

    def deco(func: SignalFunc) -> SignalFunc:
        if name in REGISTRY:
            raise ValueError(f"signal {name!r} registered twice")
        unknown = set(params) - set(FAMILY_PARAMS.get(family, {}))
        if unknown:
            raise ValueError(f"signal {name!r} uses undeclared parameters {sorted(unknown)}")
        REGISTRY[name] = Signal(
            name=name,
            family=family,
            inputs=tuple(inputs),
            window=window,
            func=func,
            unit=unit,
            doc=(func.__doc__ or "").strip(),
            params=tuple(params),
            state=state,
            arrays=arrays,
        )
        return func

    return deco


def resolved_params(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Return the family parameters with ``overrides`` (``{family: {param: value}}``) applied."""
    out = {fam: dict(vals) for fam, vals in FAMILY_PARAMS.items()}
    for fam, vals in (overrides or {}).items():
        out[fam].update(vals)
    return out
