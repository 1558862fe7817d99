"""Import ML Metadata without gRPC: ``grpc`` loads the first time ML Metadata actually uses it.

``ml_metadata.metadata_store`` and the generated ``metadata_store_service_pb2_grpc`` stubs do
``import grpc`` at import time, for one thing only: talking to a remote MLMD *gRPC server*
(``MetadataStoreClientConfig``). The registry opens SQLite or MySQL directly, where gRPC is never
touched. Yet importing ``grpc`` costs ~35 ms and loads asyncio (its Cython core and ``grpc.aio``
import it): measured here, ``import ml_metadata`` took 92 ms with asyncio loaded, 57 ms without.
``mlmodel list`` and the other read commands are meant to start fast (issue 23).

So ``install()`` (run by the ``registry`` and ``metastore`` packages) hooks the first import of
``ml_metadata``: while the package runs, a stand-in module sits under the name ``grpc``. The modules of ML Metadata keep the stand-in as their
``grpc``; the first attribute read from it (``grpc.insecure_channel`` for a gRPC store,
``grpc.RpcError`` when an error is being matched) imports the real package and forwards to it.
Everyone else imports the real package as usual: the stand-in is gone from ``sys.modules`` once
ML Metadata is imported.

Why by hand: the standard library's ``importlib.util.LazyLoader`` does not work here on Python
3.10, because the ``import grpc`` statement itself reads the module's ``__spec__``, which makes a
lazy module load at once (tried 2026-12-03). The stand-in has ``__spec__ = None``, set on the
instance, so the statement reads it without loading anything.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from typing import Any

GRPC = "grpc"
MLMD = "ml_metadata"


class _GrpcOnFirstUse(types.ModuleType):
    """Stands for ``grpc`` in ML Metadata's modules; imports the real one on first attribute."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(GRPC) is self:  # still inside the deferred import
            del sys.modules[GRPC]
        return getattr(importlib.import_module(GRPC), name)


class _DeferOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``ml_metadata`` is first imported, it has the real spec's
    loader run the package under the stand-in, then steps out of ``sys.meta_path``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != MLMD:
            return None
        uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or GRPC in sys.modules:
            return spec
        loader = spec.loader
        run_package = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            stand_in = _GrpcOnFirstUse(GRPC, "grpc, imported when ML Metadata first uses it")
            stand_in.__spec__ = None
            sys.modules[GRPC] = stand_in
            try:
                run_package(module)
            finally:
                if sys.modules.get(GRPC) is stand_in:
                    del sys.modules[GRPC]

        loader.exec_module = exec_module  # type: ignore[method-assign] # this loader only
        return spec


_FINDER = _DeferOnImport()


def install() -> None:
    """Defer ``grpc`` in the first import of ML Metadata, whenever that comes (cheap: nothing is
    imported now). A no-op once either is imported."""
    if GRPC in sys.modules or MLMD in sys.modules or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
