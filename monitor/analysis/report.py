"""The HTML report: one self-contained page that opens with the micro-cap index over the period
(drawdown episodes shaded, the warnings marked) and how far to trust the warnings, followed by
every rule's signals against their thresholds, the alert timeline, the drawdown and rotation
episodes, and (optionally) the backtest table.

``build_report`` reads the database (through ``storage``) and returns the page as a string;
``write_report`` writes it. The page is rendered by the jinja2 templates of
``monitor/analysis/templates/`` with autoescaping, so every piece of text that comes from the config
or the database is HTML-escaped; markup comes only from the templates. The page needs nothing from
the network: the charts are PNGs rendered with matplotlib's Agg canvas (no pyplot global state) and
embedded as ``data:`` URIs, the CSS is inline, there is no script.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup
from sqlite_utils import Database

import signals
from monitor.alerting.rules import describe
from monitor.analysis import backtest
from monitor.config import Config, RuleConfig
from monitor.delivery import digest
from signals.series import MICROCAP_CLOSE
from storage import alerts as alert_store
from storage import db as db_store
from storage import episodes as episode_store
from storage import observations as observation_store
from storage import signal_values as signal_store

__all__ = ["build_report", "write_report", "warning_marks", "rule_role", "trust_sentence",
           "backtest_kind", "WarningMarks", "DEFAULT_TITLE", "MAX_CHARTS", "HEADLINE_SIGNAL",
           "STATE_SIGNAL"]

DEFAULT_TITLE = "regime-monitor report"
CLOSE = MICROCAP_CLOSE
MAX_CHARTS = 15  # all images of the page, the overview and episode charts included
DPI = 90
WIDTH_IN = 12.0
PANEL_IN = 1.8

SEVERITY_COLOUR = {"critical": "#c0392b", "warning": "#e67e22", "info": "#2980b9"}
WHEN_COLOUR = "#c0392b"
CLEAR_COLOUR = "#7f8c8d"
LINE_COLOUR = "#2c3e50"
INDEX_COLOUR = "#1f4e79"
HEADLINE_COLOUR = "#c0392b"
OTHER_WARNING_COLOUR = "#e67e22"
DRAWDOWN_COLOUR = "#c0392b"

HEADLINE_SIGNAL = digest.HEADLINE_SIGNAL  # a warning rule whose `when` reads it: a headline rule
STATE_SIGNAL = backtest.STATE_SIGNAL  # a rule whose `when` reads it states a drawdown, not a warning
CAUGHT_LEAD_DAYS = backtest.MIN_LEAD_DAYS  # caught = warned this many trading days before half depth
ANY_WARNING = backtest.ANY  # the union row of the warning rules


# -- data ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Threshold:
    """One comparison of a rule on one signal: ``signal op number`` or ``signal op other``."""

    kind: str  # "when" | "clear"
    op: str
    value: float | None
    other: str | None  # a signal on the other side of the comparison

    def label(self, signal: str) -> str:
        rhs = self.other if self.other else digest.format_value(signal, self.value)
        return f"{self.kind}: {self.op} {rhs}"


@dataclass
class RulePanels:
    rule: RuleConfig
    signals: dict[str, list[Threshold]]  # signal -> its comparisons (when first, then clear)
    spans: list[tuple[str, str | None]]  # firing spans, clipped to the period (see firing_spans)
    firings: int  # firing events within the period
    days_firing: int


def thresholds(rule: RuleConfig) -> dict[str, list[Threshold]]:
    """Return each signal ``rule`` reads, with the thresholds of its ``when`` (and ``clear_when``)
    comparisons, as given by :func:`monitor.alerting.rules.describe`. Signals read only as another
    signal's threshold are listed too (with no comparison of their own)."""
    out: dict[str, list[Threshold]] = {}
    for kind, ex in (("when", rule.when_expr), ("clear", rule.clear_expr)):
        if ex is None:
            continue
        for c in describe(ex, {}):
            t = Threshold(kind, c["op"], c["threshold"], c.get("threshold_signal"))
            found = out.setdefault(c["signal"], [])
            if t not in found:
                found.append(t)
    for name in sorted(rule.names):
        out.setdefault(name, [])
    return out


def _period(db: Database, start: dt.date | None, end: dt.date | None) -> tuple[str | None, str | None]:
    lo, hi = signal_store.date_range(db)
    if lo is None:
        lo, hi = observation_store.date_range(db, CLOSE)
    first = start.isoformat() if start else lo
    last = end.isoformat() if end else hi
    return first, last


def _signal_frame(db: Database, names: Sequence[str], first: str, last: str) -> pd.DataFrame:
    """Return stored values (index = days with any stored signal in the period, columns = names)."""
    days = signal_store.days_between(db, first, last)
    index = pd.DatetimeIndex(pd.to_datetime(days), name="date")
    frame = pd.DataFrame(np.nan, index=index, columns=list(names), dtype=float)
    if not names or not days:
        return frame
    rows = signal_store.values_between(db, names, first, last)
    if rows:
        long = pd.DataFrame(rows, columns=["signal", "date", "value"])
        wide = long.pivot(index="date", columns="signal", values="value")
        wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index))
        frame.update(wide.reindex(index=index, columns=frame.columns))
    return frame


