"""The per-cycle digest: what changed today, built as JSON for the outbox and rendered as text.

The payload is data (no formatting), so every notifier renders it its own way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

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
        if item.get("closest_episode"):
            lines.append(f"  Closest past episode: {episode_text(item['closest_episode'])}")
        if item["kind"] != "resolved":
            lines.append(f"  Silence: {silence_command(item['rule'])}")
    return "\n".join(lines)


def silence_command(rule: str) -> str:
    """Return the command that mutes ``rule``."""
    return f"regime-monitor silence add {rule} --until YYYY-MM-DD --reason '...'"


# -- the closest historical episode ------------------------------------------------------------

def reference_date(episode: Mapping) -> str:
    """Return the day whose indicator values stand for ``episode``: the peak of a drawdown (the
    eve of the decline), the first day of a rotation spell."""
    return episode.get("peak") or episode["start"]


def closest_episode(today: Mapping[str, float | None], episodes: Iterable[Mapping],
                    values_on: Mapping[str, Mapping[str, float | None]],
                    scale: Mapping[str, float], as_of: str, min_share: float = 0.5) -> dict | None:
    """Return the stored episode whose indicator vector is nearest today's, or None.

    ``today``: signal -> value on ``as_of``; ``episodes``: rows of the ``episodes`` table;
    ``values_on``: day -> (signal -> value) for the episodes' reference days; ``scale``:
    signal -> standard deviation of its stored history up to ``as_of``.

    Only episodes that ended before ``as_of`` count (an open one is today's, not history). Each
    is compared on its :func:`reference_date`. The distance is the root mean square of the
    standardised differences over the signals known on both days (with a positive scale)::

        d = sqrt( 1/n * sum_i ((today_i - then_i) / std_i) ** 2 )

    so 0 is identical and 1 is "one standard deviation apart per signal, on average". Episodes
    sharing fewer than ``min_share`` of today's usable signals are skipped. Ties go to the more
    recent episode.
    """
    usable = {k: float(v) for k, v in today.items()
              if _finite(v) and _finite(scale.get(k)) and scale[k] > 0}
    if not usable:
        return None
    need = max(1, math.ceil(min_share * len(usable)))
    scored = []
    for ep in episodes:
        if not ep.get("end") or ep["end"] >= as_of:
            continue
        then = values_on.get(reference_date(ep)) or {}
        diffs = [((x - float(then[k])) / scale[k]) ** 2 for k, x in usable.items()
                 if _finite(then.get(k))]
        if len(diffs) >= need:
            scored.append((math.sqrt(sum(diffs) / len(diffs)), len(diffs), ep))
    if not scored:
        return None
    # nearest first; among equals the most recent reference day
    scored.sort(key=lambda t: reference_date(t[2]), reverse=True)
    dist, n, ep = min(scored, key=lambda t: t[0])
    detail = ep.get("detail") or {}
    if isinstance(detail, str):
        detail = json.loads(detail or "{}")
    return {"kind": ep["kind"], "start": ep["start"], "peak": ep.get("peak"),
            "trough": ep.get("trough"), "end": ep.get("end"), "depth": ep.get("depth"),
            "theme": detail.get("theme"), "reference_date": reference_date(ep),
            "distance": round(dist, 3), "signals": n}


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def attach_closest(payload: dict, closest: dict | None) -> dict:
    """Return ``payload`` with ``closest`` stored in every alert item that is not a resolution
    (``closest_episode``; None when no past episode qualifies)."""
    items = []
    for item in payload["items"]:
        item = dict(item)
        if item["kind"] != "resolved":
            item["closest_episode"] = closest
        items.append(item)
    return {**payload, "items": items}


def needs_closest(payload: dict) -> bool:
    """Return whether some alert item of ``payload`` lacks its closest episode."""
    return any(i["kind"] != "resolved" and "closest_episode" not in i for i in payload["items"])


def episode_text(ep: Mapping) -> str:
    """Return e.g. ``drawdown 2015-06-12 -> trough 2015-09-15 (recovered 2016-02-01): micro-cap
    drawdown -45.2%`` (plus how close it is)."""
    depth = "n/a" if ep.get("depth") is None else f"{ep['depth'] * 100:.1f}%"
    if ep["kind"] == "drawdown":
        span = f"drawdown from the {ep['peak']} peak, trough {ep['trough']}"
        span += f", recovered {ep['end']}" if ep.get("end") else ""
    else:
        theme = f", theme {ep['theme']}" if ep.get("theme") else ""
        span = f"rotation {ep['start']} to {ep['end']}{theme}"
    return (f"{span}; micro-cap drawdown {depth} (distance {ep['distance']:.2f} over "
            f"{ep['signals']} signals, compared on {ep['reference_date']})")
