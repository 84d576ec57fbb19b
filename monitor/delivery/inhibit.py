"""Inhibition, its own delivery stage (pure): what a digest shows once a critical alert fires.

As in Alertmanager (``notify.inhibit``): when a critical alert of the digest is firing (new or
still firing), the digest's lower-severity alerts are folded into one line under it instead of
getting their own sections. Every renderer applies the same :func:`inhibit` to the payload - the
Slack blocks, their plain-text fallback and the console - so they show the same content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.delivery import digest

FOLD_INTRO = "Also in today's digest, folded under the critical alert"


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
    critical item inhibits every lower-severity item, when ``enabled`` and there is one to fold;
    otherwise every item is shown."""
    items = list(payload["items"])
    if not enabled:
        return Inhibition(items)
    source = next((i for i in items if i["severity"] == "critical" and i["kind"] in digest.ACTIVE),
                  None)
    if source is None:
        return Inhibition(items)
    folded = [i for i in items if i["severity"] != "critical"]
    if not folded:
        return Inhibition(items)
    return Inhibition([i for i in items if i["severity"] == "critical"], source, folded)


def label(item: Mapping) -> str:
    """Return one folded alert as ``rule (severity, KIND)``."""
    return f"{item['rule']} ({item['severity']}, {digest.KIND_LABEL[item['kind']]})"


def fold_text(folded: list[dict]) -> str:
    """Return the plain-text line that lists inhibited alerts."""
    return f"{FOLD_INTRO} (notify.inhibit): " + ", ".join(label(i) for i in folded)
