"""Presence across nodes through Redis: each node's hash with a TTL (netlab/bus/presence.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from procs import wait_until
from redis_server import RedisServer, running_redis

from netlab.bus.presence import NodePresence, online_by_node

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
