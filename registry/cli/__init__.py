"""``mlmodel``: the IRIS model commands on the ML Metadata registry.

Thin click commands: parse, call ``registry.api``, print. Verbs are case-insensitive (``mlmodel
LIST``); arguments work as ``key=value`` and as ``--key value``; ``--output json`` for scripts.
Exit 0 on success, 2 for usage/input errors (one line on stderr), 1 for backend errors.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from typing import Any

from contracts.runtime import configure_tensorflow

# Only `report` and `import` load TensorFlow (lazily); the policy (Keras 2, quiet start-up logs)
# must be in place before they do. Setting it imports nothing heavy.
configure_tensorflow()

import click  # noqa: E402

from contracts.settings import ENV_METADATA  # noqa: E402
from contracts.training import describe_training  # noqa: E402
from registry import render  # noqa: E402
from registry.cliutil import (  # noqa: E402
    KVCommand,
    common_options,
    fail_on_errors,
    settings_registry,
)
from registry.status import status_command  # noqa: E402

LIST_HEADERS = ["id", "user", "name", "type", "category", "algorithm", "serving", "create",
                "modified"]
SUMMARY_FIELDS = ["id", "user", "name", "filename", "format", "type", "category", "algorithm",
                  "feature", "label", "parameter", "evaluation", "cross_validation", "grid_info",
                  "train_cnt", "elapsed", "training", "dictionary", "cdate", "mdate", "serving",
                  "serving_name", "state", "current_version", "versions", "labels", "source",
                  "lineage"]


class MLModelGroup(click.Group):
    """Case-insensitive verbs; usage errors name the command to get help from."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name.lower())


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MLModelGroup, context_settings=CONTEXT, epilog="""\b
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
@click.option("--user", default=None, help="Who acts (default $USER, else root).")
def cli(**_: Any) -> None:
    """Manage models: list, summary, delete, import, export, deploy, stop, rollback, label,
    history, report, eval, predict, doctor, ui. Pipeline models (named after the pipeline's --model-name) appear by themselves."""


def command(name: str, epilog: str) -> Any:
    return cli.command(name, cls=KVCommand, epilog="\b\nExamples:\n" + epilog,
                       context_settings=CONTEXT)


def user_option(fn: Any) -> Any:
    return click.option("--user", default=None, help="Who acts (default $USER, else root).")(fn)


def acting_user(ctx: click.Context, user: str | None) -> str | None:
    from registry.cliutil import settings

    return user or settings(ctx).get("user")


def print_list(reg: Any, output: str, paging: dict[str, Any] | None = None,
               envelope: bool = False) -> None:
    """The list table, or JSON: a list of rows, or with ``envelope`` an object with the page."""
    page = reg.list_page(**(paging or {}))
    rows = [asdict(r) | {"serving": "on" if r.serving else "off",
                         "create": render.list_time(r.created),
                         "modified": render.list_time(r.modified)} for r in page.rows]
    if output == "json" and envelope:
        render.print_json({"models": rows, "total": page.total, "offset": page.offset,
                           "next_page_token": page.next_page_token})
        return
    if output == "json":
        render.print_json(rows)
    else:
        render.print_table(LIST_HEADERS, [
            [r.id, r.user, r.name, r.type, r.category, r.algorithm, "on" if r.serving else "off",
             render.list_time(r.created), render.list_time(r.modified)] for r in page.rows])
    if page.next_page_token or page.offset:
        shown = f"{page.offset + 1:,}-{page.offset + len(page.rows):,}" if page.offset else \
            f"{len(page.rows):,}"
        more = f"; next page: --page-token {page.next_page_token}" if page.next_page_token else ""
        render.note(f"showing {shown} of {page.total:,}{more}")


LIST_EPILOG = """\
  mlmodel list                                  (the first 100 models, by id)
  mlmodel list --limit 20 --order-by modified   (the 20 most recently changed)
  mlmodel list --filter name~mnist --serving    (serving models whose name contains mnist)
  mlmodel list --offset 100                     (the second page of 100)
  mlmodel list --output json --limit 50         ({"models", "total", "offset", "next_page_token"})
  mlmodel list --output json --page-token TOKEN (the page after TOKEN, same options)
  mlmodel LIST --output json                    (a plain list of rows, as before)
"""


def parse_list_filter(values: tuple[str, ...]) -> str | None:
    """``name~TEXT`` (substring of the name, case-insensitive); the only filter so far."""
    needles = []
    for value in values:
        key, sep, text = value.partition("~")
        if key.strip().lower() != "name" or not sep or not text.strip():
            raise click.BadParameter(f"{value!r}: use name~TEXT, e.g. name~mnist",
                                     param_hint="--filter")
        needles.append(text.strip())
    if len(set(n.lower() for n in needles)) > 1:
        raise click.BadParameter("give one name~TEXT", param_hint="--filter")
    return needles[0] if needles else None


@command("list", LIST_EPILOG)
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show at most N models (default 100); stderr says 'showing N of TOTAL'.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Skip the first N models (after filters and ordering).")
@click.option("--page-token", default=None, metavar="TOKEN",
              help="Resume after the page that printed this token (stable while models change).")
@click.option("--filter", "filters", multiple=True, metavar="name~TEXT",
              help="Only models whose name contains TEXT (case-insensitive).")
@click.option("--serving", "serving_only", is_flag=True, help="Only models that are serving.")
@click.option("--order-by", type=click.Choice(["id", "name", "created", "modified"],
                                              case_sensitive=False), default="id",
              show_default=True,
              help="id, name (ascending); created, modified (newest first).")
@common_options
@click.pass_context
@fail_on_errors
def list_cmd(ctx: click.Context, limit: int | None, offset: int, page_token: str | None,
             filters: tuple[str, ...], serving_only: bool, order_by: str, **_: Any) -> None:
    """List models: id, user, name, type, category, algorithm, serving, create, modified.

    One page at a time (--limit, default 100); --output json with any paging or filter option
    prints {"models": [...], "total": N, "offset": N, "next_page_token": TOKEN or null}.
    """
    if page_token and offset:
        raise click.UsageError("give --offset or --page-token, not both")
    reg, output = settings_registry(ctx)
    paging = {"limit": limit or 100, "offset": offset, "page_token": page_token,
              "name_contains": parse_list_filter(filters),
              "serving": True if serving_only else None, "order_by": order_by.lower()}
    envelope = bool(limit or offset or page_token or filters or serving_only
                    or order_by.lower() != "id")
    print_list(reg, output, paging, envelope)
    if reg.store.missing_database:
        render.note(f"note: no registry at {reg.backend.display} yet: run the pipeline "
                    f"(make run) here, or point --metadata / {ENV_METADATA} at one")


@command("summary", "  mlmodel summary mnist\n  mlmodel summary mnist id,name,state\n"
                    "  mlmodel summary name=mnist --output json\n")
@click.argument("name")
@click.argument("fields", required=False)
@common_options
@click.pass_context
@fail_on_errors
def summary_cmd(ctx: click.Context, name: str, fields: str | None, **_: Any) -> None:
    """Show one model as name/value rows (optionally only FIELDS, comma-separated)."""
    reg, output = settings_registry(ctx)
    s = reg.summary(name)
    values: dict[str, Any] = {
        **asdict(s), "grid_info": {},
        "cdate": render.compact_time(s.cdate), "mdate": render.compact_time(s.mdate),
        "serving": "on" if s.serving else "off",
    }
    if output != "json":
        values["training"] = describe_training(s.training)
        values["cross_validation"] = "; ".join(
            f"{render.compact_time(e['at'])} v{e['version'] or '-'} {e['data']}: accuracy "
            f"{e['accuracy']:.4f}, loss {e['loss']:.4f} ({e['examples']} examples, "
            f"{e['repeat']} x {e['rate']:g})" for e in s.cross_validation) or "-"
    wanted = SUMMARY_FIELDS
    if fields:
        wanted = [f.strip() for f in fields.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in values]
        if unknown:
            raise click.UsageError(f"unknown field(s) {', '.join(unknown)}; choose from "
                                   f"{', '.join(SUMMARY_FIELDS)}")
    if output == "json":
        render.print_json({k: values[k] for k in wanted})
        return
    render.print_table(["name", "value"], [[k, values[k]] for k in wanted])


@command("delete", "  mlmodel delete mnist\n  mlmodel delete mnist --force   (even while serving)\n")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even while the model is serving.")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def delete_cmd(ctx: click.Context, name: str, force: bool, user: str | None, **_: Any) -> None:
    """Delete model NAME (registry entry and managed files), then list the remaining models."""
    reg, output = settings_registry(ctx)
    reg.delete(name, force=force, user=acting_user(ctx, user))
    print_list(reg, output)


@command("import", "  mlmodel import name=tf_clothes type=tf category=classification "
                   "algorithm=deep format=saved_model path=model.tar\n"
                   "  mlmodel import --name m --format h5 --path model.tar\n")
@click.option("--name", required=True, help="Name to register the model under.")
@click.option("--type", "type_", default="tf", show_default=True, help="Model type (tf).")
@click.option("--category", default="classification", show_default=True)
@click.option("--algorithm", default="deep", show_default=True)
@click.option("--format", "format_", default="saved_model", show_default=True,
              type=click.Choice(["saved_model", "h5"], case_sensitive=False))
@click.option("--path", required=True, help="Tar archive holding saved_model.pb or model.h5.")
@click.option("--max-member-bytes", type=int, default=None,
              help="Refuse archive members larger than this (env MLMODEL_IMPORT_MAX_MEMBER_BYTES; "
                   "default 2 GiB).")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def import_cmd(ctx: click.Context, name: str, type_: str, category: str, algorithm: str,
               format_: str, path: str, max_member_bytes: int | None, user: str | None,
               **_: Any) -> None:
    """Import a model from a tar archive: checks members and files, loads it once, registers it."""
    reg, output = settings_registry(ctx)
    artifact_id = reg.import_model(name, path, type=type_, category=category, algorithm=algorithm,
                                   format=format_.lower(), user=acting_user(ctx, user),
                                   max_member_bytes=max_member_bytes)
    render.print_table(["result", "name", "artifact_id"], [["ok", name, artifact_id]],
                       output=output)


@command("export", "  mlmodel export name=mnist path=mnist.tar\n"
                   "  mlmodel export --name mnist --path /tmp/mnist.tar --output json\n")
@click.option("--name", required=True, help="Model to export.")
@click.option("--path", required=True, help="Tar file to write (atomically).")
@common_options
@click.pass_context
@fail_on_errors
def export_cmd(ctx: click.Context, name: str, path: str, **_: Any) -> None:
    """Write model NAME's files as a tar archive; print its path, size and sha256."""
    reg, output = settings_registry(ctx)
    result = reg.export_model(name, path)
    render.print_table(["result", "path", "size", "sha256"],
                       [["ok", result.path, result.size, result.sha256]], output=output)


@command("deploy", "  mlmodel deploy mnist\n  mlmodel deploy mnist label=stable\n"
                   "  mlmodel DEPLOY mnist --label canary --user alice\n")
@click.argument("name")
@click.option("--label", default=None, help="Label to point at the new version, e.g. stable.")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def deploy_cmd(ctx: click.Context, name: str, label: str | None, user: str | None,
               **_: Any) -> None:
    """Deploy model NAME as a new version under serving_model/<user>_<name>/<N>.

    A pipeline model deploys its latest blessed push; an imported model its files.
    """
    reg, output = settings_registry(ctx)
    result = reg.deploy(name, label=label, user=acting_user(ctx, user))
    render.print_table(["result", "latest_version", "serving_name"],
                       [[result.result, result.latest_version, result.serving_name]], output=output)


@command("stop", "  mlmodel stop mnist\n")
@click.argument("name")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def stop_cmd(ctx: click.Context, name: str, user: str | None, **_: Any) -> None:
    """Stop serving every version of NAME; the files stay for rollback."""
    reg, output = settings_registry(ctx)
    reg.stop(name, user=acting_user(ctx, user))
    render.print_table(["result"], [["ok"]], output=output)


@command("rollback", "  mlmodel rollback mnist            (the version before the current one)\n"
                     "  mlmodel rollback mnist version=1\n")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Version to make current.")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def rollback_cmd(ctx: click.Context, name: str, version: int | None, user: str | None,
                 **_: Any) -> None:
    """Make an earlier deployed version of NAME current (and serving) again, without retraining."""
    reg, output = settings_registry(ctx)
    current = reg.rollback(name, version=version, user=acting_user(ctx, user))
    render.print_table(["result", "current_version"], [["ok", current]], output=output)


