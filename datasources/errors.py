"""The one error bad input data raises, shared by the readers, the layouts and the storage."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used; the message names the file or folder and what to do."""
