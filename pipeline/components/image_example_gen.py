"""Our ExampleGen: image folders, MNIST IDX, TFRecord and IRIS TSV in, tf.Examples out.

``detect_layout`` (``datasources/layouts.py``, the table of input formats) looks at a
path cheaply and says which layout it holds and how it splits into ``train``/``eval``;
``make_example_gen`` turns that into a TFX ``FileBasedExampleGen`` whose Beam executor
(``pipeline/components/image_example_gen_executor.py``) reads the files.

Each split is given to TFX as a glob pattern relative to the input root, so TFX's driver
fingerprints the input files and caching works. When the train and eval patterns are the same,
the executor splits by a stable hash of each file's relative path (or ``file:row`` / ``file#index``
for files holding many examples), ``eval_percent`` percent going to eval.

See docs/data.md for the layouts and for what happens to bad data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import examples
from datasources import storage
from datasources.layouts import LAYOUT_KINDS, InputLayout, detect_layout
from datasources.readers import DataError

__all__ = ["DataError", "InputLayout", "detect_layout", "make_example_gen", "LAYOUT_KINDS"]

COMPONENT_ID = "ExampleGen"


# --------------------------------------------------------------------------------------------
# The TFX component


def layout_config(
    path: str, layout: InputLayout, class_names: Sequence[str], eval_percent: int
) -> dict[str, Any]:
    """What the executor needs beyond the split patterns (travels in ``custom_config``)."""
    return {
        "path": storage.normalize(path),  # re-validated when the executor starts
        "kind": layout.kind,
        "class_names": list(class_names),
        "eval_percent": eval_percent,
    }


def make_example_gen(
    path: str, *, eval_percent: int = 20, class_names: Sequence[str] | None = None,
    layout: InputLayout | None = None,
) -> Any:
    """A TFX ExampleGen (id ``ExampleGen``) reading ``path``; output splits ``train`` and ``eval``.

    ``class_names`` defaults to a dict.tsv in the data, else the classes the data imply (label
    folder names, or indices), else the digits zero..nine. ``layout``: what ``detect_layout``
    already found at ``path`` for this ``eval_percent`` (``ResolvedData.layout_for``), so that a
    run detects it once before Beam; None detects it here. The executor checks it again.
    """
    if not 1 <= eval_percent <= 99:
        raise ValueError(f"eval_percent must be 1..99, got {eval_percent}")
    if layout is None:
        layout = detect_layout(path, class_names=class_names, eval_percent=eval_percent)
    names = tuple(class_names or layout.class_names or layout.label_names
                  or examples.DIGIT_CLASS_NAMES)
    try:
        examples.check_class_count(len(names), f"{path}: class names {', '.join(names[:5])}...")
    except ValueError as exc:
        raise DataError(str(exc)) from exc

    from google.protobuf import any_pb2, struct_pb2
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import example_gen_pb2

    from pipeline.components.example_gen_driver import StorageExampleGen
    from pipeline.components.image_example_gen_executor import Executor

    config = struct_pb2.Struct()
    config.update(layout_config(path, layout, names, eval_percent))
    packed = any_pb2.Any()
    packed.Pack(config)
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=name, pattern=layout.splits[name]) for name in ("train", "eval")]
    )
    return StorageExampleGen(
        input_base=layout.root,
        input_config=input_config,
        custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id(COMPONENT_ID)