def firing_spans(events: Iterable[Mapping], first: str, last: str) -> list[tuple[str, str | None]]:
    """Return the spells during which one rule's alert was firing, from its events (oldest first),
    clipped to ``first``..``last``, as ``(since, left)`` pairs: ``since`` is the first day firing,
    ``left`` the day of the event that left the firing state (not itself a firing day), or None
    when the alert was still firing on ``last``. Missing data does not end a spell (a firing alert
    stays firing)."""
    spans: list[tuple[str, str | None]] = []
    since: str | None = None
    for e in events:
        if e["to_state"] == "firing" and since is None:
            since = e["date"]
        elif e["to_state"] != "firing" and since is not None:
            spans.append((since, e["date"]))
            since = None
    if since is not None:
        spans.append((since, None))
    return [(max(a, first), b if b is not None and b <= last else None) for a, b in spans
            if (b is None or b > first) and a <= last]


def _overlaps(ep: Mapping, first: str, last: str) -> bool:
    return ep["start"] <= last and (ep["end"] is None or ep["end"] >= first)


def rule_role(rule: RuleConfig) -> str:
    """Return what the report makes of a rule's firings: the backtest's kind
    (:func:`monitor.analysis.backtest.rule_kind`: ``"state"`` for a rule whose ``when`` reads
    :data:`STATE_SIGNAL`, which says a drawdown is under way rather than warning of one, else
    ``"info"`` or ``"warning"`` by severity), with the warnings whose ``when`` reads
    :data:`HEADLINE_SIGNAL` as ``"headline"``."""
    kind = backtest.rule_kind(rule)
    return "headline" if kind == "warning" and digest.is_headline(rule) else kind


@dataclass(frozen=True)
class WarningMarks:
    """What the overview chart marks (rule name -> ISO days, oldest first; rules in config order).

    ``headline``: the firing days of every headline rule (an empty list when it did not fire);
    ``other``: those of the other warning rules that fired in the period; ``spells``: the firing
    spells of every headline rule (:func:`firing_spans`, clipped to the period)."""

    headline: dict[str, list[str]]
    other: dict[str, list[str]]
    spells: dict[str, list[tuple[str, str | None]]]

    @property
    def headline_days(self) -> list[str]:
        return sorted(d for days in self.headline.values() for d in days)

    @property
    def other_days(self) -> list[str]:
        return sorted(d for days in self.other.values() for d in days)


def warning_marks(rules: Iterable[RuleConfig], events: Iterable[Mapping], first: str,
                  last: str) -> WarningMarks:
    """Return the warnings to mark on the overview chart, from alert events (dicts with at least
    ``rule``, ``date``, ``event`` and ``to_state``, oldest first; events before ``first`` only
    matter for the spells). A mark is an event ``firing`` (a transition into the firing state,
    not a repeat) of a headline or warning rule (:func:`rule_role`) dated ``first``..``last``;
    state alerts, info rules and rules not in ``rules`` (e.g. the built-in data_stale) are not
    marked."""
    roles = {r.name: rule_role(r) for r in rules}
    by_rule: dict[str, list[Mapping]] = {}
    for e in events:
        if roles.get(e["rule"]) in ("headline", "warning") and e["date"] <= last:
            by_rule.setdefault(e["rule"], []).append(e)
    headline: dict[str, list[str]] = {}
    other: dict[str, list[str]] = {}
    spells: dict[str, list[tuple[str, str | None]]] = {}
    for name, role in roles.items():
        evs = by_rule.get(name, [])
        days = [e["date"] for e in evs if e["event"] == "firing" and e["date"] >= first]
        if role == "headline":
            spells[name] = firing_spans(evs, first, last)
            headline[name] = days
        elif role == "warning" and days:
            other[name] = days
    return WarningMarks(headline, other, spells)


# -- charts -------------------------------------------------------------------------------------

