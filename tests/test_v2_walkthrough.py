"""Issue 15's "Done when", walked as the README tells a user to: two people and a bot
create a private room, talk there and in direct messages, read on one terminal and see it
read on the other, and lose nothing over a restart and a `kill -9` of the server."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pexpect
from procs import assert_exits_zero, serve
from test_client import PASSWORD, pipe_client, terminal_client
from v2client import logged_in2

LAB = ("bob: hello lab", "bot: build passed", "bob: after the restart", "bob: typed while it was down")


def prompt(port: int, name: str) -> tuple[pexpect.spawn, io.StringIO]:
    """`chat connect --user NAME` at its prompt in general, and what it has shown."""
    child = terminal_client(port, "--user", name, "--password-env", "PW")
    child.logfile_read = seen = io.StringIO()
    child.expect(f"{name} #general>")
    return child, seen


def restarted(port: int, data_dir: Path, *terminals: pexpect.spawn):
    """The server on `port` again, once every terminal has said it is reconnecting; each
    then says it is back."""
    for terminal in terminals:
        terminal.expect("reconnecting in")
    server, _ = serve("chat", data_dir, "--no-repl", "--port", str(port))
    return server


def test_two_people_and_a_bot_keep_a_private_room_and_direct_messages_across_restarts(tmp_path):
    data_dir = tmp_path / "data"
    server, port = serve("chat", data_dir, "--no-repl")
    for user in ("alice", "bob", "bot"):
        assert pipe_client(port, user, [], "--register")[0] == 0
    alice, alice_seen = prompt(port, "alice")
    phone, _ = prompt(port, "alice")  # alice's second device, left in #general
    bob, bob_seen = prompt(port, "bob")
    terminals = (alice, phone, bob)
    try:
        alice.sendline("/create --private lab launch plans")
        alice.expect("alice #lab>")
        bob.sendline("/join lab")
        bob.expect(r"there is no such room \(or it is private")  # not even its name shows
        alice.sendline("/invite bob")
        alice.expect("invited")
        bob.expect(r"you are in #lab \(private, 2 members\): launch plans")
        alice.sendline("/invite bot")
        alice.expect("invited")

        bob.sendline("/go lab")
        bob.expect("bob #lab>")
        bob.sendline("hello lab")
        alice.expect(r"\] bob: hello lab")  # alice's current room: shown, so read
        phone.expect(r"\[#lab\] bob: hello lab")  # another room there: tagged, unread
        # Alice's terminal sends the marker; her phone's list then has nothing unread.
        watcher = logged_in2(port, "alice", PASSWORD)
        assert watcher.wait_for("read", room="lab")["seq"] == 1
        watcher.close()
        phone.sendline("/rooms")
        phone.expect(r"#lab \(private, 3 members\)( — launch plans|: \d+ unread)")
        assert phone.after.endswith("— launch plans"), phone.after

        assert pipe_client(port, "bot", ["build passed"], "--room", "lab")[0] == 0
        assert pipe_client(port, "bot", ["deploy done"], "--to", "alice")[0] == 0
        alice.expect(r"\] bot: build passed")
        alice.expect(r"\[@bot\] bot: deploy done")
        bob.sendline("/msg alice psst")
        alice.expect(r"\[@bob\] bob: psst")
        alice.sendline("/query bob")
        alice.expect("alice @bob>")
        alice.sendline("got it")
        bob.expect(r"\[@alice\] alice: got it")

        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        server = restarted(port, data_dir, *terminals)
        for terminal, name in ((alice, "alice"), (phone, "alice"), (bob, "bob")):
            terminal.expect(f"reconnected as {name}")
        bob.sendline("after the restart")
        alice.expect(r"\[#lab\] bob: after the restart")

        server.kill()  # kill -9: no goodbye, no last write
        server = restarted(port, data_dir, *terminals)
        bob.sendline("typed while it was down")  # sent once it is back
        for terminal, name in ((alice, "alice"), (bob, "bob")):
            terminal.expect(f"reconnected as {name}")
        alice.expect(r"\[#lab\] bob: typed while it was down")
        for line in LAB:
            assert alice_seen.getvalue().count(line) == 1, line
        assert bob_seen.getvalue().count("alice: got it") == 1
        for terminal in terminals:
            terminal.sendline("/quit")
            assert_exits_zero(terminal)
    finally:
        for terminal in terminals:
            terminal.close(force=True)
        server.kill()

    # Nothing lost: a fresh start of alice's finds the room, both conversations and every line.
    server, _ = serve("chat", data_dir, "--no-repl", "--port", str(port))
    alice, _ = prompt(port, "alice")
    try:
        alice.sendline("/rooms")
        for listed in (r"#lab \(private, 3 members\): 2 unread — launch plans", "@bob", "@bot: 1 unread"):
            alice.expect(listed)
        alice.sendline("/go lab")
        alice.expect(r"now in #lab \(2 unread\)")
        alice.expect(LAB[2])
        alice.expect(LAB[3])
        alice.sendline("/history 10")
        alice.expect(LAB[0])
        alice.expect(LAB[1])
        alice.sendline("/query bob")
        alice.expect("alice @bob>")
        alice.sendline("/history 10")
        alice.expect("bob: psst")
        alice.expect("alice: got it")
        alice.sendline("/quit")
        assert_exits_zero(alice)
    finally:
        alice.close(force=True)
        server.kill()
