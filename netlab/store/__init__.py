"""Where the chat's state lives: the data directory's files.

    records.py         the CSV formats (pure): fields, records, accounts' and history's rows
    room_records.py    rooms, memberships, markers as the core gets them (pure)
    accounts.py        clients.csv: accounts, encrypted logins, registrations, ids, passwords
    history.py         history.csv and rooms/NAME.csv: appends, the window, tail reads, pages
    csv_journal.py     an append-only CSV of small rows (last row wins), compacted at start-up
    room_files.py      rooms.csv, members.csv, markers.csv
    direct_records.py  direct.dat's encrypted, padded lines (pure but for the Vault)
    direct.py          direct.dat: appends, the index, pages, erasure
    appending.py       what every appended file shares (fsync, close)
    opening.py         all of them opened at start-up, in the order that leaves nothing behind

The journals (seq, stage, commit) are the chat's interface to these files
(netlab.chat.journal); netlab.loop.group_commit is their implementation.
"""
