"""The system packages the suite's real parts need: check, install, and skip (or fail) by name.

One list, ``system-packages.txt`` at the repository root, says which Debian package provides each
part and how to find it. This module is used three ways:

* ``python3 tests/system_parts.py install``: what ``make setup-system`` (and so ``make test`` and
  ``.ci/run``) runs. As root with ``apt-get`` it installs the missing packages; otherwise it prints
  one line per missing part and what to run. Standard library only: it runs before the venv.
* ``require("chromedriver")`` in a fixture: returns when the part is there; otherwise skips the
  test with the missing package named, or fails it when ``CI=true`` (CI can never pass without
  its real parts).
* The pytest hooks at the bottom (imported by ``tests/conftest.py``): a header line naming the
  missing parts, and one summary line at the end listing the parts a run did not exercise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).resolve().parents[1] / "system-packages.txt"
# Parts some test asked for and did not find, in this pytest process: part -> reason.
_NOT_EXERCISED: dict[str, str] = {}


@dataclass(frozen=True)
class Part:
    """One line of system-packages.txt."""

    name: str
    package: str
    probes: tuple[str, ...]  # "cmd:<name on PATH>" or "file:<absolute path>"
    used_by: str

    def missing(self) -> str | None:
        """What is not found ('chromedriver not on PATH'), or None when the part is here."""
        for probe in self.probes:
            kind, _, target = probe.partition(":")
            if kind == "cmd" and not shutil.which(target):
                return f"{target} not on PATH"
            if kind == "file" and not os.path.exists(target):
                return f"{target} not found"
        return None

    def reason(self) -> str:
        """One line: what is missing, which package provides it, how to get it."""
        return (f"{self.name}: {self.missing()} (Debian package {self.package}; "
                f"`sudo make setup-system` or `sudo apt-get install {self.package}`)")


def parts(path: Path = LIST) -> dict[str, Part]:
    """The parts of ``system-packages.txt``, by name."""
    found: dict[str, Part] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 4 or not all(":" in p for p in fields[2:3]):
            raise ValueError(f"{path}: cannot read the line {raw!r}: expected "
                             "'<part> <package> <kind>:<target>... <used by...>'")
        probes = tuple(f for f in fields[2:] if f.startswith(("cmd:", "file:")))
        used_by = " ".join(fields[2 + len(probes):])
        found[fields[0]] = Part(fields[0], fields[1], probes, used_by)
    return found


def in_ci() -> bool:
    """True when ``CI`` is set to a true value, as CI services (and ``.ci/run``) do."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(name: str) -> None:
    """Return if ``name`` is available; else skip the calling test (fail it under CI=true)."""
    import pytest

    part = parts()[name]
    if part.missing() is None:
        return
    reason = part.reason()
    _NOT_EXERCISED[name] = reason
    if in_ci():
        pytest.fail(f"CI=true and a real part is missing: {reason}", pytrace=False)
    pytest.skip(f"missing system part {reason}")


def install(list_path: Path = LIST, out=sys.stdout) -> int:  # noqa: ANN001
    """Install what is missing (root + apt-get); else name it. Exit code: 0, or 1 if CI lacks parts."""
    missing = [p for p in parts(list_path).values() if p.missing() is not None]
    if not missing:
        print("system parts: all present (" + ", ".join(parts(list_path)) + ")", file=out)
        return 0
    can_install = shutil.which("apt-get") is not None and os.geteuid() == 0
    if can_install:
        packages = sorted({p.package for p in missing})
        print(f"system parts: installing {' '.join(packages)} with apt-get", file=out, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        missing = [p for p in missing if p.missing() is not None]
        if not missing:
            return 0
    why = ("not root" if shutil.which("apt-get") else "no apt-get on this machine") \
        if not can_install else "still missing after apt-get"
    for part in missing:
        print(f"system parts: cannot install ({why}): {part.reason()}; skipped: {part.used_by}",
              file=out)
    return 1 if in_ci() else 0


# ----------------------------------------------------------------------------- pytest hooks
def pytest_report_header(config) -> list[str]:  # noqa: ANN001
    lines = [f"missing system part {p.reason()}" for p in parts().values()
             if p.missing() is not None and p.used_by.startswith("tests")]
    return lines or ["system parts: all present"]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001, ARG001
    if _NOT_EXERCISED:
        names = ", ".join(f"{name} ({parts()[name].package})" for name in sorted(_NOT_EXERCISED))
        terminalreporter.write_line(f"real parts not exercised (missing): {names}", yellow=True)
    else:
        terminalreporter.write_line("real parts: every part a test asked for was exercised")


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python3 tests/system_parts.py install")
    sys.exit(install())
