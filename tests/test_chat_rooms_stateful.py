"""Rooms and direct messages under random sequences of requests, against a small model.

A hypothesis state machine logs sessions of three accounts in (version 2, and version 1
beside them), creates public and private rooms, joins, leaves, invites, says in rooms and
to accounts (with ids, sent again), reads, deletes and pages history. After every step each
session must have read exactly the frames the model expects, in order: the answer first,
then the events it causes; nothing about a room to a non-member or a version 1 session.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from chat_fakes import CHEAP, PASSWORD, MemoryAccounts, Recorder
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from netlab.chat_core import Chat, ChatConfig
from netlab.store.history import History

NAMES = ["Ann", "Bob", "Cy"]
ROOMS = ["general", "dev", "ops", "nowhere"]
PICK = st.integers(0, 5)


class RoomsMachine(RuleBasedStateMachine):
    """One `Chat` with every job done at once, and the model: rooms, members, messages per key."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="netlab-rooms-"))
        self.sessions: dict[int, tuple[str, int]] = {}  # sid -> (name, version)
        self.rooms: dict[str, dict] = {}  # name -> {private, owner, members, topic}
        self.messages: dict[Any, list[dict]] = {"general": []}  # key -> frames as stored, by seq
        self.deleted: set[tuple[Any, int]] = set()
        self.ids: dict[tuple[Any, str, str], int] = {}  # (key, account, id) -> seq
        self.markers: dict[tuple[Any, str], int] = {}
        self.expected: dict[int, list[dict]] = {}
        self.read: dict[int, int] = {}
        self.next_sid = 0

    @initialize()
    def start(self) -> None:
        self.accounts = MemoryAccounts()
        for name in NAMES:
            self.accounts.add(name, CHEAP.hash(PASSWORD), "127.0.0.1")
        self.fx = Recorder(History.open(self.dir / "history.csv"), self.accounts)
        config = ChatConfig(rate_limit=0, room_rate=0, max_frame=1 << 20)
        self.chat = Chat(config, self.accounts, self.fx, self.fx)
        self.chat.advance(1000.0, 1_800_000_000.0)

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model's helpers ---------------------------------------------------------------

    def expect(self, sid: int, frame: dict) -> None:
        self.expected.setdefault(sid, []).append(frame)

    def check(self) -> None:
        for sid in self.sessions:
            got = self.fx.received.get(sid, [])[self.read.get(sid, 0):]
            got = [{k: v for k, v in f.items() if k not in ("message", "ts")} for f in got]
            assert got == self.expected.get(sid, []), f"session {sid} {self.sessions[sid]}"
            self.read[sid] = len(self.fx.received.get(sid, []))
        self.expected = {}

    def pick(self, index: int) -> tuple[int, str, int] | None:
        if not self.sessions:
            return None
        sid = sorted(self.sessions)[index % len(self.sessions)]
        return sid, *self.sessions[sid]

    def sids(self, name: str, min_version: int = 2) -> list[int]:
        return sorted(sid for sid, (n, v) in self.sessions.items() if n == name and v >= min_version)

    def member(self, room: str, name: str) -> bool:
        return room == "general" or (room in self.rooms and name in self.rooms[room]["members"])

    def access(self, room: str, name: str) -> str | None:
        if self.member(room, name):
            return None
        known = self.rooms.get(room)
        return "not_member" if known is not None and not known["private"] else "no_such_room"

    def members(self, room: str) -> list[str]:
        return NAMES if room == "general" else sorted(self.rooms[room]["members"])

    def joined(self, room: str, name: str) -> dict:
        info = self.rooms.get(room, {"private": False, "owner": None, "members": NAMES, "topic": ""})
        last = len(self.messages.get(room, []))
        return {"type": "joined", "room": room, "topic": info["topic"], "private": info["private"],
                "owner": info["owner"], "members": len(info["members"]), "last_seq": last,
                "read_seq": self.markers.get((room, name), 0)}

    def send(self, sid: int, frame: dict) -> None:
        self.chat.receive(sid, frame)

    # -- rules -----------------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), version=st.sampled_from([1, 2, 2, 2]))
    def login(self, name: str, version: int) -> None:
        if len(self.sessions) >= 6:
            return
        self.next_sid += 1
        sid = self.next_sid
        self.chat.connect(sid, f"127.0.0.1:{sid}", "127.0.0.1", 0.0)
        first = not any(n == name for n, _ in self.sessions.values())
        others = list(self.sessions)
        self.sessions[sid] = (name, version)
        self.read[sid] = 1  # the welcome
        self.send(sid, {"type": "login", "username": name, "password": PASSWORD, "protocol": version})
        got = self.fx.received[sid][1:]
        assert got[0] == {"type": "ok", "op": "login", "username": name, "protocol": version}
        assert [f["type"] for f in got] == ["ok", "history", "users"] + (["rooms"] if version == 2 else [])
        if version == 2:
            listed = [(r["room"], r["last_seq"]) for r in got[3]["rooms"]]
            mine = sorted(r for r in [*self.rooms, "general"] if self.member(r, name))
            assert listed == [(r, len(self.messages.get(r, []))) for r in mine]
        self.read[sid] = len(self.fx.received[sid])
        if first:
            for other in others:
                self.expect(other, {"type": "join", "username": name})
        self.check()

    @rule(index=PICK, room=st.sampled_from(ROOMS[1:]), private=st.booleans())
    def create(self, index: int, room: str, private: bool) -> None:
        chosen = self.pick(index)
        if chosen is None or chosen[2] < 2:
            return
        sid, name, _ = chosen
        self.send(sid, {"type": "create", "room": room, "private": private})
        if room in self.rooms:
            self.expect(sid, {"type": "error", "code": "room_exists"})
        else:
            self.rooms[room] = {"private": private, "owner": name, "members": {name}, "topic": ""}
            for own in self.sids(name):
                self.expect(own, self.joined(room, name))
        self.check()

    @rule(index=PICK, room=st.sampled_from(ROOMS))
    def join(self, index: int, room: str) -> None:
        chosen = self.pick(index)
        if chosen is None or chosen[2] < 2:
            return
        sid, name, _ = chosen
        self.send(sid, {"type": "join", "room": room})
        code = self.access(room, name)
        if code == "no_such_room":
            self.expect(sid, {"type": "error", "code": code})
        elif code is None:
            self.expect(sid, self.joined(room, name))
        else:
            self.add_member(room, name, sid)
        self.check()

    def add_member(self, room: str, name: str, answered: int | None) -> None:
        """`name` joins: its sessions get `joined`, the other members' `member` (after the answer)."""
        if answered is not None and answered not in self.sids(name):
            self.expect(answered, {"type": "ok", "op": "invite", "username": self.sessions[answered][0],
                                   "protocol": 2})
        self.rooms[room]["members"].add(name)
        for own in self.sids(name):
            self.expect(own, self.joined(room, name))
        for other in self.members(room):
            if other != name:
                for sid in self.sids(other):
                    self.expect(sid, {"type": "member", "room": room, "username": name, "change": "joined"})

    @rule(index=PICK, room=st.sampled_from(ROOMS), invitee=st.sampled_from([*NAMES, "Nobody"]))
    def invite(self, index: int, room: str, invitee: str) -> None:
        chosen = self.pick(index)
        if chosen is None or chosen[2] < 2:
            return
        sid, name, _ = chosen
        self.send(sid, {"type": "invite", "room": room, "username": invitee.lower()})
        code = self.access(room, name) or ("no_such_user" if invitee not in NAMES else None)
        if code is not None:
            self.expect(sid, {"type": "error", "code": code})
        elif self.member(room, invitee):
            self.expect(sid, {"type": "ok", "op": "invite", "username": name, "protocol": 2})
        else:
            self.add_member(room, invitee, sid)
        self.check()

    @rule(index=PICK, room=st.sampled_from(ROOMS))
    def leave(self, index: int, room: str) -> None:
        chosen = self.pick(index)
        if chosen is None or chosen[2] < 2:
            return
        sid, name, _ = chosen
        self.send(sid, {"type": "leave", "room": room})
        code = "forbidden" if room == "general" else self.access(room, name)
        if code is not None:
            self.expect(sid, {"type": "error", "code": code})
        else:
            self.rooms[room]["members"].discard(name)
            for own in self.sids(name):
                self.expect(own, {"type": "left", "room": room})
            for other in self.members(room):
                for other_sid in self.sids(other):
                    self.expect(other_sid, {"type": "member", "room": room, "username": name,
                                            "change": "left"})
        self.check()

    @rule(index=PICK, room=st.sampled_from(ROOMS), to=st.sampled_from([None, None, *NAMES, "Nobody"]),
          rid=st.sampled_from([None, "a", "b"]))
    def say(self, index: int, room: str, to: str | None, rid: str | None) -> None:
        chosen = self.pick(index)
        if chosen is None:
            return
        sid, name, version = chosen
        frame = {"type": "say", "text": f"t{len(self.fx.received)}", **({"id": rid} if rid else {})}
        frame |= {"to": to} if to is not None else {"room": room}
        self.send(sid, frame)
        if version == 1:
            if to is not None or room != "general":
                return self.refused(sid, "bad_request", rid)
            return self.stored(sid, name, "general", frame, None, self.sessions)
        if to is not None:
            if to not in NAMES:
                return self.refused(sid, "no_such_user", rid)
            key = tuple(sorted((name, to)))
            return self.stored(sid, name, key, frame, to, set(self.sids(name)) | set(self.sids(to)))
        code = self.access(room, name)
        if code is not None:
            return self.refused(sid, code, rid)
        members = NAMES if room == "general" else self.members(room)
        readers = self.sessions if room == "general" else [s for m in members for s in self.sids(m)]
        self.stored(sid, name, room, frame, None, readers)

    def refused(self, sid: int, code: str, rid: str | None) -> None:
        self.expect(sid, {"type": "error", "code": code, **({"id": rid} if rid else {})})
        self.check()

    def stored(self, sid: int, name: str, key: Any, frame: dict, to: str | None, readers) -> None:
        """A message stored (or, with an id used before in version 2, its first one sent again)."""
        log = self.messages.setdefault(key, [])
        version, rid = self.sessions[sid][1], frame.get("id")
        first = self.ids.get((key, name, rid)) if version == 2 and rid else None
        if first is not None:
            if (key, first) in self.deleted:
                self.expect(sid, {"type": "deleted", "seq": first, **self.place(key, name)})
            else:
                self.expect(sid, {**log[first - 1], **({"to": to} if to else {})})
            return self.check()
        where = {"to": to} if to else {"room": key}
        message = {"type": "message", "seq": len(log) + 1, "from": name, "text": frame["text"],
                   **({"id": rid} if rid else {}), **where}
        log.append({k: v for k, v in message.items() if k != "to"})
        if version == 2 and rid:
            self.ids[key, name, rid] = message["seq"]
        for reader in sorted(readers):
            self.expect(reader, message)
        self.check()

    def place(self, key: Any, name: str) -> dict:
        if isinstance(key, tuple):
            return {"with": key[1] if key[0] == name else key[0]}
        return {"room": key}

    def send_seq(self, index: int, kind: str, room: str, with_: str | None, seq: int) -> tuple | None:
        """A `read` or `delete` from a version 2 session: (sid, name, key, the model's access code)."""
        chosen = self.pick(index)
        if chosen is None or chosen[2] < 2:
            return None
        sid, name, _ = chosen
        self.send(sid, {"type": kind, "seq": seq, **({"with": with_} if with_ else {"room": room})})
        key = tuple(sorted((name, with_))) if with_ else room
        return sid, name, key, None if with_ else self.access(room, name)

    @rule(index=PICK, room=st.sampled_from(ROOMS), with_=st.sampled_from([None, *NAMES]),
          seq=st.integers(0, 4))
    def read_marker(self, index: int, room: str, with_: str | None, seq: int) -> None:
        sent = self.send_seq(index, "read", room, with_, seq)
        if sent is None:
            return
        sid, name, key, code = sent
        if code is None and seq > len(self.messages.get(key, [])):
            code = "bad_request"
        if code is not None:
            return self.refused(sid, code, None)
        if seq > self.markers.get((key, name), 0):
            self.markers[key, name] = seq
            for own in self.sids(name):
                if own != sid:
                    self.expect(own, {"type": "read", "seq": seq, **self.place(key, name)})
        self.check()

    @rule(index=PICK, room=st.sampled_from(ROOMS), with_=st.sampled_from([None, *NAMES]),
          seq=st.integers(1, 4))
    def delete(self, index: int, room: str, with_: str | None, seq: int) -> None:
        sent = self.send_seq(index, "delete", room, with_, seq)
        if sent is None:
            return
        sid, name, key, code = sent
        log = self.messages.get(key, [])
        if code is None and (seq > len(log) or (key, seq) in self.deleted):
            code = "bad_request"
        elif code is None and log[seq - 1]["from"] != name:
            code = "forbidden"
        if code is not None:
            return self.refused(sid, code, None)
        self.deleted.add((key, seq))
        if isinstance(key, tuple):
            seers = {p: self.sids(p) for p in key}
        else:
            seers = {m: self.sids(m) for m in (NAMES if key == "general" else self.members(key))}
        for seer, sids in seers.items():
            for own in sorted(sids):
                self.expect(own, {"type": "deleted", "seq": seq, **self.place(key, seer)})
        self.check()

    @rule(index=PICK, room=st.sampled_from(ROOMS), with_=st.sampled_from([None, *NAMES]))
    def history(self, index: int, room: str, with_: str | None) -> None:
        chosen = self.pick(index)
        if chosen is None:
            return
        sid, name, version = chosen
        self.send(sid, {"type": "history", "after": 0, **({"with": with_} if with_ else {"room": room})})
        if version == 1:
            key, place, code = "general", {}, None
        else:
            key = tuple(sorted((name, with_))) if with_ else room
            place = {"with": with_} if with_ else {"room": room}
            code = None if with_ else self.access(room, name)
        if code is not None:
            return self.refused(sid, code, None)
        kept = [{k: m[k] for k in ("seq", "from", "text")} for m in self.messages.get(key, [])
                if (key, m["seq"]) not in self.deleted]
        got = self.fx.received[sid][-1]
        assert got == {"type": "history", **place, "messages": [
            {**m, "ts": got["messages"][n]["ts"]} for n, m in enumerate(kept)], "more": False}
        self.read[sid] = len(self.fx.received[sid])
        self.check()

    @rule(index=PICK)
    def drop(self, index: int) -> None:
        chosen = self.pick(index)
        if chosen is None:
            return
        sid, name, _ = chosen
        self.chat.disconnect(sid, "closed by peer")
        del self.sessions[sid]
        if not any(n == name for n, _ in self.sessions.values()):
            for other in self.sessions:
                self.expect(other, {"type": "leave", "username": name})
        self.fx.close(sid)
        self.check()


def test_rooms_and_direct_messages_against_their_model():
    run_state_machine_as_test(RoomsMachine, settings=settings(
        max_examples=400, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
