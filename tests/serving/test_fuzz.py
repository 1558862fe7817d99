"""Property-based fuzzing driven by the server's own OpenAPI document (hypothesis).

For every operation in /openapi.json, hypothesis generates path parameters and request bodies
from the document's schemas (mixed with arbitrary JSON and junk bytes). Whatever comes in, the
server must answer with JSON, never a 5xx, errors in the one ``{"error": str}`` shape, successes
matching the documented response schema, and stay healthy.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.openapi import openapi_document

from .conftest import Server

DOC = openapi_document()
SCHEMAS = DOC["components"]["schemas"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 300) | st.floats(allow_nan=False, width=32)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A hypothesis strategy for (a useful subset of) an OpenAPI 3.0 schema."""
    if "$ref" in schema:
        return from_schema(SCHEMAS[schema["$ref"].rsplit("/", 1)[1]], depth)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of(*(from_schema(s, depth + 1) for s in schema["oneOf"]))
    kind = schema.get("type")
    if kind == "object" and "properties" in schema and depth < 4:
        required = set(schema.get("required", []))
        props = {k: from_schema(v, depth + 1) for k, v in schema["properties"].items()}
        return st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                     optional={k: v for k, v in props.items()
                                               if k not in required})
    if kind == "array":
        items = from_schema(schema.get("items", {}), depth + 1) if depth < 4 else JSON_VALUES
        low = min(schema.get("minItems", 0), 3)
        high = max(low, min(schema.get("maxItems", 4), 4))
        if schema.get("minItems", 0) > 4:  # e.g. 784 pixels: a valid-length list of values
            return st.lists(st.integers(0, 255), min_size=schema["minItems"],
                            max_size=schema["minItems"])
        return st.lists(items, min_size=low, max_size=high)
    if kind == "integer":
        return st.integers(schema.get("minimum", -5), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(allow_nan=False, width=32)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) < 40)
        return st.text(max_size=12)
    return JSON_VALUES


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if path in ("/metrics",):
                continue
            ops.append((path, method.upper(), op))
    return ops


def path_value(param: dict[str, Any]) -> st.SearchStrategy[str]:
    known = {"name": ["root_mnist", "ROOT_MNIST", "nope"], "version": ["1", "2", "0"],
             "label": ["stable", "canary"]}.get(param["name"], ["x"])
    generated = from_schema(param["schema"]).map(str)
    return st.sampled_from(known) | generated


@st.composite
def requests_for(draw: st.DrawFn, path: str, op: dict[str, Any]) -> tuple[str, bytes | None]:
    url_path = path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = draw(path_value(param))
            url_path = url_path.replace("{" + param["name"] + "}",
                                        requests.utils.quote(value, safe=""))
    body: bytes | None = None
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        choice = draw(st.integers(0, 9))
        if choice < 6:
            body = json.dumps(draw(from_schema(schema))).encode()
        elif choice < 9:
            body = json.dumps(draw(JSON_VALUES)).encode()
        else:
            body = draw(st.binary(max_size=64))
    return url_path, body


def response_schema(op: dict[str, Any], status: int) -> dict[str, Any] | None:
    entry = op["responses"].get(str(status))
    if entry is None or "content" not in entry:
        return None
    schema = entry["content"].get("application/json", {}).get("schema")
    return {**schema, "components": DOC["components"]} if schema else None


OPS = operations()


@pytest.mark.parametrize("path,method,op", OPS, ids=[f"{m} {p}" for p, m, _ in OPS])
def test_fuzz_operation(server: Server, path: str, method: str, op: dict[str, Any]) -> None:
    session = requests.Session()

    @settings(max_examples=20, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(requests_for(path, op))
    def check(request: tuple[str, bytes | None]) -> None:
        url_path, body = request
        r = session.request(method, server.url + url_path, data=body, timeout=30,
                            headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (url_path, body, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json"), r.headers
        payload = r.json()
        if r.status_code >= 400:
            assert set(payload) == {"error"} and isinstance(payload["error"], str), payload
            assert payload["error"], "error messages are never empty"
        else:
            schema = response_schema(op, r.status_code)
            if schema is not None:
                jsonschema.validate(payload, schema)

    check()
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(1, 4), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 1.0, 0.5, 1e-30]))
def test_valid_images_always_predict(server: Server, n: int, seed: int, scale: float) -> None:
    images = (np.random.default_rng(seed).random((n, 28, 28, 1)) * scale).astype(np.float32)
    r = requests.post(f"{server.url}/v1/models/root_mnist:predict",
                      json={"instances": images.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert len(rows) == n
    assert all(abs(sum(row) - 1) < 1e-4 for row in rows)

