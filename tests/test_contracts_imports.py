"""The import rules of issue 9, checked on the source (AST) and in a fresh interpreter.

* No module in ``registry/`` or ``serving/`` imports ``modules`` (the user code TFX hashes and
  loads), in any form, at top level or inside a function.
* ``contracts/`` imports only the standard library and itself.
* ``import registry.cli`` loads neither TensorFlow, nor TFX, nor ``modules``.
* The layer table (issue 23): each package imports only the packages below it, no import cycle
  between files, no product file over 700 lines.
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


# ----------------------------------------------------------------------------- the layer table
# Each top-level package and the project packages it may import (itself always). Lower layers
# first: contracts < datasources, metastore, modules < registry < pipeline, serving.
LAYERS: dict[str, set[str]] = {
    "contracts": set(),
    "datasources": {"contracts"},
    "metastore": {"contracts"},
    "modules": {"contracts"},
    "registry": {"contracts", "datasources", "metastore"},
    "pipeline": {"contracts", "datasources", "metastore", "modules", "serving"},
    "serving": {"contracts", "datasources", "metastore"},
}
# Files allowed one more edge: the runner's edge wires --deploy to the registry.
EDGES: dict[str, set[str]] = {"pipeline/runner_cli.py": {"registry"}}
# Debts known when the table was written (issue 23), each to be removed by its owner; a file
# listed here that no longer needs the edge fails the test, so the list only shrinks.
KNOWN: dict[str, set[str]] = {
    "serving/cli.py": {"registry"},  # `serving status` mounts registry.status
    "serving/predict_client.py": {"registry"},
    "serving/sources.py": {"registry"},  # the server follows the registry's deployments
}
MAX_LINES = 700


def _product_files() -> list[Path]:
    return [path for package in LAYERS for path in _sources(package)]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Full dotted names of every project module ``path`` imports, however nested."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in LAYERS}


def test_every_package_imports_only_what_its_layer_allows() -> None:
    offending, stale = [], []
    for path in _product_files():
        rel = path.relative_to(ROOT).as_posix()
        own = rel.split("/")[0]
        allowed = LAYERS[own] | {own} | EDGES.get(rel, set()) | KNOWN.get(rel, set())
        used = {name.split(".")[0] for name in _imported_modules(path)}
        offending += [f"{rel} imports {pkg}" for pkg in sorted(used - allowed)]
        stale += [f"{rel} no longer imports {pkg}: drop it from KNOWN"
                  for pkg in sorted(KNOWN.get(rel, set()) - used)]
    assert not offending, "imports the layer table forbids:\n" + "\n".join(offending)
    assert not stale, "\n".join(stale)


def test_the_layer_table_has_no_cycle() -> None:
    for package, allowed in LAYERS.items():
        seen, todo = set(), list(allowed)
        while todo:
            current = todo.pop()
            assert current != package, f"{package} reaches itself through the layer table"
            if current not in seen:
                seen.add(current)
                todo += list(LAYERS[current])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_files() -> None:
    files = {_module_name(path): path for path in _product_files()}
    graph = {name: {imported for imported in _imported_modules(path)
                    if imported in files and imported != name}
             for name, path in files.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles (each group imports itself, lazily or not):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_product_file_is_over_700_lines() -> None:
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in _product_files()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"split these (at most {MAX_LINES} lines): {long}"
