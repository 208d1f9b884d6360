"""The chat client at a prompt: a prompt_toolkit prompt at the bottom, everything the
server sends printed above it, and the slash commands."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from netlab.client.commands import slash_command
from netlab.client.display import for_terminal, local_time, text_of
from netlab.client.effects import Show
from netlab.client.lines import is_command, message_text, message_validator
from netlab.client.network import ChatClient
from netlab.terminal import prompt_output

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession


def show_on_terminal(event: Show) -> None:
    """An event as a line above the prompt; chat lines carry their own time."""
    if event.kind == "frame":
        return
    stamp = "" if event.kind in ("message", "history", "page") else f"[{local_time()}] "
    print(f"{stamp}{for_terminal(text_of(event))}", flush=True)


def run_terminal(client: ChatClient) -> int:
    """Run the prompt until the session ends; its exit status.

    The session may be running already (its login answered a password question).
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    # Own lines show when broadcast; a line that cannot be sent stays in the input, with why.
    session: PromptSession[str] = PromptSession(erase_when_done=True, validator=message_validator(),
                                                validate_while_typing=False, output=prompt_output())
    with patch_stdout(raw=True):
        client.start()
        close_prompt_when_finished(client, session)
        while not client.finished.is_set():
            try:
                line = session.prompt(lambda: prompt_text(client),
                                      pre_run=lambda: end_prompt_if_finished(client, session))
            except (KeyboardInterrupt, EOFError):
                client.quit()
                break
            if client.finished.is_set():
                break
            if is_command(line):
                if slash_command(client, line, ask_hidden):
                    break
            elif line.strip():
                client.say(message_text(line))
        client.finished.wait(3)
    return client.status or 0


def prompt_text(client: ChatClient) -> str:
    """`alice>` on version 1; `alice #dev>` or `alice @bob>`, the current room or
    conversation, on version 2 (asked again at each redraw: a /join lands later)."""
    place = client.place
    return f"{client.username}{f' {place}' if place else ''}> "


def close_prompt_when_finished(client: ChatClient, session: PromptSession[str]) -> None:
    """A failed login, a kick or a fatal error ends the session on the network
    thread: take the prompt down then, not after the user's next key.

    The prompt's own loop does it (prompt_toolkit is not thread-safe). A prompt
    not running yet is left to its `pre_run` check, which then sees `finished`.
    """

    def watch() -> None:
        client.finished.wait()
        loop = session.app.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that prompt has just ended
                loop.call_soon_threadsafe(end_prompt_if_finished, client, session)

    threading.Thread(target=watch, name="finished", daemon=True).start()


def end_prompt_if_finished(client: ChatClient, session: PromptSession[str]) -> None:
    """On the prompt's loop: end the prompt being read if the session is over."""
    future = session.app.future
    if client.finished.is_set() and future is not None and not future.done():
        session.app.exit(exception=EOFError)


def ask_hidden(question: str) -> str:
    """A line typed without echo (a password), asked above nothing else."""
    from prompt_toolkit import PromptSession

    try:
        return PromptSession[str](output=prompt_output()).prompt(question, is_password=True)
    except (KeyboardInterrupt, EOFError):
        return ""
