"""Subprocess entry point of tests/test_crash.py: imports the service once, then forks one child
per "life" (a daily-cycle catch-up or an outbox delivery run) that the test SIGKILLs at random.

Forking from an already-imported interpreter keeps a life short (no 1-2 s of imports per
restart), so the kills land inside cycles and deliveries rather than inside ``import pandas``.
Each child is a real process on its own SQLite connection (nothing is opened before the fork).

Protocol, one line per message:
- test -> worker (stdin): a JSON command, ``{"op": "cycle" | "deliver", ...}``, later ``reap``;
- child -> test (stdout): markers ``M <pid> <monotonic time> <event> [<arg>]``, each a single
  ``os.write`` (atomic on a pipe), written just before or after the step they name;
- worker -> test (stdout): ``Z dead <pid>`` once the child has ended. The child is not reaped
  until the test answers ``reap``, so its pid cannot be reused and the test may SIGKILL it at
  any time before that; then ``Z status <pid> <exit code>`` (negative: killed by that signal).

Markers of a cycle life: ``open`` (database opened), ``S <day>`` (cycle starts), ``B`` (BEGIN of
the cycle's transaction), ``c`` (COMMIT about to run), ``C`` (COMMIT returned), ``D <day>``
(cycle returned), ``end``. Of a delivery life: ``open``, ``K <key>`` (row claimed), ``P <key>``
(send starts), ``A <key>`` (send returned: Slack accepted, chart uploaded), ``m <key>``
(mark_sent starts), ``M <key>`` (mark_sent committed), ``end``.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # no BLAS thread pools in a process that forks

import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import sqlite_utils  # noqa: E402

import monitor.delivery.chart  # noqa: E402,F401  (imported before the fork, not in each life)
import monitor.delivery.slack  # noqa: E402,F401
from monitor.config import load_config  # noqa: E402
from monitor.daemon import Service  # noqa: E402
from monitor.delivery import make_notifier  # noqa: E402
from monitor.delivery.deliver import RetryPolicy, deliver_due  # noqa: E402
from monitor.sources import make_source  # noqa: E402
from storage import outbox  # noqa: E402
from storage.db import open_db  # noqa: E402

MARKER_FD = 1


class Silent:
    """A notifier that sends nothing (cycle lives never deliver)."""

    destination = "silent"

    def send(self, payload, dedup_key, **kwargs):
        return None


def mark(event: str, arg: str = "") -> None:
    line = f"M {os.getpid()} {time.monotonic():.6f} {event} {arg}".rstrip() + "\n"
    os.write(MARKER_FD, line.encode())


def warm_up() -> None:
    """Load fonts and the PNG writer once, so that a chart in a child renders at full speed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1, 2], [1, 3, 2])
    ax.set_title("warm-up")
    fig.savefig(io.BytesIO(), format="png")


_SOURCES: dict[tuple[str, int], object] = {}


def demo_source(config):
    """The demo source with its scenario generated once, before any fork."""
    key = (config.source.kind, config.source.demo_seed)
    if key not in _SOURCES:
        source = make_source(config)
        if hasattr(source, "frame"):
            source.frame()
        _SOURCES[key] = source
    return _SOURCES[key]


def install_transaction_markers() -> None:
    """Mark the outer transactions of ``db.atomic()`` and the cycle's ``immediate(db)`` (BEGIN
    and after COMMIT)."""
    import monitor.cycle

    original = sqlite_utils.Database.atomic
    original_immediate = monitor.cycle.immediate

    @contextlib.contextmanager
    def atomic(self):
        outer = not self.conn.in_transaction
        with original(self) as db:
            yield db
        if outer:
            mark("C")

    @contextlib.contextmanager
    def immediate(db):
        with original_immediate(db) as same:
            yield same
        mark("C")

    sqlite_utils.Database.atomic = atomic
    monitor.cycle.immediate = immediate


def trace(statement: str) -> None:
    if statement in ("BEGIN", "BEGIN IMMEDIATE"):
        mark("B")
    elif statement == "COMMIT":
        mark("c")


def life_cycle(cmd: dict) -> None:
    """Catch up the trading days after the last successful cycle, up to ``cmd["until"]``, as the
    daemon does at start-up."""
    config = load_config(cmd["config"])
    tz = ZoneInfo(config.schedule.timezone)
    clock_at = dt.datetime.combine(dt.date.fromisoformat(cmd["until"]), dt.time(21, 0), tzinfo=tz)
    service = Service(config, cmd["db"], source=demo_source(config), notifier=Silent(),
                      clock=lambda: clock_at)
    service.db.conn.set_trace_callback(trace)  # opens it (migrations, if any, unmarked)
    install_transaction_markers()
    mark("open")
    run_day = service.run_day

    def marked_run_day(day=None):
        mark("S", day.isoformat())
        result = run_day(day)
        mark("D", day.isoformat())
        return result

    service.run_day = marked_run_day
    service.catch_up()
    mark("end")


def life_deliver(cmd: dict) -> None:
    """Deliver the due outbox rows through the configured Slack destination at ``cmd["now"]``."""
    config = load_config(cmd["config"])
    notifier = make_notifier(config)
    db = open_db(cmd["db"])
    claim, mark_sent, send = outbox.claim, outbox.mark_sent, notifier.send
    keys: dict[int, str] = {}

    def marked_claim(db_, row_id, *args):
        ok = claim(db_, row_id, *args)
        if ok:
            keys[row_id] = db_.execute("SELECT dedup_key FROM outbox WHERE id = ?",
                                       [row_id]).fetchone()[0]
            mark("K", keys[row_id])
        return ok

    def marked_mark_sent(db_, row_id, *args):
        mark("m", keys.get(row_id, "?"))
        mark_sent(db_, row_id, *args)
        mark("M", keys.get(row_id, "?"))

    def marked_send(payload, dedup_key, **kwargs):
        mark("P", dedup_key)
        answer = send(payload, dedup_key, **kwargs)
        mark("A", dedup_key)
        return answer

    outbox.claim, outbox.mark_sent, notifier.send = marked_claim, marked_mark_sent, marked_send
    mark("open")
    deliver_due(db, notifier, now=dt.datetime.fromisoformat(cmd["now"]),
                policy=RetryPolicy(cmd.get("retry_base", 30), 3600))
    mark("end")


LIVES = {"cycle": life_cycle, "deliver": life_deliver}


def child(cmd: dict) -> None:
    global MARKER_FD
    MARKER_FD = os.dup(1)
    os.dup2(2, 1)  # whatever the service prints goes to stderr, never into the protocol
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    mark("hello")
    LIVES[cmd["op"]](cmd)


def main() -> None:
    warm_up()
    config = os.environ.get("CRASH_WORKER_CONFIG")
    if config:
        demo_source(load_config(config))
    os.write(1, b"Z ready\n")
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        cmd = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(cmd)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
        os.write(1, f"Z dead {pid}\n".encode())
        answer = stdin.readline().strip()
        _, status = os.waitpid(pid, 0)
        if answer != b"reap":
            return
        os.write(1, f"Z status {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


if __name__ == "__main__":
    main()
