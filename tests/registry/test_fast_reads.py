"""list, summary and serving status load no TensorFlow, TFX or modules/; status asks the server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import HTTPServer

import pytest

from registry import status
from tests.registry.conftest import REPO, Env, JsonHandler

PROBE = ("import sys, runpy; sys.argv = ['mlmodel'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('registry', run_name='__main__')\n"
         "except SystemExit as e:\n    code = e.code\n"
         "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
         "('tensorflow', 'tfx', 'keras', 'tf_keras', 'apache_beam', 'modules', 'matplotlib'))\n"
         "print('HEAVY=' + ','.join(heavy[:5]), file=sys.stderr); sys.exit(code)")


@pytest.mark.parametrize("args", [["list"], ["summary", "mnist"], ["status", "mnist"],
                                  ["history", "mnist"]])
def test_reads_do_not_import_tensorflow_or_tfx(sqlite_env: Env, args: list[str]) -> None:
    sqlite_env.add_run("mnist")
    assert sqlite_env.run("deploy", "mnist").returncode == 0
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO,
                          env=sqlite_env.environ(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY="), proc.stderr


class _FakeServer(JsonHandler):
    def answer(self) -> tuple[dict[str, object], int]:
        if self.path == "/v1/models/root_mnist":
            body = {"model_version_status": [
                {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK"}},
                {"version": "1", "state": "UNLOADING", "status": {"error_code": "OK"}}]}
            code = 200
        else:
            body, code = {"error": "Servable not found"}, 404
        return body, code


def test_serving_status_merges_live_server_state(sqlite_env: Env) -> None:
    sqlite_env.add_run("mnist")
    reg = sqlite_env.registry()
    reg.deploy("mnist", label="stable", user="root")
    reg.deploy("mnist", user="root")
    reg.deploy("mnist", user="root")
    server = HTTPServer(("127.0.0.1", 0), _FakeServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rows = status.serving_status(reg, "mnist", url)
    finally:
        server.shutdown()
    assert [(r.version, r.state, r.registry_state, r.labels) for r in rows] == [
        (1, "UNLOADING", "SERVING", ("stable",)), (2, "AVAILABLE", "STANDBY", ()),
        (3, "NOT_LOADED", "SERVING", ())]
    assert all(r.source == f"server {url}" for r in rows)
    unreachable = status.serving_status(reg, "mnist", "http://127.0.0.1:9", timeout=0.5)
    assert [r.state for r in unreachable] == ["SERVING", "STANDBY", "SERVING"]
    assert all(r.live_state is None for r in unreachable)


@pytest.mark.parametrize("how", ["--url", "--server-url", "url=", "env"])
def test_status_url_flag_spellings(sqlite_env: Env, how: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--url`` is the spelling; ``--server-url`` (the old one), key=value and the env work too."""
    from click.testing import CliRunner

    from contracts.settings import ENV_SERVER_URL
    from registry.cli import cli

    sqlite_env.add_run("mnist")
    sqlite_env.registry().deploy("mnist", user="root")
    server = HTTPServer(("127.0.0.1", 0), _FakeServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(ENV_SERVER_URL, url if how == "env" else "http://127.0.0.1:9")
    args = {"--url": ["--url", url], "--server-url": ["--server-url", url],
            "url=": [f"url={url}"], "env": []}[how]
    try:
        result = CliRunner().invoke(cli, ["--metadata", sqlite_env.metadata, "--serving-dir",
                                          sqlite_env.serving_dir, "status", "mnist", *args,
                                          "--output", "json"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["source"] == f"server {url}" and rows[0]["live_state"] == "UNLOADING"
