"""Files where the data lives: a local folder, or any scheme Beam's ``FileSystems`` knows
(``s3://``, ``gs://``, ...), behind one small interface the layouts and readers use.

Local paths go straight to ``os`` (no Beam import, as fast as before). Remote paths go through
``apache_beam.io.filesystems.FileSystems``: object stores have no folders, so a remote root is
listed once, recursively (one ``match`` of ``<root>/**``), and folders are derived from the keys;
the listing is kept for the process (``forget()`` drops it, as ``detect_layout`` does at each
call). S3-compatible stores with their own endpoint work through ``AWS_ENDPOINT_URL`` (boto3 reads
it) or Beam's ``--s3_endpoint_url`` (``configure``); credentials come from the usual environment.

Errors name the URI and what to do: a missing bucket, a refused listing, an empty prefix.
"""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from datasources.errors import DataError

IGNORED_PREFIXES = (".",)     # hidden files, skipped as local listings skip them
REMOTE_READ_THREADS = 16      # concurrent object reads (see read_many)
REMOTE_CHUNK = 64             # remote images per Beam work item (see layouts._list_images)


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing (the part of ``os.DirEntry`` the readers use)."""

    name: str
    path: str
    folder: bool

    def is_dir(self) -> bool:
        return self.folder

    def is_file(self) -> bool:
        return not self.folder


def scheme(path: str) -> str:
    """``s3`` for ``s3://b/k``; ``""`` for a local path (``file://`` counts as local)."""
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep and head.isalnum() and head.lower() != "file" else ""


def is_remote(path: str) -> bool:
    return bool(scheme(path))


def normalize(path: str) -> str:
    """A local path made absolute (``~`` expanded, links resolved); a URI without trailing '/'."""
    if is_remote(path):
        return str(path).rstrip("/")
    local = str(path)[len("file://"):] if str(path).startswith("file://") else str(path)
    return os.path.realpath(os.path.expanduser(local))


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *[p.strip("/") for p in parts if p])
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return posixpath.basename(str(path).rstrip("/")) if is_remote(path) else os.path.basename(path)


def dirname(path: str) -> str:
    return posixpath.dirname(str(path).rstrip("/")) if is_remote(path) else os.path.dirname(path)


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root``, with '/' separators."""
    if is_remote(path):
        return str(path)[len(root.rstrip("/")) + 1:]
    return os.path.relpath(path, root).replace(os.sep, "/")


# ---------------------------------------------------------------------------- remote listings
_trees: dict[str, dict[str, int]] = {}  # remote root -> {relative key: size}
_lock = threading.Lock()
_options: Any = None  # the run's Beam options (configure)
_s3: Any = None       # one S3IO (one boto3 client) per process, see open_binary


def configure(beam_args: Sequence[str]) -> None:
    """Give Beam's filesystems the run's options (``--s3_endpoint_url``, credentials...)."""
    if not any(a.startswith("--s3_") or a.startswith("--gcs_") or a.startswith("--hdfs_")
               for a in beam_args):
        return
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    global _options, _s3
    _options, _s3 = PipelineOptions(list(beam_args)), None
    FileSystems.set_options(_options)


def forget() -> None:
    """Drop the remembered remote listings (the store may have changed)."""
    with _lock:
        _trees.clear()


def _filesystems() -> Any:
    """Beam's FileSystems, with options: its S3 filesystem refuses to work without any (the
    run's from ``configure``, else defaults: endpoint and credentials from the environment)."""
    try:
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError as exc:  # pragma: no cover - apache-beam is a dependency
        raise DataError(f"remote data needs apache-beam ({exc})") from exc
    if getattr(FileSystems, "_pipeline_options", None) is None:
        FileSystems.set_options(_options or PipelineOptions([]))
    return FileSystems


# The store is asked once before Beam lists it. Beam's listing retries every failure with
# exponential backoff (a missing key: a minute of retry tracebacks) and boto3's defaults wait
# 60 s per connection attempt, five attempts (an unreachable endpoint: minutes of silence).
PROBE_CONFIG = {"connect_timeout": 5, "read_timeout": 30,
                "retries": {"max_attempts": 2, "mode": "standard"}}


