"""The per-cycle digest: what changed today, built as JSON for the outbox and rendered as text.

The payload is data (no formatting), so every notifier renders it its own way.
"""

from __future__ import annotations

import signals

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
KIND_LABEL = {"firing": "NEW", "repeat": "STILL FIRING", "resolved": "RESOLVED"}


def build(as_of: str, items: list[dict], firing: list[str], pending: list[str],
          composite: dict) -> dict:
    """Return the digest payload for ``as_of``.

    ``items`` are the notifications of the day (rule, severity, kind, since, explain,
    comparisons, values, context); ``firing``/``pending`` the rules in those states after the
    cycle; ``composite`` the count and names of conditions holding today.
    """
    items = sorted(items, key=lambda i: (SEVERITY_ORDER[i["severity"]], i["kind"], i["rule"]))
    counts = {
        "firing": len(firing),
        "new": sum(i["kind"] == "firing" for i in items),
        "repeat": sum(i["kind"] == "repeat" for i in items),
        "resolved": sum(i["kind"] == "resolved" for i in items),
        "pending": len(pending),
    }
    return {"as_of": as_of, "counts": counts, "items": items, "firing": sorted(firing),
            "pending": sorted(pending), "composite": composite}


def format_value(signal: str | None, value: float | None) -> str:
    """Return ``value`` formatted in ``signal``'s unit: percent for fractions, bp, or a ratio."""
    if value is None:
        return "n/a"
    unit = signals.REGISTRY[signal].unit if signal in signals.REGISTRY else ""
    if unit.startswith("fraction"):
        return f"{value * 100:.1f}%"
    if unit == "bp":
        return f"{value:.1f} bp"
    return f"{value:.2f}"


def headline(payload: dict) -> str:
    """Return the one-line summary of a digest."""
    c = payload["counts"]
    parts = [f"{c['firing']} firing ({c['new']} new)"]
    if c["resolved"]:
        parts.append(f"{c['resolved']} resolved")
    if c["pending"]:
        parts.append(f"{c['pending']} pending")
    return f"regime-monitor {payload['as_of']}: " + ", ".join(parts)


def comparison_text(comp: dict) -> str:
    """Return e.g. ``microcap.vol_spike = 1.72 (threshold >= 1.50)``."""
    threshold = (comp["threshold_signal"] if comp.get("threshold_signal")
                 else format_value(comp["signal"], comp["threshold"]))
    mark = {True: "met", False: "not met", None: "no data"}[comp["holds"]]
    return (f"{comp['signal']} = {format_value(comp['signal'], comp['value'])} "
            f"(threshold {comp['op']} {threshold}: {mark})")


def render_text(payload: dict) -> str:
    """Return the digest as plain text (console output and Slack fallback)."""
    lines = [headline(payload)]
    comp = payload.get("composite") or {}
    if comp.get("names"):
        lines.append(f"Conditions active today ({comp['count']}): {', '.join(comp['names'])}")
    for item in payload["items"]:
        lines.append("")
        since = f" since {item['since']}" if item.get("since") else ""
        lines.append(f"[{item['severity'].upper()}] {item['rule']}: "
                     f"{KIND_LABEL[item['kind']]}{since}")
        for c in item["comparisons"]:
            lines.append(f"  {comparison_text(c)}")
        for signal, val in sorted((item.get("context") or {}).items()):
            lines.append(f"  {signal} is led by: {val}")
        lines.append(f"  Why it matters: {item['explain']}")
        if item["kind"] != "resolved":
            lines.append(f"  Silence: regime-monitor silence add {item['rule']} "
                         "--until YYYY-MM-DD --reason '...'")
    return "\n".join(lines)
