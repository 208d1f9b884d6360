"""The chat's files opened together at start-up, in the order that touches nothing on failure."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from netlab.files import StartupError
from netlab.store.accounts import Accounts
from netlab.store.csv_journal import CsvJournal
from netlab.store.direct import DirectFile
from netlab.store.history import FileEnd, History
from netlab.store.moderation_file import ModerationFile, in_force, read_moderation_rows
from netlab.store.records import HISTORY_FILE
from netlab.store.room_files import ROOM_NAME, ROOMS_DIR, RoomFiles, read_room_rows, room_file, snapshot_of
from netlab.store.room_records import Key, RoomsSnapshot
from netlab.store.say_id_file import live_say_ids, open_say_ids, read_say_id_rows


@dataclass
class Store:
    """Every data file open: what the loop's journals and jobs work on."""

    data_dir: Path
    accounts: Accounts
    history: History  # general's, history.csv
    closed_rooms: dict[str, FileEnd]  # each room's file not open yet, as read at start-up
    rooms: RoomFiles
    direct: DirectFile
    snapshot: RoomsSnapshot
    say_ids: CsvJournal  # say_ids.csv: rooms' say ids, appended with their messages
    moderation: ModerationFile  # moderation.csv: the operator's bans and mutes
    room_window: int  # ChatConfig.room_window: records of one room's file in memory
    room_histories: dict[str, History] = field(default_factory=dict)  # the rooms' files in use

    def room(self, name: str) -> History:
        """A room's message file, opened on first use and open from then on (one descriptor).
        A file read at start-up is opened without reading (the loop's first message to the
        room may be the one opening it); a room made since is created by a worker (SaveRoom)."""
        found = self.room_histories.get(name)
        if found is None:
            path = room_file(self.data_dir, name)
            known = self.closed_rooms.pop(name, None)
            if known is not None:
                found = History.reopen(path, known, window=self.room_window)
            else:
                found = History.open(path, window=self.room_window, preload=1)
            self.room_histories[name] = found
        return found

    def last_seq(self, key: Key) -> int:
        if isinstance(key, tuple):
            return self.direct.last_seq(key)
        if key == "general":
            return self.history.last_seq
        found = self.room_histories.get(key)
        if found is not None:
            return found.last_seq
        known = self.closed_rooms.get(key)
        return known.last_seq if known is not None else 0

    def close(self) -> None:
        for history in [self.history, *self.room_histories.values()]:
            history.close()
        self.rooms.close()
        self.direct.close()
        self.say_ids.close()
        self.moderation.close()


def _room_ends(data_dir: Path) -> dict[str, FileEnd]:
    """Each rooms/NAME.csv's tail read (and checked) and the file closed again: a room's file
    is opened when the room is used, from what was read here."""
    ends = {}
    for path in sorted((data_dir / ROOMS_DIR).glob("*.csv")):
        if ROOM_NAME.fullmatch(path.stem) and path.stem != "general":
            history = History.open(path, window=1)
            ends[path.stem] = history.ends()
            history.close()
    return ends


def open_store(data_dir: Path, history_window: int, environ: Mapping[str, str] = os.environ, *,
               room_window: int, direct_window: int) -> Store:
    """Every data file, or StartupError (or OSError).

    Every check comes before the first file is made: accounts are loaded, rooms.csv,
    members.csv, markers.csv, say_ids.csv and moderation.csv read, history.csv and each room's
    file's tail read and checked (history.csv created only if missing), direct.dat decrypted;
    and only then the key, clients.csv and the rooms' files written, so a damaged file cannot
    leave a new key behind, nor a wrong key a new file. (A disk that fails between those
    writes may still leave a header-only history.csv.)
    """
    accounts = Accounts.load(data_dir, environ)
    room_rows = read_room_rows(data_dir)
    say_id_rows = read_say_id_rows(data_dir)
    moderation_rows = read_moderation_rows(data_dir)
    problems = room_rows.problems + say_id_rows.problems + moderation_rows.problems
    if problems:
        raise StartupError(problems[0])
    with contextlib.ExitStack() as undo:
        history = History.open(data_dir / HISTORY_FILE, window=history_window)
        undo.callback(history.close)
        closed_rooms = _room_ends(data_dir)
        direct = DirectFile.open(data_dir, accounts.vault, direct_window)
        undo.callback(direct.close)
        accounts.create_files()
        snapshot = snapshot_of(room_rows)
        rooms = RoomFiles.open(data_dir, room_rows, snapshot)
        snapshot.conversations = direct.conversations()
        snapshot.markers.update(direct.markers)
        room_ids = live_say_ids(say_id_rows, lambda room: history.last_seq if room == "general"
                                else closed_rooms[room].last_seq if room in closed_rooms else 0)
        say_ids = open_say_ids(data_dir, say_id_rows, room_ids)
        snapshot.say_ids = {**room_ids, **direct.say_ids}
        snapshot.restrictions = in_force(moderation_rows, time.time(),
                                         lambda account_id: accounts.by_id(account_id) is not None)
        moderation = ModerationFile.open(data_dir, moderation_rows, snapshot.restrictions)
        undo.pop_all()
    return Store(data_dir, accounts, history, closed_rooms, rooms, direct, snapshot, say_ids, moderation,
                 room_window)
