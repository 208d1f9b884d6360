"""Several `netlab chat serve --bus URL` processes ("nodes") over one real redis-server.

A test that shares one chat across nodes needs three things the one-server helpers do not
give: the same key in every node (the bus holds accounts encrypted under it, so a node with
another key could not log anyone in), a data directory per node (each holds its own log and
lock), and the control of a node's life: `kill -9` one, start it again, and find where it
listens now (a restarted node has a new `--port 0` port; clients reconnect there or to any
other node, as a real client would).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from chatclient import ChatClient
from procs import WAIT, Netlab
from redis_server import RedisServer, running_redis
from v2client import V2Client

from netlab.crypto import KEY_BYTES, KEY_ENV

#: A client's pause before it sends a say again after `unavailable`: no frame says that the
#: bus is back, so a client retries, as a real one would, a few times a second.
RETRY_AFTER = 0.1


def new_key() -> str:
    """A key as NETLAB_KEY takes it (urlsafe base64 of KEY_BYTES bytes), new per cluster."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


class Node:
    """One `chat serve` process of the cluster; `restart` keeps its data directory."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.data_dir = cluster.directory / f"node{index}"
        self.server: Netlab | None = None
        self.port = 0

    def start(self) -> None:
        """Start the process and wait for its `listening on` line (the port it took)."""
        self.launch()
        self.wait_listening()

    def launch(self) -> None:
        self.server = Netlab("chat", "serve", "--no-repl", "--port", "0", "--data-dir", str(self.data_dir),
                             "--bus", self.cluster.redis.url, *self.cluster.extra,
                             env={KEY_ENV: self.cluster.key, **self.cluster.env})

    def wait_listening(self) -> None:
        assert self.server is not None
        try:
            self.port = self.server.listening_port()
        except AssertionError as exc:
            self.server.proc.kill()
            self.server.proc.wait()
            errors = "\n".join(self.server.err.wait_closed()) if self.server.err else ""
            self.server.kill()
            raise AssertionError(f"node {self.index} did not start: {exc}; stderr: {errors}") from None

    def kill(self) -> None:
        """`kill -9`: no shutdown frame, no flush, no goodbye to the bus (its presence stays in
        Redis until its TTL runs out)."""
        if self.server is not None:
            self.server.kill()
        self.port = 0


class Cluster:
    """`size` nodes sharing `redis`, all with one key; `env` adds to every node's environment."""

    def __init__(self, directory: Path, redis: RedisServer, size: int, extra: tuple[str, ...],
                 env: dict[str, str | None] | None = None) -> None:
        self.directory = directory
        self.redis = redis
        self.key = new_key()
        self.extra = extra
        self.env = env or {}
        self.nodes = [Node(self, index) for index in range(size)]
        self._lock = threading.Lock()  # client threads read the ports while the test restarts a node

    def start(self) -> None:
        """Every node launched at once, then each one's port read: their start-ups overlap."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_listening()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def kill(self, index: int) -> None:
        with self._lock:
            self.nodes[index].kill()

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        self.kill(index)
        node.start()  # outside the lock: a start takes seconds; the port is 0 meanwhile

    def ports(self) -> list[int]:
        """The ports of the nodes alive now, in node order (0 for none while one restarts)."""
        with self._lock:
            return [node.port for node in self.nodes]

    def port(self, index: int) -> int:
        return self.ports()[index]


@contextlib.contextmanager
def running_cluster(tmp_path: Path, size: int, *extra: str) -> Iterator[Cluster]:
    """A redis-server and `size` started nodes on it; every process is killed afterwards,
    whatever the test did. `extra` goes to every node's command line."""
    with running_redis(tmp_path / "redis") as redis, cluster_on(redis, tmp_path, size, *extra) as cluster:
        yield cluster


@contextlib.contextmanager
def cluster_on(redis: RedisServer, directory: Path, size: int, *extra: str,
               env: dict[str, str | None] | None = None) -> Iterator[Cluster]:
    """`size` started nodes on a running `redis`, killed afterwards whatever the test did."""
    cluster = Cluster(directory, redis, size, extra, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def crash_redis(redis: RedisServer) -> None:
    """`kill -9` Redis: what it had not written to its AOF is gone (with `appendfsync always`,
    nothing it had answered); `redis.start()` brings it back from the AOF alone."""
    redis.process.kill()
    redis.process.wait()
    redis.stop()  # its output closed; nothing left to stop


class Recording(V2Client):
    """A version 2 session that keeps every `message` it received, in arrival order, so a
    test can hold what it saw live against history."""

    def __init__(self, port: int, **kwargs) -> None:
        super().__init__(port, **kwargs)
        self.seen: list[dict] = []

    def recv_any(self) -> dict:
        frame = super().recv_any()
        if frame["type"] == "message":
            self.seen.append(frame)
        return frame


def say_until_stored(client: V2Client, room: str, text: str, say_id: str, timeout: float = WAIT) -> dict:
    """Say `text` with `say_id` in `room`, again (the same id: the idempotency key) after each
    `unavailable`, until the message comes back; that message (the acknowledgement)."""
    deadline = time.monotonic() + timeout
    while True:
        client.send("say", text=text, id=say_id, room=room)
        while True:
            frame = client.recv()
            if frame["type"] == "message" and frame["from"] == client.username and frame.get("id") == say_id \
                    and frame.get("room") == room:
                return frame
            if frame["type"] == "error" and frame.get("id") == say_id:
                break
        assert frame["code"] == "unavailable", frame
        assert time.monotonic() < deadline, f"{say_id!r} still unavailable after {timeout}s"
        time.sleep(RETRY_AFTER)


def whole_history(client: ChatClient, **where: str) -> list[dict]:
    """Every message of general (or `where`'s room or conversation), paging with `after`."""
    messages: list[dict] = []
    while True:
        page = client.history(after=messages[-1]["seq"] if messages else 0, limit=1000, **where)
        messages += page["messages"]
        if not page["more"]:
            return messages


def sees_online(client: ChatClient, name: str) -> bool:
    """Whether the client's node lists `name` online (it has read that account's events): a
    node sees another's change once its event arrives, so a test acting on one node right
    after a change on another waits for this."""
    client.send("users")
    return name in client.expect("users")["online"]
