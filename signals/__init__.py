"""Pure indicator functions. Importing the package registers every signal in ``REGISTRY``."""

from signals import (  # noqa: F401
    credit,
    drawdown,
    funds,
    market,
    regime,
    risk,
    rotation,
    turnover,
    volatility,
)
from signals.registry import FAMILY_PARAMS, REGISTRY, Signal, resolved_params

__all__ = ["FAMILY_PARAMS", "REGISTRY", "Signal", "resolved_params"]