@command("label", "  mlmodel label mnist stable version=2\n"
                  "  mlmodel label mnist canary --version 3\n")
@click.argument("name")
@click.argument("label")
@click.option("--version", type=int, required=True, help="Version the label points at.")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def label_cmd(ctx: click.Context, name: str, label: str, version: int, user: str | None,
              **_: Any) -> None:
    """Point LABEL of model NAME at a deployed version (moves it atomically)."""
    reg, output = settings_registry(ctx)
    reg.label(name, label, version, user=acting_user(ctx, user))
    render.print_table(["result", "label", "version"], [["ok", label, version]], output=output)


@command("history", "  mlmodel history mnist\n  mlmodel history mnist --output json\n")
@click.argument("name")
@common_options
@click.pass_context
@fail_on_errors
def history_cmd(ctx: click.Context, name: str, **_: Any) -> None:
    """Show what happened to NAME and which version served when."""
    reg, output = settings_registry(ctx)
    entries = reg.history(name)
    if output == "json":
        render.print_json([asdict(e) | {"time": render.list_time(e.at)} for e in entries])
        return
    render.print_table(
        ["time", "action", "version", "label", "current", "serving", "user", "detail"],
        [[render.list_time(e.at), e.action, e.version or "-", e.label or "-",
          e.current_version or "-", "on" if e.serving else "off", e.user, e.detail]
         for e in entries])
    from registry.api import serving_order

    order = serving_order(entries)
    if order:
        back = f"; `mlmodel rollback {name}` returns to {order[-2]}" if len(order) > 1 else ""
        render.note(f"served, oldest first: {', '.join(map(str, order))} (current){back}")


