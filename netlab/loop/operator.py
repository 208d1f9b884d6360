"""What the operator's console asks of a running chat (admin.ChatServer), on the loop thread.

Each command is one call posted to the loop (`call`), where the chat's state lives; the
console's thread only waits for the answer. A mixin of `ChatServer` so that the loop's
class keeps to the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netlab.logs import get_logger
from netlab.wire import valid_username

if TYPE_CHECKING:
    from netlab.chat.moderation import Stored
    from netlab.chat_core import Chat
    from netlab.loop.connections import Connections
    from netlab.store.accounts import Accounts
    from netlab.store.opening import Store

log = get_logger("chat")

#: How long the console waits for the disk when a command must be stored before it is done.
STORE_TIMEOUT = 10.0


class OperatorCalls:
    """The chat-only console commands, and `status`'s figures; the class that mixes it in
    provides `call`, `chat`, `accounts`, `store`, `cx`, `address`, `bytes_in` and `_started`."""

    chat: Chat
    accounts: Accounts
    store: Store
    cx: Connections
    address: str
    bytes_in: int
    _started: float
    call: Callable[..., Any]

    @property
    def data_dir(self) -> Path:
        """Where the console keeps its history (console_history) beside the chat's files."""
        return self.store.data_dir

    def _status(self) -> dict[str, str]:
        """`status`: the server's figures (the same numbers as /metrics'), on the loop."""
        return {
            "server": f"chat on {self.address}",
            "uptime": f"{time.monotonic() - self._started:.0f} s",
            "connections": f"{len(self.cx.conns)} open, {sum(self.cx.opened.values())} total "
                           f"(max {self.chat.config.max_clients})",
            **self.chat.status(),
            "bytes": f"{self.bytes_in} in, {self.cx.outbox.bytes_out} out",
            "broadcast log": f"{self.cx.outbox.buffered} bytes buffered",
        }

    def users(self) -> list[tuple[str, int, list[str]]]:
        return self.call(lambda: self.chat.users_table(lambda sid: self.cx.conns[sid].address))

    def kick(self, name: str, reason: str | None = None) -> int:
        return self.call(lambda: self.chat.kick(name, reason))

    def say(self, text: str) -> int:
        return self.call(lambda: self.chat.notice(text))

    def rooms(self) -> list[tuple[str, str, str | None, int, int, int]]:
        return self.call(self.chat.rooms_table)

    def topic(self, room: str, text: str) -> str | None:
        try:
            self._stored(lambda stored: self.chat.set_topic(room, text, lambda failure: stored(failure, 0)))
        except ValueError as exc:
            return str(exc)
        except OSError as exc:
            return f"the topic could not be stored: {exc}"
        return None

    def restrict(self, kind: str, name: str, seconds: int | None, reason: str = "") -> int:
        moderation = self.chat.moderation
        return self._stored(lambda stored: moderation.restrict(kind, name, seconds, reason, stored))

    def lift(self, kind: str, name: str) -> None:
        self._stored(lambda stored: self.chat.moderation.lift(kind, name, stored))

    def restrictions(self, kind: str) -> list[tuple[str, str, str]]:
        return self.call(lambda: self.chat.moderation.listing(kind))

    def delete(self, room: str, seq: int) -> None:
        self._stored(lambda stored: self.chat.moderation.delete(room, seq, stored))

    def remove(self, name: str) -> int:
        # clients.csv is rewritten in the caller's thread, as `clear file` does; the loop only
        # reads Accounts, and hears of it afterwards.
        account = self.accounts.get(name) if valid_username(name) else None
        if account is None:
            raise ValueError(f"no account is named {name!r}")
        self.accounts.remove(account)
        return self.call(lambda: self.chat.moderation.removed(account))

    def _stored(self, start: Callable[[Stored], None]) -> int:
        """Start a change on the loop and wait until it is on disk; how many sessions it ended.
        ValueError (from the loop, at once): refused, nothing changed; OSError: not stored."""
        done: Future[tuple[Exception | None, int]] = Future()
        self.call(lambda: start(lambda failure, ended: done.set_result((failure, ended))))
        failure, ended = done.result(timeout=STORE_TIMEOUT)
        if failure is not None:
            raise failure
        return ended

    def clear_accounts(self) -> tuple[int, int]:
        # File work in the caller's thread; Accounts is thread-safe and the
        # loop only reads it.
        removed = self.accounts.clear()
        if not removed:
            return 0, 0
        ended = self.call(self.chat.end_sessions_without_account)
        log.info("clients.csv cleared by the operator: %d account(s) removed, %d session(s) ended",
                 removed, ended)
        return removed, ended
