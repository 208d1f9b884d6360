"""The prompt's slash commands: each parsed here and handed to the chat client, which
checks it against what the session knows and tells the user in words what went wrong
(netlab.client.requests). `/help` lists them from the same table."""

from __future__ import annotations

from collections.abc import Callable

from netlab import wire as p
from netlab.client.lines import text_problem
from netlab.client.network import ChatClient
from netlab.client.requests import MAX_TOPIC

Ask = Callable[[str], str]  # a question whose answer is not echoed (a password)

#: (command, arguments, what it does), in /help's order.
COMMANDS = (
    ("/join", "ROOM", "join a public room (or one you are invited to) and go there"),
    ("/create", "[--private] ROOM [TOPIC]", "create a room and go there"),
    ("/go", "ROOM|@USER", "switch to a room you are in, or a conversation"),
    ("/query", "USER", "switch to your direct conversation with USER"),
    ("/msg", "USER TEXT", "send USER a direct message, staying where you are"),
    ("/leave", "[ROOM]", "leave ROOM, or the current room"),
    ("/invite", "USER", "add USER to the current room (private ones too)"),
    ("/topic", "TEXT", "set the current room's topic (its owner only)"),
    ("/rooms", "[all]", "your rooms and conversations with unread counts (all: public rooms too)"),
    ("/delete", "[SEQ]", "delete your last message here, or message SEQ"),
    ("/passwd", "", "change your password (asked, never shown)"),
    ("/users", "", "who is online (in the current room)"),
    ("/history", "[N]", "N earlier messages here (20 if left out)"),
    ("/help", "", "this list"),
    ("/quit", "", "leave"),
)
USAGE = {name: f"usage: {name} {arguments}".rstrip() for name, arguments, _ in COMMANDS}


def help_lines() -> list[str]:
    width = max(len(f"{name} {arguments}") for name, arguments, _ in COMMANDS)
    return [f"{f'{name} {arguments}'.ljust(width)}  {what}" for name, arguments, what in COMMANDS] + [
        "//text  a message starting with /"]


def history_count(argument: str) -> int | None:
    """N of `/history [N]`: 20 when left out, None when it is no count (`isdigit` alone
    would pass '²', which `int` refuses)."""
    text = argument.strip()
    if not text:
        return 20
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def slash_command(client: ChatClient, line: str, ask: Ask) -> bool:
    """Run a /command; True when it was /quit."""
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    words = rest.split()
    if word == "/quit":
        client.quit()
        return True
    problem = run(client, word, rest, words, ask)
    if problem is not None:
        print(problem)
    return False


def run(client: ChatClient, word: str, rest: str, words: list[str], ask: Ask) -> str | None:
    """Carry out one command but /quit; what to tell the user when it cannot be."""
    if word == "/help":
        print("\n".join(help_lines()))
    elif word == "/history":
        count = history_count(rest)
        if count is None:
            return f"usage: /history [N], N a count of messages (at most {p.MAX_HISTORY_LIMIT} are fetched)"
        client.ask("history", min(count, p.MAX_HISTORY_LIMIT))
    elif word in ("/users", "/passwd") and words:
        return USAGE[word]
    elif word == "/users":
        client.ask("users")
    elif word == "/passwd":
        return change_password(client, ask)
    elif word in ("/join", "/go", "/query", "/invite") and len(words) != 1:
        return USAGE[word]
    elif word in ("/join", "/go", "/query"):
        client.ask({"/join": "join", "/go": "go", "/query": "query"}[word], words[0])
    elif word == "/invite":
        client.ask("in_room", {"type": "invite", "username": words[0]})
    elif word == "/leave" and len(words) <= 1:
        client.ask("leave", rest)
    elif word == "/create":
        return create(client, rest)
    elif word == "/topic" and len(rest) > MAX_TOPIC:
        return f"not set: a topic is at most {MAX_TOPIC} characters"
    elif word == "/topic":
        client.ask("in_room", {"type": "topic", "text": rest})
    elif word == "/rooms" and words in ([], ["all"]):
        client.ask("rooms", bool(words))
    elif word == "/msg" and len(words) >= 2:
        text = rest.split(None, 1)[1]
        problem = text_problem(text)
        if problem is not None:
            return f"not sent: {problem}"
        client.ask("message", words[0], text)
    elif word == "/delete" and (not words or len(words) == 1 and words[0].isascii() and words[0].isdigit()):
        client.ask("delete", int(words[0]) if words else None)
    elif word in USAGE:
        return USAGE[word]
    else:
        return f"unknown command {word}: try /help"
    return None


def create(client: ChatClient, rest: str) -> str | None:
    """/create [--private] ROOM [TOPIC]"""
    private = rest.startswith("--private")
    rest = rest.removeprefix("--private").strip()
    room, _, topic = rest.partition(" ")
    if not room:
        return USAGE["/create"]
    client.ask("join", room, {"private": private, **({"topic": topic.strip()} if topic.strip() else {})})
    return None


def change_password(client: ChatClient, ask: Ask) -> str | None:
    """/passwd: the current password, then the new one twice; none is echoed."""
    current = ask("current password: ")
    new = ask("new password: ")
    if ask("new password again: ") != new:
        return "the two new passwords differ: nothing changed"
    client.ask("password", current, new)
    return None
