"""TFX's Trainer, Evaluator and Pusher with our executors (same specs, same channels).

Subclassing and overriding ``EXECUTOR_SPEC`` is TFX's supported way to customise a component;
the graph, caching and MLMD records stay TFX's own.
"""

from __future__ import annotations

from tfx.components import Evaluator, Pusher, Trainer
from tfx.dsl.components.base import executor_spec

from pipeline.components.evaluator_executor import EvaluatorExecutor
from pipeline.components.pusher_executor import PusherExecutor
from pipeline.components.trainer_executor import TrainerExecutor


class SummarizingTrainer(Trainer):
    """Trainer whose Model artifact carries hparams, counts, timing and history in MLMD."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrainerExecutor)


class SummarizingEvaluator(Evaluator):
    """Evaluator whose ModelEvaluation artifact carries overall and per-label metrics in MLMD."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)


class VersioningPusher(Pusher):
    """Pusher that writes consecutive integer versions atomically."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(PusherExecutor)
