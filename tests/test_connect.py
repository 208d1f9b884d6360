"""How the clients establish a connection: nothing sent before a valid `welcome`, and a
peer that is not what was asked for (no chat server, TLS or not, another certificate)
named in one line with exit status 1, never a hang, a leak or a traceback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from chatclient import PASSWORD
from procs import WAIT, Netlab, serve

from netlab import wire as p

#: The client's own wait for a welcome (and a TLS probe after it) ends these runs.
SILENT_PEER_CAP = 4 * WAIT


class RecordingPeer:
    """A raw TCP listener standing in for something that is no chat server: it sends
    `greeting` (or nothing) to each connection and records every byte each one sends."""

    def __init__(self, greeting: bytes | None, port: int = 0) -> None:
        self.greeting = greeting
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self._received: list[bytearray] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # shut down: the test is over
                return
            record = bytearray()
            self._received.append(record)
            thread = threading.Thread(target=self._serve, args=(conn, record), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn, record: bytearray) -> None:
        with conn:
            try:
                if self.greeting is not None:
                    conn.sendall(self.greeting)
                while data := conn.recv(65536):
                    record += data
            except OSError:  # a reset ends the recording as a close does
                pass

    def received(self) -> list[bytes]:
        """What each connection sent, once every one has ended (the client has exited)."""
        for thread in list(self._threads):
            thread.join(WAIT)
            assert not thread.is_alive(), "a connection stayed open after the client exited"
        return [bytes(record) for record in self._received]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        self._accepting.join(WAIT)


@pytest.fixture
def recording_peer() -> Iterator[type[RecordingPeer]]:
    started: list[RecordingPeer] = []

    def start(greeting: bytes | None, port: int = 0) -> RecordingPeer:
        peer = RecordingPeer(greeting, port)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


def netlab_run(*args: str, input: str = "", timeout: float = SILENT_PEER_CAP) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netlab", *args], input=input, capture_output=True,
                          text=True, env={**os.environ, "PW": PASSWORD}, timeout=timeout)


def chat_pipe(port: int, *args: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess:
    return netlab_run("chat", "connect", "--host", host, "--port", str(port), "--user", "ann",
                      "--register", "--password-env", "PW", "--welcome-timeout", "1", *args,
                      input="hello\n")


def assert_one_line(run: subprocess.CompletedProcess, line: str, status: int = 1) -> None:
    assert run.returncode == status, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [line]


# -- a chat client sends nothing before a welcome ----------------------------------------------


def test_chat_client_at_the_echo_port_says_so_and_exits_instead_of_hanging(data_dir):
    """The issue's case: the echo server would have sent the login back, password and all."""
    server, port = serve("echo", data_dir, "--no-repl")
    try:
        run = chat_pipe(port)
        assert_one_line(run, f"127.0.0.1:{port} is not a netlab chat server")
        assert run.stdout == ""
    finally:
        server.kill()


NOT_A_WELCOME = {
    "bytes of another protocol": b"SSH-2.0-OpenSSH_9.6\r\n",
    "a frame that is no welcome": p.encode({"type": "message", "seq": 1, "from": "x", "text": "hi"}),
    "a welcome from another server": p.encode({"type": "welcome", "server": "other", "protocol": 1,
                                               "max_frame": 65536}),
    "a welcome without max_frame": p.encode({"type": "welcome", "server": "netlab", "protocol": 1}),
    "a welcome of another protocol": p.encode({"type": "welcome", "server": "netlab", "protocol": 7,
                                               "max_frame": 65536}),
    "silence": None,
}


@pytest.mark.parametrize("greeting", NOT_A_WELCOME.values(), ids=NOT_A_WELCOME.keys())
def test_chat_client_sends_nothing_to_a_peer_that_does_not_welcome_it(recording_peer, greeting):
    peer = recording_peer(greeting)
    run = chat_pipe(peer.port)
    assert_one_line(run, f"127.0.0.1:{peer.port} is not a netlab chat server")
    received = peer.received()
    assert received  # it did connect
    assert not any(PASSWORD.encode() in data for data in received)
    assert not any(b"login" in data or b"register" in data for data in received)


def server_replaced(start_chat, recording_peer, answer: bytes | None):
    """A client logged in as ann whose server then died, its port taken by a recording peer
    that answers `answer` (None: nothing); the client, the peer and the port."""
    server, port = start_chat()
    client = Netlab("chat", "connect", "--port", str(port), "--user", "ann", "--register",
                    "--password-env", "PW", "--welcome-timeout", "1", env={"PW": PASSWORD})
    try:
        client.err.wait_for("logged in as ann")
        server.kill()
        return client, recording_peer(answer, port), port
    except BaseException:
        client.kill()
        raise


