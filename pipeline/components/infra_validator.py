"""TFX's InfraValidator with our own model server instead of Docker or Kubernetes.

The component, its spec, its request builder (requests from ExampleGen's examples and the model's
SignatureDefs), its TF Serving gRPC client, its retries, timeouts, SIGTERM handling and warm-up
export are TFX 1.16's. What differs:

* ``_ValidateOnce`` starts ``LocalServingRunner`` (``serving start`` as a local process) where
  TFX would pick a Docker or Kubernetes runner; the ``ServingSpec`` leaves ``serving_platform``
  unset, which TFX's own executor refuses, so this executor is the only one that runs it.
* The model is linked, not copied, into the server's directory (``_PrepareModelPath``).
* When every try failed, the ``InfraBlessing`` carries why (``infra_failure``: the error and the
  server's own log lines), and when it passed, how many requests were answered
  (``infra_requests``), for the run summary and ``mlmodel summary``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.components.infra_validator import component as iv_component
from tfx.components.infra_validator import error_types, serving_bins
from tfx.components.infra_validator import executor as iv_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import infra_validator_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from contracts import mlmd, signatures
from pipeline.components import infra_server_ahead
from pipeline.components.infra_validator_runner import (
    LocalServingRunner,
    log_excerpt,
    served_model_path,
    started_runner,
)

POLLING_INTERVAL_S = 0.1  # TFX polls the model status every 1 s; the server loads in ~1 s
SERVER_BINARY_TAG = "serving-start"  # the ServingSpec needs one "image tag"; names our server


def model_name_of(validator: Any) -> str:
    """The model name a validator component's ``ServingSpec`` serves the model under."""
    spec = validator.exec_properties[standard_component_specs.SERVING_SPEC_KEY]
    if isinstance(spec, str):  # as compiled: the proto's JSON
        spec = proto_utils.json_to_proto(spec, infra_validator_pb2.ServingSpec())
    return str(spec.model_name)


def model_producers(pipeline: Any) -> dict[str, str]:
    """For each of our InfraValidators in ``pipeline``: the id of the node that makes its model
    -> the name it serves the model under (``infra_server_ahead.started_after_training``)."""
    return {
        c.inputs[standard_component_specs.MODEL_KEY].producer_component_id: model_name_of(c)
        for c in pipeline.components if isinstance(c, LocalInfraValidator)
    }


def serving_spec(model_name: str) -> infra_validator_pb2.ServingSpec:
    """TF Serving's API (our server speaks it), no platform: the local process runner."""
    return infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[SERVER_BINARY_TAG]),
        model_name=model_name)


def request_spec(num_examples: int, make_warmup: bool = True) -> infra_validator_pb2.RequestSpec:
    """Predict requests through ``serving_examples`` from the eval split's tf.Examples.

    TFX's builder makes Classify requests only for a ``tensorflow/serving/classify`` SignatureDef;
    ours are predict signatures (``tf.saved_model.save``), and ``serving_examples`` takes one
    string tensor of serialized tf.Examples, which is exactly what its PredictRequest builder sends.
    """
    return infra_validator_pb2.RequestSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
            signature_names=[signatures.SERVING_EXAMPLES]),
        split_name="eval", num_examples=num_examples, make_warmup=make_warmup)


def validation_spec(max_loading_s: int, num_tries: int) -> infra_validator_pb2.ValidationSpec:
    return infra_validator_pb2.ValidationSpec(max_loading_time_seconds=max_loading_s,
                                              num_tries=num_tries)


