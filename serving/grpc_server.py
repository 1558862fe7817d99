"""TF Serving's gRPC API on the same model manager as REST (``serving start --grpc-port 8500``).

Services, from the generated stubs of ``tensorflow-serving-api`` (so unchanged TF Serving clients
work): ``tensorflow.serving.PredictionService`` (Predict, Classify, Regress, MultiInference,
GetModelMetadata), ``tensorflow.serving.ModelService.GetModelStatus``, and the standard
``grpc.health.v1.Health``.

It is a ``grpc.aio`` server on the REST server's event loop and shares its ``Ctx``: the same
manager (versions, labels, hot reload), batching (``Signature.run``), metrics (api
``grpc_<method>``), auth token (``authorization: Bearer T`` metadata), body budget
(``serving.admission``) and drain (SIGTERM: health turns NOT_SERVING, new calls get UNAVAILABLE,
calls in flight finish). Errors carry TF Serving's status codes and wording: NOT_FOUND for an
unknown model, version or label; INVALID_ARGUMENT for a bad tensor or signature; UNAVAILABLE
while loading or draining; UNAUTHENTICATED without the token; DEADLINE_EXCEEDED past the
client's deadline or ``--timeout-s``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format, wrappers_pb2
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from contracts.dictionary import default_class_names
from contracts.signatures import OUTPUT_PROBABILITIES
from serving import capture, grpc_codec
from serving.admission import Busy
from serving.codec import undecodable_message
from serving.deadline import within
from serving.errors import HTTP_STATUS, ServingError, invalid
from serving.example_inputs import serialized_examples
from serving.servable import Servable, Signature

log = logging.getLogger("serving.grpc")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
TF_STATUS = {"InvalidArgumentError": "INVALID_ARGUMENT", "OutOfRangeError": "OUT_OF_RANGE",
             "FailedPreconditionError": "FAILED_PRECONDITION",
             "ResourceExhaustedError": "RESOURCE_EXHAUSTED", "UnimplementedError": "UNIMPLEMENTED",
             "UnavailableError": "UNAVAILABLE", "NotFoundError": "NOT_FOUND",
             "DeadlineExceededError": "DEADLINE_EXCEEDED"}


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServingError):
        return grpc.StatusCode[exc.code], exc.message
    if isinstance(exc, UnicodeDecodeError):  # TF quoting undecodable input bytes
        return grpc.StatusCode.INVALID_ARGUMENT, undecodable_message(exc)
    if type(exc).__module__.startswith("tensorflow"):
        code = TF_STATUS.get(type(exc).__name__, "INTERNAL")
        return grpc.StatusCode[code], str(getattr(exc, "message", exc)).strip().splitlines()[0]
    log.exception("internal error in a gRPC call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def _http_equivalent(code: grpc.StatusCode) -> int:
    return 200 if code == grpc.StatusCode.OK else HTTP_STATUS.get(code.name, 500)


def _model_spec(servable: Servable, signature: str | None = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name,
                               version=wrappers_pb2.Int64Value(value=servable.version))
    if signature:
        spec.signature_name = signature
    return spec


OFF_LOOP_BYTES = 256 * 1024  # tensors claiming more are converted off the event loop (as REST)
TEST_DELAY_ENV = "SERVING_TEST_GRPC_DELAY_S"  # tests only: hold each call this long (drain tests)


class _Calls:
    """What every call goes through: drain, auth, budget, deadline, errors, metrics."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.test_delay_s = float(os.environ.get(TEST_DELAY_ENV, "0") or 0)

    def resolve(self, spec: model_pb2.ModelSpec, call: dict[str, Any]) -> Servable:
        call["model"] = spec.name
        which = spec.WhichOneof("version_choice")
        version = spec.version.value if which == "version" else None
        label = spec.version_label if which == "version_label" else None
        servable = self.ctx.manager.resolve(spec.name, version, label)
        call["version"] = str(servable.version)
        return servable

    def _authorized(self, context: aio.ServicerContext) -> bool:
        token = self.ctx.config.auth_token
        if not token:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                return hmac.compare_digest(value.encode(), f"Bearer {token}".encode())
        return False

    async def run(self, api: str, request: Any, context: aio.ServicerContext,
                  body: Callable[[dict[str, Any]], Awaitable[Any]], claimed: int = 0) -> Any:
        """``claimed``: the decoded bytes the request's tensors claim (``grpc_codec
        .claimed_bytes``); the budget takes it when it exceeds the wire size."""
        ctx = self.ctx
        if ctx.drain.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "the server is shutting down; retry on another replica")
        if not self._authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token; send the metadata "
                                "'authorization: Bearer <token>' (the server's --auth-token)")
        started = time.perf_counter()
        call: dict[str, Any] = {"model": "", "version": ""}
        size = max(request.ByteSize(), claimed)
        code, message, result = grpc.StatusCode.OK, "", None
        ctx.drain.enter()
        try:
            ctx.budget.take(size)
            try:
                remaining = context.time_remaining()
                timeout = ctx.config.timeout_s if remaining is None else min(
                    ctx.config.timeout_s, max(remaining, 0.0))
                if self.test_delay_s:
                    await asyncio.sleep(self.test_delay_s)
                result = await within(body(call), timeout)
            finally:
                ctx.budget.give(size)
        except asyncio.TimeoutError:
            code, message = grpc.StatusCode.DEADLINE_EXCEEDED, "the call exceeded its deadline"
        except Busy as exc:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            code, message = _status_of(exc)
        finally:
            ctx.drain.leave()
            model = call["model"] if call["version"] or call["model"] in ctx.manager.models() \
                else ("unknown" if call["model"] else "")
            ctx.metrics.observe(model, call["version"], api, _http_equivalent(code),
                                time.perf_counter() - started)
        if code != grpc.StatusCode.OK:
            await context.abort(code, message)
        return result


