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
import bisect
import datetime as dt
import functools
import html
import io
import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup
from sqlite_utils import Database

import signals
from monitor.alerting.rules import describe
from monitor.analysis import backtest
from monitor.calendar import TradingCalendar
from monitor.config import Config, RuleConfig
from monitor.delivery import digest
from signals.episodes import drawdown_episodes
from signals.series import MICROCAP_CLOSE, labelled
from storage import alerts as alert_store
from storage import db as db_store
from storage import episodes as episode_store
from storage import observations as observation_store
from storage import signal_values as signal_store

if TYPE_CHECKING:
    from monitor.analysis.evidence import Evidence

__all__ = ["build_report", "compose", "report_period", "episode_leads", "Lead",
           "write_report", "warning_marks", "rule_role", "trust_sentence",
           "backtest_kind", "WarningMarks", "DEFAULT_TITLE", "MAX_CHARTS", "HEADLINE_SIGNAL",
           "STATE_SIGNAL"]

DEFAULT_TITLE = "regime-monitor report"
CLOSE = MICROCAP_CLOSE
EXPOSURE_CHARTS = 4  # the manager-exposure section's charts (issue 16), when products have NAVs
MAX_CHARTS = 15 + EXPOSURE_CHARTS  # all images of the page, the overview and episode charts included
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
LOOKBACK_DAYS = backtest.LOOKBACK_DAYS  # a firing this many trading days before a peak counts for it


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


def report_period(db: Database, start: dt.date | None = None,
                  end: dt.date | None = None) -> tuple[str | None, str | None]:
    """Return the report's period as ISO days: ``start``..``end``, each defaulting to the first
    (last) day with stored signal values or, when no cycle has run (a freshly imported
    database), with a micro-cap close; clipped to the micro-cap closes when there are any. The
    header, the charts and the backtest all cover this period. ``(None, None)`` without data."""
    lo, hi = signal_store.date_range(db)
    mc_lo, mc_hi = observation_store.date_range(db, CLOSE)
    if lo is None:
        lo, hi = mc_lo, mc_hi
    first = start.isoformat() if start else lo
    last = end.isoformat() if end else hi
    if first is not None and mc_lo is not None:
        first = max(first, mc_lo)
    if last is not None and mc_hi is not None:
        last = min(last, mc_hi)
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

def _quiet_matplotlib() -> None:
    """Keep matplotlib's own messages off the terminal: its loggers (e.g. "generated new
    fontManager" on a first run) are raised to ERROR; the charts never rely on them."""
    logging.getLogger("matplotlib").setLevel(logging.ERROR)


def _figure(height: float):
    _quiet_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # a glyph the installed fonts lack (a CJK name) is drawn as a box, not said on stderr
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CJK_PART = re.compile(r" / [^\x00-\x7f][^ ,]*")


def _chart_label(signal: str) -> str:
    """A signal's readable name for a chart, its Chinese part left out (the chart fonts may lack
    the glyphs), with its id: "CSI 2000 turnover share (turnover.csi2000_share)"."""
    return _CJK_PART.sub("", labelled(signal))


def _xlim(ax, first: str, last: str) -> None:
    """The period as the x range (a one-day period widened by half a day each side)."""
    lo, hi = pd.Timestamp(first), pd.Timestamp(last)
    if hi <= lo:
        lo, hi = lo - pd.Timedelta(hours=12), hi + pd.Timedelta(hours=12)
    ax.set_xlim(lo, hi)


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
        title = _chart_label(signal) if len(groups) == 1 else f"{_chart_label(signal)}  ({g.rule.name})"
        # a fixed title position: the automatic one costs a layout pass per panel
        ax.set_title(title, fontsize=9, loc="left", y=1.0, pad=3)
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2,
                  frameon=False, ncol=4)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        _xlim(ax, first, last)
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
    ax1.plot(x, close.to_numpy(dtype=float), color="#1f4e79", lw=1.2, label=_chart_label(CLOSE))
    spans = [(e["peak"] or e["start"], e["end"] or last) for e in drawdowns]
    _shade(ax1, [(a, e["trough"] or b) for (a, b), e in zip(spans, drawdowns, strict=True)],
           "#c0392b", 0.22, "drawdown episode: peak to trough")
    _shade(ax1, [(e["trough"], b) for (a, b), e in zip(spans, drawdowns, strict=True) if e["trough"]],
           "#c0392b", 0.08, "trough to recovery")
    ax1.set_title("micro-cap index with drawdown episodes", fontsize=9, loc="left",
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
        _xlim(ax, first, last)
    return _png(fig)


def _depth_text(depth: float | None) -> str:
    return "–" if depth is None else _percent(depth)


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
    _xlim(ax, first, last)
    ax.set_title(f"Micro-cap index ({CLOSE}, log scale), {first} to {last}", fontsize=11,
                 loc="left", y=1.0, pad=5, fontweight="bold", color="#1b2631")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07),
                  frameon=False, ncol=min(3, len(handles)))
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    return _png(fig)


# -- manager exposure (issue 16) ---------------------------------------------------------------

