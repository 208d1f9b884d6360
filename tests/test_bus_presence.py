"""Presence across nodes through Redis: each node's hash with a TTL (netlab/bus/presence.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from procs import wait_until
from redis_server import RedisServer, running_redis

from netlab.bus.presence import NODES, NodePresence, online_by_node

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
def server(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server:
        yield server


def test_every_node_sees_the_users_of_the_others_and_a_silent_nodes_expire(server: RedisServer) -> None:
    with server.client() as client:
        one = NodePresence(client, "one", ttl=0.5)
        two = NodePresence(client, "two", ttl=0.5)
        one.set(ALICE, True)
        one.set(BOB, True)
        two.set(BOB, True)
        two.set(CAROL, True)
        assert online_by_node(client, "three") == {"one": {ALICE, BOB}, "two": {BOB, CAROL}}
        assert online_by_node(client, "one") == {"two": {BOB, CAROL}}  # a node's own left out
        one.set(ALICE, False)  # her last session on node one ended
        one.set(BOB, False)
        assert online_by_node(client, "three") == {"one": set(), "two": {BOB, CAROL}}  # one lives on

        def only_node_one_is_left() -> bool:
            one.beat()  # node one lives and beats; node two is silent, as after kill -9
            return online_by_node(client, "three") == {"one": set()}

        wait_until(only_node_one_is_left)


def test_a_node_whose_hash_expired_while_it_lived_writes_it_again(server: RedisServer) -> None:
    with server.client() as client:
        node = NodePresence(client, "one", ttl=0.2)
        node.set(ALICE, True)
        wait_until(lambda: online_by_node(client, "two") == {})  # paused past its TTL
        assert node.beat() is True
        assert online_by_node(client, "two") == {"one": {ALICE}}
        assert node.beat() is False  # alive: a renewal only


def test_a_clean_stop_takes_the_nodes_users_offline_at_once(server: RedisServer) -> None:
    with server.client() as client:
        node = NodePresence(client, "one")
        node.set(ALICE, True)
        node.leave()
        assert online_by_node(client, "two") == {}


def test_the_event_goes_in_the_same_step_as_the_hash(server: RedisServer) -> None:
    with server.client() as client:
        NodePresence(client, "one").set(ALICE, True, lambda pipe: pipe.set("announced", "yes"))
        assert client.get("announced") == b"yes" and online_by_node(client, "two") == {"one": {ALICE}}


def test_a_change_the_bus_refused_is_written_at_the_next_beat(server: RedisServer) -> None:
    """A Redis blip shorter than the TTL: the hash outlived it, so the renewal alone would keep
    showing the user who left meanwhile online on every other node, for good."""
    with server.client() as client:
        node = NodePresence(client, "one")
        node.set(ALICE, True)
        client.config_set("maxmemory", 1)  # every write that may grow memory is refused (OOM)
        try:
            with pytest.raises(redis.RedisError):
                node.set(ALICE, False)  # her last session here ended while the bus refused
        finally:
            client.config_set("maxmemory", 0)
        node.beat()
        assert online_by_node(client, "two") == {"one": set()}


def calls(client: redis.Redis) -> dict[str, int]:
    """Redis's count of each command it ran so far (INFO commandstats)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): command["calls"] for name, command in stats.items()}


def presence_read_calls(client: redis.Redis) -> dict[str, int]:
    """The commands one presence read ran (the INFO itself left out)."""
    before = calls(client)
    online_by_node(client, "three")
    after = calls(client)
    ran = {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)}
    ran["info"] -= 1
    return {name: count for name, count in ran.items() if count}


def test_a_presence_read_costs_the_same_however_many_other_keys_redis_holds(server: RedisServer) -> None:
    """Nodes are found through their registry, not a SCAN of the whole keyspace: every
    heartbeat's read is as cheap in a big chat as in an empty one."""
    with server.client() as client:
        NodePresence(client, "one").set(ALICE, True)
        NodePresence(client, "two").set(BOB, True)
        small = presence_read_calls(client)
        pipe = client.pipeline(transaction=False)
        for n in range(5000):  # accounts, rooms, streams: keys of the chat, none of presence
            pipe.set(f"netlab:other:{n}", "x")
        pipe.execute()
        assert online_by_node(client, "three") == {"one": {ALICE}, "two": {BOB}}
        big = presence_read_calls(client)
        assert "scan" not in big and big == small


def test_a_node_whose_hash_expired_leaves_the_registry(server: RedisServer) -> None:
    with server.client() as client:
        gone = NodePresence(client, "gone", ttl=0.2)
        gone.set(ALICE, True)
        NodePresence(client, "live").set(BOB, True)
        assert client.smembers(NODES) == {b"gone", b"live"}
        wait_until(lambda: not client.exists(gone.key))  # killed: it no longer beats
        assert online_by_node(client, "three") == {"live": {BOB}}
        assert client.smembers(NODES) == {b"live"}


def test_a_node_that_rewrites_its_hash_while_it_is_pruned_stays(server: RedisServer) -> None:
    """The read found the hash missing; the node, back, wrote it again before the prune: the
    prune finds it there and keeps the node in the registry."""
    with server.client() as client:
        node = NodePresence(client, "one", ttl=0.2)
        node.set(ALICE, True)
        wait_until(lambda: not client.exists(node.key))
        real_pipeline = client.pipeline

        def pipeline_then_back(*args, **kwargs) -> redis.client.Pipeline:
            pipe = real_pipeline(*args, **kwargs)
            real_execute = pipe.execute

            def execute(*eargs, **ekwargs) -> list:
                answers = real_execute(*eargs, **ekwargs)
                client.pipeline = real_pipeline  # type: ignore[method-assign]
                node.beat()  # between the read and the prune
                return answers

            pipe.execute = execute  # type: ignore[method-assign]
            return pipe

        client.pipeline = pipeline_then_back  # type: ignore[method-assign]
        assert online_by_node(client, "two") == {}  # read before the node came back
        assert client.smembers(NODES) == {b"one"}
        assert online_by_node(client, "two") == {"one": {ALICE}}


def test_a_node_missing_from_the_registry_is_back_at_its_next_beat(server: RedisServer) -> None:
    """A registry emptied by hand, or a hash written by a netlab from before the registry."""
    with server.client() as client:
        node = NodePresence(client, "one")
        node.set(ALICE, True)
        client.delete(NODES)
        assert node.beat() is False  # a renewal, which names the node again
        assert online_by_node(client, "two") == {"one": {ALICE}}


def test_a_clean_stop_leaves_the_registry(server: RedisServer) -> None:
    with server.client() as client:
        node = NodePresence(client, "one")
        node.set(ALICE, True)
        node.leave()
        assert client.smembers(NODES) == set()
