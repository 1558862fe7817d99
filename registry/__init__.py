"""The model registry on ML Metadata: ``mlmodel`` commands, deploy versioning, serving status.

Import ``registry.api`` for the typed store API (``open_registry``). Nothing here imports
TensorFlow or TFX except ``registry.validate`` (used by import).
"""

from metastore import deferred_grpc

deferred_grpc.install()  # ML Metadata without gRPC (and asyncio) until it needs it
