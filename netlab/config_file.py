"""`--config FILE`: a server's options from a TOML file (CLI.md, version 2).

The file's keys are the command's long option names without `--` (`max-clients = 500`,
`no-repl = true`, `web-origin = ["https://a.example"]`). The file only fills click's
`default_map`, so every value goes through the option's own type and callback exactly as
the same value typed on the command line would, and the command line wins wherever it
gives an option. What this module adds is what click cannot know: which keys exist, that a
TOML value has the option's kind (`port = true` or `max-clients = 1.9` would otherwise be
quietly read as 1), and which key of which file a refused value came from.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

#: Where the callback leaves the file's path, for naming it in an error about one of its values.
_META_KEY = "netlab.config_file"


def config_option():
    """`--config FILE`, eager so the file's values are in place before any other option is read."""
    return click.option(
        "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=read_config, is_eager=True, expose_value=False, metavar="FILE",
        help="Read option values from this TOML file (keys: the option names without --, "
             "e.g. max-clients = 500); the command line wins.")


def option_keys(command: click.Command) -> dict[str, click.Option]:
    """The keys a file may give for `command`: every option that reaches the command, by its
    long name without `--` (so neither `help` nor `config` itself)."""
    keys = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.expose_value:
            long_names = [name for name in param.opts if name.startswith("--")]
            keys[long_names[0].removeprefix("--")] = param
    return keys


def read_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Load `path` into `ctx.default_map`; an unreadable file, bad TOML, an unknown key or a
    value of the wrong kind is a bad option naming the key and the file."""
    if path is None:
        return
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}") from None
    keys = option_keys(ctx.command)
    values: dict[str, Any] = {}
    for key, value in table.items():
        option = keys.get(key)
        if option is None:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise click.BadParameter(f"unknown key {key!r} in {path}{hint}")
        problem = _kind_problem(option, value)
        if problem is not None:
            raise click.BadParameter(problem, param_hint=_hint(key, path))
        values[option.name] = value
    ctx.meta[_META_KEY] = path
    ctx.default_map = {**(ctx.default_map or {}), **values}


def name_file_value(ctx: click.Context, error: click.BadParameter) -> None:
    """Make an error about a value that came from the file name its key and the file
    (click would name the `--option`, which the user never typed)."""
    path = ctx.meta.get(_META_KEY)
    option = error.param
    if path is None or not isinstance(option, click.Option) or option.name is None:
        return
    if ctx.get_parameter_source(option.name) is ParameterSource.DEFAULT_MAP:
        key = next(key for key, known in option_keys(ctx.command).items() if known is option)
        error.param_hint = _hint(key, path)


def _hint(key: str, path: Path) -> str:
    return f"{key!r} in {path}"


def _kind_problem(option: click.Option, value: Any) -> str | None:
    """Why `value` is not of the TOML kind `option` takes, or None if it is. Only the kind:
    ranges and forms are the option type's own business."""
    if option.multiple:
        if not isinstance(value, list):
            return f"expected an array, got {_toml_kind(value)}"
        return next((f"in the array: {problem}" for item in value
                     if (problem := _kind_problem_one(option, item)) is not None), None)
    return _kind_problem_one(option, value)


def _kind_problem_one(option: click.Option, value: Any) -> str | None:
    if option.is_flag or isinstance(option.type, click.types.BoolParamType):
        wanted, ok = "true or false", isinstance(value, bool)
    elif isinstance(option.type, click.types.IntParamType):
        wanted, ok = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(option.type, click.types.FloatParamType):
        wanted, ok = "a number", isinstance(value, int | float) and not isinstance(value, bool)
    else:
        wanted, ok = "a string", isinstance(value, str)
    return None if ok else f"expected {wanted}, got {_toml_kind(value)} ({value!r})"


def _toml_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "a date or time")
