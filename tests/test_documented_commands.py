"""Every command the README and docs show is run by a test, or marked "not runnable here".

A documented flag that fails on first use is worse than a missing one. So:

* every command in a ``bash``/``sh``/``console`` block of README.md, docs/**/*.md and the other
  READMEs must be covered: either ``COVERED`` names the test that runs it, or the command's line
  (or a comment line just above it in the block) says ``not runnable here: <why>``;
* every test ``COVERED`` names exists, and every ``COVERED`` entry still matches a documented
  command (no stale claims);
* every documented ``mlmodel``, ``serving`` and pipeline-runner command parses with the real click
  command (its subcommand, options and ``key=value`` arguments exist), without running it.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = sorted({REPO / "README.md", REPO / "notebooks" / "README.md",
                    REPO / "serving_model" / "README.md", *(REPO / "docs").rglob("*.md")})
SHELL_BLOCK = re.compile(r"^```(bash|sh|shell|console)[^\n]*\n(.*?)^```", re.S | re.M)
# "not runnable here: <why>" (it cannot run on this machine) or "not run by the tests: <why>"
# (it can, but costs more than the suite's budget; the reason says what runs it instead).
NOT_RUNNABLE = re.compile(r"not (?:runnable here|run by the tests):?\s*(.*)", re.I)

# (regex on the command as documented, test that runs it: "tests/file.py::test_name").
JOURNEY = "tests/test_journey.py::test_the_readme_journey_works_as_written"
COVERED: list[tuple[str, str]] = [
    (r"^make (run|test)$", "tests/test_documented_commands.py::test_ci_runs_the_readme_commands"),
    (r"^\.venv/bin/mlmodel (list|summary mnist|deploy mnist label=stable|report mnist --out "
     r"report\.html|eval mnist data/digits|predict mnist data/digits/3|doctor|ui &)$", JOURNEY),
    (r"^\.venv/bin/mlmodel ui$",
     "tests/ui/test_console_http.py::test_the_printed_url_holds_a_fresh_token"),
    (r"^\.venv/bin/mlmodel ui --help$",
     "tests/ui/test_console_http.py::test_help_names_every_option_with_examples"),
    (r"^\.venv/bin/mlmodel ui --port 8090 --server-url http://127\.0\.0\.1:8501$",
     "tests/ui/test_console_http.py::test_every_page_renders_from_the_registry_and_mlmd"),
    (r"^MLMODEL_UI_TOKEN=.* \.venv/bin/mlmodel ui --host 0\.0\.0\.0$",
     "tests/ui/test_console_http.py::test_off_loopback_every_page_needs_the_token"),
    (r"^\.venv/bin/serving (start &|predict mnist data/digits/3|status mnist)$", JOURNEY),
    # The runners on each layout: the same entry point and layout, end to end, on tiny data
    # (the literal flags are parsed by test_documented_flags_exist below).
    (r"local_runner --data ~/mnist_png$",
     "tests/test_pipeline_e2e.py::test_first_run_records_every_component_in_mlmd"),
    (r"local_runner --data ~/my_digits$",
     "tests/test_example_gen.py::test_local_dag_runner_on_a_flat_image_folder"),
    (r"local_runner --data ~/idx --model-name fashion --class-names",
     "tests/test_example_gen.py::test_local_dag_runner_on_idx_files"),
    (r"local_runner --data s3://mnist/mnist_png --s3-endpoint-url http://127\.0\.0\.1:9000$",
     "tests/test_object_storage.py::test_the_whole_pipeline_on_s3_blesses_pushes_and_sees_the_same_data"),
    (r"beam_runner -- --runner=PortableRunner --job_endpoint=embed --environment_type=EXTERNAL "
     r"--environment_config=localhost:50000 --setup_file=\./setup\.py$",
     "tests/test_worker_pool.py::test_the_graph_runs_on_workers_that_get_our_code_only_by_staging"),
    (r"^\.venv/bin/python -m pipeline\.beam_runner$",
     "tests/test_runners.py::test_beam_runner_runs_the_same_graph"),
    # IRIS's curl call, with the 784 values the docs elide.
    (r"^curl -d .*/v1/models/root_mnist_v1/versions/2:predict$",
     "tests/serving/test_rest.py::test_seed_001_curl_call_works_as_written"),
]


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # the command, continuation lines joined, comments removed
    not_runnable: str | None  # the reason, when marked


def _blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in SHELL_BLOCK.finditer(text)]


def _strip_comment(line: str) -> tuple[str, str]:
    """(command, trailing comment) of one shell line; a '#' inside quotes is not a comment."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def documented_commands() -> list[DocCommand]:
    found = []
    for path in DOC_FILES:
        if not path.exists():
            continue
        for first_line, block in _blocks(path):
            marked: str | None = None
            pending, start, notes = "", 0, []
            for offset, raw in enumerate(block.splitlines()):
                code, comment = _strip_comment(raw)
                if not code.strip():
                    if comment and NOT_RUNNABLE.search(comment):
                        marked = NOT_RUNNABLE.search(comment).group(1) or "marked"
                    elif not comment:
                        marked = None  # a blank line ends a marked group
                    continue
                if raw.lstrip().startswith(("$ ", ">>> ")) or code.lstrip().startswith("{"):
                    continue  # output shown in the block, not a command
                if not pending:
                    start = first_line + offset
                    notes = []
                notes.append(comment)
                if code.endswith("\\"):
                    pending += code[:-1] + " "
                    continue
                text = " ".join((pending + code).split())
                pending = ""
                reason = next((NOT_RUNNABLE.search(n).group(1) or "marked" for n in notes
                               if NOT_RUNNABLE.search(n)), marked)
                found.append(DocCommand(f"{path.relative_to(REPO)}:{start}", text, reason))
    return found


