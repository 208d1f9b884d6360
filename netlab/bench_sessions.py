"""Load generators for sessions rather than messages: `netlab bench login` (what a login costs
with many rooms to report) and `netlab bench idle` (what an idle session holds in the server).

Both start their own server (the figures need its process: its memory, and a server whose
`--room-rate` lets one account make all the rooms) and print medians and p99s, or kibibytes
from /proc/PID/status, beside the CPU the hypervisor stole meanwhile.
"""

from __future__ import annotations

import os
import time

from netlab import wire as p
from netlab.bench import BenchConnection, Target, answer, join_rooms, register_all
from netlab.bench_report import percentile, print_steal, stolen_seconds
from netlab.connect import first_frame


def bench_prefix() -> str:
    """Account names of this run: `b<pid>x<time>u`, apart from any earlier run's on the server."""
    return f"b{os.getpid() % 100000}x{int(time.time()) % 100000}u"


def rss_kib(pid: int | None) -> int:
    """The process's resident memory (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"netlab: /proc/{pid}/status names no VmRSS")


# -- login ------------------------------------------------------------------------------


def create_rooms(target: Target, name: str, count: int) -> None:
    """Register `name` (version 2) and have it create `count` rooms, `NAME-r0` onwards."""
    conn = BenchConnection(target.connect(1)[0], b"")
    register_all(target, [conn], name[:-1], 2)  # registers PREFIX0: `name` is that
    for k in range(count):
        conn.sock.sendall(p.encode({"type": "create", "room": f"{name}-r{k}"}))
        if (frame := answer(conn, {"joined"}))["type"] == "error":
            raise SystemExit(f"netlab: create at {target.address} failed: {frame.get('code')}: "
                             f"{frame.get('message')}")
    conn.sock.close()


def next_rooms(target: Target, conn: BenchConnection) -> tuple[dict, int]:
    """The next `rooms` frame and when it was received (ns); an `error` ends the run."""
    while True:
        if not (data := conn.sock.recv(65536)):
            raise ConnectionError("the server closed the connection")
        conn.buffer += data
        received = time.perf_counter_ns()
        for payload in conn.frames():
            frame = p.parse_payload(payload)
            if frame["type"] == "error":
                raise SystemExit(f"netlab: at {target.address}: {frame.get('code')}: {frame.get('message')}")
            if frame["type"] == "rooms":
                return frame, received


def timed_login(target: Target, name: str) -> tuple[int, int, int]:
    """One version 2 login of `name` on a fresh connection: nanoseconds from `login` sent to
    `rooms` received, then of a `rooms` request answered (the part of a login that grows with
    its rooms, without the password hash), and the rooms listed.

    `ok` to `rooms` cannot stand for the second: the server sends them in one pass, so they
    mostly arrive in one read.
    """
    conn = BenchConnection(target.connect(1)[0], b"")
    try:
        first_frame(target, conn.sock, p.FrameDecoder())
        sent = time.perf_counter_ns()
        conn.sock.sendall(p.encode({"type": "login", "username": name, "password": "bench-password",
                                    "protocol": 2}))
        frame, logged_in = next_rooms(target, conn)
        asked = time.perf_counter_ns()
        conn.sock.sendall(p.encode({"type": "rooms"}))
        _, answered = next_rooms(target, conn)
    finally:
        conn.sock.close()
    return logged_in - sent, answered - asked, len(frame["rooms"])


def run_login(target: Target, rooms: int, logins: int) -> None:
    """Two accounts, in 1 and in `rooms` rooms; their logins alternate, so both meet the same
    host. A login's cost beyond the hash is its `rooms` frame, built from every membership."""
    prefix = bench_prefix()
    accounts = {1: f"{prefix}a0", rooms: f"{prefix}b0"}
    for count, name in accounts.items():
        create_rooms(target, name, count)
    times: dict[int, tuple[list[int], list[int]]] = {count: ([], []) for count in accounts}
    listed: dict[int, int] = {}
    stolen = stolen_seconds()
    for _ in range(logins):
        for count, name in accounts.items():
            login, request, listed[count] = timed_login(target, name)
            times[count][0].append(login)
            times[count][1].append(request)
    print(f"login: {logins} logins each of an account in 1 room and of one in {rooms} "
          f"(their rooms frames list {listed[1]} and {listed[rooms]}, general included)")
    p50: dict[int, list[float]] = {}
    for count, samples in times.items():
        login, request = (sorted(values) for values in samples)
        p50[count] = [max(1, percentile(values, 0.5)) for values in (login, request)]
        print(f"  {count} room{'s' if count > 1 else ''}: login to rooms p50 {p50[count][0] / 1e6:.2f} ms "
              f"p99 {percentile(login, 0.99) / 1e6:.2f} ms, rooms request p50 {p50[count][1] / 1e6:.2f} ms "
              f"p99 {percentile(request, 0.99) / 1e6:.2f} ms")
    print(f"  {rooms} rooms ÷ 1 room, p50: login to rooms {p50[rooms][0] / p50[1][0]:.2f}×, "
          f"rooms request {p50[rooms][1] / p50[1][1]:.2f}×")
    print_steal(stolen)


# -- idle -------------------------------------------------------------------------------


def run_idle(target: Target, sessions: int, rooms: int) -> None:
    """`rooms` accounts each make a room and stay; then sessions of the same accounts log in
    (account i % rooms, so each room has sessions / rooms) until `sessions` are open, idle.

    The accounts' first sessions stay open so that no later login is a user coming online
    (a `join` to every session). RSS is read at start, with the rooms made and with every
    session open; the last difference, per session added, is an idle session's cost.
    """
    prefix = bench_prefix()
    at_start = rss_kib(target.pid)
    stolen = stolen_seconds()
    begin = time.perf_counter()
    owners = target.sessions(rooms)
    register_all(target, owners, prefix, 2)
    join_rooms(target, owners, rooms)
    rooms_made = rss_kib(target.pid)
    others = target.sessions(sessions - rooms)
    register_all(target, others, prefix, 2, op="login", accounts=rooms)
    elapsed = time.perf_counter() - begin
    sessions_open = rss_kib(target.pid)
    print(f"idle: {sessions} {target.transport} sessions of {rooms} accounts in {rooms} rooms, "
          f"logged in in {elapsed:.1f} s")
    print(f"  server RSS: {at_start:,} KiB at start, {rooms_made:,} KiB with the rooms made, "
          f"{sessions_open:,} KiB with the sessions open")
    added = max(1, sessions - rooms)
    print(f"  {(sessions_open - rooms_made) / added:.2f} KiB per session "
          f"({(sessions_open - at_start) / sessions:.2f} KiB counting the rooms)")
    print_steal(stolen)
    for conn in owners + others:
        conn.sock.close()
