"""The server's OpenAPI 3.0 document (served at ``/openapi.json``; the fuzz tests read it)."""

from __future__ import annotations

from typing import Any

import contracts
from contracts.examples import IMAGE_KEY, IMAGE_PIXELS, MAX_CLASSES, MIN_CLASSES
from contracts.signatures import (
    INPUT_EXAMPLES,
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    SERVING_DEFAULT,
    SERVING_EXAMPLES,
    SERVING_IMAGES,
)

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {_JSON: {"schema": schema}}}


def _responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": {_JSON: {"schema": ok}}}}
    for code in errors:
        out[str(code)] = {"description": "error", "content": {_JSON: {"schema": _ref("Error")}}}
    return out


def _param(name: str, schema: dict[str, Any], where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


_PER_CLASS = (f"One row per example; our models give one probability per class, in the order of "
              f"the model's class names ({MIN_CLASSES} to {MAX_CLASSES} classes; :classify "
              "returns them with their names).")
_CLASSIFY_RESULTS = ("One list per example: a [class name, score] pair per class of the model, "
                     "named from the model's dict.tsv (class indices when its names do not "
                     "match the outputs).")

NAME = _param("name", {"type": "string", "pattern": "^[^/:]+$"})
VERSION = _param("version", {"type": "integer", "minimum": 0})
LABEL = _param("label", {"type": "string", "pattern": "^[A-Za-z0-9_]+$"})
_AUTH_ERRORS = (400, 401, 404, 413, 503, 504)

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "B64": {"type": "object", "required": ["b64"], "properties": {"b64": {"type": "string"}},
            "additionalProperties": False},
    "Tensor": {"description": "A JSON tensor: nested lists of numbers, strings or {b64} objects",
               "oneOf": [{"type": "array", "items": {}}, {"type": "number"},
                         {"type": "string"}, {"$ref": "#/components/schemas/B64"}]},
    "PredictRequest": {
        "type": "object",
        "description": "Row format (instances) or columnar format (inputs), never both.",
        "properties": {
            "signature_name": {"type": "string", "default": SERVING_DEFAULT,
                               "enum": [SERVING_DEFAULT, SERVING_IMAGES, SERVING_EXAMPLES]},
            "instances": {"type": "array", "minItems": 1, "items": {}},
            "inputs": {},
        },
    },
    "PredictResponse": {"type": "object", "properties": {
        "predictions": {"type": "array", "items": {}, "description": _PER_CLASS},
        "outputs": {}}},
    "ClassifyRequest": {"type": "object", "required": ["examples"], "properties": {
        "signature_name": {"type": "string"},
        "context": {"type": "object"},
        "examples": {"type": "array", "minItems": 1, "items": {
            "type": "object", "properties": {
                IMAGE_KEY: {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                       "maximum": 255},
                            "minItems": IMAGE_PIXELS, "maxItems": IMAGE_PIXELS}}}}}},
    "ClassifyResponse": {"type": "object", "required": ["results"], "properties": {
        "results": {"type": "array", "description": _CLASSIFY_RESULTS, "items": {
            "type": "array", "items": {"type": "array", "items": {}}}}}},
    "ModelStatus": {"type": "object", "required": ["model_version_status"], "properties": {
        "model_version_status": {"type": "array", "items": {
            "type": "object", "required": ["version", "state", "status"], "properties": {
                "version": {"type": "string"},
                "state": {"type": "string",
                          "enum": ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]},
                "status": {"type": "object", "properties": {
                    "error_code": {"type": "string"}, "error_message": {"type": "string"}}}}}}}},
    "ModelMetadata": {"type": "object", "required": ["model_spec", "metadata"], "properties": {
        "model_spec": {"type": "object"}, "metadata": {"type": "object"}}},
    "V2Tensor": {"type": "object", "required": ["name", "shape", "datatype", "data"],
                 "properties": {
                     "name": {"type": "string",
                              "enum": [INPUT_IMAGES, INPUT_IMAGE_BYTES, INPUT_EXAMPLES]},
                     "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                     "datatype": {"type": "string", "enum": ["FP32", "BYTES", "INT64"]},
                     "data": {"type": "array", "items": {}},
                     "parameters": {"type": "object"}}},
    "V2InferRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": _ref("V2Tensor")},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                               "properties": {"name": {"type": "string"}}}}}},
    "V2InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "id": {"type": "string"}, "outputs": {"type": "array", "items": {"type": "object"}}}},
    "V2ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"],
                        "properties": {"name": {"type": "string"},
                                       "versions": {"type": "array", "items": {"type": "string"}},
                                       "platform": {"type": "string"},
                                       "inputs": {"type": "array", "items": {"type": "object"}},
                                       "outputs": {"type": "array", "items": {"type": "object"}}}},
    "Any": {"type": "object"},
}