def test_a_server_replaced_by_something_else_is_named_not_retried_or_sent_the_password(
        start_chat, recording_peer):
    """After a drop the client reconnects; what answers then is checked as at the start."""
    # The port, taken by another service.
    client, peer, port = server_replaced(start_chat, recording_peer, b"SSH-2.0-OpenSSH_9.6\r\n")
    try:
        assert client.wait(SILENT_PEER_CAP) == 1
        client.err.wait_for(f"127.0.0.1:{port} is not a netlab chat server")
        assert "Traceback" not in client.err.text()
        received = peer.received()
        assert received and not any(PASSWORD.encode() in data for data in received)
    finally:
        client.kill()


def test_silence_at_a_reconnect_is_waited_out_without_sending_the_password(start_chat, recording_peer):
    """A restarting server listens before it has loaded its data: silence then is no proof."""
    client, peer, _ = server_replaced(start_chat, recording_peer, None)
    try:
        client.err.wait_for(r"connection lost \(no welcome within 1 s\); reconnecting",
                            timeout=SILENT_PEER_CAP)
        assert client.proc.poll() is None
    finally:
        client.kill()
    received = peer.received()
    assert received and not any(PASSWORD.encode() in data for data in received)


def test_bench_sends_no_registration_to_a_peer_that_does_not_welcome_it(recording_peer):
    peer = recording_peer(NOT_A_WELCOME["bytes of another protocol"])
    run = netlab_run("bench", "chat", "--port", str(peer.port), "--clients", "2", "--senders", "1",
                     "--duration", "0.3")
    assert_one_line(run, f"netlab: 127.0.0.1:{peer.port} is not a netlab chat server")
    assert not any(b"bench-password" in data for data in peer.received())


def test_bench_at_the_echo_port_says_it_is_no_chat_server(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    try:
        run = netlab_run("bench", "chat", "--port", str(port), "--clients", "2", "--senders", "1",
                         "--duration", "0.3")
        assert_one_line(run, f"netlab: 127.0.0.1:{port} is not a netlab chat server")
    finally:
        server.kill()


# -- --ca with no certificate in it ------------------------------------------------------------


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    """A certificate for chat.example.org and 192.0.2.10: not for the 127.0.0.1 the tests use."""
    out = tmp_path_factory.mktemp("tls")
    maker = Netlab("tls", "make-cert", "--out", str(out), "--host", "chat.example.org",
                   "--host", "192.0.2.10")
    assert maker.wait() == 0
    maker.kill()
    return out


@pytest.mark.parametrize("command", [["chat", "connect", "--user", "ann", "--password-env", "PW"],
                                     ["echo", "connect"]])
@pytest.mark.parametrize("file", ["key.pem", "README.md"])
def test_ca_file_without_a_certificate_is_a_bad_option(cert_dir, tmp_path, command, file):
    path = cert_dir / file if file == "key.pem" else tmp_path / file
    if file == "README.md":
        path.write_text("# not a certificate\n")
    run = netlab_run(*command, "--port", "1", "--tls", "--ca", str(path), input="x\n")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"{path}: no certificate in it" in run.stderr
    assert run.stderr.startswith("Usage: ")  # click's usage error, as for any bad option


# -- TLS or not, and the certificate's names ------------------------------------------------------


@pytest.fixture(scope="module", params=["chat", "echo"])
def tls_server(request, cert_dir, tmp_path_factory):
    kind = request.param
    server, port = serve(kind, tmp_path_factory.mktemp(kind) / "data", "--no-repl",
                         "--tls-cert", str(cert_dir / "cert.pem"), "--tls-key", str(cert_dir / "key.pem"))
    yield kind, port
    server.kill()


@pytest.fixture(scope="module", params=["chat", "echo"])
def plain_server(request, tmp_path_factory):
    kind = request.param
    server, port = serve(kind, tmp_path_factory.mktemp(kind) / "data", "--no-repl")
    yield kind, port
    server.kill()


def connect(kind: str, port: int, *args: str) -> subprocess.CompletedProcess:
    if kind == "chat":
        return chat_pipe(port, *args)
    return netlab_run("echo", "connect", "--port", str(port), *args, input="hello\n")


def fail_line(kind: str, text: str) -> str:
    """The echo client reports through the command's own `netlab:` prefix, the chat client as
    an event of its session."""
    return f"netlab: {text}" if kind == "echo" else text


def test_plain_client_at_a_tls_port_is_told_to_add_tls(tls_server):
    kind, port = tls_server
    run = connect(kind, port)
    assert_one_line(run, fail_line(kind, f"127.0.0.1:{port} speaks TLS: add --tls"))


def test_tls_client_at_a_plain_port_is_told_to_drop_tls(plain_server, cert_dir):
    kind, port = plain_server
    run = connect(kind, port, "--tls", "--ca", str(cert_dir / "cert.pem"))
    assert_one_line(run, fail_line(kind, f"127.0.0.1:{port} does not speak TLS: drop --tls"))


def test_a_certificate_for_other_names_says_which_it_holds(tls_server, cert_dir):
    kind, port = tls_server
    run = connect(kind, port, "--tls", "--ca", str(cert_dir / "cert.pem"))
    assert_one_line(run, fail_line(kind, f"the certificate of 127.0.0.1:{port} is for chat.example.org, "
                                         "192.0.2.10, not 127.0.0.1"))
