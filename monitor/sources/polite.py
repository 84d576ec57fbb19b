"""Polite calls to a rate-limited upstream: the I/O edge of the AKShare adapter.

``PoliteCaller`` makes one call at a time with a pause between calls (``delay_seconds``), runs
each in a daemon worker thread abandoned after a deadline (``_with_deadline``: a hung socket
never blocks the interpreter's exit the way a ``ThreadPoolExecutor`` would), retries a failed
call (``retries`` times, waiting ``backoff_seconds`` and then twice as long after each further
failure), and opens a circuit after ``max_consecutive_failures`` failed calls in a row: the
following calls raise ``Skipped`` without being attempted. After one failed call the next ones
get a single attempt until one succeeds.

The error types of a source (``SourceError`` and its kinds) live here too, so that the modules
that handle them (``monitor.sources.holdings``) need not import the adapter.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("regime_monitor.akshare")

# A run of failures older than this (seconds since the last call) says nothing about the
# upstream now: ``forget_stale_failures`` closes the circuit again.
STALE_FAILURES_SECONDS = 600.0


class SourceError(Exception):
    """One series or data set could not be fetched; the message is one line."""


class CallFailed(SourceError):
    """A call failed after its retries (or timed out)."""


class Skipped(SourceError):
    """A call not attempted because the previous calls all failed."""


class CallTimeout(Exception):
    """A call did not answer within its timeout."""


def describe(exc: BaseException) -> str:
    """Return a one-line description of ``exc`` (a requests error names the host, not the URL)."""
    text = " ".join(str(exc).split())
    host = re.search(r"host='([^']+)'", text)
    if host:
        cause = re.search(r"Caused by (\w+)", text)
        text = f"cannot reach {host.group(1)}" + (f" ({cause.group(1)})" if cause else "")
    if len(text) > 160:
        text = text[:157] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _with_deadline(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float, name: str) -> Any:
    """Run ``fn(**kwargs)`` in a daemon thread (named ``name``); return its value, raise what it
    raised, or raise CallTimeout after ``timeout`` seconds (the call may still finish in the
    background)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn(**kwargs)
        except BaseException as exc:  # handed to the caller, never printed here
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    if not done.wait(timeout):
        raise CallTimeout(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class PoliteCaller:
    """Pause, deadline, retries with backoff and a circuit breaker around an upstream's calls.

    ``settings``: any object with ``delay_seconds``, ``timeout_seconds``, ``retries``,
    ``backoff_seconds`` and ``max_consecutive_failures`` (``monitor.config.AkshareConfig``);
    ``label`` starts every error message (``"akshare"``), ``upstream`` names the provider in
    prose (``"AKShare"``). ``sleep`` and ``monotonic`` (seconds)
    can be replaced in tests.
    """

    def __init__(self, settings: Any, label: str = "akshare", upstream: str = "AKShare", *,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.label = label
        self.upstream = upstream
        self._sleep = sleep
        self._monotonic = monotonic
        self.consecutive = 0  # failed calls in a row
        self.last_call: float | None = None  # monotonic seconds at the end of the last call

    def reset(self) -> None:
        """Close the circuit (a new fetch starts with a clean slate). Returns None."""
        self.consecutive = 0

    def forget_stale_failures(self) -> None:
        """Close the circuit when the last call ended more than ``STALE_FAILURES_SECONDS`` ago.
        Returns None."""
        if self.last_call is not None and self._monotonic() - self.last_call > STALE_FAILURES_SECONDS:
            self.consecutive = 0

    def check_open(self, function: str) -> None:
        """Raise Skipped when the last ``max_consecutive_failures`` calls all failed; else return
        None."""
        if self.consecutive >= self.settings.max_consecutive_failures:
            raise Skipped(f"{self.label} {function}: not attempted, the last {self.consecutive} "
                          f"{self.upstream} calls failed (upstream unreachable?)")

    def _pause(self) -> None:
        if self.last_call is not None:
            wait = self.settings.delay_seconds - (self._monotonic() - self.last_call)
            if wait > 0:
                self._sleep(wait)

    def call(self, function: str, fn: Callable[..., Any], deadline: float | None = None,
             **kwargs: Any) -> Any:
        """Return ``fn(**kwargs)`` (the upstream's ``function``), called with the pause, the
        retries and a ``deadline`` in seconds (default ``timeout_seconds``); raise Skipped when
        the circuit is open, CallFailed after the last failed attempt."""
        self.check_open(function)
        # after a failed call, the next ones get one attempt each until one succeeds: without
        # network a fetch then fails within seconds instead of retrying every series
        attempts = 1 if self.consecutive else self.settings.retries + 1
        deadline = deadline or self.settings.timeout_seconds
        reason = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.settings.backoff_seconds * 2 ** (attempt - 1))
            self._pause()
            try:
                value = _with_deadline(fn, kwargs, deadline, f"{self.label}-{function}")
            except Exception as exc:  # every failure of the call is retried, then reported
                reason = describe(exc)
                log.debug("%s %s(%s) attempt %d: %s", self.label, function, kwargs, attempt + 1,
                          reason)
                continue
            finally:
                self.last_call = self._monotonic()
            self.consecutive = 0
            return value
        self.consecutive += 1
        plural = "s" if attempts > 1 else ""
        raise CallFailed(f"{self.label} {function}: {reason} ({attempts} attempt{plural})")
