"""The terminal output every netlab prompt draws on (the console's and the clients')."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prompt_toolkit.output import Output


def prompt_output() -> Output:
    """stdout for a prompt_toolkit session, which never asks where the cursor is.

    By default prompt_toolkit sends a cursor-position request (CPR) and waits for the
    answer: a terminal that gives none (many serial consoles, some multiplexers, test
    harnesses) held each typed line for up to a second until, 2 s in, it printed
    "WARNING: your terminal doesn't support cursor position requests (CPR)". Without
    CPR, prompt_toolkit only cannot tell how many rows lie below the prompt, which
    matters to full-screen layouts and tall menus, not to a one-line prompt.
    `enable_cpr` is Vt100_Output's documented switch; other outputs (plain text,
    Windows) ask nothing.
    """
    from prompt_toolkit.output import create_output
    from prompt_toolkit.output.vt100 import Vt100_Output

    output = create_output()
    if isinstance(output, Vt100_Output):
        output.enable_cpr = False
    return output
