"""The digest chart: the micro-cap index over the last 250 trading days, its drawdown, and each
triggering signal against its threshold, as a PNG.

``load`` reads what the chart needs (point-in-time: nothing after the digest's ``as_of``);
``render`` is pure (data in, PNG bytes out) and uses matplotlib's Agg canvas directly, without
pyplot's global state, so it is safe in the daemon's worker threads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pandas as pd
from sqlite_utils import Database

import signals
from monitor.alerting.expr import OPERATORS
from monitor.delivery import digest
from signals.series import MICROCAP_CLOSE
from storage import observations, signal_values

CLOSE = MICROCAP_CLOSE
DRAWDOWN = "microcap.drawdown"
DAYS = 250
MAX_SIGNAL_PANELS = 6


@dataclass(frozen=True)
class Panel:
    """One triggering comparison: ``signal op threshold`` (a number or another signal)."""

    signal: str
    op: str
    threshold: float | None
    threshold_signal: str | None
    rules: tuple[str, ...]


@dataclass
class ChartData:
    as_of: str
    close: pd.Series
    drawdown: pd.Series
    panels: list[Panel]
    series: dict[str, pd.Series] = field(default_factory=dict)
    omitted: int = 0


def panels_for(payload: dict, limit: int = MAX_SIGNAL_PANELS) -> tuple[list[Panel], int]:
    """Return the comparisons to chart (those of the firing alerts; of every alert when none is
    firing), one panel per distinct comparison, at most ``limit``, and how many were left out."""
    items = [i for i in payload["items"] if i["kind"] in ("firing", "repeat")] or payload["items"]
    found: dict[tuple, list[str]] = {}
    for item in items:
        for c in item["comparisons"]:
            key = (c["signal"], c["op"], c["threshold"] if not c.get("threshold_signal") else None,
                   c.get("threshold_signal"))
            found.setdefault(key, []).append(item["rule"])
    panels = [Panel(s, op, thr, ts, tuple(dict.fromkeys(rules)))
              for (s, op, thr, ts), rules in found.items()]
    # a drawdown threshold is drawn on the drawdown panel itself: it does not count to the limit
    own = [p for p in panels if p.signal == DRAWDOWN and not p.threshold_signal]
    rest = [p for p in panels if p not in own]
    return own + rest[:limit], max(0, len(rest) - limit)


def load(db: Database, payload: dict, days: int = DAYS) -> ChartData | None:
    """Read the last ``days`` micro-cap closes known on the digest's day, the drawdown and the
    triggering signals over the same days; None when there is no micro-cap history."""
    as_of = payload["as_of"]
    rows = observations.last_known(db, CLOSE, as_of, days)
    if len(rows) < 2:
        return None
    index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows]))
    close = pd.Series([r[1] for r in rows], index=index, dtype=float)
    first = index[0].date()
    until = pd.Timestamp(as_of).date()

    def stored(name: str) -> pd.Series:
        hist = signal_values.history(db, name, since=first, until=until)
        s = pd.Series({pd.Timestamp(r["date"]): r["value"] for r in hist}, dtype=float)
        return s.reindex(index)

    drawdown = stored(DRAWDOWN)
    if drawdown.isna().all():  # no stored signal: the decline from the window's own peak
        drawdown = close / close.cummax() - 1.0
    panels, omitted = panels_for(payload)
    names = {p.signal for p in panels} | {p.threshold_signal for p in panels if p.threshold_signal}
    return ChartData(as_of, close, drawdown, panels, {n: stored(n) for n in sorted(names)}, omitted)


def _is_fraction(signal: str) -> bool:
    spec = signals.REGISTRY.get(signal)
    return bool(spec and spec.unit.startswith("fraction"))


def _threshold(ax, panel: Panel, values: pd.Series, other: pd.Series | None) -> None:
    """Draw ``panel``'s threshold on ``ax`` and shade the days on which the comparison holds."""
    if panel.threshold_signal:
        limit = (other.reindex(values.index) if other is not None
                 else pd.Series(float("nan"), index=values.index))
        ax.plot(limit.index, limit.to_numpy(dtype=float), color="#c0392b", lw=1, ls="--",
                label=f"threshold: {panel.op} {panel.threshold_signal}")
    else:
        ax.axhline(panel.threshold, color="#c0392b", lw=1, ls="--",
                   label=f"threshold {panel.op} {digest.format_value(panel.signal, panel.threshold)}")
        limit = pd.Series(panel.threshold, index=values.index, dtype=float)
    holds = OPERATORS[panel.op](values, limit) & values.notna() & limit.notna()
    lo, hi = ax.get_ylim()
    ax.fill_between(values.index, lo, hi, where=holds.to_numpy(dtype=bool), color="#e67e22",
                    alpha=0.15, lw=0, label="condition holds")
    ax.set_ylim(lo, hi)


