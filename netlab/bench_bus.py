"""`netlab bench chat --bus-nodes N`: the chat through a Redis bus (issue 18, docs/scale-out.md)
beside one server without a bus, in one run.

The run starts its own `redis-server`, configured as a bus must run (`appendonly yes`,
`appendfsync always`: a message is fsynced before it is acknowledged), in a temporary
directory on a free loopback port, and N nodes sharing one chat through it, all under one
fresh NETLAB_KEY. Client i talks in room i mod R on node (i div R) mod N: round-robin over the
nodes within each room, so every room has clients on every node (given N·R clients).

What a bus adds is the trip to the other nodes, so `Reach` times each message from its send
to its last receipt by a client of its room on another node (on one server: by another
client of its room); the per-delivery percentiles would mix in the sender's own node.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from netlab.bench import SETUP_TIMEOUT, BenchConnection, Target, servers_for
from netlab.bench_report import percentile, process_cpu_seconds
from netlab.crypto import KEY_ENV, new_key

#: Where Debian's package puts it, for a PATH without /usr/bin (a service's, cron's).
DEBIAN_REDIS = "/usr/bin/redis-server"
#: Redis' line once it listens (after loading an AOF, none here).
REDIS_READY = "Ready to accept connections"
#: Seconds between looks at its log while it starts.
LOOK = 0.05
#: Redis' latency monitor records events (an fsync, a command) at least this long, in ms.
LATENCY_THRESHOLD_MS = 1
#: Redis' commands named in a window's report: those that took the most of its time.
TOP_COMMANDS = 4
#: The latency monitor's events said: an fsync of the AOF before an answer, a command.
SLOW_EVENTS = ("aof-fsync-always", "command")
#: The watch's own commands, left out of what it reports.
WATCH_COMMANDS = ("cmdstat_info", "cmdstat_latency")
#: Tries at a free port: another program may take it between our probe and Redis' bind.
PORT_TRIES = 5
#: The rows of the comparison: each load's figure, printed with its format.
ROWS = {"acknowledged msgs/s": "{:,.0f}", "deliveries/s": "{:,.0f}",
        "p50 latency (ms)": "{:,.2f}", "p95 latency (ms)": "{:,.2f}", "p99 latency (ms)": "{:,.2f}"}
ROW_WIDTH = max(map(len, ROWS))


def redis_executable() -> str | None:
    """Debian's redis-server: on PATH, else where the package installs it; None if neither."""
    found = shutil.which("redis-server")
    if found is None and os.access(DEBIAN_REDIS, os.X_OK):
        found = DEBIAN_REDIS
    return found


