"""--max-clients-per-ip on both servers: one host cannot take every place.

Loopback is the whole of 127/8 on Linux: a client socket bound to 127.0.0.2 is
another host as the server sees it.
"""

from __future__ import annotations

import socket

import pytest
from chatclient import connect
from logtags import TAG, tag_of
from procs import WAIT, Netlab, serve

from netlab.netutil import client_ip

OTHER_HOST = "127.0.0.2"
LIMIT_LINES = r"--max-clients-per-ip\)"


def test_the_connection_past_the_limit_gets_server_full_and_other_hosts_do_not(start_chat, tmp_path):
    server, port = start_chat("--max-clients-per-ip", "3")
    tag = tag_of(tmp_path / "data", "127.0.0.1")  # how the log names this host
    held = [connect(port) for _ in range(3)]  # unauthenticated: they count all the same
    extra = connect(port, welcome=False)
    assert "3" in extra.expect_fatal("server_full")["message"]
    with connect(port, source=OTHER_HOST) as elsewhere:  # welcomed: another address
        elsewhere.send("ping", id="x")
        elsewhere.expect("pong", id="x")
    server.err.wait_for(rf"refusing connections from {tag}: 3 open \({LIMIT_LINES}")
    gone = held.pop()
    local = gone.local_port
    gone.close()
    server.err.wait_for(rf"disconnected {tag}:{local} ")
    held.append(connect(port))  # its place came free: welcomed
    server.err.wait_for(rf"refused 1 connection\(s\) from {tag} while it had 3 open \({LIMIT_LINES}")
    for client in held:
        client.close()


def test_a_burst_of_refused_connections_is_two_log_lines(start_chat):
    server, port = start_chat("--max-clients-per-ip", "2")
    held = [connect(port) for _ in range(2)]
    for _ in range(50):
        with connect(port, welcome=False) as refused:
            refused.expect_fatal("server_full")
    held.pop().close()
    server.err.wait_for(rf"refused 50 connection\(s\) from {TAG} while it had 2 open")
    about_the_limit = [line for line in server.err.lines if "--max-clients-per-ip" in line]
    assert len(about_the_limit) == 2, about_the_limit
    assert not [line for line in server.err.lines if "server_full" in line or "refused ip-" in line]
    held[0].close()


def test_echo_closes_the_connection_past_the_limit_at_once(data_dir):
    server, port = serve("echo", data_dir, "--no-repl", "--max-clients-per-ip", "3")
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(3)]
        for sock in held:
            sock.sendall(b"hi")
            assert sock.recv(2) == b"hi"
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as extra:
            assert extra.recv(1) == b""  # accepted, then closed at once
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT,
                                      source_address=(OTHER_HOST, 0)) as elsewhere:
            elsewhere.sendall(b"yo")
            assert elsewhere.recv(2) == b"yo"
        for sock in held:  # still served
            sock.sendall(b"ok")
            assert sock.recv(2) == b"ok"
        match, _ = server.err.wait_for(rf"refusing connections from ({TAG}): 3 open \({LIMIT_LINES}")
        for sock in held:
            sock.close()
        server.err.wait_for(rf"refused 1 connection\(s\) from {match[1]} while it had 3 open")
    finally:
        server.kill()


@pytest.mark.parametrize("kind", ["chat", "echo"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_the_limit_is_a_count(tmp_path, kind, value):
    server = Netlab(kind, "serve", "--no-repl", "--port", "0", "--data-dir", str(tmp_path / "data"),
                    "--max-clients-per-ip", value)
    try:
        assert server.wait() == 2
        server.err.wait_for(r"Invalid value for '--max-clients-per-ip'")
    finally:
        server.kill()


def test_an_ipv4_mapped_address_is_its_ipv4_address():
    assert client_ip(("::ffff:192.0.2.7", 1, 0, 0)) == "192.0.2.7"
    assert client_ip(("2001:db8::1", 1, 0, 0)) == "2001:db8::1"
    assert client_ip(("192.0.2.7", 1)) == "192.0.2.7"

