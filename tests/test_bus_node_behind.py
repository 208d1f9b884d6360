"""A node that fell further behind than the bus's fan-out stream keeps stops, saying why.

While it was paused (or cut off) the stream's trim took entries it never read, state changes
among them: no stream can fill that hole, so it must not go on serving a chat with one. It
stops with exit status 1 (systemd's Restart=on-failure starts it again, and a start loads the
bus's state afresh). docs/scale-out.md, Failures.
"""

from __future__ import annotations

import signal
from pathlib import Path

from procs import WAIT, serve
from redis_server import running_redis

from netlab.bus.publish import Publish, Publisher

CAP = 1_000


def test_a_node_paused_past_the_fanout_cap_stops_with_status_1_and_says_why(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis_server:
        node, _port = serve("chat", tmp_path / "node", "--no-repl", "--bus", redis_server.url,
                            "--bus-fanout-cap", str(CAP))
        try:
            node.signal(signal.SIGSTOP)
            with redis_server.client() as client:  # another node's traffic, three caps of it
                publisher = Publisher(client, CAP)
                for _ in range(3):
                    publisher.publish_many([Publish("general", b"x") for _ in range(CAP)])
            node.signal(signal.SIGCONT)
            assert node.wait(timeout=WAIT) == 1
            node.err.wait_for("fell further behind than the bus's fan-out stream keeps: restart it")
        finally:
            node.kill()
