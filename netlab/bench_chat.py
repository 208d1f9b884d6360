"""`netlab bench chat`'s load: N clients, S of them sending, every delivery's latency measured.

A load is set up once (connections, registrations, rooms: minutes with thousands of clients,
the password hashes) and measured in windows. Over two transports, `--rounds` alternates
their windows on the loads already set up, so each ratio compares windows a few seconds
apart, not runs minutes apart on a host whose other work comes and goes. Before the first
window and between windows the load drains: the senders' messages in flight come back and
what else arrives is read until the connections go quiet, so a window counts only what was
sent in it and reads no backlog of another phase's.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import ssl
import time
from dataclasses import dataclass

from netlab.bench import SETUP_TIMEOUT, BenchConnection, Target, join_rooms, receive, register_all
from netlab.bench_bus import Reach, RedisWatch, node_of, print_table
from netlab.bench_report import (
    Meter,
    latency_line,
    print_median_ratios,
    print_ratios,
    ratios,
)

#: Between windows, the load is settled once nothing arrives for this long...
QUIET = 0.2
#: ... or after this long at most (a server that keeps sending: other clients' traffic).
SETTLE_TIMEOUT = 60.0
#: What two transports' runs are compared by.
RATIO_UNITS = ("deliveries/s", "deliveries per server CPU-second")


@dataclass
class ChatLoad:
    """Clients registered (and in their rooms) on one transport, ready to be measured: on one
    server, or spread over the nodes of a bus (`targets`, `conn.node` the index of its own)."""

    targets: list[Target]
    conns: list[BenchConnection]
    senders: list[BenchConnection]
    selector: selectors.BaseSelector
    prefix: str  # account names: PREFIX<node>u<n>, the storm's PREFIXs<n>
    in_rooms: str  # " in R rooms" for version 2 sessions, "" for general
    reach: Reach  # each message's time to its last receipt elsewhere
    redis: RedisWatch | None = None  # a bus's Redis, started here

    @property
    def target(self) -> Target:
        """The server that hears what is not any one client's (the storm's registrations)."""
        return self.targets[0]

    def close(self) -> None:
        for conn in self.conns:
            conn.sock.close()
        self.selector.close()


def prepare(targets: list[Target], clients: int, senders: int, rooms: int, protocol: int,
            room_name: str = "bench", redis: RedisWatch | None = None) -> ChatLoad:
    """Connect, register and (version 2) seat `clients` clients in rooms ROOM_NAME-0 onwards,
    spread over `targets` (the nodes of a bus, `node_of`); say how long that took."""
    prefix = f"b{os.getpid() % 100000}x{int(time.time()) % 100000}{targets[0].transport[0].lower()}"
    placed: dict[int, BenchConnection] = {}  # by client number, filled node by node
    registration = seating = 0.0
    for node, target in enumerate(targets):
        mine = [i for i in range(clients) if node_of(i, rooms, len(targets)) == node]
        names = f"{prefix}{node}u"
        # Its n-th client is in room n mod R, as the load's: `node_of` is round-robin within rooms.
        node_conns = target.sessions(len(mine), lambda n, names=names: f'"from":"{names}{n}"'.encode())
        registration += register_all(target, node_conns, names, protocol)
        if protocol == 2:
            seating += join_rooms(target, node_conns, rooms, room_name)
        for i, conn in zip(mine, node_conns, strict=True):
            conn.node = node
            placed[i] = conn
    conns = [placed[i] for i in range(clients)]
    print(f"chat: {clients} clients registered in {registration:.2f} s "
          f"({clients / registration:,.0f}/s, password hashing bound)")
    in_rooms = f" in {rooms} room{'s' if rooms > 1 else ''}" if protocol == 2 else ""
    if protocol == 2:
        print(f"chat: {clients} clients{in_rooms} in {seating:.2f} s")
    selector = selectors.DefaultSelector()
    for conn in conns:
        conn.sock.setblocking(False)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    return ChatLoad(targets, conns, conns[:senders], selector, prefix, in_rooms,
                    Reach(conns, across_nodes=len(targets) > 1), redis)


def send(load: ChatLoad, conn: BenchConnection, due: float | None = None) -> None:
    """`due`: when an open-loop message was due. Its latency counts from then, not from
    when a busy loop got round to sending it, or the lag would hide (coordinated omission)."""
    stamp = time.perf_counter_ns() if due is None else round(due * 1e9)  # one clock, two units
    say = {"type": "say", "text": "x" * 32, "id": str(stamp)}
    conn.sock.send(conn.encode(say if conn.room is None else {**say, "room": conn.room}))
    conn.in_flight += 1
    conn.sent += 1
    load.reach.sent(stamp, conn)


def pump(load: ChatLoad, timeout: float, latencies: list[int], resend: bool) -> int:
    """One select: every delivery read is timed into `latencies`; a sender whose own message
    came back sends the next when `resend` (the window of a closed loop). Returns the number
    of connections that were readable."""
    events = load.selector.select(timeout)
    for key, _ in events:
        conn = key.data
        try:
            data = receive(conn.sock)
        except (BlockingIOError, ssl.SSLWantReadError):
            continue
        except OSError:
            data = b""
        if not data:
            address = load.targets[conn.node].address
            raise SystemExit(f"netlab: the chat server at {address} closed a connection")
        conn.buffer += data
        received = time.perf_counter_ns()
        for payload in conn.frames():
            at = payload.find(b'"id":"')
            if not payload.startswith(b'{"type":"message"') or at < 0:
                if payload.startswith(b'{"type":"error"') and conn.in_flight:
                    conn.in_flight -= 1  # that sender's slot is lost: counted, not resent
                    conn.refused += 1
                continue
            stamp = int(payload[at + 6:payload.index(b'"', at + 6)])
            latencies.append(received - stamp)
            load.reach.received(stamp, conn, received)
            if conn.in_flight and conn.marker in payload:
                conn.in_flight -= 1
                conn.acknowledged += 1
                if resend:
                    send(load, conn)
    return len(events)


def drain(load: ChatLoad) -> None:
    """Wait (at most SETUP_TIMEOUT) for the senders' messages still in flight, then until
    nothing comes for QUIET seconds (at most SETTLE_TIMEOUT): the next window starts with
    nothing of this one's on the way, nor the presence frames that other clients' logins
    queued for these (N logins are N frames to each of N clients, read in nobody's window)."""
    deadline = time.perf_counter() + SETUP_TIMEOUT
    while any(conn.in_flight for conn in load.senders) and time.perf_counter() < deadline:
        pump(load, 0.1, [], resend=False)
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    while pump(load, QUIET, [], resend=False) and time.perf_counter() < deadline:
        pass
    for conn in load.senders:
        conn.in_flight = 0


def measure(load: ChatLoad, window: int, rate: float, duration: float, storm: int,
            round_number: int = 0) -> dict[str, float]:
    """One window of `duration` (of round `round_number`: its storm's names are its own): print
    its figures; return them (deliveries/s, messages/s acknowledged, the percentiles of `Reach`,
    and for servers started here deliveries per server CPU-second)."""
    senders = load.senders
    for conn in senders:
        conn.sent = conn.refused = conn.acknowledged = 0
    load.reach.start()
    stormers = load.target.sessions(storm) if storm else []
    for i, stormer in enumerate(stormers):
        stormer.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            storm_frame = {"type": "register", "username": f"{load.prefix}s{round_number}x{i}",
                           "password": "bench-password"}
            stormer.sock.send(stormer.encode(storm_frame))
    latencies: list[int] = []
    meter = Meter(*(target.pid for target in load.targets), *([load.redis.pid] if load.redis else []))
    if load.redis:
        load.redis.start()
    begin = time.perf_counter()
    deadline = begin + duration
    interval = len(senders) / rate if rate else 0.0
    next_send = begin
    if not rate:
        for conn in senders:
            for _ in range(window):
                send(load, conn)
    turn = 0
    while (now := time.perf_counter()) < deadline:
        if rate and now >= next_send:
            send(load, senders[turn % len(senders)], next_send)
            turn += 1
            next_send += interval / len(senders)
            continue
        pump(load, max(0.0, next_send - now) if rate else 0.1, latencies, resend=not rate)
    elapsed = time.perf_counter() - begin
    acknowledged = sum(conn.acknowledged for conn in senders)
    refused = sum(conn.refused for conn in senders)
    sent = sum(conn.sent for conn in senders) - refused
    mode = f"rate {rate:g} msgs/s" if rate else f"window {window}"
    tls = " over TLS" if isinstance(load.conns[0].sock, ssl.SSLSocket) else ""
    nodes = f", {len(load.targets)} nodes of a bus" if len(load.targets) > 1 else ""
    print(f"chat: {len(load.conns)} clients, {len(senders)} senders{load.in_rooms}, {mode}, {elapsed:.1f} s, "
          f"{load.target.transport}{tls}{nodes}" + (f", beside {storm} registrations" if storm else ""))
    print(f"  {sent / elapsed:,.0f} messages/s in, {len(latencies) / elapsed:,.0f} deliveries/s")
    print(f"  {latency_line(latencies)}")
    server_cpu = meter.report(elapsed, {"deliveries": len(latencies), "messages": sent})
    if load.redis:
        load.redis.report()
    for stormer in stormers:
        stormer.sock.close()
    if refused:
        raise SystemExit(f"netlab: the server answered {refused} messages with an error (its flood "
                         "control, unless it runs with --rate-limit 0): these figures are not its throughput")
    figures = {"deliveries/s": len(latencies) / elapsed}
    if server_cpu:
        figures["deliveries per server CPU-second"] = len(latencies) / server_cpu
    return {**figures, "acknowledged msgs/s": acknowledged / elapsed, **reached(load)}


def reached(load: ChatLoad) -> dict[str, float]:
    """Wait (at most SETUP_TIMEOUT) until the window's messages reached everyone elsewhere (on
    the other nodes of a bus, or the other clients of one server), print and return their
    percentiles: a message still on its way when the window closed is timed to its end."""
    deadline = time.perf_counter() + SETUP_TIMEOUT
    while load.reach.waiting and time.perf_counter() < deadline:
        pump(load, 0.1, [], resend=False)
    reach = load.reach
    where = "on another node" if reach.across_nodes else "by another client"
    print(f"  last receipt {where} ({len(reach.latencies):,} of {reach.timed:,} messages): "
          f"{latency_line(reach.latencies)}")
    return reach.percentiles_ms()


def run_chat(targets: dict[str, list[Target]], clients: int, senders: int, window: int, rate: float,
             duration: float, storm: int, rooms: int, protocol: int, rounds: int,
             redis: RedisWatch | None = None) -> None:
    """The load on each of `targets` (a transport's server, or with `redis` one server then
    a bus's nodes), then `rounds` rounds of one window each, in the order given; with more than
    one load, each round's ratios and their medians, or for a bus the table.

    Several loads are open at once, so each talks in rooms of its own (`bench-tcp-0`,
    `bench-ws-0` ...: version 2): the one measured reaches none of the others.
    """
    loads = {name: prepare(nodes, clients, senders, rooms, protocol,
                           "bench" if len(targets) == 1 else f"bench-{name}",
                           redis if len(nodes) > 1 else None)
             for name, nodes in targets.items()}
    for load in loads.values():
        drain(load)
    first = next(iter(loads))
    try:
        windows = []
        for round_number in range(rounds):
            figures = {}
            for name, load in loads.items():
                figures[name] = measure(load, window, rate, duration, storm, round_number)
                drain(load)
            windows.append(figures)
            if redis is None:
                print_ratios(first, ratios(figures, RATIO_UNITS))
        if redis is not None:
            print_table(len(loads["bus"].targets), windows)
        elif rounds > 1 and len(loads) > 1:
            print_median_ratios(first, [ratios(figures, RATIO_UNITS) for figures in windows])
    finally:
        for load in loads.values():
            load.close()
