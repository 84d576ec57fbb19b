"""Notifiers render a digest payload and deliver it; the outbox decides when."""

from __future__ import annotations

import os
from typing import Protocol, TextIO

from monitor.config import Config

TOKEN_ENV = "SLACK_BOT_TOKEN"
WEBHOOK_ENV = "SLACK_WEBHOOK_URL"


class DeliveryError(RuntimeError):
    """Delivery failed; ``permanent`` says whether retrying can help."""

    def __init__(self, reason: str, permanent: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.permanent = permanent
        self.retry_after = retry_after


class Notifier(Protocol):
    destination: str

    def send(self, payload: dict, dedup_key: str) -> None:
        """Deliver one digest or raise DeliveryError."""
        ...


def make_notifier(config: Config, stream: TextIO | None = None) -> Notifier:
    """Return the Slack notifier when a Slack destination and secret are configured, else the
    console notifier. Secrets are read from the environment only."""
    slack = config.notify.slack
    token = os.environ.get(TOKEN_ENV)
    webhook = os.environ.get(WEBHOOK_ENV)
    if (slack.channel and token) or webhook:
        from monitor.notify.slack import SlackNotifier

        return SlackNotifier(channel=slack.channel, token=token if slack.channel else None,
                             webhook_url=None if (slack.channel and token) else webhook,
                             api_url=slack.api_url)
    from monitor.notify.console import ConsoleNotifier

    return ConsoleNotifier(stream)
