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

    async def fake_serve(runtime: object, config: object, grace_s: float) -> None:
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


def test_help_states_the_servers_own_defaults() -> None:
    from serving.app import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_KEEPALIVE_TIMEOUT_S

    assert f"{DEFAULT_HEADER_TIMEOUT_S:g} s" == cli.HEADER_TIMEOUT_HELP
    assert f"{DEFAULT_KEEPALIVE_TIMEOUT_S:g} s" == cli.KEEPALIVE_TIMEOUT_HELP
