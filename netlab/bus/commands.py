"""`netlab chat export` and `netlab chat import`: a chat moved between a bus and a data
directory (docs/scale-out.md, "Export and import"). The command line only; the work is in
export.py and importing.py, imported when a command runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from netlab.bus.address import CHECK_TIMEOUT, BusAddress, connect, unreachable
from netlab.cli_options import bus_address, bus_ca_option, bus_with_ca
from netlab.crypto import KEY_ENV, KEY_FILE, Vault, read_key

if TYPE_CHECKING:
    import redis


def _options(data_dir_help: str) -> Callable:
    def decorate(command: Callable) -> Callable:
        command = click.option("--data-dir", type=click.Path(path_type=Path), required=True,
                               help=data_dir_help)(command)
        command = bus_ca_option()(command)
        return click.option("--bus", required=True, metavar="URL", callback=bus_address,
                            help="The bus: a Redis URL, redis://HOST:PORT/DB or rediss:// for TLS "
                                 "(password in NETLAB_BUS_PASSWORD).")(command)
    return decorate


def _run(address: BusAddress, job: Callable[[redis.Redis], object]) -> None:
    """One line saying what was done; or one line saying why not, and exit status 2."""
    import redis

    from netlab.cli import fail  # cli imports this module
    from netlab.files import StartupError

    os.umask(0o077)  # what is written is the owner's only, as the server's files are
    if (why := unreachable(address)) is not None:
        fail(why)
    client = connect(address, CHECK_TIMEOUT)
    try:
        click.echo(job(client))
    except StartupError as exc:
        fail(str(exc))
    except redis.RedisError as exc:
        fail(f"lost the bus at {address.url}: {exc}")
    finally:
        client.close()


@click.command("export")
@_options("A new data directory: absent, or empty but for the bus's netlab.key.")
def export_command(bus: BusAddress, bus_ca: Path | None, data_dir: Path) -> None:
    """Write the bus's chat as a data directory that `chat serve` without --bus serves."""
    from netlab.bus.export import export_chat, refuse_unless_new
    from netlab.cli import fail
    from netlab.files import StartupError

    bus = bus_with_ca(bus, bus_ca)
    try:
        refuse_unless_new(data_dir)  # before the key is looked for, so its absence is not the news
        found = read_key(data_dir)
    except StartupError as exc:
        fail(str(exc))
    if found is None:
        fail(f"no key to open the bus's accounts and direct messages: put the bus's key in "
             f"{data_dir / KEY_FILE} or {KEY_ENV}")
    _run(bus, lambda client: export_chat(client, bus.url, Vault(found[0]), data_dir))


@click.command("import")
@_options("The data directory to load (its netlab.key, or NETLAB_KEY, becomes the bus's key).")
def import_command(bus: BusAddress, bus_ca: Path | None, data_dir: Path) -> None:
    """Load a data directory into an empty bus; `chat serve --bus` nodes then serve it."""
    from netlab.bus.importing import import_chat

    bus = bus_with_ca(bus, bus_ca)
    _run(bus, lambda client: import_chat(client, bus.url, data_dir))