def render(data: ChartData) -> bytes:
    """Return the chart as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    n = 2 + sum(1 for p in data.panels if p.signal != DRAWDOWN or p.threshold_signal)
    height = 1.9 * n + 0.9
    fig = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins (in inches): constrained layout would double the rendering time
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.45 / height, bottom=0.45 / height,
                        hspace=0.45)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    span = f"{data.close.index[0].date()} to {data.as_of}"
    fig.suptitle(f"regime-monitor {data.as_of}: micro-cap index, drawdown and triggering signals "
                 f"({len(data.close)} trading days, {span})", fontsize=10)

    ax = axes[0]
    ax.plot(data.close.index, data.close.to_numpy(), color="#1f4e79", lw=1.3)
    ax.set_ylabel("micro-cap\nindex", fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    dd = data.drawdown.to_numpy(dtype=float)
    ax.fill_between(data.drawdown.index, dd, 0.0, color="#c0392b", alpha=0.3, lw=0)
    ax.plot(data.drawdown.index, dd, color="#c0392b", lw=1, label=DRAWDOWN)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    ax.set_ylabel("drawdown\nfrom peak", fontsize=8)
    ax.grid(alpha=0.3)
    own = [p for p in data.panels if p.signal == DRAWDOWN and not p.threshold_signal]
    for panel in own:
        _threshold(ax, panel, data.drawdown, None)
    if own:
        ax.set_title(f"{DRAWDOWN}  ({', '.join(r for p in own for r in p.rules)})", fontsize=8,
                     loc="left")
        ax.legend(fontsize=7, loc="lower left", frameon=False)

    for ax, panel in zip(axes[2:], [p for p in data.panels if p not in own], strict=True):
        values = data.series.get(panel.signal, pd.Series(dtype=float))
        ax.plot(values.index, values.to_numpy(dtype=float), color="#2c3e50", lw=1.1,
                label=panel.signal)
        _threshold(ax, panel, values, data.series.get(panel.threshold_signal or ""))
        if _is_fraction(panel.signal):
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
        ax.set_title(f"{panel.signal}  ({', '.join(panel.rules)})", fontsize=8, loc="left")
        ax.legend(fontsize=7, loc="best", frameon=False)
        ax.grid(alpha=0.3)
    if data.omitted:
        axes[-1].set_xlabel(f"(+{data.omitted} more triggering signal(s) not shown)", fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def alt_text(data: ChartData) -> str:
    """Return a one-sentence description of the chart (for screen readers)."""
    last = data.drawdown.dropna()
    dd = f"{last.iloc[-1] * 100:.1f}%" if len(last) else "n/a"
    sigs = ", ".join(p.signal for p in data.panels) or "none"
    return (f"Micro-cap index over the last {len(data.close)} trading days to {data.as_of} "
            f"(drawdown {dd}), with triggering signals against thresholds: {sigs}.")[:1000]


def chart_png(db: Database, payload: dict, days: int = DAYS) -> tuple[bytes, str] | None:
    """Return ``(png, alt_text)`` for a digest, or None when there is nothing to plot."""
    data = load(db, payload, days)
    if data is None:
        return None
    return render(data), alt_text(data)
