"""The graph: ``create_pipeline(config, data) -> tfx Pipeline``, and nothing else.

ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> [Tuner] -> Trainer
-> LatestBlessedModelResolver -> Evaluator -> InfraValidator -> Pusher, with a LatestModelResolver
feeding the Trainer's ``base_model`` under ``--warm-start``. The Pusher needs both the Evaluator's
ModelBlessing and the InfraValidator's InfraBlessing (``--no-infra-validation``: the first only).
Every runner builds this same graph. Callers run ``contracts.runtime.configure_tensorflow()``
before importing this module (it imports TFX and TFMA, hence TensorFlow).
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

# The classes of TFX's public ``tfx.v1`` API, from the modules it re-exports them from: importing
# ``tfx.v1`` itself also imports its Google Cloud extensions (``google.cloud.aiplatform``), 2.7 s
# of every run's start here for nothing a local or Beam run uses (see docs/architecture.md).
from tfx.components import ExampleValidator, SchemaGen, StatisticsGen, Transform, Tuner
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto.pusher_pb2 import PushDestination
from tfx.proto.trainer_pb2 import EvalArgs, TrainArgs
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from contracts import examples, signatures
from pipeline.code_fingerprint import TRANSFORM_FILES, code_fingerprint
from pipeline.components.image_example_gen import make_example_gen
from pipeline.components.infra_validator import (
    LocalInfraValidator,
    request_spec,
    serving_spec,
    validation_spec,
)
from pipeline.components.standard import SummarizingEvaluator, SummarizingTrainer, VersioningPusher
from pipeline.config import PipelineConfig
from pipeline.datasets import ResolvedData

# InfraValidator: eval examples sent (and pushed as warm-up requests), the server's start-up and
# load budget, and tries (a second server on fresh ports if the first fails).
INFRA_EXAMPLES = 5
INFRA_MAX_LOADING_S = 120
INFRA_TRIES = 2


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA: sparse categorical accuracy overall and per label, with the two blessing thresholds."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.accuracy_threshold}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.max_accuracy_drop},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=signatures.SERVING_EXAMPLES,
                                    label_key=examples.LABEL_KEY)],
        # Per-class metrics slice on the label, so they exist for however many classes the data
        # have (TFMA's binarize settings need the class ids up front).
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[examples.LABEL_KEY])],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                tfma.MetricConfig(
                    class_name="SparseCategoricalAccuracy",
                    # Bless on the overall slice only; per-label values are reported, not gated.
                    per_slice_thresholds=[
                        tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                                     threshold=threshold)
                    ],
                ),
                tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                tfma.MetricConfig(class_name="ExampleCount"),
            ])
        ],
    )


def create_pipeline(
    config: PipelineConfig,
    data: ResolvedData,
    metadata_connection_config: object | None = None,
    beam_pipeline_args: list[str] | None = None,
) -> Pipeline:
    """The whole graph for ``config``, reading ``data``."""
    example_gen = make_example_gen(
        data.path, eval_percent=config.eval_percent, class_names=data.class_names,
        layout=data.layout_for(config.eval_percent),  # detected once per run, before Beam
    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="modules.preprocessing.preprocessing_fn",
        custom_config={"code": code_fingerprint(TRANSFORM_FILES)},
        # No pre/post-transform statistics: two more TFDV passes over every pixel feature that
        # nothing reads (StatisticsGen already has the raw data's, and the transform is a fixed
        # scaling). On 60,000 Fashion-MNIST images they were most of Transform's time.
        disable_statistics=True,
    )
    components: list[object] = [
        example_gen, statistics_gen, schema_gen, example_validator, transform,
    ]
    custom_config = {
        "hparams": config.hparams.to_dict(),
        "class_names": list(data.class_names),
        "model_name": config.model_name,
        "in_memory_examples": config.in_memory_examples,
        "max_train_minutes": config.max_train_minutes,
        "code": code_fingerprint(),
    }
    trainer_inputs: dict[str, object] = {}
    if config.tune:
        tuner = Tuner(
            tuner_fn="modules.tuning.tuner_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            train_args=TrainArgs(splits=["train"]),
            eval_args=EvalArgs(splits=["eval"]),
            custom_config={**custom_config, "max_trials": config.tune_trials},
        )
        components.append(tuner)
        trainer_inputs["hyperparameters"] = tuner.outputs["best_hyperparameters"]
    if config.warm_start:
        latest_model = Resolver(
            strategy_class=LatestArtifactStrategy,
            model=Channel(type=standard_artifacts.Model),
        ).with_id("LatestModelResolver")
        components.append(latest_model)
        trainer_inputs["base_model"] = latest_model.outputs["model"]
    trainer = SummarizingTrainer(
        run_fn="modules.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=TrainArgs(splits=["train"]),
        eval_args=EvalArgs(splits=["eval"]),
        custom_config=custom_config,
        **trainer_inputs,
    ).with_id("Trainer")
    baseline = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")
    evaluator = SummarizingEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config),
    ).with_id("Evaluator")
    components += [trainer, baseline, evaluator]
    pusher_inputs: dict[str, object] = {}
    if config.infra_validation:
        infra_validator = LocalInfraValidator(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            serving_spec=serving_spec(config.model_name),
            request_spec=request_spec(INFRA_EXAMPLES),
            validation_spec=validation_spec(INFRA_MAX_LOADING_S, INFRA_TRIES),
        ).with_id("InfraValidator")
        # It needs only the model and examples (TFX runs it beside the Evaluator); placed after
        # it, the graph and the run's progress read in the order the checks matter.
        infra_validator.add_upstream_node(evaluator)
        components.append(infra_validator)
        pusher_inputs["infra_blessing"] = infra_validator.outputs["blessing"]
    pusher = VersioningPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=PushDestination(
            filesystem=PushDestination.Filesystem(base_directory=config.push_directory)
        ),
        **pusher_inputs,
    ).with_id("Pusher")
    components.append(pusher)
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root_uri,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
