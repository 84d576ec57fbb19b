"""The per-cycle digest: what changed today, built as JSON for the outbox and rendered as text.

A digest goes out only when something changes (:func:`should_send`: a new firing or a resolution
of a warning or critical alert) or on the weekly summary day (:func:`is_summary_day`). Every digest
opens with the headline block (the drawdown probability of the rules reading
``risk.drawdown_prob``, with their measured skill) and the regime context on one line.

The payload is data (no formatting), so every notifier renders it its own way.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeGuard

import signals
from signals import risk

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
KIND_LABEL = {"firing": "NEW", "repeat": "STILL FIRING", "resolved": "RESOLVED"}
ACTIVE = ("firing", "repeat")

DATA_STALE = "data_stale"
"""The built-in data-quality alert (``monitor.cycle``)."""
HEADLINE_SIGNAL = risk.SIGNAL
"""Rules whose ``when`` reads this signal are the headline: their state tops every digest."""
TRIGGER_SEVERITIES = ("warning", "critical")
"""A new firing or a resolution of a rule with one of these severities triggers a digest."""
TRIGGER_KINDS = ("firing", "resolved")
REMINDER_SECTIONS = 3
"""At most this many reminders get a section each; more are folded into the "Still firing" line."""


def is_headline(rule) -> bool:
    """True when ``rule`` (a ``RuleConfig``) is a headline rule: its ``when`` reads
    :data:`HEADLINE_SIGNAL`."""
    return HEADLINE_SIGNAL in rule.when_expr.names


# -- when a digest goes out ---------------------------------------------------------------------

def should_send(items: Iterable[Mapping], summary_day: bool) -> bool:
    """Return whether the day's notifications make a digest (pure; the cycle and the backtest
    both decide with it).

    ``items``: the day's notifications, each with ``rule``, ``severity`` and ``kind`` (firing,
    repeat or resolved). A digest goes out when some item is a new firing or a resolution of a
    warning or critical rule (or of the built-in ``data_stale`` alert), or on a summary day.
    Reminders and info-severity changes never cause one on their own: they ride along in a digest
    that goes out anyway.
    """
    if summary_day:
        return True
    return any(i["kind"] in TRIGGER_KINDS
               and (i["severity"] in TRIGGER_SEVERITIES or i["rule"] == DATA_STALE)
               for i in items)


def is_summary_day(day: dt.date, next_trading_day: dt.date, enabled: bool) -> bool:
    """Return whether ``day`` gets the weekly summary: ``enabled`` (``notify.weekly_summary``) and
    ``day`` is the last trading day of its ISO week (the next trading day is in another week)."""
    return enabled and day.isocalendar()[:2] != next_trading_day.isocalendar()[:2]


# -- the payload --------------------------------------------------------------------------------

def build(as_of: str, items: list[dict], firing: list[str], pending: list[str],
          composite: dict, *, active: list[dict] | None = None, context: list[dict] | None = None,
          risk: dict | None = None, summary: bool = False, notes: list[str] | None = None) -> dict:
    """Return the digest payload for ``as_of`` (JSON data, no formatting).

    ``items`` are the notifications of the day (rule, severity, kind, since, explain,
    comparisons, values, context); ``firing``/``pending`` the rules in those states after the
    cycle; ``composite`` the count and names of conditions holding today; ``active`` every firing
    alert as ``{rule, severity, since}`` (default: those among ``items``); ``context`` the regime
    context (:func:`monitor.alerting.context.evaluate_context`); ``risk`` the headline block
    (:func:`risk_block`); ``summary`` marks the weekly summary; ``notes`` are one-line remarks
    about the monitor itself shown with every digest (e.g. the holiday calendar running out).
    """
    items = sorted(items, key=lambda i: (SEVERITY_ORDER[i["severity"]], i["kind"], i["rule"]))
    counts = {
        "firing": len(firing),
        "new": sum(i["kind"] == "firing" for i in items),
        "repeat": sum(i["kind"] == "repeat" for i in items),
        "resolved": sum(i["kind"] == "resolved" for i in items),
        "pending": len(pending),
    }
    if active is None:
        active = [{"rule": i["rule"], "severity": i["severity"], "since": i.get("since")}
                  for i in items if i["kind"] in ACTIVE]
    active = sorted(active, key=lambda a: (SEVERITY_ORDER[a["severity"]], a.get("since") or "",
                                           a["rule"]))
    return {"as_of": as_of, "summary": bool(summary), "counts": counts, "items": items,
            "firing": sorted(firing), "pending": sorted(pending), "active": active,
            "composite": composite, "context": list(context or []), "risk": risk,
            "notes": list(notes or [])}


def risk_block(value: float | None, context: str | Mapping | None, rules: list[dict]) -> dict:
    """Return the headline block of a payload: the drawdown probability ``value``, the model's
    base rate, fit date and contributions from the signal's ``context`` (its JSON text or the
    parsed dict), and ``rules``: each headline rule as ``{rule, severity, state, since,
    scorecard}`` (scorecard: ``storage.scorecards.latest`` or None), in config order."""
    ctx: dict = {}
    if isinstance(context, str):
        try:
            ctx = json.loads(context)
        except ValueError:
            ctx = {}
    elif isinstance(context, Mapping):
        ctx = dict(context)
    if not isinstance(ctx, dict):
        ctx = {}
    return {"signal": HEADLINE_SIGNAL, "value": value, "base_rate": ctx.get("base_rate"),
            "fit_through": ctx.get("fit_through"), "n_obs": ctx.get("n_obs"),
            "contributions": list(ctx.get("contributions") or []), "rules": list(rules)}


# -- text ---------------------------------------------------------------------------------------

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
    """Return the one-line title of a digest (date, counts; "Weekly summary" on a summary)."""
    c = payload["counts"]
    parts = [f"{c['firing']} firing ({c['new']} new)"]
    if c["resolved"]:
        parts.append(f"{c['resolved']} resolved")
    if c["pending"]:
        parts.append(f"{c['pending']} pending")
    kind = "Weekly summary · " if payload.get("summary") else ""
    return f"regime-monitor {payload['as_of']}: {kind}" + ", ".join(parts)


def _percent(p: float) -> str:
    return f"{p * 100:.0f}%" if p * 100 >= 1 else f"{p * 100:.1f}%"


def primary_rule(risk: Mapping) -> dict | None:
    """Return the headline rule the top line speaks for: the most severe firing one (config order
    among equals), else the first."""
    rules = list(risk.get("rules") or [])
    firing = [r for r in rules if r.get("state") == "firing"]
    if firing:
        return min(firing, key=lambda r: SEVERITY_ORDER.get(r.get("severity"), 9))
    return rules[0] if rules else None


def leading(risk: Mapping, n: int = 3) -> list[dict]:
    """Return the ``n`` contributions that push the probability up most (positive log-odds)."""
    pos = [c for c in risk.get("contributions") or [] if (c.get("logodds") or 0) > 0]
    return sorted(pos, key=lambda c: -c["logodds"])[:n]


def risk_text(risk: Mapping) -> str:
    """Return the headline line, e.g. ``Drawdown risk 34% (base rate 21%), elevated since
    2024-01-15 — led by microcap.vol_spike 1.80, market.return_20d -8.1%``; when no headline rule
    is firing, one short line with the probability and the base rate."""
    p, base = risk.get("value"), risk.get("base_rate")
    if p is None:
        return "Drawdown risk: no estimate today (no model fit yet, or an input is missing)."
    against = f" (base rate {_percent(base)})" if base is not None else ""
    rule = primary_rule(risk)
    if rule is None or rule.get("state") != "firing":
        return f"Drawdown risk {_percent(p)}{against}: no alert."
    since = f", elevated since {rule['since']}" if rule.get("since") else ", elevated"
    led = leading(risk)
    lead = (" — led by " + ", ".join(f"{c['signal']} {format_value(c['signal'], c.get('value'))}"
                                     for c in led)) if led else ""
    return f"Drawdown risk {_percent(p)}{against}{since}{lead}"


def skill_text(scorecard: Mapping | None) -> str:
    """Return the measured skill of a headline rule in one sentence (``backtest --record``)."""
    if not scorecard:
        return "Skill not measured yet: run regime-monitor backtest --record."

    def num(key: str, spec: str) -> str:
        v = scorecard.get(key)
        return "n/a" if v is None else format(v, spec)

    lead = scorecard.get("min_lead_days")
    when = f" ≥{lead} trading days before half depth" if lead is not None else ""
    p = scorecard.get("p_value")
    pv = "p n/a" if p is None else "p < 0.01" if p < 0.01 else f"p = {p:.2f}"
    verdict = ("not shown to beat chance" if p is None or p > 0.05
               else "better than chance (p ≤ 0.05)")
    return (f"Measured {scorecard.get('start')}..{scorecard.get('end')}: caught "
            f"{num('caught', 'd')} of {num('episodes', 'd')} drawdowns{when}; chance "
            f"{num('chance_mean', '.1f')} ({pv}); {num('false_alarms_per_year', '.1f')} false "
            f"alarms a year — {verdict}.")


def top_lines(payload: Mapping) -> list[str]:
    """Return the headline block as text lines: while a headline rule fires, the probability and
    the rule's measured skill; otherwise the one short probability line. Empty when no headline
    rule is configured."""
    risk = payload.get("risk")
    if not risk:
        return []
    rule = primary_rule(risk)
    if rule is None or rule.get("state") != "firing" or risk.get("value") is None:
        return [risk_text(risk)]
    return [risk_text(risk), skill_text(rule.get("scorecard"))]


def regime_line(context: list[Mapping] | None) -> str | None:
    """Return the regime context on one line, holding conditions first, e.g. ``Regime: micro-cap
    drawdown under way (microcap.drawdown -12.4%) · small-cap turnover not crowded``; None
    without context entries. An entry that does not hold shows its ``label_off`` (or nothing)."""
    if not context:
        return None
    parts = []
    for holds in (True, None, False):
        for entry in context:
            if entry.get("holds") is not holds:
                continue
            if holds:
                vals: dict[str, float | None] = {}
                for c in entry.get("comparisons") or []:
                    if c.get("signal"):
                        vals.setdefault(c["signal"], c["value"])
                shown = ", ".join(f"{s} {format_value(s, v)}" for s, v in vals.items())
                parts.append(f"{entry['label']} ({shown})" if shown else entry["label"])
            elif holds is None:
                parts.append(f"{entry['label']}: no data")
            elif entry.get("label_off"):
                parts.append(entry["label_off"])
    return "Regime: " + (" · ".join(parts) if parts else "none of the watched conditions holds")


def sectioned(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Return (the items shown each in its own section, the reminders folded into the "Still
    firing" line): reminders get sections only when there are at most REMINDER_SECTIONS."""
    repeats = [i for i in items if i["kind"] == "repeat"]
    if len(repeats) <= REMINDER_SECTIONS:
        return list(items), []
    return [i for i in items if i["kind"] != "repeat"], repeats


