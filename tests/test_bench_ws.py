"""Issue 16's benchmark from the user's side: `netlab bench chat --transport ws` drives the fan-out
over WebSocket sessions on a web port, side by side with TCP when asked; `bench idle --transport
ws` holds idle WebSocket sessions. Real servers, small sizes; figures are parsed, never judged.
The generator's own wire is checked against `websockets`' sans-IO protocol, a real peer."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from test_bench import bench
from test_bench_rooms import NUMBER, cpu_line, number
from test_web_port import web_port
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side

from netlab.bench_wire import WebSocketClient
from netlab.wire.websocket import close_frame, text_frame

LATENCY = rf"latency p50 {NUMBER} µs  p95 {NUMBER} µs  p99 {NUMBER} µs  p99\.9 {NUMBER} µs"


def deliveries(stdout: str, transport: str) -> float:
    """The deliveries/s of the run over `transport`, after checking its report's shape."""
    found = re.search(rf"^chat: 4 clients, 2 senders(?: in 1 room)?, window 1, {NUMBER} s, {transport}\n"
                      rf"  {NUMBER} messages/s in, ({NUMBER}) deliveries/s\n  {LATENCY}\n"
                      rf"(?:  server CPU: [^\n]*\n)?"
                      rf"  load generator CPU: {NUMBER} s \({NUMBER} % of a core\)",
                      stdout, re.M)
    assert found, stdout
    return number(found.group(1))


def test_the_chat_bench_runs_over_websocket_on_its_own_server_s_web_port():
    run = bench("chat", "--transport", "ws", "--clients", "4", "--senders", "2", "--duration", "0.5")
    assert run.returncode == 0, run.stderr
    assert deliveries(run.stdout, "WebSocket") > 0
    assert number(cpu_line(run.stdout, "deliveries").group(1)) > 0


def test_tcp_and_websocket_alternate_in_rounds_against_one_server():
    run = bench("chat", "--transport", "tcp", "--transport", "ws", "--rounds", "2", "--clients", "4",
                "--senders", "2", "--duration", "0.3")
    assert run.returncode == 0, run.stderr
    # Each transport's clients are registered once for every round, in rooms of their own.
    assert len(re.findall(r"^chat: 4 clients registered in ", run.stdout, re.M)) == 2
    assert len(re.findall(r"^chat: 4 clients in 1 room in ", run.stdout, re.M)) == 2
    assert re.findall(r", (TCP|WebSocket)$", run.stdout, re.M) == ["TCP", "WebSocket"] * 2
    ratio = rf"ws ÷ tcp: ({NUMBER})× the deliveries/s, {NUMBER}× the deliveries per server CPU-second"
    first, second, last = re.split(rf"^{ratio}\n", run.stdout, flags=re.M)[::2]
    for round_ in (first, second):
        assert deliveries(round_, "TCP") > 0 and deliveries(round_, "WebSocket") > 0
    assert re.fullmatch(rf"median of 2 rounds: {ratio}\n", last), run.stdout


def test_two_transports_need_version_2_sessions():
    run = bench("chat", "--transport", "tcp", "--transport", "ws", "--protocol", "1")
    assert run.returncode == 2 and "two transports need --protocol 2" in run.stderr


def test_a_running_server_s_web_port_is_benched_over_websocket(start_chat):
    server, _ = start_chat("--web-port", "0", "--rate-limit", "0")
    run = bench("chat", "--transport", "ws", "--port", str(web_port(server)), "--clients", "4",
                "--senders", "2", "--duration", "0.5")
    assert run.returncode == 0, run.stderr
    assert deliveries(run.stdout, "WebSocket") > 0
    assert "server CPU" not in run.stdout  # not started here: its CPU cannot be read


def test_a_chat_port_given_as_a_web_port_is_one_line(start_chat):
    _, port = start_chat()
    run = bench("chat", "--transport", "ws", "--port", str(port), "--duration", "0.3")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"netlab: 127.0.0.1:{port} is not a netlab web port: no HTTP answer to the WebSocket handshake"]


def test_a_full_web_port_is_named_as_such(start_chat):
    server, _ = start_chat("--web-port", "0", "--max-clients", "1")
    port = web_port(server)
    run = bench("chat", "--transport", "ws", "--port", str(port), "--clients", "2",
                "--senders", "1", "--duration", "0.3")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"netlab: the web port at 127.0.0.1:{port} refused the WebSocket "
                                       "handshake: 503 Service Unavailable: the server holds 1 connections"]


def test_with_port_one_transport_is_named():
    run = bench("chat", "--port", "1", "--transport", "tcp", "--transport", "ws")
    assert run.returncode == 2 and "one transport with --port" in run.stderr


def test_the_idle_bench_holds_websocket_sessions():
    run = bench("idle", "--transport", "ws", "--sessions", "6", "--rooms", "2")
    assert run.returncode == 0, run.stderr
    assert "idle: 6 WebSocket sessions of 2 accounts in 2 rooms, logged in in " in run.stdout
    assert re.search(rf"\n  ({NUMBER}) KiB per session \(({NUMBER}) KiB counting the rooms\)\n", run.stdout)


@given(st.lists(st.binary(max_size=70_000), max_size=4), st.data())
def test_the_generator_s_frames_are_read_by_a_websocket_server_as_sent(payloads, data):
    wire = WebSocketClient()
    sent = b"".join(wire.frame(payload) for payload in payloads)
    server = Protocol(Side.SERVER, max_size=None)
    for chunk in chunks(sent, data):
        server.receive_data(chunk)
    frames = server.events_received()
    assert [(f.opcode, f.fin, f.data) for f in frames] == [(Opcode.TEXT, True, p) for p in payloads]
    assert server.parser_exc is None


@given(st.lists(st.binary(max_size=70_000), max_size=4), st.data())
def test_the_generator_splits_the_server_s_frames_however_they_arrive(payloads, data):
    received, buffer = [], bytearray()
    for chunk in chunks(b"".join(text_frame(payload) for payload in payloads), data):
        buffer += chunk
        received += WebSocketClient.payloads(buffer)
    assert received == payloads and not buffer


def test_a_close_frame_from_the_server_ends_the_run_naming_its_code():
    buffer = bytearray(text_frame(b'{"type":"bye"}') + close_frame(1008))
    found = []
    try:
        found += WebSocketClient.payloads(buffer)
    except ConnectionError as exc:
        assert str(exc) == "the server closed the WebSocket (code 1008)"
    else:
        raise AssertionError("no ConnectionError")
    assert found == [b'{"type":"bye"}']


def chunks(stream: bytes, data: st.DataObject) -> list[bytes]:
    """`stream` cut where hypothesis says."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]
