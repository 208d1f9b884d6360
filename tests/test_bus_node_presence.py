"""A node's presence thread (netlab/bus/node.py): its heartbeat keeps the node's hash alive
however busy the thread is with markers and presence changes."""

from __future__ import annotations

import threading
from pathlib import Path

from procs import wait_until
from redis_server import running_redis

from netlab.bus.address import parse_bus_url
from netlab.bus.node import BusNode
from netlab.crypto import Vault, new_key


def test_the_heartbeat_is_not_starved_by_a_queue_that_never_empties(tmp_path: Path) -> None:
    """Markers written as fast as they come (a busy chat, a slow Redis): were the beat only
    taken when the queue is empty, the hash would expire and the node's users go offline
    everywhere while it lives."""
    with running_redis(tmp_path / "redis") as server:
        node = BusNode(parse_bus_url(server.url), Vault(new_key()), 10, 10, heartbeat=0.05)
        beats = threading.Event()
        real_beat = node._hash.beat

        class Recording:
            def beat(self) -> bool:
                beats.set()
                return real_beat()

        node._hash = Recording()  # type: ignore[assignment]

        def busy() -> None:  # a change that is never the last one queued
            node._changes.put(busy)

        node._changes.put(busy)
        writer = threading.Thread(target=node._write_changes, daemon=True)
        writer.start()
        try:
            wait_until(beats.is_set)
        finally:
            node._changes.put(None)


def test_markers_waiting_for_redis_are_merged_into_one_write(tmp_path: Path) -> None:
    """A slow or absent Redis: each pass's markers join those not written yet (the highest of
    each), so one write waits in the queue, not one a pass."""
    with running_redis(tmp_path / "redis") as server:
        node = BusNode(parse_bus_url(server.url), Vault(new_key()), 10, 10)
        for seq in range(1, 101):  # a hundred passes, the presence thread not running
            node.save_marks({("dev", "a" * 32): seq, ("ops", "b" * 32): 100 - seq})
        assert node._changes.qsize() == 1
        node._changes.get()()  # the one write
        with server.client() as client:
            assert client.hgetall("netlab:markers") == {f"r:dev {'a' * 32}".encode(): b"100",
                                                        f"r:ops {'b' * 32}".encode(): b"99"}
