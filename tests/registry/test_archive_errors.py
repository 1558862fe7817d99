"""Issue 10: every archive problem on ``mlmodel import`` is one line and exit 2; sparse and
oversized members are refused by their headers before anything is written; staging left by a
killed import is removed by the next import of that model."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from contracts import publish
from metastore.errors import InputError
from registry import archive, files
from tests.registry.conftest import Env


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def dir_info(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
             mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


PB = file_info("model/saved_model.pb", b"pb" * 5000)
VARS = file_info("model/variables/variables.data-00000-of-00001", os.urandom(200_000))


def managed(env: Env, name: str) -> Path:
    return Path(env.serving_dir) / ".registry" / "models" / name


def assert_one_line_exit_2(env: Env, path: Path, fragment: str) -> None:
    proc = env.run("import", "--name", "bad", "--path", str(path))
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in proc.stderr and str(path) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    bad = managed(env, "bad")
    assert not bad.is_dir() or os.listdir(bad) == []


def truncated_gz(tmp_path: Path) -> Path:
    whole = make_tar(tmp_path / "whole.tar.gz", [PB, VARS], "w:gz").read_bytes()
    path = tmp_path / "truncated.tar.gz"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def corrupt_gz(tmp_path: Path) -> Path:
    data = bytearray(make_tar(tmp_path / "whole.tar.gz", [PB, VARS], "w:gz").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(data))
    return path


def truncated_tar(tmp_path: Path) -> Path:
    whole = make_tar(tmp_path / "whole.tar", [PB, VARS]).read_bytes()
    path = tmp_path / "truncated.tar"
    path.write_bytes(whole[:100_000])
    return path


def bad_crc_gz(tmp_path: Path) -> Path:
    raw = make_tar(tmp_path / "whole.tar", [PB]).read_bytes()
    data = bytearray(gzip.compress(raw))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = tmp_path / "badcrc.tar.gz"
    path.write_bytes(bytes(data))
    return path


CASES = {
    "duplicate file": (lambda p: make_tar(p / "a.tar", [PB, file_info("model/x", b"1"),
                                                        file_info("model/x", b"2")]),
                       "already has a file"),
    "file then directory": (lambda p: make_tar(p / "a.tar", [PB, file_info("model/x", b"1"),
                                                             dir_info("model/x")]),
                            "already has a file"),
    "directory then file": (lambda p: make_tar(p / "a.tar", [PB, dir_info("model/x"),
                                                             file_info("model/x", b"1")]),
                            "already has a directory"),
    "file used as a directory": (lambda p: make_tar(p / "a.tar", [
        PB, file_info("model/x", b"1"), file_info("model/x/y", b"2")]), "as a file"),
    "same path spelled twice": (lambda p: make_tar(p / "a.tar", [
        PB, file_info("model/x", b"1"), file_info("./model//x", b"2")]), "already has a file"),
    "truncated tar.gz": (truncated_gz, "truncated or corrupt"),
    "corrupt tar.gz": (corrupt_gz, "corrupt"),
    "truncated tar": (truncated_tar, "truncated or corrupt"),
    "gzip CRC error": (bad_crc_gz, "corrupt"),
    "not an archive": (lambda p: (p / "junk.tar.gz").write_bytes(b"\x1f\x8b\x08junk")
                       and p / "junk.tar.gz", "not a readable tar archive"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_archive_problems_are_input_errors(sqlite_env: Env, tmp_path: Path, case: str) -> None:
    build, fragment = CASES[case]
    path = build(tmp_path)
    with pytest.raises(InputError, match=fragment):
        sqlite_env.registry().import_model("bad", str(path), validate=False)
    bad = managed(sqlite_env, "bad")
    assert not bad.is_dir() or os.listdir(bad) == []


@pytest.mark.parametrize("case", ["duplicate file", "file then directory", "truncated tar.gz",
                                  "corrupt tar.gz"])
def test_cli_prints_one_line_and_exits_2(sqlite_env: Env, tmp_path: Path, case: str) -> None:
    build, fragment = CASES[case]
    assert_one_line_exit_2(sqlite_env, build(tmp_path), fragment)


def test_duplicate_directories_are_fine(sqlite_env: Env, tmp_path: Path) -> None:
    path = make_tar(tmp_path / "dirs.tar", [dir_info("model"), dir_info("model/"), PB,
                                            dir_info("model/variables"), VARS])
    reg = sqlite_env.registry()
    artifact_id = reg.import_model("dirs", str(path), validate=False)
    uri = reg.model_files("dirs")[0]
    assert artifact_id > 0 and [r.name for r in reg.list_models()] == ["dirs"]
    assert sorted(os.listdir(uri)) == ["saved_model.pb", "variables"]
    assert os.path.isfile(os.path.join(uri, "saved_model.pb"))


def sparse_tar(tmp_path: Path, size: str, fmt: str) -> Path:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is needed to build a sparse archive")
    src = tmp_path / "src"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(b"pb")
    subprocess.run(["truncate", "-s", size, str(src / "big.data")], check=True)
    path = tmp_path / f"sparse-{fmt}.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(path), "-C", str(src),
                    "saved_model.pb", "big.data"], check=True)
    with tarfile.open(path) as tar:
        if not tar.getmember("big.data").issparse():
            pytest.skip("this file system does not make sparse files")
    return path


def forbid_staging(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(parent: str) -> str:
        raise AssertionError("a staging directory was created before the archive was checked")

    monkeypatch.setattr(publish, "staging_dir", refuse)


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
@pytest.mark.parametrize("size", ["1M", "10G"])
def test_sparse_member_is_refused_before_writing(sqlite_env: Env, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, fmt: str,
                                                 size: str) -> None:
    path = sparse_tar(tmp_path, size, fmt)
    assert path.stat().st_size < 1024 * 1024
    forbid_staging(monkeypatch)
    with pytest.raises(InputError, match="sparse"):
        sqlite_env.registry().import_model("bad", str(path), validate=False)


def test_sparse_member_via_cli(sqlite_env: Env, tmp_path: Path) -> None:
    assert_one_line_exit_2(sqlite_env, sparse_tar(tmp_path, "10G", "gnu"), "sparse")


def test_oversized_member_is_refused_by_its_header(sqlite_env: Env, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_tar(tmp_path / "big.tar", [PB, file_info("model/big", b"z" * 50_000)])
    forbid_staging(monkeypatch)
    with pytest.raises(InputError, match="50000 bytes, over the 40000-byte cap"):
        sqlite_env.registry().import_model("bad", str(path), validate=False,
                                           max_member_bytes=40_000)


# -- staging left by a killed import ------------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_import_removes_stale_staging(sqlite_env: Env, tmp_path: Path) -> None:
    parent = managed(sqlite_env, "m")
    host = socket.gethostname().replace("-", "_")
    stale = parent / f"{files.TMP_PREFIX}{host}-{dead_pid()}-deadbeef"
    (stale / "model" / "variables").mkdir(parents=True)
    (stale / "model" / "variables" / "big.data").write_bytes(b"x" * 4096)
    running = parent / f"{files.TMP_PREFIX}{host}-{os.getpid()}-0badcafe"  # a live importer's
    running.mkdir()
    other_host = parent / f"{files.TMP_PREFIX}elsewhere-1-01234567"  # cannot tell: keep
    other_host.mkdir()

    path = make_tar(tmp_path / "ok.tar", [PB, VARS])
    sqlite_env.registry().import_model("m", str(path), validate=False)
    assert not stale.exists()
    assert running.is_dir() and other_host.is_dir()
    leftovers = [n for n in os.listdir(parent) if n.startswith(files.TMP_PREFIX)]
    assert sorted(leftovers) == sorted([running.name, other_host.name])


def test_remove_stale_staging_lists_what_it_removed(tmp_path: Path) -> None:
    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / f"{files.TMP_PREFIX}{host}-{dead_pid()}-00000000"
    stale.mkdir()
    assert archive.remove_stale_staging(str(tmp_path)) == [str(stale)]
    assert archive.remove_stale_staging(str(tmp_path / "missing")) == []
