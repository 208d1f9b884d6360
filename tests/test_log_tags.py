"""No client address in clear in a server's log, on the console's log lines or anywhere in its
data directory: a log line names an address by its keyed tag (ip-..., then :PORT), which
`netlab chat log-tag ADDRESS` computes for the operator. The console's `users`, which a
person reads live and nothing writes down, still shows the address itself.

The clients come from 127.0.0.2 (Linux routes all of 127/8 to loopback), an address that
nothing else in a test writes: the server's own listening lines name 127.0.0.1.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

from chatclient import PASSWORD, connect
from disk_search import forms
from logtags import TAG
from procs import WAIT, serve
from test_bus_export import netlab
from websockets.sync.client import connect as ws_connect

from netlab.crypto import KEY_BYTES, Vault
from netlab.netutil import canonical_ip

CLIENT = "127.0.0.2"


def log_tag(*args: str) -> subprocess.CompletedProcess:
    """`netlab chat log-tag ARGS`, run to its end, under the directory's key (no NETLAB_KEY)."""
    return netlab("chat", "log-tag", *args)


def holding_the_address(texts: dict[str, bytes]) -> list[str]:
    """The names of `texts` that hold CLIENT in any form: as text, base64 or hex, or packed."""
    packed = socket.inet_aton(CLIENT)
    needles = [*forms(CLIENT), packed, packed.hex().encode()]
    return sorted(name for name, text in texts.items() if any(needle in text for needle in needles))


def every_file(data_dir: Path) -> dict[str, bytes]:
    """Each file under data_dir (the log among them), raw."""
    return {str(path.relative_to(data_dir)): path.read_bytes()
            for path in data_dir.rglob("*") if path.is_file()}


def from_client(port: int) -> socket.socket:
    """A plain socket connected from CLIENT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((CLIENT, 0))
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    return sock


def test_the_chat_logs_a_tag_for_each_address_and_log_tag_finds_it(start_chat, tmp_path):
    data = tmp_path / "data"
    server, port = start_chat("--max-clients-per-ip", "1", "--auth-timeout", "5", "--web-port", "0",
                              repl=True)
    web = int(server.out.wait_for(r"web client at http://127\.0\.0\.1:(\d+)/")[0][1])
    ports: dict[str, int] = {}

    def gone(name: str) -> None:  # its place is free again (--max-clients-per-ip 1)
        server.err.wait_for(rf"disconnected .*:{ports[name]} \(")

    with connect(port, source=CLIENT) as ann:  # connected, registered
        ports["ann"] = ann.local_port
        ann.register("ann")
        start = len(server.out)
        server.command("users")  # a person reads it live: the address itself
        server.out.wait_for(rf"^ann  sessions=1  127\.0\.0\.2:{ann.local_port}$", start=start)
        with connect(port, source=CLIENT, welcome=False) as refused:  # one address, one place
            refused.expect_fatal("server_full")
    gone("ann")
    with connect(port, source=CLIENT) as again:  # a failed login, a login, a bad frame
        ports["again"] = again.local_port
        again.send("login", username="ann", password="not " + PASSWORD)
        again.expect_error("bad_credentials")
        again.login("ann")
        again.send_payload(b"{not json")
        again.frames_until_closed()
    gone("again")
    with connect(port, source=CLIENT) as bad_name:  # a registration refused
        ports["bad_name"] = bad_name.local_port
        bad_name.send("register", username="no such name!", password=PASSWORD)
        bad_name.expect_error("invalid_username")
    gone("bad_name")
    with connect(port, source=CLIENT) as idle:  # an auth timeout
        ports["idle"] = idle.local_port
        idle.expect_fatal("auth_timeout")
    gone("idle")
    with ws_connect(f"ws://127.0.0.1:{web}/ws", sock=from_client(web), compression=None,
                    open_timeout=WAIT, close_timeout=WAIT) as browser:  # a web session
        ports["browser"] = browser.socket.getsockname()[1]
        assert '"welcome"' in browser.recv(timeout=WAIT)
    gone("browser")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0

    texts = {**every_file(data), "stderr (the console's log lines)": server.err.text().encode()}
    assert "chat.log" in texts
    assert holding_the_address(texts) == []
    log = texts["chat.log"].decode()
    tag = re.search(rf"INFO connected ({TAG}):{ports['ann']}$", log, re.MULTILINE)[1]
    for line in [f"registered 'ann' from {tag}:{ports['ann']}",
                 f"refusing connections from {tag}: 1 open (--max-clients-per-ip)",
                 f"refused 1 connection(s) from {tag} while it had 1 open",
                 f"disconnected 'ann' from {tag}:{ports['ann']} (",
                 f"failed login for 'ann' from {tag}:{ports['again']}",
                 f"login 'ann' from {tag}:{ports['again']}",
                 f"bad frame from {tag}:{ports['again']}",
                 f"registration refused for {tag}:{ports['bad_name']}: invalid_username",
                 f"auth timeout {tag}:{ports['idle']}",
                 f"connected {tag}:{ports['browser']}"]:
        assert line in log, line
    # The operator's way from an address to its lines: the same tag, however it is written.
    for written in (CLIENT, f"::ffff:{CLIENT}", f" {CLIENT}"):
        run = log_tag(written, "--data-dir", str(data))
        assert (run.returncode, run.stdout, run.stderr) == (0, f"{tag}\n", "")
    other = log_tag("127.0.0.1", "--data-dir", str(data)).stdout.strip()
    assert re.fullmatch(TAG, other) and other != tag


def test_a_tag_depends_on_the_key_and_the_address_not_on_how_it_is_written():
    vault = Vault(bytes(KEY_BYTES))
    tag = vault.address_tag("192.0.2.7")
    assert re.fullmatch(TAG, tag)
    assert vault.address_tag(canonical_ip("::ffff:192.0.2.7")) == tag  # a dual-stack port's IPv4 client
    assert vault.address_tag("192.0.2.8") != tag
    assert Vault(bytes([1]) * KEY_BYTES).address_tag("192.0.2.7") != tag
    assert canonical_ip("2001:DB8:0:0::1") == canonical_ip("2001:db8::1") == "2001:db8::1"


def test_log_tag_without_a_key_or_an_address_says_so_in_one_line(tmp_path):
    run = log_tag(CLIENT, "--data-dir", str(tmp_path))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [f"netlab: no key: {tmp_path / 'netlab.key'} is missing and NETLAB_KEY "
                                       "is not set (a tag is made with the chat server's key)"]
    run = log_tag("203.0.113.500", "--data-dir", str(tmp_path))
    assert run.returncode == 2 and "'203.0.113.500' is not an IP address" in run.stderr


def test_the_echo_log_names_addresses_by_a_tag_of_the_run(data_dir):
    server, port = serve("echo", data_dir, "--no-repl", "--max-clients-per-ip", "1")
    try:
        with from_client(port) as first:
            first.sendall(b"hi")
            assert first.recv(2) == b"hi"
            with from_client(port) as refused:  # one address, one place: closed at once
                assert refused.recv(1) == b""
            match, _ = server.err.wait_for(rf"refusing connections from ({TAG}): 1 open")
            tag = match[1]
            server.err.wait_for(rf"connected {tag}:{first.getsockname()[1]}$")
            local = first.getsockname()[1]
        server.err.wait_for(rf"disconnected {tag}:{local} \(closed by peer, 2 bytes echoed\)")
        server.err.wait_for(rf"refused 1 connection\(s\) from {tag} while it had 1 open")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
    texts = {**every_file(data_dir), "stderr": server.err.text().encode()}
    assert "echo.log" in texts
    assert holding_the_address(texts) == []
