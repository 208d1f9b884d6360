"""The `netlab` command line (../shared/CLI.md is the contract)."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import NoReturn

import click

from netlab import admin
from netlab.bench_cli import bench
from netlab.bus.address import BusAddress
from netlab.bus.commands import export_command, import_command
from netlab.chat_core import ChatConfig
from netlab.cli_options import (
    COUNT,
    DAY,
    FiniteRange,
    Group,
    bus_options,
    bus_with_ca,
    chat_limit_options,
    client_options,
    client_wrap,
    max_clients_per_ip_option,
    server_options,
    web_options,
    with_options,
)
from netlab.connect import WELCOME_TIMEOUT
from netlab.console_socket import (
    CONSOLE_SOCKET,
    ConsoleSocket,
    NoServer,
    connect_console,
    run_piped,
    run_prompt,
)
from netlab.datadir_lock import CHAT_LOCK, ECHO_LOCK, DataDirUnavailable, lock_data_dir
from netlab.echo_threaded import DEFAULT_MAX_CLIENTS
from netlab.log_tag import log_tag_command
from netlab.logs import LogControl, get_logger, setup_logging
from netlab.netutil import format_address, open_listener, raise_fd_limit
from netlab.wire import MAX_HISTORY_LIMIT

UNREACHABLE = 1  # a client's exit status when its server cannot be reached (2 is a bad option)



def fail(message: str, status: int = 2) -> NoReturn:
    """A start-up problem: one clear line on stderr, exit status 2 (or `status`)."""
    click.echo(f"netlab: {message}", err=True)
    sys.exit(status)


def prepare_data_dir(path: Path) -> Path:
    """The data directory, created if missing; from here on the server's files are its own.

    The umask makes everything the server creates owner-only (directory 0700, files 0600,
    rotated logs and clients.csv.bak included): clients.csv holds password hashes, and the
    log and history are nobody else's business either.
    """
    os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's word for "a file has that name"
        fail(f"cannot use data directory {path}: it is a file, not a directory")
    except OSError as exc:
        fail(f"cannot use data directory {path}: {exc.strerror}")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(f"cannot use data directory {path}: not writable")
    return path


def hold_data_dir(data_dir: Path, lock_name: str, holder: str) -> None:
    """This process's lock on the directory, before anything there is written (the log too):
    a second server on it stops here with one line and exit 2, touching nothing."""
    try:
        lock_data_dir(data_dir, lock_name, holder)
    except DataDirUnavailable as exc:
        fail(str(exc))


def listen(host: str, port: int) -> socket.socket:
    """The bound listener, or one clear line and exit 2 (before any data file is touched)."""
    where = format_address((host, port))
    try:
        return open_listener(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"cannot listen on {where}: port {port} is already in use")
        fail(f"cannot listen on {where}: {exc.strerror or exc}")


def open_log(path: Path) -> LogControl:
    """The log file, its directory created if missing as the data directory is (0700 under
    prepare_data_dir's umask): a service's log under /var/log/netlab/ needs no set-up step."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return setup_logging(path)
    except FileExistsError:  # mkdir's word for "a file has that name"
        fail(f"cannot write the log file {path}: {path.parent} is a file, not a directory")
    except OSError as exc:
        fail(f"cannot write the log file {path}: {exc.strerror or exc}")


def announce(kind: str, address: str, tls: bool) -> None:
    """The listening line of CLI.md, on stdout and in the log."""
    say_and_log(kind, f"netlab {kind} listening on {address}" + (" (tls)" if tls else ""))


def say_and_log(kind: str, line: str) -> None:
    """One line on stdout (flushed: a script waits for it) and in the log."""
    click.echo(line)
    sys.stdout.flush()
    get_logger(kind).info(line)


def server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise click.UsageError("--tls-cert and --tls-key go together")
    from netlab.tls import server_context

    try:
        return server_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        fail(f"cannot load the TLS certificate {cert} and key {key}: {getattr(exc, 'strerror', None) or exc}")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netlab")
def main() -> None:
    """netlab: echo and chat servers, their clients and load generators."""


@main.group()
def echo() -> None:
    """The thread-per-client echo server and its client."""


@echo.command("serve")
@with_options(server_options(7007, "echo.log"))
@click.option("--max-clients", type=COUNT, default=DEFAULT_MAX_CLIENTS, show_default=True,
              help="Connections served at once; more are accepted and closed.")
@max_clients_per_ip_option("are accepted and closed")
def echo_serve(host: str, port: int, data_dir: Path, no_repl: bool, log_file: Path | None,
               tls_cert: Path | None, tls_key: Path | None, max_clients: int,
               max_clients_per_ip: int) -> None:
    """Run the echo server with the operator console."""
    from netlab.echo_threaded import EchoServer

    admin.catch_stop_signals()
    tls = server_tls(tls_cert, tls_key)
    listener = listen(host, port)  # first: a port in use leaves no new directory behind
    data_dir = prepare_data_dir(data_dir)
    hold_data_dir(data_dir, ECHO_LOCK, "echo server")
    server = EchoServer(listener, max_clients=max_clients, tls=tls, max_clients_per_ip=max_clients_per_ip)
    logs = open_log(log_file or data_dir / "echo.log")
    raise_fd_limit(max_clients, get_logger("echo"))
    serve(server, logs, repl=not no_repl)


def serve(server: admin.Server, logs: LogControl, repl: bool) -> NoReturn:
    consoles = open_console_socket(server)
    announce(server.kind, server.address, server.tls is not None)
    if (web := getattr(server, "web", None)) is not None:
        say_and_log(server.kind, f"web client at {web.url}")
    server.start()
    if consoles is not None:
        consoles.serve(server, logs)
    status = admin.run(server, logs, repl=repl)
    if consoles is not None:
        consoles.close()
    logs.close()
    sys.exit(status)


def open_console_socket(server: admin.Server) -> ConsoleSocket | None:
    """The chat's console socket in its data directory (`netlab chat console`); None for the
    echo server, or if it cannot be made (said in the log: the chat still serves)."""
    data_dir = getattr(server, "data_dir", None)
    if data_dir is None:
        return None
    try:
        return ConsoleSocket(data_dir, server.config.max_consoles)
    except OSError as exc:
        say_and_log(server.kind, f"no console socket in {data_dir}: {exc.strerror or exc}")
        return None


@main.group()
def chat() -> None:
    """The selectors chat server and its client."""


@chat.command("serve")
@with_options(server_options(7000, "clients.csv, history.csv, netlab.key and chat.log"))
@with_options(web_options())
@with_options(bus_options())
@with_options(chat_limit_options())
def chat_serve(host: str, port: int, data_dir: Path, no_repl: bool, log_file: Path | None,
               tls_cert: Path | None, tls_key: Path | None, history_window: int,
               web_port: int | None, web_origin: tuple[str, ...], metrics_allow: tuple,
               bus: BusAddress | None, bus_ca: Path | None, bus_fanout_cap: int, bus_heartbeat: float,
               **limits: int | float) -> None:
    """Run the chat server with the operator console."""
    from netlab.bus.node import open_node
    from netlab.chat_selectors import ChatServer
    from netlab.files import StartupError
    from netlab.store.opening import open_store

    admin.catch_stop_signals()
    # The history sent at login comes from the window, so it holds at least that much.
    window = max(history_window, int(limits["history_size"]))
    tls = server_tls(tls_cert, tls_key)
    bus = bus_with_ca(bus, bus_ca)
    if bus is not None:  # unreachable: one line and exit 2 (CLI.md), before anything is bound
        from netlab.bus.address import unreachable

        if (why := unreachable(bus)) is not None:
            fail(why)
    listener = listen(host, port)  # first: a port in use leaves no new directory behind
    web_listener = listen(host, web_port) if web_port is not None else None
    data_dir = prepare_data_dir(data_dir)
    hold_data_dir(data_dir, CHAT_LOCK, "chat server")
    logs = open_log(log_file or data_dir / "chat.log")
    at_least = int(limits["history_size"])  # a room's or conversation's login page, from memory
    try:
        store = open_store(data_dir, window, room_window=max(int(limits["room_window"]), at_least),
                           direct_window=max(int(limits["direct_window"]), at_least)) if bus is None \
            else open_node(bus, data_dir, window, max(int(limits["room_window"]), at_least), bus_fanout_cap,
                           bus_heartbeat, max(int(limits["direct_window"]), at_least))
    except StartupError as exc:
        fail(str(exc))
    except OSError as exc:  # name the file at fault ("data directory data: Is a directory" is no help)
        fail(f"cannot use {exc.filename or f'data directory {data_dir}'}: {exc.strerror or exc}")
    config = ChatConfig(history_window=window, metrics_allow=metrics_allow, **limits)
    raise_fd_limit(config.max_clients, get_logger("chat"))
    web = None
    if web_listener is not None:
        from netlab.loop.web import WebPort, read_site

        site = read_site("https" if tls else "http", web_origin, config.max_header_bytes)
        web = WebPort(web_listener, site)
    serve(ChatServer(listener, config, store, tls, web), logs, repl=not no_repl)


@chat.command("console")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="The running chat server's data directory (its console.sock).")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), default=None,
              help="The console socket itself; wins over --data-dir.")
