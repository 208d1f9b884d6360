"""The bus's writer and reader threads against a real redis-server, Redis stopped and
restarted under them (docs/scale-out.md, "A `say` in bus mode" and "Failures").

`post` runs each callable at once on the thread that posts it, where a node's loop would run
it on the loop thread: what is checked is what reaches the loop, and in what order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from answer_dropper import AnswerDropper
from procs import WAIT, wait_until
from redis_server import RedisServer, running_redis

from netlab.bus.address import connect, parse_bus_url
from netlab.bus.publish import PUBLISH_LUA, FanoutEntry, Publish, Published, Publisher, messages_stream
from netlab.bus.threads import READ_AHEAD, BusReader, BusWriter, fanout_end

ALICE = "a" * 32


def run_now(fn: Callable[[], None]) -> None:
    fn()


class Collected:
    """What reached the 'loop': answers, entries and bus states, awaited by count."""

    def __init__(self) -> None:
        self.answers: list = []
        self.entries: list[FanoutEntry] = []
        self.states: list[bool] = []
        self._cond = threading.Condition()

    def answer(self, answer) -> None:
        with self._cond:
            self.answers.append(answer)
            self._cond.notify_all()

    def arrive(self, entries: list[FanoutEntry]) -> None:
        with self._cond:
            self.entries.extend(entries)
            self._cond.notify_all()

    def bus_state(self, reachable: bool, why: str) -> None:
        with self._cond:
            self.states.append(reachable)
            self._cond.notify_all()

    def wait(self, condition: Callable[[], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(condition, WAIT), (self.answers[-3:], self.entries[-3:], self.states)


@pytest.fixture
def server(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server:
        yield server


def client_of(server: RedisServer) -> redis.Redis:
    return connect(parse_bus_url(server.url), WAIT)


def test_the_writer_answers_every_publish_in_order(server: RedisServer) -> None:
    got = Collected()
    writer = BusWriter(client_of(server), run_now, max_batch=16)
    writer.start()
    for n in range(300):
        writer.submit(Publish("lobby", b"r", (ALICE, f"id-{n}")), got.answer)
    writer.submit(Publish("lobby", b"r", (ALICE, "id-7")), got.answer)  # a resend
    writer.close()  # what was queued goes out first
    assert got.answers == [Published(n, True) for n in range(1, 301)] + [Published(8, False)]


def test_the_writer_answers_errors_while_redis_is_down_then_publishes_again(server: RedisServer) -> None:
    got = Collected()
    writer = BusWriter(client_of(server), run_now)
    writer.start()
    writer.submit(Publish("lobby", b"1", (ALICE, "one")), got.answer)
    got.wait(lambda: len(got.answers) == 1)
    server.stop()
    writer.submit(Publish("lobby", b"2", (ALICE, "two")), got.answer)
    got.wait(lambda: len(got.answers) == 2)
    assert isinstance(got.answers[1], redis.ConnectionError)  # answered, not waited on: `unavailable`
    server.start()
    writer.submit(Publish("lobby", b"2", (ALICE, "two")), got.answer)  # the client's resend
    writer.close()
    assert got.answers[0] == Published(1, True) and got.answers[2] == Published(2, True)


def test_the_reader_delivers_every_entry_once_in_order_across_a_redis_restart(server: RedisServer) -> None:
    got = Collected()
    with client_of(server) as client:
        publisher = Publisher(client)
        publisher.publish(Publish("lobby", b"before the node started"))
        start = fanout_end(client)
        reader = BusReader(client_of(server), run_now, got, start, block_ms=100)
        reader.start()
        publisher.publish_many([Publish(room, b"x") for _ in range(20) for room in ("a", "b")])
        got.wait(lambda: len(got.entries) == 40)
    server.stop()
    got.wait(lambda: got.states == [False])
    server.start()
    with client_of(server) as client:
        Publisher(client).publish_many([Publish("a", b"after"), Publish("lobby", b"after")])
    got.wait(lambda: len(got.entries) == 42)
    reader.close()
    assert got.states == [False, True]
    # Each room's seqs in order, none twice, none missing; lobby's 1 was before the start.
    expected = {"a": list(range(1, 22)), "b": list(range(1, 21)), "lobby": [2]}
    assert {room: [e.seq for e in got.entries if e.key == room] for room in expected} == expected
    assert len({e.id for e in got.entries}) == 42
    assert reader.last_id == got.entries[-1].id


def test_a_lost_answer_is_resent_by_idempotency_key_and_each_message_stored_once(server: RedisServer) -> None:
    keyed = [Publish("lobby", f"{n}".encode(), (ALICE, f"id-{n}")) for n in range(5)]
    unkeyed = Publish("lobby", b"version 1")
    with server.client() as admin:
        admin.script_load(PUBLISH_LUA)  # as after a first publish: the batch's scripts run
    with AnswerDropper(server.port) as proxy, client_of_port(proxy.port) as client:
        answers = Publisher(client).publish_batch([*keyed, unkeyed])
    assert proxy.dropped.is_set()
    # The keyed ones were sent again: each answered, the first at least as a repeat (it ran
    # before its answer was lost), each with a seq of its own.
    assert all(isinstance(answer, Published) for answer in answers[:5]), answers
    assert not answers[0].new
    assert len({answer.seq for answer in answers[:5]}) == 5
    # The one without a key may be stored, so it is not resent: its answer is the error.
    assert isinstance(answers[5], redis.ConnectionError)
    with server.client() as check:
        stored = [fields[b"r"] for _, fields in check.xrange(messages_stream("lobby"))]
    assert sorted(stored.count(message.record) for message in keyed) == [1] * 5  # each once


def client_of_port(port: int) -> redis.Redis:
    return connect(parse_bus_url(f"redis://127.0.0.1:{port}/0"), WAIT)


def test_a_publish_that_fails_for_a_bug_is_answered_and_the_writer_lives_on(server: RedisServer) -> None:
    got = Collected()
    writer = BusWriter(client_of(server), run_now)
    writer.start()
    writer.submit(Publish(123, b"not a key"), got.answer)  # type: ignore[arg-type]
    got.wait(lambda: len(got.answers) == 1)
    writer.submit(Publish("lobby", b"next"), got.answer)
    writer.close()
    assert isinstance(got.answers[0], TypeError) and got.answers[1] == Published(1, True)


def test_a_loop_that_falls_behind_holds_the_reader_not_its_memory(server: RedisServer) -> None:
    """The reader posts at most READ_AHEAD batches the loop has not delivered; the rest wait in
    Redis, and come once the loop catches up."""
    got, posted = Collected(), queue.SimpleQueue()
    reader = BusReader(client_of(server), posted.put, got, b"0-0", block_ms=50)
    reader.start()
    with client_of(server) as client:
        publisher = Publisher(client)
        for n in range(READ_AHEAD + 2):
            publisher.publish(Publish("lobby", f"{n}".encode()))
            if n < READ_AHEAD:
                wait_until(lambda n=n: posted.qsize() == n + 1)  # one batch a publish
    assert posted.qsize() == READ_AHEAD  # the loop has delivered none: the reader waits
    while len(got.entries) < READ_AHEAD + 2:
        posted.get(timeout=WAIT)()  # the loop catches up, one batch at a time
    reader.close()
    assert [e.seq for e in got.entries] == list(range(1, READ_AHEAD + 3))
