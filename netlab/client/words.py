"""What the chat client says, in words: error codes as sentences, and the server's events
(presence, notices, rooms, topics, deletions) as lines. Pure functions of frames."""

from __future__ import annotations

from netlab.client.effects import Show

#: One human sentence for each error code of PROTOCOL.md (both versions).
ERROR_SENTENCES = {
    "bad_frame": "the server could not read what this client sent",
    "frame_too_large": "a request was larger than the server accepts",
    "unknown_type": "the server does not know that request",
    "bad_request": "the server rejected that request as malformed",
    "not_authenticated": "log in first",
    "already_authenticated": "you are already logged in",
    "invalid_username": "a username is 1 to 32 letters, digits, '_', '.' or '-'",
    "invalid_password": "a password is 8 to 256 characters",
    "username_taken": "that username is taken",
    "bad_credentials": "unknown user or wrong password",
    "rate_limited": "you are sending too fast (or failed to log in too often); wait a moment",
    "auth_timeout": "the server closed the connection: no login in time",
    "server_full": "the server is full; try again later",
    "slow_consumer": "the server dropped you because you were not reading",
    "invalid_room": "a room name is 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit",
    "no_such_room": "there is no such room (or it is private and you are not in it)",
    "room_exists": "a room of that name exists already",
    "not_member": "you are not in that room: /join it first",
    "no_such_user": "there is no user of that name",
    "forbidden": "you may not do that (only a room's owner sets its topic; nobody leaves general; "
                 "only your own messages can be deleted)",
    "unavailable": "the server cannot store messages right now; try again in a moment",
    "banned": "the operator banned this account",
    "muted": "the operator muted you: your messages are not sent",
}
#: Codes whose `message` says more than the sentence (until when a ban or mute lasts).
TOLD_BY_THE_SERVER = {"banned", "muted"}


def error_sentence(frame: dict) -> str:
    code = frame.get("code", "")
    sentence = ERROR_SENTENCES.get(code, frame.get("message", code))
    if code in TOLD_BY_THE_SERVER and frame.get("message"):
        sentence = f"{sentence} ({frame.get('message')})"
    return f"error: {sentence}"


def news(frame: dict) -> Show:
    """A `users`, `join`, `leave` or `notice` frame, said in words."""
    kind = frame["type"]
    if kind == "users":
        more = " …" if frame.get("more") else ""
        room = f" in #{frame['room']}" if frame.get("room", "general") != "general" else ""
        return Show(kind, f"online{room} ({frame.get('count')}): {', '.join(frame.get('online', []))}{more}",
                    frame)
    if kind == "notice":
        return Show(kind, f"notice from the operator: {frame.get('text')}", frame)
    return Show(kind, f"{frame.get('username')} {'joined' if kind == 'join' else 'left'}", frame)


def message_line(message: dict, tag: str = "") -> str:
    """A chat line without its time, which the front end adds in its own zone; `tag` names
    the room or conversation when it is not the current one (`[#dev] bob: hi`)."""
    return f"{f'[{tag}] ' if tag else ''}{message.get('from')}: {message.get('text')}"


def room_event(frame: dict, tag: str) -> str:
    """A `joined`, `left`, `member` or `topic` frame as a status line."""
    kind = frame["type"]
    if kind == "joined":
        topic = f": {frame.get('topic')}" if frame.get("topic") else ""
        private = "private, " if frame.get("private") else ""
        return f"you are in {tag} ({private}{frame.get('members')} members){topic}"
    if kind == "left":
        return f"you left {tag}"
    if kind == "member":
        change = "joined" if frame.get("change") == "joined" else "left"
        return f"[{tag}] {frame.get('username')} {change} the room"
    return f"[{tag}] {frame.get('by')} set the topic: {frame.get('text')}"


def listing(entry: dict, unread: int) -> str:
    """One room or conversation of /rooms."""
    if "with" in entry:
        name = f"@{entry['with']}"
    else:
        kind = "private" if entry.get("private") else "public"
        joined = "" if entry.get("member", True) else ", not joined"
        name = f"#{entry.get('room')} ({kind}, {entry.get('members')} members{joined})"
    topic = f" — {entry['topic']}" if entry.get("topic") else ""
    return f"{name}{f': {unread} unread' if unread else ''}{topic}"
