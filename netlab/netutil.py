"""Socket set-up shared by both servers and the clients."""

from __future__ import annotations

import errno
import ipaddress
import logging
import resource
import socket
from collections.abc import Callable

#: The kernel caps this at net.core.somaxconn (4096 on current Linux); a
#: burst of a thousand connects must wait in the backlog, not be reset.
LISTEN_BACKLOG = 4096
#: A peer that vanished without FIN or RST is found after about two minutes
#: of silence instead of holding its connection forever.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 6
#: After accept fails for want of descriptors or memory, try again this much later:
#: the listener stays readable, so trying again at once would spin.
ACCEPT_BACKOFF = 0.1
#: The accept() errors that only time cures.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: The accept() errors that are one connection's problem (accept(2): a pending network
#: error on the new socket, or a firewall's refusal): skip it and take the next.
ONE_CONNECTION = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
    errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH,
})
#: Descriptors a server needs besides one per client: listener, log, data files, wake-ups.
SPARE_FDS = 64


def open_listener(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening socket for host:port (IPv4 or IPv6).

    Raises OSError (EADDRINUSE, EADDRNOTAVAIL, ...) for the caller to report.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener


def unbracket(host: str) -> str:
    """An IPv6 address as the listening line writes it ([::1]) is the address itself."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def format_address(address: tuple) -> str:
    """HOST:PORT, with IPv6 hosts in brackets as CLI.md's listening line wants."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical_ip(host: str) -> str:
    """An IP address in the one form the servers count and tag it: an IPv4 client of a
    dual-stack listener (::ffff:192.0.2.7) is the IPv4 host it is, not another one, and an
    IPv6 address is written as `ipaddress` writes it. ValueError if `host` is no address."""
    address = ipaddress.ip_address(host)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def client_ip(address: tuple) -> str:
    """The client's address as limits and throttles count it and the log tags it (canonical_ip;
    the kernel writes an IPv4 address in its one form already)."""
    host = address[0]
    return canonical_ip(host) if ":" in host else host


def logged_address(address: tuple, tag: Callable[[str], str]) -> str:
    """TAG:PORT, how log lines name a client's connection: its address's keyed tag (no address
    in clear on disk), and its port, so that one connection's lines can be followed."""
    return f"{tag(client_ip(address))}:{address[1]}"


def tune_chat_socket(sock: socket.socket) -> None:
    """What every chat connection wants of TCP, at either end: each frame sent at once
    (no Nagle delay: a line typed is a frame), and keepalive probes, so that a peer gone
    without a FIN (a power cut) ends a wait instead of holding it for ever."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def raise_fd_limit(max_clients: int, log: logging.Logger) -> None:
    """Lift the soft limit on open files to what `max_clients` needs, if the hard one allows;
    warn when it does not (each client is a descriptor, so past the limit accept fails)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_clients + SPARE_FDS
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        log.warning("--max-clients %d needs about %d open files but the limit is %d (ulimit -n): "
                    "connections past that wait until others close", max_clients, wanted, new)


class Acceptor:
    """`accept` for a server's loop, where a few failures are not the connection's fault.

    Out of descriptors or memory, the listener stays readable and trying again at once
    would spin: `starved` tells the caller to wait ACCEPT_BACKOFF. A run of such failures
    costs two log lines, not one per attempt.
    """

    def __init__(self, listener: socket.socket, log: logging.Logger) -> None:
        self.listener = listener
        self._log = log
        self._failures = 0  # in the current run

    @property
    def starved(self) -> bool:
        return self._failures > 0

    def next(self) -> tuple[socket.socket, tuple] | None:
        """A waiting connection, or None: none waits, or the process is `starved`."""
        while True:
            try:
                accepted = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as exc:
                if exc.errno in ONE_CONNECTION:  # e.g. reset before it was accepted
                    self._log.info("accept failed: %s", exc.strerror or exc)
                    continue
                if exc.errno not in OUT_OF_RESOURCES:  # the listener itself (closed: EBADF)
                    self._log.warning("accept failed: %s", exc.strerror or exc)
                    return None
                if not self._failures:
                    self._log.warning("accept failed: %s; trying again every %g s",
                                      exc.strerror or exc, ACCEPT_BACKOFF)
                self._failures += 1
                return None
            if self._failures:
                self._log.info("accepting again after %d failed attempt(s)", self._failures)
                self._failures = 0
            return accepted


def wake_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of non-blocking sockets: one byte written to the second wakes a
    select() on the first."""
    pair = socket.socketpair()
    for sock in pair:
        sock.setblocking(False)
    return pair