def _figure(height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _is_fraction(signal: str) -> bool:
    spec = signals.REGISTRY.get(signal)
    return bool(spec and spec.unit.startswith("fraction"))


def _dates(values: Iterable[str]) -> np.ndarray:
    return pd.to_datetime(list(values)).to_numpy()


def _shade(ax, spans: Iterable[tuple[str, str]], colour: str, alpha: float, label: str | None) -> None:
    for i, (a, b) in enumerate(spans):
        lo, hi = pd.Timestamp(a), pd.Timestamp(b)
        if hi <= lo:
            hi = lo + pd.Timedelta(days=1)
        ax.axvspan(lo, hi, color=colour, alpha=alpha, lw=0, label=label if i == 0 else None)


def _rule_chart(groups: list[RulePanels], frame: pd.DataFrame, first: str, last: str) -> str:
    """Render the panels of one or more rules (one panel per signal) as one PNG (base64)."""
    from matplotlib.ticker import PercentFormatter

    panels = [(g, s, ts) for g in groups for s, ts in g.signals.items()]
    n = len(panels)
    height = PANEL_IN * n + 0.6
    fig = _figure(height)
    fig.subplots_adjust(left=0.075, right=0.985, top=1 - 0.25 / height, bottom=0.35 / height,
                        hspace=0.55)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    x = frame.index.to_numpy()
    lo_x, hi_x = pd.Timestamp(first), pd.Timestamp(last)
    for ax, (g, signal, ts) in zip(axes, panels, strict=True):
        colour = SEVERITY_COLOUR.get(g.rule.severity, "#e67e22")
        values = frame[signal] if signal in frame else pd.Series(np.nan, index=frame.index)
        ax.plot(x, values.to_numpy(dtype=float), color=LINE_COLOUR, lw=1.0, label=signal)
        for t in ts:
            style = dict(color=WHEN_COLOUR if t.kind == "when" else CLEAR_COLOUR, lw=1.1,
                         ls="--" if t.kind == "when" else ":")
            if t.other:
                other = frame[t.other] if t.other in frame else pd.Series(np.nan, index=frame.index)
                ax.plot(x, other.to_numpy(dtype=float), label=t.label(signal), **style)
            elif t.value is not None:
                ax.axhline(t.value, label=t.label(signal), **style)
        _shade(ax, [(a, b or last) for a, b in g.spans], colour, 0.18, f"{g.rule.name} firing")
        if values.notna().sum() == 0:
            ax.text(0.5, 0.5, "no stored values in this period", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="#7f8c8d")
        if _is_fraction(signal):
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
        title = signal if len(groups) == 1 else f"{signal}  ({g.rule.name})"
        # a fixed title position: the automatic one costs a layout pass per panel
        ax.set_title(title, fontsize=9, loc="left", y=1.0, pad=3)
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2,
                  frameon=False, ncol=4)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.set_xlim(lo_x, hi_x)
    return _png(fig)


def _episode_chart(close: pd.Series, drawdowns: list[dict], rotations: list[dict],
                   first: str, last: str) -> str:
    from matplotlib.ticker import PercentFormatter

    height = 5.2
    fig = _figure(height)
    fig.subplots_adjust(left=0.075, right=0.985, top=1 - 0.3 / height, bottom=0.35 / height,
                        hspace=0.3)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    x = close.index.to_numpy()
    ax1.plot(x, close.to_numpy(dtype=float), color="#1f4e79", lw=1.2, label=CLOSE)
    spans = [(e["peak"] or e["start"], e["end"] or last) for e in drawdowns]
    _shade(ax1, [(a, e["trough"] or b) for (a, b), e in zip(spans, drawdowns, strict=True)],
           "#c0392b", 0.22, "drawdown episode: peak to trough")
    _shade(ax1, [(e["trough"], b) for (a, b), e in zip(spans, drawdowns, strict=True) if e["trough"]],
           "#c0392b", 0.08, "trough to recovery")
    ax1.set_title("micro-cap index (observations) with drawdown episodes", fontsize=9, loc="left",
                  y=1.0, pad=3)
    ax1.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2,
               frameon=False, ncol=3)
    dd = close / close.cummax() - 1.0
    ax2.fill_between(x, dd.to_numpy(dtype=float), 0.0, color="#c0392b", alpha=0.3, lw=0)
    ax2.plot(x, dd.to_numpy(dtype=float), color="#c0392b", lw=0.9, label="decline from running peak")
    _shade(ax2, [(e["start"], e["end"] or last) for e in rotations], "#8e44ad", 0.2,
           "rotation episode")
    ax2.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    ax2.set_title("decline from the period's running peak, with rotation episodes", fontsize=9,
                  loc="left", y=1.0, pad=3)
    ax2.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2,
               frameon=False, ncol=2)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.set_xlim(pd.Timestamp(first), pd.Timestamp(last))
    return _png(fig)


def _depth_text(depth: float | None) -> str:
    return "–" if depth is None else f"{depth * 100:.0f}%"


