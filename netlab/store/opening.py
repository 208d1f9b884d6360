"""The chat's files opened together at start-up, in the order that touches nothing on failure."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from netlab.files import StartupError
from netlab.store.accounts import Accounts
from netlab.store.direct import DirectFile
from netlab.store.history import History
from netlab.store.records import HISTORY_FILE
from netlab.store.room_files import ROOM_NAME, ROOMS_DIR, RoomFiles, read_room_rows, room_file, snapshot_of
from netlab.store.room_records import Key, RoomsSnapshot


@dataclass
class Store:
    """Every data file open: what the loop's journals and jobs work on."""

    data_dir: Path
    accounts: Accounts
    history: History  # general's, history.csv
    room_histories: dict[str, History]  # the other rooms' files opened so far
    rooms: RoomFiles
    direct: DirectFile
    snapshot: RoomsSnapshot
    room_window: int  # ChatConfig.room_window: records of one room's file in memory

    def room(self, name: str) -> History:
        """A room's message file, opened (or created) on first use with a window of few records."""
        found = self.room_histories.get(name)
        if found is None:
            found = self.room_histories[name] = History.open(room_file(self.data_dir, name),
                                                             window=self.room_window, preload=1)
        return found

    def last_seq(self, key: Key) -> int:
        if isinstance(key, tuple):
            return self.direct.last_seq(key)
        if key == "general":
            return self.history.last_seq
        found = self.room_histories.get(key)
        return found.last_seq if found is not None else 0

    def close(self) -> None:
        for history in [self.history, *self.room_histories.values()]:
            history.close()
        self.rooms.close()
        self.direct.close()


def _open_room_files(data_dir: Path, window: int) -> dict[str, History]:
    """Every rooms/NAME.csv, its tail read (for last_seq and the damage a tail shows)."""
    opened: dict[str, History] = {}
    directory = data_dir / ROOMS_DIR
    try:
        for path in sorted(directory.glob("*.csv")):
            if ROOM_NAME.fullmatch(path.stem) and path.stem != "general":
                opened[path.stem] = History.open(path, window=window, preload=1)
    except BaseException:
        for history in opened.values():
            history.close()
        raise
    return opened


def open_store(data_dir: Path, history_window: int, environ: Mapping[str, str] = os.environ, *,
               room_window: int, direct_window: int) -> Store:
    """Every data file, or StartupError (or OSError).

    Every check comes before the first file is made: accounts are loaded, rooms.csv,
    members.csv and markers.csv read, history.csv and each room's file opened and checked
    (history.csv created only if missing), direct.dat decrypted; and only then the key,
    clients.csv and the rooms' files written, so a damaged file cannot leave a new key behind,
    nor a wrong key a new file. (A disk that fails between those writes may still leave a
    header-only history.csv.)
    """
    accounts = Accounts.load(data_dir, environ)
    room_rows = read_room_rows(data_dir)
    if room_rows.problems:
        raise StartupError(room_rows.problems[0])
    with contextlib.ExitStack() as undo:
        history = History.open(data_dir / HISTORY_FILE, window=history_window)
        undo.callback(history.close)
        room_histories = _open_room_files(data_dir, room_window)
        undo.callback(lambda: [h.close() for h in room_histories.values()])
        direct = DirectFile.open(data_dir, accounts.vault, direct_window)
        undo.callback(direct.close)
        accounts.create_files()
        snapshot = snapshot_of(room_rows)
        rooms = RoomFiles.open(data_dir, room_rows, snapshot)
        snapshot.conversations = direct.conversations()
        snapshot.markers.update(direct.markers)
        undo.pop_all()
    return Store(data_dir, accounts, history, room_histories, rooms, direct, snapshot, room_window)