def node_of(client: int, rooms: int, nodes: int) -> int:
    """The node of client `client` (in room `client mod rooms`): round-robin within its room."""
    return (client // rooms) % nodes


class RedisWatch:
    """What a bus's Redis did in one window, where its share of a message's time goes: its CPU,
    its commands' calls and time (INFO commandstats: the publish script, the readers' XREAD),
    and its slowest fsync of the AOF and command (its latency monitor)."""

    def __init__(self, url: str, pid: int) -> None:
        import redis  # only a run with a bus needs it

        self.client = redis.Redis.from_url(url, socket_timeout=SETUP_TIMEOUT)
        self.pid = pid
        self.cpu: float | None = None
        self.commands: dict[str, dict[str, float]] = {}

    def start(self) -> None:
        self.client.execute_command("LATENCY", "RESET")
        self.cpu = process_cpu_seconds(self.pid)
        self.commands = self.client.info("commandstats")

    def report(self) -> None:
        cpu_after = process_cpu_seconds(self.pid)
        cpu = f"{cpu_after - self.cpu:.2f} s" if cpu_after is not None and self.cpu is not None else "?"
        said = ", ".join(f"{name} {count:,} × {usec / count:,.0f} µs"
                         for name, count, usec in busiest(self.commands, self.client.info("commandstats")))
        latest = self.client.execute_command("LATENCY", "LATEST")  # [event, when, latest ms, most ms]
        worst = {event.decode(): most for event, _, _, most in latest}
        slow = ", ".join(f"{event} {worst[event]} ms" for event in SLOW_EVENTS if event in worst)
        print(f"  of which redis-server: {cpu}; its commands: {said or 'none'}; slowest "
              f"(≥ {LATENCY_THRESHOLD_MS} ms): {slow or 'none'}")

    def close(self) -> None:
        self.client.close()


def busiest(before: dict[str, dict], after: dict[str, dict]) -> list[tuple[str, int, int]]:
    """The commands (name, calls, µs) that took the most of Redis' time between two INFO
    commandstats, TOP_COMMANDS of them; not the watch's own."""
    spent = []
    for name, now in after.items():
        if name.startswith(WATCH_COMMANDS):
            continue
        calls, usec = now["calls"], now["usec"]
        if (then := before.get(name)) is not None:
            calls, usec = calls - then["calls"], usec - then["usec"]
        if calls:
            spent.append((name.removeprefix("cmdstat_"), calls, usec))
    return sorted(spent, key=lambda command: -command[2])[:TOP_COMMANDS]


@contextlib.contextmanager
def running_redis(executable: str, directory: str) -> Iterator[tuple[str, int]]:
    """A redis-server over `directory` on a free loopback port: its URL and its pid."""
    log_path = Path(directory) / "redis.log"
    for _ in range(PORT_TRIES):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--daemonize", "no", "--logfile", str(log_path),
             "--latency-monitor-threshold", str(LATENCY_THRESHOLD_MS)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            if ready(proc, log_path):
                yield f"redis://127.0.0.1:{port}/0", proc.pid
                return
        finally:
            proc.terminate()
            proc.wait(SETUP_TIMEOUT)
    lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.exists() else []
    raise SystemExit(f"netlab: redis-server did not start: {lines[-1] if lines else 'no log'}")


def ready(proc: subprocess.Popen, log_path: Path) -> bool:
    """Whether redis-server said in its log that it accepts connections (False: it exited
    first, or stayed silent for SETUP_TIMEOUT). Its exit is waited on between looks."""
    for _ in range(round(SETUP_TIMEOUT / LOOK)):
        if log_path.exists() and REDIS_READY in log_path.read_text(errors="replace"):
            return True
        try:
            proc.wait(LOOK)
            return False
        except subprocess.TimeoutExpired:
            continue
    return False


@contextlib.contextmanager
def bus_nodes(executable: str, host: str, extra: list[str], tls: bool, transport: str,
              nodes: int) -> Iterator[tuple[list[Target], RedisWatch]]:
    """`nodes` chat servers started sharing one chat through a redis-server started for the
    run, all under one new NETLAB_KEY: their targets, and a watch on Redis."""
    environ = {**os.environ, KEY_ENV: base64.urlsafe_b64encode(new_key()).decode()}
    with tempfile.TemporaryDirectory(prefix="netlab-bench-redis-") as directory, \
            running_redis(executable, directory) as (url, redis_pid), contextlib.ExitStack() as stack:
        targets = [stack.enter_context(servers_for("chat", host, None, [*extra, "--bus", url], tls,
                                                   (transport,), environ))[transport]
                   for _ in range(nodes)]
        watch = stack.enter_context(contextlib.closing(RedisWatch(url, redis_pid)))
        yield targets, watch


class Reach:
    """Each message's time from its send to its last receipt elsewhere: by every client of the
    sender's room on another node (`across_nodes`), or by every other client of its room.
    Messages nobody elsewhere is to receive are not timed."""

    def __init__(self, conns: list[BenchConnection], across_nodes: bool) -> None:
        self.across_nodes = across_nodes
        self._in_room = Counter(conn.room for conn in conns)
        self._on_node = Counter((conn.room, conn.node) for conn in conns)
        self.waiting: dict[int, list] = {}  # the message's stamp: [its sender, receipts to come]
        self.latencies: list[int] = []  # ns, of the messages received by all
        self.timed = 0  # messages sent since `start` that are to be received elsewhere

    def start(self) -> None:
        """A new window: what came before is no longer counted."""
        self.waiting.clear()
        self.latencies = []
        self.timed = 0

    def sent(self, stamp: int, sender: BenchConnection) -> None:
        room = sender.room
        elsewhere = self._in_room[room] - (self._on_node[room, sender.node] if self.across_nodes else 1)
        if elsewhere:
            self.waiting[stamp] = [sender, elsewhere]
            self.timed += 1

    def received(self, stamp: int, receiver: BenchConnection, at: int) -> None:
        entry = self.waiting.get(stamp)
        if entry is None or entry[0] is receiver or (self.across_nodes and entry[0].node == receiver.node):
            return
        entry[1] -= 1
        if not entry[1]:
            del self.waiting[stamp]
            self.latencies.append(at - stamp)

    def percentiles_ms(self) -> dict[str, float]:
        values = sorted(self.latencies)
        return {f"p{share} latency (ms)": percentile(values, share / 100) / 1e6 for share in (50, 95, 99)}


def print_table(nodes: int, windows: list[dict[str, dict[str, float]]]) -> None:
    """The single server ("single") and the bus ("bus") side by side, row by row (each figure
    the median of the rounds' windows), and the bus as a multiple of the single server."""
    columns = {"single": "1 node", "bus": f"bus, {nodes} nodes"}
    rounds = f", median of {len(windows)} rounds" if len(windows) > 1 else ""
    print(f"bus ÷ 1 node (latency: a send to its last receipt on another node; on 1 node, by another "
          f"client{rounds}):")
    width = max(len(name) for name in columns.values()) + 2
    print(" " * (ROW_WIDTH + 2) + "".join(name.rjust(width) for name in [*columns.values(), "bus ÷ 1"]))
    for row, shape in ROWS.items():
        single, bus = (statistics.median(window[name][row] for window in windows) for name in columns)
        cells = (shape.format(single), shape.format(bus), f"{bus / single:.2f}" if single else "-")
        print(f"  {row:<{ROW_WIDTH}}" + "".join(cell.rjust(width) for cell in cells))
