"""Delivery: from a cycle's digest items to a message a PM reads.

The stage, in order: ``digest`` builds the payload (what changed, the headline, the counts);
``deliver`` sends the due outbox rows (claims, retries, exactly-once records); the notifiers
render and send one digest each: ``slack`` (Block Kit from ``blocks``, a chart from ``chart``) and
``console``.

This module holds what every notifier shares: the ``Notifier`` protocol, ``DeliveryError``,
``redact`` and ``make_notifier``. A notifier has a ``destination`` (for the outbox and logs) and
``send(payload, dedup_key)``, which delivers one digest or raises :class:`DeliveryError`. The
optional abilities are declared protocols, checked with ``isinstance``: ``ChartUploader`` (with
``uploads_charts = True`` delivery calls ``send(..., chart=True)`` and, once the accepted post is
recorded, ``upload_chart(...)``), ``HistoryReader`` (``channel_id``, ``find_posted``: was a
retried digest already posted?) and ``TestMessageSender`` (``send_test``: ``notify test``).

Secrets (the bot token, the webhook URL) come from the environment only. Every text that leaves a
notifier in an error goes through :func:`redact` first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol, TextIO, runtime_checkable

from monitor.config import Config

TOKEN_ENV = "SLACK_BOT_TOKEN"
WEBHOOK_ENV = "SLACK_WEBHOOK_URL"
REDACTED = "[redacted]"

log = logging.getLogger("regime_monitor.notify")


class DeliveryError(RuntimeError):
    """Delivery failed; ``permanent`` says whether retrying can help, ``retry_after`` is the
    server's requested wait in seconds (HTTP 429)."""

    def __init__(self, reason: str, permanent: bool = False, retry_after: float | None = None):
        super().__init__(redact(reason))
        self.permanent = permanent
        self.retry_after = retry_after


class Notifier(Protocol):
    """What every notifier does: deliver one digest to ``destination``."""

    destination: str

    def send(self, payload: dict, dedup_key: str) -> dict | None:
        """Deliver one digest or raise DeliveryError; optionally return what the server said."""
        ...


# The optional abilities, each its own protocol, checked with ``isinstance`` by delivery and the
# CLI (``notify test``). The Slack notifier has all three.

ChartRenderer = Callable[[], tuple[bytes, str]]  # renders (png bytes, alt text)


@runtime_checkable
class ChartUploader(Protocol):
    """A notifier that can attach the digest's chart (when ``uploads_charts`` is true: a bot
    token with ``notify.slack.chart``): delivery sends with ``chart=True`` and then uploads the
    chart into the accepted message's thread."""

    destination: str
    uploads_charts: bool

    def send(self, payload: dict, dedup_key: str,
             chart: ChartRenderer | bool | None = None) -> dict | None:
        """Deliver one digest (``chart=True``: a chart follows in its thread) or raise
        DeliveryError; return what the server said."""
        ...

    def upload_chart(self, chart: ChartRenderer, as_of: str, posted: dict) -> str:
        """Upload the rendered chart into the thread of ``posted`` (channel, ts); return
        "uploaded" or why not; never raise."""
        ...


@runtime_checkable
class HistoryReader(Protocol):
    """A notifier that can read its destination's history, to tell whether an earlier attempt
    of a retried digest already arrived (a bot token)."""

    destination: str

    def channel_id(self, known: str | None = None) -> str | None:
        """Return the channel ID whose history to read (``known``: the one an earlier post was
        answered with), or None when none is known yet."""
        ...

    def find_posted(self, dedup_key: str, channel: str, oldest: float) -> dict | None:
        """Return the server's answer for the digest posted with ``dedup_key`` since ``oldest``
        (Unix seconds), or None; raise DeliveryError when the history cannot be read."""
        ...


@runtime_checkable
class TestMessageSender(Protocol):
    """A notifier that can send a test message (``regime-monitor notify test``)."""

    destination: str

    def send_test(self) -> dict:
        """Send a short test message; return what the server answered, or raise
        DeliveryError."""
        ...


def secrets() -> list[str]:
    """Return the secret strings currently in the environment (the token and the webhook URL,
    plus the webhook URL's path, which alone is the credential)."""
    out = []
    for name in (TOKEN_ENV, WEBHOOK_ENV):
        value = (os.environ.get(name) or "").strip()
        if len(value) >= 8:
            out.append(value)
    hook = (os.environ.get(WEBHOOK_ENV) or "").strip()
    if "://" in hook:
        path = hook.split("://", 1)[1].partition("/")[2]
        if len(path) >= 8:
            out.append(path)
    return sorted(out, key=len, reverse=True)


def redact(text: str, extra: list[str] | None = None) -> str:
    """Return ``text`` with every secret (environment ones and ``extra``) replaced."""
    for secret in [*(extra or []), *secrets()]:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def slack_destination(config: Config) -> str | None:
    """Return ``"bot"``, ``"webhook"`` or None: which Slack destination the config and the
    environment select (a bot token needs ``notify.slack.channel``; it wins over a webhook)."""
    if config.notify.slack.channel and os.environ.get(TOKEN_ENV):
        return "bot"
    if os.environ.get(WEBHOOK_ENV):
        return "webhook"
    return None


def destination_warning(config: Config) -> str | None:
    """Return, in one line, why the configured Slack channel gets nothing (it is set but
    ``$SLACK_BOT_TOKEN`` is not) and where digests go instead, or None. Said at the daemon's
    start, by ``once`` and by ``config check``."""
    channel = config.notify.slack.channel
    if not channel or os.environ.get(TOKEN_ENV):
        return None
    if os.environ.get(WEBHOOK_ENV):
        instead = f"the incoming webhook (${WEBHOOK_ENV})"
    elif config.notify.console:
        instead = "the console only"
    else:
        instead = "nowhere (kept in the outbox only: notify.console = false)"
    return (f"notify.slack.channel is {channel!r} but ${TOKEN_ENV} is not set: digests go to "
            f"{instead}, not to that channel; export ${TOKEN_ENV} (README \"Slack\")")


def make_notifier(config: Config, stream: TextIO | None = None) -> Notifier:
    """Return the Slack notifier when a Slack destination and secret are configured, else the
    console notifier. Secrets are read from the environment only."""
    slack = config.notify.slack
    kind = slack_destination(config)
    if kind is not None:
        from monitor.delivery.slack import SlackNotifier

        return SlackNotifier(
            channel=slack.channel if kind == "bot" else None,
            token=os.environ[TOKEN_ENV] if kind == "bot" else None,
            webhook_url=os.environ[WEBHOOK_ENV] if kind == "webhook" else None,
            api_url=slack.api_url, timeout=slack.timeout_seconds, chart=slack.chart,
            inhibit=config.notify.inhibit)
    if os.environ.get(TOKEN_ENV) and not slack.channel:
        log.warning("$%s is set but notify.slack.channel is not: digests go to the console",
                    TOKEN_ENV)
    if not config.notify.console:
        return StoredOnlyNotifier()
    from monitor.delivery.console import ConsoleNotifier

    return ConsoleNotifier(stream, inhibit=config.notify.inhibit)


class StoredOnlyNotifier:
    """The notifier when no Slack destination is configured and ``notify.console = false``:
    digests are kept in the outbox (``regime-monitor outbox --all`` shows them, marked sent to
    ``none``) and printed nowhere."""

    destination = "none"

    def send(self, payload: dict, dedup_key: str) -> None:
        """Deliver nothing: the digest stays readable in the outbox. Returns None."""
        return None
