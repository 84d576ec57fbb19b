"""What ``regime-monitor status`` shows (pure): each rule's state and since when, its signal values
against the firing and the clearing condition, and the data coverage of every series.

The CLI reads the database (``storage``) and passes the rows in; nothing here reads a clock or a
file. The conditions are evaluated by the rules' own expressions (``monitor.alerting.rules``):
the firing condition is the rule's ``when``, the clearing one ``rules.clear_condition`` (the
rule's ``clear_when``, or ``when`` no longer holding), so ``status`` says exactly what the cycle
will decide on. Ages are counted in XSHG trading days (``monitor.alerting.data_stale.ages``, the
built-in ``data_stale`` alert's own measure).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import signals
from monitor.alerting import data_stale, rules
from monitor.alerting.lifecycle import FIRING, PENDING, AlertState
from monitor.calendar import TradingCalendar
from monitor.config import Config, RuleConfig
from monitor.delivery.digest import DATA_STALE, MARK, format_value, threshold_text
from storage.silences import matching

NOT_EVALUATED = "not evaluated yet"


def signal_inputs(name: str, params: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return the input series patterns (``theme.*.close`` stays a pattern, ``{tenor}`` is filled
    in) signal ``name`` reads; ``risk.drawdown_prob`` reads its features' inputs and the
    micro-cap close (its label)."""
    sig = signals.REGISTRY[name]
    if sig.family == "risk":
        from signals.series import MICROCAP_CLOSE

        out = [MICROCAP_CLOSE]
        for feature in params["risk"]["features"]:
            out += [s for s in signal_inputs(feature, params) if s not in out]
        return out
    return [p.format(**params[sig.family]) if "{" in p else p for p in sig.inputs]


