"""`netlab chat log-tag ADDRESS`: the tag the chat's log names an address by, so that "was
203.0.113.5 here?" is a grep of chat.log. The log holds no address in clear (the engineering
standard), only its keyed tag (crypto.address_tag), under the key the server reads."""

from __future__ import annotations

from pathlib import Path

import click

from netlab.crypto import KEY_ENV, KEY_FILE, Vault, read_key
from netlab.netutil import canonical_ip, unbracket


def _address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The address in the form the server tags it (::ffff:192.0.2.7 is 192.0.2.7); a bad one
    is a usage error."""
    try:
        return canonical_ip(unbracket(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


@click.command("log-tag")
@click.argument("address", callback=_address)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="The chat server's data directory (its netlab.key; NETLAB_KEY wins if set).")
def log_tag_command(address: str, data_dir: Path) -> None:
    """Print the tag chat.log names ADDRESS by (ip-..., before each :PORT)."""
    from netlab.cli import fail  # cli imports this module
    from netlab.files import StartupError

    try:
        found = read_key(data_dir)
    except StartupError as exc:
        fail(str(exc))
    if found is None:
        fail(f"no key: {data_dir / KEY_FILE} is missing and {KEY_ENV} is not set (a tag is made with "
             "the chat server's key)")
    click.echo(Vault(found[0]).address_tag(address))
