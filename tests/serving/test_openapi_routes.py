"""/openapi.json and the route table (serving.app.ROUTES) describe the same API, both ways."""

from __future__ import annotations

import re

from serving.app import ROUTES, Route
from serving.openapi import openapi_document

DOC = openapi_document()
# Routes that exist only to answer a malformed path with TF Serving's own error: not operations.
ERROR_ONLY = {"tfs"}


def _concrete(path: str) -> str:
    """A documented path with its {parameters} filled in as a client would."""
    return re.sub(r"\{[^}]+\}", "1", path).replace("/labels/1", "/labels/x")


def _matches(route: Route, path: str, method: str) -> bool:
    return route.method in ("*", method.upper()) and route.pattern.fullmatch(_concrete(path)) is not None


def test_every_documented_operation_has_a_route() -> None:
    for path, operations in DOC["paths"].items():
        for method in operations:
            assert any(_matches(r, path, method) for r in ROUTES), f"{method.upper()} {path}"


def test_every_route_is_documented() -> None:
    operations = [(path, method) for path, ops in DOC["paths"].items() for method in ops]
    for route in ROUTES:
        if route.api in ERROR_ONLY:
            continue
        assert any(_matches(route, path, method) for path, method in operations), (
            f"{route.method} {route.pattern.pattern} ({route.handler.__name__}) is not in "
            "/openapi.json: describe it in serving/openapi.py")


def test_the_check_sees_a_missing_route() -> None:
    undocumented = Route("POST", re.compile(r"/v9/secret"), ROUTES[0].handler, "x")
    operations = [(p, m) for p, ops in DOC["paths"].items() for m in ops]
    assert not any(_matches(undocumented, p, m) for p, m in operations)
