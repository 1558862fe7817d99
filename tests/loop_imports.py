"""A recorder of first imports on the main thread (an event loop's), for the tests that check a
server imports nothing there while another thread may be importing: two threads importing at
once can deadlock on Python's module locks. Imported by those tests' subprocesses before
anything else, so it imports only the standard library's sys and threading."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any


class MainThreadImports:
    """A ``sys.meta_path`` finder that finds nothing and notes each module first imported on the
    main thread while ``armed()`` holds (appended to ``out``, a file, when given: a process
    stopped by a signal keeps what it noted). ``skip``: name prefixes not noted."""

    def __init__(self, armed: Callable[[], bool] = lambda: True, skip: tuple[str, ...] = (),
                 out: str | None = None) -> None:
        self.names: list[str] = []
        self.armed = armed
        self.skip = skip
        self.out = out

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if (threading.current_thread() is threading.main_thread() and name not in sys.modules
                and not name.startswith(self.skip) and self.armed()):
            self.names.append(name)
            if self.out is not None:
                with open(self.out, "a") as out:
                    out.write(name + "\n")

    def install(self) -> MainThreadImports:
        sys.meta_path.insert(0, self)
        return self


def manager_thread_runs() -> bool:
    """True once the model manager's loader thread (``serving.manager``) has started."""
    return any(thread.name == "model-manager" for thread in threading.enumerate())
