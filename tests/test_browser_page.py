"""The page's features in a real browser (headless Chromium), each story one browser session
with several checks: reconnecting after a server restart, managing rooms, the conversation
(scroll-back, days, mentions, deleting), presence, the password, a phone and the keyboard."""

from __future__ import annotations

import os
import signal

import pytest
from browser import PHONE, ChatPage, browser  # noqa: F401  (browser is a fixture)
from chatclient import PASSWORD
from selenium.webdriver.common.keys import Keys
from test_web_port import web_port
from v2client import logged_in2, registered2


def texts(page: ChatPage) -> list[str]:
    """The messages shown, each without its time, author and controls."""
    return [line.split("\u2002")[-1] for line in page.texts("#messages li[data-seq]")]


@pytest.fixture
def chat(start_chat, data_dir):
    """A chat server with its web port and console: (server, tcp port, page url, start_again)."""
    server, port = start_chat("--web-port", "0", "--rate-limit", "0", data=data_dir, repl=True)
    web = web_port(server)

    def start_again():
        """The same server again: the same data and the same web port."""
        return start_chat("--web-port", str(web), "--rate-limit", "0", data=data_dir)

    return server, port, f"http://127.0.0.1:{web}/", start_again


def test_after_a_restart_the_page_logs_in_again_fills_every_gap_and_resends(browser, chat):  # noqa: F811
    server, port, url, start_again = chat
    bob = registered2(port, "bob")
    ann = ChatPage(browser(), url).open().register("ann", PASSWORD)
    ann.create_room("old")
    ann.create_room("lab")
    bob.join("lab")
    bob.say_in("lab", "before the break")
    ann.wait_message("before the break")

    # The server stops reading, takes ann's message into its socket, and dies with it unread.
    os.kill(server.proc.pid, signal.SIGSTOP)
    ann.say("lost in the crash")
    ann.wait(lambda _: ann.draft() == "", "the draft sent")
    assert ann.texts("#messages li.pending") == ["sending…\u2002lost in the crash"]
    server.kill()
    ann.wait(lambda _: "reconnecting in" in ann.link_state(), "a reconnect countdown")
    # Announced once to a screen reader, not each second of the countdown.
    assert ann.find("#link-announce").get_attribute("textContent").endswith("; reconnecting")
    ann.set_offline(True)  # so that what follows happens while the page is away
    ann.say("typed while away")
    ann.wait_text("#send-error", "not connected")
    assert ann.draft() == "typed while away"

    server, port = start_again()
    bob = logged_in2(port, "bob")
    elsewhere = logged_in2(port, "ann")  # ann on another device, while her page is away
    assert elsewhere.request("leave", room="old")["type"] == "left"
    elsewhere.create("fresh")
    for index in range(3):
        bob.say_in("lab", f"gap {index}")
    for index in range(60):  # more than the page of general a login brings
        bob.say_in("general", f"general {index}")
    bob.send("delete", room="lab", seq=1)  # shown before the break, deleted while away
    bob.wait_for("deleted", room="lab")

    ann.set_offline(False)  # the browser's `online` event: reconnect at once
    ann.wait_connected()
    ann.wait_message("gap 2")
    lab = ["gap 0", "gap 1", "gap 2", "lost in the crash"]  # resent on return
    ann.wait(lambda _: texts(ann) == lab, f"lab in order: {lab}")
    assert ann.find_all("#messages li.pending") == []
    assert ann.sidebar_names() == ["#fresh", "#general", "#lab"]
    bob.send("history", room="lab")
    stored = bob.wait_for("history", room="lab")["messages"]
    assert [m["text"] for m in stored] == lab  # resent with its id: stored once

    assert ann.draft() == "typed while away"  # still the user's, through the reconnect
    assert "not connected" in ann.find("#send-error").text
    ann.say("")  # Enter: what is in the box goes now
    ann.wait_message("typed while away")

    ann.show("#general")
    expected = [f"general {index}" for index in range(60)]
    ann.wait(lambda _: texts(ann)[-60:] == expected, "general's gap filled, in order")
    seqs = ann.driver.execute_script(
        "return [...document.querySelectorAll('#messages li[data-seq]')].map((item) => +item.dataset.seq)")
    assert seqs == sorted(set(seqs))  # nothing twice


