"""The options the `netlab` commands share: value types, option sets, TLS for clients,
and click's usage error made whole. Kept apart from cli.py, which composes the commands."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import ssl
from pathlib import Path

import click

from netlab.bus.address import BusAddress, parse_bus_url
from netlab.chat_core import ChatConfig
from netlab.config_file import config_option, name_file_value
from netlab.netutil import unbracket
from netlab.peraddress import DEFAULT_MAX_CLIENTS_PER_IP
from netlab.wire import MAX_MAX_FRAME, MIN_MAX_FRAME

PORT = click.IntRange(0, 65535)
COUNT = click.IntRange(min=1)
DAY = 86_400.0  # longest time an option may ask for: a loop's select() wants a sane timeout


class FiniteRange(click.FloatRange):
    """A FloatRange that refuses nan and inf, which pass its bounds but are no time nor rate."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def listening_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An IPv6 address may come in brackets, as the listening line writes it. An empty
    host would listen on every interface: an unset variable in a service file must not
    put the chat on the network."""
    if not value.strip():
        raise click.BadParameter("empty; give 0.0.0.0 or :: to listen on every interface")
    return unbracket(value)


_ORIGIN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?")


def web_origins(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """--web-origin: an origin as a browser sends it, scheme://host[:port], nothing after it
    (a typo would otherwise allow nothing, silently)."""
    for value in values:
        if not _ORIGIN.fullmatch(value):
            raise click.BadParameter(f"{value!r} is not an origin: http(s)://HOST[:PORT]")
    return values


def metrics_networks(ctx: click.Context, param: click.Parameter,
                     values: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """--metrics-allow: a network in CIDR notation (an address alone is one host). Host bits
    set (10.1.2.3/8) are a bad option: which of two meanings was meant cannot be told."""
    try:
        return tuple(ipaddress.ip_network(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}: give a network as ADDRESS/PREFIX, e.g. 10.0.0.0/8") from None


def web_options() -> list:
    """`chat serve`'s web port (CLI.md, version 2)."""
    return [
        click.option("--web-port", type=PORT, default=None,
                     help="Serve the browser client, WebSocket sessions (/ws), /healthz and /metrics "
                          "on this port (0: a free one; off by default)."),
        click.option("--web-origin", multiple=True, metavar="ORIGIN", callback=web_origins,
                     help="Allow WebSocket handshakes from this origin (http(s)://HOST[:PORT]) "
                          "besides the page's own; repeatable."),
        click.option("--metrics-allow", multiple=True, metavar="CIDR", callback=metrics_networks,
                     help="Answer the web port's /metrics to this network too (loopback always "
                          "may; nobody else by default); repeatable."),
    ]


def bus_address(ctx: click.Context, param: click.Parameter, value: str | None) -> BusAddress | None:
    """--bus: a redis:// URL (netlab/bus/address.py says what it may hold)."""
    try:
        return parse_bus_url(value) if value is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def bus_ca_option():
    """--bus-ca FILE, on every command that takes --bus (named and checked as the clients' --ca)."""
    return click.option("--bus-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        default=None, callback=holds_certificate,
                        help="With a rediss:// bus: trust this CA certificate (PEM) too, besides the "
                             "system's.")


def bus_with_ca(bus: BusAddress | None, ca: Path | None) -> BusAddress | None:
    """The bus with its --bus-ca. --bus-ca with a plain redis:// bus is a bad option, not a
    plain connection: whoever gives it means TLS (as the clients' --ca needs --tls)."""
    if ca is None:
        return bus
    if bus is None or not bus.tls:
        raise click.UsageError("--bus-ca needs a rediss:// bus (TLS)")
    return dataclasses.replace(bus, ca=ca)