EXPOSURE_SIZE_IN = (6.2, 4.9)  # each exposure chart; the page shows them two a row
STRATEGY_COLOURS = ("#1f4e79", "#c0392b", "#27ae60", "#8e44ad", "#e67e22", "#16a085", "#7f8c8d",
                    "#d35400")


def _exposure_figure():
    _quiet_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=EXPOSURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.89, bottom=0.27)
    return fig, fig.subplots()


def _strategy_points(ax, table: pd.DataFrame, x: str, y: str) -> None:
    """Plot ``table``'s products at (``x``, ``y``), one colour per strategy (the legend), each
    point labelled with its rank (the ``#`` of the ranked table: product names may need glyphs
    the chart fonts lack); a product flagged ``large_exposure`` is ringed."""
    table = table[np.isfinite(table[x].to_numpy(dtype=float))
                  & np.isfinite(table[y].to_numpy(dtype=float))]
    strategies = list(dict.fromkeys(str(s) or "unlabelled" for s in table["strategy"]))
    colour = {s: STRATEGY_COLOURS[i % len(STRATEGY_COLOURS)] for i, s in enumerate(strategies)}
    for s in strategies:
        part = table[[(str(v) or "unlabelled") == s for v in table["strategy"]]]
        ax.scatter(part[x].to_numpy(dtype=float), part[y].to_numpy(dtype=float), s=34,
                   color=colour[s], alpha=0.85, label=_CJK_PART.sub("", s) or s, zorder=3,
                   edgecolors="white", linewidths=0.5)
    flagged = table[table["large_exposure"].astype(bool)] if "large_exposure" in table else table[:0]
    if len(flagged):
        ax.scatter(flagged[x].to_numpy(dtype=float), flagged[y].to_numpy(dtype=float), s=110,
                   facecolors="none", edgecolors="#922b21", linewidths=1.2, zorder=4,
                   label="flagged: large exposure")
    for rank, (xv, yv) in zip(table["rank"], zip(table[x], table[y], strict=True), strict=True):
        if _num(xv) is not None and _num(yv) is not None:
            ax.annotate(str(rank), (float(xv), float(yv)), xytext=(5, 4),
                        textcoords="offset points", fontsize=7, color="#1b2631", zorder=5,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                              "alpha": 0.7})
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False, ncol=2)


def _relation(table: pd.DataFrame, x: str, y: str) -> str:
    """The Spearman rank correlation of ``y`` with ``x`` across the products, as chart text:
    "Spearman ρ -0.45 (p 0.02, n 25)" (``signals.exposure.rank_evidence``)."""
    from signals.exposure import rank_evidence

    got = rank_evidence(table.set_index("product")[x], table.set_index("product")[y])
    rho, p, n = _num(got.get("rho")), _num(got.get("p")), got.get("n")
    if rho is None:
        return f"n {n}: too few for a rank correlation"
    return f"Spearman ρ {rho:+.2f} (p {_p_text(p)[2:]}, n {n})"


