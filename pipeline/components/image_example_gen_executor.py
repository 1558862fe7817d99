"""The Beam executor behind ``make_example_gen`` (imports TFX; kept apart so that
``detect_layout`` stays fast). Per-format listing and reading come from the table in
``datasources/layouts.py``.

TFX's ``BaseExampleGenExecutor`` does the rest: it writes each split as gzipped TFRecords under the
Examples artifact and records the payload format. We override ``GenerateExamplesByBeam`` (not only
``GetInputSourceToExamplePTransform``) because our transform needs the split's name to pick its
side of a hash split, and we validate the whole input layout before the Beam graph is built.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from datasources import storage
from datasources.layouts import detect_layout, layout_of
from datasources.readers import DataError


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


def _check_not_empty(count: int, split: str, where: str) -> None:
    if count == 0:
        raise DataError(
            f"{where}: the {split} split holds no examples; add data or change the split "
            "(eval_percent, or separate train/eval files)"
        )


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def ReadSplit(  # noqa: N802 - Beam transform naming
    pipeline: beam.Pipeline, root: str, pattern: str, split: str, config: dict[str, Any], hash_split: bool
) -> beam.pvalue.PCollection:
    """One output split of serialized tf.Examples from the files ``root/pattern`` match."""
    layout = layout_of(config["kind"])
    eval_percent, class_names = config["eval_percent"], list(config["class_names"])
    side = split if hash_split else None
    where = storage.join(root, pattern)
    items = layout.list_items(root, pattern, class_names, side, eval_percent)
    _check_not_empty(len(items), split, where)
    examples = (pipeline
                | "List" >> beam.Create(items)
                | "Read" >> beam.FlatMap(layout.read, root, class_names, side, eval_percent))
    if layout.must_count(hash_split):
        _ = (
            examples
            | "Count" >> beam.combiners.Count.Globally()
            | "CheckNotEmpty" >> beam.Map(_check_not_empty, split, where)
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
