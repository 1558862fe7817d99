"""``serving predict``: read images (files, folders, IDX), ask the server, report like IRIS.

The table has IRIS's columns (seed 000): label and tag (the true class, when known), prediction
(the probability vector), probability (the top one) and interpreted (the predicted class name).
Class names are the model's own (its dict.tsv, read back through ``:classify``), for any number
of classes; a folder named after a class index or a class name gives the true label.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import requests

from contracts.dictionary import default_class_names
from contracts.examples import IMAGE_KEY, IMAGE_PIXELS, MAX_CLASSES
from contracts.signatures import SERVING_DEFAULT, SERVING_IMAGES
from datasources import readers
from datasources.images import DEFAULT_MAX_IMAGE_PIXELS, check_pixels
from datasources.offline import UNKNOWN, read_offline


@dataclass
class Item:
    source: str
    label: int | None
    image_bytes: bytes | None = None
    pixels: np.ndarray | None = None  # uint8 [28, 28]
    folder: str | None = None  # the parent folder's name: a class name gives the label


@dataclass
class Row:
    input: str
    label: int | None
    tag: str | None
    prediction: list[float]
    predicted: int
    probability: float
    interpreted: str


@dataclass
class Report:
    model: str
    version: str
    rows: list[Row] = field(default_factory=list)

    @property
    def labelled(self) -> list[Row]:
        return [r for r in self.rows if r.label is not None]

    @property
    def accuracy(self) -> float | None:
        rows = self.labelled
        return sum(r.label == r.predicted for r in rows) / len(rows) if rows else None


def _folder_of(path: str) -> str:
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def _label_of(path: str) -> int | None:
    parent = _folder_of(path)
    return int(parent) if parent.isdigit() and len(parent) <= 3 else None


def _file_item(path: str) -> Item:
    """One image file; ``ImageTooLarge`` (naming it) when its header claims more pixels than the
    server's default cap, before it is sent (the server would refuse it anyway)."""
    with open(path, "rb") as f:
        data = f.read()
    check_pixels(data, path, DEFAULT_MAX_IMAGE_PIXELS)
    return Item(path, _label_of(path), image_bytes=data, folder=_folder_of(path))


def _idx_items(path: str) -> list[Item]:
    """The images of one IDX file, with the labels of the file beside it when there is one."""
    images = readers.read_idx_images(path)
    head, _kind = readers.idx_prefix(os.path.basename(path)) or ("", "")
    labels: np.ndarray | None = None
    for suffix in ("", ".gz"):
        label_path = os.path.join(os.path.dirname(path), f"{head}-labels-idx1-ubyte{suffix}")
        if os.path.exists(label_path):
            labels = readers.read_idx_pair(path, label_path, MAX_CLASSES)[1]
            break
    return [Item(f"{path}[{i}]", int(labels[i]) if labels is not None else None,
                 pixels=images[i]) for i in range(len(images))]


def _example_items(path: str, class_names: Sequence[str], limit: int | None) -> list[Item]:
    """A TFRecord of tf.Examples, an IRIS TSV, or any layout the pipeline's --data reads."""
    found = read_offline(path, class_names or default_class_names(MAX_CLASSES), limit=limit)
    return [Item(source, None if label == UNKNOWN else int(label), pixels=pixels)
            for source, label, pixels in zip(found.inputs, found.labels, found.pixels,
                                             strict=True)]


def collect(paths: list[str], limit: int | None = None,
            class_names: Sequence[str] = ()) -> list[Item]:
    """Every image under ``paths``, read as the pipeline reads its --data (datasources/):
    image files and folders of them (recursively, sorted; sent as files, decoded by the
    server), IDX files, and TFRecord / TSV files or any other layout --data reads (decoded here;
    labels checked against ``class_names``, the model's)."""
    items: list[Item] = []
    for path in paths:
        name = os.path.basename(path)
        if os.path.isdir(path):
            found = sorted(os.path.join(root, f) for root, _, files in os.walk(path)
                           for f in files if readers.is_image_name(f))
            if found:
                items.extend(_file_item(f) for f in found)
            else:
                items.extend(_example_items(path, class_names, limit))
        elif readers.is_image_name(name):
            items.append(_file_item(path))
        elif (readers.idx_prefix(name) or ("", ""))[1] == "images":
            items.extend(_idx_items(path))
        else:
            items.extend(_example_items(path, class_names, limit))
        if limit is not None and len(items) >= limit:
            return items[:limit]
    return items