def still_firing(payload: Mapping, mentioned: Iterable[str]) -> list[dict]:
    """Return the firing alerts (``{rule, severity, since}``) not ``mentioned`` elsewhere in the
    message, most severe first."""
    skip = set(mentioned)
    active = payload.get("active")
    if active is None:  # a payload queued before "active" existed: its reminders at least
        active = [{"rule": i["rule"], "severity": i["severity"], "since": i.get("since")}
                  for i in payload["items"] if i["kind"] in ACTIVE]
    return [a for a in active if a["rule"] not in skip]


def still_firing_text(active: Sequence[Mapping]) -> str:
    """Return e.g. ``Still firing: a (since 2024-01-02), b (since 2024-01-09)``."""
    return "Still firing: " + ", ".join(
        a["rule"] + (f" (since {a['since']})" if a.get("since") else "") for a in active)


def comparison_text(comp: dict) -> str:
    """Return e.g. ``microcap.vol_spike = 1.72 (threshold >= 1.50)``."""
    threshold = (comp["threshold_signal"] if comp.get("threshold_signal")
                 else format_value(comp["signal"], comp["threshold"]))
    mark = {True: "met", False: "not met", None: "no data"}[comp["holds"]]
    return (f"{comp['signal']} = {format_value(comp['signal'], comp['value'])} "
            f"(threshold {comp['op']} {threshold}: {mark})")


