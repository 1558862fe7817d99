"""The Beam executor behind ``make_example_gen`` (imports TFX; kept apart so that
``detect_layout`` stays fast).

TFX's ``BaseExampleGenExecutor`` does the rest: it writes each split as gzipped TFRecords under the
Examples artifact and records the payload format. We override ``GenerateExamplesByBeam`` (not only
``GetInputSourceToExamplePTransform``) because our transform needs the split's name to pick its
side of a hash split, and we validate the whole input layout before the Beam graph is built.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from pipeline.components import readers
from pipeline.components.image_example_gen import detect_layout
from pipeline.components.readers import DataError

BATCH = 4096  # examples serialized per numpy batch (IDX)


def read_custom_config(exec_properties: dict[str, Any]) -> dict[str, Any]:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        raise ValueError("ExampleGen needs the custom_config written by make_example_gen")
    custom = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, custom)
    config = struct_pb2.Struct()
    custom.custom_config.Unpack(config)
    result = json_format.MessageToDict(config)
    result["eval_percent"] = int(result["eval_percent"])
    return result


# --------------------------------------------------------------------------------------------
# Per-layout readers, run inside Beam


def _image_example(item: tuple[str, int], root: str) -> bytes:
    rel, label = item
    return readers.to_tf_example(readers.read_image(os.path.join(root, rel), os.path.join(root, rel)), label)


def _idx_examples(pair: tuple[str, str], num_classes: int, split: str | None, eval_percent: int) -> Iterator[bytes]:
    images, labels = readers.read_idx_pair(pair[0], pair[1], num_classes)
    if split is not None:
        name = os.path.basename(pair[0])
        keep = np.fromiter(
            (readers.in_split(f"{name}#{i}", split, eval_percent) for i in range(len(labels))),
            dtype=bool, count=len(labels),
        )
        images, labels = images[keep], labels[keep]
    for start in range(0, len(labels), BATCH):
        yield from readers.to_tf_examples(images[start : start + BATCH], labels[start : start + BATCH])


def _tsv_examples(path: str, num_classes: int, split: str | None, eval_percent: int) -> Iterator[bytes]:
    for _, pixels, label in readers.iter_iris_tsv(path, num_classes, split=split, eval_percent=eval_percent):
        yield readers.to_tf_example(pixels, label)


def _tfrecord_examples(path: str, num_classes: int, split: str | None, eval_percent: int) -> Iterator[bytes]:
    for _, pixels, label in readers.iter_tfrecord(path, num_classes, split=split, eval_percent=eval_percent):
        yield readers.to_tf_example(pixels, label)


def _check_not_empty(count: int, split: str, where: str) -> None:
    if count == 0:
        raise DataError(
            f"{where}: the {split} split holds no examples; add data or change the split "
            "(eval_percent, or separate train/eval files)"
        )


def _files(root: str, pattern: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(root, pattern)) if os.path.isfile(p))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def ReadSplit(  # noqa: N802 - Beam transform naming
    pipeline: beam.Pipeline, root: str, pattern: str, split: str, config: dict[str, Any], hash_split: bool
) -> beam.pvalue.PCollection:
    """One output split of serialized tf.Examples from the files ``root/pattern`` match."""
    kind, eval_percent = config["kind"], config["eval_percent"]
    class_names = config["class_names"]
    num_classes = len(class_names)
    side = split if hash_split else None
    if kind in ("image_folder", "image_folder_split"):
        split_dir = pattern[: -len("*/*")].rstrip("/") or None
        files = readers.list_image_files(root, split_dir, class_names)
        if side is not None:
            files = [(rel, label) for rel, label in files if readers.in_split(rel, side, eval_percent)]
        _check_not_empty(len(files), split, os.path.join(root, pattern))
        return pipeline | "ListImages" >> beam.Create(files) | "Decode" >> beam.Map(_image_example, root)
    paths = _files(root, pattern)
    if kind == "idx":
        pairs = readers.find_idx_pairs(os.path.basename(p) for p in paths)
        items = [(os.path.join(root, p["images"]), os.path.join(root, p["labels"])) for p in pairs.values()]
        fn: Any = _idx_examples
    elif kind == "iris_tsv":
        items = [p for p in paths if os.path.basename(p) != "dict.tsv"]
        fn = _tsv_examples
    elif kind == "tfrecord":
        items = paths
        fn = _tfrecord_examples
    else:
        raise ValueError(f"unknown input layout kind {kind!r}")
    _check_not_empty(len(items), split, os.path.join(root, pattern))
    examples = pipeline | "ListFiles" >> beam.Create(items) | "Read" >> beam.FlatMap(
        fn, num_classes, side, eval_percent
    )
    if kind != "idx" or hash_split:  # an IDX split's size is known from its headers
        _ = (
            examples
            | "Count" >> beam.combiners.Count.Globally()
            | "CheckNotEmpty" >> beam.Map(_check_not_empty, split, os.path.join(root, pattern))
        )
    return examples


def find_data_error(exc: BaseException) -> str | None:
    """The DataError message inside an exception Beam may have wrapped (or None)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DataError):
            return str(current).split("\n")[0].split(" [while running")[0]
        current = current.__cause__ or current.__context__
    text = str(exc)
    marker = "DataError: "
    if marker in text:
        return text.rsplit(marker, 1)[1].split("\n")[0].split(" [while running")[0].strip()
    return None


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """ExampleGen executor for image folders, MNIST IDX, TFRecord and IRIS TSV input."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX API
        return ReadSplit

    def GenerateExamplesByBeam(  # noqa: N802 - TFX API
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        config = read_custom_config(exec_properties)
        root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        # Validate the layout again: the data may have changed since the pipeline was built.
        detect_layout(config.get("path", root), class_names=config["class_names"],
                      eval_percent=config["eval_percent"])
        patterns = {s.name: s.pattern for s in input_config.splits}
        hash_split = len(set(patterns.values())) == 1
        return {
            name: pipeline | f"ReadSplit[{name}]" >> ReadSplit(root, pattern, name, config, hash_split)
            for name, pattern in patterns.items()
        }

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:  # noqa: N802 - TFX API
        try:
            super().Do(input_dict, output_dict, exec_properties)
        except Exception as exc:  # Beam re-raises a DataError with its step name appended
            message = find_data_error(exc)
            if message is None:
                raise
            raise DataError(message) from exc
