"""Output for people (rich tables) and for programs (``--output json``)."""

from __future__ import annotations

import json
import os
import re
import shutil
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


# Cells the plain renderer draws exactly as rich would: printable ASCII without rich markup
# ("[...]") or emoji codes (":name:"); anything else, and a table wider than the screen (rich folds
# its cells), goes to rich.
_PLAIN_CELL = re.compile(r"[ -Z\\^-~]*")  # printable ASCII less '['
_EMOJI_CODE = re.compile(r":[^\s:]*[A-Za-z][^\s:]*:")
BOLD, RESET = "\x1b[1m", "\x1b[0m"


def _plain_table(headers: Sequence[str], cells: list[list[str]], width: int,
                 bold: bool) -> str | None:
    """The table as rich's default ``Table`` draws it (heavy head, padded cells), or None when
    only rich can draw it. Rendering 100 rows this way takes a millisecond; rich takes ~100 ms
    of CPU (and ~25 ms to import), most of ``mlmodel list``'s time beyond ML Metadata."""
    texts = [list(headers), *cells]
    if any(not _PLAIN_CELL.fullmatch(t) or _EMOJI_CODE.search(t) for row in texts for t in row):
        return None
    widths = [max(len(row[i]) for row in texts) for i in range(len(headers))]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def rule(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + right

    def line(row: list[str], bar: str, style: bool = False) -> str:
        parts = [f" {t:<{w}} " for t, w in zip(row, widths, strict=True)]
        if style:
            parts = [f"{BOLD} {RESET}{BOLD}{p[1:-1]}{RESET}{BOLD} {RESET}" if p.strip()
                     else f"{BOLD}{p}{RESET}" for p in parts]
        return bar + bar.join(parts) + bar

    out = [rule("┏", "━", "┳", "┓"), line(list(headers), "┃", bold), rule("┡", "━", "╇", "┩")]
    out += [line(row, "│") for row in cells]
    out.append(rule("└", "─", "┴", "┘"))
    return "\n".join(out) + "\n"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                output: str = "table") -> None:
    """A table: rich's look for people; for json, a list of objects keyed by the headers."""
    if output == "json":
        print_json([dict(zip(headers, row, strict=True)) for row in rows])
        return
    tty = sys.stdout.isatty()
    if title is None:
        width = shutil.get_terminal_size().columns if tty else 240
        plain = _plain_table(headers, [[cell(v) for v in row] for row in rows], width,
                             bold=tty and os.environ.get("TERM") != "dumb")
        if plain is not None:
            sys.stdout.write(plain)
            return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    width = None if tty else 240  # pipes and files: one row per line
    Console(soft_wrap=False, width=width).print(table)


def note(message: str) -> None:
    """A remark for people, on stderr so it never mixes with json on stdout."""
    sys.stderr.write(message + "\n")
