"""Heavy libraries imported on first use, so that importing the signal registry (which the config
loads, and with it every CLI command) does not import pandas and numpy.

In a module::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        pd = lazy("pandas", globals(), "pd")

The first attribute read (``pd.Series``) imports the library and rebinds the module's global to
it, so later reads cost nothing extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _Lazy:
    """Stands for a module until one of its attributes is read."""

    __slots__ = ("_name", "_namespace", "_alias")

    def __init__(self, name: str, namespace: dict[str, Any], alias: str) -> None:
        self._name = name
        self._namespace = namespace
        self._alias = alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module  # the caller's global is the module from now on
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<{self._name}, imported on first use>"


def lazy(name: str, namespace: dict[str, Any], alias: str) -> ModuleType:
    """Return a stand-in for module ``name`` bound as ``alias`` in ``namespace`` (the caller's
    ``globals()``): the module is imported when an attribute is first read."""
    return _Lazy(name, namespace, alias)  # type: ignore[return-value]
