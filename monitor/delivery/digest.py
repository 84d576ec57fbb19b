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
from dataclasses import dataclass, field
from typing import TypeGuard

import signals
from signals import risk
from signals.series import INDEX_NAMES, display_name, labelled

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
          risk: dict | None = None, summary: bool = False, notes: list[str] | None = None,
          microcap: dict | None = None,
          firing_values: Mapping[str, list[dict]] | None = None) -> dict:
    """Return the digest payload for ``as_of`` (JSON data, no formatting).

    ``items`` are the notifications of the day (rule, severity, kind, since, explain,
    comparisons, values, context); ``firing``/``pending`` the rules in those states after the
    cycle; ``composite`` the count and names of conditions holding today; ``active`` every firing
    alert as ``{rule, severity, since}`` (default: those among ``items``); ``context`` the regime
    context (:func:`monitor.alerting.context.evaluate_context`); ``risk`` the headline block
    (:func:`risk_block`); ``summary`` marks the weekly summary; ``notes`` are one-line remarks
    about the monitor itself shown with every digest (e.g. the holiday calendar running out);
    ``microcap`` the micro-cap level and its drawdown from the peak (:func:`microcap_state`);
    ``firing_values`` each firing rule's comparisons of the day (default: those of ``items``),
    so that an alert without a section of its own is still shown with its value.
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
    values = {i["rule"]: i.get("comparisons") or [] for i in items if i["kind"] in ACTIVE}
    values.update(firing_values or {})
    active = sorted(active, key=lambda a: (SEVERITY_ORDER[a["severity"]], a.get("since") or "",
                                           a["rule"]))
    return {"as_of": as_of, "summary": bool(summary), "counts": counts, "items": items,
            "firing": sorted(firing), "pending": sorted(pending), "active": active,
            "composite": composite, "context": list(context or []), "risk": risk,
            "notes": list(notes or []), "microcap": microcap,
            "firing_values": {a["rule"]: values.get(a["rule"]) or [] for a in active}}


def microcap_state(closes: Iterable[tuple[str, float | None]]) -> dict | None:
    """Return the micro-cap block of a digest from the index's closes known on the digest's day
    (``(ISO day, close)`` pairs, any order; None values skipped): ``{close, date, peak,
    peak_close, drawdown}`` with ``drawdown = close / peak_close - 1`` (fraction, <= 0) and
    ``peak`` the day of the highest close up to ``date`` (the latest such day among equals).
    None without a close. Pure: the caller passes only values available on the day."""
    pts = sorted((d, float(v)) for d, v in closes if _finite(v))
    if not pts:
        return None
    date, close = pts[-1]
    peak, peak_close = pts[0]
    for d, v in pts:
        if v >= peak_close:
            peak, peak_close = d, v
    return {"close": close, "date": date, "peak": peak, "peak_close": peak_close,
            "drawdown": close / peak_close - 1.0}


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
    """Return the one-line title of a digest: date and counts ("Weekly summary" on a summary).
    Every alert counted here appears in the body with at least a one-line value: ``firing``
    counts every firing alert (a section, a "Still firing" line or a folded line each), ``new``
    and ``resolved`` the day's changes (each with its section or folded line)."""
    c = payload["counts"]
    parts = [f"{c['firing']} firing ({c['new']} new)"]
    if c["resolved"]:
        parts.append(f"{c['resolved']} resolved")
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


SILENCE_DAYS = 7
"""The copyable silence line mutes a rule for this many calendar days: until the same weekday of
the next week (the digest's day is a trading day, so the date is a weekday too)."""
CONTEXT_LABELS = {"rotation.hot_theme_excess": "Leading theme"}
"""How a signal's context (e.g. the theme behind the hottest-theme excess) is introduced."""


