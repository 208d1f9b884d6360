"""How the chat client's front ends write what the session shows.

A server (or a name, a reason) is not trusted with the terminal: PROTOCOL.md
allows CR and LF in a text, and a CR printed raw returns the cursor, so the rest
of a message could overwrite its start and pass for a line of someone else's;
other control characters could be escape sequences that rewrite the screen.
"""

from __future__ import annotations

import re
from datetime import datetime

from netlab.client.effects import Show

#: Control characters but TAB and line breaks. PROTOCOL.md keeps C0 out of a text, but a
#: server that is not netlab could send any. They are shown as \xNN.
CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
LINE_BREAK = re.compile("\r\n|\r|\n")
CONTINUATION = "\n    "


def escape_controls(text: str) -> str:
    return CONTROLS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def for_terminal(text: str) -> str:
    """Text safe to print on a terminal: every line break (CR, LF, CRLF) starts a new
    line, indented, so no message can pass for several."""
    return CONTINUATION.join(escape_controls(line) for line in LINE_BREAK.split(text))


def one_line(text: str) -> str:
    """One line of a pipe per event, whatever the text: readers split at CR too."""
    return escape_controls(text.replace("\n", "\\n").replace("\r", "\\r"))


def local_time(ts: str | None = None) -> str:
    """HH:MM:SS in local time, of an RFC 3339 stamp or of now."""
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone() if ts else datetime.now()
    return moment.strftime("%H:%M:%S")


def text_of(event: Show) -> str:
    """The event's text; a chat line with the time it was said, in this machine's zone."""
    if event.kind in ("message", "history"):
        return f"[{local_time(event.frame.get('ts'))}] {event.text}"
    return event.text
