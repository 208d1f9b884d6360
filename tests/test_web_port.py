"""The web port over real sockets: HTTP routes and refusals, the WebSocket handshake and its
Origin, WebSocket sessions chatting with TCP ones, the close codes, slow requests.

HTTP is written by hand on a raw socket; WebSocket through the `websockets` sync client,
a real client library (no mock), or by hand where a client library would refuse to send
what a hostile one sends.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl

import pytest
from chatclient import PASSWORD, registered
from procs import WAIT, wait_file_contains
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect


def web_port(server) -> int:
    match, _ = server.out.wait_for(r"web client at http://127\.0\.0\.1:(\d+)/")
    return int(match.group(1))


@pytest.fixture
def web(start_chat):
    """A chat server with its web port: (server, tcp port, web port)."""
    server, port = start_chat("--web-port", "0", "--rate-limit", "0")
    return server, port, web_port(server)


def http(port: int, request: bytes) -> bytes:
    """Everything the server answers to `request` until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        return answer_on(sock, request)


def answer_on(sock: socket.socket, request: bytes) -> bytes:
    """Everything the server answers to `request` on `sock` until it closes or goes quiet."""
    sock.sendall(request)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        if b"Connection: close" not in data and data.count(b"\r\n\r\n") >= request.count(b"\r\n\r\n"):
            head, _, body = data.rpartition(b"\r\n\r\n")
            length = re.findall(rb"Content-Length: (\d+)", head)
            if length and len(body) >= int(length[-1]):
                break
    return data


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@contextlib.contextmanager
def session(port: int, origin: str | None = None):
    """A WebSocket session, its welcome read."""
    with ws_connect(f"ws://127.0.0.1:{port}/ws", origin=origin, compression=None, max_size=None,
                    open_timeout=WAIT, close_timeout=WAIT) as ws:
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "welcome"
        yield ws


def expect(ws, type_: str) -> dict:
    """The next frame of `type_`, skipping presence and the login's pages."""
    while True:
        frame = json.loads(ws.recv(timeout=WAIT))
        if frame["type"] == type_:
            return frame


def test_healthz_answers_ok_with_the_security_headers(web):
    _, _, port = web
    answer = http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status(answer) == 200 and answer.endswith(b"\r\n\r\nok\n")
    for header in (b"Content-Security-Policy: default-src 'none'; script-src 'self'",
                   b"frame-ancestors 'none'", b"X-Content-Type-Options: nosniff",
                   b"Referrer-Policy: no-referrer", b"Cache-Control: no-store"):
        assert header in answer


def test_many_requests_in_one_write_are_answered_in_order(web):
    _, _, port = web
    answer = http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    assert answer.count(b"HTTP/1.1 200 OK") == 3


@pytest.mark.parametrize(("request_", "code"), [
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"DELETE /ws HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"BREW /pot HTCPCP/1.0\r\n\r\n", 400),
])
def test_other_requests_are_refused_and_the_connection_closed(web, request_, code):
    _, _, port = web
    answer = http(port, request_)
    assert status(answer) == code
    assert b"Content-Security-Policy" in answer and b"Connection: close" in answer
    if code == 405:
        assert b"Allow: GET, HEAD" in answer


def test_a_header_block_that_keeps_coming_gets_431(web):
    _, _, port = web
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(100):
            try:
                sock.sendall(b"X-Pad: " + b"a" * 200 + b"\r\n")
            except OSError:  # closed after the answer: the rest was not read
                break
        assert status(sock.recv(65536)) == 431


