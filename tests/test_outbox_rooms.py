"""The outbox with rooms, without sockets: one log per room and codec, sessions reading several.

The fake `send`, sinks and port are test_outbox's: what reaches a sink is decoded as a
client would, so these tests see frames, orders and cuts.
"""

from __future__ import annotations

from test_outbox import CountingCodec, Sink, new_box

from netlab import wire as p
from netlab.loop.logs import Reader
from netlab.loop.outbox import Outbox
from netlab.wire import encode_payload


def in_room(room: str, n: int) -> bytes:
    return encode_payload({"type": "message", "room": room, "seq": n})


def join(outbox: Outbox, sid: int, *rooms: str, codec=p.LENGTH_PREFIX) -> Sink:
    sink = Sink()
    outbox.open(sid, sink, codec)
    for room in rooms:
        outbox.subscribe(sid, room)
    return sink


def seen(sink: Sink) -> list:
    return [(f.get("room"), f.get("seq") or f.get("id")) for f in sink.frames()]


def test_a_room_s_broadcast_reaches_its_subscribers_only():
    outbox, _port, _clock = new_box()
    dev, ops, both = join(outbox, 1, "dev"), join(outbox, 2, "ops"), join(outbox, 3, "dev", "ops")
    outbox.broadcast(in_room("dev", 1), room="dev")
    outbox.broadcast(in_room("ops", 1), room="ops")
    outbox.broadcast(in_room("nobody", 1), room="nobody")  # no log: nothing to do
    outbox.flush(set())
    assert seen(dev) == [("dev", 1)] and seen(ops) == [("ops", 1)]
    assert sorted(seen(both)) == [("dev", 1), ("ops", 1)]
    assert len(both.views) == 1  # new bytes in two rooms, one send
    assert outbox.logs.get("nobody", p.LENGTH_PREFIX.name) is None


def test_a_broadcast_is_framed_once_per_codec_of_its_room():
    outbox, _port, _clock = new_box()
    plain, other = CountingCodec(), CountingCodec("other")
    for sid in range(1, 6):
        join(outbox, sid, "dev", codec=plain)
    join(outbox, 10, "dev", codec=other)
    join(outbox, 11, "ops", codec=other)
    outbox.broadcast(in_room("dev", 1), room="dev")
    assert plain.framed == 1 and other.framed == 1


def test_a_room_left_still_sends_what_was_queued_before_then_its_log_goes():
    outbox, _port, _clock = new_box()
    sink = join(outbox, 1, "dev")
    sink.room = 3  # in the middle of the first frame
    outbox.broadcast(in_room("dev", 1), room="dev")
    outbox.flush(set())
    outbox.broadcast(in_room("dev", 2), room="dev")
    outbox.unsubscribe(1, "dev")
    outbox.send(1, encode_payload(p.pong("left")))
    outbox.broadcast(in_room("dev", 3), room="dev")
    sink.room = None
    outbox.flush({outbox.outputs[1]})
    assert seen(sink) == [("dev", 1), ("dev", 2), (None, "left")]
    assert outbox.logs.get("dev", p.LENGTH_PREFIX.name) is None  # its last reader went
    outbox.subscribe(1, "dev")
    outbox.broadcast(in_room("dev", 4), room="dev")
    outbox.flush(set())
    assert seen(sink)[-1] == ("dev", 4)


def test_a_private_frame_comes_after_the_broadcasts_of_every_room_queued_before_it():
    outbox, _port, _clock = new_box()
    sink = join(outbox, 1, "a", "b", "c")
    outbox.broadcast(in_room("a", 1), room="a")
    outbox.broadcast(in_room("c", 1), room="c")
    outbox.send(1, encode_payload(p.pong("x")))
    outbox.broadcast(in_room("b", 1), room="b")
    outbox.send(1, encode_payload(p.pong("y")))
    outbox.flush(set())
    frames = seen(sink)
    assert frames.index((None, "x")) > max(frames.index(("a", 1)), frames.index(("c", 1)))
    assert frames.index((None, "x")) < frames.index(("b", 1)) < frames.index((None, "y"))
    assert len(sink.views) == 1


def test_a_slow_reader_is_cut_for_what_it_owes_in_all_its_rooms_together():
    outbox, port, _clock = new_box()
    slow = join(outbox, 1, "a", "b")
    join(outbox, 2, "a")
    join(outbox, 3, "b")
    slow.room = 5
    text = "x" * 1000
    for n in range(1, 7):  # 6 frames of 1 KB a room: neither room alone is past MAX_OUTPUT
        outbox.broadcast(encode_payload({"type": "message", "room": "a", "seq": n, "text": text}), room="a")
        outbox.broadcast(encode_payload({"type": "message", "room": "b", "seq": n, "text": text}), room="b")
        outbox.flush(set())
    assert ("slow_consumer", 1) in port.events
    slow.room = None
    outbox.flush({outbox.outputs[1]})
    assert [f["type"] for f in slow.frames()] == ["message", "error"]  # the frame it was in, then why