def test_rooms_are_created_joined_shared_and_left_from_the_sidebar(browser, chat):  # noqa: F811
    server, port, url, _ = chat
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
    bob.say_in("secret", "are you there?")  # elsewhere: counted in the sidebar and the title
    ann.wait(lambda _: ann.unread("#secret") == 1, "one unread in #secret")
    assert ann.driver.title == "(1) netlab chat"
    ann.open_details("#create-rooms")
    assert ann.low_contrast() == []  # with a badge, the current place and a form open
    ann.show("#secret")
    ann.wait(lambda _: ann.driver.title == "netlab chat", "nothing unread in the title")

    ann.show("#plaza")
    ann.leave_room()
    bob.wait_for("member", room="plaza", username="ann", change="left")
    assert ann.sidebar_names() == ["#general", "#secret", "bob"]

    ann.ask_message_user("nobody")
    ann.wait_text("#status", "there is no user of that name")
    ann.wait(lambda _: "nobody" not in ann.sidebar_names(), "no conversation with nobody")
    ann.ask_create_room("Bad Name")
    ann.wait_text("#status", "a room name is 1 to 32")
    ann.show("#secret")  # the refusal stays behind: it is not about this room
    assert ann.find("#status").text == ""

    # Kicked by the operator, the page stays away until asked back.
    server.command("kick ann")
    ann.wait_text("#status", "the operator removed this session")
    ann.wait(lambda _: ann.link_state().startswith("disconnected"), "disconnected")
    ann.find("#reconnect-button").click()
    ann.wait_connected()
    ann.wait(lambda _: ann.sidebar_names() == ["#general", "#secret", "bob"], "the same rooms again")
    assert ann.driver.title == "netlab chat"
    # Logged in again (the rooms were shown all along), the kick's line goes: it was about the session before.
    ann.wait(lambda _: ann.find("#status").text == "", "the kick's line gone")

    # Logging out forgets the account in this tab, down to what was typed and not sent: the
    # next person at this computer finds neither ann's draft nor her password half typed.
    ann.find("#draft").send_keys("half a thought")
    ann.open_details("#account")
    ann.find("#old-password").send_keys(PASSWORD)
    ann.find("#logout-button").click()  # perhaps before the login again has been answered
    ann.wait(lambda _: ann.find("#login-view").is_displayed(), "the login form")
    ann.wait(lambda _: ann.find("#login-button").is_enabled(), "connected for the next login")
    ann.login("bob", PASSWORD)
    assert ann.draft() == ""
    assert ann.find("#account").get_attribute("open") is None
    assert ann.driver.execute_script("return document.getElementById('old-password').value") == ""
    # Logging in brings ann's rooms back from the server.
    ann.find("#logout-button").click()
    ann.wait(lambda _: ann.find("#login-button").is_enabled(), "connected for the next login")
    ann.login("ann", PASSWORD)
    ann.wait(lambda _: ann.sidebar_names() == ["#general", "#secret", "bob"], "ann's rooms")
    assert ann.console_errors() == []


def test_a_banned_user_is_told_why_and_the_page_stays_away_until_asked_back(browser, chat):  # noqa: F811
    server, _, url, _ = chat
    ann = ChatPage(browser(), url).open().register("ann", PASSWORD)
    server.command("ban ann 1h rude")
    ann.wait_text("#status", "the operator banned this account")
    # The link line says why it is down (the server's close carries no reason of its own).
    ann.wait(lambda _: ann.link_state() == "disconnected: this account is banned", "disconnected, saying why")

    start = len(server.out)
    server.command("unban ann")
    server.out.wait_for(r"^unbanned ann$", start=start)
    ann.find("#reconnect-button").click()
    ann.wait_connected()
    ann.wait(lambda _: ann.find("#status").text == "", "logged in again")
    ann.say("back again")
    ann.wait_message("back again")


