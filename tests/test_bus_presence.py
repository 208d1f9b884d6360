"""Presence across nodes through Redis: each node's hash with a TTL (netlab/bus/presence.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from procs import wait_until
from redis_server import RedisServer, running_redis

from netlab.bus.presence import NodePresence, online_everywhere

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32


@pytest.fixture
def server(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server:
        yield server


def test_every_node_sees_the_users_of_all_and_a_silent_nodes_expire(server: RedisServer) -> None:
    with server.client() as client:
        one = NodePresence(client, "one", ttl=0.5)
        two = NodePresence(client, "two", ttl=0.5)
        one.set(ALICE, 1)
        one.set(BOB, 2)
        two.set(BOB, 1)
        two.set(CAROL, 1)
        assert online_everywhere(client) == {ALICE: 1, BOB: 3, CAROL: 1}
        one.set(ALICE, 0)  # her last session on node one ended
        assert online_everywhere(client) == {BOB: 3, CAROL: 1}

        def only_node_one_is_left() -> bool:
            one.beat({BOB: 2})  # node one lives and beats; node two is silent, as after kill -9
            return online_everywhere(client) == {BOB: 2}

        wait_until(only_node_one_is_left)


def test_a_node_whose_hash_expired_while_it_lived_writes_it_again(server: RedisServer) -> None:
    with server.client() as client:
        node = NodePresence(client, "one", ttl=0.2)
        node.set(ALICE, 1)
        wait_until(lambda: online_everywhere(client) == {})  # paused past its TTL
        assert node.beat({ALICE: 1}) is True
        assert online_everywhere(client) == {ALICE: 1}
        assert node.beat({ALICE: 1}) is False  # alive: a renewal only


def test_a_clean_stop_takes_the_nodes_users_offline_at_once(server: RedisServer) -> None:
    with server.client() as client:
        node = NodePresence(client, "one")
        node.set(ALICE, 1)
        node.leave()
        assert online_everywhere(client) == {}
