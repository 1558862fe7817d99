"""The InfraValidator's server, started as soon as the Trainer's model exists.

``serving start`` spends about 3 s importing TensorFlow and loading the model before it answers.
The InfraValidator runs after the Evaluator (``pipeline.pipeline``), which takes about as long and
leaves a core idle on this 2-core machine. So when a local run's Trainer finishes, the runner
starts the validation server on the new model (``started_after_training``); the executor then
claims it (``claim``) instead of starting its own, and finds it loaded. A server nobody claims (the
Evaluator failed, the run stopped) is stopped when the run ends.

Only in-process orchestration can hand a process over like this; elsewhere (Kubeflow, a remote
Beam worker) ``claim`` finds nothing and the executor starts its server as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from absl import logging

from pipeline.components.infra_validator_runner import (
    LocalServingRunner,
    served_model_path,
    started_runner,
)

_lock = threading.Lock()
_waiting: dict[tuple[str, str], LocalServingRunner] = {}


def _key(model_path: str, model_name: str) -> tuple[str, str]:
    return os.path.abspath(model_path), model_name


def start(model_path: str, model_name: str) -> None:
    """Start a validation server for ``model_path`` now; never raises (the executor retries)."""
    runner = started_runner(model_path, model_name)
    if runner is None:  # the executor starts its own and reports why
        logging.info("No validation server started ahead for %s.", model_path)
        return
    key = _key(model_path, model_name)
    with _lock:
        previous = _waiting.pop(key, None)
        _waiting[key] = runner
    if previous is not None:
        previous.Stop()


def claim(model_path: str, model_name: str) -> LocalServingRunner | None:
    """The server started ahead for this model and name, now the caller's to stop, or None."""
    with _lock:
        return _waiting.pop(_key(model_path, model_name), None)


def stop_unclaimed() -> None:
    with _lock:
        runners = list(_waiting.values())
        _waiting.clear()
    for runner in runners:
        runner.Stop()


@contextlib.contextmanager
def started_after_training(producers: Mapping[str, str]) -> Iterator[Callable[[str, Any], None]]:
    """A launch hook for ``pipeline.progress.reporting``: after a node of ``producers`` (node id
    -> the model name its InfraValidator serves under; ``infra_validator.model_producers``) has
    run, not from the cache, start the server on the model it made.

    Servers nobody claimed are stopped when the block ends.
    """
    from tfx.types import standard_component_specs

    def after_launch(node_id: str, execution_info: Any) -> None:
        name = producers.get(node_id)
        if name is None or execution_info is None:
            return
        models = execution_info.output_dict.get(standard_component_specs.MODEL_KEY) or []
        if len(models) != 1:
            return
        start(served_model_path(models[0]), name)

    try:
        yield after_launch
    finally:
        stop_unclaimed()