class ServerError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_served(url: str, name: str, token: str | None = None) -> bool:
    """Whether the server at ``url`` knows a model called ``name`` (any version)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(f"{url.rstrip('/')}/v1/models/{name}", headers=headers, timeout=10)
    except requests.RequestException:
        return False
    return response.status_code != 404


def registry_serving_name(name: str, metadata: str | None = None) -> str | None:
    """The serving name the registry gave model ``name`` (``mnist`` -> ``root_mnist``), if any.

    Lets ``serving predict mnist`` work with the registry's model name as well as with the name
    the server knows. None when the registry is not installed or has no such served model.
    """
    try:
        from metastore.errors import RegistryError
        from registry.api import open_registry
    except ImportError:
        return None
    try:
        summary = open_registry(metadata).summary(name)
    except RegistryError:
        return None
    if summary.serving and summary.serving_name and summary.serving_name != name:
        return summary.serving_name
    return None


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = session.post(url, json=body, timeout=60)
    except requests.ConnectionError as exc:
        raise ServerError(f"cannot reach the server at {url}; start it with `serving start`") \
            from exc
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": response.text[:200]}
    if response.status_code != 200:
        raise ServerError(f"{url}: HTTP {response.status_code}: {payload.get('error', payload)}")
    return payload


def _class_names(session: requests.Session, base: str) -> list[str]:
    """The model's dict.tsv names, read back through :classify on one blank example; [] if not."""
    try:
        result = _post(session, f"{base}:classify",
                       {"examples": [{IMAGE_KEY: [0] * IMAGE_PIXELS}]})
        return [str(name) for name, _ in result["results"][0]]
    except (ServerError, KeyError, IndexError, TypeError, ValueError):
        return []


def label_from_folder(item: Item, names: list[str]) -> int | None:
    """The true class of ``item``: its folder's class index, or the class its folder names."""
    if item.label is not None:
        return item.label
    if item.folder and item.folder in names:
        return names.index(item.folder)
    return None


def predict_inputs(url: str, name: str, paths: list[str], version: int | None = None,
                   label: str | None = None, token: str | None = None, batch_size: int = 64,
                   limit: int | None = None) -> Report:
    base = f"{url.rstrip('/')}/v1/models/{name}"
    if version is not None:
        base += f"/versions/{version}"
    elif label is not None:
        base += f"/labels/{label}"
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    status = session.get(base, timeout=10)
    if status.status_code != 200:
        raise ServerError(f"{base}: HTTP {status.status_code}: "
                          f"{status.json().get('error', status.text) if status.content else ''}",
                          status.status_code)
    meta = _post_get(session, f"{base}/metadata")
    names = _class_names(session, base)
    items = collect(paths, limit, names)
    report = Report(name, meta["model_spec"]["version"])
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        for group in (_files(chunk), _arrays(chunk)):
            if not group:
                continue
            if group[0].image_bytes is not None:
                body = {"signature_name": SERVING_IMAGES, "instances": [
                    {"b64": base64.b64encode(i.image_bytes or b"").decode("ascii")} for i in group]}
            else:
                stacked = np.stack([i.pixels for i in group]).astype(np.float32) / 255.0
                body = {"signature_name": SERVING_DEFAULT, "inputs": stacked[..., None].tolist()}
            result = _post(session, f"{base}:predict", body)
            vectors = result.get("predictions", result.get("outputs"))
            for item, vector in zip(group, vectors, strict=True):
                if not names:
                    names = default_class_names(len(vector))
                report.rows.append(_row(item, [float(v) for v in vector], names))
    return report


def _row(item: Item, vector: list[float], names: list[str]) -> Row:
    top = int(np.argmax(vector))
    label = label_from_folder(item, names)
    tag = names[label] if label is not None and 0 <= label < len(names) else None
    return Row(item.source, label, tag, vector, top, vector[top],
               names[top] if top < len(names) else str(top))


def _post_get(session: requests.Session, url: str) -> dict[str, Any]:
    response = session.get(url, timeout=10)
    if response.status_code != 200:
        raise ServerError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


def _files(items: list[Item]) -> list[Item]:
    return [i for i in items if i.image_bytes is not None]


def _arrays(items: list[Item]) -> list[Item]:
    return [i for i in items if i.pixels is not None]


def render_json(report: Report) -> str:
    return json.dumps({"model": report.model, "version": report.version,
                       "accuracy": report.accuracy, "labelled": len(report.labelled),
                       "predictions": [asdict(r) for r in report.rows]}, indent=2)


def _short(vector: list[float]) -> str:
    """The seed's form: ``[0.62, 0.01, 0.04...]``."""
    return "[" + ", ".join(f"{v:.2f}" for v in vector[:3]) + ("...]" if len(vector) > 3 else "]")


def short_input(source: str) -> str:
    """What the table shows of an input: ``<label folder>/<file>`` or ``<idx file>[i]``.

    The full path stays in ``--output json``; on a terminal the parent folders of every row are
    the same and would push the file names out of the column.
    """
    if source.endswith("]") and "[" in source:  # an IDX record
        return os.path.basename(source)
    parent, name = os.path.split(source)
    return f"{os.path.basename(parent)}/{name}" if os.path.basename(parent) else name


def render_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.model} version {report.version}")
    inputs_width = min(max((len(short_input(r.input)) for r in report.rows), default=5), 32)
    for column in ("input", "label", "tag", "prediction", "probability", "interpreted"):
        # On a narrow terminal the prediction vector wraps; names and numbers stay whole.
        table.add_column(column, justify="right" if column in ("label", "probability") else "left",
                         no_wrap=column != "prediction",
                         min_width={"input": inputs_width, "prediction": 8}.get(column))
    for r in report.rows:
        table.add_row(short_input(r.input), "" if r.label is None else str(r.label), r.tag or "",
                      _short(r.prediction), f"{r.probability:.2f}", r.interpreted)
    console = Console()
    console.print(table)
    if report.accuracy is not None:
        right = sum(r.label == r.predicted for r in report.labelled)
        console.print(f"accuracy: {report.accuracy:.4f} ({right}/{len(report.labelled)} "
                      "labelled images)")
