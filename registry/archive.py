"""Safe tar import and atomic tar export of model directories.

Import refuses members with absolute paths, ``..``, symlinks, hard links, devices/FIFOs, and members
(or a total) larger than a cap; it extracts member by member (never ``extractall``) into a
dot-prefixed staging directory, then checks the files the type requires (tf: ``saved_model.pb`` or
``model.h5``). Export writes ``<path>.tmp-*`` beside the target, fsyncs and renames it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import posixpath
import shutil
import tarfile
import zlib
from dataclasses import dataclass

from contracts import publish
from contracts.signatures import SAVED_MODEL_FILE
from metastore.errors import InputError

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
    """The member's safe relative path, or an InputError naming the archive, member and rule.

    Everything here reads the member's header only: an oversized or sparse member is refused by
    its declared size before any byte of the archive is extracted.
    """
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
    if member.issparse():
        raise InputError(f"{where} is a sparse file ({member.size} bytes when expanded); "
                         "archive it without --sparse (`tar -cf`, not `tar -S`)")
    if member.size > cap:
        raise InputError(f"{where} is {member.size} bytes, over the {cap}-byte cap "
                         f"(raise it with --max-member-bytes or ${MAX_MEMBER_ENV})")
    return "" if normalized == "." else normalized


def check_layout(archive: str, checked: list[tuple[tarfile.TarInfo, str]]) -> None:
    """Refuse a path given twice (as files, or as a file and a directory) and a file that
    another member needs as a directory: extraction would fail half-way or keep one of them."""
    kinds: dict[str, str] = {}
    for member, rel in checked:
        if not rel:
            continue
        kind = "directory" if member.isdir() else "file"
        seen = kinds.get(rel)
        if seen is not None and (seen == "file" or kind == "file"):
            raise InputError(f"archive {archive}: member {member.name!r} is a {kind}, but the "
                             f"archive already has a {seen} at {rel!r}; rebuild the archive "
                             "with each path once")
        kinds[rel] = kind
    for rel in kinds:
        parent = posixpath.dirname(rel)
        while parent:
            if kinds.get(parent) == "file":
                raise InputError(f"archive {archive}: {rel!r} lies under {parent!r}, which the "
                                 "archive holds as a file; rebuild the archive with each path once")
            parent = posixpath.dirname(parent)


def _unreadable(archive: str, exc: BaseException) -> InputError:
    detail = str(exc).replace("\n", " ") or type(exc).__name__
    return InputError(f"path={archive!r}: the archive is truncated or corrupt ({detail}); "
                      "copy or create it again")


# What reading a damaged .tar/.tar.gz/.tar.bz2/.tar.xz raises: tarfile.ReadError, EOFError
# ("Compressed file ended before the end-of-stream marker"), gzip.BadGzipFile and CRC errors
# (OSError), zlib.error, lzma.LZMAError.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def remove_stale_staging(parent: str) -> list[str]:
    """Remove staging directories that imports killed before they finished left in ``parent``.

    Safe without the registry lock: ``publish.stale_staging`` lists only directories named after
    a process on this host that no longer runs, which nobody can rename or write to any more
    (two importers removing the same one tolerate each other).
    """
    removed = []
    for path in publish.stale_staging(parent):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def extract_model(archive: str, parent: str, fmt: str, cap: int | None = None) -> Extracted:
    """Check every member of ``archive``, extract it under ``parent`` and find the model root.

    Every problem with the archive (unsafe or clashing members, truncated or corrupt
    compression) is an InputError naming it; nothing is written until all headers are checked.
    """
    if fmt not in REQUIRED:
        raise InputError(f"format={fmt!r}: use one of {', '.join(REQUIRED)}")
    if not os.path.isfile(archive):
        raise InputError(f"path={archive!r}: no such archive file")
    limit = max_member_bytes(cap)
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by `with tar` below)
    except _READ_ERRORS as exc:
        raise InputError(f"path={archive!r} is not a readable tar archive: "
                         f"{str(exc).replace(chr(10), ' ')}") from None
    with tar:
        try:
            members = tar.getmembers()  # reads every header, so a truncated archive fails here
        except _READ_ERRORS as exc:
            raise _unreadable(archive, exc) from None
        checked = [(m, check_member(archive, m, limit)) for m in members]
        check_layout(archive, checked)
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
        remove_stale_staging(parent)
        staging = publish.staging_dir(parent)
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
                _copy_member(archive, tar, member, target, limit)
            _check_compressed_tail(archive, tar)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Extracted(staging, roots[0])


def _check_compressed_tail(archive: str, tar: tarfile.TarFile) -> None:
    """Read a compressed archive to its end: gzip, bzip2 and xz check their CRC only there, and
    tarfile stops at the end-of-archive marker, so corrupt data would otherwise go unnoticed."""
    stream = tar.fileobj
    if not isinstance(stream, gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile):
        return
    try:
        while stream.read(1 << 20):
            pass
    except _READ_ERRORS as exc:
        raise _unreadable(archive, exc) from None


def _copy_member(archive: str, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str,
                 limit: int) -> None:
    try:
        source = tar.extractfile(member)
    except _READ_ERRORS as exc:
        raise _unreadable(archive, exc) from None
    if source is None:
        raise InputError(f"archive {archive}: member {member.name!r} cannot be read")
    with source, open(target, "xb") as out:
        copied = 0
        while True:
            try:
                chunk = source.read(1 << 20)
            except _READ_ERRORS as exc:  # a read error, not a write one: the archive is bad
                raise _unreadable(archive, exc) from None
            if not chunk:
                break
            copied += len(chunk)
            if copied > limit:  # a backstop: the declared size was checked before
                raise InputError(f"archive {archive}: member {member.name!r} is "
                                 f"larger than the {limit}-byte cap")
            out.write(chunk)
    if copied != member.size:
        raise _unreadable(archive, EOFError(f"member {member.name!r} has {copied} of its "
                                            f"{member.size} bytes"))


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
