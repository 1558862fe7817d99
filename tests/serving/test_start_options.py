"""`serving start`'s auth token and connection options, resolved before anything is served."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from serving import cli
from serving.cli import main, resolve_auth_token


def test_an_empty_token_is_an_error_not_no_auth() -> None:
    # SERVING_AUTH_TOKEN= used to turn authentication off without a word.
    with pytest.raises(click.UsageError, match=r"\$SERVING_AUTH_TOKEN is empty"):
        resolve_auth_token(None, None, {"SERVING_AUTH_TOKEN": ""})
    with pytest.raises(click.UsageError, match="--auth-token is empty"):
        resolve_auth_token("  ", None, {})
    assert resolve_auth_token(None, None, {}) is None
    assert resolve_auth_token(None, None, {"SERVING_AUTH_TOKEN": "s3cret"}) == "s3cret"
    assert resolve_auth_token("flag", None, {"SERVING_AUTH_TOKEN": "env"}) == "flag"


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert resolve_auth_token(None, str(token_file), {"SERVING_AUTH_TOKEN": "env"}) == "s3cret"
    with pytest.raises(click.UsageError, match="not both"):
        resolve_auth_token("x", str(token_file), {})
    token_file.write_text("\n")
    with pytest.raises(click.UsageError, match="the file is empty"):
        resolve_auth_token(None, str(token_file), {})


def test_start_refuses_an_empty_env_token_before_serving(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[object] = []

    async def fake_serve(runtime: object, config: object, grace_s: float,
                         sock: object = None, group: object = None) -> None:
        served.append(config)

    import serving.server

    monkeypatch.setattr(serving.server, "serve", fake_serve)
    args = ["start", "--source", "directory", "--serving-dir", str(tmp_path), "--port", "0"]
    result = CliRunner().invoke(main, args, env={"SERVING_AUTH_TOKEN": ""})
    assert result.exit_code == 2 and "SERVING_AUTH_TOKEN is empty" in result.output
    assert served == []
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    result = CliRunner().invoke(main, [*args, "--auth-token-file", str(token_file),
                                       "--header-timeout-s", "3", "--keepalive-timeout-s", "9",
                                       "--max-connections", "50"])
    assert result.exit_code == 0, result.output
    [config] = served
    assert config.auth_token == "s3cret"  # type: ignore[attr-defined]
    assert (config.header_timeout_s, config.keepalive_timeout_s,  # type: ignore[attr-defined]
            config.max_connections) == (3.0, 9.0, 50)  # type: ignore[attr-defined]


def test_one_default_per_setting() -> None:
    """Each server setting's default is StartOptions' (the flag's): ServerConfig and
    BatchingConfig, built with no arguments, agree with it; --help shows it."""
    import dataclasses

    from serving.app import ServerConfig
    from serving.batching import BatchingConfig
    from serving.options import StartOptions

    options, server, batching = StartOptions(), ServerConfig(), BatchingConfig()
    shared = {f.name for f in dataclasses.fields(ServerConfig)} & {
        f.name for f in dataclasses.fields(StartOptions)}
    assert {"port", "host", "timeout_s", "header_timeout_s", "keepalive_timeout_s",
            "max_image_pixels"} <= shared
    # the one exception: an in-process ServerConfig() (tests, benchmarks) has no gRPC port
    assert server.grpc_port == 0 and options.grpc_port == 8500
    for name in shared - {"grpc_port"}:
        assert getattr(server, name) == getattr(options, name), name
    assert server.max_body_bytes == options.max_body_bytes
    assert batching.max_batch == options.batch_max
    config = cli.server_config(options, token=None)
    assert dataclasses.replace(config, grpc_required=True) == dataclasses.replace(
        server, grpc_port=options.grpc_port, max_inflight_bytes=None, grpc_required=True)
    help_text = " ".join(CliRunner().invoke(main, ["start", "--help"]).output.split())
    assert f"[default: {options.keepalive_timeout_s};" in help_text
    assert f"[default: {options.port};" in help_text


def test_every_start_option_is_a_flag() -> None:
    """The flags are generated from StartOptions: one per field, none by hand."""
    import dataclasses

    from serving.options import StartOptions

    params = {p.name for p in cli.start.params}
    assert params == {f.name for f in dataclasses.fields(StartOptions)}


ORDER_PROBE = """
import sys
import serving.server as server

class Manager:
    synced = None
    def start(self):
        print("pillow", "PIL.Image" in sys.modules, "grpc", "serving.grpc_server" in sys.modules)

class Runtime:
    manager = Manager()
    def close(self):
        pass

async def serve(*args, **kwargs):
    return None

server.build_runtime = lambda *args, **kwargs: Runtime()
server.serve = serve
from serving.cli import main
main(["start", "--port", "0", "--grpc-port", sys.argv[2], "--serving-dir", sys.argv[1]],
     standalone_mode=False)
"""


def test_serving_imports_come_before_the_model_loader_thread(tmp_path: Path) -> None:
    """Two threads importing at once can deadlock on Python's module locks: a server stayed
    LOADING its first version for minutes while its event loop imported Pillow and the loader
    thread TensorFlow (both reach xml.parsers.expat). Its own process: nothing imported yet."""
    import subprocess
    import sys

    from serving.server import free_port

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", ORDER_PROBE, str(tmp_path),
                           str(free_port())], cwd=root,
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["pillow", "True", "grpc", "True"], done.stdout + done.stderr
