"""Logging set-up shared by both servers.

Two handlers hang off the `netlab` logger: a size-bounded file that keeps
everything, and a console handler the operator can silence (`stop log`)
without the file missing a line. The console is written by a thread of its
own, so a stuck terminal or pipe never blocks a server. `clear log`
truncates the file in place so the open handle stays valid, and writes a
first line saying so at offset 0. SIGHUP reopens the file by its name, so
logrotate may rename it and `create` a new one.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import threading
from collections import deque
from pathlib import Path

LOGGER_NAME = "netlab"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: The file rotates at this size, keeping LOG_BACKUPS old files: a busy chat
#: cannot fill the disk with its log.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
#: Console lines waiting for a slow stderr before new ones are dropped.
CONSOLE_BACKLOG = 10_000
#: How long closing the console (at exit) waits for a stuck stderr: with the chat's
#: SHUTDOWN_GRACE (1.2 s) it must stay inside CLI.md's 2 s from signal to exit.
CONSOLE_FLUSH_TIMEOUT = 0.3


class TruncatableFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose file can be emptied, or reopened, while in use."""

    def reopen(self, first_line: str) -> None:
        """Open the file's path again (a new file if it was renamed) and write on there,
        `first_line` first. Every line before it went to the old file: the swap is under the
        handler's lock, between two records. If the path cannot be opened, the old file
        keeps getting the lines, and a warning says why."""
        with self.lock:  # type: ignore[union-attr]  # reentrant, as in truncate
            try:
                stream = self._open()
            except OSError as exc:
                failure = exc
            else:
                if self.stream is not None:
                    self.stream.close()
                self.stream = stream
                self.handle(_record(first_line))
                return
        logging.getLogger(LOGGER_NAME).warning("cannot reopen the log file %s: %s; still writing to "
                                               "the old one", self.baseFilename, failure.strerror or failure)

    def truncate(self, first_line: str) -> None:
        """Empty the file and write `first_line` as its first record: whoever reads a short
        log then knows earlier lines were removed, not never written, and when."""
        # The file is opened in append mode (O_APPEND), so after ftruncate the
        # next write goes to offset 0: no hole of zero bytes, same handle.
        with self.lock:  # type: ignore[union-attr]  # a reentrant lock: handle() takes it again
            if self.stream is None:
                self.stream = self._open()
            self.stream.flush()
            os.ftruncate(self.stream.fileno(), 0)
            # Under the lock: no other thread's line can come before it.
            self.handle(_record(first_line))


def _record(line: str) -> logging.LogRecord:
    """A line of the logging set-up's own, for the file alone (the console needs no word of it)."""
    return logging.makeLogRecord({"name": LOGGER_NAME, "msg": line, "levelno": logging.INFO,
                                  "levelname": "INFO"})


class ConsoleHandler(logging.Handler):
    """Log lines for the operator's console, written by a thread of their own.

    stderr may be a terminal paused with Ctrl-S or a pipe nobody reads, and a
    write there blocks. The chat loop and the echo threads only queue the
    line, so a stuck console never stops a server. Past CONSOLE_BACKLOG lines
    waiting, new ones are counted and dropped (the file keeps every line).

    Lines go to whatever `sys.stderr` is when they are written: on a terminal
    the console patches it so that log lines appear above the prompt (that
    patch queues lines of its own, without a bound, and never blocks).
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._hidden = 0  # lines not shown since the operator turned the console off
        self._lines: deque[str] = deque()
        self._dropped = 0
        self._busy = False  # the writer holds lines it has not finished writing
        self._closed = False
        self._changed = threading.Condition(threading.Lock())
        self._writer = threading.Thread(target=self._write_lines, name="log-console", daemon=True)
        self._writer.start()

    def hide(self) -> None:
        with self._changed:
            self._enabled = False

    def show(self) -> int:
        """Show lines again; how many were hidden since `hide` (0 if they were not hidden)."""
        with self._changed:
            hidden, self._hidden = self._hidden, 0
            self._enabled = True
        return hidden

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            if not self._enabled:
                self._hidden += 1
                return
        try:
            line = self.format(record)
        except Exception:  # a bad log call must not raise into the loop
            self.handleError(record)
            return
        with self._changed:
            if len(self._lines) >= CONSOLE_BACKLOG:
                self._dropped += 1
                return
            self._lines.append(line)
            self._changed.notify_all()

    def _write_lines(self) -> None:
        while True:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
                while not self._lines and not self._closed:
                    self._changed.wait()
                if not self._lines:
                    return
                lines = list(self._lines)
                self._lines.clear()
                dropped, self._dropped = self._dropped, 0
                self._busy = True
            if dropped:  # the drops came after every line of this batch
                lines.append(f"({dropped} log lines not shown: the console fell behind; "
                             "the log file has them)")
            with contextlib.suppress(Exception):  # no console left to tell; the file has the lines
                _write_console("\n".join(lines) + "\n")

    def flush(self, timeout: float = CONSOLE_FLUSH_TIMEOUT) -> None:
        """Wait until queued lines are written, but not forever (stderr may be stuck),
        and not at all once closed (logging flushes every handler again at exit)."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or not (self._lines or self._busy), timeout)

    def close(self) -> None:
        self.flush()
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        super().close()


def _write_console(text: str) -> None:
    """Write to the current stderr; the real one straight to its descriptor.

    Through `sys.stderr` a write that blocks would hold the stream's lock, and
    the interpreter's exit flushes that stream: a stuck console would then
    hang the exit. `os.write` holds no Python lock.
    """
    stream = sys.stderr
    if stream is None:
        return
    if stream is not sys.__stderr__:  # the prompt's patch: never blocks
        stream.write(text)
        stream.flush()
        return
    data = memoryview(text.encode(stream.encoding or "utf-8", "backslashreplace"))
    fd = stream.fileno()
    while data:
        data = data[os.write(fd, data):]


class LogControl:
    """What the console needs from logging: switch the console, empty the file."""

    def __init__(self, file_handler: TruncatableFileHandler, console: ConsoleHandler) -> None:
        self.file_handler = file_handler
        self.console = console

    @property
    def path(self) -> Path:
        return Path(self.file_handler.baseFilename)

    def stop_console(self) -> None:
        self.console.hide()

    def start_console(self) -> int:
        """Show log lines again; how many the console did not show meanwhile."""
        return self.console.show()

    def clear_file(self) -> None:
        self.file_handler.truncate("log cleared by the operator")

    def reopen_file(self, why: str) -> None:
        """Write on in a file at the log's path again (after logrotate renamed the old one)."""
        self.file_handler.reopen(f"log file reopened ({why})")

    def close(self) -> None:
        logger = logging.getLogger(LOGGER_NAME)
        for handler in (self.file_handler, self.console):
            logger.removeHandler(handler)
            handler.close()  # flushes first


def setup_logging(log_file: Path) -> LogControl:
    """Attach a fresh file and console handler to the `netlab` logger."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT)
    file_handler = TruncatableFileHandler(
        log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    console = ConsoleHandler()
    for handler in (file_handler, console):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return LogControl(file_handler, console)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
