"""The operator's commands, as click parses them: one table for both servers' consoles.

`admin.Console` reads a line and hands its words here; each command asks the
server through the small interfaces of admin.py (`Server`, `ChatServer`), so
nothing here touches a socket or the chat's state. `help` and the prompt's Tab
completion are built from the same table, so they cannot drift from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from netlab.chat.moderation import BAN, MUTE, parse_duration

if TYPE_CHECKING:
    from netlab.admin import Console


# -- the commands -------------------------------------------------------------


class _AsTyped(click.Command):
    """A command whose argument is the rest of the line as typed: nothing in it is an
    option, so it may start with '-'. With `whole_line`, its spacing is kept too."""

    def __init__(self, *args, whole_line: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.whole_line = whole_line


class _Group(click.Group):
    """Keeps command order as written, so `help` reads like CLI.md."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click would print the group's whole help page; one line is the rule.
        if not args:
            raise click.UsageError(f"'{self.name}' needs one of: {', '.join(self.commands)}")
        return super().parse_args(ctx, args)


@click.group(cls=_Group, add_help_option=False)
def commands() -> None:
    """Operator commands."""


@commands.command("help", add_help_option=False)
def help_command() -> None:
    """List the commands."""
    rows = command_help()
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        click.echo(f"  {name:<{width}}  {text}")


@commands.command(add_help_option=False)
@click.pass_obj
def status(console: Console) -> None:
    """Uptime, connections, messages and bytes in and out."""
    for name, value in console.server.status().items():
        click.echo(f"{name}: {value}")


@commands.command(add_help_option=False)
@click.pass_obj
def shutdown(console: Console) -> None:
    """Stop the server: clients get `shutdown`, files are flushed."""
    click.echo("shutting down")
    console.server.stop("operator shutdown")


@commands.group(cls=_Group, add_help_option=False)
def clear() -> None:
    """clear log | clear file"""


@clear.command("log", add_help_option=False)
@click.pass_obj
def clear_log(console: Console) -> None:
    """Truncate the log file and clear the console."""
    console.logs.clear_file()
    console.clear_screen()
    click.echo(f"log cleared: {console.logs.path}")