def _overview_chart(close: pd.Series, drawdowns: list[dict], marks: WarningMarks, first: str,
                    last: str) -> str:
    """The micro-cap index over the period (log scale), drawdown episodes shaded from peak to
    trough and labelled with their depth, the warnings' firing days marked on the line."""
    from matplotlib.ticker import MaxNLocator, NullLocator, StrMethodFormatter
    from matplotlib.transforms import blended_transform_factory

    height = 4.4
    fig = _figure(height)
    fig.subplots_adjust(left=0.065, right=0.985, top=1 - 0.32 / height, bottom=0.78 / height)
    ax = fig.subplots()
    lo_x, hi_x = pd.Timestamp(first), pd.Timestamp(last)
    values = close.to_numpy(dtype=float)
    ax.plot(close.index.to_numpy(), values, color=INDEX_COLOUR, lw=1.3, label="micro-cap index",
            zorder=3)

    def level(day: str) -> float:
        """The close on ``day`` (the last one before it when the day has none)."""
        ts = min(max(pd.Timestamp(day), close.index[0]), close.index[-1])
        return float(close.asof(ts))

    for i, e in enumerate(drawdowns):
        a = max(pd.Timestamp(e["peak"] or e["start"]), lo_x)
        b = min(pd.Timestamp(e["trough"] or e["end"] or last), hi_x)
        if b <= a:
            b = a + pd.Timedelta(days=1)
        ax.axvspan(a, b, color=DRAWDOWN_COLOUR, alpha=0.16, lw=0, zorder=1,
                   label="drawdown episode, peak to trough" if i == 0 else None)
        near_end = (hi_x - b) < (hi_x - lo_x) * 0.03  # keep the label inside the axes
        ax.annotate(_depth_text(e["depth"]), xy=(b, level(b.date().isoformat())), xytext=(0, -7),
                    textcoords="offset points", ha="right" if near_end else "center", va="top",
                    fontsize=9, fontweight="bold", color="#922b21", zorder=5)

    band = blended_transform_factory(ax.transData, ax.transAxes)
    first_band = True
    for spans in marks.spells.values():
        for a, b in spans:
            x0, x1 = pd.Timestamp(a), pd.Timestamp(b or last)
            if x1 <= x0:
                x1 = x0 + pd.Timedelta(days=1)
            ax.fill_between([x0, x1], 0.0, 0.035, transform=band, color=HEADLINE_COLOUR, alpha=0.6,
                            lw=0, zorder=2,
                            label="headline warning firing (band ends when resolved)"
                            if first_band else None)
            first_band = False
    if marks.other:
        days = marks.other_days
        names = ", ".join(marks.other)
        ax.plot(_dates(days), [level(d) for d in days], ls="none", marker="o", ms=6,
                color=OTHER_WARNING_COLOUR, alpha=0.85, mec="white", mew=0.6, zorder=4,
                label=f"other warning fired ({names})" if len(names) <= 70
                else f"other warning fired ({len(marks.other)} rules)")
    shapes = "vD^s"
    for i, (rule, days) in enumerate(marks.headline.items()):
        if not days:
            continue
        ax.plot(_dates(days), [level(d) for d in days], ls="none", marker=shapes[i % len(shapes)],
                ms=11, color=HEADLINE_COLOUR, mec="#641e16", mew=1.0, zorder=6,
                label=f"headline warning fired: {rule}")

    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size:
        ax.set_yscale("log")
        ax.set_ylim(finite.min() / 1.12, finite.max() * 1.04)
        ax.yaxis.set_major_locator(MaxNLocator(6))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlim(lo_x, hi_x)
    ax.set_title(f"Micro-cap index ({CLOSE}, log scale), {first} to {last}", fontsize=11,
                 loc="left", y=1.0, pad=5, fontweight="bold", color="#1b2631")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07),
                  frameon=False, ncol=min(3, len(handles)))
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    return _png(fig)


# -- HTML ---------------------------------------------------------------------------------------
#
# The page is rendered by the jinja2 templates in templates/ (report.html, overview.html,
# sections.html, macros.html, style.css.html) with autoescaping on: every value the templates
# show is escaped; markup comes only from the templates. What follows builds their context: text
# and numbers, formatted, and tables as Table/Row/Cell (a cell's kind picks its markup).


