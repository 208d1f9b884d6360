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
from collections.abc import Callable, Iterator, Mapping
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
                transports: tuple[str, ...],
                environ: Mapping[str, str] | None = None) -> Iterator[dict[str, Target]]:
    """A target for each transport ("tcp", "ws"): the given port (for one transport), or a
    server started just for this run (in `environ`, default ours), with its web port when "ws"
    is asked for. A server that does not start ends the run with its own last line."""
    if port is not None:
        (transport,) = transports
        wrap = tls_wrap(host, None) if tls else plain
        yield {transport: Target(host, port, wrap, websocket=transport == "ws")}
        return
    # Its errors in a file, not a pipe: nobody reads them while it runs.
    with tempfile.TemporaryDirectory(prefix="netlab-bench-") as data_dir, \
            tempfile.TemporaryFile("w+") as errors:
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
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=environ)
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
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(SETUP_TIMEOUT)  # its output closed: it is exiting
                errors.seek(0)
                last = errors.read().strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                why = last[0].removeprefix("netlab: ")
                raise SystemExit(f"netlab: the {kind} server did not start: {why}")
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
    node: int = 0  # with --bus-nodes: which node (server) of the bus it is connected to
    buffer: bytearray = field(default_factory=bytearray)
    in_flight: int = 0
    sent: int = 0
    refused: int = 0  # `say` answered by an error (rate_limited) instead of a message
    acknowledged: int = 0  # its own messages come back (stored, with their seq)

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


def join_rooms(target: Target, conns: list[BenchConnection], rooms: int, name: str = "bench") -> float:
    """Client i talks in `NAME-(i % rooms)`: the first of each room creates it (or joins it,
    left by an earlier run), then the others join. Returns seconds."""
    begin = time.perf_counter()
    for i, conn in enumerate(conns):
        conn.room = f"{name}-{i % rooms}"

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
