"""Errors the registry raises. The CLIs turn them into one line on stderr and an exit code."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(RegistryError, ValueError):
    """A bad argument, name, path or archive: the user can fix it (exit 2)."""

    exit_code = 2


class NotFoundError(InputError, LookupError):
    """The named model, version or label does not exist (exit 2)."""


class ConflictError(InputError):
    """The request contradicts the current state, e.g. deleting a serving model (exit 2)."""


class BackendError(RegistryError):
    """The metadata store could not be reached or answered with an error (exit 1)."""
