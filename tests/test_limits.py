"""Both servers when the machine runs short: out of file descriptors."""

from __future__ import annotations

import logging
import socket

import pytest
from procs import WAIT, Netlab, assert_idles

from netlab.netutil import Acceptor, open_listener


def served(kind: str, sock: socket.socket) -> bool:
    """Does the server answer on this connection (chat: its welcome; echo: an echo)?"""
    if kind == "echo":
        sock.sendall(b"hi\n")
        return sock.recv(16) == b"hi\n"
    return len(sock.recv(4)) == 4


@pytest.mark.alone  # out of descriptors; then the process idles
@pytest.mark.parametrize("kind", ["chat", "echo"])
def test_out_of_descriptors_a_server_accepts_later_and_serves_everyone(tmp_path, kind):
    server = Netlab(kind, "serve", "--port", "0", "--no-repl", "--data-dir", str(tmp_path),
                    "--max-clients-per-ip", "1000", open_files=100)  # 150 sockets from one host
    try:
        port = server.listening_port()
        server.err.wait_for(r"needs about \d+ open files but the limit is 100")
        socks = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(150)]
        server.err.wait_for(r"accept failed: Too many open files; trying again every 0\.1 s")
        assert_idles(server.proc.pid)  # waits between tries: the listener stays readable
        for sock in socks[:90]:  # the first ones were accepted: their descriptors come free
            sock.close()
        assert all(served(kind, sock) for sock in socks[90:])  # those that waited, too
        server.err.wait_for(r"accepting again after \d+ failed attempt")
        # Retrying every 0.1 s, not at once: a line or two, not thousands.
        assert server.err.text().count("accept failed") <= 3
        for sock in socks[90:]:
            sock.close()
    finally:
        server.kill()


def test_accepting_on_a_closed_listener_gives_up_at_once():
    # A stop can close the listener while its readiness is still to be handled.
    listener = open_listener("127.0.0.1", 0)
    incoming = Acceptor(listener, logging.getLogger("test"))
    listener.close()
    assert incoming.next() is None and not incoming.starved
