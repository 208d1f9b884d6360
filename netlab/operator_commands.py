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
    for name, text in command_help():
        click.echo(f"  {name:<12} {text}")


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

@commands.command(cls=_AsTyped, add_help_option=False)
@click.argument("name", required=False)
@click.pass_obj
def kick(console: Console, name: str | None) -> None:
    """Chat: end that user's sessions with `kicked`."""
    chat = console.chat("kick")
    if name is None:
        raise click.UsageError("kick needs a NAME")
    ended = chat.kick(name)
    click.echo(f"kicked {name}: {ended} session(s) ended" if ended else f"{name} is not online")


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
