"""``regime-monitor demo``: the built-in scenario, run day by day exactly as the daemon would."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from monitor.config import Config, SourceConfig
from monitor.delivery.console import ConsoleNotifier
from storage import alerts


def _remove(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def timeline(events: list[dict]) -> list[str]:
    """Return the alert timeline: one line per alert episode (pending -> firing -> resolved),
    in date order, with the number of repeat reminders sent while it was firing."""
    open_: dict[str, dict] = {}
    lines: list[tuple[str, str]] = []
    for e in events:
        rule, kind, day = e["rule"], e["event"], e["date"]
        if kind in ("no_data", "data_back"):
            continue
        ep = open_.setdefault(rule, {"steps": [], "repeats": 0, "start": day})
        if kind == "repeat":
            ep["repeats"] += 1
            continue
        ep["steps"].append(f"{kind} {day}")
        if kind in ("resolved", "cancelled"):
            lines.append((ep["start"], _episode_line(rule, open_.pop(rule))))
    for rule, ep in open_.items():
        if ep["steps"]:
            lines.append((ep["start"], _episode_line(rule, ep) + " (still active)"))
    return [text for _, text in sorted(lines)]


def _episode_line(rule: str, ep: dict) -> str:
    reminders = f" [{ep['repeats']} reminder(s)]" if ep["repeats"] else ""
    return f"{rule:<26} " + " -> ".join(ep["steps"]) + reminders


def run_demo(config: Config, db_path: Path, show_digests: bool = True,
             end: dt.date | None = None) -> int:
    """Build a fresh database at ``db_path`` from the demo scenario and run every trading day."""
    from monitor.daemon import Service
    from monitor.sources import demo

    config = config.model_copy(update={"source": SourceConfig(kind="demo",
                                                              demo_seed=config.source.demo_seed)})
    _remove(db_path)
    out = sys.stdout
    notifier = ConsoleNotifier(out) if show_digests else _Silent()
    service = Service(config, db_path, notifier=notifier)
    days = service.calendar.days(demo.DEMO_START, min(end or demo.DEMO_END, demo.DEMO_END))
    out.write(f"regime-monitor demo: {len(days)} XSHG trading days {days[0]} .. {days[-1]}, "
              f"{len(config.rules)} rules, database {db_path}\n")
    sent = 0
    try:
        for day in days:
            service.run_day(day)
            sent += service.deliver()
        events = alerts.events(service.db)
    finally:
        service.close()
    fired = [e for e in events if e["event"] == "firing"]
    resolved = [e for e in events if e["event"] == "resolved"]
    out.write("\nScripted episodes of the scenario:\n")
    for ep in (e for e in demo.EPISODES if e["start"] <= days[-1]):
        out.write(f"  {ep['start']} .. {ep['end']}  {ep['kind']}: {ep['description']}\n")
    out.write("\nAlert timeline (pending -> firing -> resolved):\n")
    for line in timeline(events):
        out.write(f"  {line}\n")
    out.write(f"\n{len(fired)} alerts fired, {len(resolved)} resolved, {sent} digest message(s) "
              f"sent to {notifier.destination}. History: {db_path} "
              f"(try: regime-monitor --db {db_path} alerts --all)\n")
    return 0


class _Silent:
    destination = "nowhere (--quiet-digests)"

    def send(self, payload: dict, dedup_key: str) -> None:
        return None


