"""The garbage collector around a pipeline run: what TensorFlow, TFX and Beam import stays out
of its full passes.

After those imports the process holds about 600,000 long-lived objects (modules, functions,
protobuf descriptors). CPython's full collections walk every one of them: on a run of the
1,000-record handwriting pipeline that is 11 passes and 2.2 s, and the interpreter's last pass
at exit another 2 s, all to find nothing (measured with ``gc.callbacks``; docs/training.md,
"The stall after the last epoch, the collector and the validation server"). ``gc.freeze`` is
CPython's own tool for this: it moves the objects alive now into a permanent generation that
collections skip.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def imports_frozen() -> Iterator[None]:
    """Leave the objects alive now out of full collections for the block.

    One collection first, so no garbage is frozen; after the block they go back to the oldest
    generation, so a notebook or a test process that runs many pipelines loses nothing.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def skip_exit_collection() -> None:
    """Spare the exiting interpreter its last full pass over the heap (about 2 s after a run).

    Only for a process that is about to exit: what is alive now is never collected again.
    """
    gc.freeze()
