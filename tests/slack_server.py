"""A stand-in for Slack on loopback: a real HTTP server (http.server in a thread) answering the
Web API methods regime-monitor uses (chat.postMessage, files.getUploadURLExternal, the upload URL,
files.completeUploadExternal) and an incoming webhook. slack-sdk is pointed at it through
``WebClient(base_url=...)`` (config ``notify.slack.api_url``) and the webhook URL.

Every request is recorded (method, HTTP verb, headers, decoded body). Responses can be scripted
per method, in order, e.g. ``server.script("chat.postMessage", Reply(429, {...}, {"Retry-After":
"1"}))``; unscripted calls get Slack's normal success answer. A scripted reply can also misbehave:
``Reply(302, "", {"Location": other})`` redirects, ``Reply(..., trickle=1.0)`` sends the whole
answer (status line, headers, body) one byte per second, ``Reply(..., pad_bytes=n)`` appends a
padding field of ``n`` bytes to a JSON body (streamed, never held in memory; with
``declare_length=False`` without a Content-Length, ended by closing). ``server.on(method,
hook)`` runs ``hook(request)`` when a call of ``method`` arrived, before it is answered. GET
requests are answered too (a client that followed a redirect turns the POST into a GET).

Also here: payloads and a small history database shared by the Slack tests.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "xoxb-4242-SECRET-test-token-do-not-log"
WEBHOOK_SECRET = "T0TEST/B0TEST/SECRETwebhookPath42"
CHANNEL_ID = "C0TESTCHAN"


@dataclass
class Reply:
    status: int = 200
    body: dict | str | bytes = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # > 0: seconds between the bytes of the whole answer
    pad_bytes: int = 0  # > 0: a JSON body gets a "pad" field of this many bytes, streamed
    declare_length: bool = True  # False: no Content-Length, the body ends when the server closes


@dataclass
class Request:
    method: str  # Web API method, "upload" or "webhook"
    path: str
    headers: dict[str, str]
    body: object  # dict (JSON or form) or bytes
    at: float
    verb: str = "POST"


class SlackServer:
    """Start with ``with SlackServer() as server:``; ``api_url`` and ``webhook_url`` point at it."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[Request] = []
        self._scripts: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()
        self._n = 0
        self._hooks: dict[str, list] = defaultdict(list)
        self.messages: list[dict] = []  # the posts answered ok (ts, text, metadata), oldest first
        self.history = False  # True: conversations.history answers (the channels:history scope)
        self._closing = threading.Event()
        self.bytes_sent = 0  # answer bytes written to clients (padding and trickles included)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server._handle(self, raw)

            def do_GET(self) -> None:  # noqa: N802 (a client that followed a redirect)
                server._handle(self, b"")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> SlackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()  # a trickling or padding answer stops
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/services/{WEBHOOK_SECRET}"

    # -- scripting and inspection --------------------------------------------------------------

    def script(self, method: str, *replies: Reply) -> None:
        """Answer the next calls of ``method`` with ``replies``, in order."""
        with self._lock:
            self._scripts[method].extend(replies)

    def on(self, method: str, hook) -> None:
        """Run ``hook(request)`` whenever a call of ``method`` arrives, before it is answered."""
        with self._lock:
            self._hooks[method].append(hook)

    def calls(self, method: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def posted(self) -> list[dict]:
        """Bodies of the messages posted (chat.postMessage and webhook)."""
        return [r.body for r in self.requests if r.method in ("chat.postMessage", "webhook")]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # -- the server side -----------------------------------------------------------------------

    def _decode(self, method: str, handler: BaseHTTPRequestHandler, raw: bytes) -> object:
        if method == "upload":  # the file itself (urllib labels it form-encoded)
            return raw
        ctype = handler.headers.get("Content-Type", "")
        try:
            if "application/json" in ctype:
                return json.loads(raw or b"{}")
            if "application/x-www-form-urlencoded" in ctype:
                return {k: v[0] for k, v in parse_qs(raw.decode("utf-8")).items()}
        except ValueError:
            pass
        return raw

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        path = urlparse(handler.path).path
        if path.startswith("/api/"):
            method = path[len("/api/"):]
        elif path.startswith("/upload/"):
            method = "upload"
        elif path.startswith("/services/"):
            method = "webhook"
        else:
            method = "unknown"
        req = Request(method, path, dict(handler.headers.items()), self._decode(method, handler, raw),
                      time.time(), handler.command)
        with self._lock:
            self.requests.append(req)
            self._n += 1
            n = self._n
            scripted = self._scripts[method].popleft() if self._scripts[method] else None
            hooks = list(self._hooks[method])
        for hook in hooks:
            hook(req)
        reply = scripted or self._default(method, path, req, n)
        self._respond(handler, reply)

    def _default(self, method: str, path: str, req: Request, n: int) -> Reply:
        if method == "webhook":
            if path != f"/services/{WEBHOOK_SECRET}":
                return Reply(404, "no_service")
            return Reply(200, "ok")
        if method == "upload":
            return Reply(200, f"OK - {len(req.body) if isinstance(req.body, bytes) else 0}")
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        if method == "chat.postMessage":
            body = req.body if isinstance(req.body, dict) else {}
            message = {"ts": f"{1700000000 + n}.000100", "text": body.get("text"),
                       "metadata": body.get("metadata")}
            with self._lock:
                self.messages.append(message)
            return Reply(200, {"ok": True, "channel": CHANNEL_ID, "ts": message["ts"],
                               "message": {"text": body.get("text"),
                                           "metadata": body.get("metadata")}})
        if method == "conversations.history":
            if not self.history:
                return Reply(200, {"ok": False, "error": "missing_scope"})
            with self._lock:
                newest_first = list(reversed(self.messages))
            return Reply(200, {"ok": True, "messages": newest_first, "has_more": False,
                               "response_metadata": {"next_cursor": ""}})
        if method == "files.getUploadURLExternal":
            return Reply(200, {"ok": True, "upload_url": f"{self.base}/upload/F{n:06d}",
                               "file_id": f"F{n:06d}"})
        if method == "files.completeUploadExternal":
            files = json.loads(req.body.get("files", "[]")) if isinstance(req.body, dict) else []
            return Reply(200, {"ok": True, "files": [{"id": f["id"], "title": f.get("title")}
                                                     for f in files]})
        return Reply(200, {"ok": False, "error": "unknown_method"})

    def _respond(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if isinstance(reply.body, dict):
            data, ctype = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        elif isinstance(reply.body, str):
            data, ctype = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = reply.body, "application/octet-stream"
        head, tail = data, b""
        if reply.pad_bytes and isinstance(reply.body, dict):  # {..., "pad": "xxx...x"}
            head, tail = data[:-1] + b', "pad": "', b'"}'
        length = len(head) + reply.pad_bytes + len(tail) if tail else len(data)
        if reply.trickle > 0:
            self._trickle(handler, reply, ctype, data)
            return
        handler.send_response(reply.status)
        handler.send_header("Content-Type", ctype)
        if reply.declare_length:
            handler.send_header("Content-Length", str(length))
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        for k, v in reply.headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        try:
            self._write(handler, head)
            left = reply.pad_bytes if tail else 0
            chunk = b"x" * (1 << 16)
            while left > 0 and not self._closing.is_set():
                self._write(handler, chunk[:left])
                left -= min(left, len(chunk))
            if tail:
                self._write(handler, tail)
        except OSError:  # the client hung up (e.g. it refused a body that large)
            handler.close_connection = True

    def _write(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.wfile.write(data)
        with self._lock:
            self.bytes_sent += len(data)

    def _trickle(self, handler: BaseHTTPRequestHandler, reply: Reply, ctype: str,
                 data: bytes) -> None:
        """Send the whole answer one byte every ``reply.trickle`` seconds (until the client
        hangs up or the server closes)."""
        lines = [f"HTTP/1.1 {reply.status} Slow", f"Content-Type: {ctype}",
                 f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in reply.headers.items())]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + data
        handler.close_connection = True
        try:
            for i in range(len(raw)):
                if self._closing.wait(reply.trickle if i else 0):
                    return
                self._write(handler, raw[i:i + 1])
        except OSError:
            return


# -- payloads and history shared by the Slack tests --------------------------------------------

AS_OF = "2024-02-05"

# Values that make every default rule's `when` hold.
ALL_FIRING = {
    "microcap.drawdown": -0.152,
    "market.return_20d": -0.104, "market.amount_ratio_20_120": 0.71,
    "rotation.hot_theme_excess": 0.134, "rotation.microcap_excess_10d": -0.061,
    "rotation.largecap_minus_microcap_20d": 0.118,
    "microcap.vol_spike": 1.83,
    "turnover.csi2000_share_pctile_1y": 0.97,
    "turnover.csi2000_share_drop_60d": -0.21,
    "credit.spread_pctile_10y": 0.06,
    "credit.spread_chg_20d": 18.5, "credit.spread_pctile_10y_lag60": 0.12,
    "funds.smallcap_share_mean_chg": -0.041, "funds.smallcap_value_total_chg": -0.16,
}


def firing_values(config) -> dict[str, float]:
    """ALL_FIRING, completed so that every rule of ``config`` fires (a rule added later gets,
    for each comparison with a number, a value beyond its threshold)."""
    from monitor.alerting import rules

    values = dict(ALL_FIRING)
    for rule in config.rules:
        if rules.evaluate(rule, values).when is True:
            continue
        for c in rules.describe(rule.when_expr, {}):
            if c["threshold"] is None or c["signal"] is None:
                continue
            step = 0.1 * abs(c["threshold"]) + 0.01
            values[c["signal"]] = c["threshold"] + (step if c["op"] in (">", ">=") else -step)
    return values


def all_firing_payload(config, kind: str = "firing", as_of: str = AS_OF,
                       values: dict | None = None) -> dict:
    """The digest of a day on which every rule of ``config`` fires (real rule evaluation)."""
    from monitor.alerting import rules
    from monitor.delivery import digest

    values = values or firing_values(config)
    items = []
    for rule in config.rules:
        ev = rules.evaluate(rule, values)
        assert ev.when is True, rule.name
        ctx = ({"rotation.hot_theme_excess": {"theme": "930713", "name": "CS AI"}}
               if "rotation.hot_theme_excess" in rule.names else {})
        items.append({"rule": rule.name, "severity": rule.severity, "kind": kind,
                      "since": as_of, "explain": rule.explain, "comparisons": ev.comparisons,
                      "values": ev.values, "context": ctx})
    names = sorted(r.name for r in config.rules)
    return digest.build(as_of, items, names, [], {"count": len(names), "names": names})


def business_days(end: dt.date, n: int) -> list[dt.date]:
    days, d = [], end
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d -= dt.timedelta(days=1)
    return days[::-1]


def fill_history(db, as_of: str = AS_OF, n: int = 320) -> None:
    """Write ``n`` business days of micro-cap closes (a rally, then a 15% fall to ``as_of``), the
    signals of ALL_FIRING (today's values on ``as_of``) and two finished episodes."""
    import math

    from storage import episodes, observations, signal_values

    days = business_days(dt.date.fromisoformat(as_of), n)
    closes: list[float] = []
    for i in range(n):
        if i < n - 30:
            closes.append(6000 * (1 + 0.5 * i / n) + 150 * math.sin(i / 9))
        else:
            closes.append(closes[n - 31] * (1 - 0.152 * (i - (n - 31)) / 30))
    observations.upsert(db, [("index.microcap.close", d.isoformat(), c, d.isoformat(), "test")
                             for d, c in zip(days, closes, strict=True)])
    peak = 0.0
    rows = []
    for i, (d, c) in enumerate(zip(days, closes, strict=True)):
        peak = max(peak, c)
        rows.append(("microcap.drawdown", d.isoformat(), c / peak - 1, None))
        for name, today in ALL_FIRING.items():
            if name == "microcap.drawdown":
                continue
            wiggle = math.sin(i / 7 + len(name)) * 0.5 + (i / n)  # drifts towards today's value
            rows.append((name, d.isoformat(), today * wiggle, None))
    # on the closest episode's peak the indicators looked like today's
    ref = days[60].isoformat()
    rows = [r for r in rows if r[1] != ref]
    rows += [(name, ref, v * 0.97, None) for name, v in ALL_FIRING.items()]
    signal_values.upsert(db, rows)
    episodes.replace_kind(db, "drawdown", [
        {"start": ref, "peak": ref, "trough": days[90].isoformat(), "end": days[150].isoformat(),
         "depth": -0.231, "detail": "{}"},
        {"start": days[200].isoformat(), "peak": days[200].isoformat(),
         "trough": days[210].isoformat(), "end": days[230].isoformat(), "depth": -0.12,
         "detail": "{}"}])
    episodes.replace_kind(db, "rotation", [
        {"start": days[100].isoformat(), "peak": None, "trough": None,
         "end": days[105].isoformat(), "depth": -0.04, "detail": json.dumps({"theme": "930713"})}])
