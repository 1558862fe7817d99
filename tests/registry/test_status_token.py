"""Issue 22: `mlmodel status` against a model server with a token (--token, $SERVING_AUTH_TOKEN),
and the server's error_code/message for a version shown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import HTTPServer

import pytest

from tests.registry.conftest import Env, JsonHandler
from tests.registry.test_cli import mlmodel

SECRET = "s3cret"


class _TokenServer(JsonHandler):
    def answer(self) -> tuple[dict[str, object], int]:
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            body, code = {"error": "missing or wrong bearer token"}, 401
        else:
            body, code = {"model_version_status": [
                {"version": "2", "state": "END", "status": {
                    "error_code": "NOT_FOUND", "error_message": "the version directory is gone"}},
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}]}, 200
        return body, code


@pytest.fixture
def url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _TokenServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("how", ["flag", "env", "none"])
def test_status_authenticates_with_the_servers_token(capsys: pytest.CaptureFixture[str],
                                                     sqlite_env: Env, url: str, how: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_env.add_run("mnist")
    reg = sqlite_env.registry()
    reg.deploy("mnist", label="stable", user="root")
    reg.deploy("mnist", user="root")
    monkeypatch.delenv("SERVING_AUTH_TOKEN", raising=False)
    extra = ["--token", SECRET] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("SERVING_AUTH_TOKEN", SECRET)
    code, out, err = mlmodel(capsys, sqlite_env, "status", "mnist", "--url", url,
                             "--output", "json", *extra)
    assert code == 0, err
    rows = {r["version"]: r for r in json.loads(out)}
    if how == "none":
        assert rows[1]["live_state"] is None and "needs its token" in rows[1]["source"]
        return
    assert rows[1]["live_state"] == "AVAILABLE" and rows[2]["live_state"] == "END"
    assert rows[2]["live_message"] == "NOT_FOUND: the version directory is gone"
