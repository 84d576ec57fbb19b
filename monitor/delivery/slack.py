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
  request URLs (a webhook URL is a secret). Every error text goes through ``redact``;
- every HTTP request goes through ``bounded_post`` (the clients' I/O edge is overridden): no
  redirect is ever followed (a 3xx is a permanent delivery error: the token and the message go
  to the configured origin only, and a POST never turns into a GET), an answer larger than
  ``MAX_ANSWER_BYTES`` is refused without being read, and ``timeout_seconds`` is a total
  deadline for the whole request and its answer (not a per-read socket timeout), so a server
  that trickles its answer fails at the deadline.
"""

from __future__ import annotations

import base64
import http.client
import logging
import math
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from urllib.request import Request

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.file_upload_v2_result import FileUploadV2Result
from slack_sdk.webhook import WebhookResponse

from monitor.delivery import DeliveryError, redact
from monitor.delivery.blocks import render

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


# Slack's answers to the methods used here are a few KB; anything beyond this is not Slack.
MAX_ANSWER_BYTES = 4 << 20
_CHUNK = 64 << 10


class TransportError(SlackClientError):
    """A request that got no usable answer: a redirect refused, an answer too large, the total
    deadline passed. ``reason`` names what happened, never the URL; ``permanent`` says whether
    trying again can help."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def _connection(url: urllib.parse.SplitResult, host: str, proxy: str | None, ssl_context,
                timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """Return the connection for ``url`` (whose host is ``host``; through ``proxy`` when set),
    the request target to send, and the extra headers the proxy needs. Raises TransportError
    (permanent) for a proxy URL without a host."""
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    target = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
    extra: dict[str, str] = {}
    if not proxy:
        if https:
            return http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=ssl_context), target, extra
        return http.client.HTTPConnection(host, port, timeout=timeout), target, extra
    p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not p.hostname:
        raise TransportError("invalid proxy URL (no host)", permanent=True)
    if p.username:
        cred = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
        extra["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode("ascii")
    proxy_port = p.port or (443 if p.scheme == "https" else 80)
    if https:  # CONNECT through the proxy, TLS with the Slack host inside the tunnel
        tunnel = http.client.HTTPSConnection(p.hostname, proxy_port, timeout=timeout,
                                             context=ssl_context)
        tunnel.set_tunnel(host, port, headers=extra)
        return tunnel, target, {}
    conn = http.client.HTTPConnection(p.hostname, proxy_port, timeout=timeout)
    return conn, urllib.parse.urlunsplit(url._replace(fragment="")), extra


def bounded_post(url: str, body: bytes | None, headers: dict, *, timeout: float,
                 ssl_context=None, proxy: str | None = None,
                 limit: int = MAX_ANSWER_BYTES) -> tuple[int, dict[str, str], bytes, str, str]:
    """POST ``body`` to ``url`` once; return ``(status, headers, body, content_type, charset)``.

    ``timeout`` (seconds) is the total deadline of the whole exchange (connect, send, answer):
    a watchdog shuts the socket down when it passes, and each read waits at most the time left.
    A 3xx answer is never followed (TransportError, permanent); an answer larger than ``limit``
    bytes is refused (TransportError) without reading the rest. Any status is returned, error
    statuses included, with its (bounded) body; network failures raise OSError or
    http.client.HTTPException, a passed deadline TransportError ("timed out").
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise TransportError("invalid URL (http or https only)", permanent=True)
    deadline = time.monotonic() + timeout
    conn, target, extra = _connection(parts, host, proxy, ssl_context, timeout)
    expired = threading.Event()

    def watchdog() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked connect, send or read
            except OSError:
                pass

    timer = threading.Timer(timeout, watchdog)
    timer.daemon = True
    timer.start()
    try:
        try:
            conn.request("POST", target, body=body, headers={**headers, **extra})
            resp = conn.getresponse()
            if 300 <= resp.status < 400:
                raise TransportError(f"HTTP {resp.status} redirect refused (redirects are never "
                                     "followed)", permanent=True)
            declared = resp.getheader("Content-Length")
            if declared and declared.strip().isdigit() and int(declared) > limit:
                raise TransportError(f"answer too large ({int(declared)} bytes > {limit})")
            chunks, size = [], 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or expired.is_set():
                    raise TransportError(f"timed out (total deadline {timeout:g} s)")
                if conn.sock is not None:
                    conn.sock.settimeout(left)
                chunk = resp.read1(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise TransportError(f"answer too large (more than {limit} bytes)")
                chunks.append(chunk)
            if expired.is_set():  # an answer cut short by the watchdog
                raise TransportError(f"timed out (total deadline {timeout:g} s)")
        except (OSError, http.client.HTTPException):
            if expired.is_set() or time.monotonic() >= deadline:
                raise TransportError(f"timed out (total deadline {timeout:g} s)") from None
            raise
        answer_headers = {k: v for k, v in resp.getheaders()}
        return (resp.status, answer_headers, b"".join(chunks), resp.headers.get_content_type(),
                resp.headers.get_content_charset() or "utf-8")
    finally:
        timer.cancel()
        conn.close()


def _request_body(req: Request) -> bytes | None:
    """Return the request's body as bytes (slack-sdk always passes bytes; a bytearray or
    memoryview is copied); raise TransportError (permanent) for a streamed body."""
    data: object = req.data
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TransportError(f"unsupported request body ({type(data).__name__})", permanent=True)


class BoundedWebClient(WebClient):
    """slack-sdk's WebClient whose every request goes through ``bounded_post``; answers keep
    the SDK's contract (SlackResponse, SlackApiError for a status other than 200 or ok=false)."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict:
        """Return ``{"status", "headers", "body"}`` for any status (never HTTPError): the SDK
        then validates it into a SlackResponse or a SlackApiError."""
        status, headers, raw, ctype, charset = bounded_post(
            url, _request_body(req), dict(req.header_items()), timeout=self.timeout,
            ssl_context=self.ssl, proxy=self.proxy)
        if ctype == "application/gzip":
            return {"status": status, "headers": headers, "body": raw}
        return {"status": status, "headers": headers,
                "body": raw.decode(charset, errors="replace")}

    def _upload_file(self, *, url, data: bytes, logger, timeout: int, proxy, ssl
                     ) -> FileUploadV2Result:
        """Upload ``data`` to the URL files.getUploadURLExternal returned; return its status and
        body (a missing URL is a TransportError, not a ValueError)."""
        if not isinstance(url, str) or not url:
            raise TransportError("files.getUploadURLExternal answered without an upload_url")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}  # as urllib sent it
        status, _, raw, _, charset = bounded_post(url, data, headers, timeout=timeout,
                                                  ssl_context=ssl, proxy=proxy)
        return FileUploadV2Result(status=status, body=raw.decode(charset, errors="replace"))