def chat_console(data_dir: Path, socket_path: Path | None) -> None:
    """The operator console of a running chat server (one started with --no-repl too)."""
    try:
        conn = connect_console(socket_path or data_dir / CONSOLE_SOCKET)
    except NoServer as exc:
        fail(str(exc))
    with conn:
        if sys.stdin.isatty() and sys.stdout.isatty():
            run_prompt(conn, "chat")
        else:
            run_piped(conn)


@chat.command("check")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="The chat server's data directory.")
@click.option("--repair", is_flag=True,
              help="Cut off a torn last record (keeping FILE.bak); nothing else is changed.")
def chat_check(data_dir: Path, repair: bool) -> None:
    """Read every data file and report damage; exit 0 clean, 1 damaged, 2 cannot check."""
    from netlab.check import check_data_dir
    from netlab.check import repair as repair_torn

    os.umask(0o077)
    if not data_dir.is_dir():
        fail(f"cannot check data directory {data_dir}: "
             f"{'not a directory' if data_dir.exists() else 'it does not exist'}")
    hold_data_dir(data_dir, CHAT_LOCK, "chat check")  # no server may write while it is read
    damage = check_data_dir(data_dir)
    done: list[str] = []
    if repair:
        done, damage = repair_torn(damage)
    for line in [*done, *map(str, damage)] or ["no damage found"]:
        click.echo(line)
    sys.exit(1 if damage else 0)


