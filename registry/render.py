"""Output for people (rich tables) and for programs (``--output json``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

OUTPUTS = ("table", "json")


def list_time(ts: float) -> str:
    """``2019/11/19 00:11:22`` as in the seed's ``mlmodel list``."""
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def compact_time(ts: float) -> str:
    """``20191001145628`` as in the seed's ``mlmodel summary``."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(ts)) if ts else "-"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                output: str = "table") -> None:
    """A table: rich for people; for json, a list of objects keyed by the headers."""
    if output == "json":
        print_json([dict(zip(headers, row, strict=True)) for row in rows])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    width = None if sys.stdout.isatty() else 240  # pipes and files: one row per line
    Console(soft_wrap=False, width=width).print(table)


def note(message: str) -> None:
    """A remark for people, on stderr so it never mixes with json on stdout."""
    sys.stderr.write(message + "\n")
