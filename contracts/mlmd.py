"""ML Metadata names: TFX's context types and the custom properties our executors add.

Readers (the registry, the run summary) use these keys and never need TensorFlow or TFX.
"""

from __future__ import annotations

# TFX's context types: one `pipeline` context per model name, one `pipeline_run` per run, one
# `node` per component (named `<pipeline>.<component id>`).
PIPELINE_CONTEXT = "pipeline"
PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"

# Model artifact (our Trainer executor, from training_summary.json).
MODEL_JSON_PROPERTIES = ("hparams", "class_names", "history", "budget")  # JSON strings
MODEL_INT_PROPERTIES = ("train_examples", "eval_examples")
MODEL_FLOAT_PROPERTIES = ("train_seconds",)
MODEL_STRING_PROPERTIES = ("model_name", "tensorboard_dir", "warm_start_from")
MODEL_NAME = "model_name"                  # also on ModelEvaluation: the evaluated model's name
HPARAMS = "hparams"
CLASS_NAMES = "class_names"
HISTORY = "history"
BUDGET = "budget"
TRAIN_EXAMPLES = "train_examples"
EVAL_EXAMPLES = "eval_examples"
TRAIN_SECONDS = "train_seconds"
TENSORBOARD_DIR = "tensorboard_dir"

# ModelEvaluation artifact (our Evaluator executor).
METRICS = "metrics"                        # JSON: {"overall": {...}, "per_label": {"0": {...}}}
BASELINE_MODEL_URI = "baseline_model_uri"
EVALUATED_MODEL_ID = "evaluated_model_id"  # the Model artifact's id (one query finds them all)

# ModelBlessing (TFX) and PushedModel (TFX, plus our integer version).
BLESSED = "blessed"
PUSHED = "pushed"
PUSHED_DESTINATION = "pushed_destination"
PUSHED_VERSION = "pushed_version"

# InfraBlessing (TFX's InfraValidator; `blessed` as above, plus ours from
# pipeline/components/infra_validator.py).
INFRA_BLESSING = "InfraBlessing"
INFRA_FAILURE = "infra_failure"    # JSON: {"reason": str, "log": [server log lines], "tries": n}
INFRA_REQUESTS = "infra_requests"  # requests the server answered when it passed

# TFX's Tuner (--tune): the Trainer's input and the Tuner's outputs, with the files TFX writes
TUNER_HPARAMS_KEY = "hyperparameters"            # the Trainer's input event key
TUNER_BEST_KEY = "best_hyperparameters"          # Tuner output: HyperParameters artifact
TUNER_RESULTS_KEY = "tuner_results"              # Tuner output: TunerResults artifact
TUNER_BEST_FILE = "best_hyperparameters.txt"     # JSON: KerasTuner's config, "values" inside
TUNER_RESULTS_FILE = "tuner_results.json"        # JSON: one object per trial, best first

ACCURACY_METRIC = "sparse_categorical_accuracy"
