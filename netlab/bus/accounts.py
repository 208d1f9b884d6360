"""The accounts in bus mode: clients.csv's rows in Redis, a cache of them in every node.

Every node holds every account in memory, as `store.accounts.Accounts` does from clients.csv:
read at start (netlab/bus/state.py, `load`) and kept current by the `account`, `password`
and `removed` events of the fan-out stream (`learn`, `forget`), so a login on any node finds
an account registered on another without a round trip to Redis. A registration is a
conditional write on the blind index (`BusState.add_account`): two nodes registering one
name at once get one account and one `username_taken`. Same interface as `Accounts` for the
loop thread (reads) and the worker threads (writes).
"""

from __future__ import annotations

import json
import threading
import time

from cryptography.exceptions import InvalidTag

from netlab.bus.state import ACCOUNTS, BusState
from netlab.crypto import Vault
from netlab.store.accounts import UsernameTaken
from netlab.store.records import Account
from netlab.wire import timestamp


class BusAccounts:
    """Every account of the bus, by name and by id; written through to Redis."""

    def __init__(self, state: BusState, vault: Vault, rows: list[list[str]]) -> None:
        self._state = state
        self._vault = vault
        self._lock = threading.Lock()
        self._by_name: dict[str, Account] = {}
        self._by_id: dict[str, Account] = {}
        self._rows: dict[str, list[str]] = {}  # account id -> its row (a password's rewrite)
        for row in rows:
            self.learn(row)

    @property
    def vault(self) -> Vault:
        return self._vault

    def get(self, username: str) -> Account | None:
        return self._by_name.get(username.casefold())

    def by_id(self, account_id: str) -> Account | None:
        return self._by_id.get(account_id)

    def __len__(self) -> int:
        return len(self._by_name)

    def learn(self, row: list[str]) -> Account | None:
        """An account's row (loaded, or an event's): kept, or its password hash updated. A row
        that does not open with this node's key is skipped (the key check makes that damage)."""
        index, login, password_hash, _ip, created = row
        try:
            username = self._vault.decrypt(login, "login")
        except (InvalidTag, ValueError):
            return None
        account_id = self._vault.account_id(index, created)
        with self._lock:
            known = self._by_id.get(account_id)
            self._rows[account_id] = row
            if known is not None:
                known.password_hash = password_hash
                return known
            account = Account(username, password_hash, account_id)
            # Replaced, not changed: the loop reads them without the lock.
            self._by_name = {**self._by_name, username.casefold(): account}
            self._by_id = {**self._by_id, account_id: account}
        return account

    def forget(self, account_id: str) -> Account | None:
        """An account removed (here or on another node)."""
        with self._lock:
            account = self._by_id.get(account_id)
            if account is None:
                return None
            self._by_name = {k: v for k, v in self._by_name.items() if v.id != account_id}
            self._by_id = {k: v for k, v in self._by_id.items() if k != account_id}
            self._rows.pop(account_id, None)
        return account

    def find(self, username: str) -> Account | None:
        """An account by name, from the bus itself if this node has not heard of it yet (worker
        thread: one read by blind index)."""
        known = self.get(username)
        if known is not None:
            return known
        row = self._state.client.hget(ACCOUNTS, self._vault.blind_index(username))
        return self.learn(json.loads(row)) if row is not None else None

    # -- writes (worker threads) -------------------------------------------------------------

    def add(self, username: str, password_hash: str, ip: str) -> Account:
        """Store a registration in the bus; UsernameTaken if the name exists there."""
        row = [self._vault.blind_index(username), self._vault.encrypt(username, "login"), password_hash,
               self._vault.encrypt(ip, "ip"), timestamp(time.time())]
        if username.casefold() in self._by_name or not self._state.add_account(row):
            raise UsernameTaken(username)
        account = self.learn(row)
        assert account is not None
        return account

    def set_password(self, account: Account, password_hash: str) -> None:
        """KeyError if the account is no longer in the bus."""
        row = self._rows.get(account.id)
        if row is None:
            raise KeyError(account.username)
        changed = [*row[:2], password_hash, *row[3:]]
        if not self._state.set_password(changed):
            raise KeyError(account.username)
        self.learn(changed)

    def remove(self, account: Account) -> None:
        """The console's `remove`: out of the bus, then out of every node (the event)."""
        row = self._rows.get(account.id)
        if row is None:
            raise KeyError(account.username)
        self._state.remove_accounts([(row[0], account.id)])
        self.forget(account.id)

    def clear(self) -> int:
        """The console's `clear file`: every account removed in one step, with one event each
        (every node forgets each of them)."""
        rows = dict(self._rows)
        self._state.remove_accounts([(row[0], account_id) for account_id, row in rows.items()])
        for account_id in rows:
            self.forget(account_id)
        return len(rows)
