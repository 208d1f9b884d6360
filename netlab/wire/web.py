"""The web port's HTTP/1.1, sans-IO: h11 reads requests, a handful of routes answer them,
and `GET /ws` becomes a WebSocket session (`wire/websocket.MessageReader`).

Routes (CLI.md, PROTOCOL.md "Transports"): `GET /healthz` (200 `ok` while the server is
healthy, else 503), `GET /metrics` (the loop's Prometheus text, to loopback peers and those of
`Site.metrics_allow`; 403 to the rest), `GET /ws` (the
WebSocket handshake, checked by `websockets`' `ServerProtocol.accept`: version, key and
Origin), `GET /` and the static files the loop read at start-up (`Site.files`); HEAD
of the same. Any other method is 405, any other path 404, a header block over
`Site.max_header_bytes` 431 (h11 counts it), a request with a body 400. Every answer
carries the security headers (`SECURITY_HEADERS`).

`WebConnection` is what the loop feeds a web connection's bytes: it is the connection's
`Decoder` (frames come once it is upgraded), and it says what to send (`take_http`, then
its `ws.outgoing()`), whether it just upgraded (`take_upgrade`) and whether to close (`done`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import h11
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from netlab.wire.errors import ProtocolError
from netlab.wire.payload import parse_payload
from netlab.wire.websocket import MessageReader

#: What a header block may hold at most by default: a browser's requests take about 1 KiB.
DEFAULT_MAX_HEADER_BYTES = 8192
#: connect-src 'self' covers ws: and wss: to the page's own host and port by CSP Level 3,
#: which Chromium and Firefox follow (older Safari did not: the page's tests run in Chromium).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
#: Static files are checked again each time (they change with a release); answers never kept.
CACHE_STATIC, CACHE_NONE = "no-cache", "no-store"
ALLOWED_METHODS = "GET, HEAD"
#: Answers to requests that came in one read (pipelined) are written until this much is
#: waiting; then the connection closes after them, so a read of tiny requests cannot
#: queue megabytes of answers.
PIPELINED_BYTES = 256 * 1024


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Site:
    """What the web port serves: read by the loop at start-up, the same for every connection."""

    files: Mapping[str, StaticFile]  # by path: "/index.html", "/app.js"
    scheme: str = "http"  # "https" under TLS: the page's own origin
    #: Origins allowed besides the page's own (--web-origin).
    extra_origins: frozenset[str] = frozenset()
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    #: The loop's: is it running with a store that takes writes (`/healthz`)?
    healthy: Callable[[], bool] = lambda: True
    #: The loop's: the figures in Prometheus text format, and their Content-Type (`/metrics`).
    metrics: Callable[[], tuple[bytes, str]] | None = None
    #: Networks whose peers may read `/metrics` besides loopback (--metrics-allow).
    metrics_allow: tuple[Network, ...] = ()


def metrics_allowed(ip: str, allow: tuple[Network, ...]) -> bool:
    """Loopback always (CLI.md), else only the networks of --metrics-allow: the figures tell
    an outsider how busy the chat is and when. An IPv4 peer of a dual-stack port counts as
    the IPv4 address it is; a peer address that does not parse is refused."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in network for network in allow)


