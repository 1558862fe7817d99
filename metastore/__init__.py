"""ML Metadata as shared infrastructure: backend parsing, the Store, write locks, lineage reads.

The pipeline and the registry both stand on it; it imports neither."""

from metastore import deferred_grpc

deferred_grpc.install()  # ML Metadata without gRPC (and asyncio) until it needs it
