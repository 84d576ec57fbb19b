"""Slack delivery through slack-sdk: a bot token with WebClient, or an incoming webhook.

Choices made on purpose:
- slack-sdk's own retry handlers are switched off (``retry_handlers=[]``): the outbox is the one
  place that decides when to try again (backoff, Retry-After, permanent errors), so a message is
  never sent twice by a hidden retry inside one attempt;
- the dedup key travels with the message as Slack message metadata (``event_type``
  ``regime_monitor_digest``) and in its footer, so a duplicate after a crash can be recognised;
- the chart is uploaded (``files_upload_v2``) as a reply in the digest's thread, after the
  message: a failed upload never causes the digest itself to be sent again;
- slack-sdk logs through a private logger that is kept quiet, because at debug level it would log
  request URLs (a webhook URL is a secret). Every error text goes through ``redact``.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError, SlackClientError

from monitor.notify import DeliveryError, redact
from monitor.notify.blocks import render

EVENT_TYPE = "regime_monitor_digest"
TEST_EVENT_TYPE = "regime_monitor_test"

# Errors that no retry can fix: authentication, the channel, or the message itself.
PERMANENT = {
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type", "ekm_access_denied",
    "channel_not_found", "not_in_channel", "is_archived", "restricted_action",
    "restricted_action_read_only_channel", "cannot_reply_to_message",
    "invalid_blocks", "invalid_blocks_format", "invalid_arguments", "invalid_metadata_format",
    "invalid_metadata_schema", "metadata_too_large", "msg_too_long", "msg_blocks_too_long",
    "no_text", "too_many_attachments", "invalid_arg_name", "invalid_array_arg",
    "invalid_charset", "invalid_form_data", "invalid_post_type", "missing_post_type",
    "team_access_not_granted", "two_factor_setup_required", "deprecated_endpoint",
}
# Incoming webhook answers (HTTP status and body): 400/403/404/410 cannot be fixed by retrying.
WEBHOOK_PERMANENT_STATUS = {400, 401, 403, 404, 410}

_sdk_log = logging.getLogger("regime_monitor.slack_sdk")
_sdk_log.setLevel(logging.CRITICAL)  # see the module docstring
_sdk_log.propagate = False


def _retry_after(headers) -> float | None:
    for key, value in (headers or {}).items():
        if str(key).lower() == "retry-after":
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def api_error(exc: SlackApiError, what: str = "slack") -> DeliveryError:
    """Return the DeliveryError for a Web API failure: 429 waits Retry-After, 5xx and unknown
    errors are retried, the errors in PERMANENT are not."""
    resp = exc.response
    status = getattr(resp, "status_code", None)
    data = getattr(resp, "data", None)
    err = data.get("error") if isinstance(data, dict) else None
    if err and not err.replace("_", "").isalnum():  # e.g. a non-JSON body: not worth storing
        err = None
    if status == 429 or err == "ratelimited":
        wait = _retry_after(getattr(resp, "headers", None))
        after = f", Retry-After {wait:g} s" if wait is not None else ""
        return DeliveryError(f"{what}: rate limited (HTTP {status}{after})", retry_after=wait)
    if status is not None and status >= 500:
        return DeliveryError(f"{what}: HTTP {status}" + (f" {err}" if err else ""))
    if err in PERMANENT:
        return DeliveryError(f"{what}: {err}", permanent=True)
    return DeliveryError(f"{what}: {err or f'HTTP {status}'}")


def connection_error(exc: BaseException, what: str = "slack") -> DeliveryError:
    """Return the (retryable) DeliveryError for a network failure; no URL, no message text."""
    reason = getattr(exc, "reason", None)
    detail = type(reason).__name__ if isinstance(reason, BaseException) else ""
    name = type(exc).__name__ + (f" ({detail})" if detail else "")
    return DeliveryError(f"{what}: connection error: {name}")


class SlackNotifier:
    """Posts digests to a channel with a bot token, or to an incoming webhook."""

    def __init__(self, channel: str | None, token: str | None, webhook_url: str | None,
                 api_url: str | None = None, timeout: int = 30, chart: bool = True,
                 inhibit: bool = True) -> None:
        if not token and not webhook_url:
            raise ValueError("SlackNotifier needs a bot token or a webhook URL")
        if token and not channel:
            raise ValueError("a bot token needs a channel (notify.slack.channel)")
        self.channel = channel
        self.inhibit = inhibit
        self._secrets = [s for s in (token, webhook_url) if s]
        if token:
            self.destination = f"slack:{channel}"
            base = api_url or "https://slack.com/api/"
            self._client: WebClient | None = WebClient(
                token=token, base_url=base if base.endswith("/") else base + "/", timeout=timeout,
                logger=_sdk_log, retry_handlers=[])
            self._webhook: WebhookClient | None = None
            self.uploads_charts = chart
        else:
            self.destination = "slack:webhook"
            self._client = None
            self._webhook = WebhookClient(webhook_url, timeout=timeout, logger=_sdk_log,
                                          retry_handlers=[])
            self.uploads_charts = False
        self.chart_note = ("thread" if self.uploads_charts else "report") if chart else None

    def _fail(self, exc: DeliveryError) -> DeliveryError:
        return DeliveryError(redact(str(exc), self._secrets), exc.permanent, exc.retry_after)

    # -- sending -------------------------------------------------------------------------------

    def send(self, payload: dict, dedup_key: str,
             chart: Callable[[], tuple[bytes, str]] | None = None) -> dict:
        """Post one digest; return what Slack answered (channel, ts, and the chart upload's
        outcome). Raise DeliveryError when the message was not accepted.

        ``chart`` renders ``(png, alt_text)``; it is called only after Slack accepted the
        message, and the PNG goes into the message's thread."""
        note = self.chart_note
        if note == "thread" and chart is None:
            note = None
        blocks, text = render(payload, dedup_key, chart=note, inhibit=self.inhibit)
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"dedup_key": dedup_key}}
        result = self._post(text=text, blocks=blocks, metadata=metadata)
        if chart is not None and self._client is not None:
            result["chart"] = self._upload(chart, payload["as_of"], result)
        return result

    def send_test(self) -> dict:
        """Post a short test message; return what Slack answered."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        text = (f"regime-monitor test message ({stamp}): this destination receives the daily "
                "micro-cap regime digest.")
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f":white_check_mark: {text}"}}]
        metadata = {"event_type": TEST_EVENT_TYPE, "event_payload": {"dedup_key": f"test:{stamp}"}}
        return self._post(text=text, blocks=blocks, metadata=metadata)

    def _post(self, *, text: str, blocks: list[dict], metadata: dict) -> dict:
        what = "slack" if self._client is not None else "slack webhook"
        try:
            if self._client is not None:
                resp = self._client.chat_postMessage(channel=self.channel, text=text, blocks=blocks,
                                                     metadata=metadata, unfurl_links=False,
                                                     unfurl_media=False)
                return {"ok": True, "channel": resp.get("channel"), "ts": resp.get("ts")}
            resp = self._webhook.send(text=text, blocks=blocks, metadata=metadata,
                                      unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            raise self._fail(api_error(exc, what)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(connection_error(exc, what)) from None
        except SlackClientError as exc:
            raise self._fail(DeliveryError(f"{what}: client error: {type(exc).__name__}",
                                           permanent=True)) from None
        return self._webhook_result(resp)

    def _webhook_result(self, resp) -> dict:
        status = resp.status_code
        body = (resp.body or "").strip()
        word = body[:60] if body.replace("_", "").isalnum() else ""
        if status == 200:
            return {"ok": True, "channel": None, "ts": None, "answer": word or "ok"}
        what = f"slack webhook: HTTP {status}" + (f" {word}" if word else "")
        if status == 429:
            wait = _retry_after(resp.headers)
            after = f", Retry-After {wait:g} s" if wait is not None else ""
            raise self._fail(DeliveryError(f"slack webhook: rate limited (HTTP 429{after})",
                                           retry_after=wait))
        raise self._fail(DeliveryError(what, permanent=status in WEBHOOK_PERMANENT_STATUS))

    def _upload(self, chart: Callable[[], tuple[bytes, str]], as_of: str, posted: dict) -> str:
        """Render and upload the chart into the digest's thread; return "uploaded" or why not. A
        failure is reported, never raised: the digest itself was delivered."""
        try:
            png, alt = chart()
        except Exception as exc:
            return redact(f"not rendered: {type(exc).__name__}: {exc}", self._secrets)[:200]
        try:
            self._client.files_upload_v2(
                channel=posted.get("channel") or self.channel, thread_ts=posted.get("ts"),
                file=png, filename=f"regime-monitor-{as_of}.png",
                title=f"regime-monitor {as_of}: micro-cap index, drawdown, triggering signals",
                alt_txt=alt)
        except SlackApiError as exc:
            return "upload failed: " + str(self._fail(api_error(exc, "slack files")))
        except (OSError, http.client.HTTPException) as exc:
            return "upload failed: " + str(self._fail(connection_error(exc, "slack files")))
        except SlackClientError as exc:
            return f"upload failed: slack files: {type(exc).__name__}"
        return "uploaded"