@clear.command("file", add_help_option=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def clear_file(console: Console, yes: bool) -> None:
    """Empty clients.csv (kept as clients.csv.bak); those users can no longer log in, their sessions end."""
    chat = console.chat("clear file")
    if not yes and not console.confirm("Remove every account from clients.csv?"):
        click.echo("clear file cancelled: nothing changed")
        return
    removed, ended = chat.clear_accounts()
    if not removed:
        click.echo("clients.csv holds no accounts: nothing changed, clients.csv.bak kept as it was")
        return
    click.echo(f"clients.csv emptied: {removed} account(s) removed, {ended} session(s) ended, "
               "old file kept as clients.csv.bak")


@commands.group(cls=_Group, add_help_option=False)
def stop() -> None:
    """stop log"""


@stop.command("log", add_help_option=False)
@click.pass_obj
def stop_log(console: Console) -> None:
    """Hide log lines on the console (the file keeps them)."""
    console.logs.stop_console()
    click.echo("console logging stopped (the log file keeps everything)")


@commands.group(cls=_Group, add_help_option=False)
def start() -> None:
    """start log"""


@start.command("log", add_help_option=False)
@click.pass_obj
def start_log(console: Console) -> None:
    """Show log lines on the console again."""
    hidden = console.logs.start_console()
    click.echo(f"console logging started; {hidden} {'line was' if hidden == 1 else 'lines were'} hidden "
               "(the log file has them)")


@commands.command(add_help_option=False)
@click.pass_obj
def users(console: Console) -> None:
    """Chat: who is online, sessions and address each."""
    online = console.chat("users").users()
    for name, sessions, addresses in online:
        click.echo(f"{name}  sessions={sessions}  {', '.join(addresses)}")
    click.echo(f"{len(online)} user(s) online")


# kick and say check their argument themselves, after console.chat(): on the echo
# server they say they are chat-only, argument or not.

def _name_and_rest(command: str, line: str | None) -> tuple[str, str]:
    """A NAME and the rest of the line as typed (a REASON, a DURATION ...)."""
    name, _, rest = (line or "").partition(" ")
    if not name:
        raise click.UsageError(f"{command} needs a NAME")
    return name, rest.strip(" ")


def _duration_and_rest(command: str, rest: str) -> tuple[int | None, str]:
    """An optional DURATION, then the rest: a word that starts with a digit is a DURATION."""
    first, _, after = rest.partition(" ")
    if not first[:1].isdigit():
        return None, rest
    try:
        return parse_duration(first), after.strip(" ")
    except ValueError as exc:
        raise click.UsageError(f"{command}: {exc}") from None


def _refused(command: str, exc: ValueError) -> click.UsageError:
    """A name, room or message the server does not know: one line, nothing changed."""
    return click.UsageError(f"{command}: {exc}; nothing changed")


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("line", metavar="NAME [REASON]", required=False)
@click.pass_obj
def kick(console: Console, line: str | None) -> None:
    """Chat: end that user's sessions with `kicked` (the REASON, if given, in it)."""
    chat = console.chat("kick")
    name, reason = _name_and_rest("kick", line)
    try:
        ended = chat.kick(name, reason or None)
    except ValueError as exc:
        raise _refused("kick", exc) from None
    click.echo(f"kicked {name}: {ended} session(s) ended" if ended else f"{name} is not online")


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("line", metavar="NAME [DURATION] [REASON]", required=False)
@click.pass_obj
def ban(console: Console, line: str | None) -> None:
    """Chat: end the account's sessions, refuse its logins (`banned`) for DURATION or for good."""
    _restrict(console, "ban", BAN, line)


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("line", metavar="NAME", required=False)
@click.pass_obj
def unban(console: Console, line: str | None) -> None:
    """Chat: lift a ban."""
    _lift(console, "unban", BAN, line)


@commands.command(add_help_option=False)
@click.pass_obj
def bans(console: Console) -> None:
    """Chat: the bans in force, with their end and reason."""
    listed = console.chat("bans").restrictions(BAN)
    for name, until, reason in listed:
        click.echo(f"{name}  {until}  by the console" + (f"  reason: {reason}" if reason else ""))
    click.echo(f"{len(listed)} ban(s) in force")


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("line", metavar="NAME [DURATION]", required=False)
@click.pass_obj
def mute(console: Console, line: str | None) -> None:
    """Chat: every `say` of the account gets `muted`, for DURATION or until unmuted."""
    _restrict(console, "mute", MUTE, line)


def _restrict(console: Console, command: str, kind: str, line: str | None) -> None:
    """`ban` or `mute` (only a ban has a REASON), and what was done (a ban: sessions ended)."""
    chat = console.chat(command)
    name, rest = _name_and_rest(command, line)
    seconds, reason = _duration_and_rest(command, rest)
    if reason and kind == MUTE:
        raise click.UsageError(f"mute takes a NAME and a DURATION only, not {reason!r}")
    try:
        ended = chat.restrict(kind, name, seconds, reason)
    except ValueError as exc:
        raise _refused(command, exc) from None
    how_long = f"for {seconds} s" if seconds else "until lifted"
    done = f"{'banned' if kind == BAN else 'muted'} {name} {how_long}"
    click.echo(f"{done}: {ended} session(s) ended" if kind == BAN else done)


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("line", metavar="NAME", required=False)
@click.pass_obj
def unmute(console: Console, line: str | None) -> None:
    """Chat: lift a mute."""
    _lift(console, "unmute", MUTE, line)


def _lift(console: Console, command: str, kind: str, line: str | None) -> None:
    chat = console.chat(command)
    name, extra = _name_and_rest(command, line)
    if extra:
        raise click.UsageError(f"{command} takes a NAME only")
    try:
        chat.lift(kind, name)
    except ValueError as exc:
        raise _refused(command, exc) from None
    click.echo(f"{command}ned {name}" if kind == BAN else f"{command}d {name}")


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("line", metavar="NAME [--yes]", required=False)
@click.pass_obj
def remove(console: Console, line: str | None) -> None:
    """Chat: delete one account (asks first): sessions end, the name is free, messages stay."""
    chat = console.chat("remove")
    words = (line or "").split()
    names = [word for word in words if word != "--yes"]
    if len(names) != 1:
        raise click.UsageError("remove needs one NAME (and --yes to skip the question)")
    name = names[0]
    if "--yes" not in words and not console.confirm(f"Remove the account {name}?"):
        click.echo("remove cancelled: nothing changed")
        return
    try:
        ended = chat.remove(name)
    except ValueError as exc:
        raise _refused("remove", exc) from None
    click.echo(f"removed {name}: {ended} session(s) ended; the name is free, its messages stay")


@commands.command(add_help_option=False)
@click.argument("room", required=False)
@click.argument("seq", required=False)
@click.pass_obj
def delete(console: Console, room: str | None, seq: str | None) -> None:
    """Chat: erase a room's message from disk and history; version 2 sessions get `deleted`."""
    chat = console.chat("delete")
    if room is None or seq is None or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        raise click.UsageError("delete needs a ROOM and a SEQ (a whole number)")
    room = room.removeprefix("#")
    try:
        chat.delete(room, int(seq))
    except ValueError as exc:
        raise _refused("delete", exc) from None
    click.echo(f"deleted message {seq} of #{room}")


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("text", required=False)
@click.pass_obj
def say(console: Console, text: str | None) -> None:
    """Chat: send a notice to every authenticated session."""
    chat = console.chat("say")
    if text is None:
        raise click.UsageError("say needs a TEXT")
    reached = chat.say(text)
    click.echo(f"notice sent to {reached} session(s)")


@commands.command(add_help_option=False)
@click.pass_obj
def rooms(console: Console) -> None:
    """Chat: every room with its kind, owner, members, online members and last seq."""
    table = console.chat("rooms").rooms()
    for name, kind, owner, members, online, last_seq in table:
        click.echo(f"#{name}  {kind}  owner={owner or '-'}  members={members}  online={online}  "
                   f"last seq={last_seq}")
    click.echo(f"{len(table)} room(s)")


@commands.command(cls=_AsTyped, whole_line=True, add_help_option=False)
@click.argument("room_and_text", metavar="ROOM TEXT", required=False)
@click.pass_obj
def topic(console: Console, room_and_text: str | None) -> None:
    """Chat: set a room's topic as the operator (TEXT is the rest of the line as typed)."""
    chat = console.chat("topic")
    room, _, text = (room_and_text or "").partition(" ")
    text = text.lstrip(" ")
    if not room or not text:
        raise click.UsageError("topic needs a ROOM and a TEXT")
    problem = chat.topic(room, text)
    click.echo(problem or f"topic of #{room} set")


def command_words(line: str) -> list[str]:
    """A command line as click's arguments (see _AsTyped)."""
    words = line.split()
    command = commands.commands.get(words[0]) if words else None
    if not isinstance(command, _AsTyped) or len(words) == 1:
        return words
    if command.whole_line:
        return [words[0], "--", line.strip()[len(words[0]):].strip()]
    return [words[0], "--", *words[1:]]


def _leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def command_help() -> list[tuple[str, str]]:
    """(command, one line of help) for every command, as `help` prints them."""
    rows = []
    for name, command in _leaves(commands):
        usage = " ".join(p.human_readable_name for p in command.params if isinstance(p, click.Argument))
        rows.append((f"{name} {usage}".strip(), command.get_short_help_str(limit=90)))
    return rows


def command_tree() -> dict[str, dict | None]:
    """Command words nested as prompt_toolkit's NestedCompleter wants them."""
    tree: dict[str, dict | None] = {}
    for name, _ in _leaves(commands):
        first, _, rest = name.partition(" ")
        if rest:
            tree.setdefault(first, {})[rest] = None  # type: ignore[index]
        else:
            tree[first] = None
    return tree
