"""Issue 22's small ones and the pixel cap for `mlmodel eval/predict`: refused with exit 2, before
TensorFlow or Beam load, the file named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import datagen
from tests.bombs import bomb_png
from tests.registry.conftest import Env
from tests.registry.test_offline import env, labelled, run_probe  # noqa: F401 - fixtures


def _probe(registry: Env, *args: str) -> tuple[list[str], str]:
    """(exit code, TensorFlow loaded?, Beam loaded?) of ``mlmodel ARGS``, and its stderr."""
    result, done = run_probe(registry, ("tensorflow", "apache_beam"), *args)
    return result.split()[1:], done.stderr


@pytest.mark.parametrize("args, words", [
    (["eval", "digits", "{data}", "--rate", "nan"], "--rate"),
    (["predict", "digits", "{data}", "--out", "{tmp}/x.txt"], "--output json or csv"),
])
def test_bad_arguments_exit_2_before_tensorflow(env: Env, labelled: Path,  # noqa: F811
                                                tmp_path: Path, args: list[str],
                                                words: str) -> None:
    values = {"data": str(labelled), "tmp": str(tmp_path)}
    result, err = _probe(env, *[a.format(**values) for a in args])
    assert result == ["2", "False", "False"], err
    assert words in err and "Traceback" not in err, err


def test_an_image_bomb_in_the_data_exits_2_naming_the_file(env: Env,  # noqa: F811
                                                           tmp_path: Path) -> None:
    data = datagen.write_png_folder(tmp_path / "digits", n_per_class=1)
    bomb = data / "3" / "bomb.png"
    bomb.write_bytes(bomb_png(3000, 3000))  # 9 M pixels: under Pillow's own guard, over ours
    result, err = _probe(env, "predict", "digits", str(data), "--output", "json")
    assert result and result[0] == "2", err
    assert "bomb.png" in err and "9,000,000 pixels" in err and "Traceback" not in err, err
    assert result[2] == "False", err  # refused before Beam runs anything
