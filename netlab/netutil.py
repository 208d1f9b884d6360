"""Socket set-up shared by both servers and the clients."""

from __future__ import annotations

import socket

#: The kernel caps this at net.core.somaxconn (4096 on current Linux); a
#: burst of a thousand connects must wait in the backlog, not be reset.
LISTEN_BACKLOG = 4096
#: A peer that vanished without FIN or RST is found after about two minutes
#: of silence instead of holding its connection forever.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 6


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


def format_address(address: tuple) -> str:
    """HOST:PORT, with IPv6 hosts in brackets as CLI.md's listening line wants."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def enable_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
