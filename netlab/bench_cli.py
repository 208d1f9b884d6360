"""`netlab bench`: the load generators' command line (their code is in bench.py and
bench_sessions.py, imported when a command runs)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import click

from netlab.cli_options import COUNT, DAY, PORT, FiniteRange, host_option, with_options
from netlab.netutil import raise_fd_limit

#: The sessions' transports (PROTOCOL.md, "Transports"): the chat port, the web port's WebSocket.
TRANSPORTS = ("tcp", "ws")


@click.group()
def bench() -> None:
    """Load generators; without --port they start their own server."""


def bench_target(default_kind: str):
    return with_options([
        host_option(),
        click.option("--port", type=PORT, default=None,
                     help=f"A running {default_kind} server; default: start one for the run."),
        click.option("--duration", type=FiniteRange(min=0.1, max=DAY), default=5.0, show_default=True,
                     help="Seconds of measurement."),
        click.option("--tls", is_flag=True,
                     help="Over TLS (a server started here gets its own certificate)."),
    ])


@contextlib.contextmanager
def bench_errors() -> Iterator[None]:
    """A connection that fails mid-run (reset, broken pipe, TLS): one line and exit 1, no traceback."""
    from netlab.cli import UNREACHABLE, fail  # cli imports this module

    try:
        yield
    except OSError as exc:
        fail(f"the connection to the server failed: {exc.strerror or exc}", UNREACHABLE)


@bench.command("echo")
@bench_target("echo")
@click.option("--conns", type=COUNT, default=100, show_default=True, help="Connections.")
@click.option("--size", type=COUNT, default=64, show_default=True, help="Bytes per request.")
def bench_echo(host: str, port: int | None, duration: float, tls: bool, conns: int, size: int) -> None:
    """Ping-pong clients: requests/s and latency percentiles."""
    from netlab import bench as b

    places = str(conns + 10)  # every connection of the run comes from this one host
    with bench_errors(), b.server_for("echo", host, port, ["--max-clients", places,
                                                           "--max-clients-per-ip", places], tls) as target:
        b.run_echo(target, conns, size, duration)


@bench.command("chat")
@bench_target("chat")
@click.option("--clients", type=COUNT, default=100, show_default=True, help="Clients in the room (N).")
@click.option("--senders", type=COUNT, default=10, show_default=True, help="Of them sending (S).")
@click.option("--window", type=COUNT, default=1, show_default=True,
              help="Messages in flight per sender (ignored with --rate).")
@click.option("--rate", type=FiniteRange(min=0), default=0, show_default=True,
              help="Fixed total messages/s instead of a window (latency counts from when each "
                   "was due, as in the harness); 0: use the window.")
@click.option("--login-storm", type=click.IntRange(min=0), default=0, show_default=True,
              help="Registrations started during the measurement (hashing beside the chat).")
@click.option("--rooms", type=COUNT, default=1, show_default=True,
              help="Rooms (R): 1 talks in general; more spreads the clients over rooms bench-0 "
                   "to bench-R-1, senders in each (version 2 sessions: the server must speak it).")
@click.option("--protocol", type=click.IntRange(1, 2), default=None,
              help="Sessions' version: 1 talks in general, 2 in rooms bench-0 onwards "
                   "(with --rooms 1, one room like the others) [default: 2 with --rooms above 1 or "
                   "two transports, else 1]")
@click.option("--transport", type=click.Choice(TRANSPORTS), multiple=True, default=("tcp",),
              show_default=True,
              help="tcp: the chat port; ws: WebSocket sessions on the web port (with --port, that "
                   "port). Given twice, the same scenario runs over each in turn against one server, "
                   "each in rooms of its own (bench-tcp-0, bench-ws-0 ...), and the second's "
                   "figures are printed as multiples of the first's.")
@click.option("--rounds", type=COUNT, default=1, show_default=True,
              help="Windows of --duration on each transport, alternating, on clients registered once; "
                   "with two transports, each round's ratios and their medians are printed.")
@click.option("--bus-nodes", type=click.IntRange(min=0), default=0, show_default=True,
              help="N nodes sharing one chat through a Redis bus (chat serve --bus), beside one "
                   "server without a bus, in alternating windows: a redis-server (appendfsync "
                   "always) and the nodes are started for the run, clients spread round-robin over "
                   "them; prints a table of both and bus ÷ 1 node, latency from a send to its last "
                   "receipt on another node. 0: no bus; else at least 2.")
def bench_chat(host: str, port: int | None, duration: float, tls: bool, clients: int, senders: int,
               window: int, rate: float, login_storm: int, rooms: int, protocol: int | None,
               transport: tuple[str, ...], rounds: int, bus_nodes: int) -> None:
    """N clients, S senders: deliveries/s, end-to-end latency percentiles, the server's and the
    generator's CPU."""
    from netlab import bench as b
    from netlab.bench_chat import run_chat

    transports = tuple(dict.fromkeys(transport))  # in the order given, each once
    if port is not None and len(transports) > 1:
        raise click.BadParameter("one transport with --port (it names that transport's port)",
                                 param_hint="--transport")
    if senders > clients:
        raise click.BadParameter("cannot exceed --clients", param_hint="--senders")
    if rooms > senders:
        raise click.BadParameter("cannot exceed --senders (a sender in each room)", param_hint="--rooms")
    if protocol == 1 and rooms > 1:
        raise click.BadParameter("--rooms needs --protocol 2", param_hint="--protocol")
    if protocol == 1 and len(transports) > 1:
        raise click.BadParameter("two transports need --protocol 2 (each talks in rooms of its own)",
                                 param_hint="--protocol")
    redis = bus_checked(bus_nodes, port, transports)
    # All from this one host, every load's clients at once, a round's storm closing.
    connections = (2 if bus_nodes else len(transports)) * (clients + 2 * login_storm)
    raise_fd_limit(connections, logging.getLogger("netlab.bench"))  # a socket each, here and there
    places = str(connections + 10)
    extra = ["--rate-limit", "0", "--auth-timeout", "600", "--max-pending-auth", "100000",
             "--max-clients", places, "--max-clients-per-ip", places]
    protocol = protocol or (2 if rooms > 1 or len(transports) > 1 else 1)
    with bench_errors(), b.servers_for("chat", host, port, extra, tls, transports) as targets:
        if redis is None:
            run_chat({name: [target] for name, target in targets.items()}, clients, senders, window, rate,
                     duration, login_storm, rooms, protocol, rounds)
            return
        from netlab.bench_bus import bus_nodes as started_nodes

        with started_nodes(redis, host, extra, tls, transports[0], bus_nodes) as (nodes, watch):
            run_chat({"single": list(targets.values()), "bus": nodes}, clients, senders, window, rate,
                     duration, login_storm, rooms, protocol, rounds, watch)


