"""/metrics and /healthz on the web port: the figures scraped from a real server and read with
prometheus_client's own parser, checked against the traffic sent; who may read them (loopback
always, --metrics-allow's networks besides); /healthz while the server is well and once its
disk refuses history.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Callable

import pytest
from chatclient import PASSWORD, ChatClient, connect, registered
from procs import WAIT, Netlab
from prometheus_client.parser import text_string_to_metric_families
from test_config_file import assert_usage_error, write_config
from test_web_port import expect, http, session, status, web, web_port  # noqa: F401  (web is a fixture)

from netlab.loop.group_commit import Journals
from netlab.store.opening import open_store
from netlab.wire.web import Site, WebConnection, metrics_allowed

Figures = dict[tuple[str, frozenset], float]
GET_METRICS = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def parse(answer: bytes) -> Figures:
    """Every sample of a scrape by name and labels, read by prometheus_client's parser."""
    assert status(answer) == 200, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def scrape(port: int) -> Figures:
    return parse(http(port, GET_METRICS))


def scrape_until(port: int, ready: Callable[[Figures], bool]) -> Figures:
    """Scrape again until `ready` (a figure the fsync thread updates soon, not at once)."""
    deadline = time.monotonic() + WAIT
    while not ready(figures := scrape(port)):
        assert time.monotonic() < deadline, figures
    return figures


def figure(figures: Figures, name: str, **labels: str) -> float:
    return figures[(name, frozenset(labels.items()))]


def register_ws(ws, username: str) -> None:
    ws.send(json.dumps({"type": "register", "username": username, "password": PASSWORD}))
    expect(ws, "ok")


def test_the_figures_count_the_connections_sessions_messages_and_failed_logins(web):  # noqa: F811
    _, port, wport = web
    tcp = [registered(port, f"Tcp{n}") for n in range(2)]
    with session(wport) as ws:
        register_ws(ws, "Web0")
        guesser = connect(port)
        guesser.send("login", username="Tcp0", password="not the password")
        guesser.expect_error("bad_credentials")
        for n in range(3):
            tcp[0].say(f"hello {n}")
        figures = scrape(wport)
    # 2 TCP sessions and the guesser; the WebSocket session and this scrape on the web port.
    assert figure(figures, "netlab_connections_open", transport="tcp") == 3
    assert figure(figures, "netlab_connections_open", transport="ws") == 2
    assert figure(figures, "netlab_connections_total", transport="tcp") == 3
    assert figure(figures, "netlab_connections_total", transport="ws") == 2
    assert figure(figures, "netlab_sessions") == 3
    assert figure(figures, "netlab_users_online") == 3
    assert figure(figures, "netlab_messages_total") == 3
    assert figure(figures, "netlab_deliveries_total") == 3 * 3  # to every session in general
    assert figure(figures, "netlab_login_failures_total") == 1
    assert figure(figures, "netlab_login_throttled_total") == 0
    assert figure(figures, "netlab_slow_consumers_total") == 0
    assert figure(figures, "netlab_pending_hashes") == 0
    assert figure(figures, "netlab_received_bytes_total") > len(GET_METRICS)
    assert figure(figures, "netlab_sent_bytes_total") > 0
    passes = figure(figures, "netlab_loop_pass_seconds_count")
    assert passes > 0 and figure(figures, "netlab_loop_pass_seconds_bucket", le="+Inf") == passes
    # Each message was written and then fsynced by the group commit, a round or more.
    figures = scrape_until(wport, lambda f: figure(f, "netlab_history_commit_seconds_count") >= 1)
    rounds = figure(figures, "netlab_history_commit_seconds_count")
    assert figure(figures, "netlab_history_commit_seconds_bucket", le="+Inf") == rounds
    assert figure(figures, "netlab_history_commit_seconds_sum") > 0
    for client in [*tcp, guesser]:
        client.close()


def test_throttled_logins_are_counted_apart_from_the_failures(web):  # noqa: F811
    _, port, wport = web
    registered(port, "Target").close()
    with connect(port) as guesser:
        for _ in range(5):  # PROTOCOL.md: 5 failures for one name within 60 s
            guesser.send("login", username="Target", password="wrong guess")
            guesser.expect_error("bad_credentials")
        guesser.send("login", username="Target", password="wrong guess")
        guesser.expect_error("rate_limited")
        figures = scrape(wport)
    assert figure(figures, "netlab_login_failures_total") == 5
    assert figure(figures, "netlab_login_throttled_total") == 1


def test_a_slow_consumer_cut_is_counted(start_chat):
    server, port = start_chat("--web-port", "0", "--rate-limit", "0", "--max-output", "65536")
    wport = web_port(server)
    slow = ChatClient(port, rcvbuf=4096)
    slow.register("Sloth")
    with registered(port, "Flood") as flooder:
        for n in range(4000):  # 12 kB each; Sloth reads none, until the server gives up on it
            flooder.send("say", text="\u65e5" * 4000, id=str(n))
            if flooder.recv_any()["type"] == "leave":
                break
        assert figure(scrape(wport), "netlab_slow_consumers_total") == 1
    slow.close()


