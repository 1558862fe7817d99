"""``mlmodel`` commands on registered models: list, summary, delete, import, export, deploy,
stop, rollback, label, history. Thin: parse, call ``registry.api``, print."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from contracts.settings import ENV_METADATA
from contracts.training import describe_training
from registry import cliutil, render
from registry.cliutil import command, common_options, fail_on_errors, settings_registry

LIST_HEADERS = ["id", "user", "name", "type", "category", "algorithm", "serving", "create",
                "modified"]
SUMMARY_FIELDS = ["id", "user", "name", "filename", "format", "type", "category", "algorithm",
                  "feature", "label", "parameter", "evaluation", "cross_validation", "grid_info",
                  "train_cnt", "elapsed", "training", "dictionary", "cdate", "mdate", "serving",
                  "serving_name", "state", "current_version", "versions", "labels", "source",
                  "lineage", "monitoring"]


def print_list(reg: Any, output: str, paging: dict[str, Any] | None = None,
               envelope: bool = False) -> None:
    """The list table, or JSON: a list of rows, or with ``envelope`` an object with the page."""
    page = reg.list_page(**(paging or {}))
    if output == "json":
        rows = [asdict(r) | {"serving": "on" if r.serving else "off",
                             "create": render.list_time(r.created),
                             "modified": render.list_time(r.modified)} for r in page.rows]
        render.print_json({"models": rows, "total": page.total, "offset": page.offset,
                           "next_page_token": page.next_page_token} if envelope else rows)
        if envelope:
            return
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
    reg, output = settings_registry(ctx, read_only=True)
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
    from registry import monitor_store

    reg, output = settings_registry(ctx)
    s = reg.summary(name)
    values: dict[str, Any] = {
        **asdict(s),
        "cdate": render.compact_time(s.cdate), "mdate": render.compact_time(s.mdate),
        "serving": "on" if s.serving else "off",
        "monitoring": monitor_store.summary_line(reg, name) if output != "json"
        else monitor_store.latest_reports(reg, name),  # `mlmodel monitor`'s newest report
    }
    if output != "json":
        values["training"] = describe_training(s.training)
        values["cross_validation"] = "; ".join(
            f"{render.compact_time(e['at'])} v{e['version'] or '-'} {e['data']}: accuracy "
            f"{e['accuracy']:.4f}, loss {e['loss']:.4f} ({e['examples']} examples, "
            f"{e['repeat']} x {e['rate']:g})" for e in s.cross_validation) or "-"
    # grid_info only when a Tuner chose the hyperparameters (asked for by name, it shows "-")
    wanted = [f for f in SUMMARY_FIELDS if f != "grid_info" or s.grid_info is not None]
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
@cliutil.user_option
@common_options
@click.pass_context
@fail_on_errors
def delete_cmd(ctx: click.Context, name: str, force: bool, user: str | None, **_: Any) -> None:
    """Delete model NAME (registry entry and managed files), then list the remaining models."""
    reg, output = settings_registry(ctx)
    reg.delete(name, force=force, user=cliutil.acting_user(ctx, user))
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
@cliutil.user_option
@common_options
@click.pass_context
@fail_on_errors
def import_cmd(ctx: click.Context, name: str, type_: str, category: str, algorithm: str,
               format_: str, path: str, max_member_bytes: int | None, user: str | None,
               **_: Any) -> None:
    """Import a model from a tar archive: checks members and files, loads it once, registers it."""
    reg, output = settings_registry(ctx)
    artifact_id = reg.import_model(name, path, type=type_, category=category, algorithm=algorithm,
                                   format=format_.lower(), user=cliutil.acting_user(ctx, user),
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
@cliutil.user_option
@common_options
@click.pass_context
@fail_on_errors
def deploy_cmd(ctx: click.Context, name: str, label: str | None, user: str | None,
               **_: Any) -> None:
    """Deploy model NAME as a new version under serving_model/<user>_<name>/<N>.

    A pipeline model deploys its latest blessed push; an imported model its files.
    """
    reg, output = settings_registry(ctx)
    result = reg.deploy(name, label=label, user=cliutil.acting_user(ctx, user))
    render.print_table(["result", "latest_version", "serving_name"],
                       [[result.result, result.latest_version, result.serving_name]], output=output)


@command("stop", "  mlmodel stop mnist\n")
@click.argument("name")
@cliutil.user_option
@common_options
@click.pass_context
@fail_on_errors
def stop_cmd(ctx: click.Context, name: str, user: str | None, **_: Any) -> None:
    """Stop serving every version of NAME; the files stay for rollback."""
    reg, output = settings_registry(ctx)
    reg.stop(name, user=cliutil.acting_user(ctx, user))
    render.print_table(["result"], [["ok"]], output=output)


@command("rollback", "  mlmodel rollback mnist            (the version before the current one)\n"
                     "  mlmodel rollback mnist version=1\n")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Version to make current.")
@cliutil.user_option
@common_options
@click.pass_context
@fail_on_errors
def rollback_cmd(ctx: click.Context, name: str, version: int | None, user: str | None,
                 **_: Any) -> None:
    """Make an earlier deployed version of NAME current (and serving) again, without retraining."""
    reg, output = settings_registry(ctx)
    current = reg.rollback(name, version=version, user=cliutil.acting_user(ctx, user))
    render.print_table(["result", "current_version"], [["ok", current]], output=output)


@command("label", "  mlmodel label mnist stable version=2\n"
                  "  mlmodel label mnist canary --version 3\n")
@click.argument("name")
@click.argument("label")
@click.option("--version", type=int, required=True, help="Version the label points at.")
@cliutil.user_option
@common_options
@click.pass_context
@fail_on_errors
def label_cmd(ctx: click.Context, name: str, label: str, version: int, user: str | None,
              **_: Any) -> None:
    """Point LABEL of model NAME at a deployed version (moves it atomically)."""
    reg, output = settings_registry(ctx)
    reg.label(name, label, version, user=cliutil.acting_user(ctx, user))
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
