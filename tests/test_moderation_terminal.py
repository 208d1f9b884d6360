"""The moderation commands on the console's terminal: names completed with Tab after kick, ban
and mute, and a command history that outlives a restart (a pty, pexpect)."""

from __future__ import annotations

from chatclient import logged_in, registered
from procs import assert_exits_zero, spawn_terminal

from netlab.console_prompt import HISTORY_FILE


def chat_on_terminal(data_dir):
    child = spawn_terminal("chat", "serve", "--port", "0", "--data-dir", str(data_dir))
    child.expect(r"listening on 127\.0\.0\.1:(\d+)")
    port = int(child.match.group(1))
    child.expect("netlab chat>")
    return child, port


def test_tab_completes_online_names_and_the_history_outlives_a_restart(data_dir):
    child, port = chat_on_terminal(data_dir)
    try:
        alice, bob = registered(port, "Alice"), registered(port, "bob")
        registered(port, "arnold").close()  # offline: not offered
        alice.ignore = bob.ignore = {"join", "leave"}
        child.send("ban a")
        child.expect("ban a")
        child.send("\t")  # the only online name starting with a (case-insensitively)
        child.expect("lice")
        child.send(" 1h   shared a password\r")
        child.expect(r"banned Alice for 3600 s: 1 session\(s\) ended")
        assert alice.expect_fatal("banned")["message"].endswith(": shared a password")
        child.send("mute B\t")
        child.expect("bob")
        child.send("\r")
        child.expect("muted bob until lifted")
        child.send("kick b\t")
        child.expect("ob")
        child.send("\r")
        child.expect(r"kicked bob: 1 session\(s\) ended")
        child.expect("netlab chat>")
        child.sendline("shutdown")
        assert_exits_zero(child)
    finally:
        child.close(force=True)
    history = data_dir / HISTORY_FILE
    assert history.stat().st_mode & 0o777 == 0o600
    assert history.read_text().splitlines() == ["ban Alice 1h   shared a password", "mute bob", "kick bob",
                                                "shutdown"]
    child, port = chat_on_terminal(data_dir)
    try:
        child.send("\x1b[A\x1b[A")  # Up twice: the command before `shutdown`
        child.expect("kick bob")
        child.send("\x15bans\r")  # Ctrl-U clears the recalled line
        child.expect(r"Alice  until 20.*reason: shared a password")
        child.expect(r"1 ban\(s\) in force")
        with logged_in(port, "bob") as bob:
            bob.send("say", text="hello")
            assert bob.expect_error("muted")
        child.sendeof()
        assert_exits_zero(child)
    finally:
        child.close(force=True)


def test_unban_unmute_remove_and_delete_on_the_terminal(data_dir):
    """The rest of the moderation commands as an operator types them at the prompt: the
    confirmation of `remove` answered at the keyboard."""
    child, port = chat_on_terminal(data_dir)
    try:
        registered(port, "cy").close()
        registered(port, "dee").close()
        with registered(port, "eve") as eve:
            eve.say("my password is hunter2")
        child.sendline("ban cy")
        child.expect("banned cy until lifted")
        child.sendline("unban CY")
        child.expect("unbanned CY")
        child.sendline("mute dee 1h")
        child.expect("muted dee for 3600 s")
        child.sendline("unmute dee")
        child.expect("unmuted dee")
        child.sendline("remove cy")
        child.expect(r"Remove the account cy\? \[y/N\]")
        child.sendline("y")
        child.expect(r"removed cy: 0 session\(s\) ended; the name is free")
        child.sendline("delete general 1")
        child.expect("deleted message 1 of #general")
        child.sendline("bans")
        child.expect(r"0 ban\(s\) in force")
        child.sendline("shutdown")
        assert_exits_zero(child)
    finally:
        child.close(force=True)
    child, port = chat_on_terminal(data_dir)  # what the commands did outlives a restart
    try:
        with logged_in(port, "dee") as dee:  # unmuted
            assert dee.say("hello")["text"] == "hello"
        registered(port, "cy").close()  # the name is free again
        with logged_in(port, "eve") as eve:  # the message is gone from history
            assert [m["text"] for m in eve.history(limit=10)["messages"]] == ["hello"]
        child.sendline("shutdown")
        assert_exits_zero(child)
    finally:
        child.close(force=True)
