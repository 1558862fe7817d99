"""Click helpers shared by ``mlmodel`` and ``serving status``.

* ``key=value`` arguments (IRIS style) become ``--key value`` (or a positional value when ``key`` is
  an argument's name); surrounding quotes are dropped (``label='stable'``).
* ``--metadata``, ``--serving-dir``, ``--output`` work on the group and on every command.
* Registry errors become one line on stderr and exit 2 (input) or 1 (backend); never a traceback.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import click

from contracts import settings as contract_settings
from metastore.errors import RegistryError
from registry import render

METADATA_HELP = ("MLMD SQLite path or mysql://user[:pw]@host:port/db "
                 f"(env {contract_settings.ENV_METADATA}, "
                 f"default {contract_settings.DEFAULT_METADATA}).")
SERVING_DIR_HELP = (f"Serving directory (env {contract_settings.ENV_SERVING_DIR}, "
                    f"default {contract_settings.DEFAULT_SERVING_DIR}).")

KV_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)=(.*)$", re.S)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def rewrite_kv(command: click.Command, args: list[str]) -> list[str]:
    """Turn ``key=value`` tokens into the option or argument they name."""
    options = {}
    arguments = set()
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                if opt.startswith("--"):
                    options[opt[2:].replace("-", "_").lower()] = opt
        elif isinstance(param, click.Argument) and param.name:
            arguments.add(param.name.lower())
    out: list[str] = []
    rest = False
    for token in args:
        match = None if rest or token.startswith("-") else KV_RE.match(token)
        if token == "--":
            rest = True
        if match:
            key = match.group(1).replace("-", "_").lower()
            value = _unquote(match.group(2))
            if key in options:
                flag_param = next(p for p in command.params
                                  if isinstance(p, click.Option) and options[key] in p.opts)
                if flag_param.is_flag:
                    if value.lower() in ("1", "true", "yes", "on"):
                        out.append(options[key])
                    continue
                out.extend([options[key], value])
                continue
            if key in arguments:
                out.append(value)
                continue
        out.append(_unquote(token) if not token.startswith("-") else token)
    return out


class KVCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_kv(self, args))


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--metadata / --serving-dir / --output / --user on a command (override the group's)."""
    fn = click.option("--output", "-o", type=click.Choice(render.OUTPUTS, case_sensitive=False),
                      default=None, help="table (default) or json.")(fn)
    fn = click.option("--serving-dir", default=None, metavar="DIR", help=SERVING_DIR_HELP)(fn)
    fn = click.option("--metadata", default=None, metavar="PATH|URI", help=METADATA_HELP)(fn)
    return fn


@dataclass(frozen=True)
class Settings:
    """The options every ``mlmodel`` command shares, merged from the group and the command."""

    metadata: str | None = None
    serving_dir: str | None = None
    output: str = "table"
    user: str | None = None


SETTING_NAMES = tuple(f.name for f in fields(Settings))


def settings(ctx: click.Context) -> Settings:
    """Command-level options win over the group's."""
    merged: dict[str, Any] = {}
    chain = []
    current: click.Context | None = ctx
    while current is not None:
        chain.append(current)
        current = current.parent
    for level in reversed(chain):
        for key in SETTING_NAMES:
            value = level.params.get(key)
            if value is not None:
                merged[key] = value
    merged["output"] = str(merged.get("output", "table")).lower()
    return Settings(**merged)


def settings_registry(ctx: click.Context, read_only: bool = False) -> tuple[Any, str]:
    """The registry the options name, and the output format. ``read_only``: its reads only
    (``registry.reads``, without importing the writes: ``mlmodel list`` starts faster)."""
    values = settings(ctx)
    if read_only:
        from registry.reads import open_reader

        return open_reader(values.metadata, values.serving_dir), values.output
    from registry.api import open_registry

    return open_registry(values.metadata, values.serving_dir), values.output


CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
USER_HELP = "Who acts (default $USER, else root)."


def command(name: str, epilog: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A ``mlmodel`` subcommand (key=value arguments, the examples as its epilog); the root group
    in ``registry/cli/__init__.py`` adds it from its table."""
    return click.command(name, cls=KVCommand, epilog="\b\nExamples:\n" + epilog,
                         context_settings=CONTEXT)


def user_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--user", default=None, help=USER_HELP)(fn)


def acting_user(ctx: click.Context, user: str | None) -> str | None:
    return user or settings(ctx).user


def fail_on_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Registry errors -> one line on stderr and exit 2 (input) or 1; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except RegistryError as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        except Exception as exc:  # the CLI promise: one line, no traceback
            sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
            sys.exit(1)

    return wrapper
