"""notebooks/interactive.ipynb runs headless (nbclient) on tiny data, end to end."""

from __future__ import annotations

import base64
import io
import re
import socket
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "interactive.ipynb"


def _text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                   and o.get("name") == "stdout")


def _cell(nb: Any, needle: str) -> Any:
    [cell] = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    return cell


def _pngs(cell: Any) -> list[tuple[int, int]]:
    from PIL import Image

    sizes = []
    for output in cell.outputs:
        data = output.get("data", {}).get("image/png")
        if data:
            with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                image.load()
                sizes.append(image.size)
    return sizes


def test_notebook_runs_the_demo_end_to_end(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    from tests.datagen import write_png_folder

    data = write_png_folder(tmp_path / "data", n_per_class=16, split_folders=True)
    work = tmp_path / "work"
    monkeypatch.setenv("MNIST_TFX_NOTEBOOK_DATA", str(data))
    monkeypatch.setenv("MNIST_TFX_NOTEBOOK_EPOCHS", "6")
    monkeypatch.setenv("MNIST_TFX_NOTEBOOK_WORKDIR", str(work))
    monkeypatch.setenv("MNIST_TFX_NOTEBOOK_THRESHOLD", "0.5")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell, if any cell fails

    # TFDV: statistics, schema and anomalies rendered by context.show (HTML outputs).
    for needle in ('outputs["statistics"]', 'outputs["anomalies"]'):
        html = [o for o in _cell(nb, needle).outputs if "text/html" in o.get("data", {})]
        assert html, f"context.show produced no HTML in the cell with {needle}"

    # Training curves, TFMA per digit, served predictions: real figures.
    for needle, minimum in (("epochs = json.loads", (500, 150)),
                            ("tfma.load_eval_result", (400, 150)),
                            ("Served predictions", (600, 100))):
        sizes = _pngs(_cell(nb, needle))
        assert sizes, f"no figure in the cell with {needle!r}"
        assert sizes[0][0] >= minimum[0] and sizes[0][1] >= minimum[1], (needle, sizes)

    per_digit = _text(_cell(nb, "tfma.load_eval_result"))
    assert "overall accuracy:" in per_digit
    assert len(re.findall(r"^\s+\d \s*\w+: \d\.\d{4}$", per_digit, re.M)) == 10, per_digit

    # InfraValidator: our server loaded the candidate and answered before the Pusher pushed it.
    infra = _text(_cell(nb, 'context.run(component["InfraValidator"])'))
    assert "infra-validated: True" in infra and "requests answered: 5" in infra, infra
    assert (work / "serving_model" / "notebook_mnist_notebook" / "1" / "assets.extra"
            / "tf_serving_warmup_requests").is_file()

    deployed = _text(_cell(nb, "registry.deploy("))
    assert "latest_version=1" in deployed and "notebook_mnist_notebook" in deployed
    assert (work / "serving_model" / "notebook_mnist_notebook" / "1" / "saved_model.pb").is_file()

    served = _text(_cell(nb, "subprocess.Popen"))
    assert "PREDICTIONS from http://127.0.0.1:" in served, served
    rows = re.findall(r"image \d+: true\s+(\w+) -> predicted\s+(\w+) \(p=([\d.]+)\)", served)
    assert len(rows) == 10, served  # one eval image per digit
    correct = sum(true == guess for true, guess, _ in rows)
    assert correct >= 5, f"the served model got only {correct}/10 right:\n{served}"
    assert f"{correct}/10 correct" in served

    # The notebook stopped the server it started: nothing listens on its port any more.
    port = int(re.search(r"127\.0\.0\.1:(\d+)", served).group(1))  # type: ignore[union-attr]
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
