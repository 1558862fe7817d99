"""Safe tar import and atomic tar export of model directories.

Import refuses members with absolute paths, ``..``, symlinks, hard links, devices/FIFOs, and members
(or a total) larger than a cap; it extracts member by member (never ``extractall``) into a
dot-prefixed staging directory, then checks the files the type requires (tf: ``saved_model.pb`` or
``model.h5``). Export writes ``<path>.tmp-*`` beside the target, fsyncs and renames it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
from dataclasses import dataclass

from contracts.signatures import SAVED_MODEL_FILE
from registry import files
from registry.errors import InputError

DEFAULT_MAX_MEMBER_BYTES = 2 * 1024**3  # 2 GiB per member
MAX_MEMBER_ENV = "MLMODEL_IMPORT_MAX_MEMBER_BYTES"
REQUIRED = {"saved_model": SAVED_MODEL_FILE, "h5": "model.h5"}


@dataclass(frozen=True)
class Extracted:
    staging: str  # the dot-prefixed directory holding the archive's files
    relative_root: str  # where the model files are inside it ('' or a subdirectory)

    @property
    def root(self) -> str:
        return os.path.join(self.staging, self.relative_root)


def max_member_bytes(override: int | None = None) -> int:
    if override is not None:
        return override
    value = os.environ.get(MAX_MEMBER_ENV, "")
    if value:
        try:
            return int(value)
        except ValueError:
            raise InputError(f"${MAX_MEMBER_ENV}={value!r} is not an integer byte count") from None
    return DEFAULT_MAX_MEMBER_BYTES


def check_member(archive: str, member: tarfile.TarInfo, cap: int) -> str:
    """The member's safe relative path, or an InputError naming the archive, member and rule."""
    name = member.name
    where = f"archive {archive}: member {name!r}"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"{where} has an absolute path; archives must hold relative paths")
    normalized = posixpath.normpath(name)
    if normalized == ".." or normalized.startswith("../") or "/../" in f"/{name}/":
        raise InputError(f"{where} contains '..'; refusing a path that could leave the target")
    if member.issym():
        raise InputError(f"{where} is a symbolic link; archive the real files instead")
    if member.islnk():
        raise InputError(f"{where} is a hard link; archive the real files instead")
    if not (member.isfile() or member.isdir()):
        raise InputError(f"{where} is a device, FIFO or other special file; only files allowed")
    if member.size > cap:
        raise InputError(f"{where} is {member.size} bytes, over the {cap}-byte cap "
                         f"(raise it with --max-member-bytes or ${MAX_MEMBER_ENV})")
    return "" if normalized == "." else normalized


def extract_model(archive: str, parent: str, fmt: str, cap: int | None = None) -> Extracted:
    """Check every member of ``archive``, extract it under ``parent`` and find the model root."""
    if fmt not in REQUIRED:
        raise InputError(f"format={fmt!r}: use one of {', '.join(REQUIRED)}")
    if not os.path.isfile(archive):
        raise InputError(f"path={archive!r}: no such archive file")
    limit = max_member_bytes(cap)
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by `with tar` below)
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"path={archive!r} is not a readable tar archive: {exc}") from None
    with tar:
        members = tar.getmembers()
        checked = [(m, check_member(archive, m, limit)) for m in members]
        total = sum(m.size for m, _ in checked)
        if total > 4 * limit:
            raise InputError(f"archive {archive} holds {total} bytes, over 4x the member cap")
        required = REQUIRED[fmt]
        roots = sorted((posixpath.dirname(rel) for m, rel in checked
                        if m.isfile() and posixpath.basename(rel) == required),
                       key=lambda r: (r.count("/"), r))
        if not roots:
            raise InputError(f"archive {archive} has no {required}; a tf {fmt} model needs it "
                             "(tar the model directory, e.g. `tar -cf model.tar -C DIR .`)")
        os.makedirs(parent, exist_ok=True)
        staging = files.staging_dir(parent)
        os.mkdir(staging)
        try:
            for member, rel in checked:
                if not rel:
                    continue
                target = os.path.join(staging, rel)
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise InputError(f"archive {archive}: member {member.name!r} cannot be read")
                with source, open(target, "xb") as out:
                    copied = 0
                    while chunk := source.read(1 << 20):
                        copied += len(chunk)
                        if copied > limit:
                            raise InputError(f"archive {archive}: member {member.name!r} is "
                                             f"larger than the {limit}-byte cap")
                        out.write(chunk)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Extracted(staging, roots[0])


def write_tar(source: str, path: str) -> tuple[int, str]:
    """Tar directory ``source`` (contents at the archive root) into ``path`` atomically.

    Returns (size in bytes, sha256 hex).
    """
    if not os.path.isdir(source):
        raise InputError(f"model directory {source} does not exist; nothing to export")
    target = os.path.abspath(path)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise InputError(f"path={path!r}: directory {parent} does not exist")
    if os.path.isdir(target):
        raise InputError(f"path={path!r} is a directory; give a file name such as model.tar")
    temp = f"{target}.tmp-{os.getpid()}"
    try:
        with tarfile.open(temp, "w") as tar:
            for dirpath, dirnames, filenames in os.walk(source):
                dirnames.sort()
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    if os.path.islink(full):
                        continue
                    tar.add(full, arcname=os.path.relpath(full, source), recursive=False)
        digest = hashlib.sha256()
        with open(temp, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return os.path.getsize(target), digest.hexdigest()