def bus_options() -> list:
    """`chat serve --bus URL` (CLI.md, version 2; docs/scale-out.md) and the bus's bound."""
    from netlab.bus.presence import HEARTBEAT, TTL_BEATS
    from netlab.bus.publish import FANOUT_CAP

    return [
        click.option("--bus", default=None, metavar="URL", callback=bus_address,
                     help="Share one chat with other servers through this Redis "
                          "(redis://HOST:PORT/DB, rediss:// for TLS; password in NETLAB_BUS_PASSWORD); "
                          "docs/scale-out.md."),
        bus_ca_option(),
        click.option("--bus-fanout-cap", type=click.IntRange(1_000, 100_000_000), default=FANOUT_CAP,
                     show_default=True,
                     help="Entries the bus's fan-out stream keeps (Redis memory); a node cut off "
                          "for longer stops, to be restarted."),
        click.option("--bus-heartbeat", type=click.FloatRange(0.1, 60.0), default=HEARTBEAT,
                     show_default=True,
                     help="Seconds between a node's presence renewals; a node silent for "
                          f"{TTL_BEATS} of them is gone, its users offline everywhere."),
    ]


def server_options(default_port: int, keeps: str) -> list:
    """Options every server takes, in CLI.md's order; `keeps` says what its data directory holds."""
    return [
        click.option("--host", default="127.0.0.1", show_default=True, callback=listening_host,
                     help="Address to listen on (0.0.0.0 or :: for every interface)."),
        click.option("--port", type=PORT, default=default_port, show_default=True,
                     help="TCP port; 0 picks a free one."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"),
                     show_default=True, help=f"Holds {keeps}; created if missing."),
        click.option("--no-repl", is_flag=True, help="Read no operator commands from stdin."),
        click.option("--log-file", type=click.Path(path_type=Path), default=None,
                     help="Log file (default DATA_DIR/<server>.log)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Serve TLS with this certificate (PEM); needs --tls-key."),
        click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="The certificate's private key (PEM)."),
        config_option(),
    ]


def max_clients_per_ip_option(refused: str):
    """--max-clients-per-ip, for both servers; `refused` says what a connection past it gets."""
    return click.option("--max-clients-per-ip", type=COUNT, default=DEFAULT_MAX_CLIENTS_PER_IP,
                        show_default=True,
                        help=f"Connections open from one address at once; more {refused}. "
                             "The default fits a class or an office behind one NAT.")


def host_option():
    """--host for a client: an IPv6 address may come in brackets, as servers print it."""
    return click.option("--host", default="127.0.0.1", show_default=True,
                        callback=lambda ctx, param, value: unbracket(value))


def holds_certificate(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """--ca FILE must hold a PEM certificate: the key or any other file is a bad option,
    found before a password is asked, not a traceback at connect."""
    if value is not None:
        from netlab.tls import client_context

        try:
            client_context(value, insecure=False)
        except ssl.SSLError:
            raise click.BadParameter(f"{value}: no certificate in it (a PEM file such as the "
                                     "server's cert.pem)") from None
    return value


def client_options(default_port: int):
    """Where to connect and how to trust the server."""
    return with_options([
        host_option(),
        click.option("--port", type=PORT, default=default_port, show_default=True),
        click.option("--tls", is_flag=True, help="Connect with TLS, verifying the server's certificate."),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     callback=holds_certificate,
                     help="With --tls: trust this certificate (e.g. the server's cert.pem) alone."),
        click.option("--insecure", is_flag=True, help="With --tls: do not verify the certificate (unsafe)."),
    ])


def client_wrap(host: str, tls: bool, ca: Path | None, insecure: bool):
    """The socket wrapper for a client: identity without --tls.

    --ca or --insecure alone is a bad option, not a plain connection: whoever gives
    them means TLS, and a forgotten --tls would send the password in clear.
    """
    if not tls:
        if ca is not None or insecure:
            raise click.UsageError(f"{'--ca' if ca is not None else '--insecure'} needs --tls")
        from netlab.connect import plain

        return plain
    from netlab.tls import client_context

    if insecure:
        click.echo("WARNING: --insecure: the server's certificate is not verified; anyone on the "
                   "path can read what you send, your password included.", err=True)
    context = client_context(ca, insecure)
    return lambda sock: context.wrap_socket(sock, server_hostname=host)