def _escape(value: Any) -> Markup:
    """Escape one value as the page always has (``html.escape``: quotes as ``&quot;`` and
    ``&#x27;``); None is the empty string; markup made by a template macro is kept."""
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    return Markup(html.escape("" if value is None else str(value), quote=True))


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment: loaded from the package (templates/), autoescaped, every value
    passed through :func:`_escape` (so None shows as nothing, as before)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.analysis", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        finalize=_escape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _fmt(value: Any) -> str:
    """Format one generic table value."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 1e4 else str(int(value))
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Cell:
    """One table cell for the templates: ``text`` (escaped when shown) and how it is shown:
    ``kind`` "text" (a ``<td>`` with CSS class ``cls``, if any), "sev" (a severity badge), "code"
    or "link" (to ``#href``)."""

    text: str
    kind: str = "text"
    cls: str | None = None
    href: str | None = None


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    cls: str | None = None


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[Row]


def _cell(value: Any) -> Cell:
    """A generic value as a cell: formatted by :func:`_fmt`, numbers right-aligned, days kept on
    one line; a :class:`Cell` as it is."""
    if isinstance(value, Cell):
        return value
    cls = "num" if _is_num(value) else "nowrap" if isinstance(value, str) and _DAY.match(value) else None
    return Cell(_fmt(value), cls=cls)


def _table(rows: Sequence[Mapping[str, Any]], row_class: Any = None) -> Table:
    """Return ``rows`` as a :class:`Table`; the columns are the keys in order of appearance."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return Table([str(c) for c in columns],
                 [Row([_cell(r.get(c)) for c in columns], row_class(r) if row_class else None)
                  for r in rows])


def _pct(v: float | None) -> str | None:
    return None if v is None else f"{v * 100:.1f}%"


def _trigger_text(raw: str | None) -> str:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return ""
    comps = data.get("comparisons") if isinstance(data, dict) else None
    if not comps:
        return ""
    try:
        return "; ".join(digest.comparison_text(c) for c in comps)
    except (KeyError, TypeError, ValueError):
        return ""


def _event_table(events: list[dict]) -> Table:
    return _table([
        {"date": e["date"], "rule": e["rule"], "severity": Cell(e["severity"], kind="sev"),
         "event": e["event"], "from → to": f"{e['from_state']} → {e['to_state']}",
         "values": _trigger_text(e["signal_values"]) if e["event"] in ("firing", "repeat", "resolved")
         else "",
         "notified": "silenced" if e["silenced_by"] else ("yes" if e["notified"] else "no")}
        for e in events], row_class=lambda r: f"ev-{r['event']}")
# -- backtest: the trust box and the table ------------------------------------------------------

BACKTEST_HEADERS = {
    "rule": "rule",
    "kind": "kind",
    "days": "trading days",
    "episodes": "drawdowns",
    "caught": "caught",
    "warned": "warned (any lead)",
    "recall": "recall",
    "lead_q25": "lead to half depth, q25 (days)",
    "lead_median": "lead to half depth, median (days)",
    "lead_q75": "lead to half depth, q75 (days)",
    "median_lead_trough": "lead to trough (median days)",
    "lead_trough_median": "lead to trough (median days)",
    "median_lead_half": "lead to half depth (median days)",
    "lead_half_median": "lead to half depth (median days)",
    "firings": "firings",
    "hits": "hits",
    "late": "late firings",
    "false_alarms": "false alarms",
    "unjudged": "unjudged firings",
    "precision": "precision",
    "false_alarms_per_year": "false alarms / yr",
    "share_in_alert": "days in alert",
    "notifications_per_year": "notifications / yr",
    "chance_mean": "chance (mean caught)",
    "p_value": "p (vs chance)",
    "shift_mean": "chance, shifted (mean caught)",
    "shift_p": "p (vs shifted)",
}
FRACTION_KEYS = frozenset({"share_in_alert", "precision", "recall"})
P_KEYS = frozenset({"p_value", "shift_p"})
ONE_DECIMAL_KEYS = frozenset({"chance_mean", "shift_mean", "notifications_per_year",
                              "false_alarms_per_year"})
KIND_GROUPS = (("warning", "Warnings"), ("union", "Any warning (union rows)"), ("state", "State alerts"),
               ("info", "Info"))


def _num(value: Any) -> float | None:
    if not _is_num(value) or not math.isfinite(value):
        return None
    return float(value)


def _p_text(p: float | None) -> str:
    if p is None:
        return "= –"
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def _percent(v: float) -> str:
    return f"{v * 100:.1f}%" if abs(v) < 0.01 and v != 0 else f"{v * 100:.0f}%"


def trust_sentence(row: Mapping[str, Any]) -> str:
    """Return one plain sentence on a backtest row (a dict of :func:`monitor.analysis.backtest.to_records`;
    a missing or non-numeric value reads "–"), e.g. "caught 3 of 12 drawdowns ≥3 trading days
    before half depth; chance 2.9 (p = 0.47); 0.6 false alarms a year; in alert 14% of days — not
    shown to beat chance". The verdict: "not shown to beat chance" when ``p_value`` > 0.05,
    "better than chance (p = …)" otherwise, "not compared with chance" without a p-value."""
    def whole(key: str) -> str:
        v = _num(row.get(key))
        return "–" if v is None else f"{v:.0f}"

    def one(key: str) -> str:
        v = _num(row.get(key))
        return "–" if v is None else f"{v:.1f}"

    share = _num(row.get("share_in_alert"))
    p = _num(row.get("p_value"))
    if p is None:
        verdict = "not compared with chance"
    elif p > 0.05:
        verdict = "not shown to beat chance"
    else:
        verdict = f"better than chance (p {_p_text(p)})"
    return (f"caught {whole('caught')} of {whole('episodes')} drawdowns ≥{CAUGHT_LEAD_DAYS} trading "
            f"days before half depth; chance {one('chance_mean')} (p {_p_text(p)}); "
            f"{one('false_alarms_per_year')} false alarms a year; "
            f"in alert {'–' if share is None else _percent(share)} of days — {verdict}")


def backtest_kind(row: Mapping[str, Any], roles: Mapping[str, str]) -> str:
    """Return the group of a backtest row: its ``kind`` when given, else inferred from the rule's
    role (``roles``: rule name -> :func:`rule_role`) or, for a name starting "any ", "union";
    "other" when unknown."""
    kind = row.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    name = str(row.get("rule") or "")
    role = roles.get(name)
    if role is not None:
        return "warning" if role == "headline" else role
    return "union" if name.startswith("any ") else "other"


def _trust(rows: list[dict] | None, rules: Sequence[RuleConfig]) -> dict[str, Any]:
    """The trust box's context: ``rows`` as given, the headline rules' names, and ``picked``:
    ``(name, " (headline)" or "", sentence)`` for each headline rule and each union row."""
    headline = [r.name for r in rules if rule_role(r) == "headline"]
    picked: list[tuple[str, str, str]] = []
    if rows:
        by_name = {str(r.get("rule")): r for r in rows}
        chosen: list[tuple[str, Mapping | None]] = [(n, by_name.get(n)) for n in headline]
        chosen += [(str(r.get("rule")), r) for r in rows
                   if r.get("rule") == ANY_WARNING or r.get("kind") == "union"]
        for name, row in chosen:
            tag = " (headline)" if name in headline else ""
            said = "not in the backtest rows" if row is None else trust_sentence(row)
            picked.append((name, tag, said))
    return {"rows": rows, "headline": headline, "picked": picked}


def _backtest_cell(key: str, value: Any) -> Cell:
    v = _num(value)
    if v is None:
        if _is_num(value):  # NaN or infinite
            return Cell("–")
        return Cell(_fmt(value), cls="nowrap" if isinstance(value, str) and _DAY.match(value) else None)
    if key in FRACTION_KEYS or key.startswith("share_"):
        text = _percent(v)
    elif key in P_KEYS:
        text = "< 0.001" if v < 0.001 else f"{v:.2g}"
    elif key in ONE_DECIMAL_KEYS:
        text = f"{v:.1f}"
    else:
        text = _fmt(value)
    return Cell(text, cls="num")


FIRST_COLUMNS = ("rule", "episodes", "caught", "chance_mean", "p_value", "false_alarms_per_year",
                 "share_in_alert")  # the trust sentence's numbers first; the others follow
LEAD_QUARTILES = ("lead_q25", "lead_median", "lead_q75")
LEAD_HEADER = "lead to half depth, days (q25 / median / q75)"


@dataclass(frozen=True)
class BacktestTable:
    """The backtest table for the templates: ``days`` (the trading days scored, formatted, when
    every row has the same; else None), the column headers, and ``(title, rows)`` per group."""

    days: str | None
    headers: list[str]
    groups: list[tuple[str, list[Row]]]


def _backtest_table(rows: list[dict], rules: Sequence[RuleConfig]) -> BacktestTable:
    """The backtest rows grouped by kind (warnings, any warning, state alerts, info, others), with
    readable column names and percentages. Columns: those of :data:`FIRST_COLUMNS` present, then
    the others in the order of the rows' keys, except ``kind`` (the groups show it), ``days``
    when every row has the same (said above the table), and the lead quartiles, merged into one
    column."""
    roles = {r.name: rule_role(r) for r in rules}
    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns = [k for k in FIRST_COLUMNS if k in keys] + [
        k for k in keys if k != "kind" and k not in FIRST_COLUMNS]
    days = {r.get("days") for r in rows}
    note = None
    if "days" in columns and len(days) == 1:
        columns.remove("days")
        note = _fmt(days.pop())
    if all(k in columns for k in LEAD_QUARTILES):
        at = columns.index(LEAD_QUARTILES[0])
        columns = [c for c in columns if c not in LEAD_QUARTILES]
        columns.insert(at, LEAD_HEADER)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(backtest_kind(r, roles), []).append(r)
    titles = dict(KIND_GROUPS)
    order = [k for k, _ in KIND_GROUPS if k in groups] + [k for k in groups if k not in titles]
    out: list[tuple[str, list[Row]]] = []
    for kind in order:
        title = titles.get(kind, kind.replace("_", " ").capitalize() if kind != "other" else "Other")
        table_rows = []
        for r in groups[kind]:
            cells = []
            for c in columns:
                if c == LEAD_HEADER:
                    leads = [_num(r.get(k)) for k in LEAD_QUARTILES]
                    text = ("–" if all(v is None for v in leads) else
                            " / ".join("–" if v is None else _fmt(v) for v in leads))
                    cells.append(Cell(text, cls="num"))
                else:
                    cells.append(_backtest_cell(c, r.get(c)))
            head = roles.get(str(r.get("rule"))) == "headline"
            table_rows.append(Row(cells, "headline" if head else None))
        out.append((title, table_rows))
    headers = [BACKTEST_HEADERS.get(c, c.replace("_", " ")) for c in columns]
    return BacktestTable(note, headers, out)


def _chunks(items: list, parts: int) -> list[list]:
    size = max(1, math.ceil(len(items) / max(1, parts)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def build_report(db: Database, config: Config, *, now: dt.datetime,
                 backtest_rows: list[dict] | None = None, start: dt.date | None = None,
                 end: dt.date | None = None, title: str = DEFAULT_TITLE) -> str:
    """Return the report as one self-contained HTML page; ``now`` (an aware datetime, shown in
    UTC to the minute) is when it was generated.

    The period is ``start``..``end`` (default: the first and last day with stored signal values).
    The page opens with the micro-cap index over the period, the stored drawdown episodes shaded
    and labelled, the firings of the warning rules marked (:func:`warning_marks`), and "how far
    to trust the warnings": one sentence (:func:`trust_sentence`) per headline rule and for the
    "any warning" row of ``backtest_rows``. Then every signal read by a configured rule is
    plotted over the period against the thresholds of that rule's comparisons, with the days the
    rule's alert was firing shaded (one chart per rule; rules share charts when there are more
    than ``MAX_CHARTS - 2``). ``backtest_rows`` (flat dicts, as :func:`monitor.analysis.backtest.to_records`
    gives; any keys, missing values shown as "–") is shown as a table grouped by kind
    (:func:`backtest_kind`), its columns in the order of the keys (``kind`` aside).
    """
    first, last = _period(db, start, end)
    page: dict[str, Any] = {
        "title": title, "source": db_store.file_of(db),
        "generated": now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "period": f"{first} to {last}" if first and last else "no data",
        "close_series": CLOSE, "headline_signal": HEADLINE_SIGNAL, "any_warning": ANY_WARNING,
        "first": first, "last": last}
    template = _environment().get_template("report.html")

    if first is None or last is None or first > last:
        return template.render(page, empty=True, days=0, counts=[], nav=[])

    rules = list(config.rules)
    names = sorted({n for r in rules for n in r.names})
    frame = _signal_frame(db, names, first, last)
    all_events = alert_store.events_through(db, last)
    by_rule: dict[str, list[dict]] = {}
    for e in all_events:
        by_rule.setdefault(e["rule"], []).append(e)
    events = [e for e in all_events if e["date"] >= first]

    groups = []
    for r in rules:
        spans = firing_spans(by_rule.get(r.name, []), first, last)
        days = frame.index
        firing_days = 0
        for a, b in spans:
            upto = days < pd.Timestamp(b) if b is not None else days <= pd.Timestamp(last)
            firing_days += int(((days >= pd.Timestamp(a)) & upto).sum())
        firings = sum(1 for e in events if e["rule"] == r.name and e["event"] == "firing")
        groups.append(RulePanels(r, thresholds(r), spans, firings, firing_days))

    all_eps = episode_store.list_episodes(db)
    drawdowns = [e for e in all_eps if e["kind"] == "drawdown" and _overlaps(e, first, last)]
    rotations = [e for e in all_eps if e["kind"] == "rotation" and _overlaps(e, first, last)]

    counts = [("trading days", len(frame.index)), ("rules", len(rules)),
              ("signals charted", len(names)), ("alert events", len(events)),
              ("firings", sum(g.firings for g in groups)),
              ("drawdown episodes", len(drawdowns)), ("rotation episodes", len(rotations))]
    if backtest_rows is not None:
        counts.append(("backtest rows", len(backtest_rows)))
    nav = [("overview", "Overview"), ("rules", "Rules"), ("signals", "Signals"),
           ("alerts", "Alert timeline"), ("episodes", "Episodes"), ("backtest", "Backtest")]

    close_rows = observation_store.values_between(db, CLOSE, first, last)
    close = pd.Series([r[1] for r in close_rows], index=_dates(r[0] for r in close_rows),
                      dtype=float).dropna()
    images = 0

    # overview: the index, its drawdowns and the warnings; how far to trust the warnings
    marks = warning_marks(rules, all_events, first, last)
    overview = _overview(close, drawdowns, marks, config, first, last)
    images += 1 if overview["chart"] else 0

    rules_table = _table([
        {"rule": g.rule.name, "severity": Cell(g.rule.severity, kind="sev"),
         "when": Cell(g.rule.when, kind="code"),
         "for_days": g.rule.for_days,
         "clear_when": Cell(g.rule.clear_when, kind="code") if g.rule.clear_when else "not (when)",
         "clear_days": g.rule.clear_days, "firings": g.firings, "days firing": g.days_firing,
         "charts": Cell("signals", kind="link", href=f"rule-{g.rule.name}")}
        for g in groups])

    # signal charts
    charts = []
    charted = [g for g in groups if g.signals]
    for chunk in _chunks(charted, MAX_CHARTS - images - 1):
        alt = (f"{', '.join(g.rule.name for g in chunk)}: "
               f"{', '.join(s for g in chunk for s in g.signals)} from {first} to {last} "
               "against the rule thresholds, firing days shaded")
        charts.append({
            "rules": [{"name": g.rule.name, "severity": g.rule.severity, "explain": g.rule.explain,
                       "when": g.rule.when, "for_days": g.rule.for_days, "firings": g.firings,
                       "days_firing": g.days_firing} for g in chunk],
            "png": _rule_chart(chunk, frame, first, last), "alt": alt})
        images += 1

    # alert timeline
    changes = [e for e in events if e["event"] != "repeat"]
    repeats = [e for e in events if e["event"] == "repeat"]
    alerts = {"events": len(events), "changes": len(changes), "repeats": len(repeats),
              "changes_table": _event_table(changes) if changes else None,
              "repeats_table": _event_table(repeats) if repeats else None}

    # episodes
    episodes: dict[str, Any] = {
        "chart": None, "alt": None, "rotation_rule": config.episodes.rotation_rule,
        "min_depth": f"{config.episodes.drawdown_min_depth * 100:.0f}%",
        "drawdowns": None, "rotations": None}
    if len(close) >= 2:
        episodes["alt"] = (f"{CLOSE} from {first} to {last} with {len(drawdowns)} drawdown "
                           f"episode(s) and {len(rotations)} rotation episode(s) shaded")
        episodes["chart"] = _episode_chart(close, drawdowns, rotations, first, last)
        images += 1
    if drawdowns:
        rows = []
        for e in drawdowns:
            detail = _detail(e)
            rows.append({"peak": e["peak"], "threshold reached": detail.get("threshold_day"),
                         "trough": e["trough"], "recovery": e["end"] or "open",
                         "depth": _pct(e["depth"]), "peak close": detail.get("peak_close"),
                         "trough close": detail.get("trough_close")})
        episodes["drawdowns"] = _table(rows)
    if rotations:
        rows = []
        for e in rotations:
            detail = _detail(e)
            rows.append({"start": e["start"], "end": e["end"] or "open",
                         "last day": detail.get("last_day"), "theme": detail.get("theme"),
                         "theme excess peak": _pct(detail.get("theme_excess_peak")),
                         "micro-cap drawdown": _pct(e["depth"])})
        episodes["rotations"] = _table(rows)

    assert images <= MAX_CHARTS
    return template.render(
        page, empty=False, days=len(frame.index), counts=counts, nav=nav, overview=overview,
        trust=_trust(backtest_rows, rules), rules_table=rules_table, charts=charts, alerts=alerts,
        episodes=episodes, backtest_given=backtest_rows is not None,
        backtest=_backtest_table(backtest_rows, rules) if backtest_rows else None)


def _overview(close: pd.Series, drawdowns: list[dict], marks: WarningMarks, config: Config,
              first: str, last: str) -> dict[str, Any]:
    """The overview's context: its chart (base64 PNG, None without two closes), the chart's alt
    text and caption, and the lines under it as ``(bold, rest)`` pairs."""
    min_depth = f"{config.episodes.drawdown_min_depth * 100:.0f}%"
    headline = list(marks.headline)
    out: dict[str, Any] = {"chart": None, "alt": None, "caption": None}
    if len(close) >= 2:
        n_head, n_other = len(marks.headline_days), len(marks.other_days)
        out["alt"] = (f"{CLOSE} from {first} to {last} (log scale) with {len(drawdowns)} drawdown "
                      f"episode(s) shaded from peak to trough, {n_head} headline warning firing(s) "
                      f"and {n_other} other warning firing(s) marked")
        if headline:
            marked = (f"large red markers for the headline rule(s) {', '.join(headline)} (reading "
                      f"{HEADLINE_SIGNAL}; the band at the bottom lasts until resolved), small "
                      "orange dots for the other warning and critical rules")
        else:
            marked = (f"small orange dots for the warning and critical rules (no rule reads "
                      f"{HEADLINE_SIGNAL}, so no headline marker)")
        out["caption"] = (f"Shaded: drawdown episodes of at least {min_depth}, peak to trough, "
                          f"labelled with their depth. Marked: the days warnings fired — {marked}; "
                          f"state alerts ({STATE_SIGNAL}) and info rules are not marked.")
        out["chart"] = _overview_chart(close, drawdowns, marks, first, last)
    eps = [f"{e['peak'] or e['start']} → {e['trough'] or '…'} ({_depth_text(e['depth'])}"
           f"{', not recovered' if e['end'] is None else ''})" for e in drawdowns]
    lines = [("Drawdowns", f" ({len(eps)}, peak → trough): " + ("; ".join(eps) if eps else "none"))]
    for rule in headline:
        days = marks.headline[rule]
        shown = ", ".join(days) if len(days) <= 12 else f"{', '.join(days[:12])}, …"
        lines.append((rule, " (headline) fired " + f"{len(days)} time(s)"
                      + (f": {shown}" if days else "")))
    if marks.other:
        lines.append(("Other warnings", " fired " + ", ".join(
            f"{r} {len(d)}×" for r, d in marks.other.items())))
    out["lines"] = lines
    return out


def _detail(ep: Mapping) -> dict:
    raw = ep.get("detail")
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def write_report(path: str | Path, html_text: str) -> Path:
    """Write the page to ``path`` (UTF-8, parent folders created, replaced atomically, owner-only
    like the database it comes from); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html_text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
