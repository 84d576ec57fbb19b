"""Slack delivery through slack-sdk: a bot token with WebClient, or an incoming webhook.

The token and webhook URL come from the environment and never appear in messages or errors.
"""

from __future__ import annotations

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError

from monitor import digest
from monitor.notify import DeliveryError

PERMANENT = {"invalid_auth", "not_authed", "account_inactive", "token_revoked",
             "channel_not_found", "not_in_channel", "is_archived", "missing_scope"}


class SlackNotifier:
    def __init__(self, channel: str | None, token: str | None, webhook_url: str | None,
                 api_url: str | None = None, timeout: int = 30) -> None:
        self.channel = channel
        self.destination = f"slack:{channel}" if token else "slack:webhook"
        if token:
            kwargs = {"base_url": api_url} if api_url else {}
            self._client = WebClient(token=token, timeout=timeout, **kwargs)
            self._webhook = None
        else:
            self._client = None
            self._webhook = WebhookClient(webhook_url, timeout=timeout)

    def send(self, payload: dict, dedup_key: str) -> None:
        text = digest.render_text(payload)
        metadata = {"event_type": "regime_monitor_digest", "event_payload": {"dedup_key": dedup_key}}
        try:
            if self._client is not None:
                self._client.chat_postMessage(channel=self.channel, text=text, metadata=metadata)
                return
            resp = self._webhook.send(text=text)
        except SlackApiError as exc:
            err = exc.response.get("error", "unknown_error") if exc.response else "unknown_error"
            status = exc.response.status_code if exc.response else None
            retry_after = None
            if status == 429:
                retry_after = float(exc.response.headers.get("Retry-After", 1))
            raise DeliveryError(f"slack: {err}", permanent=err in PERMANENT,
                                retry_after=retry_after) from None
        except OSError as exc:
            raise DeliveryError(f"slack: connection error: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise DeliveryError(f"slack webhook: HTTP {resp.status_code} {resp.body[:80]}",
                                permanent=resp.status_code in (403, 404))
