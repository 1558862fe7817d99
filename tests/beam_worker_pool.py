"""Beam workers that are not this process and do not see this checkout, for the tests.

``worker_environment`` makes a Python environment that has the venv's third-party packages
(apache-beam, TFX, TensorFlow...) but not this project: the venv's site-packages are added without
the editable install's finder. ``running_worker_pool`` starts
``apache_beam.runners.worker.worker_pool_main`` in it, from a folder outside the checkout, with
``pipeline/beam_worker_boot.py`` (copied next to it) as the container executable: the job's code
reaches the workers only through staging (``--setup_file``).
"""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.server import free_port

REPO = Path(__file__).resolve().parents[1]
BOOT = REPO / "pipeline" / "beam_worker_boot.py"


def worker_environment(folder: Path) -> Path:
    """A venv whose packages are this venv's, minus this project; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    [target] = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                              check=True, capture_output=True, text=True).stdout.split()
    ours = [p for p in site.getsitepackages() if p.endswith("site-packages")][0]
    (Path(target) / "zz_shared_packages.pth").write_text(
        "import site, sys; site.addsitedir(" + repr(ours) + "); "
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
        "getattr(f, '__module__', '') + type(f).__module__]; "
        "sys.path_hooks[:] = [h for h in sys.path_hooks if '__editable__' not in "
        "getattr(h, '__module__', '')]; "
        "sys.path[:] = [p for p in sys.path if '__editable__' not in p and not (p == "
        f"{str(REPO)!r} or p.startswith({str(REPO) + os.sep!r}) and 'site-packages' not in p)]\n")
    return python


@contextmanager
def running_worker_pool(folder: Path) -> Iterator[tuple[str, Path, Path]]:
    """Yields (``localhost:PORT``, the pool's log, the worker environment's python)."""
    python = worker_environment(folder / "worker-env")
    home = folder / "worker-home"  # the pool's working folder: outside the checkout
    home.mkdir()
    boot = home / "beam_worker_boot.py"
    shutil.copy(BOOT, boot)
    boot.chmod(0o755)
    port = free_port()
    log = folder / "worker-pool.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
               MNIST_TFX_WORKER_CACHE=str(folder / "worker-cache"), TF_CPP_MIN_LOG_LEVEL="3")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "apache_beam.runners.worker.worker_pool_main",
             f"--service_port={port}", f"--container_executable={boot}"],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)  # polling for the pool to come up
        yield f"localhost:{port}", log, python
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