@command("report", "  mlmodel report mnist\n  mlmodel report mnist --out /tmp/mnist.html\n")
@click.argument("name")
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="HTML file to write (atomically; images are embedded).")
@common_options
@click.pass_context
@fail_on_errors
def report_cmd(ctx: click.Context, name: str, out: str, **_: Any) -> None:
    """Write an HTML report on NAME's newest run: data statistics and anomalies, training curves,
    per-class accuracy, confusion matrix, misclassified images, and the previous blessed model."""
    from registry.cliutil import settings
    from registry.report import write_report  # TensorFlow and matplotlib load only here

    values = settings(ctx)
    path = write_report(values.get("metadata"), values.get("serving_dir"), name, out)
    render.print_table(["result", "path", "size"], [["ok", path, os.path.getsize(path)]],
                       output=values["output"])


@command("doctor", "  mlmodel doctor            (list what killed deploys/imports/deletes left)\n"
                   "  mlmodel doctor --repair   (remove it, under the registry lock)\n")
@click.option("--repair", is_flag=True,
              help="Remove the staging, half-deleted and unrecorded directories found.")
@common_options
@click.pass_context
@fail_on_errors
def doctor_cmd(ctx: click.Context, repair: bool, **_: Any) -> None:
    """Find what killed writes left in the serving directory: dead staging directories,
    half-deleted directories, version directories without a record, records without files.

    Exit status: 0 when nothing is left to fix, 1 otherwise (e.g. without --repair).
    """
    from registry import doctor

    reg, output = settings_registry(ctx)
    findings = doctor.diagnose(reg)
    removed = {f.path for f in doctor.repair(reg)} if repair else set()
    rows = [{"kind": f.kind, "path": f.path, "detail": f.detail,
             "action": _doctor_action(f, repair, removed)} for f in findings]
    if output == "json":
        render.print_json(rows)
    elif rows:
        render.print_table(["kind", "path", "detail", "action"],
                           [[r["kind"], r["path"], r["detail"], r["action"]] for r in rows])
    else:
        render.note(f"nothing to fix under {reg.serving_dir}")
    if any(r["action"] in ("remove with --repair", "fix by hand") for r in rows):
        sys.exit(1)


def _doctor_action(finding: Any, repair: bool, removed: set[str]) -> str:
    if not finding.removable:
        return "fix by hand"
    if not repair:
        return "remove with --repair"
    return "removed" if finding.path in removed else "gone meanwhile"


cli.add_command(status_command, "status")  # also here: `mlmodel status NAME`
from registry.cli import offline  # noqa: E402,F401  (registers eval and predict on `cli`)
from registry.cli import ui as ui_cli  # noqa: E402,F401  (registers `mlmodel ui` on `cli`)


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