class WebConnection:
    """One web connection: HTTP requests in order until one upgrades it to WebSocket."""

    def __init__(self, site: Site, max_frame: int, peer_ip: str = "") -> None:
        self.site = site
        self.max_frame = max_frame
        self.peer_ip = peer_ip  # who asks: /metrics is answered to some addresses only
        self._http: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=site.max_header_bytes)
        self.ws: MessageReader | None = None
        self._out = bytearray()
        self._upgraded = False
        #: No more requests: close once `take_http` is sent (an error, `Connection: close`, EOF).
        self.done = False
        #: The loop's: the connection is closing, nothing more is to be added to its output.
        self.ending = False

    # -- the Decoder protocol ---------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self.ws.buffered if self.ws is not None else 0

    @property
    def peer_closed(self) -> bool:
        return self.ws is not None and self.ws.peer_closed

    def feed(self, data: bytes) -> None:
        if self.ws is not None:
            return self.ws.feed(data)
        if self.done:
            return
        self._http.receive_data(data)
        self._serve()

    def next_frame(self) -> dict | None:
        return self.ws.next_frame() if self.ws is not None else None

    def __iter__(self) -> Iterator[dict]:
        while (frame := self.next_frame()) is not None:
            yield frame

    # -- what the loop does with it ---------------------------------------------------------

    def take_http(self) -> bytes:
        """HTTP bytes to send as they are: answers, the 101 (after it, `ws.outgoing()` has the
        WebSocket control frames: pongs, close replies)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def take_upgrade(self) -> bool:
        """True once, right after the 101 was written: chat frames may follow it."""
        upgraded, self._upgraded = self._upgraded, False
        return upgraded

    def farewell(self, last_payload: bytes | None) -> bytes:
        """The HTTP answer when the chat ends this connection before an upgrade, after its last
        frame: 503 when the server is full or stopping, 408 at the auth timeout to a request
        still unfinished (none when an answer is under way or no request is)."""
        try:
            frame = parse_payload(last_payload) if last_payload else {}
        except ProtocolError:
            frame = {}
        status = {"server_full": 503, "auth_timeout": 408}.get(frame.get("code"))
        if frame.get("type") == "shutdown":
            status = 503
        if status is None or self.done or self._http is None or self._http.our_state is not h11.IDLE:
            return b""
        if status == 408 and self._http.their_state is h11.IDLE and not self._http.trailing_data[0]:
            return b""  # no request under way (a preconnect, an idle keep-alive): closed quietly
        self._refuse(status, frame.get("message") or frame.get("reason") or "closing")
        return self.take_http()

    # -- HTTP ------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.done and self.ws is None:
            if len(self._out) > PIPELINED_BYTES:  # answers pile up unread: serve no more
                self.done = True
                return
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError as exc:
                return self._refuse(exc.error_status_hint, str(exc))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._route(event)
            elif isinstance(event, h11.ConnectionClosed):
                self.done = True
            elif isinstance(event, h11.EndOfMessage):
                if self._http.our_state is h11.MUST_CLOSE:
                    self.done = True
                elif self._http.our_state is h11.DONE:
                    self._http.start_next_cycle()

    def _route(self, request: h11.Request) -> None:
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        headers = {name.decode().lower(): value for name, value in request.headers}
        # h11 bounds a header block still arriving; one that came whole in a read is counted here.
        size = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if size > self.site.max_header_bytes:
            return self._refuse(431, "request header fields too large")
        if method not in ("GET", "HEAD"):
            return self._refuse(405, "only GET and HEAD", (("Allow", ALLOWED_METHODS),))
        if headers.get("content-length", b"0") != b"0" or "transfer-encoding" in headers:
            return self._refuse(400, "a request with a body")
        if path == "/ws" and method == "GET":
            return self._upgrade(request, path)
        head = method == "HEAD"
        if path == "/healthz":
            if not self.site.healthy():
                return self._refuse(503, "stopping, or history cannot be written", head=head)
            return self._answer(200, b"ok\n", "text/plain; charset=utf-8", CACHE_NONE, head=head)
        if path == "/metrics" and self.site.metrics is not None:
            if not metrics_allowed(self.peer_ip, self.site.metrics_allow):
                return self._refuse(403, "metrics: loopback and --metrics-allow only", head=head)
            body, content_type = self.site.metrics()
            return self._answer(200, body, content_type, CACHE_NONE, head=head)
        found = self.site.files.get("/index.html" if path == "/" else path)
        if found is None:
            return self._refuse(404, "no such page", head=head)
        self._answer(200, found.body, found.content_type, CACHE_STATIC, head=head)

    def _upgrade(self, request: h11.Request, path: str) -> None:
        """The WebSocket handshake: websockets checks it; the 101 goes out through h11."""
        headers = Headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers])
        host = headers.get("Host", "").lower()
        # A browser always sends Origin; other clients (bots, the bench) need not.
        origins = [f"{self.site.scheme}://{host}", *self.site.extra_origins, None]
        try:
            response = ServerProtocol(origins=origins).accept(Request(path, headers))
        except Exception as exc:  # accept turns a bad handshake into a response; be sure of it
            return self._refuse(400, f"bad WebSocket handshake: {exc}")
        if response.status_code != 101:
            reason = response.body.decode("utf-8", "replace").strip() or "refused"
            return self._refuse(response.status_code, reason)
        kept = [(n, v) for n, v in response.headers.raw_items() if n.lower() not in ("date", "server")]
        self._out += self._http.send(h11.InformationalResponse(status_code=101, headers=kept,
                                                                     reason="Switching Protocols"))
        trailing, _closed = self._http.trailing_data
        self.ws = MessageReader(self.max_frame, bytes(trailing))
        self._http = None  # no more HTTP on it: not kept for the session's life
        self._upgraded = True

    def _refuse(self, status: int, reason: str, extra: tuple = (), head: bool = False) -> None:
        body = f"{status} {reason}\n".encode()
        self._answer(status, body, "text/plain; charset=utf-8", CACHE_NONE, extra, head=head)

    def _answer(self, status: int, body: bytes, content_type: str, cache: str, extra: tuple = (),
                head: bool = False) -> None:
        headers = [*SECURITY_HEADERS, ("Cache-Control", cache), ("Content-Type", content_type),
                   ("Content-Length", str(len(body))), *extra]
        if status >= 400:
            headers.append(("Connection", "close"))  # whatever follows a refusal is not read
        if self._http.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.done = True  # an answer is under way already: nothing more can be said
            return
        self._out += self._http.send(h11.Response(status_code=status, headers=headers,
                                                 reason=HTTPStatus(status).phrase))
        if not head:
            self._out += self._http.send(h11.Data(data=body))
        self._out += self._http.send(h11.EndOfMessage())
        if status >= 400 or self._http.our_state is h11.MUST_CLOSE:
            self.done = True
