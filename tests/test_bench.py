"""The load generators from the user's side: figures, and one clear line when they cannot measure."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading

from chatclient import connect
from procs import WAIT
from scripted import WELCOME1, ScriptedConnection


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netlab", "bench", *args], capture_output=True,
                          text=True, timeout=WAIT)


def test_echo_prints_throughput_and_percentiles():
    run = bench("echo", "--conns", "2", "--duration", "0.3")
    assert run.returncode == 0, run.stderr
    assert re.search(r"requests/s  latency p50 [\d,]+ µs  p95 [\d,]+ µs  p99 [\d,]+ µs  p99\.9 [\d,]+ µs",
                     run.stdout)
    # Who set the figures: the generator says how much of a core it used.
    assert re.search(r"\n  load generator CPU: \d+\.\d\d s \(\d+ % of a core\)", run.stdout)
    # On a virtual machine the hypervisor's steal sets the tails: every run says how much there was.
    assert re.search(r"\n  cpu stolen by the hypervisor during the run: \d+\.\d\d s\n", run.stdout)


def test_a_server_that_is_down_is_one_line_and_status_one(start_chat):
    server, port = start_chat()
    server.kill()
    for kind in ("echo", "chat"):
        run = bench(kind, "--port", str(port), "--duration", "0.3")
        assert run.returncode == 1
        assert run.stderr.splitlines() == [f"netlab: cannot connect to 127.0.0.1:{port}: Connection refused"]


def test_a_full_chat_server_is_named_as_such(start_chat):
    _, port = start_chat("--max-clients", "1")
    with connect(port):  # welcomed: the server is full now
        run = bench("chat", "--port", str(port), "--clients", "1", "--senders", "1", "--duration", "0.3")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "netlab: the chat server refused a connection: server_full: the server holds 1 connections"]


def test_messages_refused_by_flood_control_are_not_reported_as_throughput(start_chat):
    _, port = start_chat()  # the default --rate-limit 10: bursts of 20
    run = bench("chat", "--port", str(port), "--clients", "1", "--senders", "1", "--window", "30",
                "--duration", "0.3")
    assert run.returncode == 1
    assert re.fullmatch(r"netlab: the server answered \d+ messages with an error \(its flood control, "
                        r"unless it runs with --rate-limit 0\): these figures are not its throughput\n",
                        run.stderr)


def test_rooms_need_a_sender_each(start_chat):
    _, port = start_chat()
    run = bench("chat", "--port", str(port), "--clients", "4", "--senders", "2", "--rooms", "3",
                "--duration", "0.3")
    assert run.returncode == 2 and "cannot exceed --senders (a sender in each room)" in run.stderr


def test_rooms_need_a_server_that_speaks_version_2():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        threading.Thread(target=greet_with_version_1, args=(listener,), daemon=True).start()
        run = bench("chat", "--port", str(port), "--clients", "2", "--senders", "2", "--rooms", "2",
                    "--duration", "0.3")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"netlab: the chat server at 127.0.0.1:{port} does not speak protocol version 2, which --rooms needs"]


def greet_with_version_1(listener: socket.socket) -> None:
    """A version 1 server's welcome to each connection, until none comes for WAIT."""
    listener.settimeout(WAIT)
    with contextlib.suppress(OSError):
        while True:
            ScriptedConnection(listener).close(WELCOME1)


def test_clients_spread_over_rooms_each_get_their_room_s_messages(start_chat):
    _, port = start_chat("--rate-limit", "0")
    run = bench("chat", "--port", str(port), "--clients", "6", "--senders", "3", "--rooms", "3",
                "--duration", "0.5")
    assert run.returncode == 0, run.stderr
    assert "chat: 6 clients in 3 rooms in " in run.stdout
    assert re.search(r"chat: 6 clients, 3 senders in 3 rooms, window 1, ", run.stdout)