def _probe_client() -> Any:
    """A boto3 S3 client with the run's Beam S3 options (endpoint, keys, region, TLS) where set,
    else boto3's own chain (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE...), and short
    timeouts (``PROBE_CONFIG``)."""
    import boto3
    from botocore.config import Config

    s3_options: dict[str, Any] = {}
    options = _options or getattr(_filesystems(), "_pipeline_options", None)  # as _s3io's
    if options is not None:
        from apache_beam.options.pipeline_options import S3Options

        s3_options = options.view_as(S3Options).get_all_options()
    kwargs = {"endpoint_url": s3_options.get("s3_endpoint_url"),
              "region_name": s3_options.get("s3_region_name"),
              "aws_access_key_id": s3_options.get("s3_access_key_id"),
              "aws_secret_access_key": s3_options.get("s3_secret_access_key"),
              "aws_session_token": s3_options.get("s3_session_token"),
              "verify": s3_options.get("s3_verify")}
    if s3_options.get("s3_disable_ssl"):
        kwargs["use_ssl"] = False
    # a session of its own, as Beam's client makes: boto3's default one keeps the credentials
    # it found first
    return boto3.session.Session().client("s3", config=Config(**PROBE_CONFIG),
                                          **{k: v for k, v in kwargs.items() if v is not None})


def _bucket_problem(uri: str) -> str | None:
    """For ``s3://``: why ``uri`` cannot be listed (no credentials, endpoint unreachable, bucket
    missing, listing refused), else None. One ``ListObjectsV2`` of at most one key under the
    prefix: the request Beam's listing makes, so it needs no permission the run does not."""
    if scheme(uri) != "s3":
        return None
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    try:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
        )
    except ImportError:
        return None
    client = _probe_client()
    endpoint = client.meta.endpoint_url
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/" if prefix else "",
                               MaxKeys=1)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return (f"bucket {bucket!r} does not exist (or not at this endpoint: {endpoint}); "
                    "check the URI, or set AWS_ENDPOINT_URL / --s3-endpoint-url for an "
                    "S3-compatible store")
        if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId",
                    "SignatureDoesNotMatch"):
            return (f"access to bucket {bucket!r} is denied; check the credentials "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE) and their "
                    "permission to list it")
        return f"bucket {bucket!r}: {code or exc}"
    except NoCredentialsError:
        return ("no credentials for the store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE)")
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        return (f"cannot reach the store at {endpoint} ({exc}); check --s3-endpoint-url / "
                "AWS_ENDPOINT_URL and the network")
    except BotoCoreError as exc:
        return f"cannot reach the store for bucket {bucket!r} at {endpoint} ({exc})"
    return None


def _tree(root: str) -> dict[str, int]:
    """Every object under remote ``root`` (one recursive listing, remembered)."""
    root = root.rstrip("/")
    with _lock:
        for known, keys in _trees.items():
            if root == known:
                return keys
            if root.startswith(known + "/"):
                prefix = root[len(known) + 1:] + "/"
                return {k[len(prefix):]: v for k, v in keys.items() if k.startswith(prefix)}
    FileSystems = _filesystems()  # noqa: N806 - Beam's class
    problem = _bucket_problem(root)  # before Beam's listing, which retries for minutes
    if problem:
        raise DataError(f"{root}: cannot list it ({problem})")
    try:
        matched = FileSystems.match([root + "/**"])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 - Beam wraps the store's errors in BeamIOError
        raise DataError(f"{root}: cannot list it ({_short(exc)})") from exc
    keys = {m.path[len(root) + 1:]: int(m.size_in_bytes) for m in matched
            if m.path.startswith(root + "/")}
    with _lock:
        _trees[root] = keys
    return keys


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _visible(rel: str) -> bool:
    return not any(part.startswith(IGNORED_PREFIXES) for part in rel.split("/"))


# ---------------------------------------------------------------------------- the interface
def _known(path: str) -> dict[str, int] | None:
    """The remembered listing that covers ``path``'s folder, without a new listing."""
    folder = dirname(path).rstrip("/")
    with _lock:
        for known, keys in _trees.items():
            if folder == known:
                return {k: v for k, v in keys.items() if "/" not in k}
            if folder.startswith(known + "/"):
                prefix = folder[len(known) + 1:] + "/"
                return {k[len(prefix):]: v for k, v in keys.items()
                        if k.startswith(prefix) and "/" not in k[len(prefix):]}
    return None


