"""``mlmodel list`` spends little beyond importing ML Metadata: its table is drawn without rich
(exactly as rich draws it), and it loads neither rich nor the registry's writes."""

from __future__ import annotations

import io
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

from registry import render

ROOT = Path(__file__).resolve().parents[2]


def rich_table(headers: list[str], rows: list[list[object]], width: int, tty: bool) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(render.cell(v) for v in row))
    buffer = io.StringIO()
    terminal = {"force_terminal": True, "color_system": "standard"} if tty else {}
    Console(file=buffer, soft_wrap=False, width=width, **terminal).print(table)
    return buffer.getvalue()


def random_table(rng: random.Random) -> tuple[list[str], list[list[object]]]:
    letters = string.ascii_letters + string.digits + " -_./:=,{}\"'"
    columns = rng.randint(1, 9)
    headers = ["".join(rng.choice(string.ascii_lowercase + "_") for _ in range(rng.randint(1, 12)))
               for _ in range(columns)]
    rows = [[rng.choice([None, True, False, rng.randint(0, 10**6), 0.25,
                         "".join(rng.choice(letters) for _ in range(rng.randint(0, 30)))])
             for _ in range(columns)] for _ in range(rng.randint(0, 6))]
    return headers, rows


@pytest.mark.parametrize("tty", [False, True])
def test_the_plain_table_is_what_rich_draws(tty: bool) -> None:
    rng = random.Random(23)
    drawn = 0
    for _ in range(300):
        headers, rows = random_table(rng)
        plain = render._plain_table(headers, [[render.cell(v) for v in r] for r in rows], 240,
                                    bold=tty)
        if plain is not None:
            drawn += 1
            assert plain == rich_table(headers, rows, 240, tty), (headers, rows)
    assert drawn > 250  # the random tables are plain ones, nearly all


@pytest.mark.parametrize("value", ["[bold]x", "café", ":thumbs_up:", "a\nb", "x" * 300])
def test_what_only_rich_can_draw_goes_to_rich(value: str) -> None:
    assert render._plain_table(["name"], [[value]], 240, bold=False) is None
    assert render._plain_table(["name"], [["11:30:00"]], 240, bold=False) is not None


def test_list_loads_neither_rich_nor_the_writes(tmp_path: Path) -> None:
    probe = ("import sys\nfrom registry.cli import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\n"
             "print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] == "
             "'rich' or m in ('registry.writes', 'registry.api', 'contracts.publish'))))")
    proc = subprocess.run([sys.executable, "-c", probe, "--metadata", str(tmp_path / "m.db"),
                           "--serving-dir", str(tmp_path / "serving"), "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("LOADED=")]
    assert line == "LOADED=", line
    assert "┃ id" in proc.stdout  # the table was drawn (header only: no models)