def _check_inputs(sig: Signature, names: set[str]) -> None:
    extra = sorted(names - set(sig.inputs))
    if extra:
        raise invalid(f"input tensor alias not found in signature: {extra[0]}. Inputs expected "
                      f"to be in the set {{{','.join(sorted(sig.inputs))}}}.")
    missing = sorted(set(sig.inputs) - names)
    if missing:
        raise invalid(f"Request inputs do not match required inputs for model "
                      f"`{sig.name}`. Send extra: {{}}. Missing but required: "
                      f"{{{','.join(missing)}}}.")


def _example_signature(servable: Servable, name: str) -> Signature:
    """The tf.Example signature Classify and MultiInference run (ours: serving_examples)."""
    if name:
        sig = servable.signature(name)
    else:
        found = [s for s in servable.signatures.values() if len(s.inputs) == 1
                 and next(iter(s.inputs.values())).is_string and "example" in next(iter(s.inputs))]
        if not found:
            raise invalid(f"model {servable.name} has no tf.Example signature to classify with")
        sig = found[0]
    if len(sig.inputs) != 1 or not next(iter(sig.inputs.values())).is_string:
        raise invalid(f"signature {sig.name} does not take serialized tf.Examples; use Predict")
    return sig


async def _classify(servable: Servable, sig_name: str, request_input: Any, ctx: Any = None
                    ) -> tuple[classification_pb2.ClassificationResult, str]:
    sig = _example_signature(servable, sig_name)
    inputs = {next(iter(sig.inputs)): serialized_examples(request_input)}
    outputs = await sig.run(inputs, capture.answer(ctx, servable, capture.CLASSIFY))
    scores = np.asarray(outputs.get(OUTPUT_PROBABILITIES, next(iter(outputs.values()))))
    names = (servable.class_names if len(servable.class_names) == scores.shape[-1]
             else default_class_names(scores.shape[-1]))
    result = classification_pb2.ClassificationResult()
    for row in scores:
        classes = result.classifications.add()
        for name, score in zip(names, row.tolist(), strict=True):
            classes.classes.add(label=name, score=score)
    return result, sig.name


