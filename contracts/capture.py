"""Where captured requests live and how their files are named: the server writes, `mlmodel` reads.

Layout: ``<capture_dir>/<serving_name>/<version>/<file>``. Each file is a TFRecord of TF Serving's
``tensorflow.serving.PredictionLog`` protos (the format of TF Serving's request logging), one
record per sampled request with its response. A file being written carries the ``.tmp`` suffix
and is renamed to its final name when it is rotated, so readers only ever see whole files.
"""

from __future__ import annotations

import os
import re

FILE_PREFIX = "capture-"
FILE_SUFFIX = ".tfrecord"
PARTIAL_SUFFIX = ".tmp"
# capture-<utc yyyymmddThhmmss>-<pid>-<seq>.tfrecord: sorts by time, unique per process.
_NAME = re.compile(r"^capture-(\d{8}T\d{6})-(\d+)-(\d+)\.tfrecord$")


def version_dir(capture_dir: str, serving_name: str, version: int) -> str:
    """The folder one version's captured requests go to."""
    return os.path.join(capture_dir, serving_name, str(int(version)))


def file_name(utc_stamp: str, pid: int, seq: int) -> str:
    """A finished capture file's name; ``utc_stamp`` is ``%Y%m%dT%H%M%S`` in UTC."""
    return f"{FILE_PREFIX}{utc_stamp}-{pid}-{seq:06d}{FILE_SUFFIX}"


def is_capture_file(name: str) -> bool:
    """True for a finished (rotated) capture file; partial ``.tmp`` files are never read."""
    return _NAME.match(name) is not None


def file_stamp(name: str) -> str | None:
    """The UTC stamp a finished capture file was opened at, or None for other names."""
    match = _NAME.match(name)
    return match.group(1) if match else None
