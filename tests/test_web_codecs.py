"""The web port's codecs without sockets: HTTP requests (h11) and WebSocket messages
(`websockets`' Protocol), byte by byte, many in one read, and with hypothesis; and the
outbox framing a broadcast once for every WebSocket reader of a room.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_outbox import Sink, new_box
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from netlab import wire as p
from netlab.loop.output import Unframed, rest_of_frame
from netlab.wire import ProtocolError, encode_payload
from netlab.wire.web import Site, StaticFile, WebConnection
from netlab.wire.websocket import (
    WEBSOCKET,
    MessageReader,
    WebSocketCodec,
    close_code,
    close_frame,
    last_frame_payload,
    text_frame,
)

SITE = Site({"/app.js": StaticFile(b"let x = 1;\n", "text/javascript; charset=utf-8")})
KEY = base64.b64encode(b"0123456789abcdef")
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: chat:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
             b"Origin: http://chat:8080\r\n\r\n")


def masked(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """A frame as a client sends it (masked)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def client_frames(data: bytes) -> list[Frame]:
    """What a real client library reads from the server's bytes."""
    client = Protocol(Side.CLIENT, max_size=None)
    client.receive_data(data)
    return client.events_received()


def answers(data: bytes) -> list[int]:
    """The status codes of every HTTP answer in `data`."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def served(*chunks: bytes, site: Site = SITE) -> tuple[WebConnection, bytes]:
    web = WebConnection(site, 65536)
    out = b""
    for chunk in chunks:
        web.feed(chunk)
        out += web.take_http()
    return web, out


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


# -- HTTP ----------------------------------------------------------------------------------

REQUESTS = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")


def test_many_requests_in_one_read_are_answered_in_order_until_a_refusal():
    web, out = served(REQUESTS)
    assert answers(out) == [200, 200, 200, 404] and web.done
    assert out.count(b"let x = 1;") == 1  # HEAD: the headers alone
    assert out.count(b"Content-Security-Policy: default-src 'none';") == 4


def test_requests_split_at_every_byte_get_the_same_answers():
    assert served(*byte_by_byte(REQUESTS))[1] == served(REQUESTS)[1]


@pytest.mark.parametrize(("request_", "code"), [
    (b"PUT /app.js HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /app.js HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000, 431),  # still arriving
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello on plain HTTP
])
def test_refusals(request_, code):
    web, out = served(request_)
    assert answers(out) == [code] and web.done
    assert b"X-Content-Type-Options: nosniff" in out and b"Connection: close" in out


def test_the_index_is_served_at_the_root_once_the_package_has_one():
    site = Site({"/index.html": StaticFile(b"<!doctype html>", "text/html; charset=utf-8")})
    _, out = served(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", site=site)
    assert answers(out) == [200] and out.endswith(b"<!doctype html>") and b"Cache-Control: no-cache" in out


def test_nothing_is_read_after_a_refusal():
    web, out = served(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answers(out) == [404]


def test_pipelined_answers_stop_piling_up_past_their_bound():
    web, out = served(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 5000)
    assert web.done and 500 < len(answers(out)) < 5000


# -- the handshake -------------------------------------------------------------------------


def test_an_upgrade_with_frames_in_the_same_read_gets_101_and_its_frames():
    stream = HANDSHAKE + masked(Opcode.TEXT, b'{"type":"ping"}') + masked(Opcode.TEXT, b'{"type":"quit"}')
    for chunks in ([stream], byte_by_byte(stream)):
        web = WebConnection(SITE, 65536)
        out, frames, upgraded = b"", [], False
        for chunk in chunks:
            web.feed(chunk)
            out += web.take_http()
            upgraded |= web.take_upgrade()
            frames += list(web)
        assert answers(out) == [101] and upgraded
        assert b"Sec-WebSocket-Accept:" in out and b"permessage-deflate" not in out
        assert [f["type"] for f in frames] == ["ping", "quit"]


@pytest.mark.parametrize(("origin", "code"), [
    (b"http://chat:8080", 101), (b"http://evil.example", 403), (b"https://chat:8080", 403),
    (b"https://allowed.example", 101), (None, 101),
])
def test_the_origin_is_the_page_s_own_or_an_allowed_one(origin, code):
    site = Site({}, extra_origins=frozenset({"https://allowed.example"}))
    header = b"" if origin is None else b"Origin: " + origin + b"\r\n"
    request = HANDSHAKE.replace(b"Origin: http://chat:8080\r\n", header)
    web, out = served(request, site=site)
    assert answers(out) == [code]
    assert (web.ws is not None) == (code == 101)


def test_a_handshake_without_its_key_is_400():
    _, out = served(HANDSHAKE.replace(b"Sec-WebSocket-Key: " + KEY + b"\r\n", b""))
    assert answers(out) == [400]


# -- WebSocket messages ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 125, 126, 65535, 65536, 70000])
def test_a_server_frame_is_one_unmasked_text_message_a_client_reads(size):
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[1] & 0x80 == 0  # unmasked: the same bytes for every reader
    [read] = client_frames(frame)
    assert (read.opcode, read.data, read.fin) == (Opcode.TEXT, payload, True)
    assert WEBSOCKET.frame_end(lambda at, n: frame[at:at + n], 0, size // 2) == len(frame)


def test_fragments_are_reassembled_and_control_frames_answered():
    reader = MessageReader(65536)
    reader.feed(masked(Opcode.TEXT, b'{"type":', fin=False) + masked(Opcode.PING, b"hi")
                + masked(Opcode.CONT, b'"ping"}'))
    assert list(reader) == [{"type": "ping"}]
    [pong] = client_frames(reader.outgoing())
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"hi")


@pytest.mark.parametrize(("stream", "code"), [
    (masked(Opcode.BINARY, b'{"type":"ping"}'), "bad_frame"),
    (masked(Opcode.TEXT, b"\xff"), "bad_frame"),  # not UTF-8
    (masked(Opcode.TEXT, b"[]"), "bad_frame"),  # not an object
    (masked(Opcode.CONT, b"x"), "bad_frame"),
    (Frame(Opcode.TEXT, b'{"type":"ping"}').serialize(mask=False, extensions=[]), "bad_frame"),  # unmasked
    # Headers announcing more than max_frame: refused from the header alone, no payload held;
    # the second time, a fragment under it after one that takes the message past it.
    (masked(Opcode.TEXT, b"x" * 70000)[:14], "frame_too_large"),
    (masked(Opcode.TEXT, b"x" * 40000, fin=False) + masked(Opcode.CONT, b"x" * 40000)[:14],
     "frame_too_large"),
], ids=["binary", "not-utf8", "not-an-object", "stray-continuation", "unmasked", "header-over-max",
        "fragments-over-max"])  # the masks are random: ids of their bytes would differ per process
def test_faults_are_fatal_and_the_protocol_s_own_close_is_not_sent(stream, code):
    reader = MessageReader(65536)
    reader.feed(stream)
    with pytest.raises(ProtocolError) as fault:
        reader.next_frame()
    assert (fault.value.code, fault.value.fatal) == (code, True)
    assert reader.outgoing() == b""  # the chat's error goes first, then our close
    with pytest.raises(ProtocolError):
        reader.next_frame()  # and forever after


def test_a_client_close_is_answered_and_marks_the_reader_closed():
    reader = MessageReader(65536)
    reader.feed(masked(Opcode.CLOSE, b"\x03\xe8bye"))
    assert reader.peer_closed and reader.next_frame() is None
    [reply] = client_frames(reader.outgoing())
    assert reply.opcode is Opcode.CLOSE


@pytest.mark.parametrize(("frame", "code"), [
    ({"type": "error", "code": "frame_too_large", "message": "m", "fatal": True}, 1009),
    ({"type": "error", "code": "auth_timeout", "message": "m", "fatal": True}, 1008),
    ({"type": "error", "code": "slow_consumer", "message": "m", "fatal": True}, 1008),
    ({"type": "shutdown", "reason": "bye"}, 1001),
    ({"type": "bye"}, 1000),
    ({"type": "kicked", "reason": "r"}, 1000),
])
def test_the_close_code_follows_the_last_frame(frame, code):
    queued = text_frame(encode_payload({"type": "welcome"})) + text_frame(encode_payload(frame))
    assert close_code(last_frame_payload(queued)) == code
    [close] = client_frames(close_frame(code))
    assert close.opcode is Opcode.CLOSE and close.data[:2] == code.to_bytes(2, "big")


def test_no_whole_frame_means_a_normal_close():
    assert close_code(last_frame_payload(b"\x81\x7f\x00")) == 1000
    assert close_code(None) == 1000


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=300), min_size=1, max_size=5),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
       fragment=st.booleans())
def test_any_split_of_a_stream_of_messages_reads_the_same(texts, cuts, fragment):
    payloads = [json.dumps({"type": "say", "text": t}, ensure_ascii=False).encode() for t in texts]
    stream = b""
    for payload in payloads:
        if fragment and len(payload) > 2:
            stream += masked(Opcode.TEXT, payload[:2], fin=False) + masked(Opcode.CONT, payload[2:])
        else:
            stream += masked(Opcode.TEXT, payload)
    reader, got, start = MessageReader(65536), [], 0
    for cut in sorted({min(c, len(stream)) for c in cuts}) + [len(stream)]:
        reader.feed(stream[start:cut])
        start = cut
        got += list(reader)
    assert [f["text"] for f in got] == texts


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_frames_or_a_protocol_error_never_a_crash(data):
    reader = MessageReader(16384)
    reader.feed(data)
    try:
        list(reader)
    except ProtocolError as fault:
        assert fault.fatal


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_on_the_http_side_never_crash(data):
    web = WebConnection(SITE, 16384)
    web.feed(data)
    web.take_http()
    list(web)


# -- the outbox ---------------------------------------------------------------------------------


class CountingWebSocket(WebSocketCodec):
    """The WebSocket codec, counting the payloads it frames."""

    def __init__(self) -> None:
        self.framed = 0

    def frame(self, payload: bytes) -> bytes:
        self.framed += 1
        return text_frame(payload)


def test_a_broadcast_is_framed_once_for_every_websocket_reader_of_its_room():
    outbox, _port, _clock = new_box()
    ws = CountingWebSocket()
    sinks = []
    for sid in range(1, 51):
        sinks.append(sink := Sink())
        outbox.open(sid, sink, ws if sid % 5 else p.LENGTH_PREFIX)
        outbox.subscribe(sid, "dev")
    payload = encode_payload({"type": "message", "room": "dev", "seq": 1, "text": "hi"})
    outbox.broadcast(payload, room="dev")
    outbox.flush(set())
    assert ws.framed == 1  # 40 WebSocket readers, one framing
    received = {bytes(sink.received) for sid, sink in enumerate(sinks, 1) if sid % 5}
    assert received == {text_frame(payload)}  # the same bytes for every one


def web_output(http: bytes, room: int):
    """An outbox with one web connection whose socket takes `room` bytes, `http` queued."""
    outbox, _port, _clock = new_box()
    sink = Sink()
    sink.room = room
    out = outbox.open(1, sink, WEBSOCKET)
    outbox.send_raw(out, Unframed(http))
    return outbox, sink, out


def test_a_slow_reader_cut_in_its_http_answer_gets_the_rest_of_it_not_a_walk_over_frames():
    outbox, _sink, out = web_output(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 10)
    outbox.send(1, encode_payload({"type": "welcome"}))
    assert len(out.private) == 2  # the HTTP bytes stand apart
    outbox.flush(set())
    assert rest_of_frame(out) == b"01 Switching Protocols\r\n\r\n"


@pytest.mark.parametrize(("last", "code"), [
    ({"type": "error", "code": "server_full", "message": "full", "fatal": True}, 503),
    ({"type": "error", "code": "auth_timeout", "message": "late", "fatal": True}, 408),
    ({"type": "shutdown", "reason": "stopping"}, 503),
])
def test_the_chat_ending_an_http_connection_is_said_in_http(last, code):
    web, _ = served(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # unfinished
    assert answers(web.farewell(encode_payload(last))) == [code]
    finished, _ = served(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert finished.farewell(encode_payload(last)) == b""  # answered and closing already


def test_an_http_connection_keeps_its_answers_and_loses_the_chat_s_frames():
    outbox, sink, out = web_output(b"HTTP/1.1 200 OK\r\n\r\n", 5)
    outbox.flush(set())  # 5 bytes of it sent
    outbox.send_raw(out, Unframed(b"HTTP/1.1 404 Not Found\r\n\r\n"))
    outbox.send(1, encode_payload({"type": "error", "code": "auth_timeout"}))
    last = out.drop_frames()
    assert last is not None and last_frame_payload(last) == b'{"type":"error","code":"auth_timeout"}'
    sink.room = None
    outbox.flush({out})  # writable again
    assert bytes(sink.received) == b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n"
