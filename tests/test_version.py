"""One version string: contracts.__version__, which pyproject.toml reads and the server reports."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import contracts

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("contracts", "datasources", "metastore", "modules", "pipeline", "registry", "serving")


def test_pyproject_reads_the_version_from_contracts() -> None:
    text = (REPO / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project and not re.search(r"^version\s*=", project, re.M)
    assert 'version = { attr = "contracts.__version__" }' in text
    built = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert built.stdout.strip().splitlines()[-1] == contracts.__version__, built.stderr
    assert importlib.metadata.version("mnist-tfx") == contracts.__version__


def test_no_other_file_writes_the_version() -> None:
    literal = re.compile(r"['\"]" + re.escape(contracts.__version__) + r"['\"]")
    found = [str(path.relative_to(REPO)) for package in PRODUCT
             for path in (REPO / package).rglob("*.py") if literal.search(path.read_text())]
    assert found == ["contracts/__init__.py"], found


def test_the_server_reports_it() -> None:
    from serving.app import SERVER_VERSION
    from serving.openapi import openapi_document

    assert contracts.__version__ == SERVER_VERSION
    assert openapi_document()["info"]["version"] == contracts.__version__