def seed_general(data_dir, days: dict[str, int]) -> None:
    """general's history.csv with `count` messages by carol on each day, before the server starts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    rows, seq = ["seq,ts,from,text"], 0
    for day, count in days.items():
        for minute in range(count):
            seq += 1
            rows.append(f"{seq},{day}T10:{minute:02d}:00.000Z,carol,old {seq}")
    (data_dir / "history.csv").write_text("\r\n".join(rows) + "\r\n")


def test_the_conversation_scrolls_back_by_day_marks_mentions_and_deletes(browser, start_chat, data_dir):  # noqa: F811
    seed_general(data_dir, {"2026-11-01": 60, "2026-11-02": 60})
    server, port = start_chat("--web-port", "0", "--rate-limit", "0", data=data_dir)
    url = f"http://127.0.0.1:{web_port(server)}/"
    registered2(port, "bob").close()
    ann = ChatPage(browser(), url)
    ann.allow_notifications()
    ann.open().register("ann", PASSWORD)

    # The newest page of 50, then older pages as the reader scrolls up, where they were.
    ann.wait(lambda _: len(texts(ann)) == 50, "the newest page")
    assert texts(ann)[0] == "old 71"
    days = lambda: ann.driver.execute_script(  # noqa: E731
        "return [...document.querySelectorAll('#messages li.day time')].map((t) => t.dateTime)")
    assert days() == ["2026-11-02"]
    top = "return document.querySelector('#messages li[data-seq=\"71\"]').getBoundingClientRect().top"
    ann.driver.execute_script("document.getElementById('messages').scrollTop = 0")
    before = ann.driver.execute_script(top)
    ann.wait(lambda _: "old 30" in texts(ann), "an older page after scrolling up")
    assert abs(ann.driver.execute_script(top) - before) < 60  # what was read stays in view
    assert days() == ["2026-11-01", "2026-11-02"]
    ann.find("#older-button").send_keys(Keys.ENTER)  # the keyboard's way up
    ann.wait(lambda _: "old 1" in texts(ann), "the first message")
    ann.wait_text("#messages li.start", "the start of #general")
    assert texts(ann) == [f"old {seq}" for seq in range(1, 121)]

    # Presence: bob comes online and goes.
    bob = logged_in2(port, "bob")
    ann.wait(lambda _: ann.presence() == ["ann (you)", "bob"], "bob online")

    # A mention of ann is marked; while her tab is hidden it is also a notification.
    bob.say_in("general", "hey @ann, look")
    ann.wait_message("hey @ann, look")
    assert ann.find_all("#messages li.mention")[-1].text.endswith("hey @ann, look")
    shown = ann.driver.current_window_handle
    ann.driver.switch_to.new_window("tab")
    ann.driver.get(url)  # the page's origin again, whose storage the recorder writes
    bob.say_in("general", "@annie is someone else")
    bob.say_in("general", "@ANN are you there?")
    ann.wait(lambda _: ann.notifications_seen_from_another_tab(), "a notification")
    ann.driver.switch_to.window(shown)
    assert ann.notifications() == [
        ["bob mentioned you in #general", "@ANN are you there?"]]
    assert ann.find("#notify-button").is_displayed() is False  # permission given already

    # Deleting: ann's own message from her page, bob's from his session; gone from the page.
    ann.say("oops, a typo")
    ann.wait_message("oops, a typo")
    ann.screenshot("page-desktop")
    ann.delete_message("oops, a typo")
    bob.wait_for("deleted", room="general")
    regret = bob.say_in("general", "bob regrets this")
    ann.wait_message("bob regrets this")
    assert not ann.find_all("#messages li:not(.own) button.delete")  # only your own have the control
    bob.send("delete", room="general", seq=regret["seq"])
    ann.wait(lambda _: not any("bob regrets" in t or "oops" in t for t in texts(ann)), "both deleted")
    bob.close()
    ann.wait(lambda _: ann.presence() == ["ann (you)"], "bob gone")

    # The password: asked twice, the current one checked, then changed.
    assert ann.change_password(PASSWORD, "a new secret", again="another") == "the two new passwords differ"
    assert ann.change_password("wrong password", "a new secret").startswith("not changed: unknown user")
    assert ann.change_password(PASSWORD, "a new secret") == "password changed"
    logged_in2(port, "ann", "a new secret").close()
    assert ann.console_errors() == []


def test_on_a_phone_by_keyboard_alone_everything_is_reachable_and_readable(browser, chat):  # noqa: F811
    _, port, url, _ = chat
    ann = ChatPage(browser(size=PHONE), url).emulate_phone()
    ann.count_permission_requests()
    ann.open()
    assert ann.driver.execute_script("return [innerWidth, innerHeight]") == list(PHONE)
    assert ann.low_contrast() == []
    ann.register("ann", PASSWORD)
    bob = registered2(port, "bob")
    bob.create("plaza")
    bob.say_in("general", "hello @ann, a long line that has to wrap on a narrow phone screen " * 3)
    ann.wait_message("a long line")
    ann.say("my own line")
    ann.wait_message("my own line")

    # One column: no sideways scrolling, the sidebar above the conversation, the draft in view.
    layout = ann.driver.execute_script("""
        const box = (id) => document.getElementById(id).getBoundingClientRect();
        return {wide: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,
                sidebar: box('sidebar').bottom, conversation: box('conversation').top,
                draft: box('draft').bottom, height: window.innerHeight};""")
    assert layout["wide"] <= layout["view"]
    assert layout["sidebar"] <= layout["conversation"] + 1
    assert layout["draft"] <= layout["height"] and ann.find("#draft").is_displayed()
    ann.screenshot("page-phone")
    assert ann.low_contrast() == []

    # Every control is on the Tab path, and the focus shows.
    path = ann.tab_through()
    for stop in ("button# #general", "summary# Join a public room", "summary# Create a room",
                 "summary# Message a user", "summary# Change password", "textarea#draft ", "button# Delete"):
        assert stop in path, f"{stop!r} not reachable by Tab: {path}"

    # Notifications are asked for when the user says so, never on load.
    assert ann.permission_requests() == 0
    ann.press_tab_until("button#notify-button Notify me of mentions")
    ann.keys(Keys.ENTER)
    ann.wait(lambda _: ann.permission_requests() == 1, "permission asked on the button")

    # A room created and joined with the keyboard alone.
    ann.press_tab_until("summary# Create a room")
    outline = ann.driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus shows
    ann.keys(Keys.ENTER, Keys.TAB, "kbd", Keys.ENTER)
    ann.wait(lambda _: ann.find("#place-name").text == "#kbd", "#kbd created by keyboard")
    ann.press_tab_until("summary# Join a public room")
    ann.keys(Keys.ENTER)
    ann.press_tab_until("button# Join #plaza")
    ann.keys(Keys.ENTER)
    ann.wait(lambda _: ann.find("#place-name").text == "#plaza", "#plaza joined by keyboard")
    ann.press_tab_until("textarea#draft ")
    ann.keys("typed, not clicked", Keys.ENTER)
    bob.wait_for("message", room="plaza", text="typed, not clicked")
    assert ann.console_errors() == []  # nothing the CSP blocked, nothing missing, no exception

    # The phone loses its network: the page says so at once, and is back when it is.
    ann.set_offline(True)
    ann.wait(lambda _: ann.link_state().startswith("offline; reconnecting in"), "offline shown")
    ann.set_offline(False)
    ann.wait_connected()
    bob.say_in("plaza", "welcome back")
    ann.wait_message("welcome back")