def _exposure_scatter(table: pd.DataFrame, x: str, y: str, ylabel: str, title: str,
                      percent: bool) -> str:
    """One of the note's charts: the products' ``y`` against their micro-cap correlation ``x``
    (base64 PNG)."""
    from matplotlib.ticker import PercentFormatter

    fig, ax = _exposure_figure()
    _strategy_points(ax, table, x, y)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.axhline(0.0, color="#7f8c8d", lw=0.8)
    ax.set_xlabel(f"correlation of the excess with micro-cap excess ({x.rsplit('_', 1)[-1]})",
                  fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(f"{title}\n{_relation(table, x, y)}", fontsize=9, loc="left")
    return _png(fig)


def _quadrant_chart(table: pd.DataFrame, y: str, large: float, loose: float) -> str:
    """The note's quadrant: tracking correlation (NAV vs benchmark) against the micro-cap
    correlation of the excess, the flag thresholds drawn and the flagged corner shaded."""
    fig, ax = _exposure_figure()
    xs = table["tracking_corr"].to_numpy(dtype=float)
    ys = table[y].to_numpy(dtype=float)
    lo_x = float(np.nanmin(np.append(xs, loose))) - 0.05
    hi_y = float(np.nanmax(np.append(ys, large))) + 0.05
    ax.fill_between([lo_x, loose], large, hi_y, color="#f5b7b1", alpha=0.35, lw=0, zorder=1,
                    label="flag zone: loose tracking, excess follows micro-caps")
    ax.axvline(loose, color="#922b21", ls="--", lw=1.0,
               label=f"tracking corr < {loose:.2f}")
    ax.axhline(large, color="#922b21", ls=":", lw=1.2,
               label=f"micro-cap corr ≥ {large:.2f}")
    _strategy_points(ax, table, "tracking_corr", y)
    ax.set_xlim(left=lo_x)
    ax.set_ylim(top=hi_y)
    ax.set_xlabel("tracking: correlation of NAV returns with the benchmark's", fontsize=8)
    ax.set_ylabel(f"excess corr with micro-cap excess ({y.rsplit('_', 1)[-1]})", fontsize=8)
    ax.set_title("Tracking vs micro-cap correlation (the note's quadrant)", fontsize=9,
                 loc="left")
    return _png(fig)


def crash_window(drawdowns: Sequence[Mapping], last: str) -> tuple[str, str] | None:
    """Return the default crash window of the evidence: the deepest drawdown episode of
    ``drawdowns`` (the report period's), from its peak to its trough (to ``last`` while it has
    none), as ISO days; None without an episode."""
    eps = [e for e in drawdowns if e.get("depth") is not None]
    if not eps:
        return None
    e = min(eps, key=lambda ep: ep["depth"])
    start, end = e.get("peak") or e["start"], e.get("trough") or last
    return (start, end) if end > start else None


def _corr_text(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v:.2f}"


def _evidence_sentence(name: str, got: Mapping[str, Any]) -> str:
    """One line on a rank correlation of exposure with the crash-window excess return, e.g.
    "correlation-based: Spearman ρ -0.41 (p = 0.04, n 25): the more exposed did worse (p ≤
    0.05)"; a negative ρ is what a working exposure measure gives."""
    rho, p, n = _num(got.get("rho")), _num(got.get("p")), got.get("n")
    if rho is None:
        return f"{name}: too few products with both ({n}) for a rank correlation"
    if p is not None and p <= 0.05:
        verdict = ("the more exposed products did worse in the window" if rho < 0
                   else "the more exposed products did better in the window (the measure "
                        "pointed the wrong way)")
        verdict += " (p ≤ 0.05)"
    else:
        verdict = "no relation shown (p > 0.05)"
    return f"{name}: Spearman ρ {rho:+.2f} (p {_p_text(p)}, n {n}) — {verdict}"


def _exposure(db: Database, config: Config, first: str, last: str, drawdowns: list[dict],
              crash: tuple[dt.date, dt.date] | None) -> dict[str, Any] | None:
    """The "Manager exposure" section's context, or None when no declared product has a NAV
    known on ``last`` (the section is left out); when they have NAVs but cannot be measured (an
    index close missing), the section only says why (``problem``).

    The products' exposure as known on ``last`` (``monitor.analysis.exposure.exposure_report``:
    NAVs by ``available_at``), ranked most exposed first: the note's four charts (excess
    annualised return, excess max drawdown and excess Calmar against the micro-cap correlation
    of the rank window, each with the Spearman rank correlation across the products; the
    tracking-vs-micro-cap quadrant with the flag thresholds), the ranked table, and the
    out-of-sample evidence (``crash_evidence``) for the crash window ``crash`` or, by default,
    the deepest drawdown episode of the period (:func:`crash_window`), exposure measured
    through the trading day before the window starts."""
    if not config.products:
        return None
    from monitor.analysis.exposure import ExposureError, crash_evidence, exposure_columns, exposure_report
    from signals.exposure import MIN_INTERVALS

    try:
        table = exposure_report(db, config, dt.date.fromisoformat(last))
    except ExposureError as exc:
        from storage import products

        known = products.load(db, dt.date.fromisoformat(last), [p.name for p in config.products])
        if not known:
            return None
        # NAVs are there but cannot be measured (an index close missing): the section says why
        return {"as_of": last, "n": len(known), "charts": [], "table": None,
                "problem": str(exc).splitlines()[0]}
    if not len(table):
        return None
    e = config.exposure
    w = e.rank_window_weeks
    corr, _ = exposure_columns(config)
    table = table.reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    charts = [
        ("excess annualised return vs micro-cap correlation",
         _exposure_scatter(table, corr, "excess_ann_return", "excess annualised return",
                           "Excess annualised return vs micro-cap correlation", True)),
        ("excess max drawdown vs micro-cap correlation",
         _exposure_scatter(table, corr, "excess_max_drawdown", "excess max drawdown",
                           "Excess max drawdown vs micro-cap correlation", True)),
        ("excess Calmar ratio vs micro-cap correlation",
         _exposure_scatter(table, corr, "excess_calmar", "excess Calmar ratio",
                           "Excess Calmar vs micro-cap correlation", False)),
        ("tracking correlation vs micro-cap correlation, flag thresholds drawn",
         _quadrant_chart(table, corr, e.large_microcap_corr, e.loose_tracking_corr)),
    ]
    rows = []
    for r in table.to_dict("records"):
        row: dict[str, Any] = {
            "#": r["rank"], "product": r["product"], "benchmark": r["benchmark"],
            "strategy": r.get("strategy") or "", "weight": _pct(_num(r.get("weight"))) or "–",
            "NAVs": f"{str(r['first'])[:10]} → {str(r['last'])[:10]}",
            "intervals": r.get("intervals"), "tracking corr": Cell(_corr_text(
                r.get("tracking_corr")), cls="num")}
        for win in e.windows_weeks:
            row[f"micro-cap corr {win}w"] = Cell(_corr_text(r.get(f"corr_microcap_{win}w")),
                                                 cls="num")
            row[f"micro-cap β {win}w"] = Cell(_corr_text(r.get(f"beta_microcap_{win}w")),
                                              cls="num")
            row[f"CSI 2000 corr {win}w"] = Cell(_corr_text(r.get(f"corr_csi2000_{win}w")),
                                                cls="num")
        for key, label in (("excess_ann_return", "excess ann. return"),
                           ("excess_max_drawdown", "excess max DD")):
            v = _num(r.get(key))
            row[label] = Cell("–" if v is None else _percent(v), cls="num")
        row["excess Calmar"] = Cell(_corr_text(r.get("excess_calmar")), cls="num")
        row["quadrant"] = r.get("quadrant")
        row["large exposure"] = bool(r.get("large_exposure"))
        rows.append(row)
    out: dict[str, Any] = {
        "as_of": last, "n": len(table), "rank_window": w, "charts": charts,
        "plotted": int(np.isfinite(table[corr].to_numpy(dtype=float)).sum()),
        "min_intervals": MIN_INTERVALS,
        "table": _table(rows, lambda row: "flagged" if row["large exposure"] else None),
        "large": f"{e.large_microcap_corr:.2f}", "loose": f"{e.loose_tracking_corr:.2f}",
        "flagged": int(table["large_exposure"].astype(bool).sum()),
        "evidence": None, "evidence_note": None, "problem": None}

    window = ((crash[0].isoformat(), crash[1].isoformat()) if crash is not None
              else crash_window(drawdowns, last))
    if window is None:
        out["evidence_note"] = ("No crash window: no drawdown episode in the period and none "
                                "given (regime-monitor report --crash START END).")
        return out
    start, end = (dt.date.fromisoformat(d) for d in window)
    try:  # measured through the trading day before the window (crash_evidence's default); the
        # outcome from the NAVs and closes known on the report's last day, like the rest of the page
        got = crash_evidence(db, config, None, start, end, known_by=dt.date.fromisoformat(last))
    except ExposureError as exc:
        out["evidence_note"] = (f"No evidence for the crash window {start} → {end}: "
                                f"{str(exc).splitlines()[0]}")
        return out
    ev_rows = [{"product": r["product"], "benchmark": r["benchmark"],
                f"micro-cap corr {w}w": Cell(_corr_text(r.get("corr")), cls="num"),
                f"micro-cap β {w}w": Cell(_corr_text(r.get("beta")), cls="num"),
                "excess return in the window": Cell(
                    "–" if _num(r.get("excess")) is None else _percent(r["excess"]), cls="num")}
               for r in got["products"]]
    out["evidence"] = {
        "start": got["start"], "end": got["end"], "measured_through": got["measured_through"],
        "given": crash is not None,
        "lines": [_evidence_sentence("Correlation-based exposure", got["correlation"]),
                  _evidence_sentence("Beta-based exposure", got["beta"])],
        "table": _table(ev_rows)}
    return out


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
    return None if v is None else _percent(v)


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
    """A fraction as a percentage with one decimal: 0.382 -> "38.2%"."""
    return f"{v * 100:.1f}%"


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


@dataclass(frozen=True)
class Lead:
    """When a rule warned of one drawdown episode: ``day`` (ISO) the firing credited to it,
    ``days`` the trading days from that firing to the episode's peak (positive: before the
    peak; negative: after it, during the decline), ``already`` True when the rule was already
    firing on the peak day (``day`` is then the start of that firing spell)."""

    day: str
    days: int
    already: bool


def episode_leads(events: Iterable[Mapping], drawdowns: Sequence[Mapping], rules: Sequence[str],
                  days: Sequence[str], lookback: int = LOOKBACK_DAYS) -> dict[tuple[int, str], Lead]:
    """Return the lead of each rule on each drawdown episode, keyed ``(episode position, rule)``
    (a pair without a lead is absent).

    ``events``: alert events (dicts with ``rule``, ``date``, ``event``, ``to_state``), oldest
    first; ``drawdowns``: episodes (dicts with ``peak`` or ``start``, ``trough``); ``days``: the
    trading days (ISO, ascending) covering the events and the episodes; ``lookback``: trading
    days. As the backtest credits a warning (:mod:`monitor.analysis.backtest`): a rule firing on
    the peak day is credited with the start of that firing spell, else with its first firing
    (a transition into the firing state, not a repeat) from ``lookback`` trading days before the
    peak to the trough. Days not in ``days`` are placed on the next trading day."""
    def pos(day: str) -> int:
        return bisect.bisect_left(days, day)

    by_rule: dict[str, list[Mapping]] = {}
    for e in events:
        by_rule.setdefault(e["rule"], []).append(e)
    out: dict[tuple[int, str], Lead] = {}
    for i, ep in enumerate(drawdowns):
        peak = ep.get("peak") or ep["start"]
        trough = ep.get("trough") or ep.get("end") or peak
        p, t = pos(peak), bisect.bisect_right(days, trough) - 1
        for rule in rules:
            evs = by_rule.get(rule, [])
            since: str | None = None  # the start of the firing spell holding on the peak day
            for e in evs:
                if e["date"] > peak:
                    break
                if e["to_state"] == "firing" and since is None:
                    since = e["date"]
                elif e["to_state"] != "firing":
                    since = None
            if since is not None:
                out[(i, rule)] = Lead(since, p - pos(since), True)
                continue
            for e in evs:
                if e["event"] == "firing" and p - lookback <= pos(e["date"]) <= t:
                    out[(i, rule)] = Lead(e["date"], p - pos(e["date"]), False)
                    break
    return out


def _lead_text(lead: Lead | None) -> str:
    if lead is None:
        return ""
    if lead.already and lead.days > 0:
        return f"already firing ({lead.days} d)"
    if lead.days > 0:
        return f"{lead.days} d before"
    return "on the peak" if lead.days == 0 else f"{-lead.days} d after"


def _lead_matrix(drawdowns: list[dict], events: list[dict], rules: Sequence[RuleConfig],
                 days: Sequence[str]) -> Table | None:
    """The per-episode matrix: one row per drawdown episode, one column per rule (warnings
    first, then "any warning", the state alerts and the info rules), each cell the lead of
    :func:`episode_leads` ("12 d before" the peak, "3 d after"), blank when the rule did not
    fire for it."""
    if not drawdowns:
        return None
    roles = {r.name: rule_role(r) for r in rules}
    order = {"headline": 0, "warning": 0, "state": 2, "info": 3}
    warnings_ = [r.name for r in rules if roles[r.name] in ("headline", "warning")]
    names = sorted((r.name for r in rules), key=lambda n: order.get(roles[n], 4))
    leads = episode_leads(events, drawdowns, names, days)
    columns = [n for n in names if roles[n] in ("headline", "warning")]
    columns += [ANY_WARNING] if warnings_ else []
    columns += [n for n in names if roles[n] not in ("headline", "warning")]
    # a zero-width space after each "_" lets a long rule name wrap in its narrow column
    headers = ["drawdown (peak → trough)", "depth"] + [
        f"{c.replace('_', '_' + chr(0x200B))} "
        f"({'warning' if c == ANY_WARNING else _ROLE_LABEL.get(roles[c], roles[c])})"
        for c in columns]
    rows = []
    for i, ep in enumerate(drawdowns):
        cells = [Cell(f"{ep['peak'] or ep['start']} → {ep['trough'] or '…'}", cls="nowrap"),
                 Cell(_percent(ep["depth"]) if ep["depth"] is not None else "–", cls="num")]
        for c in columns:
            if c == ANY_WARNING:
                found = [leads[(i, n)] for n in warnings_ if (i, n) in leads]
                lead = max(found, key=lambda x: x.days) if found else None
            else:
                lead = leads.get((i, c))
            cls = None if lead is None else "lead-early" if lead.days >= CAUGHT_LEAD_DAYS else "lead-late"
            cells.append(Cell(_lead_text(lead), cls=cls))
        rows.append(Row(cells))
    return Table(headers, rows)


_ROLE_LABEL = {"headline": "headline warning", "warning": "warning", "state": "state alert",
               "info": "info"}


def _timeline(events: list[dict], recorded: bool) -> Table | None:
    """The alert timeline: firings and resolutions only (no pending, repeat or clearing rows),
    oldest first; the values that caused them and whether they were notified when recorded."""
    shown = [e for e in events if e["event"] in ("firing", "resolved")]
    if not shown:
        return None
    rows = []
    for e in shown:
        row: dict[str, Any] = {"date": e["date"], "rule": e["rule"],
                               "severity": Cell(e["severity"], kind="sev"),
                               "event": "fired" if e["event"] == "firing" else "resolved"}
        if recorded:
            row["signal values"] = _trigger_text(e.get("signal_values"))
            row["notified"] = ("silenced" if e.get("silenced_by") else
                               "yes" if e.get("notified") else "no")
        rows.append(row)
    return _table(rows, row_class=lambda r: f"ev-{'firing' if r['event'] == 'fired' else 'resolved'}")


def _computed_drawdowns(db: Database, config: Config, last: str) -> list[dict]:
    """The drawdown episodes of the micro-cap closes up to ``last`` (from the first close), as
    the daily cycle stores them (``signals.episodes.drawdown_episodes``), for a database no
    cycle has run on."""
    lo, _ = observation_store.date_range(db, CLOSE)
    if lo is None:
        return []
    rows = observation_store.values_between(db, CLOSE, lo, last)
    close = pd.Series([r[1] for r in rows], index=_dates(r[0] for r in rows), dtype=float)
    return [{"kind": "drawdown", "start": e.peak.isoformat(), "peak": e.peak.isoformat(),
             "trough": e.trough.isoformat(),
             "end": e.recovery.isoformat() if e.recovery else None, "depth": e.depth,
             "detail": e.to_dict()}
            for e in drawdown_episodes(close, config.episodes.drawdown_min_depth)]


def build_report(db: Database, config: Config, *, now: dt.datetime,
                 backtest_rows: list[dict] | None = None, start: dt.date | None = None,
                 end: dt.date | None = None, title: str = DEFAULT_TITLE,
                 evidence: Evidence | None = None,
                 crash: tuple[dt.date, dt.date] | None = None) -> str:
    """Return the report as one self-contained HTML page; ``now`` (an aware datetime, shown in
    UTC to the minute) is when it was generated.

    The period is :func:`report_period` (``start``..``end``, by default the days with stored
    signal values, or with micro-cap closes on a database no cycle has run on); with
    ``evidence`` (:func:`monitor.analysis.evidence.gather` over that period, as
    :func:`compose` passes it) it is the evidence's first to last trading day, which is also the
    backtest's period, said in the header and above the backtest table.

    When no cycle has stored signal values in the period, the signals are taken from
    ``evidence`` (computed point-in-time from the observations, as replay computes them) and
    the alert events simulated over them (:func:`monitor.analysis.backtest.simulate`), and the
    page says so; without ``evidence`` it says what is missing. Drawdown episodes not stored by
    a cycle are computed from the micro-cap closes. A chart is drawn only when it has something
    to show.

    The page opens with the micro-cap index over the period, the drawdown episodes shaded and
    labelled, the firings of the warning rules marked (:func:`warning_marks`), and "how far to
    trust the warnings": one sentence (:func:`trust_sentence`) per headline rule and for the
    "any warning" row of ``backtest_rows``. Then every signal read by a configured rule is
    plotted over the period against the thresholds of that rule's comparisons, with the days the
    rule's alert was firing shaded (one chart per rule; rules share charts when there are more
    than ``MAX_CHARTS - EXPOSURE_CHARTS - 2``); the per-episode matrix of which rule fired how
    long before which drawdown (:func:`episode_leads`); the timeline of firings and resolutions; the episodes;
    and ``backtest_rows`` (flat dicts, as :func:`monitor.analysis.backtest.to_records` gives;
    any keys, missing values shown as "–") as a table grouped by kind (:func:`backtest_kind`).
    When declared products (``[[products]]``) have NAVs known on the last day, a "Manager
    exposure" section comes before the backtest (:func:`_exposure`): the note's four charts, the
    products ranked by micro-cap exposure, and the rank correlation of the exposure measured
    before the crash window ``crash`` (default: the period's deepest drawdown, peak to trough)
    with the excess return in it.
    """
    first, last = report_period(db, start, end)
    if evidence is not None and len(evidence.values.index):
        first, last = evidence.start.isoformat(), evidence.end.isoformat()
    page: dict[str, Any] = {
        "title": title, "source": db_store.file_of(db),
        "generated": now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "period": f"{first} to {last}" if first and last else "no data",
        "close_series": CLOSE, "close_name": labelled(CLOSE), "headline_signal": HEADLINE_SIGNAL,
        "any_warning": ANY_WARNING, "first": first, "last": last}
    template = _environment().get_template("report.html")

    if first is None or last is None or first > last:
        return template.render(page, empty=True, days=0, counts=[], nav=[], missing=[],
                               sources=None, backtest_span=None)

    rules = list(config.rules)
    names = sorted({n for r in rules for n in r.names})
    frame = _signal_frame(db, names, first, last)
    stored_signals = bool(frame.notna().to_numpy().any())
    computed = False
    if not stored_signals and evidence is not None:
        frame = _evidence_frame(evidence, names, first, last)
        computed = True
    stored_events = alert_store.events_through(db, last)
    recorded = stored_signals or bool(stored_events)
    if recorded:
        all_events = stored_events
    elif computed and evidence is not None:
        all_events = backtest.simulate(config, evidence.values)
    else:
        all_events = []
    simulated = not recorded and computed
    by_rule: dict[str, list[dict]] = {}
    for e in all_events:
        by_rule.setdefault(e["rule"], []).append(e)
    events = [e for e in all_events if first <= e["date"] <= last]

    close_rows = observation_store.values_between(db, CLOSE, first, last)
    close = pd.Series([r[1] for r in close_rows], index=_dates(r[0] for r in close_rows),
                      dtype=float).dropna()
    days = [d.strftime("%Y-%m-%d") for d in (frame.index if len(frame.index) else close.index)]

    groups = []
    index = pd.DatetimeIndex(pd.to_datetime(days))
    for r in rules:
        spans = firing_spans(by_rule.get(r.name, []), first, last)
        firing_days = 0
        for a, b in spans:
            upto = index < pd.Timestamp(b) if b is not None else index <= pd.Timestamp(last)
            firing_days += int(((index >= pd.Timestamp(a)) & upto).sum())
        firings = sum(1 for e in events if e["rule"] == r.name and e["event"] == "firing")
        groups.append(RulePanels(r, thresholds(r), spans, firings, firing_days))

    all_eps = episode_store.list_episodes(db)
    stored_drawdowns = [e for e in all_eps if e["kind"] == "drawdown"]
    episodes_computed = not stored_drawdowns
    if episodes_computed:
        stored_drawdowns = _computed_drawdowns(db, config, last)
    drawdowns = [e for e in stored_drawdowns if _overlaps(e, first, last)]
    rotations = [e for e in all_eps if e["kind"] == "rotation" and _overlaps(e, first, last)]

    missing = _missing(stored_signals, computed, recorded, episodes_computed, evidence,
                       bool(len(close)), first, last)
    sources = {"signals": "stored by the daily cycle" if stored_signals else
               "computed point-in-time from the observations (no cycle has run)" if computed
               else "none",
               "alerts": "recorded by the daily cycle" if recorded else
               "simulated over the computed signals (no cycle has run)" if simulated else "none",
               "episodes": "computed from the micro-cap closes" if episodes_computed
               else "stored by the daily cycle"}

    counts = [("trading days", len(days)), ("rules", len(rules)),
              ("signals with values", int(frame.notna().any().sum()) if len(frame.columns) else 0),
              ("firings", sum(g.firings for g in groups)),
              ("resolutions", sum(1 for e in events if e["event"] == "resolved")),
              ("drawdown episodes", len(drawdowns)), ("rotation episodes", len(rotations))]
    nav = [("overview", "Overview"), ("rules", "Rules"), ("signals", "Signals"),
           ("matrix", "Warnings per drawdown"), ("alerts", "Alert timeline"),
           ("episodes", "Episodes"), ("backtest", "Backtest")]
    images = 0

    # overview: the index, its drawdowns and the warnings; how far to trust the warnings
    marks = warning_marks(rules, all_events, first, last)
    overview = _overview(close, drawdowns, marks, config, first, last)
    images += 1 if overview["chart"] else 0

    rules_table = _table([
        {"rule": g.rule.name, "severity": Cell(g.rule.severity, kind="sev"),
         "fires when": Cell(g.rule.when, kind="code"),
         "for (trading days)": g.rule.for_days,
         "clears when": Cell(g.rule.clear_when, kind="code") if g.rule.clear_when else "not (fires when)",
         "clear after (trading days)": g.rule.clear_days, "firings": g.firings,
         "days firing": g.days_firing,
         "chart": Cell("signals", kind="link", href=f"rule-{g.rule.name}")}
        for g in groups])

    # signal charts: only the signals with values in the period
    charts = []
    with_values = {n for n in frame.columns if frame[n].notna().any()}
    shown = []
    for g in groups:
        keep = {s: ts for s, ts in g.signals.items() if s in with_values}
        lacking = [s for s in g.signals if s not in with_values]
        shown.append((RulePanels(g.rule, keep, g.spans, g.firings, g.days_firing), lacking))
    charted = [(g, lacking) for g, lacking in shown if g.signals]
    uncharted = [{"name": g.rule.name, "severity": g.rule.severity, "explain": g.rule.explain,
                  "when": g.rule.when, "lacking": ", ".join(lacking)}
                 for g, lacking in shown if not g.signals]
    for chunk in _chunks(charted, MAX_CHARTS - EXPOSURE_CHARTS - images - 1):
        alt = (f"{', '.join(g.rule.name for g, _ in chunk)}: "
               f"{', '.join(s for g, _ in chunk for s in g.signals)} from {first} to {last} "
               "against the rule thresholds, firing days shaded")
        charts.append({
            "rules": [{"name": g.rule.name, "severity": g.rule.severity, "explain": g.rule.explain,
                       "when": g.rule.when, "for_days": g.rule.for_days, "firings": g.firings,
                       "days_firing": g.days_firing, "lacking": ", ".join(lacking)}
                      for g, lacking in chunk],
            "png": _rule_chart([g for g, _ in chunk], frame, first, last), "alt": alt})
        images += 1

    # which rule fired how long before which drawdown; the timeline of firings and resolutions
    lead_days = _lead_days(config, first, last, drawdowns)
    matrix = _lead_matrix(drawdowns, all_events, rules, lead_days) if (recorded or simulated) else None
    timeline = _timeline(events, recorded)
    alerts = {"firings": sum(1 for e in events if e["event"] == "firing"),
              "resolutions": sum(1 for e in events if e["event"] == "resolved"),
              "timeline": timeline, "source": sources["alerts"], "has_events": recorded or simulated}

    # episodes
    episodes: dict[str, Any] = {
        "chart": None, "alt": None, "rotation_rule": config.episodes.rotation_rule,
        "min_depth": f"{config.episodes.drawdown_min_depth * 100:g}%",
        "drawdowns": None, "rotations": None, "computed": episodes_computed,
        "matrix": matrix, "lookback": LOOKBACK_DAYS, "min_lead": CAUGHT_LEAD_DAYS}
    if len(close) >= 2 and (drawdowns or rotations):
        episodes["alt"] = (f"{CLOSE} from {first} to {last} with {len(drawdowns)} drawdown "
                           f"episode(s) and {len(rotations)} rotation episode(s) shaded")
        episodes["chart"] = _episode_chart(close, drawdowns, rotations, first, last)
        images += 1
    if drawdowns:
        rows = []
        for e in drawdowns:
            detail = _detail(e)
            rows.append({"peak": e["peak"], "threshold reached": detail.get("threshold_day"),
                         "trough": e["trough"], "recovery": e["end"] or "not yet",
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

    exposure = _exposure(db, config, first, last, drawdowns, crash)
    if exposure is not None:
        images += len(exposure["charts"])
        nav.insert(nav.index(("backtest", "Backtest")), ("exposure", "Manager exposure"))

    backtest_span = None
    if evidence is not None and backtest_rows is not None:
        backtest_span = (evidence.start.isoformat(), evidence.end.isoformat(), len(evidence.values.index))
    assert images <= MAX_CHARTS
    return template.render(
        page, empty=False, days=len(days), counts=counts, nav=nav, overview=overview,
        missing=missing, sources=sources,
        trust=_trust(backtest_rows, rules), rules_table=rules_table, charts=charts,
        uncharted=uncharted, alerts=alerts, episodes=episodes, exposure=exposure,
        backtest_given=backtest_rows is not None, backtest_span=backtest_span,
        backtest=_backtest_table(backtest_rows, rules) if backtest_rows else None)


def compose(db: Database, config: Config, *, now: dt.datetime, start: dt.date | None = None,
            end: dt.date | None = None, backtest_rows: bool = True,
            title: str = DEFAULT_TITLE, crash: tuple[dt.date, dt.date] | None = None) -> str:
    """Return the report of ``db`` over :func:`report_period` (what ``regime-monitor report``
    writes). The signals are computed point-in-time over that period
    (:func:`monitor.analysis.evidence.gather`) when the backtest is wanted (``backtest_rows``)
    or when no cycle has stored them (a freshly imported database); the backtest is scored over
    exactly that period. Without micro-cap closes nothing is computed and the page says so.
    ``crash`` (``--crash START END``) is the manager-exposure evidence's window (default: the
    period's deepest drawdown). Raises ``monitor.cycle.CycleError`` when ``start`` is after
    ``end`` or the crash window's start is not before its end."""
    from monitor.analysis.evidence import gather
    from monitor.cycle import CycleError

    if start is not None and end is not None and start > end:
        raise CycleError(f"no days from {start} to {end}: the start is after the end")
    if crash is not None and crash[0] >= crash[1]:
        raise CycleError(f"--crash {crash[0]} {crash[1]}: the crash window's start is not "
                         "before its end")
    first, last = report_period(db, start, end)
    evidence = None
    rows = None
    if first is not None and last is not None and first <= last:
        lo, hi = signal_store.date_range(db)
        stored = lo is not None and lo <= last and hi is not None and hi >= first
        if backtest_rows or not stored:
            try:
                evidence = gather(db, config, dt.date.fromisoformat(first),
                                  dt.date.fromisoformat(last))
            except CycleError:  # no micro-cap closes, or none in the period: said on the page
                evidence = None
        if backtest_rows and evidence is not None:
            rows = backtest.to_records(backtest.score(config, evidence.values, evidence.episodes,
                                                      evidence.close, start=evidence.start,
                                                      end=evidence.end))
    return build_report(db, config, now=now, backtest_rows=rows, start=start, end=end,
                        title=title, evidence=evidence, crash=crash)


def _evidence_frame(evidence: Evidence, names: Sequence[str], first: str, last: str) -> pd.DataFrame:
    """The computed signal values of ``names`` (a missing column all NaN) over first..last."""
    values = evidence.values
    index = pd.DatetimeIndex(pd.to_datetime(values.index), name="date")
    frame = pd.DataFrame({n: (values[n].to_numpy(dtype=float) if n in values else np.nan)
                          for n in names}, index=index, columns=list(names), dtype=float)
    return frame[(frame.index >= pd.Timestamp(first)) & (frame.index <= pd.Timestamp(last))]


def _lead_days(config: Config, first: str, last: str, drawdowns: list[dict]) -> list[str]:
    """The trading days (ISO) the leads are counted on: from well before the first peak (a
    firing spell may start long before it) to the end of the period."""
    calendar = TradingCalendar(config.calendar.extra_closed)
    peaks = [e["peak"] or e["start"] for e in drawdowns]
    lo = min([first, *peaks])
    begin = dt.date.fromisoformat(lo) - dt.timedelta(days=3 * 366)
    return [d.isoformat() for d in calendar.days(begin, dt.date.fromisoformat(last))]


def _missing(stored: bool, computed: bool, recorded: bool, episodes_computed: bool,
             evidence: Evidence | None, has_close: bool, first: str,
             last: str) -> list[list[tuple[str, str]]]:
    """Plain sentences on what the page lacks and why (empty when nothing is missing), each a
    list of ``(kind, text)`` parts: kind "text", or "code" for a command to run."""
    out: list[list[tuple[str, str]]] = []
    if not has_close:
        out.append([("text", f"No micro-cap closes ({CLOSE}) from {first} to {last}: import them "),
                     ("code", "regime-monitor import-csv"), ("text", " or fetch them "),
                     ("code", "regime-monitor backfill"),
                     ("text", "; there is no index chart and no drawdown episode.")])
    if not stored:
        run = [("text", " Run the daily cycle over the history to record them: "),
               ("code", f"regime-monitor replay --start {first} --end {last}"),
               ("text", " (then this report on its scratch database), or "),
               ("code", "regime-monitor once"), ("text", " and the daemon for the days to come.")]
        if computed:
            out.append([("text", "No cycle has run on this database yet (no stored signal values "
                         "or alert events): the signals below are computed point-in-time from "
                         "the observations, the alerts are simulated over them (nothing was "
                         "notified), and the drawdown episodes are computed from the micro-cap "
                         "closes.")] + run)
        else:
            out.append([("text", "No cycle has run on this database yet and the signals were not "
                         "computed here: there are no signal charts, alerts or warnings per "
                         "drawdown.")] + run)
    elif episodes_computed:
        out.append([("text", "No drawdown episode is stored: they are computed here from the "
                     "micro-cap closes.")])
    return out


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
