"""Settings declared once, as typed dataclass fields that carry their command-line flag.

The runners' ``PipelineConfig`` (pipeline/config.py) and the server's ``StartOptions``
(serving/options.py) declare each setting as a field whose default is the only default, with a
``Flag`` in its metadata. The CLIs generate their click options from those fields
(``option_spec`` gives the names and keyword arguments; the caller hands them to ``click.option``,
so this module stays standard-library only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

FLAG = "flag"        # field metadata key: the field's Flag
NO_FLAG = "no_flag"  # field metadata key: why the field has no flag of its own


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one setting appears on a command line; its default is the field's."""

    help: str | None = None
    names: tuple[str, ...] = ()  # empty: --<field-name>; '--x/--no-x' for an on/off pair; more: aliases
    type: Any = None             # a click type; None: the default's type (a bool is an on/off flag)
    metavar: str | None = None
    envvar: str | None = None    # read when the flag is not given
    parse: Callable[[Any], Any] | None = None  # the flag's value -> the field's value
    hidden: bool = False         # set by programs, not people (kept out of --help)
    show_default: bool | str | None = None  # None: show it unless it is None/False

    def option_names(self, field_name: str) -> tuple[str, ...]:
        return self.names or ("--" + field_name.replace("_", "-"),)


def flag(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
         **spec: Any) -> Any:
    """A dataclass field with its command-line flag (``spec``: the ``Flag`` fields)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={FLAG: Flag(**spec)})


def no_flag(why: str, default: Any = dataclasses.MISSING, *,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that has no flag of its own, and why."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={NO_FLAG: why})


def field_default(field: dataclasses.Field[Any]) -> Any:
    """A field's default value (None when it has none)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def option_spec(name: str, spec: Flag, default: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``click.option``'s arguments for the field ``name``: (names + dest, keyword arguments)."""
    names = spec.option_names(name)
    kwargs: dict[str, Any] = {"default": default, "help": spec.help, "metavar": spec.metavar,
                              "envvar": spec.envvar, "hidden": spec.hidden}
    if spec.type is not None:
        kwargs["type"] = spec.type
    if isinstance(default, bool) and "/" not in names[0]:
        kwargs["is_flag"] = True
    if spec.show_default is not None:
        kwargs["show_default"] = spec.show_default
    elif default is not None and default is not False:
        kwargs["show_default"] = True
    return (*names, name), kwargs


def values_from_options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """Field values of the dataclass ``cls`` from parsed flags (parsed by each ``Flag.parse``)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        spec: Flag | None = field.metadata.get(FLAG)
        if spec is not None and field.name in options:
            value = options[field.name]
            values[field.name] = spec.parse(value) if spec.parse and value is not None else value
    return values