def read_password(password_file: Path | None, password_env: str | None) -> str | None:
    """From a file or a variable; None when it is to be asked (netlab.client.login), never
    from the command line (`ps` shows it)."""
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if password_env is not None:
        if password_env not in os.environ:
            fail(f"the environment variable {password_env} is not set")
        return os.environ[password_env]
    if not sys.stdin.isatty():
        fail("no password: on a pipe use --password-file FILE or --password-env VAR")
    return None


def room_option(value: str | None) -> str | None:
    """--room: a name by PROTOCOL.md's rules (a leading # allowed), else a bad option."""
    from netlab.client.requests import valid_room
    from netlab.client.words import ERROR_SENTENCES

    name = None if value is None else value.removeprefix("#")
    if name is not None and not valid_room(name):
        raise click.BadParameter(ERROR_SENTENCES["invalid_room"])
    return name


@chat.command("connect")
@client_options(7000)
@click.option("--user", "username", default=None, help="Your username (asked on a terminal if missing).")
@click.option("--register", is_flag=True, help="Create the account first.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the password from the first line of FILE.")
@click.option("--password-env", metavar="VAR", default=None, help="Read the password from $VAR.")
@click.option("--json", "json_lines", is_flag=True, help="Print every frame received as a JSON line.")
@click.option("--history", "history_at_login", type=click.IntRange(0, MAX_HISTORY_LIMIT), default=None,
              show_default="0 from a pipe or with --json, all the server sends at a prompt",
              metavar="N", help="Show the newest N of the messages the server sends after login.")
@click.option("--room", default=None, metavar="ROOM", callback=lambda _c, _p, value: room_option(value),
              help="Talk in ROOM, which must exist and be joined: from a pipe every line goes there.")
@click.option("--welcome-timeout", type=FiniteRange(min=0, min_open=True, max=DAY),
              default=WELCOME_TIMEOUT, show_default=True, metavar="SECONDS",
              help="How long a server may stay silent before it is taken for no netlab chat server.")
