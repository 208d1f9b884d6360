"""The bus's publish script against a real redis-server (docs/scale-out.md, "The publish script").

What every node relies on: a key's seq is dense and never reused, whoever publishes and
however many at once; a retried say is stored once; the fan-out stream every node reads holds
each message once, in each key's seq order; and a Redis restarted from its AOF goes on
counting where it was.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer, running_redis

from netlab.bus.names import Hidden
from netlab.bus.publish import (
    FANOUT,
    Publish,
    Published,
    Publisher,
    Unreadable,
    key_text,
    messages_stream,
    parse_key,
)

ALICE = "a" * 32
BOB = "b" * 32


@pytest.fixture
def server(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def publisher(server: RedisServer):
    with server.client() as client:
        yield Publisher(client)


def test_seq_is_dense_per_room_under_concurrent_publishers(server: RedisServer) -> None:
    threads_count, each = 4, 150
    seqs: list[list[int]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count)

    def publish(index: int) -> None:
        with server.client() as client:
            publisher = Publisher(client)
            start.wait()
            for n in range(each):
                answer = publisher.publish(Publish("lobby", b"r", (ALICE, f"t{index}-{n}")))
                assert answer.new
                seqs[index].append(answer.seq)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(seq for mine in seqs for seq in mine)
    assert every == list(range(1, threads_count * each + 1))  # dense, none twice
    for mine in seqs:  # each publisher's own messages in the order it sent them
        assert mine == sorted(mine)


def test_a_retried_say_gets_its_first_seq_and_appends_nothing(publisher: Publisher,
                                                              server: RedisServer) -> None:
    first = publisher.publish(Publish("lobby", b"hello", (ALICE, "id-1")))
    publisher.publish(Publish("lobby", b"other", (BOB, "id-1")))  # the same id from another account is new
    again = publisher.publish(Publish("lobby", b"hello", (ALICE, "id-1")))
    assert first == Published(1, True)
    assert again == Published(1, False)
    with server.client() as client:
        assert client.xlen(messages_stream("lobby")) == 2
    assert [e.seq for e in publisher.read_fanout(b"0", 100)] == [1, 2]


def test_a_say_without_id_is_stored_each_time(publisher: Publisher) -> None:
    assert [publisher.publish(Publish("lobby", b"v1")).seq for _ in range(3)] == [1, 2, 3]


def test_the_id_window_is_the_last_thousand_messages(publisher: Publisher) -> None:
    publisher.publish(Publish("lobby", b"old", (ALICE, "early")))
    answers = publisher.publish_many(Publish("lobby", b"x") for _ in range(1_000))
    assert answers[-1] == Published(1_001, True)
    # 1,000 messages later the id is forgotten, as PROTOCOL.md's window says: stored again.
    assert publisher.publish(Publish("lobby", b"old", (ALICE, "early"))) == Published(1_002, True)


def test_rooms_and_conversations_count_apart(publisher: Publisher) -> None:
    chat = Hidden("c" * 32)  # a conversation, by its token (bus/names.py)
    answers = publisher.publish_many([Publish("lobby", b"1"), Publish("general", b"1"), Publish(chat, b"1"),
                                      Publish("lobby", b"2"), Publish(chat, b"2", (ALICE, "x"))])
    assert [a.seq for a in answers] == [1, 1, 1, 2, 2]
    # The same (account, id) in another key is another message.
    assert publisher.publish(Publish("lobby", b"3", (ALICE, "x"))) == Published(3, True)


def test_the_fanout_stream_holds_every_publish_once_in_seq_order(server: RedisServer) -> None:
    rooms, threads_count, each = ["r0", "r1", "r2"], 3, 60
    sent: dict[str, set[bytes]] = defaultdict(set)
    lock = threading.Lock()

    def publish(index: int) -> None:
        with server.client() as client:
            publisher = Publisher(client)
            batch = [Publish(rooms[n % len(rooms)], f"{index}/{n}".encode()) for n in range(each)]
            half = each // 2  # half pipelined, half one by one: both paths interleave with the others
            answers = publisher.publish_many(batch[:half]) + [publisher.publish(m) for m in batch[half:]]
            for answer in answers:
                assert isinstance(answer, Published) and answer.new
            with lock:
                for message in batch:
                    sent[message.key].add(message.record)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with server.client() as client:
        entries = Publisher(client).read_fanout(b"0", 10_000)
        by_room = defaultdict(list)
        for entry in entries:
            by_room[entry.key].append(entry)
        for room in rooms:
            seqs = [e.seq for e in by_room[room]]
            assert seqs == list(range(1, len(sent[room]) + 1))  # each seq once, in order
            assert {e.record for e in by_room[room]} == sent[room]  # each message once
            # The fan-out entry and the room's own stream agree on every seq's record.
            stored = {int(entry_id.split(b"-")[0]): fields[b"r"]
                      for entry_id, fields in client.xrange(messages_stream(room))}
            assert stored == {e.seq: e.record for e in by_room[room]}


def test_a_restart_from_the_aof_keeps_the_counters(publisher: Publisher, server: RedisServer) -> None:
    for n in range(5):
        publisher.publish(Publish("lobby", f"{n}".encode(), (ALICE, f"id-{n}")))
    server.restart()
    with server.client() as client:
        again = Publisher(client)  # its script is loaded again: a restart emptied the cache
        assert again.publish(Publish("lobby", b"4", (ALICE, "id-4"))) == Published(5, False)
        assert again.publish(Publish("lobby", b"new")) == Published(6, True)
        assert [e.seq for e in again.read_fanout(b"0", 100)] == [1, 2, 3, 4, 5, 6]


def test_a_batch_after_a_restart_loads_the_script_again_and_stores_each_once(publisher: Publisher,
                                                                             server: RedisServer) -> None:
    publisher.publish(Publish("lobby", b"before"))
    server.restart()  # the script cache is empty now: the batch's EVALSHAs meet NOSCRIPT
    with server.client() as client:
        answers = Publisher(client).publish_many([Publish("lobby", f"{n}".encode()) for n in range(3)])
        assert answers == [Published(2, True), Published(3, True), Published(4, True)]
        assert client.xlen(messages_stream("lobby")) == 4


def test_reading_the_fanout_resumes_after_the_last_id(publisher: Publisher) -> None:
    publisher.publish(Publish("lobby", b"1"))
    [first] = publisher.read_fanout(b"0", 100)
    publisher.publish(Publish("lobby", b"2"))
    assert [(e.key, e.seq, e.record) for e in publisher.read_fanout(first.id, 100, block_ms=1)] == [
        ("lobby", 2, b"2")]


def test_an_entry_netlab_did_not_write_is_passed_over_not_fatal_to_the_reader(publisher: Publisher,
                                                                            server: RedisServer) -> None:
    """Read as what it is, so the reader moves past it: raised, it would end the reader's
    thread (or, retried from the same id, stop it there for good) and the node go deaf."""
    publisher.publish(Publish("lobby", b"1"))
    with server.client() as client:
        client.xadd(FANOUT, {"x": "1"})
        client.xadd(FANOUT, {"k": "nonsense", "s": "2", "r": "2"})
    publisher.publish(Publish("lobby", b"2"))
    entries = publisher.read_fanout(b"0", 100)
    assert [type(e).__name__ for e in entries] == ["FanoutEntry", "Unreadable", "Unreadable", "FanoutEntry"]
    assert isinstance(entries[1], Unreadable) and entries[1].id < entries[2].id < entries[3].id


@pytest.mark.parametrize("key", ["general", "a-b", Hidden("0123456789abcdef" * 2)])
def test_key_text_round_trips(key) -> None:
    assert parse_key(key_text(key)) == key


@pytest.mark.parametrize("text", ["", "r:", "d:x", "x:y", "d::y", f"d:{ALICE}:{BOB}", "d:" + "G" * 32])
def test_a_foreign_key_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_key(text)


def test_a_conversation_is_never_named_by_its_pair() -> None:
    with pytest.raises(TypeError):
        key_text((ALICE, BOB))  # type: ignore[arg-type]


def test_a_bus_out_of_memory_refuses_the_publish_whole_and_seq_stays_dense(publisher: Publisher,
                                                                           server: RedisServer) -> None:
    publisher.publish(Publish("lobby", b"1"))
    with server.client() as admin:
        admin.config_set("maxmemory", "1")  # below what Redis already uses: every write is refused
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            publisher.publish(Publish("lobby", b"2", (ALICE, "x")))
        admin.config_set("maxmemory", "0")
        assert admin.xlen(messages_stream("lobby")) == 1
    assert publisher.publish(Publish("lobby", b"2", (ALICE, "x"))) == Published(2, True)


def test_the_fanout_stream_says_how_many_entries_its_trim_took(server: RedisServer) -> None:
    """What a reader compares with the entries it consumed: fewer, and it missed some."""
    with server.client() as client:
        publisher = Publisher(client, fanout_cap=10)
        assert publisher.fanout_trimmed() == 0  # no stream yet
        publisher.publish(Publish("lobby", b"first"))
        assert publisher.fanout_trimmed() == 0  # nothing trimmed yet
        # `MAXLEN ~` trims whole nodes of the stream (100 entries each): publish past a few.
        publisher.publish_many(Publish("lobby", b"x") for _ in range(400))
        trimmed = publisher.fanout_trimmed()
        assert trimmed > 0 and trimmed == 401 - client.xlen("netlab:fanout")
        # The room's own stream, never trimmed, still has every seq.
        assert client.xlen(messages_stream("lobby")) == 401