def bus_checked(nodes: int, port: int | None, transports: tuple[str, ...]) -> str | None:
    """redis-server's path for a run with a bus of `nodes` nodes (None: no bus), or a usage error;
    without redis-server, one line and exit status 2."""
    if not nodes:
        return None
    if nodes == 1:
        raise click.BadParameter("0 (no bus) or at least 2 (a node to receive on besides the sender's)",
                                 param_hint="--bus-nodes")
    if port is not None:
        raise click.BadParameter("not with --port (the bus and its nodes are started here)",
                                 param_hint="--bus-nodes")
    if len(transports) > 1:
        raise click.BadParameter("one transport with --bus-nodes", param_hint="--transport")
    from netlab.bench_bus import DEBIAN_REDIS, redis_executable
    from netlab.cli import fail  # cli imports this module

    return redis_executable() or fail(f"--bus-nodes needs redis-server (Debian's package redis-server): "
                                      f"not on PATH nor at {DEBIAN_REDIS}")


@bench.command("login")
@host_option()
@click.option("--rooms", type=click.IntRange(2, 1000), default=50, show_default=True,
              help="Rooms of the second account (R); the first is in one.")
@click.option("--logins", type=COUNT, default=30, show_default=True, help="Logins of each account.")
def bench_login(host: str, rooms: int, logins: int) -> None:
    """Time to `rooms` of a login with one room and with R: median and p99 (own server)."""
    from netlab import bench as b
    from netlab import bench_sessions as s

    extra = ["--room-rate", "0", "--max-rooms", str(rooms + 10), "--max-rooms-per-account", str(rooms)]
    with bench_errors(), b.server_for("chat", host, None, extra, False) as target:
        s.run_login(target, rooms, logins)


@bench.command("idle")
@host_option()
@click.option("--sessions", type=COUNT, default=10_000, show_default=True, help="Idle sessions (N).")
@click.option("--rooms", type=COUNT, default=1_000, show_default=True,
              help="Rooms (R), one account each; each account holds N/R of the sessions.")
@click.option("--transport", type=click.Choice(TRANSPORTS), default="tcp", show_default=True,
              help="tcp: sessions on the chat port; ws: WebSocket sessions on the web port.")
def bench_idle(host: str, sessions: int, rooms: int, transport: str) -> None:
    """Server RSS per idle version 2 session, N of them in R rooms (own server)."""
    from netlab import bench as b
    from netlab import bench_sessions as s

    if rooms > sessions:
        raise click.BadParameter("cannot exceed --sessions", param_hint="--rooms")
    raise_fd_limit(sessions, logging.getLogger("netlab.bench"))  # a socket each, here and there
    places = str(sessions + 10)  # all from this one host, and every hash queued at once
    extra = ["--room-rate", "0", "--max-rooms", str(rooms + 10), "--max-clients", places,
             "--max-clients-per-ip", places, "--max-pending-auth", places, "--auth-timeout", str(DAY)]
    with bench_errors(), b.servers_for("chat", host, None, extra, False, (transport,)) as targets:
        s.run_idle(targets[transport], sessions, rooms)