def non_loopback_address() -> str | None:
    """This machine's address on its way out (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.mark.parametrize("allow, answer, in_file", [
    ((), 403, False), (("10.0.0.0/8",), 403, False), (("{address}/32",), 200, False),
    (("192.0.2.0/24", "{address}/32"), 200, True),
])
def test_metrics_reach_a_peer_off_loopback_only_through_metrics_allow(start_chat, tmp_path, allow, answer,
                                                                     in_file):
    address = non_loopback_address()
    if address is None:
        pytest.skip("no address but loopback on this machine")
    networks = [net.format(address=address) for net in allow]
    options = [arg for net in networks for arg in ("--metrics-allow", net)]
    if in_file:  # the same from --config's file
        options = ["--config", str(write_config(tmp_path, f"metrics-allow = {json.dumps(networks)}\n"))]
    server, _ = start_chat("--host", address, "--web-port", "0", *options)
    wport = int(server.out.wait_for(r"web client at http://[^:]+:(\d+)/")[0].group(1))
    with socket.create_connection((address, wport), timeout=WAIT) as sock:  # from `address` itself
        sock.sendall(GET_METRICS)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert status(received) == answer
    if answer == 403:
        assert b"netlab_" not in received
    else:
        assert figure(parse(received), "netlab_sessions") == 0


@pytest.mark.parametrize("value", ["10.1.2.3/8", "nowhere", "10.0.0.0/33"])
def test_a_bad_network_is_a_bad_option(tmp_path, value):
    assert_usage_error(tmp_path, "chat", ["--metrics-allow", value], ["'--metrics-allow'", value])
    config = write_config(tmp_path, f'metrics-allow = ["{value}"]\n')
    assert_usage_error(tmp_path, "chat", ["--config", str(config)], ["'metrics-allow'", str(config)])


def test_loopback_may_read_the_metrics_whatever_metrics_allow_says(start_chat):
    server, _ = start_chat("--web-port", "0", "--metrics-allow", "10.0.0.0/8")
    assert figure(scrape(web_port(server)), "netlab_sessions") == 0


@pytest.mark.parametrize("peer, allow, allowed", [
    ("127.0.0.1", (), True),
    ("127.3.2.1", (), True),
    ("::1", (), True),
    ("::ffff:127.0.0.1", (), True),  # an IPv4 peer of a dual-stack port
    ("192.0.2.7", (), False),
    ("192.0.2.7", ("10.0.0.0/8",), False),
    ("10.9.8.7", ("10.0.0.0/8",), True),
    ("::ffff:10.9.8.7", ("10.0.0.0/8",), True),
    ("2001:db8::5", ("10.0.0.0/8", "2001:db8::/32"), True),
    ("2001:db9::5", ("2001:db8::/32",), False),
    ("fe80::1%eth0", (), False),
    ("", (), False),
    ("not an address", ("0.0.0.0/0",), False),
])
def test_who_may_read_the_metrics(peer, allow, allowed):
    import ipaddress

    assert metrics_allowed(peer, tuple(map(ipaddress.ip_network, allow))) is allowed


def answer_to(site: Site, request: bytes, peer: str) -> bytes:
    connection = WebConnection(site, 65536, peer)
    connection.feed(request)
    return connection.take_http()


def test_the_routes_ask_the_loop_for_health_and_figures():
    body = b"# HELP netlab_sessions x\n# TYPE netlab_sessions gauge\nnetlab_sessions 4.0\n"
    well = Site({}, metrics=lambda: (body, "text/plain; version=0.0.4; charset=utf-8"))
    assert answer_to(well, GET_METRICS, "127.0.0.1").endswith(b"\r\n\r\n" + body)
    assert status(answer_to(well, GET_METRICS, "192.0.2.7")) == 403
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert answer_to(well, healthz, "192.0.2.7").endswith(b"\r\n\r\nok\n")
    ailing = Site({}, healthy=lambda: False)
    assert status(answer_to(ailing, healthz, "127.0.0.1")) == 503
    assert status(answer_to(ailing, GET_METRICS, "127.0.0.1")) == 404  # a site without figures


def test_healthz_is_ok_until_the_disk_refuses_history_then_503(tmp_path):
    server = Netlab("chat", "serve", "--port", "0", "--web-port", "0", "--no-repl", "--rate-limit", "0",
                    "--data-dir", str(tmp_path / "data"), file_size=64 * 1024)
    try:
        port, wport = server.listening_port(), web_port(server)
        with socket.create_connection(("127.0.0.1", wport), timeout=WAIT) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive
            answer = probe.recv(65536)
            assert status(answer) == 200 and answer.endswith(b"\r\n\r\nok\n")
            writer = registered(port, "Writer")
            for n in range(20):  # history.csv's 6th 12 kB record passes the file size limit
                writer.send("say", text="\u65e5" * 4000, id=str(n))
                if writer.recv()["type"] == "shutdown":
                    break
            answer = b""
            while chunk := probe.recv(65536):
                answer += chunk
            assert status(answer) == 503, answer
        assert server.wait() == 1
        writer.close()
    finally:
        server.kill()


class FailingDisk:
    """A file whose fsync fails as a dying disk's does (EIO)."""

    def sync(self) -> None:
        raise OSError(errno.EIO, "Input/output error")


def test_a_failed_fsync_marks_history_unwritable_and_each_round_is_timed(tmp_path):
    store = open_store(tmp_path, 10, environ={}, room_window=5, direct_window=5)
    journals = Journals(store, staging=lambda: None, failed=lambda: None)
    try:
        journals.sync_round({store.history}, time.monotonic())
        assert not journals.sync_failed
        journals.sync_round({FailingDisk(), store.history}, time.monotonic())
        assert journals.sync_failed  # /healthz says 503 from now on
        journals.sync_round({store.history}, None)  # nothing written: no round to time
        counts, total = journals.commit_latency()
        assert sum(counts) == 2 and total >= 0
    finally:
        store.close()