def _matches(rule: RuleConfig, available: Iterable[str],
             params: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Return (input series pattern, the stored series it matches) for every input pattern of
    every signal ``rule`` reads."""
    stored = set(available)
    out = []
    for name in rule.names:
        sig = signals.REGISTRY[name]
        for pattern in signal_inputs(name, params):
            one = dataclasses.replace(sig, inputs=(pattern,))
            out.append((pattern, [s for s in one.resolve_inputs(stored, params[sig.family])
                                  if s in stored]))
    return out


def missing_inputs(rule: RuleConfig, available: Iterable[str],
                   params: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return the input series (or patterns matching no stored series) that ``rule``'s signals
    read and the database has no observation of, sorted."""
    return sorted({pattern for pattern, found in _matches(rule, available, params) if not found})


def rule_inputs(rule: RuleConfig, available: Iterable[str],
                params: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return the stored series ``rule``'s signals read (patterns expanded), sorted."""
    return sorted({s for _, found in _matches(rule, available, params) for s in found})


def _side(expression: object, holds: bool | None, comparisons: list[dict], days: int,
          held: int | None) -> dict:
    """One side of a rule (firing or clearing): its text, whether it holds (``rules.evaluate``),
    the trading days it must hold, how many it has held so far (None: not counting now) and each
    comparison (``rules.describe``)."""
    return {"condition": str(expression), "holds": holds, "days": days, "held": held,
            "comparisons": comparisons}


def rule_status(rule: RuleConfig, row: Mapping | None, values: Mapping[str, float | None],
                values_day: str | None) -> dict:
    """Return one configured rule's status from its stored ``alerts`` row (None: never
    evaluated) and the signal values of ``values_day`` (its last evaluated day), evaluated as
    the cycle does (``rules.evaluate``)."""
    state = AlertState.from_json(row["state_json"]) if row else AlertState()
    parsed = rules.parse(rule)
    ev = rules.evaluate_parsed(parsed, values)
    fire = _side(parsed.when, ev.when, ev.comparisons, rule.for_days,
                 state.true_count if state.state == PENDING else None)
    clear_held = state.clear_count if state.state == FIRING else None
    if rule.clear_expr is None:  # ``not when``: the same comparisons, read the other way
        clearing = _side(f"not ({parsed.when})", ev.clear, [], rule.clear_days, clear_held)
        clearing["default"] = True
    else:
        clearing = _side(parsed.clear, ev.clear, rules.describe(parsed.clear, values),
                         rule.clear_days, clear_held)
    return {"rule": rule.name, "severity": rule.severity,
            "state": row["state"] if row else NOT_EVALUATED,
            "since": row["since"] if row else None,
            "last_evaluated": row["last_evaluated"] if row else None,
            "values_date": values_day, "values": ev.values, "fire": fire, "clear": clearing}


Ranges = Mapping[str, tuple[str | None, str | None, int]]
"""Per series: first and last observation day (ISO) and rows (``storage.observations.coverage``)."""


def coverage(ranges: Ranges, on: dt.date, calendar: TradingCalendar, config: Config) -> list[dict]:
    """Return one row per stored series (``storage.observations.coverage``): first and last
    day, observations, age in trading days on ``on`` (0: it has ``on``'s value), whether the
    ``data_stale`` alert watches it (``required``) and finds it stale (age over
    ``[data_quality] stale_after_days``), and the configured rules reading it."""
    required = set(data_stale.required_series(config, ranges))
    limit = config.data_quality.stale_after_days
    ages = data_stale.ages({name: last for name, (_, last, _) in ranges.items()}, on, calendar)
    params = config.signal_params()
    readers: dict[str, list[str]] = {}
    for rule in config.rules:
        for series in rule_inputs(rule, ranges, params):
            readers.setdefault(series, []).append(rule.name)
    out = []
    for name, (first, last, count) in sorted(ranges.items()):
        age = ages[name]
        out.append({"series": name, "first": first, "last": last, "observations": count,
                    "age_trading_days": age, "required": name in required,
                    "stale": name in required and limit > 0 and age is not None and age > limit,
                    "rules": readers.get(name, [])})
    return out


def build(config: Config, *, stored: Mapping[str, Mapping], values_on: Mapping[str, Mapping],
          ranges: Ranges, on: dt.date, calendar: TradingCalendar,
          silences: Sequence[Mapping] = ()) -> dict:
    """Return the status of every rule and series as data (``--json`` prints it as is).

    ``stored``: the ``alerts`` rows by rule; ``values_on``: signal values by day (ISO) for the
    rules' last evaluated days (``storage.signal_values.values_on_days``); ``ranges``: per series
    (first day, last day, observations); ``on``: the day ages are judged on; ``silences``: the
    silences in force on ``on`` (``storage.silences.list_all``), the first covering a rule is
    shown with it (``silenced``: id, until, reason).
    """
    params = config.signal_params()
    out_rules = []
    for rule in config.rules:
        row = stored.get(rule.name)
        day = row["last_evaluated"] if row else None
        item = rule_status(rule, row, values_on.get(day, {}) if day else {}, day)
        item["missing_inputs"] = missing_inputs(rule, ranges, params)
        item["silenced"] = _silence_of(rule.name, silences)
        out_rules.append(item)
    stale_row = stored.get(DATA_STALE)
    builtin = {"rule": DATA_STALE, "severity": data_stale.RULE.severity,
               "state": stale_row["state"] if stale_row else NOT_EVALUATED,
               "since": stale_row["since"] if stale_row else None,
               "last_evaluated": stale_row["last_evaluated"] if stale_row else None,
               "stale_after_days": config.data_quality.stale_after_days}
    gone = [{"rule": name, "state": row["state"], "since": row["since"],
             "last_evaluated": row["last_evaluated"]}
            for name, row in sorted(stored.items())
            if name != DATA_STALE and name not in {r.name for r in config.rules}]
    series = coverage(ranges, on, calendar, config)
    return {"judged_on": on.isoformat(), "rules": out_rules, "data_stale": builtin,
            "not_in_config": gone, "series": series,
            "rules_lacking_inputs": {r["rule"]: r["missing_inputs"] for r in out_rules
                                     if r["missing_inputs"]},
            "rules_with_stale_inputs": {
                rule: sorted(s["series"] for s in series if s["stale"] and rule in s["rules"])
                for rule in sorted({r for s in series if s["stale"] for r in s["rules"]})}}


def _silence_of(rule: str, silences: Sequence[Mapping]) -> dict | None:
    """Return the first of ``silences`` covering ``rule`` as {id, until, reason}, or None."""
    found = matching([dict(s) for s in silences], rule)
    row = next((s for s in silences if s["id"] == found), None)
    return None if row is None else {k: row[k] for k in ("id", "until", "reason")}


# -- text ----------------------------------------------------------------------------------------

def _days(n: int) -> str:
    return f"{n} trading day" + ("" if n == 1 else "s")


def comparison_line(comp: Mapping) -> str:
    """Return e.g. ``risk.drawdown_prob = 35.0% (< 32.0%: not met)``."""
    return (f"{comp['signal']} = {format_value(comp['signal'], comp['value'])} "
            f"({comp['op']} {threshold_text(comp)}: {MARK[comp['holds']]})")


def _side_lines(label: str, side: Mapping) -> list[str]:
    held = (f", {side['held']} of {_days(side['days'])} so far" if side["held"] is not None
            else "")
    if side.get("default"):
        head = (f"{label} when the firing condition no longer holds for "
                f"{_days(side['days'])}: {MARK[side['holds']]}{held}")
    else:
        head = (f"{label} when {side['condition']} for {_days(side['days'])}: "
                f"{MARK[side['holds']]}{held}")
    return [head, *(f"    {comparison_line(c)}" for c in side["comparisons"])]


def rule_lines(item: Mapping) -> list[str]:
    """Return the text of one rule's status: state line, then its firing and clearing side."""
    state = item["state"]
    title = state.upper() if state == FIRING else state
    since = f" since {item['since']}" if item["since"] else ""
    when = (f"; values of {item['values_date']}" if item["values_date"]
            else "; no values evaluated yet")
    muted = item.get("silenced")
    silenced = (f" (silenced until {muted['until']}: {muted['reason']})" if muted else "")
    lines = [f"{item['rule']} [{item['severity']}]: {title}{since}{silenced}{when}"]
    lines += [f"  {ln}" for ln in _side_lines("fires", item["fire"])]
    lines += [f"  {ln}" for ln in _side_lines("clears", item["clear"])]
    if item.get("missing_inputs"):
        lines.append(f"  lacks input: {', '.join(item['missing_inputs'])} (no observation stored)")
    return lines


def render(status: Mapping) -> list[str]:
    """Return the text lines of ``build``'s rules and coverage (the CLI adds the database, the
    last cycle and the calendar lines)."""
    from tabulate import tabulate

    lines = ["rules:"]
    for item in status["rules"]:
        lines += [f"  {ln}" for ln in rule_lines(item)]
    b = status["data_stale"]
    since = f" since {b['since']}" if b["since"] else ""
    lines.append(f"  {DATA_STALE} [{b['severity']}] (built in): {b['state']}{since}; fires when a "
                 f"required series is more than {_days(b['stale_after_days'])} old")
    for g in status["not_in_config"]:
        lines.append(f"  {g['rule']}: {g['state']} since {g['since']} (not in the config)")
    lines.append(f"data coverage (age in XSHG trading days on {status['judged_on']}):")
    if status["series"]:
        rows = [[s["series"], s["first"], s["last"], s["observations"], s["age_trading_days"],
                 "STALE" if s["stale"] else "", ", ".join(s["rules"]) or "-"]
                for s in status["series"]]
        table = tabulate(rows, headers=["series", "first", "last", "rows", "age", "", "rules"],
                         tablefmt="simple", disable_numparse=True)
        lines += [f"  {ln}" for ln in table.splitlines()]
    else:
        lines.append("  no observations stored")
    lacking = status["rules_lacking_inputs"]
    lines.append("rules lacking inputs: " + ("none" if not lacking else "; ".join(
        f"{rule} ({', '.join(series)})" for rule, series in lacking.items())))
    stale = status["rules_with_stale_inputs"]
    if stale:
        lines.append("rules reading stale series: " + "; ".join(
            f"{rule} ({', '.join(series)})" for rule, series in stale.items()))
    return lines


def to_json(status: Mapping) -> str:
    """Return ``status`` as JSON text."""
    return json.dumps(status, indent=2, ensure_ascii=False)