def _remote_file_size(path: str) -> int | None:
    known = _known(path)
    if known is not None:
        return known.get(basename(path))
    try:
        matched = _filesystems().match([path])[0].metadata_list
    except Exception:  # noqa: BLE001 - no such object
        return None
    return next((int(m.size_in_bytes) for m in matched if m.path == path), None)


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    return isdir(path) or _remote_file_size(path) is not None


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    return bool(_tree(path))


def isfile(path: str) -> bool:
    if not is_remote(path):
        return os.path.isfile(path)
    return not isdir(path) and _remote_file_size(path) is not None


def size(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    found = _remote_file_size(path)
    if found is None:
        raise DataError(f"{path}: no such object")
    return found


def list_dir(path: str, ignored: Any = None) -> list[Entry]:
    """Visible entries of a folder, sorted by name (``ignored(name)``: more names to skip)."""
    skip = ignored or (lambda _name: False)
    if not is_remote(path):
        with os.scandir(path) as it:
            return sorted((Entry(e.name, e.path, e.is_dir()) for e in it
                           if not skip(e.name)), key=lambda e: e.name)
    found: dict[str, bool] = {}
    for rel in _tree(path):
        head, _, rest = rel.partition("/")
        if _visible(head) and not skip(head):
            found[head] = found.get(head, False) or bool(rest)
    return [Entry(name, join(path, name), folder) for name, folder in sorted(found.items())]


def glob_files(root: str, pattern: str) -> list[str]:
    """Files matching ``root/pattern`` (``*`` stays within one folder level), sorted."""
    if not is_remote(root):
        import glob

        return sorted(p for p in glob.glob(os.path.join(root, pattern)) if os.path.isfile(p))
    depth = pattern.count("/")
    return sorted(join(root, rel) for rel in _tree(root)
                  if rel.count("/") == depth and fnmatch.fnmatchcase(rel, pattern)
                  and _visible(rel))


def _s3io() -> Any:
    """Beam's S3IO, made once: ``FileSystems.open`` makes a new one (a new boto3 client, about
    0.1 s) for every file, which made 1,797 small PNGs take 200x longer than from disk."""
    global _s3
    with _lock:
        if _s3 is None:
            from apache_beam.io.aws import s3io
            from apache_beam.options.pipeline_options import PipelineOptions

            options = _options or getattr(_filesystems(), "_pipeline_options", None)
            _s3 = s3io.S3IO(options=options or PipelineOptions([]))
        return _s3


def open_binary(path: str) -> IO[bytes]:
    if not is_remote(path):
        return open(path, "rb")
    try:
        if scheme(path) == "s3":
            return _s3io().open(path, "rb")  # type: ignore[no-any-return]
        return _filesystems().open(path)
    except Exception as exc:  # noqa: BLE001 - the store's error, with the URI
        raise DataError(f"{path}: cannot read it ({_short(exc)})") from exc


def read_bytes(path: str) -> bytes:
    if scheme(path) == "s3":  # one GET (S3IO.open makes a HEAD first)
        bucket, _, key = path[len("s3://"):].partition("/")
        try:
            response = _s3io().client.client.get_object(Bucket=bucket, Key=key)
            return bytes(response["Body"].read())
        except Exception as exc:  # noqa: BLE001 - the store's error, with the URI
            raise DataError(f"{path}: cannot read it ({_short(exc)})") from exc
    with open_binary(path) as handle:
        return handle.read()


def read_many(paths: Sequence[str], threads: int = REMOTE_READ_THREADS) -> list[bytes]:
    """The contents of ``paths``, in order: remote ones fetched ``threads`` at a time (an object
    store answers each request in milliseconds, and many requests at once as fast as one)."""
    if len(paths) < 2 or not any(is_remote(p) for p in paths):
        return [read_bytes(p) for p in paths]
    if any(scheme(p) == "s3" for p in paths):
        # boto3 keeps max_pool_connections (10 by default; Beam sets no other) connections per
        # client: a thread beyond that opened a connection per GET and threw it away.
        threads = min(threads, _s3io().client.client.meta.config.max_pool_connections)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(paths)), thread_name_prefix="storage-read") as pool:
        return list(pool.map(read_bytes, paths))


def open_text(path: str) -> IO[str]:
    if not is_remote(path):
        return open(path, encoding="utf-8")
    return io.TextIOWrapper(open_binary(path), encoding="utf-8")  # type: ignore[arg-type]
