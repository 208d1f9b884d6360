"""The `netlab` command line (../shared/CLI.md is the contract)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from netlab import admin
from netlab.logs import get_logger, setup_logging

PORT = click.IntRange(0, 65535)
COUNT = click.IntRange(min=1)


def fail(message: str) -> NoReturn:
    """A start-up problem: one clear line on stderr, exit status 2."""
    click.echo(f"netlab: {message}", err=True)
    sys.exit(2)


def prepare_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot use data directory {path}: {exc.strerror}")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(f"cannot use data directory {path}: not writable")
    return path


def listen_failure(host: str, port: int, exc: OSError) -> NoReturn:
    if exc.errno == errno.EADDRINUSE:
        fail(f"cannot listen on {host}:{port}: port {port} is already in use")
    fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def announce(kind: str, address: str) -> None:
    """The listening line of CLI.md, on stdout and in the log."""
    line = f"netlab {kind} listening on {address}"
    click.echo(line)
    sys.stdout.flush()
    get_logger(kind).info(line)


def server_options(default_port: int) -> list:
    """Options every server takes, in CLI.md's order."""
    return [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
        click.option("--port", type=PORT, default=default_port, show_default=True,
                     help="TCP port; 0 picks a free one."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"),
                     show_default=True, help="Where logs (and chat files) live; created if missing."),
        click.option("--no-repl", is_flag=True, help="Read no operator commands from stdin."),
        click.option("--log-file", type=click.Path(path_type=Path), default=None,
                     help="Log file (default DATA_DIR/<server>.log)."),
    ]


def with_options(options: list):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netlab")
def main() -> None:
    """netlab: echo and chat servers, their clients and load generators."""


@main.group()
def echo() -> None:
    """The thread-per-client echo server and its client."""


@echo.command("serve")
@with_options(server_options(7007))
@click.option("--max-clients", type=COUNT, default=1000, show_default=True,
              help="Connections served at once; more are accepted and closed.")
def echo_serve(host: str, port: int, data_dir: Path, no_repl: bool, log_file: Path | None,
               max_clients: int) -> None:
    """Run the echo server with the operator console."""
    from netlab.echo_threaded import EchoServer

    admin.block_stop_signals()
    data_dir = prepare_data_dir(data_dir)
    try:
        server = EchoServer(host, port, max_clients=max_clients)
    except OSError as exc:
        listen_failure(host, port, exc)
    logs = setup_logging(log_file or data_dir / "echo.log")
    announce("echo", server.address)
    server.start()
    status = admin.run(server, logs, repl=not no_repl)
    logs.close()
    sys.exit(status)
