"""Issue 18's benchmark from the user's side: `netlab bench chat --bus-nodes N` starts a
redis-server and N nodes sharing one chat through it, beside one server without a bus, and
prints both side by side. Real processes, tiny sizes; figures are parsed, never judged. The
harness's own rules (where each client goes, which receipt times a message) are checked
without sockets."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st
from procs import WAIT
from system_tools import require_command
from test_bench import bench
from test_bench_rooms import NUMBER, number

from netlab.bench import BenchConnection
from netlab.bench_bus import Reach, node_of

ROWS = ("acknowledged msgs/s", "deliveries/s", "p50 latency (ms)", "p95 latency (ms)", "p99 latency (ms)")
FIGURE = rf"(?:{NUMBER}|nan)"


def table(stdout: str, nodes: int) -> dict[str, tuple[float, float]]:
    """The run's closing table, after checking its shape: each row's 1-node and bus figures."""
    head = re.search(rf"^bus ÷ 1 node \(latency: [^\n]*\):\n +1 node +bus, {nodes} nodes +bus ÷ 1\n",
                     stdout, re.M)
    assert head, stdout
    rows = {}
    for line, row in zip(stdout[head.end():].splitlines(), ROWS, strict=False):
        found = re.fullmatch(rf"  {re.escape(row)} +({FIGURE}) +({FIGURE}) +(?:{FIGURE}|-)", line)
        assert found, stdout
        rows[row] = (number(found.group(1)), number(found.group(2)))
    assert list(rows) == list(ROWS), stdout
    return rows


def reached_elsewhere(stdout: str) -> list[tuple[str, int, int]]:
    """Each window's `last receipt` line: where, messages received by all there, messages timed."""
    return [(where, int(number(done)), int(number(timed))) for where, done, timed in re.findall(
        rf"^  last receipt (on another node|by another client) \(({NUMBER}) of ({NUMBER}) messages\): "
        rf"latency p50 ", stdout, re.M)]


def test_a_bus_of_two_nodes_is_measured_beside_one_node():
    require_command("redis-server", "redis-server")
    run = bench("chat", "--bus-nodes", "2", "--clients", "4", "--senders", "2", "--duration", "0.5")
    assert run.returncode == 0, run.stderr
    single, bus = table(run.stdout, 2)["deliveries/s"]
    assert single > 0 and bus > 0
    assert re.search(r"^chat: 4 clients, 2 senders, window 1, [^\n]*, TCP, 2 nodes of a bus$",
                     run.stdout, re.M)
    # The bus's CPU counts Redis', said apart with what it ran: the publish script above all.
    assert re.search(rf"^  of which redis-server: {NUMBER} s; its commands: evalsha {NUMBER} × {NUMBER} µs",
                     run.stdout, re.M), run.stdout
    # Every message sent reached every client on the other node (4 clients: 2 there for each).
    (one, done_one, timed_one), (across, done, timed) = reached_elsewhere(run.stdout)
    assert (one, across) == ("by another client", "on another node")
    assert done_one == timed_one > 0 and done == timed > 0


def test_at_a_fixed_rate_in_rooms_over_rounds():
    require_command("redis-server", "redis-server")
    run = bench("chat", "--bus-nodes", "3", "--rate", "200", "--rooms", "2", "--clients", "6",
                "--senders", "2", "--duration", "0.3", "--rounds", "2")
    assert run.returncode == 0, run.stderr
    assert "median of 2 rounds" in run.stdout
    assert table(run.stdout, 3)["acknowledged msgs/s"][1] > 0
    across = [(done, timed) for where, done, timed in reached_elsewhere(run.stdout)
              if where == "on another node"]
    assert len(across) == 2 and all(done == timed > 0 for done, timed in across), run.stdout


def test_a_bus_needs_two_nodes_and_its_own_servers():
    one = bench("chat", "--bus-nodes", "1")
    assert one.returncode == 2 and "0 (no bus) or at least 2" in one.stderr
    given_port = bench("chat", "--bus-nodes", "2", "--port", "1")
    assert given_port.returncode == 2 and "not with --port" in given_port.stderr
    two = bench("chat", "--bus-nodes", "2", "--transport", "tcp", "--transport", "ws")
    assert two.returncode == 2 and "one transport with --bus-nodes" in two.stderr


def test_without_redis_server_the_bus_is_one_line(tmp_path):
    # Debian's path is out of reach too: a PATH without redis-server, its fallback moved away.
    script = ("import sys, netlab.bench_bus as b; b.DEBIAN_REDIS = sys.argv.pop(1); "
              "from netlab.cli import main; main(prog_name='netlab')")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "redis-server"), "bench", "chat",
                          "--bus-nodes", "2"], capture_output=True, text=True, timeout=WAIT,
                         env={**os.environ, "PATH": str(tmp_path)})
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["netlab: --bus-nodes needs redis-server (Debian's package "
                                       f"redis-server): not on PATH nor at {tmp_path / 'redis-server'}"]


def test_a_server_that_does_not_start_says_why():
    run = bench("chat", "--host", "192.0.2.1", "--duration", "0.3")  # TEST-NET-1: no address of ours
    assert run.returncode == 1
    assert run.stderr.splitlines() == ["netlab: the chat server did not start: cannot listen on 192.0.2.1:0: "
                                       "Cannot assign requested address"]


@given(st.integers(1, 60), st.integers(1, 6), st.integers(2, 4))
def test_clients_go_round_robin_over_the_nodes_within_each_room(clients, rooms, nodes):
    placed = [node_of(i, rooms, nodes) for i in range(clients)]
    for node in range(nodes):
        mine = [i for i in range(clients) if placed[i] == node]
        # A node's n-th client is in room n mod R, as the load's: each node seats its own in turn.
        assert [i % rooms for i in mine] == [n % rooms for n in range(len(mine))]
    if clients >= rooms * nodes:  # enough for every room to be on every node
        assert {(i % rooms, placed[i]) for i in range(clients)} == {(r, n) for r in range(rooms)
                                                                    for n in range(nodes)}


def clients_at(*nodes: int) -> list[BenchConnection]:
    return [BenchConnection(None, b"", room="bench-0", node=node) for node in nodes]  # type: ignore[arg-type]


def test_a_message_is_timed_at_its_last_receipt_on_another_node():
    sender, same_node, far, farther = clients_at(0, 0, 1, 1)
    reach = Reach([sender, same_node, far, farther], across_nodes=True)
    reach.sent(100, sender)
    for receiver, at in ((sender, 150), (far, 200), (same_node, 900)):
        reach.received(100, receiver, at)
    assert reach.latencies == []  # `farther` has not had it yet
    reach.received(100, farther, 300)
    assert reach.latencies == [200] and reach.timed == 1 and not reach.waiting


def test_on_one_server_a_message_is_timed_at_its_last_receipt_by_another_client():
    sender, other, last = clients_at(0, 0, 0)
    reach = Reach([sender, other, last], across_nodes=False)
    reach.sent(100, sender)
    for receiver, at in ((other, 120), (sender, 130), (last, 170)):
        reach.received(100, receiver, at)
    assert reach.latencies == [70]


def test_a_message_nobody_elsewhere_receives_is_not_timed():
    alone, neighbour = clients_at(0, 0)
    reach = Reach([alone, neighbour], across_nodes=True)
    reach.sent(100, alone)
    assert reach.timed == 0 and not reach.waiting
