"""``mlmodel``: the IRIS model commands on the ML Metadata registry.

The root group is built from one table, ``COMMANDS``: each verb names the module and the click
command that implement it, and the module is imported only when that verb runs (or ``--help``
lists every verb). Nothing registers itself by being imported, so ``mlmodel list`` loads neither
the console, nor Beam, nor TensorFlow, and no module here imports this one.

Verbs are case-insensitive (``mlmodel LIST``); arguments work as ``key=value`` and as
``--key value``; ``--output json`` for scripts. Exit 0 on success, 2 for usage/input errors (one
line on stderr), 1 for backend errors.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from contracts.runtime import configure_tensorflow

# Only `report` and `import` load TensorFlow (lazily); the policy (Keras 2, quiet start-up logs)
# must be in place before they do. Setting it imports nothing heavy.
configure_tensorflow()

import click  # noqa: E402

from registry.cliutil import CONTEXT, USER_HELP, common_options  # noqa: E402

# verb -> "module:attribute" of its click command; the only place a verb is added.
COMMANDS: dict[str, str] = {
    "list": "registry.cli.models:list_cmd",
    "summary": "registry.cli.models:summary_cmd",
    "delete": "registry.cli.models:delete_cmd",
    "import": "registry.cli.models:import_cmd",
    "export": "registry.cli.models:export_cmd",
    "deploy": "registry.cli.models:deploy_cmd",
    "stop": "registry.cli.models:stop_cmd",
    "rollback": "registry.cli.models:rollback_cmd",
    "label": "registry.cli.models:label_cmd",
    "history": "registry.cli.models:history_cmd",
    "status": "registry.status:status_command",  # also `serving status NAME`
    "report": "registry.cli.report:report_cmd",
    "doctor": "registry.cli.doctor:doctor_cmd",
    "eval": "registry.cli.offline:eval_cmd",
    "predict": "registry.cli.offline:predict_cmd",
    "ui": "registry.cli.ui:ui_cmd",
    "monitor": "registry.monitor_cli:monitor_cmd",
    "export-captured": "registry.monitor_cli:export_captured_cmd",
}


class MLModelGroup(click.Group):
    """Case-insensitive verbs, each loaded from ``COMMANDS`` the first time it is asked for."""

    def __init__(self, *args: Any, table: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = table

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.table, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = cmd_name.lower()
        if name not in self.commands and name in self.table:
            module, _, attribute = self.table[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=MLModelGroup, table=COMMANDS, context_settings=CONTEXT, epilog="""\b
Examples:
  mlmodel list
  mlmodel summary mnist
  mlmodel deploy mnist label=stable          (or: --label stable)
  mlmodel rollback mnist version=1
  mlmodel label mnist canary version=2
  mlmodel stop mnist
  mlmodel history mnist --output json
  mlmodel report mnist --out mnist.html
  mlmodel import name=tf_clothes type=tf category=classification algorithm=deep \\
      format=saved_model path=model.tar
  mlmodel export name=mnist path=mnist.tar
  mlmodel --metadata mysql://root@127.0.0.1:3306/mlmd list
""")
@common_options
@click.option("--user", default=None, help=USER_HELP)
def cli(**_: Any) -> None:
    """Manage models: list, summary, delete, import, export, deploy, stop, rollback, label,
    history, report, eval, predict, doctor, ui. Pipeline models (named after the pipeline's --model-name) appear by themselves."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors -> one line and exit 2, never a traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        click.echo(cli.get_help(click.Context(cli, info_name="mlmodel")))
        sys.exit(0)
    try:
        code = cli.main(args=args, prog_name="mlmodel", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        sys.stderr.write(f"error: {exc.format_message()}{hint}\n")
        sys.exit(2)
    except click.exceptions.ClickException as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

