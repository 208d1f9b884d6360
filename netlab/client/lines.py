"""What a line the user gives the chat client means, the same from a pipe and at the prompt.

A line starting with one `/` is a command at the prompt; a pipe has no commands and
sends it as it is. A line starting with `//` is sent with one `/` less in both, so a
text escaped for the prompt means the same piped. Lines of only white space are
skipped. The rest is a message, which PROTOCOL.md's Validation rules (checked here,
before sending, so the user hears why and nothing is lost) may refuse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from netlab import wire as p

if TYPE_CHECKING:
    from prompt_toolkit.document import Document
    from prompt_toolkit.validation import Validator

MESSAGE_RULES = f"a message is {p.TEXT_RULES}"


def is_command(line: str) -> bool:
    return line.startswith("/") and not line.startswith("//")


def message_text(line: str) -> str:
    """The text a line that is no command sends: `//x` sends `/x`, as in IRC."""
    return line[1:] if line.startswith("//") else line


def text_problem(text: str) -> str | None:
    """Why PROTOCOL.md refuses `text` as a message, or None. Its length comes first and
    in numbers: a long paste is the usual case, and the user needs to know how much to cut."""
    if len(text) > p.MAX_TEXT:
        return f"message is {len(text)} characters; the limit is {p.MAX_TEXT}"
    return None if p.valid_text(text) else MESSAGE_RULES


def numbered_lines(fd: int) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each line read from file descriptor `fd`; text None when
    the line is not UTF-8. A CRLF ends a line as LF does: the CR is no part of it.

    os.read, not sys.stdin: exiting while a daemon thread waits in a buffered read
    (holding the buffer's lock) would abort the interpreter; and a line that is not
    UTF-8 is found here, by its number, not later as an unsendable string.
    """
    pending = bytearray()
    number = 0
    while chunk := os.read(fd, 65536):
        start = len(pending)
        pending += chunk
        while (end := pending.find(b"\n", start)) >= 0:
            number += 1
            yield number, decoded(bytes(pending[:end]).removesuffix(b"\r"))
            del pending[:end + 1]
            start = 0
    if pending:
        yield number + 1, decoded(bytes(pending))


def decoded(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def message_validator() -> Validator:
    """For the prompt: a line that cannot be sent stays in the input, and the toolbar says
    why (a long paste is not lost to a rule the user could not see)."""
    from prompt_toolkit.validation import ValidationError, Validator

    class MessageValidator(Validator):
        def validate(self, document: Document) -> None:
            line = document.text
            if is_command(line) or not line.strip():
                return
            problem = text_problem(message_text(line))
            if problem is not None:
                raise ValidationError(cursor_position=document.cursor_position, message=problem)

    return MessageValidator()
