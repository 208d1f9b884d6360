"""The page's features in a real browser (headless Chromium), each story one browser session
with several checks: reconnecting after a server restart, managing rooms, the conversation
(scroll-back, days, mentions, deleting), presence, the password, a phone and the keyboard."""

from __future__ import annotations

import os
import signal

import pytest
from browser import ChatPage, browser  # noqa: F401  (browser is a fixture)
from chatclient import PASSWORD
from test_web_port import web_port
from v2client import logged_in2, registered2


def texts(page: ChatPage) -> list[str]:
    """The messages shown, each without its time, author and controls."""
    return [line.split("\u2002")[-1] for line in page.message_texts()]


@pytest.fixture
def chat(start_chat, data_dir):
    """A chat server with its web port: (server, tcp port, page url, start_again)."""
    server, port = start_chat("--web-port", "0", "--rate-limit", "0", data=data_dir)
    web = web_port(server)

    def start_again():
        """The same server again: the same data and the same web port."""
        return start_chat("--web-port", str(web), "--rate-limit", "0", data=data_dir)

    return server, port, f"http://127.0.0.1:{web}/", start_again


def test_after_a_restart_the_page_logs_in_again_fills_every_gap_and_resends(browser, chat):  # noqa: F811
    server, port, url, start_again = chat
    bob = registered2(port, "bob")
    ann = ChatPage(browser(), url).open().register("ann", PASSWORD)
    ann.create_room("lab")
    bob.join("lab")
    bob.say_in("lab", "before the break")
    ann.wait_message("before the break")

    # The server stops reading, takes ann's message into its socket, and dies with it unread.
    os.kill(server.proc.pid, signal.SIGSTOP)
    ann.say("lost in the crash")
    ann.wait(lambda _: ann.draft() == "", "the draft sent")
    server.kill()
    ann.wait(lambda _: "reconnecting in" in ann.link_state(), "a reconnect countdown")
    ann.set_offline(True)  # so that what follows happens while the page is away
    ann.say("typed while away")
    ann.wait_text("#send-error", "not connected")
    assert ann.draft() == "typed while away"

    server, port = start_again()
    bob = logged_in2(port, "bob")
    for index in range(3):
        bob.say_in("lab", f"gap {index}")
    for index in range(60):  # more than the page of general a login brings
        bob.say_in("general", f"general {index}")

    ann.set_offline(False)  # the browser's `online` event: reconnect at once
    ann.wait_connected()
    ann.wait_message("gap 2")
    lab = ["before the break", "gap 0", "gap 1", "gap 2", "lost in the crash"]  # resent on return
    ann.wait(lambda _: texts(ann) == lab, f"lab in order: {lab}")
    bob.send("history", room="lab")
    stored = bob.wait_for("history", room="lab")["messages"]
    assert [m["text"] for m in stored] == lab  # resent with its id: stored once

    assert ann.draft() == "typed while away"  # still the user's, through the reconnect
    ann.say("")
    ann.wait_message("typed while away")

    ann.show("#general")
    expected = [f"general {index}" for index in range(60)]
    ann.wait(lambda _: texts(ann)[-60:] == expected,
             "general's gap filled, in order")
    seqs = [int(item.get_attribute("data-seq")) for item in ann.find_all("#messages li[data-seq]")]
    assert seqs == sorted(set(seqs))  # nothing twice


def test_rooms_are_created_joined_shared_and_left_from_the_sidebar(browser, chat):  # noqa: F811
    _, port, url, _ = chat
    bob = registered2(port, "bob")
    bob.create("plaza", topic="sunny")
    ann = ChatPage(browser(), url).open().register("ann", PASSWORD)

    ann.join_room("plaza")  # from the list of public rooms
    bob.wait_for("member", room="plaza", username="ann", change="joined")
    ann.wait_text("#place-topic", "sunny")
    assert "#plaza" not in ann.public_rooms()

    ann.create_room("secret", private=True)
    ann.invite("bob")
    bob.wait_for("joined", room="secret", private=True)
    ann.set_topic("only us")
    bob.wait_for("topic", room="secret", text="only us", by="ann")
    bob.say_in("secret", "psst")
    ann.wait_message("psst")

    ann.message_user("BOB")  # any case: the conversation is with the account as registered
    ann.wait_text("#place-name", "bob (direct)")
    ann.say("hi in private")
    bob.wait_for("message", to="bob", text="hi in private")
    assert "bob" in ann.sidebar_names()

    ann.show("#plaza")
    ann.leave_room()
    bob.wait_for("member", room="plaza", username="ann", change="left")
    assert ann.sidebar_names() == ["#general", "#secret", "bob"]

    ann.ask_message_user("nobody")
    ann.wait_text("#status", "there is no user of that name")
    ann.wait(lambda _: "nobody" not in ann.sidebar_names(), "no conversation with nobody")
    ann.ask_create_room("Bad Name")
    ann.wait_text("#status", "a room name is 1 to 32")
