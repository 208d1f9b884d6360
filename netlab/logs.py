"""Logging set-up shared by both servers.

Two handlers hang off the `netlab` logger: a size-bounded file that keeps
everything, and a console handler the operator can silence (`stop log`)
without the file missing a line. `clear log` truncates the file in place so
the open handle stays valid and the next line lands at offset 0.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOGGER_NAME = "netlab"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: The file rotates at this size, keeping LOG_BACKUPS old files: a busy chat
#: cannot fill the disk with its log.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3


def safe(text: str) -> str:
    """Quote a user-supplied string for a log line.

    `repr` escapes newlines and every other non-printable character, so a
    username or message can never forge a line of its own in the log.
    """
    return repr(text)


class TruncatableFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose file can be emptied while in use."""

    def truncate(self) -> None:
        # The file is opened in append mode (O_APPEND), so after ftruncate the
        # next write goes to offset 0: no hole of zero bytes, same handle.
        with self.lock:  # type: ignore[union-attr]
            if self.stream is None:
                self.stream = self._open()
            self.stream.flush()
            os.ftruncate(self.stream.fileno(), 0)


class ConsoleHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time of each record.

    On a terminal the console patches `sys.stderr` so log lines appear above
    the prompt; a handler bound to the original stream would break the line
    being typed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True

    def emit(self, record: logging.LogRecord) -> None:
        if not self.enabled:
            return
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class LogControl:
    """What the console needs from logging: switch the console, empty the file."""

    def __init__(self, file_handler: TruncatableFileHandler, console: ConsoleHandler) -> None:
        self.file_handler = file_handler
        self.console = console

    @property
    def path(self) -> Path:
        return Path(self.file_handler.baseFilename)

    def stop_console(self) -> None:
        self.console.enabled = False

    def start_console(self) -> None:
        self.console.enabled = True

    def clear_file(self) -> None:
        self.file_handler.truncate()

    def close(self) -> None:
        logger = logging.getLogger(LOGGER_NAME)
        for handler in (self.file_handler, self.console):
            handler.flush()
            logger.removeHandler(handler)
            handler.close()


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
