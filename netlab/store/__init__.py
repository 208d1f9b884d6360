"""Where the chat's state lives: the data directory's files.

    records.py   the CSV formats (pure): fields, records, accounts' and history's rows
    accounts.py  clients.csv: accounts, encrypted logins, registrations
    history.py   history.csv: appends, the window, tail reads, pages from disk
    opening.py   both opened at start-up, in the order that leaves nothing behind on failure

The journal (seq, stage, commit) is the chat's interface to history (netlab.chat.journal);
netlab.loop.group_commit is its implementation on these files.
"""
