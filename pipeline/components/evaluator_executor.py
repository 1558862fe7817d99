"""Evaluator executor: TFX's TFMA evaluation, then its metrics summarised into MLMD.

TFMA writes its results as protos that need TensorFlow to read. This executor reads them once,
right after the evaluation, and stores ``{"overall": {...}, "per_label": {"0": {...}, ...}}`` as
the ``metrics`` custom property of the ``ModelEvaluation`` artifact (and as ``metrics.json`` in
it), so that ``mlmodel summary`` and the run summary stay fast.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs

from contracts import mlmd

METRICS_FILE = "metrics.json"


def _slice_name(slice_key: Any) -> tuple[str, str] | None:
    """('overall', '') for the overall slice, ('label', '3') for label=3; None for others."""
    if not slice_key:
        return ("overall", "")
    if len(slice_key) == 1:
        column, value = slice_key[0]
        return (str(column), str(value))
    return None


def summarise_metrics(output_uri: str) -> dict[str, Any]:
    """Metric values per slice from a TFMA output directory."""
    import tensorflow_model_analysis as tfma

    summary: dict[str, Any] = {"overall": {}, "per_label": {}}
    for metrics_for_slice in tfma.load_metrics(output_uri):
        slice_key = tfma.slicer.deserialize_slice_key(metrics_for_slice.slice_key)
        name = _slice_name(slice_key)
        if name is None:
            continue
        values: dict[str, float] = {}
        for kv in metrics_for_slice.metric_keys_and_values:
            if not kv.value.HasField("double_value"):
                continue
            model = kv.key.model_name
            if kv.key.is_diff:
                metric = f"{kv.key.name}_diff"
            elif model in ("", "candidate"):
                metric = kv.key.name
            else:
                metric = f"{kv.key.name}_{model}"
            values[metric] = float(kv.value.double_value.value)
        if name[0] == "overall":
            summary["overall"].update(values)
        elif name[0] == "label":
            summary["per_label"][name[1]] = values
    summary["per_label"] = dict(sorted(summary["per_label"].items(), key=lambda kv: int(kv[0])))
    return summary


class EvaluatorExecutor(evaluator_executor.Executor):
    """TFX Evaluator executor that also records a metric summary on its output artifact."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        evaluation = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EVALUATION_KEY])
        summary = summarise_metrics(evaluation.uri)
        baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        summary["baseline_model_uri"] = baseline[0].uri if baseline else ""
        evaluation.set_string_custom_property(mlmd.METRICS, json.dumps(summary))
        evaluation.set_string_custom_property(mlmd.BASELINE_MODEL_URI,
                                              summary["baseline_model_uri"])
        models = input_dict.get(standard_component_specs.MODEL_KEY) or []
        if models:  # who was evaluated, so one query finds every model's newest evaluation
            evaluation.set_string_custom_property(
                mlmd.MODEL_NAME, models[0].get_string_custom_property(mlmd.MODEL_NAME))
            evaluation.set_int_custom_property(mlmd.EVALUATED_MODEL_ID, int(models[0].id or 0))
        with fileio.open(os.path.join(evaluation.uri, METRICS_FILE), "w") as handle:
            handle.write(json.dumps(summary, indent=2))
