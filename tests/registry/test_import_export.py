"""Import refuses unsafe archives; a real SavedModel imports, deploys and exports atomically."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from metastore.errors import InputError
from registry import archive
from tests.registry.conftest import Env


def make_tar(path: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> str:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize("member, message", [
    (file_info("../evil.txt", b"x"), "'..'"),
    (file_info("model/../../evil.txt", b"x"), "'..'"),
    (file_info("/etc/evil.txt", b"x"), "absolute"),
    (special("model/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (special("model/hard", tarfile.LNKTYPE, "saved_model.pb"), "hard link"),
    (special("model/dev", tarfile.CHRTYPE), "device"),
    (special("model/fifo", tarfile.FIFOTYPE), "device"),
    (file_info("model/variables/big.data", b"y" * 2048), "cap"),
])
def test_malicious_archives_are_refused(sqlite_env: Env, tmp_path, member, message) -> None:
    path = make_tar(str(tmp_path / "bad.tar"),
                    [file_info("model/saved_model.pb", b"pb"), member])
    reg = sqlite_env.registry()
    with pytest.raises(InputError, match=message):
        reg.import_model("bad", path, max_member_bytes=1024, validate=False)
    assert not os.path.exists(tmp_path / "evil.txt")
    managed = os.path.join(sqlite_env.serving_dir, ".registry", "models", "bad")
    assert not os.path.isdir(managed) or os.listdir(managed) == []
    assert reg.list_models() == []


def test_archive_without_required_file_is_refused_by_the_cli(sqlite_env: Env, tmp_path) -> None:
    path = make_tar(str(tmp_path / "empty.tar"), [file_info("readme.txt", b"hi")])
    proc = sqlite_env.run("import", "name=x", "type=tf", "category=classification",
                          "algorithm=deep", "format=saved_model", f"path={path}")
    assert proc.returncode == 2 and "saved_model.pb" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_oversized_member_cap_from_env(sqlite_env: Env, tmp_path) -> None:
    path = make_tar(str(tmp_path / "big.tar"), [file_info("saved_model.pb", b"z" * 100)])
    env = sqlite_env.environ() | {archive.MAX_MEMBER_ENV: "10"}
    proc = sqlite_env.run("import", "--name", "big", "--path", path, env=env)
    assert proc.returncode == 2 and "cap" in proc.stderr


def test_import_real_model_deploy_and_export(sqlite_env: Env, saved_model_dir: str,
                                             tmp_path) -> None:
    tar_path = str(tmp_path / "model.tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(saved_model_dir, arcname="export")
    proc = sqlite_env.run("import", "name=tf_clothes", "type=tf", "category=classification",
                          "algorithm=deep", "format=saved_model", f"path={tar_path}",
                          "--output", "json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["result"] == "ok"
    again = sqlite_env.run("import", "--name", "tf_clothes", "--path", tar_path, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr

    reg = sqlite_env.registry()
    summary = reg.summary("tf_clothes")
    assert summary.source == "import" and summary.state == "DONE"
    assert summary.class_names[:2] == ["zero", "one"]
    result = reg.deploy("tf_clothes", label="stable", user="root")
    assert result.latest_version == 1 and result.serving_name == "root_tf_clothes"
    deployed = os.path.join(sqlite_env.serving_dir, "root_tf_clothes", "1")
    assert os.path.isfile(os.path.join(deployed, "saved_model.pb"))

    out = str(tmp_path / "out" / "exported.tar")
    os.makedirs(os.path.dirname(out))
    proc = sqlite_env.run("export", "name=tf_clothes", f"path={out}", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)[0]
    with open(out, "rb") as handle:
        data = handle.read()
    assert info["size"] == len(data) and info["sha256"] == hashlib.sha256(data).hexdigest()
    assert os.listdir(os.path.dirname(out)) == ["exported.tar"]  # no temp file left
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "saved_model.pb" in names and "assets.extra/dict.tsv" in names


def test_import_refuses_model_without_serving_default(sqlite_env: Env, tmp_path) -> None:
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    model_dir = str(tmp_path / "plain")
    tf.saved_model.save(module, model_dir)
    tar_path = str(tmp_path / "plain.tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(model_dir, arcname=".")
    with pytest.raises(InputError, match="serving_default"):
        sqlite_env.registry().import_model("plain", tar_path)


def test_export_pipeline_model(sqlite_env: Env, tmp_path) -> None:
    sqlite_env.add_run("mnist")
    result = sqlite_env.registry().export_model("mnist", str(tmp_path / "m.tar"))
    with tarfile.open(result.path) as tar:
        assert "saved_model.pb" in tar.getnames()
