"""InfraValidator's model server runner: our own ``serving start`` as a local process.

TFX 1.16 starts TF Serving only in Docker (``LocalDockerRunner``) or in a Kubernetes pod
(``KubernetesRunner``). This runner implements the same ``BaseModelServerRunner`` contract with
``python -m serving start``, which speaks TF Serving's gRPC API (``serving/grpc_server.py``), so
TFX's ``TensorFlowServingClient`` checks the model status and sends the requests unchanged.

* The candidate is linked into a temporary serving dir as ``<model_name>/1/`` and served with
  ``--source directory`` (TF Serving's rule: every ``<name>/<N>``), on free loopback ports.
* The server runs in its own session (process group), and with ``PR_SET_PDEATHSIG`` so that it
  dies with the pipeline process even when that one is killed outright; ``Stop()`` sends SIGKILL
  to the group and waits for it. The executor calls ``Stop()`` in a ``finally``.
* The server's output goes to ``server.log`` in the temporary dir; ``GetLogs()`` returns it, and
  ``log_excerpt()`` the lines that say why a validation failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from tfx.components.infra_validator.model_server_runners import base_runner
from tfx.utils import path_utils

SERVED_VERSION = 1
AUTH_TOKEN_ENV = "SERVING_AUTH_TOKEN"  # serving.options.AUTH_TOKEN_ENV (the pipeline runs the
# server as a command and does not import it; tests/test_infra_validator.py checks they agree)
_PR_SET_PDEATHSIG = 1
_PROBLEM_WORDS = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error:", "error:")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _project_root() -> str:
    """The directory holding the ``serving`` package, for the child's PYTHONPATH (found, not
    imported: the pipeline does not depend on the server's code, only on its command line)."""
    spec = importlib.util.find_spec("serving")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the `serving` package is not importable here; install this "
                                "project (pip install .) to run the InfraValidator")
    return os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))


def log_excerpt(text: str, limit: int = 12) -> list[str]:
    """The server log lines that explain a failure: warnings, errors, tracebacks (else the tail)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    problems = [line for line in lines if any(word in line for word in _PROBLEM_WORDS)]
    return (problems or lines)[-limit:]


def child_env(parent: Mapping[str, str]) -> dict[str, str]:
    """The validation server's environment: the pipeline's, with this project importable and
    without a server token (``SERVING_AUTH_TOKEN``, ``serving.options.AUTH_TOKEN_ENV``). A user
    who exported one for ``mlmodel status`` would otherwise get a validation server that
    refuses TFX's client, which sends none: the model would never be infra-blessed. The server
    is private to this step (loopback, a port of its own, a temporary directory)."""
    env = {k: v for k, v in parent.items() if k != AUTH_TOKEN_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_project_root(), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class LocalServingRunner(base_runner.BaseModelServerRunner):
    """Runs ``python -m serving start`` on ``model_path`` as a local subprocess."""

    def __init__(self, model_path: str, model_name: str, host: str = "127.0.0.1") -> None:
        self._model_path = os.path.abspath(model_path)
        self._model_name = model_name
        self._host = host
        self._dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._grpc_port = 0
        self._log_path = ""

    def __repr__(self) -> str:
        pid = self._process.pid if self._process else None
        return (f"LocalServingRunner(model={self._model_path}, name={self._model_name}, "
                f"grpc={self._host}:{self._grpc_port}, pid={pid})")

    @property
    def model_path(self) -> str:
        return self._model_path

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def GetEndpoint(self) -> str:  # noqa: N802 - TFX's interface
        assert self._process is not None and self._grpc_port, "Start() the runner first"
        return f"{self._host}:{self._grpc_port}"

    def command(self) -> list[str]:
        assert self._dir is not None
        return [sys.executable, "-m", "serving", "start", "--source", "directory",
                "--serving-dir", os.path.join(self._dir, "models"), "--host", self._host,
                "--port", str(free_port(self._host)), "--grpc-port", str(self._grpc_port),
                "--poll-s", "0.1", "--grace-s", "0"]

    def Start(self) -> None:  # noqa: N802 - TFX's interface
        assert self._process is None, "a runner starts once; make another to restart"
        if not os.path.isfile(os.path.join(self._model_path, "saved_model.pb")):
            raise FileNotFoundError(f"{self._model_path} holds no saved_model.pb; the Trainer's "
                                    "model artifact must be a SavedModel directory")
        self._dir = tempfile.mkdtemp(prefix="infra-validation-")
        model_dir = os.path.join(self._dir, "models", self._model_name)
        os.makedirs(model_dir)
        os.symlink(self._model_path, os.path.join(model_dir, str(SERVED_VERSION)))
        self._grpc_port = free_port(self._host)
        self._log_path = os.path.join(self._dir, "server.log")
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=child_env(os.environ), start_new_session=True, preexec_fn=_die_with_parent)

    def WaitUntilRunning(self, deadline: float) -> None:  # noqa: N802 - TFX's interface
        """Until the gRPC port accepts connections; a server that exits first is a failure.
        The load itself is for TFX's client to wait for (the executor polls every 0.1 s)."""
        assert self._process is not None, "Start() the runner first"
        while time.time() < deadline:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"serving start exited with code {code} before listening; "
                                   f"its log: {self._log_path}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (self._host, self._grpc_port), timeout=0.2):
                return
            time.sleep(0.05)
        raise TimeoutError(f"serving start did not listen on {self.GetEndpoint()} in time")

    def Stop(self) -> None:  # noqa: N802 - TFX's interface
        """SIGKILL to the server's process group, then wait for it; never raises.

        The validation server holds nothing worth a graceful stop (no capture, no state), and a
        SIGTERM cost 0.8-5 s of TensorFlow's and Python's teardown per validation."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self._dir is not None:
            self._logs = self._read_log()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _read_log(self) -> str:
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def GetLogs(self) -> str | None:  # noqa: N802 - TFX's interface
        return (self._read_log() if self._dir is not None else getattr(self, "_logs", "")) or None


def served_model_path(model: Any) -> str:
    """The Trainer's SavedModel inside its Model artifact, as it is (the runner links it)."""
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def started_runner(model_path: str, model_name: str) -> LocalServingRunner | None:
    """A runner whose server has started on ``model_path``, or None when it could not start
    (the caller's first try starts another and reports why)."""
    runner = LocalServingRunner(model_path, model_name)
    try:
        runner.Start()
    except Exception:  # noqa: BLE001 - reported by the try that starts it again
        runner.Stop()
        return None
    return runner
