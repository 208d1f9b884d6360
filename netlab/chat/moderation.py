"""The operator's bans and mutes: who may not log in or talk, until when, and the commands.

Sans-IO, as the rest of the core: a restriction is stored by a job (`SaveRestriction`, on a
worker, fsynced) and takes effect in that job's `done`, so the console says done only once
it is on disk. Its end is kept twice: as wall-clock UTC (`Restriction.until`, what the file
and the messages say, so it survives a restart) and as a deadline on the loop's monotonic
clock, which every check uses, so a clock step neither ends a ban early nor stretches it. A
restriction read at start-up is put on the monotonic clock at its first check (the loop's
clocks are known from then on). Expiry needs nobody: a check past the deadline forgets it.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netlab import wire as p
from netlab.chat.jobs import DELETED, Announce, SaveMembership, SaveRestriction
from netlab.chat.sessions import safe
from netlab.store.room_records import GENERAL, Restriction
from netlab.wire import rooms as w
from netlab.wire.messages import no_forbidden_controls

if TYPE_CHECKING:
    from netlab.chat.sessions import Session
    from netlab.chat_core import Chat
    from netlab.store.records import Account

log = logging.getLogger("netlab.chat")

BAN, MUTE = "ban", "mute"
#: CLI.md's DURATION: a whole number with s, m, h or d.
DURATION = re.compile(r"([0-9]{1,12})([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest DURATION: its end must be a time a timestamp can write (years up to 9999);
#: a hundred years is as good as for good, which is what leaving DURATION out says.
MAX_DURATION = 100 * 365 * 86400
#: Moderation actions `status` shows, the newest last (the log keeps them all).
RECENT_ACTIONS = 5

#: How a stored (or failed) action is reported: (the OSError that kept it off the disk, or
#: None; how many sessions it ended).
Stored = Callable[[Exception | None, int], None]


def parse_duration(text: str) -> int:
    """Seconds of a DURATION; ValueError, with the rule, for anything else."""
    match = DURATION.fullmatch(text)
    seconds = int(match[1]) * UNIT_SECONDS[match[2]] if match else 0
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"{text!r} is not a DURATION: a whole number above 0 with s, m, h or d "
                         f"(30m, 2h, 7d; at most {MAX_DURATION // 86400}d)")
    return seconds


def check_reason(reason: str) -> None:
    """ValueError unless a REASON follows a message text's rules but for its length being 0
    or more: so that the frame it goes in (`kicked`, `banned`) always fits max_frame."""
    if len(reason) > p.MAX_TEXT or not no_forbidden_controls(reason):
        raise ValueError(f"a REASON is at most {p.MAX_TEXT} characters, without control characters "
                         "other than TAB")


def until_text(until: str) -> str:
    """`until` as a person reads it."""
    if not until:
        return "until the operator lifts it"
    return f"until {until[:10]} {until[11:19]} UTC"


@dataclass(slots=True)
class _InForce:
    restriction: Restriction
    #: On the loop's monotonic clock; None for good; NaN until its first check (read at start-up).
    deadline: float | None


class Moderation:
    """Bans and mutes in force, by (kind, account id); and the operator's moderation commands."""

    def __init__(self, chat: Chat, restrictions: list[Restriction]) -> None:
        self._chat = chat
        self._in_force = {(r.kind, r.account): _InForce(r, math.nan if r.until else None)
                          for r in restrictions}
        self.recent: deque[str] = deque(maxlen=RECENT_ACTIONS)

    def of(self, kind: str, account_id: str) -> Restriction | None:
        """The account's ban or mute, if one is in force now."""
        entry = self._in_force.get((kind, account_id))
        if entry is None:
            return None
        now = self._chat.now
        if entry.deadline is not None:
            if math.isnan(entry.deadline):
                entry.deadline = now + entry.restriction.ends() - self._chat.wall
            if entry.deadline <= now:
                del self._in_force[kind, account_id]
                account = self._chat.accounts.by_id(account_id)
                log.info("%s of %s ended: its time was up", kind,
                         safe(account.username) if account else "a removed account")
                return None
        return entry.restriction

    def refusal(self, kind: str, account_id: str) -> str | None:
        """The `banned` or `muted` error's message for this account, if it is restricted."""
        found = self.of(kind, account_id)
        if found is None:
            return None
        said = "banned" if kind == BAN else "muted"
        return f"{said} {until_text(found.until)}" + (f": {found.reason}" if found.reason else "")

    def turned_away(self, session: Session, account: Account, op: str) -> bool:
        """A banned account's login, its password verified (so that to a guesser a ban looks
        like any wrong password): a fatal `banned`, and True."""
        message = self.refusal(BAN, account.id)
        if message is not None:
            log.info("%s of %s from %s refused: %s", op, safe(account.username), session.peer, safe(message))
            self._chat.end_sessions([session.sid], self._banned(message), "banned")
        return message is not None

    @staticmethod
    def _banned(message: str) -> dict:
        return p.error("banned", message, fatal=True)

    def listing(self, kind: str) -> list[tuple[str, str, str]]:
        """(name, until, reason) of each one in force, by name: the console's `bans`."""
        rows = []
        for entry_kind, account_id in list(self._in_force):
            account = self._chat.accounts.by_id(account_id)
            found = self.of(entry_kind, account_id) if entry_kind == kind else None
            if found is not None and account is not None:
                rows.append((account.username, until_text(found.until), found.reason))
        return sorted(rows, key=lambda row: row[0].lower())

    def status(self) -> dict[str, str]:
        """The console's `status` lines: bans and mutes in force, the last actions."""
        return {"moderation": f"{len(self.listing(BAN))} ban(s), {len(self.listing(MUTE))} mute(s) in force",
                "last actions": "; ".join(self.recent) or "none since the start"}

    # -- the operator's commands ------------------------------------------------------------

    def kick(self, name: str, reason: str | None = None, everywhere: bool = True) -> int:
        """End every session of `name` with `kicked` (the operator's reason in it); how many ended
        here, and (bus mode) one for each other node it was on, which is told to do the same
        (`everywhere` False: another node's kick, arriving). ValueError, nothing done: a reason
        `check_reason` refuses."""
        chat = self._chat
        check_reason(reason or "")
        frame = p.kicked(reason or "removed by the operator")
        elsewhere = len(chat.presence.nodes_of(name))
        account = chat.accounts.get(name) if p.valid_username(name) else None
        if everywhere and elsewhere and account is not None:
            chat.fx.submit(None, Announce("kick", reason or "", account.id), chat._announced)
        return chat.end_sessions(chat.presence.sessions_of(name), frame, "kicked") + elsewhere

    def restrict(self, kind: str, name: str, seconds: int | None, reason: str, stored: Stored) -> None:
        """`ban` or `mute`: ValueError (nothing changed) for a name no account has; stored,
        then in force, then (a ban) the account's sessions end with `banned`."""
        chat = self._chat
        account = self._account(name)
        check_reason(reason)
        until = p.timestamp(chat.wall + seconds) if seconds else ""
        restriction = Restriction(kind, account.id, until, reason)

        def done(result: object) -> None:
            if isinstance(result, Exception):
                return stored(result, 0)
            deadline = chat.now + seconds if seconds else None
            self._in_force[kind, account.id] = _InForce(restriction, deadline)
            self.note(kind, account.username, until_text(until), reason)
            ended = 0
            if kind == BAN:
                ended = chat.end_sessions(chat.presence.sessions_of(account.username),
                                          self._banned(self.refusal(BAN, account.id) or "banned"), "banned")
            stored(None, ended)

        chat.fx.submit(None, SaveRestriction(restriction, lifted=False), done)

    def lift(self, kind: str, name: str, stored: Stored) -> None:
        """`unban` or `unmute`: ValueError (nothing changed) unless the account has one in force."""
        account = self._account(name)
        found = self.of(kind, account.id)
        if found is None:
            raise ValueError(f"{account.username} is not {'banned' if kind == BAN else 'muted'}")

        def done(result: object) -> None:
            if isinstance(result, Exception):
                return stored(result, 0)
            self._in_force.pop((kind, account.id), None)
            self.note(f"un{kind}", account.username)
            stored(None, 0)

        self._chat.fx.submit(None, SaveRestriction(found, lifted=True), done)

    def replicated(self, restriction: Restriction, lifted: bool) -> None:
        """Another node's ban or mute, or its lifting (bus mode): in force here too, and a ban
        ends this node's sessions of the account as the operator's own would."""
        slot = (restriction.kind, restriction.account)
        if lifted:
            self._in_force.pop(slot, None)
            return
        self._in_force[slot] = _InForce(restriction, math.nan if restriction.until else None)
        account = self._chat.accounts.by_id(restriction.account)
        message = self.refusal(restriction.kind, restriction.account)
        if restriction.kind == BAN and account is not None and message is not None:
            self._chat.end_sessions(self._chat.presence.sessions_of(account.username), self._banned(message),
                                    "banned")

    def removed(self, account: Account) -> int:
        """After `remove` took the account out of clients.csv: its sessions end (`kicked`), its
        bans and mutes go (their rows are dropped at start-up), and it leaves its rooms as a
        `leave` would (stored, then `member` to the room). How many sessions ended."""
        chat = self._chat
        ended = chat.end_sessions_without_account()
        for kind in (BAN, MUTE):
            self._in_force.pop((kind, account.id), None)
        for room in sorted(chat.rooms.rooms_of(account.id)):
            chat.fx.submit(None, SaveMembership(room, account.id, False),
                           functools.partial(self._left, room, account))
        self.note("remove", account.username)
        return ended

    def _left(self, room: str, account: Account, result: object) -> None:
        if isinstance(result, Exception):
            log.error("%s's membership of %s could not be ended: %s", safe(account.username), room, result)
            return
        self._chat.rooms.set_member(room, account.id, False)
        self._chat.broadcast(p.encode_payload(w.member(room, account.username, "left")), room)

    def delete(self, room: str, seq: int, stored: Stored) -> None:
        """`delete ROOM SEQ`: ValueError (nothing changed) for no such room or message; the text
        erased from the file as a `delete` request's is (`Talk.erase`), then `deleted` sent."""
        chat = self._chat
        if room != GENERAL and room not in chat.rooms.records:
            raise ValueError(f"no such room: {room!r}")
        if not 1 <= seq <= chat.talk.last_seq(room):
            raise ValueError(f"#{room} has no message {seq}")

        def answer(result: object) -> None:
            if isinstance(result, Exception):
                return stored(result, 0)
            if result != DELETED:
                return stored(ValueError(f"message {seq} of #{room} is deleted already"), 0)
            self.note("delete", f"#{room}", f"message {seq}")
            stored(None, 0)

        chat.talk.erase(None, room, seq, None, None, answer)

    def _account(self, name: str) -> Account:
        account = self._chat.accounts.get(name) if p.valid_username(name) else None
        if account is None:
            raise ValueError(f"no account is named {name!r}")
        return account

    def note(self, action: str, subject: str, detail: str = "", reason: str = "") -> None:
        """Every moderation action is logged as the console's (a name, as `kick` logs it);
        `status` shows the last few."""
        self.recent.append(" ".join(filter(None, (action, subject, detail))))
        log.info("moderation by the console: %s %s%s%s", action, safe(subject),
                 f" {detail}" if detail else "", f", reason {safe(reason)}" if reason else "")
