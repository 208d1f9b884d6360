"""What the operator's console asks of a running chat (admin.ChatServer), on the loop thread.

Each command is one call posted to the loop (`call`), where the chat's state lives; the
console's thread only waits for the answer. A mixin of `ChatServer` so that the loop's
class keeps to the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from netlab.logs import get_logger

if TYPE_CHECKING:
    from netlab.chat_core import Chat
    from netlab.store.accounts import Accounts

log = get_logger("chat")

#: How long the console waits for the disk when a command must be stored before it is done.
STORE_TIMEOUT = 10.0


class OperatorCalls:
    """The chat-only console commands; the class that mixes it in provides `call`, `chat`, `accounts`."""

    chat: Chat
    accounts: Accounts
    call: Callable[..., Any]

    def users(self) -> list[tuple[str, int, list[str]]]:
        return self.call(self.chat.users_table)

    def kick(self, name: str) -> int:
        return self.call(lambda: self.chat.kick(name))

    def say(self, text: str) -> int:
        return self.call(lambda: self.chat.notice(text))

    def rooms(self) -> list[tuple[str, str, str | None, int, int, int]]:
        return self.call(self.chat.rooms_table)

    def topic(self, room: str, text: str) -> str | None:
        stored: Future[Exception | None] = Future()
        try:
            self.call(lambda: self.chat.set_topic(room, text, stored.set_result))
        except ValueError as exc:
            return str(exc)
        failure = stored.result(timeout=STORE_TIMEOUT)
        return None if failure is None else f"the topic could not be stored: {failure}"

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
