"""A missing system part skips the tests that need it, naming the package, and fails them in CI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import system_parts

REPO = Path(__file__).resolve().parents[1]

PROBE_CONFTEST = "from tests.system_parts import pytest_report_header, pytest_terminal_summary\n"
PROBE_TEST = '''
from tests.system_parts import require


def test_needs_the_driver():
    require("chromedriver")
    assert False, "reached although chromedriver is not on PATH"


def test_needs_no_part():
    from tests.system_parts import parts

    assert parts()["chromedriver"].package == "chromium-driver"
'''


def _run_without_chromedriver(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(PROBE_CONFTEST)  # the hooks, as tests/conftest.py has
    (tmp_path / "test_probe.py").write_text(PROBE_TEST)
    empty_bin = tmp_path / "bin"  # a PATH with no chromedriver (nor anything else)
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=str(empty_bin), PYTHONPATH=str(REPO))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_missing_part_skips_with_the_package_named(tmp_path: Path) -> None:
    result = _run_without_chromedriver(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert "chromedriver not on PATH (Debian package chromium-driver" in result.stdout
    assert "missing system part chromedriver: chromedriver not on PATH" in result.stdout  # header
    assert "real parts not exercised (missing): chromedriver (chromium-driver)" in result.stdout


def test_missing_part_fails_under_ci(tmp_path: Path) -> None:
    result = _run_without_chromedriver(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "CI=true and a real part is missing: chromedriver" in result.stdout
    assert "reached although" not in result.stdout


def test_the_list_names_every_part_the_tests_require() -> None:
    names = system_parts.parts()
    assert {"mariadb", "chromium", "chromedriver"} <= set(names)
    assert names["chromedriver"].package == "chromium-driver"
    assert names["mariadb"].probes == ("cmd:mariadbd", "cmd:mariadb-install-db")
    # each name passed to require() in the suite is in the list
    required = {line.split('require("')[1].split('"')[0]
                for path in (REPO / "tests").rglob("*.py") if path.name != Path(__file__).name
                for line in path.read_text().splitlines() if 'require("' in line
                and "def " not in line and "PROBE" not in line}
    assert required and required <= set(names), required - set(names)


def test_install_without_root_names_each_missing_part(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    listing = tmp_path / "system-packages.txt"
    listing.write_text("# part package probes used-by\n"
                       "present  coreutils-x  cmd:sh  tests: always here\n"
                       "absent   no-such-pkg  cmd:no-such-command-xyz  tests: the absent part\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    out = io.StringIO()
    assert system_parts.install(listing, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "absent: no-such-command-xyz not on PATH (Debian package no-such-pkg" in lines[0]
    assert "skipped: tests: the absent part" in lines[0]
    monkeypatch.setenv("CI", "true")
    assert system_parts.install(listing, out=io.StringIO()) == 1
