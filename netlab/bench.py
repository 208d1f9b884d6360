"""Load generators: `netlab bench echo` and `netlab bench chat`.

Both drive many connections from one selectors loop (no thread per client,
so the generator itself scales), measure end-to-end latency per request or
per delivery, and print throughput with p50/p99/p99.9. Without `--port`
they start the server themselves, in a subprocess with a throw-away data
directory, so a figure needs nothing set up. For side-by-side ratios against
reference servers use ../shared/bench (docs/performance.md says how).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from netlab import wire as p
from netlab.bench_report import Meter, latency_line
from netlab.bench_wire import (
    LENGTH_PREFIXED,
    ClientWire,
    WebSocketClient,
    WireDecoder,
    upgrade,
)
from netlab.connect import Peer, WrongPeer, first_frame, plain
from netlab.wire.payload import encode_payload

LISTENING = re.compile(r"listening on (?:\[[^\]]+\]|[^\s:]+):(\d+)")
WEB_CLIENT = re.compile(r"web client at https?://(?:\[[^\]]+\]|[^\s:/]+):(\d+)/")
#: Longest wait for a connection, a TLS handshake or an answer while setting up: a
#: server that never answers (not a netlab server, a wrong port) ends the run.
SETUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Target(Peer):
    """The server under load: where, how each socket is wrapped, many connections at once;
    `pid` when it was started for this run (its CPU time and memory can then be read)."""

    pid: int | None = None
    #: Sessions over WebSocket, this port being a web port (`/ws`), rather than over TCP.
    websocket: bool = False

    @property
    def transport(self) -> str:
        return "WebSocket" if self.websocket else "TCP"

    def connect(self, count: int) -> list[socket.socket]:
        """`count` TCP connections (blocking, with SETUP_TIMEOUT), or one clear line and exit 1."""
        return self._open(count, upgraded=False)[0]

    def sessions(self, count: int, markers: Callable[[int], bytes] = lambda i: b"") -> list[BenchConnection]:
        """`count` connections ready for the chat's frames (over WebSocket: upgraded, what came
        after the 101 kept in their buffers); `markers(i)` is the i-th one's marker."""
        socks, after = self._open(count, upgraded=self.websocket)
        wire = WebSocketClient if self.websocket else lambda: LENGTH_PREFIXED
        return [BenchConnection(sock, markers(i), wire=wire(), buffer=bytearray(rest))
                for i, (sock, rest) in enumerate(zip(socks, after, strict=True))]

    def _open(self, count: int, upgraded: bool) -> tuple[list[socket.socket], list[bytes]]:
        """The sockets, and with `upgraded` (the WebSocket handshake done on each) what came
        after each 101; or one clear line and exit 1."""
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = self.open(SETUP_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks.append(sock)
            return socks, upgrade(socks, self.address) if upgraded else [b""] * count
        except (WrongPeer, OSError) as exc:
            for sock in socks:
                sock.close()
            if isinstance(exc, WrongPeer):
                raise SystemExit(f"netlab: {exc}") from None
            raise SystemExit(f"netlab: cannot connect to {self.address}: {reason(exc)}") from None


def reason(exc: OSError) -> str:
    """What went wrong, in words (a timeout has no strerror)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {SETUP_TIMEOUT:g} s"
    return exc.strerror or str(exc)


def tls_wrap(host: str, ca: Path | None) -> Callable[[socket.socket], socket.socket]:
    """Verify against `ca`; with a server not started here (no `ca`), trust it blindly."""
    from netlab.tls import client_context

    context = client_context(ca, insecure=ca is None)
    return lambda sock: context.wrap_socket(sock, server_hostname=host)


@contextlib.contextmanager
def server_for(kind: str, host: str, port: int | None, extra: list[str], tls: bool) -> Iterator[Target]:
    """The target: the given port, or a server started just for this run (over TCP)."""
    with servers_for(kind, host, port, extra, tls, ("tcp",)) as targets:
        yield targets["tcp"]


@contextlib.contextmanager
def servers_for(kind: str, host: str, port: int | None, extra: list[str], tls: bool,
                transports: tuple[str, ...]) -> Iterator[dict[str, Target]]:
    """A target for each transport ("tcp", "ws"): the given port (for one transport), or a
    server started just for this run, with its web port when "ws" is asked for."""
    if port is not None:
        (transport,) = transports
        wrap = tls_wrap(host, None) if tls else plain
        yield {transport: Target(host, port, wrap, websocket=transport == "ws")}
        return
    with tempfile.TemporaryDirectory(prefix="netlab-bench-") as data_dir:
        wrap = plain
        if tls:
            from netlab.tls import make_certificate

            cert, key = make_certificate(Path(data_dir) / "tls", (host,))
            extra = [*extra, "--tls-cert", str(cert), "--tls-key", str(key)]
            wrap = tls_wrap(host, cert)
        if "ws" in transports:
            extra = [*extra, "--web-port", "0"]
        command = [sys.executable, "-m", "netlab", kind, "serve", "--no-repl", "--host", host,
                   "--port", "0", "--data-dir", data_dir, *extra]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            ports = {}
            for line in proc.stdout:
                if match := LISTENING.search(line):
                    ports["tcp"] = int(match.group(1))
                elif match := WEB_CLIENT.search(line):
                    ports["ws"] = int(match.group(1))
                if all(transport in ports for transport in transports):
                    break
            else:
                raise SystemExit(f"the {kind} server did not start")
            yield {transport: Target(host, ports[transport], wrap, pid=proc.pid, websocket=transport == "ws")
                   for transport in transports}
        finally:
            proc.terminate()
            proc.wait(10)


# -- echo ------------------------------------------------------------------------------


def run_echo(target: Target, conns: int, size: int, duration: float) -> None:
    """Ping-pong: each connection sends `size` bytes, waits for all of them, repeats."""
    socks = target.connect(conns)
    payload = os.urandom(size)
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, int] = {}
    started_at: dict[socket.socket, int] = {}
    latencies: list[int] = []
    served: set[socket.socket] = set()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sock.sendall(payload)
        pending[sock] = size
        started_at[sock] = time.perf_counter_ns()
    meter = Meter(target.pid)
    begin = time.perf_counter()
    deadline = begin + duration
    while time.perf_counter() < deadline:
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            try:
                data = receive(sock)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                data = b""
            if not data:
                raise SystemExit(f"netlab: the echo server at {target.address} closed a connection "
                                 "(more than its --max-clients?)")
            pending[sock] -= len(data)
            if pending[sock] == 0:
                now = time.perf_counter_ns()
                latencies.append(now - started_at[sock])
                served.add(sock)
                started_at[sock] = now
                pending[sock] = size
                sock.send(payload)  # small payloads fit the empty socket buffer
    elapsed = time.perf_counter() - begin
    for sock in socks:
        sock.close()
    print(f"echo: {conns} connections, {size} bytes, {elapsed:.1f} s")
    print(f"  {len(latencies) / elapsed:,.0f} requests/s  {latency_line(latencies)}")
    print(f"  connections served at least once: {len(served)} of {conns}")
    meter.report(elapsed, {"requests": len(latencies)})


# -- chat ------------------------------------------------------------------------------


@dataclass
class BenchConnection:
    """One benchmark connection: a socket, its wire (TCP or WebSocket) and what it has received."""

    sock: socket.socket
    marker: bytes  # b'"from":"NAME"': how this client recognises its own messages
    room: str | None = None  # with --rooms: the room it talks in (version 2); None: general
    buffer: bytearray = field(default_factory=bytearray)
    in_flight: int = 0
    sent: int = 0
    refused: int = 0  # `say` answered by an error (rate_limited) instead of a message

    wire: ClientWire = LENGTH_PREFIXED  # its transport's framing

    def frames(self) -> Iterator[bytes]:
        """Whole payloads received so far; the full JSON parse is left to those that need it."""
        return self.wire.payloads(self.buffer)

    def encode(self, frame: dict) -> bytes:
        return self.wire.frame(encode_payload(frame))


def answer(conn: BenchConnection, types: set[str]) -> dict:
    """The next frame of one of `types` or an `error`, on a blocking socket with SETUP_TIMEOUT;
    the frames before it (and those that came with it) are skipped. Read through the
    connection's own buffer, so that no frame of the run is cut in two."""
    while True:
        found = None
        for payload in conn.frames():
            frame = p.parse_payload(payload)
            if found is None and (frame["type"] in types or frame["type"] == "error"):
                found = frame
        if found is not None:
            return found
        data = conn.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        conn.buffer += data


def register_all(target: Target, conns: list[BenchConnection], prefix: str, protocol: int,
                 op: str = "register", accounts: int | None = None) -> float:
    """Register (or with `op` "login", log in) every connection concurrently as `PREFIXi`, or
    with `accounts` as `PREFIX(i % accounts)`; the server hashes in parallel. Returns seconds.

    Anything but a netlab chat server answering (a refusal, silence, a wrong
    port, no version 2 when it is asked for) ends the run with one line naming
    it; no `register` goes out before its connection's `welcome`.
    """
    begin = time.perf_counter()
    try:
        for i, conn in enumerate(conns):
            # The only frame until we ask (over WebSocket, it may have come with the 101).
            welcome = first_frame(target, conn.sock, WireDecoder(conn.wire, conn.buffer))
            refused(welcome)
            if protocol not in welcome.get("versions", [1]):
                raise SystemExit(f"netlab: the chat server at {target.address} does not speak protocol "
                                 f"version {protocol}, which --rooms needs")
            frame = {"type": op, "username": f"{prefix}{i if accounts is None else i % accounts}",
                     "password": "bench-password"}
            conn.buffer.clear()  # the welcome, read
            conn.sock.sendall(conn.encode(frame if protocol == 1 else {**frame, "protocol": protocol}))
        last = "users" if protocol == 1 else "rooms"  # the last frame of a login
        for conn in conns:
            if (frame := answer(conn, {last}))["type"] == "error":
                raise SystemExit(f"netlab: {op} at {target.address} failed: "
                                 f"{frame.get('code')}: {frame.get('message')}")
    except WrongPeer as exc:
        raise SystemExit(f"netlab: {exc}") from None
    except (OSError, p.ProtocolError) as exc:
        why = reason(exc) if isinstance(exc, OSError) else exc.message
        raise SystemExit(f"netlab: {target.address} does not answer as a netlab chat server: {why}") from None
    return time.perf_counter() - begin


def join_rooms(target: Target, conns: list[BenchConnection], rooms: int) -> float:
    """Client i talks in `bench-(i % rooms)`: the first of each room creates it (or joins it,
    left by an earlier run), then the others join. Returns seconds."""
    begin = time.perf_counter()
    for i, conn in enumerate(conns):
        conn.room = f"bench-{i % rooms}"

    def ask(batch: list[BenchConnection], request: str) -> list[BenchConnection]:
        """Send `request` for each one's room; those answered `room_exists` are returned."""
        for conn in batch:
            conn.sock.sendall(conn.encode({"type": request, "room": conn.room}))
        existing = []
        for conn in batch:
            frame = answer(conn, {"joined"})
            if frame.get("code") == "room_exists":
                existing.append(conn)
            elif frame["type"] == "error":
                raise SystemExit(f"netlab: {request} {conn.room} at {target.address} failed: "
                                 f"{frame.get('code')}: {frame.get('message')}")
        return existing

    ask(ask(conns[:rooms], "create"), "join")
    ask(conns[rooms:], "join")
    return time.perf_counter() - begin


def refused(first: dict) -> None:
    """A server that refuses a connection (server_full, most likely) ends the run, naming why."""
    if first["type"] == "error":
        raise SystemExit(f"netlab: the chat server refused a connection: {first.get('code')}: "
                         f"{first.get('message')}")


def receive(sock: socket.socket) -> bytes:
    """What is readable, including what TLS has already decrypted (no event announces it)."""
    data = sock.recv(1 << 20)
    while isinstance(sock, ssl.SSLSocket) and (waiting := sock.pending()):
        data += sock.recv(waiting)
    return data


def run_chat(target: Target, clients: int, senders: int, window: int, rate: float,
             duration: float, storm: int, rooms: int = 1, protocol: int = 1) -> dict[str, float]:
    """N clients, S of them sending, in general (version 1 sessions) or (version 2) spread over
    R rooms with senders in each; every delivery's latency is measured. Returns its deliveries/s
    and, for a server started here, deliveries per server CPU-second."""
    prefix = f"b{os.getpid() % 100000}x{int(time.time()) % 100000}{target.transport[0].lower()}u"
    conns = target.sessions(clients, lambda i: f'"from":"{prefix}{i}"'.encode())
    registration = register_all(target, conns, prefix, protocol)
    print(f"chat: {clients} clients registered in {registration:.2f} s "
          f"({clients / registration:,.0f}/s, password hashing bound)")
    in_rooms = f" in {rooms} room{'s' if rooms > 1 else ''}" if protocol == 2 else ""
    if protocol == 2:
        print(f"chat: {clients} clients{in_rooms} in {join_rooms(target, conns, rooms):.2f} s")
    selector = selectors.DefaultSelector()
    for conn in conns:
        conn.sock.setblocking(False)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    senders_list = conns[:senders]
    latencies: list[int] = []
    stormers = target.sessions(storm) if storm else []
    for i, stormer in enumerate(stormers):
        stormer.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            storm_frame = {"type": "register", "username": f"{prefix}s{i}", "password": "bench-password"}
            stormer.sock.send(stormer.encode(storm_frame))

    def send(conn: BenchConnection, due: float | None = None) -> None:
        """`due`: when an open-loop message was due. Its latency counts from then, not from
        when a busy loop got round to sending it, or the lag would hide (coordinated omission)."""
        stamp = time.perf_counter_ns() if due is None else round(due * 1e9)  # one clock, two units
        say = {"type": "say", "text": "x" * 32, "id": str(stamp)}
        conn.sock.send(conn.encode(say if conn.room is None else {**say, "room": conn.room}))
        conn.in_flight += 1
        conn.sent += 1

    meter = Meter(target.pid)
    begin = time.perf_counter()
    deadline = begin + duration
    interval = senders / rate if rate else 0.0
    next_send = begin
    if not rate:
        for conn in senders_list:
            for _ in range(window):
                send(conn)
    turn = 0
    while (now := time.perf_counter()) < deadline:
        if rate and now >= next_send:
            send(senders_list[turn % senders], next_send)
            turn += 1
            next_send += interval / senders
            continue
        for key, _ in selector.select(max(0.0, next_send - now) if rate else 0.1):
            conn = key.data
            try:
                data = receive(conn.sock)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                data = b""
            if not data:
                raise SystemExit(f"netlab: the chat server at {target.address} closed a connection")
            conn.buffer += data
            received = time.perf_counter_ns()
            for payload in conn.frames():
                at = payload.find(b'"id":"')
                if not payload.startswith(b'{"type":"message"') or at < 0:
                    if payload.startswith(b'{"type":"error"') and conn.in_flight:
                        conn.in_flight -= 1  # that sender's slot is lost: counted, not resent
                        conn.refused += 1
                    continue
                stamp = int(payload[at + 6:payload.index(b'"', at + 6)])
                latencies.append(received - stamp)
                if conn.in_flight and conn.marker in payload:
                    conn.in_flight -= 1
                    if not rate:
                        send(conn)
    elapsed = time.perf_counter() - begin
    refused = sum(conn.refused for conn in senders_list)
    sent = sum(conn.sent for conn in senders_list) - refused
    mode = f"rate {rate:g} msgs/s" if rate else f"window {window}"
    tls = " over TLS" if isinstance(conns[0].sock, ssl.SSLSocket) else ""
    print(f"chat: {clients} clients, {senders} senders{in_rooms}, {mode}, {elapsed:.1f} s, "
          f"{target.transport}{tls}" + (f", beside {storm} registrations" if storm else ""))
    print(f"  {sent / elapsed:,.0f} messages/s in, {len(latencies) / elapsed:,.0f} deliveries/s")
    print(f"  {latency_line(latencies)}")
    server_cpu = meter.report(elapsed, {"deliveries": len(latencies), "messages": sent})
    for conn in conns + stormers:
        conn.sock.close()
    if refused:
        raise SystemExit(f"netlab: the server answered {refused} messages with an error (its flood "
                         "control, unless it runs with --rate-limit 0): these figures are not its throughput")
    figures = {"deliveries/s": len(latencies) / elapsed}
    if server_cpu:
        figures["deliveries per server CPU-second"] = len(latencies) / server_cpu
    return figures
