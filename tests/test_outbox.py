"""The outbox without sockets: a fake `send` that takes as many bytes as a test lets it.

What reaches each sink is decoded with the codec's own decoder, so these tests see
frames, orders and cuts as a client would.
"""

from __future__ import annotations

import pytest

from netlab import wire as p
from netlab.loop.outbox import Outbox, Output
from netlab.wire import FrameDecoder, encode_payload

MAX_OUTPUT = 10_000


class Sink:
    """A client socket: takes up to `room` bytes a send (None: all), or is dead."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.room: int | None = None
        self.dead: str | None = None
        self.views: list[int] = []  # id() of each chunk handed to it (never the chunk: it pins)

    def frames(self) -> list[dict]:
        decoder = FrameDecoder(1 << 20)
        decoder.feed(bytes(self.received))
        return list(decoder)


def send(sink: Sink, chunk: memoryview) -> int | str:
    if sink.dead is not None:
        return sink.dead
    sink.views.append(id(chunk))
    taken = len(chunk) if sink.room is None else min(sink.room, len(chunk))
    sink.received += chunk[:taken]
    if sink.room is not None:
        sink.room -= taken
    return taken


class Port:
    """The loop's side, recording outcomes; a cut is answered as the chat answers it."""

    def __init__(self) -> None:
        self.outbox: Outbox
        self.events: list[tuple[str, int]] = []

    def blocked(self, out: Output, blocked: bool) -> None:
        self.events.append(("blocked" if blocked else "unblocked", out.sid))

    def dead(self, out: Output, reason: str) -> None:
        self.events.append(("dead", out.sid))
        self.outbox.forget(out)
        self.outbox.broadcast(encode_payload({"type": "leave", "username": str(out.sid)}))

    def drained(self, out: Output) -> None:
        self.events.append(("drained", out.sid))

    def slow_consumer(self, sid: int) -> None:
        self.events.append(("slow_consumer", sid))
        self.outbox.send(sid, encode_payload(p.error("slow_consumer", "behind", fatal=True)))
        self.outbox.close(sid)


class CountingCodec:
    """The length-prefix codec, counting the payloads it frames."""

    def __init__(self, name: str = "length-prefix") -> None:
        self.name = name
        self.framed = 0

    def frame(self, payload: bytes) -> bytes:
        self.framed += 1
        return p.LENGTH_PREFIX.frame(payload)

    def decoder(self, max_frame: int) -> FrameDecoder:
        return FrameDecoder(max_frame)

    def frame_end(self, read, boundary: int, position: int) -> int:
        return p.LENGTH_PREFIX.frame_end(read, boundary, position)


def new_box(max_output: int = MAX_OUTPUT) -> tuple[Outbox, Port, list[float]]:
    """An outbox with the fake send, a recording port and a clock the test moves."""
    port = Port()
    clock = [0.0]
    outbox = Outbox(max_output, send, port, lambda: clock[0])
    port.outbox = outbox
    return outbox, port, clock


@pytest.fixture
def box():
    return new_box()


def open_sinks(outbox: Outbox, n: int, codec=p.LENGTH_PREFIX, first: int = 1) -> list[Sink]:
    sinks = []
    for sid in range(first, first + n):
        sink = Sink()
        outbox.open(sid, sink, codec)
        outbox.subscribe(sid)
        sinks.append(sink)
    return sinks


def say(n: int, text: str = "hi") -> bytes:
    return encode_payload(p.message(n, "2026-01-01T00:00:00.000Z", "ann", text))


def test_a_broadcast_is_framed_once_per_codec_and_readers_that_kept_up_share_one_slice(box):
    outbox, _port, _clock = box
    plain, other = CountingCodec(), CountingCodec("other")
    sinks = open_sinks(outbox, 50, plain)
    others = open_sinks(outbox, 3, other, first=100)
    outbox.broadcast(say(1))
    outbox.broadcast(say(2))
    outbox.flush(set())
    assert plain.framed == 2 and other.framed == 2
    for sink in sinks + others:
        assert [f["seq"] for f in sink.frames()] == [1, 2]
    assert len({view for sink in sinks for view in sink.views}) == 1
    assert all(len(sink.views) == 1 for sink in sinks)  # one send a reader a pass


def test_private_frames_and_broadcasts_arrive_in_the_order_they_were_queued(box):
    outbox, _port, _clock = box
    sink, = open_sinks(outbox, 1)
    outbox.broadcast(say(1))
    outbox.send(1, encode_payload(p.pong("a")))
    outbox.broadcast(say(2))
    outbox.send(1, encode_payload(p.pong("b")))
    outbox.send(1, encode_payload(p.pong("c")))
    outbox.flush(set())
    assert [f.get("seq") or f["id"] for f in sink.frames()] == [1, "a", 2, "b", "c"]


def test_a_full_sink_waits_for_room_and_resumes_where_it_stopped(box):
    outbox, port, _clock = box
    sink, = open_sinks(outbox, 1)
    sink.room = 10
    outbox.broadcast(say(1))
    outbox.flush(set())
    assert port.events == [("blocked", 1)]
    outbox.broadcast(say(2))
    outbox.flush(set())  # not writable yet: nothing more is tried
    assert len(sink.received) == 10
    sink.room = None
    outbox.flush({outbox.outputs[1]})
    assert port.events[-1] == ("unblocked", 1)
    assert [f["seq"] for f in sink.frames()] == [1, 2]


