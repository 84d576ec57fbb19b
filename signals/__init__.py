"""Pure indicator functions. Importing the package registers every signal in ``REGISTRY``."""

from signals import credit, drawdown, funds, market, regime, rotation, turnover, volatility  # noqa: F401
from signals.registry import FAMILY_PARAMS, REGISTRY, Signal, resolved_params

__all__ = ["FAMILY_PARAMS", "REGISTRY", "Signal", "resolved_params"]
