"""A bus restored from an old AOF goes back in time; raising the counters to what a node
delivered keeps every seq meaning one message (netlab/bus/epochs.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from redis_server import RedisServer, running_redis

from netlab.bus.epochs import Epochs, Raised
from netlab.bus.publish import SEQ_HASH, Publish, Published, Publisher


def restore(server: RedisServer, backup: Path) -> None:
    """Stop Redis and start it again from an older copy of its directory (a restore)."""
    server.stop()
    shutil.rmtree(server.directory)
    shutil.copytree(backup, server.directory)
    server.start()


def test_after_a_restore_no_seq_is_given_twice_and_the_epoch_goes_up(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    with running_redis(tmp_path / "redis") as server:
        with server.client() as client:
            publisher = Publisher(client)
            publisher.publish_many([Publish("lobby", b"1"), Publish("lobby", b"2"), Publish("quiet", b"1")])
        server.stop()
        shutil.copytree(server.directory, backup)
        server.start()
        with server.client() as client:
            later = Publisher(client)
            delivered = [later.publish(Publish("lobby", f"{n}".encode())).seq for n in range(3, 6)]
        assert delivered == [3, 4, 5]  # shown to clients, then lost by the restore

        restore(server, backup)
        with server.client() as client:
            assert client.hget(SEQ_HASH, "r:lobby") == b"2"  # the bus went back
            epochs = Epochs(client)
            assert epochs.current() == 0
            # The node's floors: what it delivered per key (quiet's counter is not behind).
            assert epochs.raise_floors({"lobby": 5, "quiet": 1}) == Raised(1, 1)
            assert epochs.current() == 1
            publisher = Publisher(client)
            assert publisher.publish(Publish("lobby", b"after")) == Published(6, True)  # 3 to 5: a gap
            assert publisher.publish(Publish("quiet", b"after")) == Published(2, True)
            # A second node noticing the same restore raises nothing more; the epoch moves on.
            assert epochs.raise_floors({"lobby": 5}) == Raised(2, 0)
