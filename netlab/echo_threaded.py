"""Thread-per-client echo server.

The plainest correct server there is: an acceptor thread waits for
connections and every client gets a thread of its own that loops on blocking
`recv` and `sendall`. What makes it production-shaped is what bounds it:
`--max-clients` caps the threads and `--max-clients-per-ip` one host's share
of them (a client over either is accepted and closed at once, so it learns
immediately instead of hanging in the backlog),
stacks are small so thousands of threads fit, keepalive reaps peers that
vanished without a word, and stopping shuts every socket down so each
blocked thread wakes up and ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import selectors
import socket
import ssl
import threading
import time

from netlab.crypto import KEY_BYTES, address_tag
from netlab.logs import get_logger
from netlab.netutil import (
    ACCEPT_BACKOFF,
    Acceptor,
    client_ip,
    format_address,
    logged_address,
    tune_chat_socket,
)
from netlab.peraddress import DEFAULT_MAX_CLIENTS_PER_IP, AddressLimit

DEFAULT_MAX_CLIENTS = 1000
#: 256 KiB of stack per client thread is plenty for a recv/sendall loop and
#: lets 5,000 threads reserve 1.25 GiB of address space, not 40 GiB.
THREAD_STACK_SIZE = 256 * 1024
RECV_SIZE = 64 * 1024
#: A TLS client that has not finished its handshake by then is dropped.
HANDSHAKE_TIMEOUT = 10.0
#: Client threads get this long to end after their sockets are shut down; the
#: rest are daemons and go with the process (CLI.md promises an exit within 2 s).
JOIN_TIMEOUT = 1.0

log = get_logger("echo")


class _Client:
    """One connection and its counters, written only by its own thread."""

    __slots__ = ("sock", "peer", "ip", "echoed", "thread")

    def __init__(self, sock: socket.socket, peer: str, ip: str) -> None:
        self.sock = sock
        self.peer = peer
        self.ip = ip
        self.echoed = 0  # bytes received and handed back: in and out alike
        self.thread: threading.Thread | None = None


class EchoServer:
    """Echoes every byte back to its sender, one thread per client."""

    kind = "echo"

    def __init__(self, listener: socket.socket, max_clients: int = DEFAULT_MAX_CLIENTS,
                 tls: ssl.SSLContext | None = None,
                 max_clients_per_ip: int = DEFAULT_MAX_CLIENTS_PER_IP) -> None:
        self.max_clients = max_clients
        #: How the log names a client address: keyed, as the chat's, but the echo server has no
        #: key file, so a key of this run's own: the tags hold within a run, not across runs.
        self._tag = functools.partial(address_tag, secrets.token_bytes(KEY_BYTES))
        self._per_address = AddressLimit(max_clients_per_ip, log, self._tag)  # under _lock
        self.tls = tls
        self.listener = listener
        self.address = format_address(self.listener.getsockname())
        self._clients: dict[int, _Client] = {}
        self._lock = threading.Lock()
        self.stopping = False  # a plain flag: client threads read it on every request
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._started = time.monotonic()
        self._total = 0
        self._refused = 0
        self._incoming = Acceptor(listener, log)
        self._closed_echoed = 0
        self._left_at_stop: list[_Client] = []  # list.append is atomic: no lock needed
        self._acceptor = threading.Thread(target=self._accept_loop, name="echo-acceptor")

    # -- the Server interface ------------------------------------------------

    def start(self) -> None:
        self._acceptor.start()

    def stop(self, reason: str) -> None:
        if self.stopping:
            return
        log.info("stopping: %s", reason)
        self.stopping = True
        self._wake_w.send(b"\0")

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def status(self) -> dict[str, str]:
        with self._lock:
            live = list(self._clients.values())
            total, refused = self._total, self._refused
            echoed = self._closed_echoed + sum(c.echoed for c in live)
        return {
            "server": f"echo on {self.address}",
            "uptime": f"{time.monotonic() - self._started:.0f} s",
            "connections": f"{len(live)} open, {total} total, {refused} refused (max {self.max_clients})",
            "bytes": f"{echoed} in, {echoed} out",
        }

    # -- threads -------------------------------------------------------------

    def _accept_loop(self) -> None:
        """Accept until stopped; the wake-up socket interrupts the wait."""
        threading.stack_size(THREAD_STACK_SIZE)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.listener, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self.stopping:
                    for key, _ in selector.select():
                        if key.fileobj is self.listener:
                            self._accept_ready()
        except Exception:
            log.exception("acceptor crashed")
            self.stopping = True
        finally:
            self._shut_down_clients()

    def _accept_ready(self) -> None:
        # Drain the backlog: a burst of connects is served in one wake-up.
        while (accepted := self._incoming.next()) is not None:
            sock, addr = accepted
            self._admit(sock, logged_address(addr, self._tag), client_ip(addr))
        if self._incoming.starved:  # the clients keep being served; accept again later
            time.sleep(ACCEPT_BACKOFF)

    def _admit(self, sock: socket.socket, peer: str, ip: str) -> None:
        with self._lock:
            full = len(self._clients) >= self.max_clients
            # Counted from here until _forget; past the limit, logged there once per burst.
            admitted = not full and self._per_address.admit(ip)
            if admitted:
                self._total += 1
            else:
                self._refused += 1
        if full:
            log.info("refused %s: %d clients already connected (--max-clients)", peer, self.max_clients)
        if not admitted:
            sock.close()
            return
        client = _Client(sock, peer, ip)
        try:
            sock.setblocking(True)
            tune_chat_socket(sock)
        except OSError as exc:  # reset before we got to it
            log.info("dropped %s: %s", peer, exc.strerror or exc)
            self._forget(client)
            return
        # Daemon: a thread still finishing its last send must not hold up the exit.
        client.thread = threading.Thread(target=self._serve, args=(client,), name=f"echo {peer}", daemon=True)
        with self._lock:
            self._clients[id(client)] = client
        log.info("connected %s", peer)
        try:
            client.thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of threads or memory
            log.warning("dropped %s: %s", peer, exc)
            self._forget(client)

    def _serve(self, client: _Client) -> None:
        reason = "closed by peer"
        try:
            if self.tls is not None:
                client.sock = self._handshake(client.sock, client.peer)
            recv, sendall = client.sock.recv, client.sock.sendall
            # The hot loop. A busy client leaves by itself once stopping; an idle
            # one is woken from recv by the acceptor's shutdown of its socket.
            while not self.stopping:
                data = recv(RECV_SIZE)
                if not data:
                    break
                client.echoed += len(data)  # first, so a client that has its echo sees it in status
                sendall(data)
                # Fairness. sendall returns at once, with this thread still on the
                # CPU, and it would win the GIL back from the thread the release
                # just woke, again and again: with a thousand clients some waited
                # seconds (p99.9 1.5 s). Yielding the CPU lets the woken thread run;
                # measured, it also raised throughput (docs/performance.md).
                os.sched_yield()
        except OSError as exc:
            reason = f"error: {exc.strerror or exc}"
        finally:
            self._forget(client)
            if self.stopping:
                self._left_at_stop.append(client)  # logged by the acceptor, see below
            else:
                log.info("disconnected %s (%s, %d bytes echoed)", client.peer, reason, client.echoed)

    def _forget(self, client: _Client) -> None:
        """Close a client's socket and give up its places."""
        client.sock.close()
        with self._lock:
            self._clients.pop(id(client), None)  # not there yet if it never got a thread
            self._per_address.release(client.ip)
            self._closed_echoed += client.echoed

    def _handshake(self, sock: socket.socket, peer: str) -> ssl.SSLSocket:
        """TLS in the client's own thread: a slow handshake holds up no one else."""
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls_sock = self.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", peer, getattr(exc, "reason", None) or exc)
            raise
        tls_sock.settimeout(None)
        return tls_sock

    def _shut_down_clients(self) -> None:
        """Wake every blocked client thread, wait for them, then report stopped.

        A thousand threads each logging its own last line would queue on the
        logging lock and the GIL for seconds; the acceptor writes those lines
        itself once the threads are gone.
        """
        self.listener.close()
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            with contextlib.suppress(OSError):  # already gone
                client.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for client in clients:
            if client.thread is not None:
                client.thread.join(max(0.0, deadline - time.monotonic()))
        for client in self._left_at_stop:
            log.info("disconnected %s (stopping, %d bytes echoed)", client.peer, client.echoed)
        self._wake_r.close()
        self._wake_w.close()
        log.info("stopped")
        self._stopped.set()