class BoundedWebhookClient(WebhookClient):
    """slack-sdk's WebhookClient whose request goes through ``bounded_post``."""

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        """Return the WebhookResponse for any status (never HTTPError)."""
        status, headers, raw, _, charset = bounded_post(
            url, _request_body(req), dict(req.header_items()), timeout=self.timeout,
            ssl_context=self.ssl, proxy=self.proxy)
        return WebhookResponse(url=url, status_code=status,
                               body=raw.decode(charset, errors="replace"), headers=headers)


def _retry_after(headers) -> float | None:
    """Return the Retry-After header in seconds (``inf`` for an absurdly large or infinite
    value, capped later by the outbox), or None when absent or not a number."""
    for key, value in (headers or {}).items():
        if str(key).lower() == "retry-after":
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            try:
                wait = float(value)
            except (TypeError, ValueError):
                return None
            return None if math.isnan(wait) else max(0.0, wait)
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


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")  # a Slack conversation ID, e.g. C0123ABCD
HISTORY_PAGES = 5  # pages of 200 messages searched for an earlier attempt's digest


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
        self._seen_channel: str | None = None
        self._secrets = [s for s in (token, webhook_url) if s]
        if token:
            self.destination = f"slack:{channel}"
            base = api_url or "https://slack.com/api/"
            self._client: WebClient | None = BoundedWebClient(
                token=token, base_url=base if base.endswith("/") else base + "/", timeout=timeout,
                logger=_sdk_log, retry_handlers=[])
            self._webhook: WebhookClient | None = None
            self.uploads_charts = chart
        elif webhook_url:
            self.destination = "slack:webhook"
            self._client = None
            self._webhook = BoundedWebhookClient(webhook_url, timeout=timeout, logger=_sdk_log,
                                                 retry_handlers=[])
            self.uploads_charts = False
        self.chart_note = ("thread" if self.uploads_charts else "report") if chart else None

    def _fail(self, exc: DeliveryError) -> DeliveryError:
        return DeliveryError(redact(str(exc), self._secrets), exc.permanent, exc.retry_after)

    # -- sending -------------------------------------------------------------------------------

    def send(self, payload: dict, dedup_key: str,
             chart: Callable[[], tuple[bytes, str]] | bool | None = None) -> dict:
        """Post one digest; return what Slack answered (``ok``, ``channel``, ``ts``; with a
        callable ``chart``, also ``chart``: the upload's outcome). Raise DeliveryError when the
        message was not accepted.

        ``chart=True`` says that a chart follows in the message's thread (delivery uploads it
        with ``upload_chart`` once the accepted post is recorded); a callable renders ``(png,
        alt_text)`` and is uploaded here, right after Slack accepted the message."""
        note = self.chart_note
        if note == "thread" and not chart:
            note = None
        blocks, text = render(payload, dedup_key, chart=note, inhibit=self.inhibit)
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"dedup_key": dedup_key}}
        result = self._post(text=text, blocks=blocks, metadata=metadata)
        if callable(chart) and self._client is not None:
            result["chart"] = self.upload_chart(chart, payload["as_of"], result)
        return result

    def channel_id(self, known: str | None = None) -> str | None:
        """Return the channel's Slack ID for reading its history: ``notify.slack.channel`` when it
        is an ID, else ``known`` (the channel Slack answered for an earlier post), else the one
        this notifier's own posts were answered with; None when there is none yet."""
        if self.channel and _CHANNEL_ID.match(self.channel):
            return self.channel
        return known or self._seen_channel

    def find_posted(self, dedup_key: str, channel: str, oldest: float) -> dict | None:
        """Return ``{"ok", "channel", "ts", "found"}`` of the digest this app already posted with
        ``dedup_key`` in its metadata, searching ``channel``'s history since ``oldest`` (Unix
        seconds), or None when Slack has no such message. Only with a bot token (None for a
        webhook). Raises DeliveryError when the history cannot be read (e.g. the app lacks the
        ``channels:history`` scope): the caller then cannot rule out a duplicate."""
        if self._client is None:
            return None
        cursor = None
        for _ in range(HISTORY_PAGES):
            data = {"channel": channel, "oldest": f"{oldest:.6f}", "limit": 200,
                    "include_all_metadata": "true"}
            if cursor:
                data["cursor"] = cursor
            try:
                resp = self._client.api_call("conversations.history", http_verb="POST", data=data)
            except SlackApiError as exc:
                raise self._fail(api_error(exc, "slack history")) from None
            except TransportError as exc:
                raise self._fail(DeliveryError(f"slack history: {exc.reason}")) from None
            except (OSError, http.client.HTTPException) as exc:
                raise self._fail(connection_error(exc, "slack history")) from None
            except SlackClientError as exc:
                raise self._fail(DeliveryError(f"slack history: client error: "
                                               f"{type(exc).__name__}")) from None
            for message in resp.get("messages") or []:
                meta = message.get("metadata") or {}
                if (meta.get("event_type") == EVENT_TYPE
                        and (meta.get("event_payload") or {}).get("dedup_key") == dedup_key):
                    return {"ok": True, "channel": channel, "ts": message.get("ts"), "found": True}
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

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
            if self._client is not None and self.channel:  # a bot token always has its channel
                resp = self._client.chat_postMessage(channel=self.channel, text=text, blocks=blocks,
                                                     metadata=metadata, unfurl_links=False,
                                                     unfurl_media=False)
                self._seen_channel = resp.get("channel") or self._seen_channel
                return {"ok": True, "channel": resp.get("channel"), "ts": resp.get("ts")}
            if self._webhook is None:
                raise DeliveryError(f"{what}: no destination", permanent=True)
            hook = self._webhook.send(text=text, blocks=blocks, metadata=metadata,
                                      unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            raise self._fail(api_error(exc, what)) from None
        except TransportError as exc:
            raise self._fail(DeliveryError(f"{what}: {exc.reason}", permanent=exc.permanent)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(connection_error(exc, what)) from None
        except SlackClientError as exc:
            raise self._fail(DeliveryError(f"{what}: client error: {type(exc).__name__}",
                                           permanent=True)) from None
        return self._webhook_result(hook)

    def _webhook_result(self, resp: WebhookResponse) -> dict:
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

    def upload_chart(self, chart: Callable[[], tuple[bytes, str]], as_of: str, posted: dict) -> str:
        """Render and upload the chart into the thread of the accepted message ``posted``
        (``channel``, ``ts``); return "uploaded" or why not. A failure is reported, never
        raised: the digest itself was delivered and must not be sent again."""
        if self._client is None:
            return "not uploaded: an incoming webhook cannot upload files"
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
        except TransportError as exc:
            return "upload failed: " + redact(f"slack files: {exc.reason}", self._secrets)
        except (OSError, http.client.HTTPException) as exc:
            return "upload failed: " + str(self._fail(connection_error(exc, "slack files")))
        except Exception as exc:  # SlackClientError, or the SDK tripping on an odd answer
            return f"upload failed: slack files: {type(exc).__name__}"
        return "uploaded"
