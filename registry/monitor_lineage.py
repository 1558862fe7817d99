"""Which version ``mlmodel monitor`` looks at, and the training examples it was made from (MLMD).

The path through ML Metadata, read only:

    registry version -> its ``mlmodel.Deployment`` artifact -> ``source_artifact_id`` (the
    ``PushedModel``, or the ``Model``) -> the pipeline ``Model`` (``model_of_push``) -> the Trainer
    execution that output it -> its input ``examples`` (Transform's ``transformed_examples``)
    -> the execution that made them (Transform) -> its input ``examples``: the run's ExampleGen
    output, whose ``Split-train`` files hold the raw tf.Examples the model learned from.

Following events instead of "the run's ExampleGen" also works when ExampleGen was cached in that
run (the cached artifact is the input all the same). No TensorFlow here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts.examples import IMAGE_HEIGHT, IMAGE_WIDTH
from datasources import readers
from metastore import pipeline_models
from metastore.errors import ConflictError, InputError, NotFoundError
from metastore.pipeline_models import output_key
from metastore.store import prop

TRAIN_SPLIT = "Split-train"
MAX_HOPS = 4  # Trainer <- Transform <- ExampleGen, with room for one more stage


@dataclass(frozen=True)
class MonitoredVersion:
    """A deployed version, as the capture directory and MLMD know it."""

    model_name: str
    serving_name: str
    version: int
    path: str
    deployment: Any  # the mlmodel.Deployment artifact


@dataclass(frozen=True)
class TrainingData:
    """Where the training examples of a version's run are, and what the Model knew."""

    examples_uri: str  # the raw Examples artifact (ExampleGen's output)
    examples_artifact_id: int
    files: list[str]  # its Split-train files
    model_artifact_id: int
    pipeline_run: str
    class_names: list[str]


def pick_version(reg: Any, name: str, version: int | None, label: str | None) -> MonitoredVersion:
    """``version``, the version ``label`` points at, or the current one, among the deployed."""
    if version is not None and label is not None:
        raise InputError("give --version or --label, not both")
    deployed = reg.versions(name)
    if not deployed:
        raise NotFoundError(f"model {name!r} has no deployed version; `mlmodel deploy {name}` "
                            "first (the server captures what it serves)")
    if label is not None:
        chosen = [v for v in deployed if label in v.labels]
        what = f"label {label!r}"
    elif version is not None:
        chosen = [v for v in deployed if v.version == version]
        what = f"version {version}"
    else:
        chosen = [v for v in deployed if v.current] or deployed[-1:]
        what = "a current version"
    if not chosen:
        raise NotFoundError(f"model {name!r} has no {what}; deployed versions: "
                            f"{[v.version for v in deployed]}")
    picked = chosen[0]
    artifact = next((a for a in reg._deployments(picked.serving_name)
                     if int(prop(a, "version")) == picked.version), None)
    return MonitoredVersion(name, picked.serving_name, picked.version, picked.path, artifact)


def _artifact(store: Any, artifact_id: int) -> Any:
    found = store.read(lambda m: m.get_artifacts_by_id([artifact_id]), "reading the artifact")
    return found[0] if found else None


def _producer(store: Any, artifact_id: int) -> int | None:
    events = store.read(lambda m: m.get_events_by_artifact_ids([artifact_id]), "reading events")
    outputs = [e.execution_id for e in events if e.type == pb.Event.OUTPUT]
    return outputs[0] if outputs else None


def _input(store: Any, execution_id: int, key: str) -> Any:
    events = store.read(lambda m: m.get_events_by_execution_ids([execution_id]), "reading events")
    ids = [e.artifact_id for e in events if e.type == pb.Event.INPUT and output_key(e) == key]
    return _artifact(store, ids[0]) if ids else None


def trained_model(store: Any, target: MonitoredVersion) -> Any:
    """The pipeline ``Model`` artifact a deployed version was copied from."""
    source_id = int(prop(target.deployment, "source_artifact_id", 0) or 0) if target.deployment else 0
    source = _artifact(store, source_id) if source_id else None
    if source is not None and source.type == "PushedModel":
        source = pipeline_models.model_of_push(store, source)
    if source is None or source.type != "Model":
        raise ConflictError(
            f"version {target.version} of {target.model_name!r} was not made by a pipeline run "
            "recorded in this ML Metadata (an imported model has no training examples to compare "
            "with); pass --baseline DATA with data like its training data")
    return source


def training_data(store: Any, target: MonitoredVersion) -> TrainingData:
    """The raw training examples of the run that trained ``target`` (see the module doc)."""
    model = trained_model(store, target)
    facts = pipeline_models.model_facts(model)
    trainer = _producer(store, model.id)
    examples = _input(store, trainer, "examples") if trainer is not None else None
    for _ in range(MAX_HOPS):
        if examples is None:
            break
        maker = _producer(store, examples.id)
        upstream = _input(store, maker, "examples") if maker is not None else None
        if upstream is None:  # ExampleGen: made from files, not from examples
            break
        examples = upstream
    if examples is None:
        raise ConflictError(f"the Trainer of model artifact {model.id} recorded no input "
                            "examples in ML Metadata; monitor cannot find the training data")
    split = os.path.join(examples.uri, TRAIN_SPLIT)
    try:
        files = sorted(os.path.join(split, f) for f in os.listdir(split) if not f.startswith("."))
    except FileNotFoundError:
        raise ConflictError(f"the training examples of version {target.version} are gone from "
                            f"{split} (the pipeline root was moved or cleaned); pass --baseline "
                            "DATA instead") from None
    run = pipeline_models.candidate(store, model).pipeline_run
    return TrainingData(examples.uri, int(examples.id), files, int(model.id), run,
                        list(facts["class_names"]))


def _examples(files: list[str]) -> Iterator[bytes]:
    for path in files:
        yield from readers.iter_tfrecord_records(path)


def read_training(files: list[str], num_classes: int,
                  max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 28, 28] pixels and int64 labels of the raw tf.Examples in ``files`` (the first
    ``max_examples``: ExampleGen shuffles nothing, but its files interleave the input)."""
    from tensorflow.core.example import example_pb2

    pixels: list[np.ndarray] = []
    labels: list[int] = []
    for record in _examples(files):
        feature = example_pb2.Example.FromString(record).features.feature
        image, label = feature["image"], feature["label"]
        values = (np.asarray(image.int64_list.value, np.int64) if image.HasField("int64_list")
                  else np.rint(np.asarray(image.float_list.value) * 255))
        if values.size != readers.PIXELS:
            continue
        pixels.append(values)
        labels.append(int(label.int64_list.value[0]) if label.int64_list.value else -1)
        if max_examples and len(labels) >= max_examples:
            break
    if not pixels:
        raise ConflictError(f"no training examples in {', '.join(files) or 'the Examples'}")
    stacked = np.clip(np.stack(pixels), 0, 255).astype(np.uint8).reshape(-1, IMAGE_HEIGHT, IMAGE_WIDTH)
    labels_array = np.asarray(labels, np.int64)
    labels_array[(labels_array < 0) | (labels_array >= num_classes)] = -1
    return stacked, labels_array