def sectioned(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Return (the items shown each in its own section, the reminders folded into the "Still
    firing" lines): reminders get sections only when there are at most REMINDER_SECTIONS."""
    repeats = [i for i in items if i["kind"] == "repeat"]
    if len(repeats) <= REMINDER_SECTIONS:
        return list(items), []
    return [i for i in items if i["kind"] != "repeat"], repeats


def still_firing(payload: Mapping, mentioned: Iterable[str]) -> list[dict]:
    """Return the firing alerts (``{rule, severity, since, comparisons}``: the comparisons from
    the payload's ``firing_values`` or the rule's item) not ``mentioned`` elsewhere in the
    message, most severe first."""
    skip = set(mentioned)
    values = dict(payload.get("firing_values") or {})
    for i in payload["items"]:
        if i["kind"] in ACTIVE:
            values.setdefault(i["rule"], i.get("comparisons") or [])
    active = payload.get("active")
    if active is None:  # a payload queued before "active" existed: its reminders at least
        active = [{"rule": i["rule"], "severity": i["severity"], "since": i.get("since")}
                  for i in payload["items"] if i["kind"] in ACTIVE]
    return [{**a, "comparisons": values.get(a["rule"]) or []} for a in active
            if a["rule"] not in skip]


MARK = {True: "met", False: "not met", None: "no data"}
"""How a comparison's ``holds`` reads (the digest and ``monitor.status``)."""


def threshold_text(comp: Mapping) -> str:
    """Return a comparison's threshold: the other signal's name, or the number in the unit."""
    return (comp["threshold_signal"] if comp.get("threshold_signal")
            else format_value(comp["signal"], comp["threshold"]))


def _is_age(comp: Mapping, rule: str | None) -> bool:
    """True for a ``data_stale`` comparison (a series' age in trading days)."""
    return "last" in comp or rule == DATA_STALE


def _age_text(comp: Mapping) -> str:
    """Return e.g. ``last value 2024-01-05, 6 trading days old`` for a data_stale comparison."""
    last, age = comp.get("last"), comp.get("value")
    if "last" in comp and last is None:
        return "no value stored"
    if age is None:
        return "no recent value"
    days = "1 trading day" if age == 1 else f"{age:.0f} trading days"
    return (f"last value {last}, {days} old" if last else f"{days} old")


def comparison_text(comp: Mapping, rule: str | None = None) -> str:
    """Return one value against its threshold with the signal's readable name, e.g.
    ``micro-cap volatility vs its 120d median (microcap.vol_spike) = 1.72 (threshold >= 1.50:
    met)``; for ``data_stale`` (``rule``, or a comparison with ``last``) the series' last day and
    age: ``... (index.microcap.close): last value 2024-01-05, 6 trading days old (limit 3)``."""
    name = labelled(comp["signal"]) if comp.get("signal") else "?"
    if _is_age(comp, rule):
        return f"{name}: {_age_text(comp)} (limit {comp['threshold']:.0f})"
    return (f"{name} = {format_value(comp['signal'], comp['value'])} "
            f"(threshold {comp['op']} {threshold_text(comp)}: {MARK[comp['holds']]})")


def key_comparison(comparisons: Sequence[Mapping], resolved: bool = False) -> Mapping | None:
    """Return the comparison that stands for an alert on one line: the first that holds (for a
    resolution: the first), else the first."""
    if not comparisons:
        return None
    if not resolved:
        for c in comparisons:
            if c.get("holds"):
                return c
    return comparisons[0]


def short_value(comp: Mapping, rule: str | None = None, note: str = "") -> str:
    """Return a comparison on one short line, e.g. ``micro-cap volatility vs its 120d median
    1.72 (>= 1.50)`` (``note`` added inside the brackets after "; ") or
    ``index.microcap.close last value 2024-01-05, 6 trading days old``."""
    signal = comp.get("signal") or "?"
    if _is_age(comp, rule):
        return f"{signal} {_age_text(comp)}"
    name = display_name(signal) or signal
    note = f"; {note}" if note else ""
    return (f"{name} {format_value(signal, comp['value'])} "
            f"({comp['op']} {threshold_text(comp)}{note})")


def one_line(entry: Mapping, kind: str | None = None) -> str:
    """Return an alert without a section of its own on one line, with its value: ``rule (since
    D): value`` for a firing one (when its condition no longer holds but its clear condition does
    not hold yet either: ``... 80.8% (>= 95.0%; fired there, not cleared yet)``), ``rule
    (severity, KIND): value`` when ``kind`` is given (an alert folded under a critical one)."""
    if kind is not None:
        tag = f"{entry['severity']}, {KIND_LABEL[kind]}"
    else:
        tag = f"since {entry['since']}" if entry.get("since") else entry["severity"]
    comp = key_comparison(entry.get("comparisons") or [], resolved=kind == "resolved")
    if comp is None:
        return f"{entry['rule']} ({tag})"
    # firing, its condition no longer met, its clear condition not yet: say so, not a bare
    # threshold the value visibly misses ("80.8% (>= 95.0%)" read as a contradiction)
    lapsed = kind is None and comp.get("holds") is False
    note = "fired there, not cleared yet" if lapsed else ""
    return f"{entry['rule']} ({tag}): {short_value(comp, entry['rule'], note)}"


def context_lines(item: Mapping) -> list[str]:
    """Return the signal contexts shown under an alert, e.g. ``Leading theme: CSI AI / 中证人工
    智能主题 (930713)``. A context is shown only while its signal's comparison holds: a rule that
    fires through another branch (e.g. ``hot_theme_rotation`` through the large-cap one) never
    names a leading theme whose excess is below its threshold. None for a resolution; the
    headline signal's context is shown in the top line instead."""
    if item.get("kind") == "resolved":
        return []
    met = {c.get("signal") for c in item.get("comparisons") or [] if c.get("holds")}
    out = []
    for signal, val in sorted((item.get("context") or {}).items()):
        if signal == HEADLINE_SIGNAL or signal not in met:
            continue
        if isinstance(val, Mapping):  # {"theme": id, ...}
            val = val.get("theme") or json.dumps(val, ensure_ascii=False)
        name = labelled(str(val))
        out.append(f"{CONTEXT_LABELS.get(signal, signal + ' is led by')}: {name}")
    return out


def silence_until(as_of: str) -> str:
    """Return the ``--until`` day of the copyable silence line: ``SILENCE_DAYS`` after ``as_of``."""
    return (dt.date.fromisoformat(as_of) + dt.timedelta(days=SILENCE_DAYS)).isoformat()


def silence_command(rule: str, as_of: str) -> str:
    """Return the command that mutes ``rule`` for a week from the digest's day ``as_of``, ready
    to copy and run."""
    return (f'regime-monitor silence add {rule} --until {silence_until(as_of)} '
            f'--reason "seen in the {as_of} digest"')


def microcap_text(state: Mapping | None, as_of: str) -> str | None:
    """Return the micro-cap line, e.g. ``Wind Micro-cap / 万得微盘股 1,234.56: -38.2% from its
    2023-09-12 peak`` (``on D`` when the last close is older than the digest), or None."""
    if not state:
        return None
    name = INDEX_NAMES["microcap"]
    on = f" on {state['date']}" if state.get("date") and state["date"] != as_of else ""
    dd = state.get("drawdown")
    if dd is None or dd >= 0:
        where = f"at its peak ({state.get('peak')})" if dd is not None else "drawdown n/a"
    else:
        where = f"{dd * 100:.1f}% from its {state['peak']} peak"
    return f"{name} {state['close']:,.2f}{on}: {where}"


# -- the content model: every renderer shows exactly this -------------------------------------

@dataclass(frozen=True)
class Section:
    """One alert with a section of its own: ``head`` (severity, rule, what changed, since),
    ``facts`` (values against thresholds, contexts), ``why`` (the rule's explain, for a NEW
    alert only: a reminder or a resolution was explained when it was new), ``episode`` (the
    closest past episode line, for a NEW alert only), ``silence`` (the command, None for a
    resolution) and ``folded`` (the one-line alerts inhibited under this one)."""

    item: dict
    head: str
    facts: list[str]
    why: str | None
    episode: str | None
    silence: str | None
    folded: list[str]


@dataclass(frozen=True)
class Content:
    """A digest as every notifier shows it (console, plain-text fallback, Slack blocks): the
    ``title``; the ``microcap`` line; the headline block (``top``); the ``regime`` line;
    ``notes``; one ``sections`` entry per alert shown in full; ``still_firing``: one line with a
    value for each other firing alert; ``folded_top``: the inhibited alerts when their critical
    alert is itself in the still-firing lines; ``nothing_firing`` on a quiet weekly summary;
    ``exposure_title`` and ``exposure``: the PM's most exposed products with their estimated
    excess loss when a micro-cap warning is new (:func:`exposure_lines`; None and empty
    otherwise), shown after the alert sections."""

    title: str
    microcap: str | None
    top: list[str]
    regime: str | None
    notes: list[str]
    sections: list[Section]
    still_firing: list[str]
    folded_top: list[str]
    nothing_firing: bool
    exposure_title: str | None = None
    exposure: list[str] = field(default_factory=list)


FOLD_INTRO = "Folded under the critical alert (notify.inhibit)"
STILL_FIRING = "Still firing"


def section_of(item: dict, as_of: str, folded: list[dict]) -> Section:
    """Return the section of one alert ``item`` of the digest of ``as_of``."""
    since = ""
    if item.get("since"):
        since = (f", had fired since {item['since']}" if item["kind"] == "resolved"
                 else f" since {item['since']}")
    head = f"[{item['severity'].upper()}] {item['rule']}: {KIND_LABEL[item['kind']]}{since}"
    facts = [comparison_text(c, item["rule"]) for c in item.get("comparisons") or []]
    facts += context_lines(item)
    new = item["kind"] == "firing"  # reminders and resolutions were explained when new: short
    episode = None
    if item["kind"] == "firing" and "closest_episode" in item:
        episode = episode_line(item["closest_episode"], episode_kind(item))
    silence = silence_command(item["rule"], as_of) if item["kind"] != "resolved" else None
    return Section(item, head, facts, f"Why it matters: {item['explain']}" if new else None,
                   episode, silence, [one_line(f, f["kind"]) for f in folded])


def content(payload: Mapping, inhibit: bool = True) -> Content:
    """Return the content model of a digest payload (pure): what the console, the plain-text
    fallback and the Slack blocks all show. With ``inhibit`` (``notify.inhibit``) the alerts a
    firing critical one inhibits (``monitor.delivery.inhibit``) are folded into one line each
    under it; more than ``REMINDER_SECTIONS`` reminders become still-firing lines."""
    from monitor.delivery.inhibit import inhibit as inhibition

    as_of = payload["as_of"]
    inhibited = inhibition(payload, inhibit)
    source, folded = inhibited.source, inhibited.folded
    shown, reminders = sectioned(inhibited.shown)
    sections = [section_of(i, as_of, folded if i is source else []) for i in shown]
    rest = still_firing(payload, [i["rule"] for i in [*shown, *folded]])
    source_folded = source is not None and any(source is r for r in reminders)
    exposure_title, exposure = exposure_lines(payload.get("exposure"))
    return Content(
        title=headline(dict(payload)),
        microcap=microcap_text(payload.get("microcap"), as_of),
        top=top_lines(payload),
        regime=regime_line(payload.get("context")),
        notes=list(payload.get("notes") or []),
        sections=sections,
        still_firing=[one_line(a) for a in rest],
        folded_top=[one_line(f, f["kind"]) for f in folded] if source_folded else [],
        nothing_firing=bool(payload.get("summary")) and not payload.get("active") and not rest,
        exposure_title=exposure_title,
        exposure=exposure,
    )


def render_text(payload: dict, inhibit: bool = True) -> str:
    """Return the digest as plain text (console output and Slack fallback), from
    :func:`content`: title, micro-cap line, headline block, regime line, notes, one section per
    alert, the most exposed products (when a micro-cap warning is new), then the still-firing
    lines."""
    c = content(payload, inhibit)
    lines = [c.title, *([c.microcap] if c.microcap else []), *c.top,
             *([c.regime] if c.regime else []), *(f"Note: {n}" for n in c.notes)]
    for s in c.sections:
        lines += ["", s.head, *(f"  {f}" for f in s.facts)]
        if s.why:
            lines.append(f"  {s.why}")
        if s.episode:
            lines.append(f"  {s.episode}")
        if s.silence:
            lines.append(f"  Silence: {s.silence}")
        if s.folded:
            lines.append(f"  {FOLD_INTRO}:")
            lines += [f"    - {f}" for f in s.folded]
    if c.exposure_title:
        lines += ["", f"{c.exposure_title}:", *(f"  - {e}" for e in c.exposure)]
    if c.still_firing:
        lines += ["", f"{STILL_FIRING} ({len(c.still_firing)}):"]
        lines += [f"  - {f}" for f in c.still_firing]
    if c.folded_top:
        lines += [f"{FOLD_INTRO}:", *(f"  - {f}" for f in c.folded_top)]
    if c.nothing_firing:
        lines += ["", "Nothing is firing."]
    return "\n".join(lines)


# -- the closest historical episode ------------------------------------------------------------

MAX_EPISODE_DISTANCE = 1.0
"""A past episode is *close* when its distance to today (:func:`closest_episode`) is at most this:
on average at most one standard deviation apart per signal. Two unrelated days are about
sqrt(2) = 1.41 apart (independent standardised signals), so a farther episode is no analogue
and the digest says none is close instead of naming it."""
ROTATION = "rotation"
DRAWDOWN = "drawdown"


def episode_kind(item: Mapping) -> str | None:
    """Return the kind of past episode an alert is compared with (like with like): ``rotation``
    spells for an alert that reads ``rotation.*`` signals (the rotation rule), none for
    ``data_stale`` (a data problem has no market analogue), else ``drawdown`` (the drawdown
    alerts and the conditions that come before drawdowns)."""
    if item.get("rule") == DATA_STALE:
        return None
    signals_read = {c.get("signal") or "" for c in item.get("comparisons") or []}
    if any(s.startswith("rotation.") for s in signals_read):
        return ROTATION
    return DRAWDOWN


def reference_date(episode: Mapping) -> str:
    """Return the day whose indicator values stand for ``episode``: the peak of a drawdown (the
    eve of the decline), the first day of a rotation spell."""
    return episode.get("peak") or episode["start"]


def closest_episode(today: Mapping[str, float | None], episodes: Iterable[Mapping],
                    values_on: Mapping[str, Mapping[str, float | None]],
                    scale: Mapping[str, float], as_of: str, min_share: float = 0.5,
                    kind: str | None = None,
                    max_distance: float = MAX_EPISODE_DISTANCE) -> dict | None:
    """Return the stored episode (of ``kind``, when given) whose indicator vector is nearest
    today's, or None when no episode qualifies.

    ``today``: signal -> value on ``as_of``; ``episodes``: rows of the ``episodes`` table;
    ``values_on``: day -> (signal -> value) for the episodes' reference days; ``scale``:
    signal -> standard deviation of its stored history up to ``as_of``.

    Only episodes that ended before ``as_of`` count (an open one is today's, not history). Each
    is compared on its :func:`reference_date`. The distance is the root mean square of the
    standardised differences over the signals known on both days (with a positive scale)::

        d = sqrt( 1/n * sum_i ((today_i - then_i) / std_i) ** 2 )

    so 0 is identical and 1 is "one standard deviation apart per signal, on average". Episodes
    sharing fewer than ``min_share`` of today's usable signals are skipped. Ties go to the more
    recent episode. The result's ``close`` says whether ``distance <= max_distance``; a digest
    names only a close episode.
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
        if kind is not None and ep.get("kind") != kind:
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
            "distance": round(dist, 3), "signals": n, "close": dist <= max_distance}


def _finite(v: object) -> TypeGuard[float]:
    """True when ``v`` is a finite number (not a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def attach_closest(payload: dict, closest: Mapping[str, dict | None]) -> dict:
    """Return ``payload`` with each alert item that is not a resolution given its
    ``closest_episode``: ``closest`` maps an :func:`episode_kind` to its closest episode (None
    when no past episode of that kind qualifies; a kind absent from it and a ``data_stale``
    item get None)."""
    items = []
    for item in payload["items"]:
        item = dict(item)
        if item["kind"] != "resolved":
            kind = episode_kind(item)
            item["closest_episode"] = closest.get(kind) if kind is not None else None
        items.append(item)
    return {**payload, "items": items}


def needs_closest(payload: dict) -> bool:
    """Return whether some alert item of ``payload`` lacks its closest episode."""
    return any(i["kind"] != "resolved" and "closest_episode" not in i for i in payload["items"])


def kinds_needed(payload: Mapping) -> set[str]:
    """Return the episode kinds the alert items of ``payload`` are compared with."""
    return {k for i in payload["items"] if i["kind"] != "resolved"
            and (k := episode_kind(i)) is not None}


def episode_text(ep: Mapping) -> str:
    """Return a past episode on one line, e.g. ``drawdown from the 2015-06-12 peak: -45.2% to
    2015-09-15, recovered 2016-02-01 (distance 0.84 over 27 signals)`` or ``rotation 2023-03-01
    to 2023-03-20, theme CSI AI / 中证人工智能主题 (930713): micro-cap -8.1% (distance ...)``."""
    depth = "n/a" if ep.get("depth") is None else f"{ep['depth'] * 100:.1f}%"
    if ep["kind"] == DRAWDOWN:
        span = f"drawdown from the {ep['peak']} peak: {depth} to {ep['trough']}"
        span += f", recovered {ep['end']}" if ep.get("end") else ""
    else:
        theme = f", theme {labelled(ep['theme'])}" if ep.get("theme") else ""
        span = f"rotation {ep['start']} to {ep['end']}{theme}: micro-cap {depth}"
    return f"{span} (distance {ep['distance']:.2f} over {ep['signals']} signals)"


def episode_line(ep: Mapping | None, kind: str | None) -> str | None:
    """Return the closest-episode line under an alert: the episode when it is close, else that
    none is (with the nearest distance), or that no past episode of the kind exists; None for
    an alert compared with no kind (``data_stale``)."""
    if kind is None and not ep:
        return None
    what = {DRAWDOWN: "drawdown", ROTATION: "rotation"}.get(
        str(ep["kind"] if ep else kind), "episode")
    if not ep:
        return f"Closest past {what}: none to compare with"
    if ep.get("close", True):
        return f"Closest past {what}: {episode_text(ep)}"
    return (f"Closest past {what}: none close (nearest {ep['distance']:.2f} apart, close means "
            f"<= {MAX_EPISODE_DISTANCE:.2f})")


# -- manager exposure (issue 16) ----------------------------------------------------------------

EXPOSURE_TITLE = "Most exposed products"
ESTIMATE_LABEL = "estimate, not a forecast"


def microcap_warnings(payload: Mapping) -> list[dict]:
    """Return the digest's micro-cap warnings: its alert items that are a NEW firing (kind
    ``firing``) of a warning or critical rule compared with past drawdowns (:func:`episode_kind`
    ``drawdown``: not ``data_stale``, not the rotation rule), in payload order."""
    return [i for i in payload["items"] if i["kind"] == "firing"
            and i["severity"] in TRIGGER_SEVERITIES and episode_kind(i) == DRAWDOWN]


def needs_exposure(payload: Mapping) -> bool:
    """Return whether the digest ``payload`` gets the products' exposure block: it has a
    micro-cap warning (:func:`microcap_warnings`) and the block is not there yet."""
    return "exposure" not in payload and bool(microcap_warnings(payload))


def drawdown_episode(payload: Mapping) -> dict | None:
    """Return the closest past drawdown episode attached to the payload's NEW drawdown-kind
    alerts (:func:`attach_closest`; close or only the nearest, as attached), or None."""
    for i in payload["items"]:
        if (i["kind"] == "firing" and episode_kind(i) == DRAWDOWN
                and isinstance(i.get("closest_episode"), Mapping)):
            return dict(i["closest_episode"])
    return None


def exposure_block(rows: Sequence[Mapping], episode: Mapping | None,
                   moves: Mapping[str, float | None], *, top: int, rank_window: int,
                   record: Mapping | None = None) -> dict | None:
    """Return the digest's exposure block (JSON data), or None without a product to list.

    ``rows``: the products' exposure rows, most exposed first
    (:func:`signals.exposure.exposure_table` records: ``product``, ``benchmark``, ``strategy``,
    ``weight``, ``last``, ``intervals`` and ``beta_microcap_<rank_window>w``; each listed product
    keeps ``weeks``, the NAV intervals its beta rests on, at most ``rank_window``); ``episode``:
    the past drawdown the estimate repeats (a :func:`closest_episode` result, None when there is none);
    ``moves``: benchmark -> the micro-cap excess return over that benchmark from the episode's
    peak to its trough (fraction; None when a close is missing). The first ``top`` rows with a
    finite beta are listed, each with ``beta``, ``move`` and ``estimate`` = beta x move
    (:func:`signals.exposure.estimated_excess_loss`, fraction; None without a move). ``book``:
    the weight-summed estimate over every row with a declared weight and an estimate (fraction
    of the whole book), with ``n`` such rows and their total ``weight``; None without weights.
    Only a close episode (``close`` true, :func:`closest_episode`) is repeated: with a farther
    one, no estimate is made (``moves`` is ignored) and the text gives each product's
    sensitivity instead. ``record``: the ranking's recorded out-of-sample check
    (``monitor.analysis.exposure.recorded_evidence``), kept as ``record`` (None: never tested).
    """
    from signals.exposure import estimated_excess_loss

    column = f"beta_microcap_{rank_window}w"
    listed: list[dict] = []
    book_sum, book_weight, book_n = 0.0, 0.0, 0
    for r in rows:
        beta = r.get(column)
        if not _finite(beta):
            continue
        move = moves.get(str(r.get("benchmark"))) if episode and episode.get("close", True) else None
        estimate = estimated_excess_loss(float(beta), float(move)) if _finite(move) else None
        weight = r.get("weight")
        weight = float(weight) if _finite(weight) else None
        if weight is not None and estimate is not None:
            book_sum += weight * estimate
            book_weight += weight
            book_n += 1
        if len(listed) < top:
            last = r.get("last")
            n = r.get("intervals")
            listed.append({"product": str(r.get("product")), "benchmark": str(r.get("benchmark")),
                           "strategy": r.get("strategy") or "", "weight": weight,
                           "weeks": min(int(n), rank_window) if _finite(n) else None,
                           "beta": float(beta), "move": move if _finite(move) else None,
                           "estimate": estimate,
                           "last_nav": str(last)[:10] if last is not None else None})
    if not listed:
        return None
    ep = None
    if episode:
        ep = {k: episode.get(k) for k in ("peak", "trough", "end", "depth", "distance", "close")}
    book = ({"estimate": book_sum, "weight": book_weight, "n": book_n} if book_n else None)
    kept = None
    if record:
        kept = {k: record.get(k) for k in ("start", "end", "measured_through", "beta")}
    return {"episode": ep, "rank_window": rank_window, "products": listed, "book": book,
            "record": kept}


def _bench(benchmark: str) -> str:
    """``csi1000`` -> ``CSI 1000`` (the English part of its readable name)."""
    return INDEX_NAMES.get(benchmark, benchmark).split(" / ")[0]


def _signed(v: float) -> str:
    return f"{v * 100:+.1f}%".replace("+-", "-")


def exposure_lines(block: Mapping | None) -> tuple[str | None, list[str]]:
    """Return the exposure block as text: a title saying it is an estimate and what it repeats —
    the closest past drawdown when it is close, e.g. ``Most exposed products — estimate, not a
    forecast: β × the micro-cap excess move over each benchmark in the closest past drawdown
    (2015-06-12→2015-09-15, micro-cap -45.2%)``, else a sensitivity to a -10% micro-cap excess
    move (``SENSITIVITY_MOVE``); then one line per product, e.g. ``九坤1000B (CSI 1000): β 0.42 ×
    -14.5% → est. excess -6.1% · 10% of the book`` (or ``β 0.42 → est. excess -4.2%``); the
    book's weight-summed estimate when weights are declared; what β is; and the ranking's
    recorded out-of-sample check (:func:`record_text`). ``(None, [])`` without a block."""
    if not block:
        return None, []
    ep = block.get("episode") or None
    close = ep is not None and bool(ep.get("close", True))
    if not ep:
        title = (f"{EXPOSURE_TITLE} (no past drawdown to repeat — {ESTIMATE_LABEL}: excess per "
                 f"{_signed(SENSITIVITY_MOVE)} micro-cap excess)")
    elif not close:
        dist = f", nearest {ep['distance']:.2f} apart" if _finite(ep.get("distance")) else ""
        title = (f"{EXPOSURE_TITLE} (no close past drawdown to repeat{dist} — {ESTIMATE_LABEL}: "
                 f"excess per {_signed(SENSITIVITY_MOVE)} micro-cap excess)")
    else:
        span = f"{ep.get('peak')}→{ep.get('trough')}"
        depth = f", micro-cap {ep['depth'] * 100:.1f}%" if _finite(ep.get("depth")) else ""
        title = (f"{EXPOSURE_TITLE} — {ESTIMATE_LABEL}: β × the micro-cap excess move over "
                 f"each benchmark in the closest past drawdown ({span}{depth})")
    lines = []
    w = block.get("rank_window")
    for p in block.get("products") or []:
        weeks = p.get("weeks")
        short = (f", {weeks} weeks of NAVs" if weeks is not None and w and weeks < w else "")
        head = f"{p['product']} ({_bench(p['benchmark'])}{short}): β {p['beta']:.2f}"
        if p.get("estimate") is not None and p.get("move") is not None:
            head += f" × {_signed(p['move'])} → est. excess {_signed(p['estimate'])}"
        elif close:
            head += " (no benchmark close in that drawdown: no estimate)"
        else:
            head += f" → est. excess {_signed(p['beta'] * SENSITIVITY_MOVE)}"
        if p.get("weight") is not None:
            head += f" · {p['weight'] * 100:.0f}% of the book"
        lines.append(head)
    book = block.get("book")
    if book:
        lines.append(f"Book: est. excess {_signed(book['estimate'])} (weighted over the "
                     f"{book['n']} product(s) with a weight, {book['weight'] * 100:.0f}% of "
                     "the book)")
    lines.append(f"β: beta of the product's excess return to the micro-cap excess over its "
                 f"benchmark{f', last {w} NAV intervals' if w else ''}; NAVs known on the "
                 "digest's day (regime-monitor exposure)")
    lines.append(record_text(block.get("record")))
    return title, lines


SENSITIVITY_MOVE = -0.10
"""The micro-cap excess move (fraction) a product's sensitivity is quoted for when there is no
close past drawdown to repeat: est. excess = β × this."""


def record_text(record: Mapping | None) -> str:
    """Return the ranking's out-of-sample record in one sentence (``exposure --evidence START END
    --record``): the Spearman rank correlation of the beta measured before a past crash window
    with the products' excess in it, and whether that beat chance; or that it was never tested."""
    if not record or not isinstance(record.get("beta"), Mapping):
        return ("Ranking not tested against a past crash yet: regime-monitor exposure "
                "--evidence START END --record.")
    b = record["beta"]
    rho, p, n = b.get("rho"), b.get("p"), b.get("n")
    if not _finite(rho) or not _finite(p):
        return (f"Ranking tested on {record.get('start')}→{record.get('end')}: too few products "
                f"to rank (n {n}).")
    pv = "p < 0.01" if p < 0.01 else f"p {p:.2f}"
    verdict = ("the more exposed lost more — better than chance" if p <= 0.05 and rho < 0
               else "the opposite of the ranking (p ≤ 0.05)" if p <= 0.05
               else "not shown to beat chance")
    return (f"Ranking tested: β on {record.get('measured_through')} vs excess in "
            f"{record.get('start')}→{record.get('end')}: Spearman ρ {rho:+.2f} ({pv}, n {n}) — "
            f"{verdict}.")
