"""TLS for both servers and both clients, end to end."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from chatclient import PASSWORD
from logtags import TAG
from procs import WAIT, Netlab, serve

from netlab import wire as p


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tls")
    maker = Netlab("tls", "make-cert", "--out", str(out))
    assert maker.wait() == 0
    maker.out.wait_for("--ca")  # tells the operator how clients trust it
    maker.kill()
    return out


def tls_args(cert_dir) -> list[str]:
    return ["--tls-cert", str(cert_dir / "cert.pem"), "--tls-key", str(cert_dir / "key.pem")]


def tls_client(cert_dir, port: int, host: str = "localhost") -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=cert_dir / "cert.pem")
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return context.wrap_socket(sock, server_hostname=host)


def read_frame(sock, decoder: p.FrameDecoder) -> dict:
    while (frame := decoder.next_frame()) is None:
        data = sock.recv(65536)
        assert data, "connection closed"
        decoder.feed(data)
    return frame


def assert_closed(sock: socket.socket) -> None:
    """The server closes (at most a TLS alert comes first); a timeout fails the test."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


def test_make_cert_key_is_private_and_names_hosts(cert_dir):
    from cryptography import x509

    assert stat.S_IMODE(os.stat(cert_dir / "key.pem").st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((cert_dir / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_make_cert_never_overwrites(cert_dir):
    maker = Netlab("tls", "make-cert", "--out", str(cert_dir))
    assert maker.wait() == 2
    maker.kill()


@pytest.fixture
def tls_chat(data_dir, cert_dir):
    server, port = serve("chat", data_dir, "--no-repl", "--rate-limit", "0", "--auth-timeout", "1",
                         *tls_args(cert_dir))
    assert "(tls)" in server.out.lines[0]
    yield server, port
    server.kill()


def test_chat_over_tls_between_two_verifying_clients(tls_chat, cert_dir):
    _, port = tls_chat
    env = {"PW": PASSWORD}
    common = ["--port", str(port), "--tls", "--ca", str(cert_dir / "cert.pem"), "--password-env", "PW"]
    listener = Netlab("chat", "connect", "--host", "localhost", "--user", "ann", "--register", *common,
                      env=env)
    try:
        listener.err.wait_for("logged in as ann")
        writer = subprocess.run([sys.executable, "-m", "netlab", "chat", "connect", "--host", "127.0.0.1",
                                 "--user", "bob", "--register", *common], input="over tls\n",
                                capture_output=True, text=True, env={**os.environ, **env}, timeout=WAIT)
        assert writer.returncode == 0, writer.stderr
        listener.out.wait_for("bob: over tls")
    finally:
        listener.kill()


def test_unverified_certificate_is_refused_with_a_clear_message(tls_chat):
    _, port = tls_chat
    client = subprocess.run([sys.executable, "-m", "netlab", "chat", "connect", "--port", str(port),
                             "--tls", "--user", "ann", "--password-env", "PW"], input="",
                            capture_output=True, text=True, env={**os.environ, "PW": PASSWORD}, timeout=WAIT)
    assert client.returncode != 0
    assert "certificate" in client.stderr and "--ca" in client.stderr


def test_insecure_says_so_loudly(tls_chat):
    _, port = tls_chat
    client = subprocess.run([sys.executable, "-m", "netlab", "chat", "connect", "--port", str(port),
                             "--tls", "--insecure", "--user", "zed", "--register", "--password-env", "PW"],
                            input="x\n", capture_output=True, text=True,
                            env={**os.environ, "PW": PASSWORD}, timeout=WAIT)
    assert client.returncode == 0
    assert "not verified" in client.stderr


@pytest.mark.parametrize("command", [["chat", "connect", "--user", "ann", "--password-env", "PW"],
                                     ["echo", "connect"]])
@pytest.mark.parametrize("option", ["--ca", "--insecure"])
def test_ca_or_insecure_without_tls_is_a_bad_option(tls_chat, cert_dir, command, option):
    _, port = tls_chat
    extra = [option, str(cert_dir / "cert.pem")] if option == "--ca" else [option]
    client = subprocess.run([sys.executable, "-m", "netlab", *command, "--port", str(port), *extra],
                            input="x\n", capture_output=True, text=True,
                            env={**os.environ, "PW": PASSWORD}, timeout=WAIT)
    assert client.returncode == 2
    assert f"{option} needs --tls" in client.stderr


def test_plain_client_on_tls_port_is_closed_and_others_carry_on(tls_chat, cert_dir):
    server, port = tls_chat
    good = tls_client(cert_dir, port)
    decoder = p.FrameDecoder()
    assert read_frame(good, decoder)["type"] == "welcome"
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as plain:
        plain.sendall(p.encode({"type": "ping"}))
        assert_closed(plain)
    server.err.wait_for("TLS handshake with .* failed")
    good.sendall(p.encode({"type": "ping", "id": "still"}))
    assert read_frame(good, decoder) == {"type": "pong", "id": "still"}
    good.close()


def test_a_failed_handshake_is_a_disconnect_and_frees_its_place(data_dir, cert_dir):
    # CLI.md: every disconnect writes a log line; and a client that never got through
    # the handshake must not hold one of --max-clients' places until --auth-timeout.
    server, port = serve("chat", data_dir, "--no-repl", "--max-clients", "1", *tls_args(cert_dir))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as plain:
            local = plain.getsockname()[1]
            plain.sendall(p.encode({"type": "ping"}))
            assert_closed(plain)
        server.err.wait_for(rf"disconnected {TAG}:{local} \(TLS handshake failed\)")
        good = tls_client(cert_dir, port)
        assert read_frame(good, p.FrameDecoder())["type"] == "welcome"  # not server_full
        good.close()
    finally:
        server.kill()


@pytest.mark.alone  # a handshake and welcome within the 1 s auth timeout
def test_stalled_handshake_times_out_without_delaying_others(tls_chat, cert_dir):
    server, port = tls_chat
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as stalled:
        other = tls_client(cert_dir, port)  # handshakes while the first one sits there
        decoder = p.FrameDecoder()
        assert read_frame(other, decoder)["type"] == "welcome"
        assert stalled.recv(65536) == b""  # closed by --auth-timeout 1
        server.err.wait_for("auth timeout")
        other.close()


# The first bytes of a TLS record carrying a ClientHello: a handshake begun, never finished.
PARTIAL_CLIENT_HELLO = bytes.fromhex("160301")


@pytest.mark.alone  # a handshake and welcome within the 1 s auth timeout
@pytest.mark.parametrize("sent", [b"", PARTIAL_CLIENT_HELLO], ids=["silent", "partial-hello"])
def test_a_handshake_unfinished_at_the_auth_timeout_is_dropped_then(tls_chat, cert_dir, sent):
    # No error can be sent before a handshake, so there is nothing for the 2 s close grace
    # to wait for. The stalled socket is accepted first: its auth timeout comes no later
    # than that of the client welcomed after it, so by the time that client has its
    # auth_timeout error, the stalled one is closed (a grace would keep it 2 s longer).
    server, port = tls_chat
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as stalled:
        stalled.sendall(sent)
        idle = tls_client(cert_dir, port)
        decoder = p.FrameDecoder()
        assert read_frame(idle, decoder)["type"] == "welcome"
        assert read_frame(idle, decoder)["code"] == "auth_timeout"
        stalled.settimeout(1.5)  # a cap on waiting for what has happened already, not a speed
        assert_closed(stalled)
        server.err.wait_for(rf"disconnected {TAG}:{stalled.getsockname()[1]} \(auth_timeout\)")
        idle.close()


def test_clients_dying_mid_fan_out_do_not_take_the_server_down(tls_chat, cert_dir):
    import struct

    _, port = tls_chat

    def logged_in(name: str):
        sock = tls_client(cert_dir, port)
        decoder = p.FrameDecoder()
        read_frame(sock, decoder)
        sock.sendall(p.encode({"type": "register", "username": name, "password": PASSWORD}))
        while read_frame(sock, decoder)["type"] != "users":
            pass
        return sock, decoder

    sender, decoder = logged_in("sender")
    doomed = [logged_in(f"doomed{n}")[0] for n in range(15)]
    for n, sock in enumerate(doomed):
        sender.sendall(p.encode({"type": "say", "text": f"while {n} goes"}))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset in the middle of the broadcasts
    sender.sendall(p.encode({"type": "ping", "id": "alive"}))
    while (frame := read_frame(sender, decoder))["type"] != "pong":
        pass
    assert frame["id"] == "alive"
    sender.close()


def test_large_history_reply_spans_many_records(tls_chat, cert_dir):
    _, port = tls_chat
    sock = tls_client(cert_dir, port)
    decoder = p.FrameDecoder()
    read_frame(sock, decoder)
    sock.sendall(p.encode({"type": "register", "username": "big", "password": PASSWORD}))
    while read_frame(sock, decoder)["type"] != "users":
        pass
    text = "é" * 4000  # 8 kB of UTF-8 each
    for n in range(40):
        sock.sendall(p.encode({"type": "say", "text": text, "id": str(n)}))
    for _ in range(40):
        assert read_frame(sock, decoder)["text"] == text
    sock.sendall(p.encode({"type": "history", "limit": 40}))
    reply = read_frame(sock, decoder)
    assert reply["type"] == "history" and len(reply["messages"]) >= 7  # one 64 kB frame, many records
    assert all(m["text"] == text for m in reply["messages"])
    sock.close()


def test_echo_over_tls_streams_megabytes(data_dir, cert_dir):
    server, port = serve("echo", data_dir, "--no-repl", *tls_args(cert_dir))
    try:
        payload = os.urandom(3 << 20)
        proc = subprocess.run([sys.executable, "-m", "netlab", "echo", "connect", "--port", str(port),
                               "--host", "localhost", "--tls", "--ca", str(cert_dir / "cert.pem")],
                              input=payload, capture_output=True, timeout=WAIT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == payload
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as plain:
            plain.sendall(b"plain text")
            assert_closed(plain)
        server.err.wait_for("TLS handshake with .* failed")
    finally:
        server.kill()
