"""Issue 22: the console's predict proxy needs the token, escapes what it puts in the server's
URL, refuses a Host it does not answer to (DNS rebinding) and image bombs."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from registry.ui import security
from tests.bombs import bomb_png
from tests.ui.conftest import TOKEN, Console, start_console, stop
from tests.ui.test_console_http import csrf_of


def _png() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _session(console: Console, token: bool) -> tuple[requests.Session, dict[str, str]]:
    session = requests.Session()
    if token:
        session.get(f"{console.url}/predict?token={TOKEN}", timeout=30)
    return session, {"X-CSRF-Token": csrf_of(session, f"{console.url}/predict")}


def test_the_proxy_needs_the_token_not_only_the_csrf_value(console: Console) -> None:
    session, headers = _session(console, token=False)  # every page shows the CSRF value
    answer = session.post(f"{console.url}/api/predict", headers=headers, timeout=60,
                          json={"model": console.model, "image_b64": _png()})
    assert answer.status_code == 403 and "token" in answer.json()["error"], answer.text
    session, headers = _session(console, token=True)
    answer = session.post(f"{console.url}/api/predict", headers=headers, timeout=60,
                          json={"model": console.model, "image_b64": _png()})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("choice", [
    {"label": "../../../../v2/models/x/infer?"}, {"label": "stable/../x"}, {"label": "a b"},
    {"version": "1/../../x"}, {"version": True}, {"version": "1e3"},
])
def test_labels_and_versions_cannot_leave_their_path_segment(console: Console,
                                                             choice: dict) -> None:
    session, headers = _session(console, token=True)
    answer = session.post(f"{console.url}/api/predict", headers=headers, timeout=60,
                          json={"model": console.model, "image_b64": _png(), **choice})
    assert answer.status_code == 400, answer.text


def test_an_image_bomb_is_refused_before_decoding(console: Console) -> None:
    session, headers = _session(console, token=True)
    for signature in ("serving_default", "serving_images"):
        answer = session.post(f"{console.url}/api/predict", headers=headers, timeout=60, json={
            "model": console.model, "signature": signature,
            "image_b64": base64.b64encode(bomb_png()).decode()})
        assert answer.status_code == 400 and "pixels" in answer.json()["error"], answer.text


def test_a_host_the_console_does_not_answer_to_is_refused(console: Console) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 sends Host (and Origin) evil.example."""
    port = console.url.rsplit(":", 1)[1]
    rebound = requests.get(f"{console.url}/models", timeout=30,
                           headers={"Host": f"evil.example:{port}"})
    assert rebound.status_code == 421 and "--allowed-host" in rebound.text
    posted = requests.post(f"{console.url}/api/predict", timeout=30, json={}, headers={
        "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
    assert posted.status_code == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert requests.get(f"{console.url}/models", headers={"Host": host},
                            timeout=30).status_code == 200


def test_allowed_host_adds_a_name(console: Console, tmp_path: Path) -> None:
    extra = start_console(console.metadata, console.serving_dir, console.model,
                          str(tmp_path), console.server_url, tmp_path / "ui.log",
                          "--allowed-host", "proxy.example")
    try:
        port = extra.url.rsplit(":", 1)[1]
        assert requests.get(f"{extra.url}/models", headers={"Host": f"proxy.example:{port}"},
                            timeout=30).status_code == 200
        assert requests.get(f"{extra.url}/models", headers={"Host": f"other.example:{port}"},
                            timeout=30).status_code == 421
    finally:
        stop(extra.proc)


def test_host_names_parse_as_browsers_send_them() -> None:
    allowed = security.allowed_hosts("127.0.0.1", ("Proxy.Example",))
    assert security.host_ok("[::1]:8080", allowed) and security.host_ok("localhost", allowed)
    assert security.host_ok("proxy.example:443", allowed)
    assert not security.host_ok("127.0.0.1.evil.example", allowed)
    assert not security.host_ok(None, allowed)