def test_a_failed_commit_takes_back_the_broadcasts_of_every_room():
    outbox, _port, _clock = new_box()
    sink = join(outbox, 1, "a", "b")
    outbox.broadcast(in_room("a", 1), room="a")
    mark = outbox.mark()
    outbox.broadcast(in_room("a", 2), room="a")
    outbox.broadcast(in_room("b", 1), room="b")
    outbox.take_back(mark)
    outbox.flush(set())
    assert seen(sink) == [("a", 1)]


def test_presence_in_one_room_waits_for_that_room_s_messages_only():
    outbox, _port, _clock = new_box()
    sink = join(outbox, 1, "a", "b")
    outbox.broadcast(in_room("a", 1), room="a", urgent=False)
    outbox.broadcast(in_room("b", 1), room="b")
    outbox.flush(set())  # both logs' first passes may go at once
    outbox.broadcast(in_room("a", 2), room="a", urgent=False)
    outbox.broadcast(in_room("b", 2), room="b")
    outbox.flush(set())  # b's message does not take a's presence along
    assert ("a", 2) not in seen(sink) and ("b", 2) in seen(sink)
    assert outbox.next_presence is not None


class CountingReader(Reader):
    """A reader that counts the fan-out's visits (each reads its `out`)."""

    __slots__ = ()
    visits = 0

    def __getattribute__(self, name: str):
        if name == "out":
            CountingReader.visits += 1
        return object.__getattribute__(self, name)


def test_one_message_costs_its_room_s_members_only_whatever_the_other_rooms(monkeypatch):
    """A 10-member room among 100 rooms of 10 others, some of them behind: one message
    of it visits 10 readers, frames once, makes 10 sends, and copies nothing per reader."""
    monkeypatch.setattr("netlab.loop.logs.Reader", CountingReader)
    outbox, _port, _clock = new_box()
    codec = CountingCodec()
    members = [join(outbox, sid, "general", "dev", codec=codec) for sid in range(1, 11)]
    others = [join(outbox, sid, "general", f"room-{sid % 100}", codec=codec) for sid in range(100, 1100)]
    for sid in range(100, 1100, 50):  # some are behind in their rooms
        others[sid - 100].room = 0
        outbox.broadcast(in_room(f"room-{sid % 100}", 1), room=f"room-{sid % 100}")
    outbox.flush(set())
    sends = sum(len(s.views) for s in members + others)
    framed, CountingReader.visits = codec.framed, 0
    buffered = outbox.buffered
    outbox.broadcast(in_room("dev", 1), room="dev")
    assert outbox.buffered - buffered == len(p.LENGTH_PREFIX.frame(in_room("dev", 1)))
    outbox.flush(set())
    assert codec.framed - framed == 1
    assert not outbox.logs.get("dev", codec.name).data  # all its readers have it: an idle room keeps nothing
    assert sum(len(s.views) for s in members + others) - sends == 10
    assert CountingReader.visits == 10  # each member once; no one of the other rooms
    assert all(seen(s)[-1] == ("dev", 1) for s in members)


def test_a_frame_cut_short_in_one_room_is_finished_before_another_room_s_bytes():
    outbox, _port, _clock = new_box()
    sink = join(outbox, 1, "a", "b")
    sink.room = 5  # in the middle of b's frame
    outbox.broadcast(in_room("b", 1), room="b")
    outbox.flush(set())
    outbox.broadcast(in_room("a", 1), room="a")
    outbox.send(1, encode_payload(p.pong("x")))
    sink.room = None
    outbox.flush({outbox.outputs[1]})
    assert seen(sink) == [("b", 1), ("a", 1), (None, "x")]


def test_what_a_failed_commit_takes_back_is_not_what_comes_next_to_those_who_moved_meanwhile():
    outbox, _port, _clock = new_box()
    closing, late = join(outbox, 1, "a"), join(outbox, 2)
    mark = outbox.mark()
    outbox.broadcast(in_room("a", 1), room="a")
    outbox.send(1, encode_payload(p.pong("bye")))
    outbox.close(1)  # it stops after a#1 and its bye
    outbox.subscribe(2, "a")  # it reads from after a#1
    outbox.take_back(mark)
    outbox.broadcast(encode_payload({"type": "message", "room": "a", "seq": 2, "text": "longer"}), room="a")
    outbox.flush(set())
    assert seen(closing) == [(None, "bye")]
    assert seen(late) == [("a", 2)]