def test_a_reader_past_max_output_gets_the_rest_of_its_frame_then_slow_consumer(box):
    outbox, port, _clock = box
    slow, fast = open_sinks(outbox, 2)
    slow.room = 5  # in the middle of the first frame
    text = "x" * 1000
    for n in range(1, 15):  # 14 frames of about 1 KB: past MAX_OUTPUT
        outbox.broadcast(say(n, text))
        outbox.flush({outbox.outputs[1]})
    assert ("slow_consumer", 1) in port.events
    assert [f["seq"] for f in fast.frames()] == list(range(1, 15))
    slow.room = None
    outbox.flush({outbox.outputs[1]})
    frames = slow.frames()
    assert frames[0]["seq"] == 1 and frames[-1]["code"] == "slow_consumer"
    assert [f.get("seq") for f in frames[1:-1]] == []  # its backlog was dropped, no torn frame
    assert ("drained", 1) in port.events  # closing, and all sent: its FIN may follow


def test_a_cut_in_the_middle_of_a_private_frame_finishes_that_frame(box):
    outbox, port, _clock = box
    sink = Sink()
    outbox.open(1, sink, p.LENGTH_PREFIX)
    sink.room = 7
    big = encode_payload(p.notice("y" * 3000))
    outbox.send(1, big)
    outbox.flush(set())  # 7 bytes of it went
    for _ in range(3):
        outbox.send(1, big)
    assert outbox.outputs[1].over_limit  # its requests wait from now
    outbox.flush(set())  # the cut
    assert port.events.count(("slow_consumer", 1)) == 1
    assert not outbox.outputs[1].over_limit  # cut: what it is sent now is the chat's goodbye
    sink.room = None
    outbox.flush({outbox.outputs[1]})
    frames = sink.frames()
    assert [f["type"] for f in frames] == ["notice", "error"]


def test_a_dead_reader_is_reported_after_the_fan_out_and_may_broadcast_its_leave(box):
    outbox, port, _clock = box
    dead, alive = open_sinks(outbox, 2)
    dead.dead = "error: Connection reset by peer"
    outbox.broadcast(say(1))
    outbox.flush(set())  # the leave grows the log: no view may pin it then
    assert ("dead", 1) in port.events
    outbox.flush(set())
    assert [f["type"] for f in alive.frames()] == ["message", "leave"]


def test_taken_back_broadcasts_are_never_sent(box):
    outbox, _port, _clock = box
    sink, = open_sinks(outbox, 1)
    outbox.broadcast(say(1))
    mark = outbox.mark()
    outbox.broadcast(say(2))
    outbox.take_back(mark)
    outbox.flush(set())
    assert [f["seq"] for f in sink.frames()] == [1]


def test_a_closing_connection_gets_what_was_queued_before_its_close_and_nothing_after(box):
    outbox, port, _clock = box
    sink, = open_sinks(outbox, 1)
    outbox.broadcast(say(1))
    outbox.send(1, encode_payload(p.bye()))
    outbox.close(1)
    outbox.broadcast(say(2))
    outbox.send(1, encode_payload(p.pong(None)))
    outbox.flush(set())
    assert [f["type"] for f in sink.frames()] == ["message", "bye"]
    assert port.events == [("drained", 1)]


def test_presence_alone_waits_for_company_or_its_pacing(box):
    outbox, _port, clock = box
    sink, = open_sinks(outbox, 1)
    outbox.broadcast(encode_payload(p.presence("join", "a")), urgent=False)
    outbox.flush(set())  # the first pass may go at once
    outbox.broadcast(encode_payload(p.presence("join", "b")), urgent=False)
    outbox.flush(set())
    assert [f["username"] for f in sink.frames()] == ["a"]
    clock[0] = outbox.next_presence
    outbox.flush(set())
    assert [f["username"] for f in sink.frames()] == ["a", "b"]
    outbox.broadcast(encode_payload(p.presence("join", "c")), urgent=False)
    outbox.broadcast(say(1))  # a message takes waiting presence along
    outbox.flush(set())
    assert [f["type"] for f in sink.frames()][-2:] == ["join", "message"]


def test_the_log_is_trimmed_to_its_slowest_reader(box):
    outbox, _port, _clock = box
    open_sinks(outbox, 3)
    for n in range(1, 20):
        outbox.broadcast(say(n, "z" * 1000))
        outbox.flush(set())
    log = outbox.logs.get("general", p.LENGTH_PREFIX.name)
    assert log.base > 0 and outbox.buffered <= MAX_OUTPUT + 1100


def test_a_pass_is_thin_while_its_sends_outnumber_the_broadcasts_they_carry(box):
    """The loop looks for more messages before a thin pass's flush (chat_selectors)."""
    outbox, _port, _clock = box
    open_sinks(outbox, 3)
    assert not outbox.thin  # nothing to send
    outbox.broadcast(say(1))
    assert outbox.thin  # three sends for one message
    outbox.broadcast(say(2))
    outbox.broadcast(say(3))
    assert not outbox.thin  # three for three
    outbox.flush(set())
    assert not outbox.thin
    outbox.broadcast(say(4))
    assert outbox.thin  # counted afresh after each flush
    outbox.broadcast(encode_payload(p.presence("join", "b")), urgent=False)
    outbox.broadcast(encode_payload(p.presence("join", "c")), urgent=False)
    assert outbox.thin  # presence waits for its own pace: it shares no sends with the message
