"""``mlmodel`` is built from one table (``registry.cli.COMMANDS``) and loads a verb's module only
when that verb runs: ``mlmodel list`` never loads the console, Beam or TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("registry.ui", "registry.cli.ui", "registry.cli.offline", "registry.cli.report",
         "aiohttp", "jinja2", "apache_beam", "tensorflow", "tfx", "matplotlib")

PROBE = """
import sys
from registry.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
loaded = set(sys.modules)
heavy = sorted(m for m in loaded if m.split('.')[0] in {h.split('.')[0] for h in HEAVY}
               and any(m == h or m.startswith(h + '.') for h in HEAVY))
print('HEAVY=' + ','.join(heavy))
print('ASYNCIO=' + str('asyncio' in loaded))
print('MLMD=' + str('ml_metadata' in loaded))
"""


def _probe(*argv: str) -> dict[str, str]:
    code = f"HEAVY = {HEAVY!r}\n" + PROBE
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "=" in line and line.split("=")[0]
             in ("HEAVY", "ASYNCIO", "MLMD")]
    return dict(line.split("=", 1) for line in lines)


def test_list_help_loads_neither_the_console_nor_asyncio_nor_mlmd() -> None:
    found = _probe("list", "--help")
    assert found["HEAVY"] == ""
    assert found["ASYNCIO"] == "False"
    assert found["MLMD"] == "False"


def test_list_loads_neither_the_console_nor_asyncio(tmp_path: Path) -> None:
    """asyncio came only through ML Metadata's ``import grpc``: deferred now
    (metastore/deferred_grpc.py), while ``import ml_metadata`` alone still loads it."""
    found = _probe("--metadata", str(tmp_path / "none.db"), "--serving-dir",
                   str(tmp_path / "serving"), "list")
    assert found["HEAVY"] == ""
    assert found["MLMD"] == "True"
    assert found["ASYNCIO"] == "False"
    alone = subprocess.run([sys.executable, "-c", "import sys, ml_metadata; "
                            "print('asyncio' in sys.modules)"], capture_output=True,
                           text=True, timeout=120)
    assert alone.stdout.strip() == "True"  # what the deferral saves


def test_deferred_grpc_is_the_real_one_on_first_use() -> None:
    """ML Metadata's modules get the real grpc on first use (its errors match), and every other
    importer gets the real module from the start."""
    code = """
import sys
import metastore
from ml_metadata.metadata_store import metadata_store
assert 'grpc' not in sys.modules and 'asyncio' not in sys.modules
error = metadata_store.grpc.RpcError
import grpc
assert error is grpc.RpcError and sys.modules['grpc'] is grpc
assert type(grpc).__name__ == 'module'
channel = metadata_store.grpc.insecure_channel('127.0.0.1:1')
channel.close()
print('OK')
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "OK", proc.stderr


def test_the_group_lists_every_verb_of_its_table_and_nothing_registers_itself() -> None:
    from registry.cli import COMMANDS, cli

    assert cli.commands == {} or set(cli.commands) <= set(COMMANDS)
    import click

    ctx = click.Context(cli, info_name="mlmodel")
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for verb in COMMANDS:
        command = cli.get_command(ctx, verb.upper())
        assert isinstance(command, click.Command) and command.name == verb


def test_no_module_of_the_cli_package_imports_its_root() -> None:
    import ast

    for path in sorted((ROOT / "registry" / "cli").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "registry.cli", f"{path.name} imports the root group"
            if isinstance(node, ast.Import):
                assert all(a.name != "registry.cli" for a in node.names), path.name
