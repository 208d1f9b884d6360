"""What the console's prompt offers besides line editing: Tab completion of online names
after the commands that take one, and a command history kept in the data directory.

prompt_toolkit is imported by the callers' `run_terminal` only when a terminal is there;
this module is imported with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, NestedCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import History

#: The commands whose NAME is completed from the users online (CLI.md: kick, ban, mute).
NAME_COMMANDS = frozenset({"kick", "ban", "mute"})
#: The console's history file, in the data directory.
HISTORY_FILE = "console_history"
#: Commands kept in it: plenty to recall a session's, and a file that never grows past a
#: few hundred KiB (it is trimmed to these at start when twice as long).
HISTORY_LINES = 1000


class ConsoleCompleter(Completer):
    """Command words as the command table nests them; after kick, ban and mute, the names
    of the users online (asked of the server at each Tab), matched case-insensitively."""

    def __init__(self, tree: dict, online: Callable[[], Iterable[str]]) -> None:
        self._commands = NestedCompleter.from_nested_dict(tree)
        self._online = online

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor.lstrip()
        command, space, typed = text.partition(" ")
        if command not in NAME_COMMANDS or not space or " " in typed:
            yield from self._commands.get_completions(document, complete_event)
            return
        for name in self._online():
            if name.lower().startswith(typed.lower()):
                yield Completion(name, start_position=-len(typed))


class ConsoleHistory(History):
    """One command a line in a file of the data directory (mode 0600), so the console's
    history survives a restart. It holds what was typed at the prompt: no password is ever
    typed there (accounts are the clients' business), and confirmations are plain answers."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)  # one made before, under another umask, is narrowed too
        os.close(fd)
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if len(lines) > 2 * HISTORY_LINES:
            lines = lines[-HISTORY_LINES:]
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(fd, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
            os.replace(tmp, path)
        self._lines = lines[-HISTORY_LINES:]

    def load_history_strings(self) -> Iterable[str]:
        return reversed(self._lines)  # newest first, as prompt_toolkit wants them

    def store_string(self, string: str) -> None:
        if "\n" in string or "\r" in string or not string.strip():
            return  # a line of the file is one command
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(string + "\n")
