"""Worker code that ships (issue 11, part): Beam's stager turns ``--setup_file=./setup.py`` into
an sdist holding every module a worker imports, and that sdist, installed somewhere else, is
what a worker outside the checkout imports."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("contracts", "datasources", "metastore", "pipeline", "modules", "registry", "serving")


def test_beams_stager_builds_our_package_from_setup_py(tmp_path: Path) -> None:
    from apache_beam.runners.portability.stager import Stager

    sdist = Stager._build_setup_package(str(ROOT / "setup.py"), str(tmp_path / "staged"))
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files", *SHIPPED], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    wanted = {name for name in tracked if name.endswith(".py")}
    if wanted:  # a git checkout: every tracked module of the shipped packages is in the sdist
        assert wanted <= names, sorted(wanted - names)[:10]

    target = tmp_path / "worker-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), sdist], check=True,
                   capture_output=True, timeout=300)
    installed = {p.name for p in target.iterdir()
                 if not p.name.endswith(("-info", "__pycache__")) and p.name != "bin"}
    assert installed == set(SHIPPED), installed  # what workers get: the packages, no tests
    probe = ("import pipeline.components.image_example_gen_executor as e, modules.trainer as t, "
             "contracts.examples as c\nprint(e.__file__)\nprint(t.__file__)\nprint(c.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    files = done.stdout.split()
    assert len(files) == 3 and all(f.startswith(str(target)) for f in files), files
