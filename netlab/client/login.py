"""The password question of `netlab chat connect` on a terminal.

Asked only once the server is known to be reachable (an unreachable server is
no reason to type a password), asked again when it breaks PROTOCOL.md's rules at
registration, and again after a wrong one at login: a typo should not end the
program. A password from a file or a variable is never asked again: the same
one would fail the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from netlab import wire as p
from netlab.client.network import ChatClient
from netlab.client.words import ERROR_SENTENCES
from netlab.connect import Peer, WrongPeer, first_frame

TRIES = 3  # passwords asked at login before giving up: the server throttles a name after 5 failures


def not_ready(peer: Peer) -> str | None:
    """Why the server cannot take a login, or None once it has welcomed a probe connection.

    The probe reads the welcome (so a wrong port, or --tls left out, is said before the
    question, as is an unreachable server) and closes at once, having sent nothing: the
    session connects again when the password is in. Keeping this connection open instead
    would run the server's auth timeout (30 s by default) against the user's typing.
    """
    try:
        with peer.open() as sock:
            first_frame(peer, sock, p.FrameDecoder(p.MAX_MAX_FRAME))
    except WrongPeer as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot connect to {peer.address}: {exc.strerror or exc}"
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