def _describe(error: BaseException) -> str:
    """One line: the gRPC status behind TFX's ValidationFailed (whose text embeds the request)."""
    cause = error.__cause__
    details = getattr(cause, "details", None)
    if callable(details):
        code = getattr(cause, "code", lambda: "")()
        name = getattr(code, "name", str(code))
        return f"the server answered a request with {name}: {details()}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class InfraValidatorExecutor(iv_executor.Executor):
    """TFX's InfraValidator executor on ``LocalServingRunner``."""

    def __init__(self, context: Any = None) -> None:
        super().__init__(context)
        self._failures: list[dict[str, Any]] = []
        self._sent = 0
        self._early: LocalServingRunner | None = None  # started before TFX builds the requests

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY])
        self._early = self._start_early(input_dict, exec_properties)
        try:
            super().Do(input_dict, output_dict, exec_properties)
        except error_types.GracefulShutdown:
            raise
        except Exception as error:  # noqa: BLE001 - TFX reads the SavedModel before any server
            if self._failures:  # a server ran and the failure is recorded: a real error
                raise
            # TFX's request builder parses the model's SignatureDefs in this process first; a
            # model it cannot even parse is not servable either: not blessed, with the reason.
            self._failures.append({"reason": f"the SavedModel's signatures could not be read "
                                             f"({_describe(error)})", "log": []})
            iv_executor._mark_not_blessed(blessing)  # noqa: SLF001 - TFX's own marking
        finally:
            if self._early is not None:  # never used (TFX failed before validating): stop it
                self._early.Stop()
                self._early = None
        if blessing.get_int_custom_property(iv_executor._BLESSED_KEY):  # noqa: SLF001
            blessing.set_int_custom_property(mlmd.INFRA_REQUESTS, self._sent)
        else:
            last = self._failures[-1] if self._failures else {"reason": "unknown", "log": []}
            blessing.set_string_custom_property(mlmd.INFRA_FAILURE, json.dumps(
                {**last, "tries": len(self._failures)}))

    def _start_early(self, input_dict: dict[str, list[types.Artifact]],
                     exec_properties: dict[str, Any]) -> LocalServingRunner | None:
        """Start the first try's server now: it imports TensorFlow and loads the model while TFX
        reads the examples and the SignatureDefs in this process (~2 s saved per run)."""
        spec = infra_validator_pb2.ServingSpec()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.SERVING_SPEC_KEY],
                                  spec)
        if spec.WhichOneof("serving_platform") is not None or not spec.model_name:
            return None  # refused (or named by TFX) in _ValidateOnce
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        model_path = self._PrepareModelPath(model, spec)
        ahead = infra_server_ahead.claim(model_path, spec.model_name)
        if ahead is not None:  # the local runner started it when the Trainer finished
            logging.info("Using %r, started after training.", ahead)
            return ahead
        return started_runner(model_path, spec.model_name)  # None: _ValidateOnce reports why

    def _PrepareModelPath(self, model: types.Artifact,  # noqa: N802 - TFX's method
                          serving_spec: infra_validator_pb2.ServingSpec) -> str:
        """The Trainer's SavedModel as it is: the runner links it as ``<name>/1``."""
        return served_model_path(model)

    def _ValidateOnce(self, model_path: str,  # noqa: N802 - TFX's method
                      serving_binary: serving_bins.ServingBinary,
                      serving_spec: infra_validator_pb2.ServingSpec,
                      validation_spec: infra_validator_pb2.ValidationSpec,
                      requests: list[Any]) -> None:
        platform = serving_spec.WhichOneof("serving_platform")
        if platform is not None:
            raise ValueError(f"ServingSpec.{platform} is set; this executor runs `serving start` "
                             "locally and takes a ServingSpec without a serving_platform")
        deadline = time.time() + validation_spec.max_loading_time_seconds
        runner, self._early = self._early, None
        if runner is None or runner.model_path != os.path.abspath(model_path):
            if runner is not None:
                runner.Stop()
            runner = LocalServingRunner(model_path, serving_spec.model_name)
        try:
            if runner.pid is None:
                logging.info("Starting %r.", runner)
                runner.Start()
            runner.WaitUntilRunning(deadline)
            client = serving_binary.MakeClient(runner.GetEndpoint())
            client.WaitUntilModelLoaded(deadline, polling_interval_sec=POLLING_INTERVAL_S)
            if requests:
                client.SendRequests(requests)
            self._sent = len(requests)
        except BaseException as error:
            logs = runner.GetLogs() or ""
            self._failures.append({"reason": _describe(error), "log": log_excerpt(logs)})
            logging.error("Infra validation failed: %s\nBEGIN_MODEL_SERVER_LOG\n%s\n"
                          "END_MODEL_SERVER_LOG", _describe(error), logs)
            raise
        finally:
            logging.info("Stopping %r.", runner)
            runner.Stop()


class LocalInfraValidator(iv_component.InfraValidator):
    """TFX's InfraValidator component whose executor runs our server as a local process."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(InfraValidatorExecutor)