class Command(click.Command):
    """A command whose every usage error shows click's usage line.

    click's parser raises "Option '--x' requires an argument." without the command's
    context (click 8.x), and an error without one prints only its `Error:` line; every other
    usage error gets its context from click. This gives it the same one.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            if isinstance(exc, click.BadParameter):
                name_file_value(ctx, exc)
            raise


class Group(click.Group):
    """Groups whose commands, and subgroups' commands, are Command."""

    command_class = Command
    group_class = type  # subgroups of the same class


def with_options(options: list):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def chat_limit_options() -> list:
    """`chat serve`'s bounds, each defaulting to ChatConfig's (which says why), in --help's order."""
    return [
        click.option("--history-size", type=COUNT, default=ChatConfig.history_size, show_default=True,
                     help="Messages sent right after login."),
        click.option("--max-frame", type=click.IntRange(MIN_MAX_FRAME, MAX_MAX_FRAME),
                     default=ChatConfig.max_frame,
                     show_default=True, help="Largest frame in bytes, either way."),
        click.option("--max-clients", type=COUNT, default=ChatConfig.max_clients, show_default=True,
                     help="Open connections; more get server_full."),
        max_clients_per_ip_option("get server_full"),
        click.option("--max-output", type=COUNT, default=ChatConfig.max_output, show_default=True,
                     help="Bytes queued for one client before it is cut as a slow consumer."),
        click.option("--auth-timeout", type=FiniteRange(min=0, min_open=True, max=DAY),
                     default=ChatConfig.auth_timeout, show_default=True,
                     help="Seconds a connection may stay unauthenticated (at most a day)."),
        click.option("--rate-limit", type=FiniteRange(min=0), default=ChatConfig.rate_limit,
                     show_default=True, help="Messages a second per session, bursts of twice that; 0: off."),
        click.option("--history-window", type=COUNT, default=ChatConfig.history_window, show_default=True,
                     help="Messages kept in memory; older pages are read from disk."),
        click.option("--room-window", type=COUNT, default=ChatConfig.room_window, show_default=True,
                     help="Messages of each other room kept in memory while in use; "
                          "older pages are read from disk."),
        click.option("--direct-window", type=COUNT, default=ChatConfig.direct_window, show_default=True,
                     help="Messages of each direct conversation kept in memory while in use."),
        click.option("--max-pending-auth", type=COUNT, default=ChatConfig.max_pending_auth,
                     show_default=True, help="Password hashes queued at once; more logins get rate_limited."),
        click.option("--max-rooms", type=COUNT, default=ChatConfig.max_rooms, show_default=True,
                     help="Rooms in all, general included; a create past it is forbidden."),
        click.option("--max-rooms-per-account", type=COUNT, default=ChatConfig.max_rooms_per_account,
                     show_default=True, help="Rooms one account may create and be in (general not counted)."),
        click.option("--users-page", type=COUNT, default=ChatConfig.users_page, show_default=True,
                     help="Names listed per users page (and never more than fit in a frame)."),
        click.option("--room-rate", type=FiniteRange(min=0), default=ChatConfig.room_rate, show_default=True,
                     help="create and join requests a minute per account, bursts of as many; 0: off."),
        click.option("--max-conversations", type=COUNT, default=ChatConfig.max_conversations,
                     show_default=True,
                     help="Direct conversations one account may have; a new one past it is forbidden."),
        click.option("--max-consoles", type=COUNT, default=ChatConfig.max_consoles, show_default=True,
                     help="Operator consoles open at once on the console socket; one more is told busy."),
        click.option("--max-header-bytes", type=click.IntRange(1024, 65536),
                     default=ChatConfig.max_header_bytes, show_default=True,
                     help="Bytes of an HTTP request's headers on the web port; more get 431."),
    ]