def test_a_handshake_from_a_foreign_origin_is_refused_with_403(web):
    _, _, port = web
    with pytest.raises(InvalidStatus) as refused, session(port, origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403


def test_the_pages_own_origin_and_web_origin_ones_are_accepted(start_chat):
    server, _ = start_chat("--web-port", "0", "--web-origin", "https://chat.example.org")
    port = web_port(server)
    for origin in (f"http://127.0.0.1:{port}", "https://chat.example.org", None):
        with session(port, origin=origin):
            pass
    with pytest.raises(InvalidStatus), session(port, origin="https://other.example.org"):
        pass


def test_a_websocket_and_a_tcp_session_chat_in_one_room(web):
    _, tcp_port, port = web
    with session(port, origin=f"http://127.0.0.1:{port}") as ws, registered(tcp_port, "tom") as tom:
        ws.send(json.dumps({"type": "register", "username": "wendy", "password": PASSWORD, "protocol": 2}))
        assert expect(ws, "ok")["username"] == "wendy"
        tom.say("hello from tcp")
        assert expect(ws, "message")["text"] == "hello from tcp"
        ws.send(json.dumps({"type": "say", "text": "hello from the browser"}))
        frame = tom.expect("message")
        assert (frame["from"], frame["text"]) == ("wendy", "hello from the browser")
        ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert expect(ws, "pong")["id"] == "p"
        assert ws.ping(b"are you there").wait(WAIT)  # a WebSocket ping: the server answers it itself


@pytest.mark.parametrize(("message", "code", "close"), [
    (b'{"type":"ping"}', "bad_frame", 1008),  # binary
    ('{"type":"ping"', "bad_frame", 1008),  # text, not JSON
    (json.dumps({"type": "say", "text": "x" * 70000}), "frame_too_large", 1009),
    (["x" * 40000, "y" * 40000], "frame_too_large", 1009),  # fragments under max_frame, not together
])
def test_a_fatal_fault_is_an_error_then_its_close_code(web, message, code, close):
    _, _, port = web
    with session(port) as ws:
        ws.send(message)
        error = expect(ws, "error")
        assert (error["code"], error["fatal"]) == (code, True)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
        assert ws.close_code == close


def test_auth_timeout_closes_a_websocket_session_with_1008(start_chat):
    server, _ = start_chat("--web-port", "0", "--auth-timeout", "1")
    with session(web_port(server)) as ws:
        assert expect(ws, "error")["code"] == "auth_timeout"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
        assert ws.close_code == 1008


def test_shutdown_closes_websocket_sessions_with_1001(web):
    server, _, port = web
    with session(port) as ws:
        server.signal()
        assert expect(ws, "shutdown")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
        assert ws.close_code == 1001
    assert server.wait() == 0


def test_a_client_close_is_answered_and_the_session_ends(web):
    server, _, port = web
    with session(port) as ws:
        ws.close(1000)
        assert ws.close_code == 1000  # the server's reply came
    server.err.wait_for(r"disconnected .* \(closed by peer\)")


def test_an_unfinished_http_request_is_dropped_at_the_auth_timeout(start_chat):
    server, _ = start_chat("--web-port", "0", "--auth-timeout", "1")
    port = web_port(server)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert status(answer) == 408 and b"auth_timeout" not in answer  # HTTP, no chat frame
    assert "auth timeout" not in server.err.text()  # an HTTP connection, not a session


def test_a_web_connection_counts_against_the_per_address_limit(start_chat):
    server, tcp_port = start_chat("--web-port", "0", "--max-clients-per-ip", "1")
    port = web_port(server)
    with registered(tcp_port, "tom"):
        answer = http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(answer) == 503 and b"connections from your address" in answer
    server.err.wait_for(r"disconnected .*tom")
    assert status(http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200


def test_the_web_port_serves_https_and_wss_under_tls(start_chat, tmp_path):
    from netlab.tls import make_certificate

    cert, key = make_certificate(tmp_path / "tls", ("localhost", "127.0.0.1"))
    server, _ = start_chat("--web-port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
    match, _ = server.out.wait_for(r"web client at https://127\.0\.0\.1:(\d+)/")
    port = int(match.group(1))
    context = ssl.create_default_context(cafile=str(cert))
    # By hand, one thread a socket: websockets' sync client reads a TLS socket in a thread of
    # its own while its caller writes, which Python's ssl does not promise to survive (about
    # one handshake in a few hundred stalled, the answer lost inside the client).
    host = f"127.0.0.1:{port}".encode()
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: " + host + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"Origin: https://" + host + b"\r\n\r\n")
    for request, answer in ((upgrade, b"HTTP/1.1 101 "),
                            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                             b"HTTP/1.1 200 OK")):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(request)
            received = b""
            while b"\r\n\r\n" not in received or (request is upgrade and b"welcome" not in received):
                received += sock.recv(65536) or pytest.fail(f"closed after {received!r}")
            assert received.startswith(answer)
            if request is upgrade:  # the chat's welcome, an unmasked text frame, follows the 101
                assert received.split(b"\r\n\r\n", 1)[1][:1] == b"\x81"


def test_the_web_client_line_follows_the_listening_line_and_is_logged(start_chat, tmp_path):
    server, _ = start_chat("--web-port", "0")
    _, listening = server.out.wait_for(r"listening on ")
    _, web_line = server.out.wait_for(r"web client at http://127\.0\.0\.1:\d+/")
    assert web_line == listening + 1
    wait_file_contains(tmp_path / "data" / "chat.log", "web client at http://127.0.0.1:")


def test_without_web_port_there_is_no_web_line(start_chat):
    server, port = start_chat()
    with registered(port, "tom"):  # the server is up and past its start-up lines
        pass
    assert "web client" not in server.out.text()


@pytest.mark.parametrize("origin", ["chat.example.org", "https://chat.example.org/path", "ftp://x", ""])
def test_a_web_origin_that_is_not_an_origin_is_a_bad_option(tmp_path, origin):
    from procs import Netlab

    server = Netlab("chat", "serve", "--no-repl", "--port", "0", "--data-dir", str(tmp_path / "d"),
                    "--web-port", "0", "--web-origin", origin)
    assert server.wait() == 2
    assert "is not an origin" in server.err.wait_closed()[-1]
    assert not (tmp_path / "d").exists()


def test_plain_http_connections_are_not_sessions(start_chat):
    """A browser's preconnects and keep-alive connections (GET / then idle, a bare connect) are
    HTTP connections, not chat sessions: `status` does not count them as sessions, they are
    closed at the auth timeout with no session's "auth timeout" line, and they still count
    against --max-clients-per-ip, and /metrics tells them apart; a WebSocket that upgrades is
    a session, welcomed."""
    server, _ = start_chat("--web-port", "0", "--auth-timeout", "5", "--max-clients-per-ip", "4",
                           "--rate-limit", "0", repl=True)
    port = web_port(server)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as idle, \
            socket.create_connection(("127.0.0.1", port), timeout=WAIT) as bare, \
            socket.create_connection(("127.0.0.1", port), timeout=WAIT) as scrape:
        assert status(answer_on(idle, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
        figures = answer_on(scrape, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert re.search(rb"^netlab_web_http_connections 3\.0$", figures, re.MULTILINE)  # this one too
        with session(port) as ws:  # logged in: no auth timeout of its own, however slow the test
            ws.send(json.dumps({"type": "register", "username": "wendy", "password": PASSWORD}))
            expect(ws, "ok")
            start = len(server.out)
            server.command("status")
            match, _ = server.out.wait_for(r"^sessions: (\d+) open", start=start)
            assert match.group(1) == "1"
            server.out.wait_for(r"^web http: 3 connections", start=start)
            assert status(http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 503  # the 5th
        for sock in (idle, bare, scrape):  # closed at the deadline, quietly: no request under way
            assert sock.recv(65536) == b""
    server.err.wait_for(r"disconnected 'wendy'")
    start = len(server.out)
    server.command("status")
    server.out.wait_for(r"^web http: 0 connections", start=start)
    assert "auth timeout" not in server.err.text() and "auth_timeout" not in server.err.text()


def test_a_server_on_every_interface_names_its_web_client_by_the_machine_s_name(start_chat):
    """`--host 0.0.0.0`: a browser elsewhere cannot open http://0.0.0.0:P/; the machine's name
    is what it can open (and what a certificate names)."""
    server, _ = start_chat("--host", "0.0.0.0", "--web-port", "0")
    match, _ = server.out.wait_for(r"web client at http://(\S+):(\d+)/")
    assert match.group(1) == socket.gethostname()
    assert http(int(match.group(2)), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
