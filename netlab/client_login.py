"""The password question of `netlab chat connect` on a terminal.

Asked only once the server is known to be reachable (an unreachable server is
no reason to type a password), asked again when it breaks PROTOCOL.md's rules at
registration, and again after a wrong one at login: a typo should not end the
program. A password from a file or a variable is never asked again: the same
one would fail the same way.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import click

from netlab import wire as p
from netlab.client import ERROR_SENTENCES, ChatClient
from netlab.netutil import format_address

TRIES = 3  # passwords asked at login before giving up: the server throttles a name after 5 failures
CONNECT_TIMEOUT = 10.0  # as the client's own connections


def unreachable(host: str, port: int) -> str | None:
    """Why the server cannot be reached, or None once a TCP connection was made.

    The probe connection is closed at once, before anything is sent: the session
    connects again when the password is in. Keeping this one open instead would
    run the server's auth timeout (30 s by default) against the user's typing.
    """
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        return f"cannot connect to {format_address((host, port))}: {exc.strerror or exc}"
    return None


def ask_password(register: bool) -> str:
    """A hidden password; when registering, twice (asked again if the two differ) and
    again until it keeps the rules, which the server would otherwise refuse."""
    while True:
        password = click.prompt("password", hide_input=True, confirmation_prompt=register)
        if not register or p.valid_password(password):
            return password
        click.echo(f"error: {ERROR_SENTENCES['invalid_password']}", err=True)


def log_in_asking(session: Callable[[str], ChatClient], register: bool) -> ChatClient:
    """A running session whose password was asked, up to TRIES times while it is wrong.
    When every try failed, the session returned has ended with its status (1)."""
    for _ in range(TRIES):
        client = session(ask_password(register))
        client.start()
        if client.wait_for_login() or client.refusal != "bad_credentials":
            break
    return client