def item_context(item: Mapping) -> list[tuple[str, str]]:
    """Return the (signal, context) pairs to show under an alert (the headline signal's context
    is shown in the top line instead)."""
    return [(s, str(v)) for s, v in sorted((item.get("context") or {}).items())
            if s != HEADLINE_SIGNAL]


def render_text(payload: dict, inhibit: bool = True) -> str:
    """Return the digest as plain text (console output and Slack fallback): title, headline
    block, regime context, then the alerts; reminders beyond a few fold into one line, and with
    ``inhibit`` (``notify.inhibit``) the alerts a firing critical one inhibits fold into one line
    under it (``monitor.delivery.inhibit``), as in the Slack blocks."""
    from monitor.delivery.inhibit import fold_text
    from monitor.delivery.inhibit import inhibit as inhibition

    lines = [headline(payload), *top_lines(payload)]
    regime = regime_line(payload.get("context"))
    if regime:
        lines.append(regime)
    comp = payload.get("composite") or {}
    if comp.get("names"):
        lines.append(f"Conditions active today ({comp['count']}): {', '.join(comp['names'])}")
    inhibited = inhibition(payload, inhibit)
    source, folded = inhibited.source, inhibited.folded
    shown, reminders = sectioned(inhibited.shown)
    rest = still_firing(payload, [i["rule"] for i in [*shown, *folded]])
    if rest:
        lines.append(still_firing_text(rest))
    elif payload.get("summary") and not payload.get("active"):
        lines.append("Nothing is firing.")
    if source is not None and any(source is r for r in reminders):
        lines.append(fold_text(folded))  # the inhibiting reminder is in the Still firing line
    for note in payload.get("notes") or []:
        lines.append(f"Note: {note}")
    for item in shown:
        lines.append("")
        since = f" since {item['since']}" if item.get("since") else ""
        lines.append(f"[{item['severity'].upper()}] {item['rule']}: "
                     f"{KIND_LABEL[item['kind']]}{since}")
        for c in item["comparisons"]:
            lines.append(f"  {comparison_text(c)}")
        for signal, val in item_context(item):
            lines.append(f"  {signal} is led by: {val}")
        lines.append(f"  Why it matters: {item['explain']}")
        if item.get("closest_episode"):
            lines.append(f"  Closest past episode: {episode_text(item['closest_episode'])}")
        if item["kind"] != "resolved":
            lines.append(f"  Silence: {silence_command(item['rule'])}")
        if item is source:
            lines.append(f"  {fold_text(folded)}")
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
        diffs = [((x - float(t)) / scale[k]) ** 2 for k, x in usable.items()
                 if _finite(t := then.get(k))]
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


def _finite(v: object) -> TypeGuard[float]:
    """True when ``v`` is a finite number (not a bool)."""
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
