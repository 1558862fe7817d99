"""Issue 10, images: PNG, JPEG, GIF (first frame), BMP and WebP, as real files, give the same grey
pixels in the pipeline's readers, the same prediction through `serving_images` as through
`serving_default`, and a row each from `serving predict`."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from datasources.readers import IMAGE_EXTENSIONS, read_image
from serving.cli import main as serving

from .conftest import Server

FORMATS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}
LOSSY = {"jpg"}


def digit_pixels(seed: int = 0) -> np.ndarray:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4 + seed:24, 12:16] = 255  # a "1"
    pixels[4 + seed:7 + seed, 9:16] = 180
    return pixels


def write_image(path: Path, pixels: np.ndarray) -> Path:
    fmt = FORMATS[path.suffix[1:]]
    image = Image.fromarray(pixels)
    if fmt == "GIF":  # two frames: the first is the image, the second must be ignored
        image.save(path, fmt, save_all=True, append_images=[Image.fromarray(255 - pixels)])
    elif fmt == "WEBP":
        image.convert("RGB").save(path, fmt, lossless=True)
    else:
        image.save(path, fmt)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats") / "digits" / "1"
    root.mkdir(parents=True)
    return {ext: write_image(root / f"one.{ext}", digit_pixels()) for ext in FORMATS}


def test_every_format_is_listed_where_images_are_read(files: dict[str, Path]) -> None:
    """The readers' list, and serving predict reading through it (one list, datasources/)."""
    from serving.predict_client import collect

    for ext in FORMATS:
        assert f".{ext}" in IMAGE_EXTENSIONS
    items = collect([str(files[ext]) for ext in FORMATS])
    assert [item.source for item in items] == [str(files[ext]) for ext in FORMATS]
    assert all(item.image_bytes for item in items)


@pytest.mark.parametrize("ext", list(FORMATS))
def test_readers_decode_each_format_to_the_same_grey(files: dict[str, Path], ext: str) -> None:
    grey = read_image(files[ext])
    assert grey.shape == (28, 28) and grey.dtype == np.uint8
    error = np.abs(grey.astype(int) - digit_pixels().astype(int))
    if ext in LOSSY:  # JPEG rings around sharp edges
        assert error.mean() < 3 and error.max() < 48, (error.mean(), error.max())
    else:
        assert error.max() == 0


def test_serving_images_answers_each_format_like_serving_default(server: Server,
                                                                 files: dict[str, Path]) -> None:
    url = f"{server.url}/v1/models/root_mnist:predict"
    floats = (digit_pixels() / 255.0)[..., None].tolist()
    reference = requests.post(url, json={"instances": [floats]}, timeout=30).json()
    expected = np.array(reference["predictions"][0])
    for ext, path in files.items():
        body = {"signature_name": "serving_images",
                "instances": [{"b64": base64.b64encode(path.read_bytes()).decode()}]}
        r = requests.post(url, json=body, timeout=30)
        assert r.status_code == 200, (ext, r.text)
        got = np.array(r.json()["predictions"][0])
        np.testing.assert_allclose(got, expected, atol=0.05 if ext in LOSSY else 1e-5,
                                   err_msg=ext)


def test_a_broken_webp_is_a_400_that_says_so(server: Server) -> None:
    broken = b"RIFF\x10\x00\x00\x00WEBPVP8L" + b"\x00" * 8
    r = requests.post(f"{server.url}/v1/models/root_mnist:predict", timeout=30, json={
        "signature_name": "serving_images",
        "instances": [{"b64": base64.b64encode(broken).decode()}]})
    assert r.status_code == 400 and "WebP" in r.json()["error"]


def test_serving_predict_reads_every_format(server: Server, files: dict[str, Path]) -> None:
    folder = str(files["png"].parent)
    result = CliRunner().invoke(serving, ["predict", "root_mnist", folder, "--url", server.url,
                                          "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["predictions"]
    assert sorted(Path(r["input"]).suffix for r in rows) == sorted(f".{e}" for e in FORMATS)
    interpreted = {r["interpreted"] for r in rows}
    assert len(interpreted) == 1  # the same image in five formats: one answer
    img = Image.open(io.BytesIO(files["gif"].read_bytes()))
    assert getattr(img, "n_frames", 1) == 2  # the GIF really has a second frame
