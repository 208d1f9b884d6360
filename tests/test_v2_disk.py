"""What version 2 leaves on disk: direct messages unreadable, deleted text gone.

PROTOCOL.md, "Storage (version 2)" and "Details": the operator's files show neither a
direct message's text nor who wrote to whom; the log never holds a DM's text or a line
naming both accounts of a conversation; a deleted message's text is in no file. Every file
of the data directory is searched as raw bytes, and for the text's hex and base64 forms.
"""

from __future__ import annotations

import signal

from disk_search import files_holding
from v2client import registered2


def stopped(server) -> None:
    """SIGTERM: everything flushed, as an operator's shutdown leaves it."""
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_direct_messages_show_neither_text_nor_who_wrote_to_whom(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0")
    text = "the heron flies at nine 4471"
    with registered2(port, "dmq_sender") as sender, registered2(port, "dmq_reader") as reader:
        sender.send("say", text=text, to="dmq_reader")
        sender.wait_for("message", text=text)
        reader.wait_for("message", text=text)
        reader.send("read", seq=1, **{"with": "dmq_sender"})
        reader.say_in("general", "a public line")  # the reader's name is public from here on
        reader.expect_nothing_pending()
    stopped(server)
    assert files_holding(data_dir, text) == []
    assert files_holding(data_dir, "dmq_sender") == ["chat.log"]  # logins are logged, nothing else
    lines = (data_dir / "chat.log").read_text().splitlines()
    assert not [line for line in lines if "dmq_sender" in line and "dmq_reader" in line]


def test_a_deleted_message_is_gone_from_every_file(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0")
    in_room, in_general, in_dm = "room words to unsay 5512", "general words to unsay 5513", "dm words 5514"
    with registered2(port, "del_a") as a, registered2(port, "del_b") as b:
        a.create("del-room")
        a.say_in("del-room", in_room)
        a.say_in("del-room", "stays")
        a.say_in("general", in_general)
        a.send("say", text=in_dm, to="del_b")
        a.wait_for("message", text=in_dm)
        b.wait_for("message", text=in_dm)
        for where in ({"room": "del-room", "seq": 1}, {"room": "general", "seq": 1},
                      {"with": "del_b", "seq": 1}):
            a.send("delete", **where)
            a.wait_for("deleted", seq=1)
    stopped(server)
    for text in (in_room, in_general, in_dm):
        assert files_holding(data_dir, text) == [], text
    kept = [path.name for path in data_dir.rglob("*.csv") if b"stays" in path.read_bytes()]
    assert kept == ["del-room.csv"]
