"""The chat client on a pipe: each line of standard input is a message.

The exit status says whether every line got through: 0 once each came back from
the server, LINE_REFUSED when one was not sent (named on standard error by its
number, while the lines after it go on). With --json every frame received is a
line of JSON, for programs; otherwise each chat line is one line of output.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable

from netlab.client.display import one_line, text_of
from netlab.client.effects import Show
from netlab.client.lines import message_text, numbered_lines, text_problem
from netlab.client.network import ChatClient, Display

LINE_REFUSED = 4  # a pipe's exit status when a line was not sent (README's list)
SHOWN = ("message", "history", "join", "leave", "notice")  # to standard output, without --json
SAID = ("status", "fatal", "error")  # to standard error


class PipeDisplay:
    """Writes the session's events as lines: chat to standard output, the rest to
    standard error. A reader of the output that went away (`| head -1`) ends the
    session as /quit does, through `quit`."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines
        self.quit: Callable[[], None] = lambda: None  # the client's, set before it starts

    def __call__(self, event: Show) -> None:
        if event.kind == "frame":
            if self.json_lines:
                self.emit(json.dumps(event.frame, ensure_ascii=False))
        elif event.kind in SHOWN:
            if not self.json_lines:
                self.emit(one_line(text_of(event)))
        elif event.kind == "error" and event.line is not None:
            complain(f"line {event.line}: {event.text.removeprefix('error: ')}: not sent")
        elif event.kind in SAID:
            complain(event.text)

    def emit(self, line: str) -> None:
        try:
            print(line, flush=True)
        except BrokenPipeError:  # the reader went away: leave as /quit does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
            self.quit()


def complain(line: str) -> None:
    print(one_line(line), file=sys.stderr, flush=True)


def run_pipe(session: Callable[[Display], ChatClient], json_lines: bool) -> int:
    """Run the chat client made by `session(display)` on standard input and output; its exit status."""
    display = PipeDisplay(json_lines)
    client = session(display)
    display.quit = client.quit
    client.start()
    threading.Thread(target=send_lines, args=(client,), name="stdin", daemon=True).start()
    try:
        client.finished.wait()
    except KeyboardInterrupt:  # Ctrl-C on a pipeline: leave as the prompt does (`quit`, status 0)
        client.quit()
        client.finished.wait(3)
    return client.status or (LINE_REFUSED if client.refused else 0)


def send_lines(client: ChatClient) -> None:
    """Each line of standard input to `client`, by its number; those that cannot be sent
    are named on standard error and counted."""
    for number, line in numbered_lines(sys.stdin.fileno()):
        if line is None:
            client.not_sent()
            complain(f"line {number} is not valid UTF-8: not sent")
        elif line.strip():
            text = message_text(line)  # a pipe has no commands, but `//` is `/` as at the prompt
            problem = text_problem(text)
            if problem is None:
                client.say(text, number)
            else:
                client.not_sent()
                complain(f"line {number}: {problem}: not sent")
    client.end_of_input()
