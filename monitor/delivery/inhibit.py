"""Inhibition, its own delivery stage (pure): what a digest shows once a critical alert fires.

As in Alertmanager (``notify.inhibit``): when a critical alert of the digest is firing (new or
still firing), the digest's lower-severity alerts are folded under it, one line each with its
value, instead of getting their own sections. A NEW alert is never hidden behind a critical
*reminder*: it is folded only under a critical alert that is itself new today (the same event).
Every renderer reads the same :func:`monitor.delivery.digest.content`, built with this
:func:`inhibit` - the Slack blocks, their plain-text fallback and the console - so they show the
same content.

| critical source | lower-severity item | folded? |
|---|---|---|
| NEW | NEW, STILL FIRING, RESOLVED | yes |
| STILL FIRING | STILL FIRING, RESOLVED | yes |
| STILL FIRING | NEW | no: its own section |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.delivery import digest


@dataclass(frozen=True)
class Inhibition:
    """A digest's alerts after inhibition.

    ``shown``: the items that keep their own section (payload order); ``folded``: the items
    folded into one line under ``source``, the inhibiting alert (None and empty when nothing is
    inhibited).
    """

    shown: list[dict]
    source: dict | None = None
    folded: list[dict] = field(default_factory=list)


def inhibit(payload: Mapping, enabled: bool = True) -> Inhibition:
    """Return the digest ``payload``'s items after inhibition: the first firing (or still firing)
    critical item inhibits every lower-severity item, when ``enabled`` and there is one to fold,
    except a NEW item when the critical one is a reminder (see the module's table); otherwise
    every item is shown."""
    items = list(payload["items"])
    if not enabled:
        return Inhibition(items)
    source = next((i for i in items if i["severity"] == "critical" and i["kind"] in digest.ACTIVE),
                  None)
    if source is None:
        return Inhibition(items)
    folded = [i for i in items if foldable(source, i)]
    if not folded:
        return Inhibition(items)
    return Inhibition([i for i in items if not any(i is f for f in folded)], source, folded)


def foldable(source: Mapping, item: Mapping) -> bool:
    """Return whether the critical ``source`` folds ``item``: a lower-severity item, and not a
    NEW one under a reminder (a new alert is never hidden behind a critical reminder)."""
    if item["severity"] == "critical":
        return False
    return not (item["kind"] == "firing" and source["kind"] != "firing")