def _test_exists(ref: str) -> bool:
    file, _, name = ref.partition("::")
    path = REPO / file
    if not path.exists():
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
               for n in ast.walk(tree))


COMMANDS = documented_commands()


def test_docs_have_commands_to_check() -> None:
    assert len(COMMANDS) > 10, COMMANDS  # the extractor works on the real files


def test_every_documented_command_is_run_by_a_test_or_marked() -> None:
    uncovered = [f"{c.where}: {c.text}" for c in COMMANDS if c.not_runnable is None
                 and not any(re.search(rx, c.text) for rx, _ in COVERED)]
    assert not uncovered, ("documented commands no test runs; add the test to COVERED, or mark "
                           "the line '# not runnable here: <why>':\n" + "\n".join(uncovered))


def test_covered_names_real_tests_and_real_commands() -> None:
    missing = [ref for _, ref in COVERED if not _test_exists(ref)]
    assert not missing, f"COVERED names tests that do not exist: {missing}"
    stale = [rx for rx, _ in COVERED if not any(re.search(rx, c.text) for c in COMMANDS)]
    assert not stale, f"COVERED entries that match no documented command any more: {stale}"


def test_marked_commands_say_why() -> None:
    vague = [f"{c.where}: {c.text}" for c in COMMANDS
             if c.not_runnable is not None and len(c.not_runnable) < 10]
    assert not vague, "say why a command is not runnable here:\n" + "\n".join(vague)


# ----------------------------------------------------------------------------- flags parse
def _entry_point(argv: list[str]) -> tuple[click.Command, str, list[str]] | None:
    """The click command a documented argv runs, its name and its arguments; None if not ours."""
    if not argv:
        return None
    head = Path(argv[0]).name
    if head in ("python", "python3", "python3.10") and argv[1:2] == ["-m"] and len(argv) > 2:
        module, args = argv[2], argv[3:]
    else:
        module, args = {"mlmodel": "registry", "serving": "serving",
                        "mnist-pipeline": "pipeline.local_runner"}.get(head, ""), argv[1:]
    if module in ("registry", "registry.cli"):
        from registry.cli import cli
        return cli, "mlmodel", args
    if module in ("serving", "serving.cli"):
        from serving.cli import main
        return main, "serving", args
    if module.startswith("pipeline.") and module.endswith("_runner"):
        import importlib

        runner = importlib.import_module(module)
        return runner.main, module, args
    return None


def _parse_only(command: click.Command, name: str, args: list[str],
                parent: click.Context | None = None) -> None:
    """Parse ``args`` the way running the command would, without running it."""
    ctx = command.make_context(name, list(args), parent=parent)
    if isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        assert sub is not None, f"{name}: no command {rest[0]!r}"
        _parse_only(sub, sub_name or rest[0], sub_args, ctx)


def _argv(text: str) -> list[str]:
    text = text.rstrip("&").strip()
    for sep in ("|", "&&", ";", ">"):
        text = text.split(f" {sep} ")[0]
    return shlex.split(text)


PARSEABLE = [c for c in COMMANDS if _entry_point(_argv(c.text)) is not None]


@pytest.mark.parametrize("command", PARSEABLE, ids=[c.where for c in PARSEABLE])
def test_documented_flags_exist(command: DocCommand, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry_point(_argv(command.text))
    assert entry is not None
    click_command, name, args = entry
    if "--help" in args or "-h" in args:
        return  # --help exits while parsing, which proves nothing more
    try:
        _parse_only(click_command, name, args)
    except click.BadParameter as exc:
        # A path that exists on the user's machine, not here, is fine; anything else is not.
        if "does not exist" not in exc.format_message():
            pytest.fail(f"{command.where}: `{command.text}`: {exc.format_message()}")
    except click.UsageError as exc:
        pytest.fail(f"{command.where}: `{command.text}`: {exc.format_message()}")


def test_ci_runs_the_readme_commands() -> None:
    """`.ci/run` calls the README's two first commands as written: `make test` (so a missing
    install step shows in CI) and `make run` (the pipeline on the embedded data)."""
    readme_first_block = _blocks(REPO / "README.md")[0][1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("make test", "make run"):
        assert command in readme_first_block
        assert re.search(rf"^{command}$", ci, re.M), ci
