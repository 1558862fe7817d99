"""Trainer executor: TFX's GenericExecutor, then the training summary copied into MLMD.

``modules.trainer.run_fn`` writes ``training_summary.json`` next to the SavedModel; this executor
publishes its fields as custom properties of the ``Model`` artifact, so that the registry can show
hyperparameters, counts and timing without TensorFlow or file access.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs

from contracts import mlmd
from contracts.training import TRAINING_SUMMARY_FILE


def publish_training_summary(model: types.Artifact) -> dict[str, Any]:
    """Copy ``<model.uri>/training_summary.json`` into ``model``'s custom properties."""
    path = os.path.join(model.uri, TRAINING_SUMMARY_FILE)
    if not fileio.exists(path):
        return {}
    with fileio.open(path) as handle:
        summary: dict[str, Any] = json.loads(handle.read())
    for key in mlmd.MODEL_JSON_PROPERTIES:
        model.set_string_custom_property(key, json.dumps(summary.get(key)))
    for key in mlmd.MODEL_INT_PROPERTIES:
        model.set_int_custom_property(key, int(summary.get(key, -1)))
    for key in mlmd.MODEL_FLOAT_PROPERTIES:
        model.set_float_custom_property(key, float(summary.get(key, 0.0)))
    for key in mlmd.MODEL_STRING_PROPERTIES:
        model.set_string_custom_property(key, str(summary.get(key, "")))
    return summary


class TrainerExecutor(trainer_executor.GenericExecutor):
    """GenericExecutor that also records the run's summary on the Model artifact."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        publish_training_summary(model)
