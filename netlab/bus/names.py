"""How the bus names a conversation without showing who talks to whom.

A room is named by its name (`r:NAME`): rooms.csv shows it too. A conversation would be
named by its two account ids, and Redis, its AOF and its replicas would then show every pair
that talks and how much; direct.dat shows neither. So in the bus a conversation is `Hidden`:
named by an HMAC of its pair under the key (`d:TOKEN`), and wherever a node needs the pair
back it is sealed beside it (inside each message's sealed record, in the marker and deletion
events, in `netlab:convs` for a starting node). Only nodes holding the key can tell a token's
pair, or link two tokens of one account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from netlab.crypto import Vault
from netlab.store.room_records import Conversation, Key

_PAIR_CONTEXT = "bus pair"


@dataclass(frozen=True, slots=True)
class Hidden:
    """A conversation as the bus names it: its token, without its pair."""

    token: str


#: What the bus's modules name a stream by: a room's name, or a hidden conversation.
BusKey = str | Hidden


class Names:
    """This key's names for conversations, and the pairs behind them (any thread)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def hide(self, key: Key) -> BusKey:
        """The bus's name of a room or a conversation."""
        if not isinstance(key, tuple):
            return key
        return Hidden(self.vault.conversation_token(f"{key[0]}:{key[1]}"))

    def say_member(self, account_id: str, say_id: str) -> tuple[str, str]:
        """A conversation's say as its key's id set keeps it: a token of (account, say id),
        the same on every node. `ACCOUNTID:SAYID` there would show, beside the conversation's
        token, each account that wrote in it: the pair. ("d" is no account id, so `export`
        leaves the member out; the say id is in the sealed record.)"""
        return "d", self.vault.conversation_token(f"say:{account_id}:{say_id}")

    def seal(self, conv: Conversation) -> str:
        return self.vault.encrypt(json.dumps(list(conv)), _PAIR_CONTEXT)

    def open(self, sealed: str | bytes, token: Hidden | None = None) -> Conversation | None:
        """The pair sealed in `sealed`; None if it does not open with this key (or is not the
        pair of `token`)."""
        try:
            a, b = json.loads(self.vault.decrypt(sealed if isinstance(sealed, str) else sealed.decode(),
                                                  _PAIR_CONTEXT))
        except (InvalidTag, ValueError, TypeError, UnicodeDecodeError):
            return None
        conv = (str(a), str(b))
        return conv if token is None or self.hide(conv) == token else None