def _check_output_filter(wanted: Any, outputs: Any) -> None:
    """INVALID_ARGUMENT, in TF Serving's words, for a requested output the signature lacks."""
    unknown = [k for k in wanted if k not in outputs]
    if unknown and outputs:
        raise invalid(f"output tensor alias not found in signature: {unknown[0]}. "
                      f"Outputs expected to be in the set {{{','.join(sorted(outputs))}}}.")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, calls: _Calls) -> None:
        self.calls = calls

    async def Predict(self, request: predict_pb2.PredictRequest,  # noqa: N802 - gRPC API
                      context: aio.ServicerContext) -> predict_pb2.PredictResponse:
        async def body(call: dict[str, Any]) -> predict_pb2.PredictResponse:
            servable = self.calls.resolve(request.model_spec, call)
            sig = servable.signature(request.model_spec.signature_name or None)
            _check_inputs(sig, set(request.inputs))
            limit = self.calls.ctx.config.max_body_bytes

            def convert() -> dict[str, np.ndarray]:
                return {key: grpc_codec.to_array(proto, sig.inputs[key], f"input {key}", limit)
                        for key, proto in request.inputs.items()}

            if claimed > OFF_LOOP_BYTES:  # big tensors convert in a thread: health keeps flowing
                inputs = await asyncio.get_running_loop().run_in_executor(None, convert)
            else:
                inputs = convert()
            # as TF Serving, before the model runs (a refused request is neither run nor captured)
            _check_output_filter(request.output_filter, sig.outputs)
            outputs = await sig.run(inputs, capture.answer(self.calls.ctx, servable))
            wanted = list(request.output_filter) or list(outputs)
            _check_output_filter(wanted, outputs)
            response = predict_pb2.PredictResponse(model_spec=_model_spec(servable, sig.name))
            for key in wanted:
                response.outputs[key].CopyFrom(grpc_codec.to_proto(outputs[key]))
            return response

        claimed = grpc_codec.claimed_bytes(request.inputs)
        return await self.calls.run("grpc_predict", request, context, body, claimed)

    async def Classify(self, request: classification_pb2.ClassificationRequest,  # noqa: N802
                       context: aio.ServicerContext) -> classification_pb2.ClassificationResponse:
        async def body(call: dict[str, Any]) -> classification_pb2.ClassificationResponse:
            servable = self.calls.resolve(request.model_spec, call)
            result, sig = await _classify(servable, request.model_spec.signature_name,
                                          request.input, self.calls.ctx)
            return classification_pb2.ClassificationResponse(
                model_spec=_model_spec(servable, sig), result=result)

        return await self.calls.run("grpc_classify", request, context, body)

    async def Regress(self, request: Any, context: aio.ServicerContext) -> Any:  # noqa: N802
        async def body(call: dict[str, Any]) -> Any:
            servable = self.calls.resolve(request.model_spec, call)
            raise invalid(f"Expected regression signature method_name to be {REGRESS_METHOD}; "
                          f"model {servable.name} has no regression signature (its signatures: "
                          f"{sorted(servable.signatures)}); use Predict or Classify")

        return await self.calls.run("grpc_regress", request, context, body)

    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest,  # noqa: N802
                             context: aio.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        async def body(call: dict[str, Any]) -> inference_pb2.MultiInferenceResponse:
            if not request.tasks:
                raise invalid("MultiInferenceRequest must have at least one task")
            if len({t.model_spec.name for t in request.tasks}) != 1:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same "
                              "model name")
            response = inference_pb2.MultiInferenceResponse()
            for task in request.tasks:
                if task.method_name != CLASSIFY_METHOD:
                    raise invalid(f"Unsupported signature method_name: {task.method_name}; this "
                                  f"model answers {CLASSIFY_METHOD} only (no regression "
                                  "signature)")
                servable = self.calls.resolve(task.model_spec, call)
                result, sig = await _classify(servable, task.model_spec.signature_name,
                                              request.input, self.calls.ctx)
                response.results.add(model_spec=_model_spec(servable, sig),
                                     classification_result=result)
            return response

        return await self.calls.run("grpc_multi_inference", request, context, body)

    async def GetModelMetadata(self,  # noqa: N802 - gRPC API
                               request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context: aio.ServicerContext
                               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        async def body(call: dict[str, Any]) -> get_model_metadata_pb2.GetModelMetadataResponse:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid(f"Metadata field {fields[0] if fields else '(none)'} is not "
                              "supported; ask for metadata_field: signature_def")
            servable = self.calls.resolve(request.model_spec, call)
            defs = get_model_metadata_pb2.SignatureDefMap()
            for key, value in servable.signature_defs.items():
                json_format.ParseDict(value, defs.signature_def[key],
                                      ignore_unknown_fields=True)
            response = get_model_metadata_pb2.GetModelMetadataResponse(
                model_spec=_model_spec(servable))
            response.metadata["signature_def"].Pack(defs)
            return response

        return await self.calls.run("grpc_metadata", request, context, body)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, calls: _Calls) -> None:
        self.calls = calls

    async def GetModelStatus(self,  # noqa: N802 - gRPC API
                             request: get_model_status_pb2.GetModelStatusRequest,
                             context: aio.ServicerContext
                             ) -> get_model_status_pb2.GetModelStatusResponse:
        async def body(call: dict[str, Any]) -> get_model_status_pb2.GetModelStatusResponse:
            spec = request.model_spec
            call["model"] = spec.name
            which = spec.WhichOneof("version_choice")
            statuses = self.calls.ctx.manager.status(
                spec.name, spec.version.value if which == "version" else None,
                spec.version_label if which == "version_label" else None)
            response = get_model_status_pb2.GetModelStatusResponse()
            states = get_model_status_pb2.ModelVersionStatus.State
            for status in statuses:
                entry = response.model_version_status.add(
                    version=status.version, state=states.Value(status.state))
                known = error_codes_pb2.Code.DESCRIPTOR.values_by_name
                code = status.error_code if status.error_code in known else "UNKNOWN"
                entry.status.error_code = error_codes_pb2.Code.Value(code)
                entry.status.error_message = status.error_message
            return response

        return await self.calls.run("grpc_status", request, context, body)


def tcp_address(host: str, port: int) -> str:
    """gRPC's spelling of ``host:port`` (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """The gRPC server of one ``serve()``: started beside REST, drained with it."""

    def __init__(self, ctx: Any, bind: str) -> None:
        """``bind``: ``host:port`` (``tcp_address``), or ``unix:PATH`` for a worker of a group."""
        limit = ctx.config.max_body_bytes
        self.server = aio.server(options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 0),  # grpc's default is 1: any same-user socket could join
        ])
        calls = _Calls(ctx)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(calls), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(calls),
                                                                  self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        try:
            self.port = self.server.add_insecure_port(bind)
        except RuntimeError:  # grpcio >= 1.6x raises where older ones returned 0
            self.port = 0
        if not self.port:  # (for a Unix socket grpc returns 1)
            raise OSError(f"cannot listen for gRPC on {bind}; is the port in use? "
                          "(--grpc-port 0 turns gRPC off)")

    async def start(self) -> None:
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def _set_health(self, status: int) -> None:
        for service in ("", PREDICTION_SERVICE):
            await self.health.set(service, status)

    async def begin_drain(self) -> None:
        """Health turns NOT_SERVING; ``_Calls.run`` refuses new calls once ``drain.draining``."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)
