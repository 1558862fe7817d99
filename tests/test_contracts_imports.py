"""The import rules of issue 9, checked on the source (AST) and in a fresh interpreter.

* No module in ``registry/`` or ``serving/`` imports ``modules`` (the user code TFX hashes and
  loads), in any form, at top level or inside a function.
* ``contracts/`` imports only the standard library and itself.
* ``import registry.cli`` loads neither TensorFlow, nor TFX, nor ``modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``, however nested or spelled."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def _sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def test_the_scan_sees_every_form_of_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import modules\nimport modules.features as f\nfrom modules import x\n"
                     "def g():\n    from modules.signatures import y\n"
                     "    importlib.import_module('modules.model')\n    __import__('modules')\n")
    assert [name for _, name in _imported(probe)] == ["modules"] * 6


@pytest.mark.parametrize("package", ["registry", "serving"])
def test_registry_and_server_never_import_modules(package: str) -> None:
    offending = [f"{path.relative_to(ROOT)}:{line}" for path in _sources(package)
                 for line, name in _imported(path) if name == "modules"]
    assert not offending, (f"{package}/ imports the TFX user code `modules` at {offending}; "
                           "import what it needs from contracts/ instead")


def test_contracts_import_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"contracts", "__future__"}
    offending = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in _sources("contracts") for line, name in _imported(path)
                 if name not in allowed]
    assert not offending, f"contracts/ must stay dependency-free: {offending}"


PROBE = """
import sys
import registry.cli
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tfx', 'modules', 'keras',
                                                         'tf_keras', 'matplotlib'})
print(','.join(heavy))
"""


def test_importing_registry_cli_loads_no_tensorflow_tfx_or_modules() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"import registry.cli loaded {proc.stdout.strip()}"


def test_importing_contracts_changes_nothing() -> None:
    probe = ("import os, sys; before = dict(os.environ)\n"
             "import contracts.dictionary, contracts.examples, contracts.mlmd, contracts.runtime, "
             "contracts.settings, contracts.signatures, contracts.training, contracts.versions\n"
             "assert dict(os.environ) == before, 'importing contracts changed the environment'\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('tensorflow', 'tfx', 'numpy', 'modules')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
