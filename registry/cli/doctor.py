"""``mlmodel doctor``: what killed writes left in the serving directory (see registry/doctor.py)."""

from __future__ import annotations

import sys
from typing import Any

import click

from registry import render
from registry.cliutil import command, common_options, fail_on_errors, settings_registry


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