def _tfs_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    selectors = {"": [NAME], "/versions/{version}": [NAME, VERSION],
                 "/labels/{label}": [NAME, LABEL]}
    for suffix, params in selectors.items():
        base = f"/v1/models/{{name}}{suffix}"
        paths[base] = {"get": {"summary": "TF Serving model status", "parameters": params,
                               "tags": ["tfserving"],
                               "responses": _responses(_ref("ModelStatus"), *_AUTH_ERRORS)}}
        paths[f"{base}/metadata"] = {"get": {
            "summary": "TF Serving model metadata (signature defs)", "parameters": params,
            "tags": ["tfserving"], "responses": _responses(_ref("ModelMetadata"), *_AUTH_ERRORS)}}
        paths[f"{base}:predict"] = {"post": {
            "summary": "TF Serving predict (row or columnar; binary as {b64})",
            "parameters": params, "tags": ["tfserving"],
            "requestBody": _body(_ref("PredictRequest")),
            "responses": _responses(_ref("PredictResponse"), *_AUTH_ERRORS)}}
        paths[f"{base}:classify"] = {"post": {
            "summary": "TF Serving classify on the tf.Example signature", "parameters": params,
            "tags": ["tfserving"], "requestBody": _body(_ref("ClassifyRequest")),
            "responses": _responses(_ref("ClassifyResponse"), *_AUTH_ERRORS)}}
    return paths


def openapi_document() -> dict[str, Any]:
    paths = _tfs_paths()
    paths["/v1/models"] = {"get": {"summary": "Every model served and its version states "
                                              "(an extension of TF Serving)", "tags": ["tfserving"],
                                   "responses": _responses(_ref("Any"), 401)}}
    for suffix, params in {"": [NAME], "/versions/{version}": [NAME, VERSION]}.items():
        base = f"/v2/models/{{name}}{suffix}"
        paths[base] = {"get": {"summary": "KServe v2 model metadata", "parameters": params,
                               "tags": ["kserve"],
                               "responses": _responses(_ref("V2ModelMetadata"), *_AUTH_ERRORS)}}
        paths[f"{base}/ready"] = {"get": {"summary": "KServe v2 model ready", "parameters": params,
                                          "tags": ["kserve"],
                                          "responses": _responses(_ref("Any"), *_AUTH_ERRORS)}}
        paths[f"{base}/infer"] = {"post": {
            "summary": "KServe v2 inference", "parameters": params, "tags": ["kserve"],
            "requestBody": _body(_ref("V2InferRequest")),
            "responses": _responses(_ref("V2InferResponse"), *_AUTH_ERRORS)}}
    paths["/v2"] = {"get": {"summary": "KServe v2 server metadata", "tags": ["kserve"],
                            "responses": _responses(_ref("Any"), 401)}}
    paths["/v2/health/live"] = {"get": {"summary": "Liveness (no auth)", "tags": ["health"],
                                        "security": [], "responses": _responses(_ref("Any"))}}
    paths["/v2/health/ready"] = {"get": {"summary": "Readiness (no auth)", "tags": ["health"],
                                         "security": [], "responses": _responses(_ref("Any"), 503)}}
    paths["/ping"] = {"get": {"summary": "SageMaker health (no auth)", "tags": ["sagemaker"],
                              "security": [], "responses": _responses(_ref("Any"), 503)}}
    paths["/invocations"] = {"post": {
        "summary": "SageMaker inference: TF Serving predict JSON (also text/csv, jsonlines); "
                   "X-Amzn-SageMaker-Custom-Attributes: tfs-model-name=NAME picks the model",
        "tags": ["sagemaker"],
        "parameters": [_param("X-Amzn-SageMaker-Custom-Attributes", {"type": "string"},
                              "header")],
        "requestBody": _body(_ref("PredictRequest")),
        "responses": _responses(_ref("PredictResponse"), *_AUTH_ERRORS)}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics (text format)", "tags": ["ops"],
                                 "responses": {"200": {"description": "Prometheus text",
                                                       "content": {"text/plain": {}}}}}}
    paths["/openapi.json"] = {"get": {"summary": "This document", "tags": ["ops"],
                                      "responses": _responses(_ref("Any"))}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "mnist-tfx model server", "version": contracts.__version__,
                 "description": "TF Serving REST, KServe v2 and SageMaker inference over the "
                                "registry's deployed models. Every error is {\"error\": msg}."},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