@click.option("--to", "to_user", default=None, metavar="USER",
              help="Send every line to USER as a direct message (at a prompt: start in that conversation).")
def chat_connect(host: str, port: int, tls: bool, ca: Path | None, insecure: bool, username: str | None,
                 register: bool, password_file: Path | None, password_env: str | None,
                 json_lines: bool, history_at_login: int | None, room: str | None,
                 welcome_timeout: float, to_user: str | None) -> None:
    """Chat: a prompt on a terminal; from a pipe, each line is a message."""
    from netlab.client.effects import Credentials
    from netlab.client.login import ask_password, log_in_asking, not_ready
    from netlab.client.network import ChatClient, Display
    from netlab.client.pipe import run_pipe
    from netlab.client.places import start_place
    from netlab.client.terminal import run_terminal, show_on_terminal
    from netlab.connect import Peer

    if room is not None and to_user is not None:
        raise click.UsageError("give --room or --to, not both")
    start = start_place(room, to_user)
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    at_prompt = terminal and not json_lines
    if username is None:
        if not terminal:
            fail("--user is needed when not on a terminal")
        if not register:  # --register already answered the question
            register = click.prompt("login or register", type=click.Choice(["login", "register"]),
                                    default="login") == "register"
        username = click.prompt("username")
    password = read_password(password_file, password_env)
    peer = Peer(host, port, client_wrap(host, tls, ca, insecure), welcome_timeout)
    if history_at_login is None and not at_prompt:
        history_at_login = 0  # a bot's output is its own lines, not history first

    def session(password: str, display: Display = show_on_terminal) -> ChatClient:
        return ChatClient(peer, Credentials(username, password, register), display, history_at_login, start)

    if password is None:  # to be asked: not before the server is known to be there
        problem = not_ready(peer)
        if problem is not None:
            fail(problem, UNREACHABLE)
        if at_prompt:
            sys.exit(run_terminal(log_in_asking(session, register)))
        password = ask_password(register and terminal)
    if at_prompt:
        sys.exit(run_terminal(session(password)))
    sys.exit(run_pipe(lambda display: session(password, display), json_lines))


@echo.command("connect")
@client_options(7007)
def echo_connect(host: str, port: int, tls: bool, ca: Path | None, insecure: bool) -> None:
    """Echo: lines typed on a terminal; from a pipe, stdin streamed byte for byte."""
    from netlab.client.echo import echo_pipe, echo_terminal
    from netlab.connect import Peer, WrongPeer

    peer = Peer(host, port, client_wrap(host, tls, ca, insecure))
    try:
        sock = peer.open()
    except WrongPeer as exc:
        fail(str(exc), UNREACHABLE)
    except OSError as exc:
        fail(f"cannot reach {peer.address}: {exc.strerror or exc}", UNREACHABLE)
    sock.settimeout(None)  # an echo waits as long as the input does
    with sock:
        try:
            if sys.stdin.isatty() and sys.stdout.isatty():
                sys.exit(echo_terminal(sock, peer))
            sys.exit(echo_pipe(sock, peer))
        except KeyboardInterrupt:  # also while an echo is awaited, not only at the prompt
            sys.exit(0)


@main.group()
def tls() -> None:
    """TLS certificates."""


@tls.command("make-cert")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/tls"),
              show_default=True, help="Directory for cert.pem and key.pem.")
@click.option("--host", "hosts", multiple=True, help="A name or address clients use (repeatable; "
              "default localhost and 127.0.0.1).")
def make_cert(out: Path, hosts: tuple[str, ...]) -> None:
    """A self-signed certificate and key for a small deployment."""
    from netlab.tls import DEFAULT_HOSTS, make_certificate

    try:
        cert, key = make_certificate(out, hosts or DEFAULT_HOSTS)
    except (FileExistsError, PermissionError) as exc:
        fail(str(exc))
    click.echo(f"wrote {cert} and {key} (mode 0600) for {', '.join(hosts or DEFAULT_HOSTS)}")
    click.echo(f"serve:   netlab chat serve --tls-cert {cert} --tls-key {key}")
    click.echo(f"clients: copy {cert} to them and run netlab chat connect --tls --ca {cert.name} ...")

main.add_command(bench)
chat.add_command(export_command)
chat.add_command(import_command)
chat.add_command(log_tag_command)
